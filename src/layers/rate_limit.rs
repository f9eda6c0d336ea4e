//! Limits each client to a number of requests per time window, with tower_governor.
//!
//! - The client is its IP address as [`client_ip`] finds it: the peer, or the right-most
//!   untrusted `X-Forwarded-For` / `Forwarded` address when the peer is a trusted proxy.
//!   Sending the header from anywhere else changes nothing. IPv6 clients are counted per
//!   /64, the block one subscriber usually holds.
//! - `limit` requests per `window` (a GCRA bucket: up to `limit` at once, then one more every
//!   `window / limit`).
//! - Over the limit: `429 Too Many Requests` with `Retry-After`, and the inner service —
//!   PHP — never sees the request. Every response carries `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the full quota is back).
//! - Clients that have not been seen for a window are forgotten periodically, so memory
//!   stays bounded however many addresses come by.
//!
//! The peer address comes from [`crate::ConnectionInfo`] (set by [`crate::server`]) or axum's
//! `ConnectInfo` (`into_make_service_with_connect_info`); without either, requests get 500
//! and the log says why.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use http::{Request, StatusCode, header};
//! use tower::ServiceExt;
//! use tokio_php::layers::RateLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit = RateLimitLayer::new(1, Duration::from_secs(60))?
//!     .trusted_proxies("10.0.0.0/8".parse()?);
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(limit);
//! // The peer address, as `into_make_service_with_connect_info` puts it on each request.
//! let peer: SocketAddr = "203.0.113.7:50000".parse()?;
//! let request = || Request::get("/").extension(ConnectInfo(peer)).body(Body::empty());
//! let first = app.clone().oneshot(request()?).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//! assert_eq!(first.headers()["x-ratelimit-remaining"], "0");
//! let second = app.oneshot(request()?).await?;
//! assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(second.headers().contains_key(header::RETRY_AFTER));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use governor::middleware::StateInformationMiddleware;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_governor::GovernorError;
use tower_governor::governor::{Governor, GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use super::client_ip::{TrustedProxies, client_ip};
use crate::error_response::{ErrorResponder, PlainText};

/// `X-RateLimit-Limit`.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A limit the rate limiter cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate limit of {limit} requests per {window:?} cannot be enforced: {reason}")]
pub struct InvalidRateLimit {
    /// Requests allowed.
    pub limit: u32,
    /// Per this window.
    pub window: Duration,
    /// What is wrong.
    pub reason: &'static str,
}

type Config = GovernorConfig<ClientIpKey, StateInformationMiddleware>;
type Limiter = tower_governor::governor::SharedRateLimiter<IpAddr, StateInformationMiddleware>;

/// The rate-limit key: the client's address, IPv6 cut to its /64.
#[derive(Debug, Clone, Default)]
pub struct ClientIpKey {
    trusted: TrustedProxies,
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        client_ip(request, &self.trusted)
            .map(rate_key)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Applies [`RateLimit`] to a service. Every service it makes shares one limiter.
#[derive(Clone)]
pub struct RateLimitLayer {
    limit: u32,
    window: Duration,
    period: Duration,
    config: Arc<Config>,
    cleanup: Arc<Cleanup>,
    errors: Arc<dyn ErrorResponder>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .field("tracked_clients", &self.tracked_clients())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// `limit` requests per `window` per client; no proxy trusted.
    pub fn new(limit: u32, window: Duration) -> Result<Self, InvalidRateLimit> {
        let invalid = |reason| InvalidRateLimit {
            limit,
            window,
            reason,
        };
        if limit == 0 {
            return Err(invalid("the limit must be at least 1"));
        }
        let period = window / limit;
        if period.is_zero() {
            return Err(invalid("the window is too short for that many requests"));
        }
        let config = build(limit, period, ClientIpKey::default())
            .ok_or_else(|| invalid("tower_governor refused the quota"))?;
        Ok(Self {
            limit,
            window,
            period,
            cleanup: Arc::new(Cleanup::new(config.limiter().clone(), window)),
            config: Arc::new(config),
            errors: Arc::new(PlainText),
        })
    }

    /// Believes the forwarding headers of these proxies (starts a fresh limiter).
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        // The same limit and period were accepted by new(), so this build succeeds.
        if let Some(config) = build(self.limit, self.period, ClientIpKey { trusted }) {
            self.cleanup = Arc::new(Cleanup::new(config.limiter().clone(), self.window));
            self.config = Arc::new(config);
        }
        self
    }

    /// Makes the 429 with `errors` (an error page) instead of plain text.
    pub fn error_responder(mut self, errors: impl ErrorResponder) -> Self {
        self.errors = Arc::new(errors);
        self
    }

    /// How many clients the limiter remembers now.
    pub fn tracked_clients(&self) -> usize {
        self.config.limiter().len()
    }

    /// Forgets the clients whose quota is full again; the server does this by itself about
    /// once per window.
    pub fn forget_idle_clients(&self) {
        self.cleanup.run();
    }
}

fn build(limit: u32, period: Duration, key: ClientIpKey) -> Option<Config> {
    GovernorConfigBuilder::default()
        .period(period)
        .burst_size(limit)
        .key_extractor(key)
        .use_headers()
        .finish()
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let governor = Governor::new(inner, &self.config).error_handler(rejection_response);
        RateLimit {
            inner: governor,
            limit: self.limit,
            period: self.period,
            cleanup: Arc::clone(&self.cleanup),
            errors: Arc::clone(&self.errors),
        }
    }
}

/// Why tower_governor refused a request; the future makes the real response from it.
#[derive(Debug, Clone, Copy)]
enum Rejection {
    TooMany { wait_secs: u64 },
    NoClientAddress,
    Other(StatusCode),
}

fn rejection_response(error: GovernorError) -> Response {
    let rejection = match error {
        GovernorError::TooManyRequests { wait_time, .. } => Rejection::TooMany {
            wait_secs: wait_time,
        },
        GovernorError::UnableToExtractKey => Rejection::NoClientAddress,
        GovernorError::Other { code, .. } => Rejection::Other(code),
    };
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(rejection);
    response
}

/// Refuses requests over the limit with 429; adds the rate-limit headers to the rest.
pub struct RateLimit<S> {
    inner: Governor<ClientIpKey, StateInformationMiddleware, S, Body>,
    limit: u32,
    period: Duration,
    cleanup: Arc<Cleanup>,
    errors: Arc<dyn ErrorResponder>,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit,
            period: self.period,
            cleanup: Arc::clone(&self.cleanup),
            errors: Arc::clone(&self.errors),
        }
    }
}

impl<S> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("limit", &self.limit)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with the limiter of `layer`.
    pub fn new(inner: S, layer: &RateLimitLayer) -> Self {
        layer.layer(inner)
    }
}

type GovernorService<S> = Governor<ClientIpKey, StateInformationMiddleware, S, Body>;

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    GovernorService<S>: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = <GovernorService<S> as Service<Request<B>>>::Error;
    type Future = ResponseFuture<<GovernorService<S> as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.cleanup.tick();
        let accept = request.headers().get(header::ACCEPT).cloned();
        ResponseFuture {
            future: self.inner.call(request),
            accept,
            limit: self.limit,
            period: self.period,
            errors: Arc::clone(&self.errors),
        }
    }
}

pin_project! {
    /// The future of [`RateLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        accept: Option<HeaderValue>,
        limit: u32,
        period: Duration,
        errors: Arc<dyn ErrorResponder>,
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
        let limit = *this.limit;
        let period = *this.period;
        let Some(rejection) = response.extensions_mut().remove::<Rejection>() else {
            let remaining = response
                .headers()
                .get(&X_RATELIMIT_REMAINING)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            let used = limit.saturating_sub(remaining);
            set_reset(response.headers_mut(), period * used);
            return Poll::Ready(Ok(response));
        };
        let accept = this.accept.as_ref();
        let response = match rejection {
            Rejection::TooMany { wait_secs } => {
                // tower_governor rounds the wait down; the client must not come back early.
                let retry_after = wait_secs + 1;
                tracing::debug!(retry_after, "rate limit exceeded; answering 429");
                let mut response = this.errors.respond(StatusCode::TOO_MANY_REQUESTS, accept);
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(limit));
                headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(0u32));
                let full = Duration::from_secs(retry_after) + period * limit.saturating_sub(1);
                set_reset(headers, full);
                response
            }
            Rejection::NoClientAddress => {
                tracing::error!(
                    "rate limit: the request carries no peer address (serve with tokio_php::server, or axum's into_make_service_with_connect_info); answering 500"
                );
                this.errors
                    .respond(StatusCode::INTERNAL_SERVER_ERROR, accept)
            }
            Rejection::Other(status) => this.errors.respond(status, accept),
        };
        Poll::Ready(Ok(response))
    }
}

fn set_reset(headers: &mut HeaderMap, until_full: Duration) {
    let secs = until_full.as_secs() + u64::from(until_full.subsec_nanos() > 0);
    headers.insert(X_RATELIMIT_RESET, HeaderValue::from(secs));
}

// === impl Cleanup ===

/// Forgets idle clients about once per window (between 5 s and 60 s apart), off the
/// request path when a Tokio runtime is there to take the work.
struct Cleanup {
    limiter: Limiter,
    epoch: Instant,
    next_ms: AtomicU64,
    every_ms: u64,
}

impl Cleanup {
    fn new(limiter: Limiter, window: Duration) -> Self {
        let every = window.clamp(Duration::from_secs(5), Duration::from_secs(60));
        let every_ms = every.as_millis() as u64;
        Self {
            limiter,
            epoch: Instant::now(),
            next_ms: AtomicU64::new(every_ms),
            every_ms,
        }
    }

    fn tick(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let limiter = Arc::clone(&self.limiter);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || forget_idle(&limiter));
            }
            Err(_) => forget_idle(&limiter),
        }
    }

    fn run(&self) {
        forget_idle(&self.limiter);
    }
}

fn forget_idle(limiter: &Limiter) {
    let before = limiter.len();
    limiter.retain_recent();
    limiter.shrink_to_fit();
    tracing::debug!(
        before,
        after = limiter.len(),
        "rate limit: forgot idle clients"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ConnectionInfo;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn request(peer: &str, xff: Option<&str>) -> Request<Body> {
        let mut builder = Request::builder().header("accept", "text/html");
        if let Some(xff) = xff {
            builder = builder.header("x-forwarded-for", xff);
        }
        let mut request = builder.body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectionInfo {
            remote: format!("{peer}:1234").parse().unwrap(),
            local: "127.0.0.1:80".parse().unwrap(),
            tls: false,
        });
        request
    }

    fn ok_service() -> impl Service<
        Request<Body>,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send,
    > + Clone {
        tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        })
    }

    #[test]
    fn settings_are_checked() {
        assert!(RateLimitLayer::new(0, Duration::from_secs(1)).is_err());
        assert!(RateLimitLayer::new(10, Duration::ZERO).is_err());
        assert!(RateLimitLayer::new(3, Duration::from_nanos(2)).is_err());
        let err = RateLimitLayer::new(0, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("at least 1"));
        assert!(RateLimitLayer::new(10, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(
            rate_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            rate_key("2001:db8:1:2:ffff::9".parse().unwrap()),
            rate_key("2001:db8:1:2::".parse().unwrap())
        );
        assert_eq!(
            rate_key("192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn over_the_limit_is_429_with_headers_and_the_inner_service_is_not_called() {
        let layer = RateLimitLayer::new(2, Duration::from_secs(60)).unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let inner = tower::service_fn(move |_: Request<Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) }
        });
        let service = layer.layer(inner);
        let first = service
            .clone()
            .oneshot(request("192.0.2.1", None))
            .await
            .unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["x-ratelimit-limit"], "2");
        assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
        assert_eq!(first.headers()["x-ratelimit-reset"], "30");
        let _ = service.clone().oneshot(request("192.0.2.1", None)).await;
        let third = service
            .clone()
            .oneshot(request("192.0.2.1", None))
            .await
            .unwrap();
        assert_eq!(third.status(), 429);
        assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
        let retry: u64 = third.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=31).contains(&retry), "{retry}");
        assert!(
            third
                .extensions()
                .get::<crate::error_response::ServerMadeError>()
                .is_some()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Another client is not affected.
        let other = service.oneshot(request("192.0.2.2", None)).await.unwrap();
        assert_eq!(other.status(), 200);
    }

    #[tokio::test]
    async fn forwarded_for_from_an_untrusted_peer_changes_nothing() {
        let layer = RateLimitLayer::new(1, Duration::from_secs(60)).unwrap();
        let service = layer.layer(ok_service());
        let first = service
            .clone()
            .oneshot(request("192.0.2.1", Some("1.1.1.1")))
            .await
            .unwrap();
        assert_eq!(first.status(), 200);
        let second = service
            .oneshot(request("192.0.2.1", Some("2.2.2.2")))
            .await
            .unwrap();
        assert_eq!(second.status(), 429);
    }

    #[tokio::test]
    async fn behind_a_trusted_proxy_each_client_has_its_own_quota() {
        let layer = RateLimitLayer::new(1, Duration::from_secs(60))
            .unwrap()
            .trusted_proxies("10.0.0.0/8".parse().unwrap());
        let service = layer.layer(ok_service());
        for client in ["1.1.1.1", "2.2.2.2"] {
            let r = service
                .clone()
                .oneshot(request("10.0.0.1", Some(client)))
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{client}");
        }
        let again = service
            .oneshot(request("10.0.0.1", Some("1.1.1.1")))
            .await
            .unwrap();
        assert_eq!(again.status(), 429);
    }

    #[tokio::test]
    async fn no_peer_address_is_a_500() {
        let layer = RateLimitLayer::new(1, Duration::from_secs(60)).unwrap();
        let response = layer
            .layer(ok_service())
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }

    #[tokio::test]
    async fn idle_clients_are_forgotten() {
        let layer = RateLimitLayer::new(1000, Duration::from_millis(100)).unwrap();
        let service = layer.layer(ok_service());
        for i in 0..200u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let _ = service.clone().oneshot(request(&ip, None)).await.unwrap();
        }
        assert_eq!(layer.tracked_clients(), 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
        layer.forget_idle_clients();
        assert_eq!(layer.tracked_clients(), 0);
    }
}
