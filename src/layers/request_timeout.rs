//! Answers `504 Gateway Timeout` when the inner service has not produced a response head
//! within the time allowed, and tells it so.
//!
//! The limit covers the wait for the response *head*: a response that has started (a
//! script streaming with `flush()`, server-sent events) is not cut off; PHP's own
//! `max_execution_time` still applies to it.
//!
//! Every request carries a [`TimeoutNotice`] extension. Its deadline can be pushed forward
//! while the request runs ([`TimeoutNotice::extend`]: PHP's `tokio_request_heartbeat()`).
//! When the time is up, the notice fires and the inner future is dropped; [`crate::PhpService`] sees the notice and stops
//! the PHP script as if it had hit `max_execution_time` (or drops it from the queue), so
//! the worker is free again at once instead of running on for a client nobody answers.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tokio_php::layers::RequestTimeoutLayer;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "quick" }))
//!     .layer(RequestTimeoutLayer::new(Duration::from_secs(30)));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::error_response::{ErrorResponder, PlainText};
use crate::log_throttle::Throttle;

/// The farthest a deadline goes (about 30 years): what a heartbeat too large to add becomes.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Request extension: the request's deadline, which may be pushed forward, and whether it
/// passed (set before the inner future is dropped).
#[derive(Debug, Clone)]
pub struct TimeoutNotice(Arc<NoticeState>);

#[derive(Debug)]
struct NoticeState {
    fired: AtomicBool,
    deadline: Mutex<Instant>,
    timeout: Duration,
}

impl TimeoutNotice {
    /// A notice for `timeout` from now that has not fired.
    pub fn new(timeout: Duration) -> Self {
        Self(Arc::new(NoticeState {
            fired: AtomicBool::new(false),
            deadline: Mutex::new(Instant::now() + timeout),
            timeout,
        }))
    }

    /// Whether the request timed out.
    pub fn fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// The current deadline.
    pub fn deadline(&self) -> Instant {
        *self.0.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the deadline to `by` from now (None: the whole timeout again); it never moves
    /// back. False when the request has already timed out.
    pub fn extend(&self, by: Option<Duration>) -> bool {
        if self.fired() {
            return false;
        }
        let mut deadline = self.0.deadline.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // A heartbeat of PHP_INT_MAX seconds means "as long as there is": saturate.
        let wanted = now
            .checked_add(by.unwrap_or(self.0.timeout))
            .unwrap_or_else(|| now + FOREVER);
        *deadline = (*deadline).max(wanted);
        true
    }

    fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
    }
}

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
        let notice = TimeoutNotice::new(self.timeout);
        request.extensions_mut().insert(notice.clone());
        let accept = request.headers().get(header::ACCEPT).cloned();
        ResponseFuture {
            state: State::Running {
                future: self.inner.call(request),
            },
            sleep: None,
            timeout: self.timeout,
            notice,
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
        notice: TimeoutNotice,
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
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(this.notice.deadline())));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // A heartbeat may have moved the deadline while the timer ran.
            let deadline = this.notice.deadline();
            if deadline <= Instant::now() {
                break;
            }
            sleep.as_mut().reset(deadline);
        }
        // Fire first: the inner future sees the notice when it is dropped just below.
        this.notice.fire();
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
    async fn slow_inner_services_get_504_and_see_the_notice() {
        let seen = Arc::new(std::sync::Mutex::new(None::<TimeoutNotice>));
        let seen_inner = Arc::clone(&seen);
        let slow = tower::service_fn(move |request: Request<Body>| {
            let seen = Arc::clone(&seen_inner);
            async move {
                *seen.lock().unwrap() = request.extensions().get::<TimeoutNotice>().cloned();
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
            let notice = request
                .extensions()
                .get::<TimeoutNotice>()
                .cloned()
                .unwrap();
            assert!(!notice.fired());
            Ok::<_, Infallible>(Response::new(Body::from("quick")))
        });
        let service = RequestTimeout::new(quick, Duration::from_secs(1));
        let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), 200);
    }
}
