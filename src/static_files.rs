//! Static files of the document root, served by tower-http's `ServeFile` for a path the
//! resolver has already checked (inside the root, not hidden, not PHP): Content-Type,
//! Last-Modified, Range (206), HEAD, If-Modified-Since (304) and precompressed `.br`/`.gz`
//! siblings come from tower-http; this module adds a strong ETag with If-None-Match (304)
//! and `Cache-Control: public, max-age=N` from `STATIC_CACHE_TTL`.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error_response::error_response;

/// How static responses are cached by clients.
#[derive(Debug, Clone, Default)]
pub struct StaticOptions {
    cache_control: Option<HeaderValue>,
}

impl StaticOptions {
    /// `Cache-Control: public, max-age=N` for `ttl`; None sends no Cache-Control.
    pub fn cache_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.cache_control = ttl.and_then(|ttl| {
            HeaderValue::from_str(&format!("public, max-age={}", ttl.as_secs())).ok()
        });
        self
    }
}

/// Serves the file at `path` (already resolved and checked) for `request`.
pub async fn serve(path: &Path, request: Request<Body>, options: &StaticOptions) -> Response {
    let meta = match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) | Err(_) => return error_response(StatusCode::NOT_FOUND),
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let response = match ServeFile::new(path)
        .precompressed_br()
        .precompressed_gzip()
        .oneshot(request)
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "reading a static file failed; answering 500");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let (mut parts, body) = response.into_parts();
    if !(parts.status.is_success() || parts.status == StatusCode::NOT_MODIFIED) {
        return Response::from_parts(parts, body);
    }
    let etag = etag(
        mtime,
        meta.len(),
        parts.headers.get(header::CONTENT_ENCODING),
    );
    add_cache_headers(&mut parts.headers, &etag, options);
    if parts.status == StatusCode::OK
        && if_none_match.is_some_and(|v| none_match_hits(v.as_bytes(), etag.as_bytes()))
    {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_TYPE);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, body)
}

fn add_cache_headers(headers: &mut HeaderMap, etag: &str, options: &StaticOptions) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(cache_control) = &options.cache_control {
        headers.insert(header::CACHE_CONTROL, cache_control.clone());
    }
}

/// A strong validator from modification time and size, as nginx makes it; a precompressed
/// variant gets its own (its bytes differ).
pub fn etag(mtime_secs: u64, len: u64, encoding: Option<&HeaderValue>) -> String {
    match encoding.and_then(|e| e.to_str().ok()) {
        Some(encoding) => format!("\"{mtime_secs:x}-{len:x}-{encoding}\""),
        None => format!("\"{mtime_secs:x}-{len:x}\""),
    }
}

/// Whether an If-None-Match value (`*`, or a list of tags, weak or strong) matches `etag`
/// under the weak comparison RFC 9110 prescribes for it.
pub fn none_match_hits(if_none_match: &[u8], etag: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(if_none_match) else {
        return false;
    };
    let etag = std::str::from_utf8(etag).unwrap_or("");
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_strong_and_differ_per_encoding() {
        assert_eq!(etag(0x10, 0x20, None), "\"10-20\"");
        let br = HeaderValue::from_static("br");
        assert_eq!(etag(0x10, 0x20, Some(&br)), "\"10-20-br\"");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        assert!(none_match_hits(b"\"a\"", b"\"a\""));
        assert!(none_match_hits(b"\"x\", W/\"a\"", b"\"a\""));
        assert!(none_match_hits(b"*", b"\"a\""));
        assert!(!none_match_hits(b"\"b\"", b"\"a\""));
    }

    #[test]
    fn cache_control_from_ttl() {
        let options = StaticOptions::default().cache_ttl(Some(Duration::from_secs(86400)));
        assert_eq!(
            options.cache_control.unwrap(),
            HeaderValue::from_static("public, max-age=86400")
        );
        assert!(
            StaticOptions::default()
                .cache_ttl(None)
                .cache_control
                .is_none()
        );
    }
}
