//! Profiling on request: a request carrying `X-Profile: 1` gets a `Server-Timing` header
//! (browsers show it in their developer tools) and `X-Profile-*` headers with the same
//! figures in microseconds:
//!
//! | name | what |
//! |---|---|
//! | `queue` | waiting for a free PHP worker |
//! | `startup` | `php_request_startup()`: superglobals, extensions' request init |
//! | `script` | the script, until it ended, exited or failed |
//! | `shutdown` | `php_request_shutdown()`: shutdown functions, destructors, cleanup |
//! | `total` | from this layer receiving the request to the response head |
//!
//! The PHP phases are measured on the worker thread around the calls into PHP, and only for
//! requests that ask (the layer adds [`CollectTimings`]). A response whose head leaves
//! before the script ends (it streams with `flush()`) only knows its queue wait. Without
//! this layer, or without the header, nothing is measured.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use tokio_php::layers::ServerTimingLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ServerTimingLayer::new());
//! let profiled = Request::get("/").header("x-profile", "1").body(Body::empty())?;
//! let response = app.clone().oneshot(profiled).await?;
//! // No PHP behind this route, so the total is the only figure.
//! let timing = response.headers()["server-timing"].to_str()?;
//! assert!(timing.starts_with("total;desc=\"Total\";dur="), "{timing}");
//! assert!(response.headers().contains_key("x-profile-total-us"));
//! // Without the header, nothing is measured.
//! let response = app.oneshot(Request::get("/").body(Body::empty())?).await?;
//! assert!(!response.headers().contains_key("server-timing"));
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::context::{CollectTimings, PhpTimings};

/// The request header that asks for profiling.
pub const X_PROFILE: HeaderName = HeaderName::from_static("x-profile");
/// The response header with the figures.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Applies [`ServerTiming`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTimingLayer;

impl ServerTimingLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ServerTimingLayer {
    type Service = ServerTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTiming::new(inner)
    }
}

/// Adds `Server-Timing` to the responses of requests that ask for it.
#[derive(Debug, Clone, Copy)]
pub struct ServerTiming<S> {
    inner: S,
}

impl<S> ServerTiming<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<B>> for ServerTiming<S>
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
        let wanted = request
            .headers()
            .get(X_PROFILE)
            .is_some_and(|v| matches!(v.as_bytes(), b"1" | b"true" | b"on"));
        if wanted {
            request.extensions_mut().insert(CollectTimings);
        }
        ResponseFuture {
            future: self.inner.call(request),
            started: wanted.then(Instant::now),
        }
    }
}

pin_project! {
    /// The future of [`ServerTiming`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        started: Option<Instant>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if let Some(started) = this.started {
            let total = started.elapsed();
            let php = response.extensions().get::<PhpTimings>().copied();
            add_headers(response.headers_mut(), php.as_ref(), total);
        }
        Poll::Ready(Ok(response))
    }
}

/// The figures as `(name, description, duration)`, in order.
fn entries(
    php: Option<&PhpTimings>,
    total: Duration,
) -> Vec<(&'static str, &'static str, Duration)> {
    let mut out = Vec::with_capacity(5);
    if let Some(php) = php {
        out.push(("queue", "PHP queue wait", php.queue));
        let phases = [
            ("startup", "PHP request startup", php.startup),
            ("script", "PHP script", php.script),
            ("shutdown", "PHP request shutdown", php.shutdown),
        ];
        for (name, desc, value) in phases {
            if let Some(value) = value {
                out.push((name, desc, value));
            }
        }
    }
    out.push(("total", "Total", total));
    out
}

fn add_headers(headers: &mut HeaderMap, php: Option<&PhpTimings>, total: Duration) {
    let entries = entries(php, total);
    let mut server_timing = String::new();
    for (name, desc, value) in &entries {
        if !server_timing.is_empty() {
            server_timing.push_str(", ");
        }
        let ms = value.as_secs_f64() * 1000.0;
        let _ = write!(server_timing, "{name};desc=\"{desc}\";dur={ms:.3}");
        let header = HeaderName::from_bytes(format!("x-profile-{name}-us").as_bytes());
        if let Ok(header) = header {
            headers.insert(header, HeaderValue::from(value.as_micros() as u64));
        }
    }
    if let Ok(value) = HeaderValue::from_str(&server_timing) {
        headers.append(SERVER_TIMING, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn profiled(request: Request<Body>) -> Result<Response, Infallible> {
        let mut response = Response::new(Body::empty());
        if request.extensions().get::<CollectTimings>().is_some() {
            response.extensions_mut().insert(PhpTimings {
                queue: Duration::from_micros(5),
                startup: Some(Duration::from_micros(120)),
                script: Some(Duration::from_millis(3)),
                shutdown: Some(Duration::from_micros(40)),
            });
        }
        Ok(response)
    }

    #[tokio::test]
    async fn asked_for_it_gets_every_figure() {
        let service =
            ServerTimingLayer::new().layer(tower::service_fn(|r| async move { profiled(r) }));
        let request = Request::builder()
            .header("x-profile", "1")
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let h = response.headers();
        let st = h["server-timing"].to_str().unwrap();
        assert!(
            st.starts_with("queue;desc=\"PHP queue wait\";dur=0.005, startup;"),
            "{st}"
        );
        assert!(st.contains("script;desc=\"PHP script\";dur=3.000"), "{st}");
        assert!(st.contains("shutdown;") && st.contains("total;"), "{st}");
        assert_eq!(h["x-profile-queue-us"], "5");
        assert_eq!(h["x-profile-startup-us"], "120");
        assert_eq!(h["x-profile-script-us"], "3000");
        assert_eq!(h["x-profile-shutdown-us"], "40");
        assert!(h.contains_key("x-profile-total-us"));
    }

    #[tokio::test]
    async fn not_asked_means_not_measured() {
        let service =
            ServerTimingLayer::new().layer(tower::service_fn(|r| async move { profiled(r) }));
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert!(response.headers().get("server-timing").is_none());
        assert!(response.extensions().get::<PhpTimings>().is_none());
    }
}
