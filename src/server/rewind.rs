//! A connection stream with bytes put back in front of it: what the server read before
//! hyper took the connection (the bytes that tell HTTP/2 from HTTP/1), or what hyper had
//! read but not used when it gave the connection back.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes [`Rewind::poll_read_more`] reads at once: enough for a request head.
const READ_MORE: usize = 4096;

/// `inner`, read after `unread`.
#[derive(Debug)]
pub(super) struct Rewind<T> {
    unread: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(super) fn new(inner: T) -> Self {
        Self {
            unread: Bytes::new(),
            inner,
        }
    }

    /// Bytes that were read and are to be read again.
    pub(super) fn unread(&self) -> &[u8] {
        &self.unread
    }

    /// Puts `bytes` back: the next reads return them first, before anything put back
    /// earlier and still unread.
    pub(super) fn put_back(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.unread.is_empty() {
            self.unread = bytes;
            return;
        }
        let mut joined = BytesMut::with_capacity(bytes.len() + self.unread.len());
        joined.extend_from_slice(&bytes);
        joined.extend_from_slice(&self.unread);
        self.unread = joined.freeze();
    }
}

impl<T: AsyncRead + Unpin> Rewind<T> {
    /// Reads what the stream has (up to a few KiB) and puts it back, so that it is read
    /// again: waits for bytes without a buffer of its own in between. `Ok(false)` when the
    /// stream has ended.
    pub(super) fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut storage = [0u8; READ_MORE];
        let mut buf = ReadBuf::new(&mut storage);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        let mut unread = BytesMut::with_capacity(self.unread.len() + buf.filled().len());
        unread.extend_from_slice(&self.unread);
        unread.extend_from_slice(buf.filled());
        self.unread = unread.freeze();
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unread.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn put_back_bytes_come_first_in_order() {
        let mut io = Rewind::new(&b" world"[..]);
        io.put_back(Bytes::from_static(b"llo"));
        io.put_back(Bytes::from_static(b"he"));
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn read_more_keeps_what_it_read_for_the_next_reader() {
        let mut io = Rewind::new(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        io.put_back(Bytes::from_static(b">"));
        let more = std::future::poll_fn(|cx| io.poll_read_more(cx))
            .await
            .unwrap();
        assert!(more);
        assert_eq!(io.unread(), b">GET / HTTP/1.1\r\n\r\n");
        let ended = std::future::poll_fn(|cx| io.poll_read_more(cx))
            .await
            .unwrap();
        assert!(!ended);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b">GET / HTTP/1.1\r\n\r\n");
    }
}
