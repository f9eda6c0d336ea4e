//! Informational responses (103 Early Hints) on HTTP/1.1 connections.
//!
//! hyper has no server API for 1xx responses, so the listener wraps each connection's
//! stream in a [`SharedIo`]: hyper reads and writes through it as usual, and an
//! [`EarlyHints`] handle, put on every HTTP/1.1 request, writes an informational response
//! straight to the socket while that request's final response is still pending (on HTTP/1.1
//! nothing else is written to the connection then). HTTP/2 requests carry no handle, so
//! `headers_send()` reports 0 there.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection stream shared between hyper and the [`EarlyHints`] of its requests.
#[derive(Debug)]
pub(crate) struct SharedIo<T> {
    inner: Arc<Mutex<T>>,
}

impl<T> SharedIo<T>
where
    T: AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps `io`.
    pub(crate) fn new(io: T) -> Self {
        Self {
            inner: Arc::new(Mutex::new(io)),
        }
    }

    /// A handle that writes informational responses to this connection.
    pub(crate) fn early_hints(&self) -> EarlyHints {
        EarlyHints {
            sink: Arc::new(Sink {
                io: Arc::downgrade(&self.inner),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(Pin<&mut T>) -> Poll<io::Result<R>>) -> Poll<io::Result<R>>
    where
        T: Unpin,
    {
        match self.inner.lock() {
            Ok(mut io) => f(Pin::new(&mut *io)),
            Err(_) => Poll::Ready(Err(io::Error::other("connection stream lock poisoned"))),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for SharedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_read(cx, buf))
    }
}

impl<T: AsyncWrite + Unpin + Send + 'static> AsyncWrite for SharedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|io| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|io| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.lock().is_ok_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_shutdown(cx))
    }
}

trait RawWrite: Send + Sync {
    fn poll_write_some(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

struct Sink<T> {
    io: std::sync::Weak<Mutex<T>>,
}

impl<T: AsyncWrite + Unpin + Send> RawWrite for Sink<T> {
    fn poll_write_some(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.upgrade() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let Ok(mut io) = io.lock() else {
            return Poll::Ready(Err(io::Error::other("connection stream lock poisoned")));
        };
        Pin::new(&mut *io).poll_write(cx, buf)
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(io) = self.io.upgrade() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let Ok(mut io) = io.lock() else {
            return Poll::Ready(Err(io::Error::other("connection stream lock poisoned")));
        };
        Pin::new(&mut *io).poll_flush(cx)
    }
}

/// Sends informational responses on the connection of one HTTP/1.1 request: a request
/// extension, present only where 1xx responses can be sent.
#[derive(Clone)]
pub(crate) struct EarlyHints {
    sink: Arc<dyn RawWrite>,
}

impl fmt::Debug for EarlyHints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EarlyHints").finish_non_exhaustive()
    }
}

impl EarlyHints {
    /// Writes `HTTP/1.1 {status}` with `headers` to the connection now.
    pub(crate) fn send(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> impl Future<Output = io::Result<()>> + use<> {
        let bytes = encode(status, headers);
        let sink = Arc::clone(&self.sink);
        let mut written = 0;
        std::future::poll_fn(move |cx| {
            while written < bytes.len() {
                match sink.poll_write_some(cx, &bytes[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            sink.poll_flush(cx)
        })
    }
}

/// The bytes of an HTTP/1.1 informational response.
pub(crate) fn encode(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + headers.len() * 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let reason = match status.as_u16() {
        103 => "Early Hints",
        _ => status.canonical_reason().unwrap_or("Informational"),
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn encodes_a_103() {
        let mut headers = HeaderMap::new();
        headers.append("link", "</app.css>; rel=preload; as=style".parse().unwrap());
        let bytes = encode(StatusCode::from_u16(103).unwrap(), &headers);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload; as=style\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn writes_through_the_shared_stream() {
        let (client, server) = tokio::io::duplex(1024);
        let shared = SharedIo::new(server);
        let hints = shared.early_hints();
        hints
            .send(StatusCode::from_u16(103).unwrap(), &HeaderMap::new())
            .await
            .unwrap();
        let mut client = client;
        let mut buf = vec![0u8; 64];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 103 Early Hints\r\n\r\n");
        drop(shared);
        assert!(
            hints
                .send(StatusCode::from_u16(103).unwrap(), &HeaderMap::new())
                .await
                .is_err()
        );
    }
}
