//! Static files of the document root, for a path the resolver has already checked (inside
//! the root, not hidden, not PHP).
//!
//! Two paths, one behaviour: small files (up to [`MEMORY_CACHE_FILE_MAX`]) asked for whole,
//! with GET or HEAD, come from an in-memory copy revalidated by size and modification time
//! on every request; everything else (Range, precompressed `.br`/`.gz` siblings the client
//! accepts, large files) goes through tower-http's `ServeFile`. Both send Content-Type,
//! Last-Modified, a strong ETag, `Cache-Control: public, max-age=N` from
//! `STATIC_CACHE_TTL`, and answer If-None-Match / If-Modified-Since with 304.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::docroot::StaticFile;
use crate::error_response::error_response;

/// Largest file kept in memory.
pub(crate) const MEMORY_CACHE_FILE_MAX: u64 = 512 * 1024;
/// Headers a static response usually ends up with (its own, the layers', hyper's).
const RESPONSE_HEADERS: usize = 12;
/// Most bytes kept in memory over all files; past it the cache starts over.
pub(crate) const MEMORY_CACHE_TOTAL_MAX: u64 = 64 * 1024 * 1024;

/// How static responses are cached by clients, and the shared in-memory copies.
#[derive(Debug, Clone, Default)]
pub(crate) struct StaticOptions {
    cache_control: Option<HeaderValue>,
    memory: Arc<MemoryCache>,
}

#[derive(Debug, Default)]
struct MemoryCache {
    entries: Mutex<HashMap<PathBuf, Arc<CachedFile>>>,
    total: std::sync::atomic::AtomicU64,
}

/// A small file's bytes and the headers that describe them.
#[derive(Debug)]
struct CachedFile {
    len: u64,
    modified: SystemTime,
    body: Bytes,
    content_type: HeaderValue,
    last_modified: HeaderValue,
    etag: HeaderValue,
    /// `.br` / `.gz` siblings existed when it was read: those requests go to ServeFile.
    has_precompressed: bool,
}

impl StaticOptions {
    /// `Cache-Control: public, max-age=N` for `ttl`; None sends no Cache-Control.
    pub(crate) fn cache_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.cache_control = ttl.and_then(|ttl| {
            HeaderValue::from_str(&format!("public, max-age={}", ttl.as_secs())).ok()
        });
        self
    }
}

/// Serves `file` (already resolved and checked) for `request`.
pub(crate) async fn serve(
    file: &StaticFile,
    request: Request<Body>,
    options: &StaticOptions,
) -> Response {
    let (path, meta) = (file.path.as_path(), &file.meta);
    let precompressed = accepts_precompressed(request.headers()) && file.precompressed_allowed();
    if meta.len() <= MEMORY_CACHE_FILE_MAX
        && (request.method() == Method::GET || request.method() == Method::HEAD)
        && !request.headers().contains_key(header::RANGE)
        && let Some(file) = options.memory.get(path, meta).await
        && !(file.has_precompressed && precompressed)
    {
        return from_memory(&file, &request, options);
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let serve_file = if precompressed {
        ServeFile::new(path).precompressed_br().precompressed_gzip()
    } else {
        ServeFile::new(path)
    };
    let response = match serve_file.oneshot(request).await {
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

/// A response from the in-memory copy: 200, or 304 when the client's copy is current.
fn from_memory(file: &CachedFile, request: &Request<Body>, options: &StaticOptions) -> Response {
    let headers = request.headers();
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        Some(tags) => none_match_hits(tags.as_bytes(), file.etag.as_bytes()),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| whole_seconds(file.modified) <= whole_seconds(since)),
    };
    let mut response = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(file.body.clone()));
        // Room for these headers and the ones the layers and hyper add, without regrowing.
        r.headers_mut().reserve(RESPONSE_HEADERS);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, file.content_type.clone());
        r.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        r
    };
    let out = response.headers_mut();
    out.insert(header::LAST_MODIFIED, file.last_modified.clone());
    out.insert(header::ETAG, file.etag.clone());
    if file.has_precompressed {
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(cache_control) = &options.cache_control {
        out.insert(header::CACHE_CONTROL, cache_control.clone());
    }
    response
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether the client takes a precompressed sibling (`br` or `gzip` not refused).
fn accepts_precompressed(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            !refused && (coding.eq_ignore_ascii_case("br") || coding.eq_ignore_ascii_case("gzip"))
        })
}

impl MemoryCache {
    /// The current copy of `path`, read (off the async threads) when missing or stale.
    async fn get(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Arc<CachedFile>> {
        let modified = meta.modified().ok()?;
        if let Ok(entries) = self.entries.lock()
            && let Some(file) = entries.get(path)
            && file.len == meta.len()
            && file.modified == modified
        {
            return Some(Arc::clone(file));
        }
        let owned = path.to_path_buf();
        let file = tokio::task::spawn_blocking(move || CachedFile::read(&owned))
            .await
            .ok()??;
        let file = Arc::new(file);
        if file.len != meta.len() || file.modified != modified {
            // Changed while being read: serve this copy, keep nothing.
            return Some(file);
        }
        use std::sync::atomic::Ordering;
        if let Ok(mut entries) = self.entries.lock() {
            if self.total.load(Ordering::Relaxed) + file.len > MEMORY_CACHE_TOTAL_MAX {
                entries.clear();
                self.total.store(0, Ordering::Relaxed);
            }
            if let Some(old) = entries.insert(path.to_path_buf(), Arc::clone(&file)) {
                self.total.fetch_sub(old.len, Ordering::Relaxed);
            }
            self.total.fetch_add(file.len, Ordering::Relaxed);
        }
        Some(file)
    }
}

impl CachedFile {
    fn read(path: &Path) -> Option<Self> {
        let mut file = std::fs::File::open(path).ok()?;
        let before = file.metadata().ok()?;
        let mut body = Vec::with_capacity(usize::try_from(before.len()).ok()?);
        std::io::Read::read_to_end(&mut file, &mut body).ok()?;
        let modified = before.modified().ok()?;
        let len = body.len() as u64;
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        let sibling = |ext: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(ext);
            Path::new(&name).is_file()
        };
        Some(Self {
            len,
            modified,
            // Sent from the file with sendfile(2) on plain TCP connections.
            body: crate::sendfile::file_backed(body, file),
            content_type: HeaderValue::from_str(mime.as_ref()).ok()?,
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified)).ok()?,
            etag: HeaderValue::from_str(&etag(whole_seconds(modified), len, None)).ok()?,
            has_precompressed: sibling(".br") || sibling(".gz"),
        })
    }
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
pub(crate) fn etag(mtime_secs: u64, len: u64, encoding: Option<&HeaderValue>) -> String {
    match encoding.and_then(|e| e.to_str().ok()) {
        Some(encoding) => format!("\"{mtime_secs:x}-{len:x}-{encoding}\""),
        None => format!("\"{mtime_secs:x}-{len:x}\""),
    }
}

/// Whether an If-None-Match value (`*`, or a list of tags, weak or strong) matches `etag`
/// under the weak comparison RFC 9110 prescribes for it.
pub(crate) fn none_match_hits(if_none_match: &[u8], etag: &[u8]) -> bool {
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
    fn precompressed_acceptance() {
        let mut h = HeaderMap::new();
        assert!(!accepts_precompressed(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate"),
        );
        assert!(accepts_precompressed(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=0, gzip;q=0"),
        );
        assert!(!accepts_precompressed(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        assert!(!accepts_precompressed(&h));
    }

    #[tokio::test]
    async fn memory_copies_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.css");
        std::fs::write(&path, "one").unwrap();
        let cache = MemoryCache::default();
        let meta = std::fs::metadata(&path).unwrap();
        let first = cache.get(&path, &meta).await.unwrap();
        assert_eq!(&first.body[..], b"one");
        assert_eq!(first.content_type, "text/css");
        let again = cache.get(&path, &meta).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        std::fs::write(&path, "two!").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let changed = cache.get(&path, &meta).await.unwrap();
        assert_eq!(&changed.body[..], b"two!");
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
