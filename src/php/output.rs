//! The worker's side of one running request: it receives PHP's headers and output and
//! decides when they leave. Output is held until the script flushes, a chunk fills, or the
//! script ends; a response that ends before anything had to leave goes out whole, with a
//! Content-Length, through one channel message.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::body::RequestBody;
use super::response::{PhpBody, ResponseHead, ResponseStart, add_header_line};
use super::timings::PhpTimings;
use crate::ffi::{self, PhpLogLevel, SapiHandler};

/// Output is sent on once this much is held.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks in flight per streaming response before the script waits (back-pressure).
pub const STREAM_DEPTH: usize = 8;

/// PHP's output for one request, as the worker sees it.
pub struct OutputWriter {
    start: Option<oneshot::Sender<ResponseStart>>,
    headers: HeaderMap,
    head: Option<ResponseHead>,
    stream: Option<mpsc::Sender<Bytes>>,
    buf: BytesMut,
    client_gone: bool,
    body: RequestBody,
    tag: String,
    timings: Option<PhpTimings>,
}

impl OutputWriter {
    /// A writer that answers on `start`, feeds PHP `body`, and tags log lines with `tag`.
    pub fn new(start: oneshot::Sender<ResponseStart>, body: RequestBody, tag: String) -> Self {
        Self {
            start: Some(start),
            headers: HeaderMap::new(),
            head: None,
            stream: None,
            buf: BytesMut::new(),
            client_gone: false,
            body,
            tag,
            timings: None,
        }
    }

    /// Profiling figures to send with the head (set before the script runs, completed
    /// after it, before [`OutputWriter::finish`]).
    pub fn set_timings(&mut self, timings: PhpTimings) {
        self.timings = Some(timings);
    }

    /// Ends the response: sends what is held, and a 500 if PHP never sent a head.
    pub fn finish(mut self) {
        if let Some(start) = self.start.take() {
            let head = self
                .head
                .take()
                .unwrap_or_else(ResponseHead::internal_error);
            let body = PhpBody::full(self.buf.split().freeze());
            let timings = self.timings;
            // A receiver that is gone means the client left; nothing to do.
            let _ = start.send(ResponseStart {
                head,
                body,
                timings,
            });
        } else if let Some(stream) = self.stream.take()
            && !self.buf.is_empty()
            && !self.client_gone
        {
            let _ = stream.blocking_send(self.buf.split().freeze());
        }
    }

    /// Whether the client went away while the script ran.
    pub fn client_gone(&self) -> bool {
        self.client_gone
    }

    /// Sends what is held now, starting the stream if it has not started.
    fn send_held(&mut self) {
        let chunk = self.buf.split().freeze();
        if let Some(start) = self.start.take() {
            let Some(head) = self.head.take() else {
                return;
            };
            let (tx, rx) = mpsc::channel(STREAM_DEPTH);
            let first = (!chunk.is_empty()).then_some(chunk);
            let body = PhpBody::Stream { first, rx };
            let timings = self.timings;
            if start
                .send(ResponseStart {
                    head,
                    body,
                    timings,
                })
                .is_err()
            {
                self.client_gone = true;
            } else {
                self.stream = Some(tx);
            }
        } else if let Some(stream) = &self.stream
            && !chunk.is_empty()
            && stream.blocking_send(chunk).is_err()
        {
            self.client_gone = true;
        }
    }
}

impl SapiHandler for OutputWriter {
    fn write(&mut self, data: &[u8]) -> bool {
        if self.client_gone {
            return false;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_SIZE && (self.head.is_some() || self.stream.is_some()) {
            self.send_held();
        }
        !self.client_gone
    }

    fn flush(&mut self) {
        if !self.client_gone && (self.head.is_some() || self.stream.is_some()) {
            self.send_held();
        }
    }

    fn header(&mut self, line: &[u8]) {
        if let Err(reason) = add_header_line(&mut self.headers, line) {
            tracing::debug!(
                request = %self.tag,
                header = %String::from_utf8_lossy(line),
                reason,
                "PHP header not sent"
            );
        }
    }

    fn send_headers(&mut self, status: u16) {
        let status = match status {
            0 => StatusCode::OK,
            200..=999 => StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            _ => {
                tracing::warn!(request = %self.tag, status, "PHP set a status that cannot be final; answering 500");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        self.head = Some(ResponseHead {
            status,
            headers: std::mem::take(&mut self.headers),
        });
    }

    fn read_post(&mut self, buf: &mut [u8]) -> usize {
        self.body.read(buf)
    }

    fn log(&mut self, level: PhpLogLevel, message: &str) {
        ffi::log_php(level, message, Some(&self.tag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn writer() -> (OutputWriter, oneshot::Receiver<ResponseStart>) {
        let (tx, rx) = oneshot::channel();
        (
            OutputWriter::new(tx, RequestBody::Empty, "GET /t".into()),
            rx,
        )
    }

    #[tokio::test]
    async fn a_short_response_goes_out_whole() {
        let (mut w, rx) = writer();
        w.header(b"X-A: 1");
        w.send_headers(201);
        assert!(w.write(b"hello "));
        assert!(w.write(b"world"));
        std::thread::spawn(move || w.finish()).join().unwrap();
        let start = rx.await.unwrap();
        assert_eq!(start.head.status, 201);
        assert_eq!(start.head.headers["x-a"], "1");
        assert!(matches!(start.body, PhpBody::Full(_)));
        let body = start.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello world");
    }

    #[tokio::test]
    async fn flush_starts_the_stream() {
        let (mut w, rx) = writer();
        let worker = std::thread::spawn(move || {
            w.send_headers(200);
            w.write(b"first");
            w.flush();
            w.write(b"second");
            w.finish();
        });
        let start = rx.await.unwrap();
        let PhpBody::Stream { first, mut rx } = start.body else {
            panic!("expected a stream");
        };
        assert_eq!(first.as_deref(), Some(&b"first"[..]));
        assert_eq!(rx.recv().await.as_deref(), Some(&b"second"[..]));
        worker.join().unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn no_head_means_500() {
        let (w, rx) = writer();
        std::thread::spawn(move || w.finish()).join().unwrap();
        assert_eq!(rx.await.unwrap().head.status, 500);
    }

    #[test]
    fn a_gone_client_is_reported() {
        let (mut w, rx) = writer();
        drop(rx);
        w.send_headers(200);
        w.write(b"x");
        w.flush();
        assert!(w.client_gone());
        assert!(!w.write(b"more"));
    }
}
