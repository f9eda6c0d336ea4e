//! One JSON line per request, written when the response body has been sent (or the client
//! went away), to standard output by default:
//!
//! ```json
//! {"time":"2025-01-31T12:00:00.123Z","method":"GET","path":"/index.php","query":"a=1",
//!  "status":200,"bytes":5120,"duration_ms":3.217,"client_ip":"203.0.113.7",
//!  "user_agent":"curl/8.5.0","referer":null,"request_id":"…","trace_id":null,
//!  "http_version":"HTTP/1.1","tls":false}
//! ```
//!
//! `bytes` counts the body as sent (after compression, when this layer is outside it);
//! `duration_ms` runs from the request's arrival to the body's end. The client IP follows
//! the same trusted-proxy rule as the rate limit ([`super::client_ip`]); the request id and
//! trace id come from [`super::request_id`] when that layer runs first.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use tokio_php::layers::AccessLogLayer;
//! use tokio_php::layers::access_log::AccessLogWriter;
//!
//! /// Keeps the lines instead of printing them.
//! #[derive(Debug, Clone, Default)]
//! struct Lines(Arc<Mutex<Vec<String>>>);
//!
//! impl AccessLogWriter for Lines {
//!     fn write_line(&self, line: &str) {
//!         self.0.lock().unwrap().push(line.to_owned());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lines = Lines::default();
//! let app: Router = Router::new()
//!     .route("/index.php", get(|| async { "hello" }))
//!     .layer(AccessLogLayer::new().writer(lines.clone()));
//! let response = app.oneshot(Request::get("/index.php?a=1").body(Body::empty())?).await?;
//! // The response passes through as it is; the line is written when its body has been sent.
//! assert_eq!(axum::body::to_bytes(response.into_body(), usize::MAX).await?, "hello");
//! let line: serde_json::Value = serde_json::from_str(&lines.0.lock().unwrap()[0])?;
//! assert_eq!(line["path"], "/index.php");
//! assert_eq!(line["query"], "a=1");
//! assert_eq!(line["status"], 200);
//! assert_eq!(line["bytes"], 5);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::BoxError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Request, Version, header};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::json;
use tower::{Layer, Service};

use super::client_ip::{TrustedProxies, client_ip};
use super::request_id::{RequestId, TraceContext};
use crate::context::ConnectionInfo;

/// Where access log lines go.
pub trait AccessLogWriter: fmt::Debug + Send + Sync + 'static {
    /// Writes one line (without its newline).
    fn write_line(&self, line: &str);
}

/// Standard output, one line per write.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl AccessLogWriter for Stdout {
    fn write_line(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout is not worth failing a request over.
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// Applies [`AccessLog`] to a service.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    writer: Arc<dyn AccessLogWriter>,
    trusted: TrustedProxies,
}

impl Default for AccessLogLayer {
    fn default() -> Self {
        Self {
            writer: Arc::new(Stdout),
            trusted: TrustedProxies::none(),
        }
    }
}

impl AccessLogLayer {
    /// Logs to standard output; the client IP is the peer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the lines to `writer` instead.
    pub fn writer(mut self, writer: impl AccessLogWriter) -> Self {
        self.writer = Arc::new(writer);
        self
    }

    /// Believes the forwarding headers of these proxies for `client_ip`.
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            layer: self.clone(),
        }
    }
}

/// Writes an access log line for every request `S` answers.
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    layer: AccessLogLayer,
}

impl<S> AccessLog<S> {
    /// Wraps `inner`, logging to standard output.
    pub fn new(inner: S) -> Self {
        AccessLogLayer::new().layer(inner)
    }
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let facts = RequestFacts::new(&request, &self.layer.trusted);
        ResponseFuture {
            future: self.inner.call(request),
            entry: Some(Entry {
                facts,
                writer: Arc::clone(&self.layer.writer),
                status: 0,
                bytes: 0,
            }),
        }
    }
}

/// What is known about the request when it arrives.
#[derive(Debug)]
struct RequestFacts {
    started: Instant,
    time: SystemTime,
    method: String,
    path: String,
    query: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
    request_id: Option<String>,
    trace_id: Option<String>,
    version: Version,
    tls: bool,
}

impl RequestFacts {
    fn new<B>(request: &Request<B>, trusted: &TrustedProxies) -> Self {
        let headers = request.headers();
        let extensions = request.extensions();
        Self {
            started: Instant::now(),
            time: SystemTime::now(),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            client_ip: client_ip(request, trusted).map(|ip| ip.to_string()),
            user_agent: text(headers, header::USER_AGENT),
            referer: text(headers, header::REFERER),
            request_id: extensions
                .get::<RequestId>()
                .map(|id| id.as_str().to_owned()),
            trace_id: extensions
                .get::<TraceContext>()
                .map(TraceContext::trace_id_hex),
            version: request.version(),
            tls: extensions.get::<ConnectionInfo>().is_some_and(|c| c.tls),
        }
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// One line to write, once: when the body ends or is dropped.
#[derive(Debug)]
struct Entry {
    facts: RequestFacts,
    writer: Arc<dyn AccessLogWriter>,
    status: u16,
    bytes: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let f = &self.facts;
        let line = json!({
            "time": rfc3339(f.time),
            "method": f.method,
            "path": f.path,
            "query": f.query,
            "status": self.status,
            "bytes": self.bytes,
            "duration_ms": (f.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            "client_ip": f.client_ip,
            "user_agent": f.user_agent,
            "referer": f.referer,
            "request_id": f.request_id,
            "trace_id": f.trace_id,
            "http_version": format!("{:?}", f.version),
            "tls": f.tls,
        });
        self.writer.write_line(&line.to_string());
    }
}

pin_project! {
    /// The future of [`AccessLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        entry: Option<Entry>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let Some(mut entry) = this.entry.take() else {
            return Poll::Ready(Ok(response));
        };
        entry.status = response.status().as_u16();
        Poll::Ready(Ok(response.map(|body| {
            Body::new(LoggedBody {
                inner: body,
                entry: Some(entry),
            })
        })))
    }
}

pin_project! {
    /// A body that counts what it sends and writes the log line when it ends.
    struct LoggedBody {
        #[pin]
        inner: Body,
        entry: Option<Entry>,
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(entry)) = (frame.data_ref(), this.entry.as_mut()) {
                    entry.bytes += data.len() as u64;
                }
            }
            // The end (or a failure): write the line now rather than when hyper drops us.
            _ => drop(this.entry.take()),
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `2025-01-31T12:00:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::time::Duration;
    use tower::ServiceExt;

    #[derive(Debug, Default, Clone)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl AccessLogWriter for Lines {
        fn write_line(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[tokio::test]
    async fn one_line_per_request_with_the_bytes_sent() {
        let lines = Lines::default();
        let service = AccessLogLayer::new()
            .writer(lines.clone())
            .layer(tower::service_fn(|_: Request<Body>| async {
                let mut r = Response::new(Body::from("hello"));
                *r.status_mut() = http::StatusCode::CREATED;
                Ok::<_, Infallible>(r)
            }));
        let mut request = Request::builder()
            .method("POST")
            .uri("/a/b.php?x=1")
            .header("user-agent", "tester/1")
            .header("referer", "http://example.com/")
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(RequestId::generate());
        request.extensions_mut().insert(ConnectionInfo {
            remote: "192.0.2.9:5000".parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
            tls: true,
        });
        let response = service.oneshot(request).await.unwrap();
        assert!(
            lines.0.lock().unwrap().is_empty(),
            "written before the body ends"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        let lines = lines.0.lock().unwrap();
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b.php");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes"], 5);
        assert_eq!(v["client_ip"], "192.0.2.9");
        assert_eq!(v["user_agent"], "tester/1");
        assert_eq!(v["referer"], "http://example.com/");
        assert_eq!(v["request_id"].as_str().unwrap().len(), 36);
        assert_eq!(v["trace_id"], serde_json::Value::Null);
        assert_eq!(v["http_version"], "HTTP/1.1");
        assert_eq!(v["tls"], true);
        assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
