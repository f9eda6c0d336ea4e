//! Which responses are worth compressing.

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use http_body::Body as _;

/// Whether a `Content-Type` is text-like enough to shrink: `text/*` (not
/// `text/event-stream`), JSON, JavaScript, XML, SVG, wasm, and `+json`/`+xml` types.
pub fn is_compressible_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
        )
}

/// Whether `response` may be compressed: see the module docs. `min_size` applies only
/// when the body's size is known.
pub(super) fn should_compress(response: &Response, min_size: u64) -> bool {
    let status = response.status();
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return false;
    }
    let headers = response.headers();
    if already_encoded(headers)
        || headers.contains_key(header::CONTENT_RANGE)
        || no_transform(headers)
    {
        return false;
    }
    let compressible = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_compressible_type);
    if !compressible {
        return false;
    }
    let body = response.body();
    if body.is_end_stream() {
        return false;
    }
    body.size_hint()
        .exact()
        .is_none_or(|n| n > 0 && n >= min_size)
}

fn already_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::HeaderValue;

    #[test]
    fn text_like_types_are_compressible() {
        for t in [
            "text/html; charset=UTF-8",
            "text/plain",
            "text/css",
            "application/json",
            "application/problem+json",
            "application/javascript",
            "text/javascript",
            "application/xml",
            "application/atom+xml",
            "image/svg+xml",
            "application/wasm",
            "TEXT/HTML",
        ] {
            assert!(is_compressible_type(t), "{t}");
        }
        for t in [
            "text/event-stream",
            "image/png",
            "application/octet-stream",
            "application/zip",
            "video/mp4",
            "",
        ] {
            assert!(!is_compressible_type(t), "{t}");
        }
    }

    fn response(body: Body, pairs: &[(&'static str, &'static str)]) -> Response {
        let mut r = Response::new(body);
        for (k, v) in pairs {
            r.headers_mut().append(*k, HeaderValue::from_static(v));
        }
        r
    }

    #[test]
    fn small_encoded_partial_and_untyped_bodies_are_left_alone() {
        let big = || Body::from("x".repeat(2000));
        let html = ("content-type", "text/html");
        assert!(should_compress(&response(big(), &[html]), 1024));
        assert!(!should_compress(
            &response(Body::from("small"), &[html]),
            1024
        ));
        assert!(should_compress(&response(Body::from("small"), &[html]), 0));
        assert!(!should_compress(&response(Body::empty(), &[html]), 0));
        assert!(!should_compress(&response(big(), &[]), 1024));
        assert!(!should_compress(
            &response(big(), &[html, ("content-encoding", "gzip")]),
            1024
        ));
        assert!(!should_compress(
            &response(big(), &[html, ("cache-control", "public, no-transform")]),
            1024
        ));
        let mut partial = response(big(), &[html]);
        *partial.status_mut() = StatusCode::PARTIAL_CONTENT;
        assert!(!should_compress(&partial, 1024));
    }
}
