//! The worker's side of one running request: it receives PHP's headers and output and
//! decides when they leave. Output is held until the script flushes, a chunk fills, or the
//! script ends; a response that ends before anything had to leave goes out whole, with a
//! Content-Length, through one channel message. It also answers the tokio_* PHP functions.

use std::sync::Arc;

use bytes::BytesMut;
use http::{HeaderMap, StatusCode, header};
use tokio::sync::{mpsc, oneshot};

use super::body::RequestBody;
use super::job::Control;
use super::response::{
    Chunk, CutShort, InvalidStatus, PhpBody, ResponseHead, ResponseStart, add_header_line,
    response_status, status_header_value,
};
use crate::context::PhpTimings;
use crate::ffi::{self, PhpLogLevel, SapiHandler};
use crate::log_throttle::Throttle;

/// Who is running the request, for the tokio_* PHP functions.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The request id.
    pub request_id: String,
    /// The worker thread's number.
    pub worker: usize,
    /// How many workers the pool has.
    pub workers: usize,
    /// State shared with the HTTP side.
    pub control: Arc<Control>,
    /// Where informational (1xx) responses go, when the connection can carry them.
    pub informational: Option<mpsc::UnboundedSender<ResponseHead>>,
}

impl RequestContext {
    /// A context for a request run outside a pool (tests).
    #[cfg(test)]
    pub(crate) fn detached(request_id: &str) -> Self {
        Self {
            request_id: request_id.to_owned(),
            worker: 0,
            workers: 1,
            control: Arc::new(Control::default()),
            informational: None,
        }
    }
}

/// Output is sent on once this much is held.
pub(crate) const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks in flight per streaming response before the script waits (back-pressure).
pub(crate) const STREAM_DEPTH: usize = 8;

/// PHP's output for one request, as the worker sees it.
pub(crate) struct OutputWriter {
    start: Option<oneshot::Sender<ResponseStart>>,
    headers: HeaderMap,
    /// The script's `Status:` header, if it sent one.
    status_header: Option<Vec<u8>>,
    head: Option<ResponseHead>,
    /// A started stream's sender: dropping it ends the body.
    stream: Option<mpsc::Sender<Chunk>>,
    buf: BytesMut,
    client_gone: bool,
    finished: bool,
    body: RequestBody,
    tag: String,
    context: RequestContext,
    informational_headers: HeaderMap,
    timings: Option<PhpTimings>,
}

impl OutputWriter {
    /// A writer that answers on `start`, feeds PHP `body`, and tags log lines with `tag`.
    pub(crate) fn new(
        start: oneshot::Sender<ResponseStart>,
        body: RequestBody,
        tag: String,
        context: RequestContext,
    ) -> Self {
        Self {
            start: Some(start),
            headers: HeaderMap::new(),
            status_header: None,
            head: None,
            stream: None,
            buf: BytesMut::new(),
            client_gone: false,
            finished: false,
            body,
            tag,
            context,
            informational_headers: HeaderMap::new(),
            timings: None,
        }
    }

    /// Profiling figures to send with the head (set before the script runs, completed
    /// after it, before [`OutputWriter::finish`]).
    pub(crate) fn set_timings(&mut self, timings: PhpTimings) {
        self.timings = Some(timings);
    }

    /// Ends the response: sends what is held, and a 500 if PHP never sent a head. After
    /// a fatal error (`fatal`) a response that had already started ends as cut short
    /// ([`CutShort`]), not as complete.
    pub(crate) fn finish(mut self, fatal: bool) {
        let streaming = self.stream.is_some() && !self.finished;
        self.end_response();
        if fatal
            && streaming
            && let Some(stream) = self.stream.take()
        {
            static CUT_SHORT: Throttle = Throttle::per_second(5);
            if let Some(suppressed) = CUT_SHORT.admit() {
                tracing::warn!(
                    request = %self.tag,
                    suppressed,
                    "fatal error after the response started; leaving it incomplete (no final chunk, or a reset stream)"
                );
            }
            let _ = stream.blocking_send(Err(CutShort));
        }
    }

    /// Sends everything held and closes the body; later output is discarded.
    fn end_response(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
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
        } else if let Some(stream) = &self.stream
            && !self.buf.is_empty()
            && !self.client_gone
        {
            let _ = stream.blocking_send(Ok(self.buf.split().freeze()));
        }
        self.buf.clear();
    }

    /// Whether the client went away while the script ran.
    #[cfg(test)]
    pub(crate) fn client_gone(&self) -> bool {
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
            let body = PhpBody::Stream {
                first,
                rx,
                job: None,
                deadline: None,
                cut_short: false,
            };
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
            && stream.blocking_send(Ok(chunk)).is_err()
        {
            self.client_gone = true;
        }
    }
}

impl SapiHandler for OutputWriter {
    fn write(&mut self, data: &[u8]) -> bool {
        if self.finished {
            // After tokio_finish_request(): the client has its response; output is dropped.
            return true;
        }
        if self.client_gone || self.context.control.client_gone() {
            self.client_gone = true;
            return false;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_SIZE && (self.head.is_some() || self.stream.is_some()) {
            self.send_held();
        }
        !self.client_gone
    }

    fn flush(&mut self) {
        if !self.finished && !self.client_gone && (self.head.is_some() || self.stream.is_some()) {
            self.send_held();
        }
    }

    fn header(&mut self, line: &[u8]) {
        if let Some(value) = status_header_value(line) {
            // The CGI status header names the status (the first one, as php-fpm).
            if self.status_header.is_none() {
                self.status_header = Some(value.to_vec());
            }
            return;
        }
        if let Err(reason) = add_header_line(&mut self.headers, line) {
            tracing::debug!(
                request = %self.tag,
                header = %String::from_utf8_lossy(line),
                reason,
                "PHP header not sent"
            );
        }
    }

    fn send_headers(&mut self, status: i32, status_line: Option<&[u8]>) {
        if self.finished {
            return;
        }
        let status_header = self.status_header.take();
        let (status, reason) = match response_status(status, status_line, status_header.as_deref())
        {
            Ok(decided) => decided,
            Err(InvalidStatus(status)) => {
                tracing::warn!(request = %self.tag, status, "PHP set a status that cannot be final; answering 500");
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        };
        let mut headers = std::mem::take(&mut self.headers);
        if status == StatusCode::NOT_MODIFIED {
            // As php-fpm: a 304 describes no body, so no Content-Type.
            headers.remove(header::CONTENT_TYPE);
        }
        self.head = Some(ResponseHead {
            status,
            reason,
            headers,
        });
    }

    fn read_post(&mut self, buf: &mut [u8]) -> usize {
        self.body.read(buf)
    }

    fn log(&mut self, level: PhpLogLevel, message: &str) {
        ffi::log_php(level, message, Some(&self.tag));
    }

    fn request_id(&self) -> &str {
        &self.context.request_id
    }

    fn worker_id(&self) -> i64 {
        i64::try_from(self.context.worker).unwrap_or(i64::MAX)
    }

    fn workers(&self) -> i64 {
        i64::try_from(self.context.workers).unwrap_or(i64::MAX)
    }

    fn finish_request(&mut self) -> bool {
        if self.finished {
            return false;
        }
        self.end_response();
        // The response is complete now, whatever the script does next.
        self.stream = None;
        true
    }

    fn heartbeat(&mut self, seconds: u64) -> bool {
        self.context.control.heartbeat(seconds)
    }

    fn informational_header(&mut self, line: &[u8]) {
        let mut parsed = HeaderMap::new();
        if add_header_line(&mut parsed, line).is_ok() {
            // Early Hints carry what the client can act on early: Link headers.
            for (name, value) in parsed.iter() {
                if name == header::LINK {
                    self.informational_headers
                        .append(name.clone(), value.clone());
                }
            }
        }
    }

    fn send_informational(&mut self, status: u16) -> bool {
        let headers = std::mem::take(&mut self.informational_headers);
        let (Some(sender), Ok(status)) =
            (&self.context.informational, StatusCode::from_u16(status))
        else {
            return false;
        };
        if self.start.is_none()
            || !status.is_informational()
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return false;
        }
        sender.send(ResponseHead::new(status, headers)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    fn writer() -> (OutputWriter, oneshot::Receiver<ResponseStart>) {
        let (tx, rx) = oneshot::channel();
        (
            OutputWriter::new(
                tx,
                RequestBody::Empty,
                "GET /t".into(),
                RequestContext::detached("req-1"),
            ),
            rx,
        )
    }

    #[tokio::test]
    async fn a_short_response_goes_out_whole() {
        let (mut w, rx) = writer();
        w.header(b"X-A: 1");
        w.send_headers(201, None);
        assert!(w.write(b"hello "));
        assert!(w.write(b"world"));
        std::thread::spawn(move || w.finish(false)).join().unwrap();
        let start = rx.await.unwrap();
        assert_eq!(start.head.status, 201);
        assert_eq!(start.head.headers["x-a"], "1");
        assert!(matches!(start.body, PhpBody::Full(_)));
        let body = start.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello world");
    }

    #[tokio::test]
    async fn a_status_header_sets_the_status_and_is_not_sent() {
        let (mut w, rx) = writer();
        w.header(b"Status: 404 Gone Fishing");
        w.header(b"Status: 500 Second");
        w.header(b"Content-Type: text/plain");
        w.send_headers(200, None);
        std::thread::spawn(move || w.finish(false)).join().unwrap();
        let head = rx.await.unwrap().head;
        assert_eq!(head.status, 404);
        assert_eq!(head.reason.unwrap().as_bytes(), b"Gone Fishing");
        assert!(head.headers.get("status").is_none());
        assert_eq!(head.headers["content-type"], "text/plain");
    }

    #[tokio::test]
    async fn a_304_has_no_content_type() {
        let (mut w, rx) = writer();
        w.header(b"Content-Type: text/html");
        w.header(b"ETag: \"x\"");
        w.send_headers(304, Some(b"HTTP/1.1 304 Not Modified"));
        std::thread::spawn(move || w.finish(false)).join().unwrap();
        let head = rx.await.unwrap().head;
        assert_eq!(head.status, 304);
        assert!(head.headers.get("content-type").is_none());
        assert_eq!(head.headers["etag"], "\"x\"");
    }

    #[tokio::test]
    async fn flush_starts_the_stream() {
        let (mut w, rx) = writer();
        let worker = std::thread::spawn(move || {
            w.send_headers(200, None);
            w.write(b"first");
            w.flush();
            w.write(b"second");
            w.finish(false);
        });
        let start = rx.await.unwrap();
        let PhpBody::Stream { first, mut rx, .. } = start.body else {
            panic!("expected a stream");
        };
        assert_eq!(first.as_deref(), Some(&b"first"[..]));
        assert_eq!(rx.recv().await, Some(Ok(Bytes::from_static(b"second"))));
        worker.join().unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_fatal_error_after_the_stream_started_cuts_it_short() {
        let (mut w, rx) = writer();
        let worker = std::thread::spawn(move || {
            w.send_headers(200, None);
            w.write(b"first");
            w.flush();
            w.write(b"rest");
            w.finish(true);
        });
        let start = rx.await.unwrap();
        let PhpBody::Stream { mut rx, .. } = start.body else {
            panic!("expected a stream");
        };
        assert_eq!(rx.recv().await, Some(Ok(Bytes::from_static(b"rest"))));
        assert_eq!(rx.recv().await, Some(Err(CutShort)));
        worker.join().unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn no_head_means_500() {
        let (w, rx) = writer();
        std::thread::spawn(move || w.finish(false)).join().unwrap();
        assert_eq!(rx.await.unwrap().head.status, 500);
    }

    #[tokio::test]
    async fn finish_request_ends_the_response_and_drops_later_output() {
        let (mut w, rx) = writer();
        let worker = std::thread::spawn(move || {
            w.send_headers(200, None);
            w.write(b"done");
            assert!(w.finish_request());
            assert!(!w.finish_request());
            assert!(w.write(b"ignored"));
            w.finish(false);
        });
        let start = rx.await.unwrap();
        let body = start.body.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"done");
        worker.join().unwrap();
    }

    #[test]
    fn a_client_gone_before_output_stops_the_next_write() {
        let (mut w, _rx) = writer();
        w.context.control.set_client_gone();
        w.send_headers(200, None);
        assert!(!w.write(b"x"));
    }

    #[test]
    fn a_gone_client_is_reported() {
        let (mut w, rx) = writer();
        drop(rx);
        w.send_headers(200, None);
        w.write(b"x");
        w.flush();
        assert!(w.client_gone());
        assert!(!w.write(b"more"));
    }
}
