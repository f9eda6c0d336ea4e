//! HTTP metrics through axum-prometheus: requests by method, status and endpoint, their
//! duration histogram, and requests in flight (`axum_http_requests_total`,
//! `axum_http_requests_duration_seconds`, `axum_http_requests_pending`).
//!
//! The layer only records, through the `metrics` facade: the figures reach whichever
//! recorder the process installed ([`crate::metrics::install_recorder`] installs tokio_php's
//! when none is). It never installs one itself, so a host application keeps its own.
//!
//! The endpoint label is the route's [`MatchedPath`](axum::extract::MatchedPath); requests
//! no route matched (PHP behind `fallback_service`) share [`FALLBACK_ENDPOINT`], so random
//! URLs cannot grow the number of series without bound.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tokio_php::layers::MetricsLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Once per process, unless the application installs a recorder of its own.
//! tokio_php::metrics::install_recorder();
//! let app: Router = Router::new()
//!     .route("/items/{id}", get(|| async { "item" }))
//!     .layer(MetricsLayer::new());
//! let response = app.oneshot(Request::get("/items/7").body(Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(axum::body::to_bytes(response.into_body(), usize::MAX).await?, "item");
//! // Counted under the route, not the path.
//! let metrics = tokio_php::metrics::render_http();
//! assert!(metrics.contains(
//!     r#"axum_http_requests_total{method="GET",status="200",endpoint="/items/{id}"} 1"#
//! ));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use axum_prometheus::{EndpointLabel, PrometheusMetricLayer, PrometheusMetricLayerBuilder};
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The endpoint label of requests that matched no route.
pub const FALLBACK_ENDPOINT: &str = "fallback";

/// Applies [`Metrics`] to a service.
#[derive(Clone)]
pub struct MetricsLayer {
    inner: PrometheusMetricLayer<'static>,
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer").finish_non_exhaustive()
    }
}

impl MetricsLayer {
    /// The layer, labelling endpoints by matched route.
    pub fn new() -> Self {
        Self {
            inner: PrometheusMetricLayerBuilder::new()
                .with_endpoint_label_type(EndpointLabel::MatchedPathWithFallbackFn(
                    fallback_endpoint,
                ))
                .build(),
        }
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

fn fallback_endpoint(_path: &str) -> String {
    FALLBACK_ENDPOINT.to_owned()
}

type Inner<S> = <PrometheusMetricLayer<'static> as Layer<S>>::Service;

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner: self.inner.layer(inner),
        }
    }
}

/// Records each request's metrics around `S`.
#[derive(Clone)]
pub struct Metrics<S> {
    inner: Inner<S>,
}

impl<S> Metrics<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        MetricsLayer::new().layer(inner)
    }
}

impl<S> std::fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Metrics<S>
where
    Inner<S>: Service<Request<B>, Response = http::Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = <Inner<S> as Service<Request<B>>>::Error;
    type Future = ResponseFuture<<Inner<S> as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The future of [`Metrics`]: the response, its body still recording.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|result| result.map(|response| response.map(Body::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_and_unmatched_ones_share_a_label() {
        crate::metrics::install_recorder();
        let Some(handle) = crate::metrics::recorder_handle() else {
            return; // another recorder owns the process: nothing to read back
        };
        let app: Router = Router::new()
            .route("/items/{id}", get(|| async { "item" }))
            .fallback(|| async { (http::StatusCode::NOT_FOUND, "none") })
            .layer(MetricsLayer::new());
        for uri in ["/items/1", "/items/2", "/random-1", "/random-2"] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let _ = axum::body::to_bytes(response.into_body(), 1024).await;
        }
        let text = handle.render();
        assert!(
            text.contains(
                r#"axum_http_requests_total{method="GET",status="200",endpoint="/items/{id}"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"axum_http_requests_total{method="GET",status="404",endpoint="fallback"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("random-1"));
        assert!(text.contains("axum_http_requests_duration_seconds_bucket"));
    }
}
