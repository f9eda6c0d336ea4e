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
//! use axum::{Extension, Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use tokio_php::layers::SetRequestIdLayer;
//! use tokio_php::layers::request_id::RequestId;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/", get(|Extension(id): Extension<RequestId>| async move {
//!         id.as_str().to_owned()
//!     }))
//!     .layer(SetRequestIdLayer::new());
//! // No id sent: a new one, seen by the handler and echoed on the response.
//! let response = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
//! let echoed = response.headers()["x-request-id"].to_str()?.to_owned();
//! assert_eq!(echoed.len(), 36);
//! assert_eq!(axum::body::to_bytes(response.into_body(), usize::MAX).await?, echoed);
//! // A sane id sent by the client (or a proxy) is kept.
//! let request = Request::get("/").header("x-request-id", "abc-123").body(Body::empty())?;
//! assert_eq!(app.oneshot(request).await?.headers()["x-request-id"], "abc-123");
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

pub use crate::context::{MAX_REQUEST_ID_LEN, RequestId, TRACEPARENT, TraceContext, X_REQUEST_ID};

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

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
