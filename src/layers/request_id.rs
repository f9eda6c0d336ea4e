//! Gives every request an id and a place in a distributed trace.
//!
//! - `X-Request-ID`: kept when the client (or a proxy) sent a sane one — printable ASCII, at
//!   most 128 bytes — else a new one is generated. The request carries it on, as the header
//!   (PHP sees `$_SERVER['HTTP_X_REQUEST_ID']`) and as the [`RequestId`] extension
//!   ([`crate::PhpService`] adds `$_SERVER['REQUEST_ID']`); the response echoes it.
//! - W3C `traceparent`: a valid one is accepted as the parent of this server's own span. The
//!   request carries on a `traceparent` naming this server's span as the parent, so what PHP
//!   calls next joins the same trace; the [`TraceContext`] extension holds the figures.
//! - Every log line written while the request is handled — by any layer, the PHP service,
//!   and the PHP worker running its script — is inside a `request` span with `id`, and
//!   with `trace_id` and `span_id` when a trace came in.
//!
//! # Example
//!
//! ```
//! use axum::{Extension, Router, routing::get};
//! use tokio_php::layers::SetRequestIdLayer;
//! use tokio_php::layers::request_id::RequestId;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|Extension(id): Extension<RequestId>| async move {
//!         format!("you are {}", id.as_str())
//!     }))
//!     .layer(SetRequestIdLayer::new());
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use http::{HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The `X-Request-ID` header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The longest request id kept from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Request extension: the request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id, if `value` is a sane one: 1 to 128 bytes of printable ASCII.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        is_sane(value.as_bytes()).then(|| Self(value.clone()))
    }

    /// A new random id (UUID version 4 format).
    pub fn generate() -> Self {
        let bits = fastrand::u128(..);
        // Version 4, variant 10xx, as in RFC 9562.
        let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        Self(HeaderValue::from_bytes(&uuid_text(bits)).unwrap_or(HeaderValue::from_static("-")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Request extension: where this request sits in a W3C trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, as the caller named it.
    pub trace_id: [u8; 16],
    /// The caller's span: this server's parent.
    pub parent_id: [u8; 8],
    /// This server's span for the request.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled), passed on unchanged.
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` value (`00-<trace>-<parent>-<flags>`) and starts a new span
    /// under it. None if it is not valid (an invalid one is ignored, as the spec says).
    pub fn from_traceparent(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let mut parts = text.splitn(5, '-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        let version = u8::from_str_radix(version, 16).ok()?;
        // Version 00 has exactly four fields; later versions may append more.
        if version == 0 && rest.is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let parent_id: [u8; 8] = hex_bytes(parent)?;
        let [flags] = hex_bytes::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            span_id: new_span_id(),
            flags,
        })
    }

    /// The trace id in lower-case hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// This server's span id in lower-case hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// The `traceparent` to pass on: this server's span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Exactly `2 * N` lower-case hex digits.
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N
        || !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Applies [`SetRequestId`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetRequestIdLayer;

impl SetRequestIdLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for SetRequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId::new(inner)
    }
}

/// Sets the request id and trace context, runs `S` inside the request's span, and echoes
/// the id on the response.
#[derive(Debug, Clone, Copy)]
pub struct SetRequestId<S> {
    inner: S,
}

impl<S> SetRequestId<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<B>> for SetRequestId<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let headers = request.headers_mut();
        let id = {
            let mut sent = headers.get_all(X_REQUEST_ID).iter();
            match (sent.next(), sent.next()) {
                (Some(one), None) => RequestId::from_header(one),
                _ => None,
            }
        }
        .unwrap_or_else(RequestId::generate);
        headers.insert(X_REQUEST_ID, id.header_value().clone());

        let trace = {
            let mut sent = headers.get_all(TRACEPARENT).iter();
            match (sent.next(), sent.next()) {
                (Some(one), None) => TraceContext::from_traceparent(one.as_bytes()),
                _ => None,
            }
        };
        let span = tracing::info_span!(
            "request",
            id = id.as_str(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        match trace {
            Some(trace) => {
                span.record("trace_id", trace.trace_id_hex());
                span.record("span_id", trace.span_id_hex());
                if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
                    headers.insert(TRACEPARENT, value);
                }
                request.extensions_mut().insert(trace);
            }
            None => {
                // An invalid or repeated traceparent is not passed on.
                headers.remove(TRACEPARENT);
            }
        }
        let echo = id.header_value().clone();
        request.extensions_mut().insert(id);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture { future, span, echo }
    }
}

pin_project! {
    /// The future of [`SetRequestId`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        span: tracing::Span,
        echo: HeaderValue,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = ready!(this.future.poll(cx))?;
        response
            .headers_mut()
            .insert(X_REQUEST_ID, this.echo.clone());
        Poll::Ready(Ok(response))
    }
}

/// `bits` as a UUID's text: 8-4-4-4-12 lowercase hex digits, written without formatting
/// machinery (this runs on every request).
fn uuid_text(bits: u128) -> [u8; 36] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; 36];
    let mut nibble = 0;
    for (i, byte) in text.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        *byte = DIGITS[((bits >> (124 - 4 * nibble)) & 0xf) as usize];
        nibble += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[test]
    fn sane_ids_are_printable_ascii_up_to_128_bytes() {
        assert!(is_sane(b"abc-123"));
        assert!(is_sane(b"with space and {json:1}"));
        assert!(is_sane(&[b'a'; 128]));
        assert!(!is_sane(&[b'a'; 129]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"tab\there"));
        assert!(!is_sane("caf\u{e9}".as_bytes()));
        assert!(!is_sane(b"del\x7f"));
    }

    #[test]
    fn uuid_text_is_the_hex_digits_in_groups() {
        let bits = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(&uuid_text(bits), b"01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(&uuid_text(u128::MAX)[..9], b"ffffffff-");
    }

    #[test]
    fn generated_ids_look_like_uuids_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        let text = a.as_str();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "{text}");
        assert!("89ab".contains(&text[19..20]), "{text}");
        assert!(is_sane(text.as_bytes()));
    }

    #[test]
    fn traceparent_parses_by_the_spec() {
        let t = TraceContext::from_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(t.flags, 1);
        assert_ne!(t.span_id, t.parent_id);
        let passed_on = t.traceparent();
        assert!(passed_on.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(passed_on.ends_with("-01"));
        assert!(passed_on.contains(&t.span_id_hex()));
        // A later version may carry more fields.
        assert!(
            TraceContext::from_traceparent(
                b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
            )
            .is_some()
        );
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"garbage",
            b"",
        ] {
            assert!(
                TraceContext::from_traceparent(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    async fn echo_headers(request: Request<Body>) -> Result<Response, std::convert::Infallible> {
        let id = request.extensions().get::<RequestId>().cloned();
        let trace = request.extensions().get::<TraceContext>().copied();
        let mut response = Response::new(Body::empty());
        if let Some(tp) = request.headers().get(TRACEPARENT) {
            response
                .headers_mut()
                .insert("x-seen-traceparent", tp.clone());
        }
        if let Some(id) = id {
            response
                .headers_mut()
                .insert("x-seen-id", id.header_value().clone());
        }
        if let Some(trace) = trace {
            response.headers_mut().insert(
                "x-seen-span",
                HeaderValue::from_str(&trace.span_id_hex()).unwrap(),
            );
        }
        Ok(response)
    }

    #[tokio::test]
    async fn a_sane_id_is_kept_and_echoed() {
        let service = SetRequestIdLayer::new().layer(tower::service_fn(echo_headers));
        let request = Request::builder()
            .header("x-request-id", "client-id-1")
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.headers()["x-request-id"], "client-id-1");
        assert_eq!(response.headers()["x-seen-id"], "client-id-1");
    }

    #[tokio::test]
    async fn an_insane_id_is_replaced() {
        let service = SetRequestIdLayer::new().layer(tower::service_fn(echo_headers));
        let request = Request::builder()
            .header("x-request-id", "x".repeat(200))
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(response.headers()["x-seen-id"], id);
    }

    #[tokio::test]
    async fn traceparent_is_passed_on_with_this_span_as_parent() {
        let service = SetRequestIdLayer::new().layer(tower::service_fn(echo_headers));
        let request = Request::builder()
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let seen = response.headers()["x-seen-traceparent"].to_str().unwrap();
        let span = response.headers()["x-seen-span"].to_str().unwrap();
        assert_eq!(
            seen,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01")
        );

        let service = SetRequestIdLayer::new().layer(tower::service_fn(echo_headers));
        let request = Request::builder()
            .header("traceparent", "nonsense")
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert!(response.headers().get("x-seen-traceparent").is_none());
    }
}
