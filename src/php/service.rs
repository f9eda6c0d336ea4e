//! [`PhpService`]: the final service. It resolves the script under the document root,
//! receives the body, queues the request for a worker and turns PHP's answer into a
//! response. Every failure becomes a response here: 404, 400, 408, 413, 503, 500.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri};
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use tokio::sync::oneshot;

use super::body::{BodyError, MinRate, RequestBody};
use super::pool::{Job, PoolHandle, SubmitError};
use super::request::{ConnectionInfo, PhpRequest, RequestParts};
use super::script::{self, Resolution, ScriptMatch};
use crate::error_response::{error_response, retry_later};

/// Runs PHP scripts under a document root on a worker pool. `Clone`, and infallible: mount
/// it with `Router::fallback_service` or `nest_service`.
#[derive(Debug, Clone)]
pub struct PhpService {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    pool: PoolHandle,
    root: PathBuf,
    root_text: String,
    max_body_size: u64,
    min_body_rate: MinRate,
}

/// The future [`PhpService`] returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl PhpService {
    /// A service for scripts under `document_root` (made canonical here), queued on `pool`.
    pub fn new(
        pool: PoolHandle,
        document_root: &Path,
        max_body_size: u64,
    ) -> std::io::Result<Self> {
        let root = document_root.canonicalize()?;
        let root_text = root.to_string_lossy().into_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                root,
                root_text,
                max_body_size,
                min_body_rate: MinRate::NONE,
            }),
        })
    }

    /// Cuts off request bodies that arrive slower than `rate` with 408 Request Timeout.
    pub fn min_body_rate(mut self, rate: MinRate) -> Self {
        Arc::make_mut(&mut self.inner).min_body_rate = rate;
        self
    }

    /// The canonical document root.
    pub fn document_root(&self) -> &Path {
        &self.inner.root
    }

    /// The worker pool this service queues on.
    pub fn pool(&self) -> &PoolHandle {
        &self.inner.pool
    }

    /// Runs `script` for `request`; used by the service itself and by layers that pick the
    /// script another way (the front controller).
    pub async fn run_script(&self, request: Request<Body>, script: ScriptMatch) -> Response {
        self.inner.run(request, script).await
    }
}

impl tower::Service<Request<Body>> for PhpService {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { Ok(inner.handle(request).await) })
    }
}

// === impl Inner ===

impl Inner {
    async fn handle(&self, request: Request<Body>) -> Response {
        match script::resolve(&self.root, request.uri().path()) {
            Resolution::Script(script) => self.run(request, script).await,
            Resolution::DirectoryWithoutSlash => redirect_to_directory(&request),
            Resolution::BadRequest => error_response(StatusCode::BAD_REQUEST),
            Resolution::File(_) | Resolution::Directory(_) | Resolution::NotFound => {
                error_response(StatusCode::NOT_FOUND)
            }
        }
    }

    async fn run(&self, request: Request<Body>, script: ScriptMatch) -> Response {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_size) {
            tracing::info!(uri = %parts.uri, declared, limit = self.max_body_size, "request body too large; answering 413");
            return error_response(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let body = match RequestBody::receive(body, self.max_body_size, self.min_body_rate).await {
            Ok(body) => body,
            Err(err) => {
                let status = match err {
                    BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
                    BodyError::Client(_) => StatusCode::BAD_REQUEST,
                    BodyError::Spool(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::warn!(uri = %parts.uri, error = %err, "request body not received; answering {status}");
                return error_response(status);
            }
        };
        let content_length = match &body {
            RequestBody::Empty => declared.filter(|n| *n == 0),
            RequestBody::Memory(data) => Some(data.len() as u64),
            RequestBody::File(f) => f.metadata().ok().map(|m| m.len()),
        };

        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let original_path_and_query = original
            .path_and_query()
            .map_or_else(|| original.path(), |pq| pq.as_str());
        let mount_prefix = original.path().strip_suffix(parts.uri.path()).unwrap_or("");
        let connection = parts
            .extensions
            .get::<ConnectionInfo>()
            .copied()
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(remote)| ConnectionInfo {
                        remote: *remote,
                        local: SocketAddr::from(([0, 0, 0, 0], 0)),
                        tls: false,
                    })
            });
        let request_parts = RequestParts {
            method: &parts.method,
            version: parts.version,
            original_path_and_query,
            query: parts.uri.query().unwrap_or(""),
            authority: parts.uri.authority().map(|a| a.as_str()),
            headers: &parts.headers,
            mount_prefix,
            connection,
        };
        let request = match PhpRequest::new(request_parts, &script, &self.root_text, content_length)
        {
            Ok(request) => request,
            Err(err) => {
                tracing::info!(uri = %parts.uri, error = %err, "request PHP cannot take; answering 400");
                return error_response(StatusCode::BAD_REQUEST);
            }
        };

        let (respond, response) = oneshot::channel();
        let job = Job {
            request,
            body,
            respond,
            queued_at: Instant::now(),
        };
        match self.pool.submit(job) {
            Ok(()) => {}
            Err(SubmitError::QueueFull(job)) => {
                tracing::warn!(
                    request = job.request.tag(),
                    workers = self.pool.workers(),
                    "PHP queue full; answering 503"
                );
                return retry_later(StatusCode::SERVICE_UNAVAILABLE, 1);
            }
            Err(SubmitError::ShuttingDown(job)) => {
                tracing::info!(
                    request = job.request.tag(),
                    "PHP pool shutting down; answering 503"
                );
                return retry_later(StatusCode::SERVICE_UNAVAILABLE, 1);
            }
        }
        match response.await {
            Ok(start) => {
                let mut response = Response::new(Body::new(start.body));
                *response.status_mut() = start.head.status;
                *response.headers_mut() = start.head.headers;
                response
            }
            Err(_) => {
                tracing::error!(uri = %parts.uri, "PHP worker ended without a response; answering 500");
                error_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// 301 to the same path with a trailing slash. The Location is rebuilt from the path's
/// segments, so `//evil.com` can never become a protocol-relative, off-site redirect.
fn redirect_to_directory(request: &Request<Body>) -> Response {
    let original = request
        .extensions()
        .get::<OriginalUri>()
        .map_or(request.uri(), |o| &o.0);
    let mut location = String::from("/");
    for segment in original.path().split('/').filter(|s| !s.is_empty()) {
        location.push_str(segment);
        location.push('/');
    }
    if let Some(query) = original.query() {
        location.push('?');
        location.push_str(query);
    }
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => error_response(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_redirects_stay_on_site() {
        for (path, expected) in [
            ("/sub", "/sub/"),
            ("//evil.com", "/evil.com/"),
            ("/a//b?x=1", "/a/b/?x=1"),
        ] {
            let request = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = redirect_to_directory(&request);
            assert_eq!(response.status(), 301);
            assert_eq!(response.headers()["location"], expected, "{path}");
        }
    }
}
