//! X-Sendfile and X-Accel-Redirect: a PHP response that names a file in one of these
//! headers is replaced by that file, served as a static file (Range, conditional requests)
//! with PHP's descriptive headers kept, as nginx and Apache's mod_xsendfile do. Only files
//! under `SENDFILE_ROOTS` (default: the document root) are handed over; any other target
//! is a 500 with a log line.
//!
//! Not to be confused with [`crate::sendfile`], the zero-copy `sendfile(2)` path for
//! static files.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};

use super::response::ResponseHead;
use crate::error_response::error_response;
use crate::static_files::{self, StaticOptions};

/// Headers of the PHP response that stay on the file it hands over.
const KEPT_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::SET_COOKIE,
];

/// The directories files may be handed over from, canonical.
#[derive(Debug, Clone)]
pub(crate) struct SendfileRoots(Vec<PathBuf>);

impl SendfileRoots {
    /// Just the (canonical) document root.
    pub(crate) fn document_root(root: &Path) -> Self {
        Self(vec![root.to_path_buf()])
    }

    /// `roots`, made canonical; directories that do not exist are skipped with a warning.
    pub(crate) fn new(roots: &[PathBuf]) -> Self {
        Self(
            roots
                .iter()
                .filter_map(|root| match root.canonicalize() {
                    Ok(real) => Some(real),
                    Err(err) => {
                        tracing::warn!(root = %root.display(), error = %err, "SENDFILE_ROOTS entry skipped");
                        None
                    }
                })
                .collect(),
        )
    }

    /// The real path of `target` when it is a regular file under one of the roots. A
    /// relative target (X-Accel-Redirect style) is taken under the first.
    fn allowed(&self, target: &str) -> Option<PathBuf> {
        let target = Path::new(target);
        let candidate = if target.is_absolute() && target.exists() {
            target.to_path_buf()
        } else {
            let first = self.0.first()?;
            first.join(target.strip_prefix("/").unwrap_or(target))
        };
        let real = candidate.canonicalize().ok()?;
        let inside = self.0.iter().any(|root| real.starts_with(root));
        (inside && real.is_file()).then_some(real)
    }
}

/// The file a PHP response hands to the server, if any.
pub(crate) fn target(headers: &HeaderMap) -> Option<String> {
    ["x-sendfile", "x-accel-redirect"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The response for a PHP response `head` that named `target`: the file, or 500.
pub(crate) async fn serve(
    roots: &SendfileRoots,
    static_options: &StaticOptions,
    parts: http::request::Parts,
    head: ResponseHead,
    target: &str,
) -> Response {
    let Some(path) = roots.allowed(target) else {
        tracing::error!(
            uri = %parts.uri,
            target,
            roots = ?roots.0,
            "X-Sendfile target is missing or outside SENDFILE_ROOTS; answering 500"
        );
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let request = Request::from_parts(parts, Body::empty());
    let mut response = static_files::serve_path(&path, request, static_options).await;
    if response.status().is_success() {
        for name in KEPT_HEADERS {
            let values: Vec<HeaderValue> = head.headers.get_all(&name).iter().cloned().collect();
            if !values.is_empty() {
                response.headers_mut().remove(&name);
                for value in values {
                    response.headers_mut().append(&name, value);
                }
            }
        }
    }
    response
}
