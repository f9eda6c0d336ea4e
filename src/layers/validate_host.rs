//! Rejects requests whose Host cannot be trusted before PHP sees them (the layer runs just
//! outside Server-Timing and the PHP service; [`crate::layers`] gives the order): an
//! HTTP/1.1 request without Host, with two Host headers, or with a Host (or a request
//! target's authority) that is not a valid `host[:port]`, a port included (0 to 65535), gets
//! 400; so does an HTTP/2 request whose `:authority` and `host` disagree (RFC 9113 §8.3.1).
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header};
//! use tower::ServiceExt;
//! use tokio_php::layers::ValidateHostLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ValidateHostLayer::new());
//! let request = |host: &str| Request::get("/").header(header::HOST, host).body(Body::empty());
//! let good = app.clone().oneshot(request("example.com:8080")?).await?;
//! assert_eq!(good.status(), StatusCode::OK);
//! // Port 99999 does not exist: 400, and PHP never sees the request.
//! let bad = app.oneshot(request("evil.com:99999")?).await?;
//! assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use http::{HeaderMap, Request, StatusCode, Version, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error_response::error_response;
use crate::log_throttle::Throttle;

/// Applies [`ValidateHost`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateHostLayer;

impl ValidateHostLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ValidateHostLayer {
    type Service = ValidateHost<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ValidateHost::new(inner)
    }
}

/// Answers 400 for a missing, repeated or malformed Host; passes the rest to `S`.
#[derive(Debug, Clone, Copy)]
pub struct ValidateHost<S> {
    inner: S,
}

impl<S> ValidateHost<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<B>> for ValidateHost<S>
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
        let authority = request.uri().authority().map(|a| a.as_str());
        match check_host(request.version(), authority, request.headers()) {
            Ok(()) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            },
            Err(reason) => {
                static BAD_HOST: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = BAD_HOST.admit() {
                    tracing::info!(uri = %request.uri(), reason, suppressed, "bad Host; answering 400");
                }
                ResponseFuture {
                    kind: Kind::Rejected {
                        response: Some(error_response(StatusCode::BAD_REQUEST)),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The future of [`ValidateHost`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

/// Ok, or why the Host is refused. `authority` is the request target's (HTTP/2's
/// `:authority`, or an HTTP/1 absolute-form target's).
pub fn check_host(
    version: Version,
    authority: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    if let Some(authority) = authority
        && !is_valid_host(authority.as_bytes())
    {
        return Err("malformed authority in the request target");
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return if version == Version::HTTP_11 && authority.is_none() {
            Err("HTTP/1.1 request without Host")
        } else {
            Ok(())
        };
    };
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    if !is_valid_host(host.as_bytes()) {
        return Err("malformed Host");
    }
    // HTTP/1: an absolute-form target's authority wins over Host (RFC 9112 §3.2.2), as
    // nginx does. HTTP/2: the two must agree.
    if version == Version::HTTP_2
        && let Some(authority) = authority
        && !authority.as_bytes().eq_ignore_ascii_case(host.as_bytes())
    {
        return Err("HTTP/2 :authority and host disagree");
    }
    Ok(())
}

/// `name[:port]` or `[v6]:port`, with a hostname of letters, digits, `-`, `.` and `_`.
fn is_valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = if host[0] == b'[' {
        let Some(end) = host.iter().position(|b| *b == b']') else {
            return false;
        };
        let inside = &host[1..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
        {
            return false;
        }
        match &host[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b"v6"[..], Some(port)),
            _ => return false,
        }
    } else {
        match host.iter().rposition(|b| *b == b':') {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p)
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p <= 65535)
    });
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for host in hosts {
            h.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        h
    }

    #[test]
    fn accepts_sane_hosts() {
        for host in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "[::1]",
            "a_b.local",
            "a:65535",
        ] {
            assert_eq!(
                check_host(Version::HTTP_11, None, &headers(&[host])),
                Ok(()),
                "{host}"
            );
        }
        assert_eq!(check_host(Version::HTTP_10, None, &headers(&[])), Ok(()));
        assert_eq!(check_host(Version::HTTP_2, None, &headers(&[])), Ok(()));
        // An absolute-form target needs no Host, and its authority wins over one.
        assert_eq!(
            check_host(Version::HTTP_11, Some("a.example"), &headers(&[])),
            Ok(())
        );
        assert_eq!(
            check_host(
                Version::HTTP_11,
                Some("a.example"),
                &headers(&["b.example"])
            ),
            Ok(())
        );
        assert_eq!(
            check_host(
                Version::HTTP_2,
                Some("A.example:8443"),
                &headers(&["a.EXAMPLE:8443"])
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_bad_authority_and_http2_disagreement() {
        assert!(check_host(Version::HTTP_11, Some("a:99999"), &headers(&["a"])).is_err());
        assert!(check_host(Version::HTTP_2, Some("a.example"), &headers(&["b.example"])).is_err());
    }

    #[test]
    fn refuses_missing_repeated_and_malformed() {
        assert!(check_host(Version::HTTP_11, None, &headers(&[])).is_err());
        assert!(check_host(Version::HTTP_11, None, &headers(&["a", "b"])).is_err());
        for host in [
            "",
            "a b",
            "a/b",
            "a:port",
            "a:123456",
            "[::1",
            "[zz]:1",
            "user@host",
            "a:",
            "evil.com:99999",
            "evil.com:65536",
        ] {
            assert!(
                check_host(Version::HTTP_11, None, &headers(&[host])).is_err(),
                "{host}"
            );
        }
    }
}
