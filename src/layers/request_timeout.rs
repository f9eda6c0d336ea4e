//! Answers `504 Gateway Timeout` when the inner service has not produced a response head
//! within the time allowed, and tells it so.
//!
//! The limit covers the wait for the response *head*: a response that has started (a
//! script streaming with `flush()`, server-sent events) is not cut off; PHP's own
//! `max_execution_time` still applies to it.
//!
//! Every request carries a [`Deadline`] extension, which may be pushed forward while the
//! request runs ([`Deadline::extend`]: PHP's `tokio_request_heartbeat()`). When the time is
//! up, the deadline is marked as passed and the inner future is dropped; the PHP job that
//! runs the request sees why and stops the script as if it had hit `max_execution_time`
//! (or drops it from the queue), so the worker is free again at once instead of running on
//! for a client nobody answers.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tokio_php::layers::RequestTimeoutLayer;
//!
//! // The example's clock is paused, so the 30 seconds pass at once.
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/quick", get(|| async { "quick" }))
//!     .route("/slow", get(|| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         "too late"
//!     }))
//!     .layer(RequestTimeoutLayer::new(Duration::from_secs(30)));
//! let quick = app.clone().oneshot(Request::get("/quick").body(Body::empty())?).await?;
//! assert_eq!(quick.status(), StatusCode::OK);
//! let slow = app.oneshot(Request::get("/slow").body(Body::empty())?).await?;
//! assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::context::Deadline;
use crate::error_response::{ErrorResponder, PlainText};
use crate::log_throttle::Throttle;

/// Applies [`RequestTimeout`] to a service.
#[derive(Debug, Clone)]
pub struct RequestTimeoutLayer {
    timeout: Duration,
    errors: Arc<dyn ErrorResponder>,
}

impl RequestTimeoutLayer {
    /// Answers 504 after `timeout` without a response head.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            errors: Arc::new(PlainText),
        }
    }

    /// Makes the 504 with `errors` (an error page) instead of plain text.
    pub fn error_responder(mut self, errors: impl ErrorResponder) -> Self {
        self.errors = Arc::new(errors);
        self
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.timeout,
            errors: Arc::clone(&self.errors),
        }
    }
}

/// Answers 504 when `S` takes longer than the timeout to start its response.
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
    errors: Arc<dyn ErrorResponder>,
}

impl<S> RequestTimeout<S> {
    /// Wraps `inner` with a plain-text 504 after `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        RequestTimeoutLayer::new(timeout).layer(inner)
    }
}

impl<S, B> Service<Request<B>> for RequestTimeout<S>
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
        let deadline = Deadline::new(self.timeout);
        request.extensions_mut().insert(deadline.clone());
        let accept = request.headers().get(header::ACCEPT).cloned();
        ResponseFuture {
            state: State::Running {
                future: self.inner.call(request),
            },
            sleep: None,
            timeout: self.timeout,
            deadline,
            accept,
            errors: Arc::clone(&self.errors),
        }
    }
}

pin_project! {
    /// The future of [`RequestTimeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // Made the first time the inner future is pending: a response ready at once (a
        // static file) never starts a timer.
        sleep: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
        deadline: Deadline,
        accept: Option<HeaderValue>,
        errors: Arc<dyn ErrorResponder>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        TimedOut,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Running { future } = this.state.as_mut().project()
            && let Poll::Ready(result) = future.poll(cx)
        {
            return Poll::Ready(result);
        }
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(this.deadline.at())));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // A heartbeat may have moved the deadline while the timer ran.
            let at = this.deadline.at();
            if at <= Instant::now() {
                break;
            }
            sleep.as_mut().reset(at);
        }
        // Fire first: the inner future sees the deadline when it is dropped just below.
        this.deadline.fire();
        this.state.set(State::TimedOut);
        static TIMED_OUT: Throttle = Throttle::per_second(5);
        if let Some(suppressed) = TIMED_OUT.admit() {
            tracing::warn!(
                timeout_ms = this.timeout.as_millis() as u64,
                suppressed,
                "request timed out; answering 504"
            );
        }
        Poll::Ready(Ok(this
            .errors
            .respond(StatusCode::GATEWAY_TIMEOUT, this.accept.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn slow_inner_services_get_504_and_see_the_deadline() {
        let seen = Arc::new(std::sync::Mutex::new(None::<Deadline>));
        let seen_inner = Arc::clone(&seen);
        let slow = tower::service_fn(move |request: Request<Body>| {
            let seen = Arc::clone(&seen_inner);
            async move {
                *seen.lock().unwrap() = request.extensions().get::<Deadline>().cloned();
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, Infallible>(Response::new(Body::from("late")))
            }
        });
        let service = RequestTimeoutLayer::new(Duration::from_secs(1)).layer(slow);
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 504);
        assert!(
            response
                .extensions()
                .get::<crate::error_response::ServerMadeError>()
                .is_some()
        );
        assert!(seen.lock().unwrap().as_ref().unwrap().fired());
    }

    #[tokio::test(start_paused = true)]
    async fn quick_inner_services_pass_untouched() {
        let quick = tower::service_fn(|request: Request<Body>| async move {
            let deadline = request.extensions().get::<Deadline>().cloned().unwrap();
            assert!(!deadline.fired());
            Ok::<_, Infallible>(Response::new(Body::from("quick")))
        });
        let service = RequestTimeout::new(quick, Duration::from_secs(1));
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 200);
    }
}
