//! [`Compression`]: negotiates per request and wraps the response body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use pin_project_lite::pin_project;
use tower::Service;

use super::body::{CompressionBody, Encoder};
use super::layer::CompressionLayer;
use super::negotiate::{Negotiated, negotiate};
use super::predicate::should_compress;

/// Compresses the responses of `S` when the client and the response allow it.
#[derive(Debug, Clone, Copy)]
pub struct Compression<S> {
    inner: S,
    settings: CompressionLayer,
}

impl<S> Compression<S> {
    /// Wraps `inner` with `settings`.
    pub fn new(inner: S, settings: CompressionLayer) -> Self {
        Self { inner, settings }
    }
}

impl<S, B> Service<Request<B>> for Compression<S>
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
        let negotiated = negotiate(request.headers().get_all(header::ACCEPT_ENCODING));
        let head = request.method() == Method::HEAD;
        ResponseFuture {
            future: self.inner.call(request),
            negotiated,
            head,
            min_size: self.settings.min_size,
        }
    }
}

pin_project! {
    /// The future of [`Compression`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        negotiated: Negotiated,
        head: bool,
        min_size: u64,
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
        add_vary(response.headers_mut());
        let Some(coding) = this.negotiated.coding else {
            return Poll::Ready(Ok(response));
        };
        // A client that refuses identity gets even a small body compressed.
        let min_size = if this.negotiated.identity_ok {
            *this.min_size
        } else {
            0
        };
        if *this.head || !should_compress(&response, min_size) {
            return Poll::Ready(Ok(response));
        }
        let encoder = match Encoder::new(coding) {
            Ok(encoder) => encoder,
            Err(err) => {
                tracing::warn!(error = %err, coding = coding.as_str(), "cannot start the encoder; sending uncompressed");
                return Poll::Ready(Ok(response));
            }
        };
        let (mut parts, body) = response.into_parts();
        let body = CompressionBody::with_encoder(body, encoder);
        let headers = &mut parts.headers;
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.as_str()),
        );
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        weaken_etag(headers);
        Poll::Ready(Ok(Response::from_parts(parts, Body::new(body))))
    }
}

/// Adds `Vary: Accept-Encoding` unless the response already varies on it (or on `*`).
fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let v = v.trim();
            v == "*" || v.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A strong ETag names exact bytes; the compressed body is a different representation.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = b"W/".to_vec();
    weak.extend_from_slice(etag.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::CompressionLayer;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt};

    async fn respond(
        accept_encoding: Option<&'static str>,
        method: Method,
        content_type: &'static str,
        body: &str,
    ) -> Response {
        let body = body.to_owned();
        let service = CompressionLayer::new().layer(tower::service_fn(move |_: Request<Body>| {
            let body = body.clone();
            async move {
                let mut r = Response::new(Body::from(body));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static(content_type));
                r.headers_mut()
                    .insert("etag", HeaderValue::from_static("\"v1\""));
                Ok::<_, Infallible>(r)
            }
        }));
        let mut request = Request::builder().method(method);
        if let Some(ae) = accept_encoding {
            request = request.header("accept-encoding", ae);
        }
        service
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn big() -> String {
        "Compressible text repeats itself. ".repeat(200)
    }

    #[tokio::test]
    async fn compresses_big_text_for_clients_that_accept_it() {
        let r = respond(Some("gzip, br"), Method::GET, "text/html", &big()).await;
        assert_eq!(r.headers()["content-encoding"], "br");
        assert_eq!(r.headers()["vary"], "accept-encoding");
        assert_eq!(r.headers()["etag"], "W/\"v1\"");
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.len() < big().len() / 10);
    }

    #[tokio::test]
    async fn leaves_alone_what_it_must() {
        // No Accept-Encoding, small body, image, HEAD: no encoding, but Vary all the same.
        for r in [
            respond(None, Method::GET, "text/html", &big()).await,
            respond(Some("br"), Method::GET, "text/html", "tiny").await,
            respond(Some("br"), Method::GET, "image/png", &big()).await,
            respond(Some("br"), Method::HEAD, "text/html", &big()).await,
            respond(Some("br"), Method::GET, "text/event-stream", &big()).await,
        ] {
            assert!(r.headers().get("content-encoding").is_none());
            assert_eq!(r.headers()["vary"], "accept-encoding");
            assert_eq!(r.headers()["etag"], "\"v1\"");
        }
    }

    #[tokio::test]
    async fn identity_refused_compresses_even_small_bodies() {
        let r = respond(
            Some("gzip, identity;q=0"),
            Method::GET,
            "text/plain",
            "tiny",
        )
        .await;
        assert_eq!(r.headers()["content-encoding"], "gzip");
    }
}
