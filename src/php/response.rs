//! A PHP response on its way out: the head (status and headers, parsed from PHP's header
//! lines) and the body, either complete (the script ended before anything had to be sent)
//! or streamed chunk by chunk as the script flushes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::control::ClientGuard;
use super::timings::PhpTimings;

/// Status and headers of a PHP response.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status PHP set (200 unless the script or an error changed it).
    pub status: StatusCode,
    /// The headers the script set, less those the server owns (framing, hop-by-hop).
    pub headers: HeaderMap,
}

impl ResponseHead {
    /// The head of a response PHP never produced: 500, no headers.
    pub fn internal_error() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: HeaderMap::new(),
        }
    }
}

/// What the worker hands to the HTTP side when the response starts.
#[derive(Debug)]
pub struct ResponseStart {
    /// Status and headers.
    pub head: ResponseHead,
    /// The body, complete or streaming.
    pub body: PhpBody,
    /// Profiling figures, when the request asked for them ([`super::CollectTimings`]).
    pub timings: Option<PhpTimings>,
}

/// Headers a script may set that the server must own: a wrong Content-Length or a
/// Transfer-Encoding would desynchronise the connection, and hop-by-hop headers are illegal
/// in HTTP/2.
pub fn is_server_owned(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Parses one PHP header line (`Name: value`) into the map. Lines that are not valid HTTP
/// headers, and server-owned headers, are skipped; the reason is returned for the log.
pub fn add_header_line(headers: &mut HeaderMap, line: &[u8]) -> Result<(), &'static str> {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return Err("no colon");
    };
    let name = HeaderName::from_bytes(trim(&line[..colon])).map_err(|_| "invalid name")?;
    if is_server_owned(&name) {
        return Err("set by the server");
    }
    let value = HeaderValue::from_bytes(trim(&line[colon + 1..])).map_err(|_| "invalid value")?;
    headers.append(name, value);
    Ok(())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// The body of a PHP response.
#[derive(Debug)]
pub enum PhpBody {
    /// Everything the script wrote, known before the head went out.
    Full(Option<Bytes>),
    /// Chunks as the script flushes them; ends when the worker drops its sender.
    Stream {
        /// Output produced before the stream started.
        first: Option<Bytes>,
        /// The rest.
        rx: mpsc::Receiver<Bytes>,
        /// Tells the worker the client left if the body is dropped before its end.
        guard: Option<ClientGuard>,
        /// When the stream is cut off (server-sent events: `SSE_TIMEOUT`).
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl PhpBody {
    /// A complete body.
    pub fn full(data: Bytes) -> Self {
        Self::Full((!data.is_empty()).then_some(data))
    }
}

impl http_body::Body for PhpBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Stream {
                first,
                rx,
                guard,
                deadline,
            } => {
                if let Some(data) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(sleep) = deadline.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    // Ended here: the armed guard tells the script, which stops at its next
                    // output.
                    tracing::info!("event stream reached SSE_TIMEOUT; ending it");
                    rx.close();
                    return Poll::Ready(None);
                }
                let polled = rx.poll_recv(cx);
                if let (Poll::Ready(None), Some(guard)) = (&polled, guard.as_mut()) {
                    guard.disarm();
                }
                polled.map(|chunk| chunk.map(|d| Ok(Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Stream { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_parse_and_repeat() {
        let mut h = HeaderMap::new();
        add_header_line(&mut h, b"Content-Type: text/plain").unwrap();
        add_header_line(&mut h, b"Set-Cookie: a=1").unwrap();
        add_header_line(&mut h, b"Set-Cookie:b=2  ").unwrap();
        assert_eq!(h["content-type"], "text/plain");
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn framing_headers_are_the_servers() {
        let mut h = HeaderMap::new();
        assert!(add_header_line(&mut h, b"Content-Length: 5").is_err());
        assert!(add_header_line(&mut h, b"Transfer-Encoding: chunked").is_err());
        assert!(add_header_line(&mut h, b"Connection: close").is_err());
        assert!(add_header_line(&mut h, b"no colon here").is_err());
        assert!(add_header_line(&mut h, b"Bad Name: x").is_err());
        assert!(h.is_empty());
    }
}
