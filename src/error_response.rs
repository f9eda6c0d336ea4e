//! Responses the server makes itself for an error (404, 413, 503, …): plain text, marked so
//! the error-pages layer knows it may replace them.
//!
//! Layers that answer an error themselves from outside the error-pages layer (the request
//! timeout's 504, the rate limit's 429) make it through an [`ErrorResponder`], so the
//! standalone server can give them the same pages ([`crate::layers::error_pages`]).

use std::fmt;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// Marks a response the server generated for an error, as opposed to one PHP produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerMadeError;

/// A plain-text error response for `status`, such as `404 Not Found`.
pub(crate) fn error_response(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(Body::from(format!("{} {reason}\n", status.as_u16())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.extensions_mut().insert(ServerMadeError);
    response
}

/// An error response that also tells the client when to try again.
pub(crate) fn retry_later(status: StatusCode, seconds: u64) -> Response {
    let mut response = error_response(status);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Makes the response for an error a layer answers itself.
pub trait ErrorResponder: fmt::Debug + Send + Sync + 'static {
    /// The response for `status`, to a request whose `Accept` header was `accept`. It must
    /// carry the [`ServerMadeError`] extension. The default is the crate's plain-text error response.
    fn respond(&self, status: StatusCode, accept: Option<&HeaderValue>) -> Response {
        let _ = accept;
        error_response(status)
    }
}

/// The default [`ErrorResponder`]: `429 Too Many Requests` and the like, as plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainText;

impl ErrorResponder for PlainText {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_plain_text_and_marked() {
        let r = error_response(StatusCode::NOT_FOUND);
        assert_eq!(r.status(), 404);
        assert!(r.extensions().get::<ServerMadeError>().is_some());
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let r = retry_later(StatusCode::SERVICE_UNAVAILABLE, 1);
        assert_eq!(r.headers()["retry-after"], "1");
    }
}
