//! [`PhpService`]: the final service for a document root. It resolves the request path
//! (see [`script`](super::script)), serves static files, and for a script receives the
//! body, queues the request for a worker and turns PHP's answer into a response. Every
//! failure becomes a response here: 404, 400, 408, 413, 503, 500.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri};
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use tokio::sync::{mpsc, oneshot};

use super::admission::ConnectionShare;
use super::body::{BodyError, MinRate, RequestBody};
use super::control::{ClientGuard, RequestControl};
use super::pool::{Abandoned, Job, JobControl, PoolHandle, SubmitError};
use super::request::{ConnectionInfo, PhpRequest, RequestParts};
use super::response::{PhpBody, ResponseHead, ResponseStart};
use super::script::{self, Resolution, ScriptMatch};
use super::timings::CollectTimings;
use crate::config::DEFAULT_MAX_BODY_SIZE;
use crate::early_hints::EarlyHints;
use crate::error_response::{error_response, retry_later};
use crate::layers::request_id::RequestId;
use crate::layers::request_timeout::TimeoutNotice;
use crate::log_throttle::Throttle;
use crate::static_files::{self, StaticOptions};

/// Serves a document root: PHP scripts on a worker pool, other files as static files.
/// `Clone`, and infallible: mount it with `Router::fallback_service` or `nest_service`.
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
    static_options: StaticOptions,
    sendfile_roots: Vec<PathBuf>,
    sse_timeout: Option<Duration>,
    min_body_rate: MinRate,
    worker_mode: Option<WorkerRoute>,
}

/// Worker mode: which paths go to the worker script's pool.
#[derive(Debug, Clone)]
struct WorkerRoute {
    pool: PoolHandle,
    script: ScriptMatch,
    prefix: String,
}

impl WorkerRoute {
    /// Whether `path` lies under the prefix (`/api` takes `/api` and `/api/x`, not `/apix`).
    fn matches(&self, path: &str) -> bool {
        path_under(path, &self.prefix)
    }
}

/// Whether `path` is `prefix` or below it, segment-wise.
fn path_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How a request path was resolved, when a layer in front (the front controller) has
/// already decided; the service then uses it instead of resolving again.
#[derive(Debug, Clone)]
pub struct ResolvedPath(pub Resolution);

/// The future [`PhpService`] returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl PhpService {
    /// A service for `document_root` (made canonical here), running scripts on `pool`.
    pub fn new(pool: PoolHandle, document_root: &Path) -> std::io::Result<Self> {
        let root = document_root.canonicalize()?;
        let root_text = root.to_string_lossy().into_owned();
        let root_for_sendfile = root.clone();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                root,
                root_text,
                max_body_size: DEFAULT_MAX_BODY_SIZE,
                static_options: StaticOptions::default(),
                sendfile_roots: vec![root_for_sendfile],
                sse_timeout: Some(crate::config::DEFAULT_SSE_TIMEOUT),
                min_body_rate: MinRate::NONE,
                worker_mode: None,
            }),
        })
    }

    /// Sets the largest request body, in bytes (larger gets 413).
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        Arc::make_mut(&mut self.inner).max_body_size = bytes;
        self
    }

    /// Sets the directories X-Sendfile / X-Accel-Redirect may hand files from (default: the
    /// document root). Directories that do not exist are skipped with a warning.
    pub fn sendfile_roots(mut self, roots: &[PathBuf]) -> Self {
        let canonical = roots
            .iter()
            .filter_map(|root| match root.canonicalize() {
                Ok(real) => Some(real),
                Err(err) => {
                    tracing::warn!(root = %root.display(), error = %err, "SENDFILE_ROOTS entry skipped");
                    None
                }
            })
            .collect();
        Arc::make_mut(&mut self.inner).sendfile_roots = canonical;
        self
    }

    /// Sets the longest life of a `text/event-stream` response (None: unbounded).
    pub fn sse_timeout(mut self, limit: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.inner).sse_timeout = limit;
        self
    }

    /// Sets how static files are served (cache lifetime).
    pub fn static_options(mut self, options: StaticOptions) -> Self {
        Arc::make_mut(&mut self.inner).static_options = options;
        self
    }

    /// Cuts off request bodies that arrive slower than `rate` with 408 Request Timeout.
    pub fn min_body_rate(mut self, rate: MinRate) -> Self {
        Arc::make_mut(&mut self.inner).min_body_rate = rate;
        self
    }

    /// Worker mode: requests whose path lies under `prefix` run in the worker script
    /// `script` (absolute) on `pool`, a [`WorkerModePool`](super::worker::WorkerModePool)'s
    /// handle; static files are still served as files.
    pub fn worker_mode(mut self, pool: PoolHandle, script: &Path, prefix: &str) -> Self {
        let script_name = super::worker::script_name(&self.inner.root, script);
        Arc::make_mut(&mut self.inner).worker_mode = Some(WorkerRoute {
            pool,
            script: ScriptMatch {
                script_filename: script.to_path_buf(),
                script_name,
                path_info: None,
            },
            prefix: prefix.to_owned(),
        });
        self
    }

    /// The worker-mode pool, when worker mode is on.
    pub fn worker_pool(&self) -> Option<&PoolHandle> {
        self.inner.worker_mode.as_ref().map(|route| &route.pool)
    }

    /// The canonical document root.
    pub fn document_root(&self) -> &Path {
        &self.inner.root
    }

    /// The worker pool this service queues on.
    pub fn pool(&self) -> &PoolHandle {
        &self.inner.pool
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
    async fn handle(&self, mut request: Request<Body>) -> Response {
        let resolution = match request.extensions_mut().remove::<ResolvedPath>() {
            Some(ResolvedPath(resolution)) => resolution,
            None => script::resolve(&self.root, request.uri().path()),
        };
        if let Some(route) = &self.worker_mode
            && route.matches(request.uri().path())
        {
            match resolution {
                // Files stay files; refusals stay refusals; everything else is the app's.
                Resolution::File(_) | Resolution::Forbidden | Resolution::BadRequest => {}
                Resolution::Script(_)
                | Resolution::NotFound
                | Resolution::DirectoryWithoutSlash => {
                    return self.run(request, route.script.clone(), &route.pool).await;
                }
            }
        }
        match resolution {
            Resolution::Script(script) => self.run(request, script, &self.pool).await,
            Resolution::File(file) => {
                static_files::serve(&file.path, &file.meta, request, &self.static_options).await
            }
            Resolution::DirectoryWithoutSlash => redirect_to_directory(&request),
            Resolution::BadRequest => error_response(StatusCode::BAD_REQUEST),
            Resolution::NotFound => error_response(StatusCode::NOT_FOUND),
            Resolution::Forbidden => {
                static REFUSED: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = REFUSED.admit() {
                    tracing::info!(uri = %request.uri(), suppressed, "refused a hidden, outside or source path; answering 404");
                }
                error_response(StatusCode::NOT_FOUND)
            }
        }
    }

    async fn run(
        &self,
        request: Request<Body>,
        script: ScriptMatch,
        pool: &PoolHandle,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_size) {
            static TOO_LARGE: Throttle = Throttle::per_second(5);
            if let Some(suppressed) = TOO_LARGE.admit() {
                tracing::info!(uri = %parts.uri, declared, limit = self.max_body_size, suppressed, "request body too large; answering 413");
            }
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
                static NOT_RECEIVED: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = NOT_RECEIVED.admit() {
                    tracing::warn!(uri = %parts.uri, error = %err, suppressed, "request body not received; answering {status}");
                }
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
        let mount_prefix = mount_prefix(original.path(), parts.uri.path());
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
            request_id: parts.extensions.get::<RequestId>().map(RequestId::as_str),
        };
        let request = match PhpRequest::new(request_parts, &script, &self.root_text, content_length)
        {
            Ok(request) => request,
            Err(err) => {
                static INVALID: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = INVALID.admit() {
                    tracing::info!(uri = %parts.uri, error = %err, suppressed, "request PHP cannot take; answering 400");
                }
                return error_response(StatusCode::BAD_REQUEST);
            }
        };

        let (respond, mut response) = oneshot::channel();
        let early_hints = parts.extensions.get::<EarlyHints>().cloned();
        let (informational, mut informational_rx) = match early_hints {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let timeout = parts.extensions.get::<TimeoutNotice>().cloned();
        // Wait for a place among this connection's requests in the pool (still under the
        // request timeout, holding no worker).
        let admission = match parts.extensions.get::<ConnectionShare>() {
            Some(share) => Some(share.admit(pool.workers()).await),
            None => None,
        };
        let shared = Arc::new(RequestControl::new(timeout.clone()));
        let mut client_guard = ClientGuard::new(Arc::clone(&shared));
        let control = JobControl::new();
        let job = Job {
            request,
            body,
            respond,
            informational,
            shared: Arc::clone(&shared),
            queued_at: Instant::now(),
            span: tracing::Span::current(),
            profile: parts.extensions.get::<CollectTimings>().is_some(),
            control: control.clone(),
            admission,
        };
        match pool.submit(job) {
            Ok(()) => {}
            Err(SubmitError::QueueFull(job)) => {
                client_guard.disarm();
                static QUEUE_FULL: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = QUEUE_FULL.admit() {
                    tracing::warn!(
                        request = job.request.tag(),
                        workers = pool.workers(),
                        suppressed,
                        "PHP queue full; answering 503"
                    );
                }
                return retry_later(StatusCode::SERVICE_UNAVAILABLE, 1);
            }
            Err(SubmitError::ShuttingDown(job)) => {
                client_guard.disarm();
                static SHUTTING_DOWN: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = SHUTTING_DOWN.admit() {
                    tracing::info!(
                        request = job.request.tag(),
                        suppressed,
                        "PHP pool shutting down; answering 503"
                    );
                }
                return retry_later(StatusCode::SERVICE_UNAVAILABLE, 1);
            }
        }
        // If this future is dropped before the head arrives, the guard gives the job up: a
        // timeout stops the script (so the worker is free again), a client that left takes
        // its request out of the queue.
        let job_guard = JobGuard {
            notice: timeout,
            control: Some(control),
        };
        let start = loop {
            let hint = async {
                match informational_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                start = &mut response => break start,
                Some(head) = hint => {
                    if let Some(hints) = &early_hints
                        && let Err(err) = hints.send(head.status, &head.headers).await
                    {
                        tracing::debug!(error = %err, "informational response not sent");
                    }
                }
            }
        };
        client_guard.disarm();
        job_guard.disarm();
        let Ok(start) = start else {
            tracing::error!(uri = %parts.uri, "PHP worker ended without a response; answering 500");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let ResponseStart {
            head,
            mut body,
            timings,
        } = start;
        if let Some(target) = sendfile_target(&head.headers) {
            return self.sendfile(parts, head, &target).await;
        }
        if let PhpBody::Stream {
            guard, deadline, ..
        } = &mut body
        {
            *guard = Some(ClientGuard::new(shared));
            if let Some(limit) = self.sse_timeout
                && is_event_stream(&head.headers)
            {
                *deadline = Some(Box::pin(tokio::time::sleep(limit)));
            }
        }
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        if let Some(reason) = head.reason {
            response.extensions_mut().insert(reason);
        }
        if let Some(timings) = timings {
            response.extensions_mut().insert(timings);
        }
        response
    }

    /// Replaces a PHP response carrying X-Sendfile / X-Accel-Redirect by that file, served
    /// as a static file (Range, conditional requests) with PHP's descriptive headers.
    async fn sendfile(
        &self,
        parts: http::request::Parts,
        head: ResponseHead,
        target: &str,
    ) -> Response {
        let Some(path) = self.allowed_sendfile_path(target) else {
            tracing::error!(
                uri = %parts.uri,
                target,
                roots = ?self.sendfile_roots,
                "X-Sendfile target is missing or outside SENDFILE_ROOTS; answering 500"
            );
            return error_response(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let request = Request::from_parts(parts, Body::empty());
        let mut response = static_files::serve_path(&path, request, &self.static_options).await;
        if response.status().is_success() {
            for name in SENDFILE_KEPT_HEADERS {
                let values: Vec<HeaderValue> =
                    head.headers.get_all(&name).iter().cloned().collect();
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

    /// The real path of an X-Sendfile target when it is a regular file under one of the
    /// allowed roots. A relative target (X-Accel-Redirect style) is taken under the first.
    fn allowed_sendfile_path(&self, target: &str) -> Option<PathBuf> {
        let target = Path::new(target);
        let candidate = if target.is_absolute() && target.exists() {
            target.to_path_buf()
        } else {
            let first = self.sendfile_roots.first()?;
            first.join(target.strip_prefix("/").unwrap_or(target))
        };
        let real = candidate.canonicalize().ok()?;
        let inside = self
            .sendfile_roots
            .iter()
            .any(|root| real.starts_with(root));
        (inside && real.is_file()).then_some(real)
    }
}

/// Headers of the PHP response that stay on the file it hands over.
const SENDFILE_KEPT_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::SET_COOKIE,
];

/// The path under which the service is mounted: what `nest_service` stripped from the
/// original path (`/legacy/index.php` seen as `/index.php` → `/legacy`).
fn mount_prefix<'a>(original: &'a str, inner: &str) -> &'a str {
    match original.strip_suffix(inner) {
        Some(prefix) => prefix,
        // `/legacy` arrives as `/`.
        None if inner == "/" => original.trim_end_matches('/'),
        None => "",
    }
}

/// Whether a response is a server-sent events stream.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// The file a PHP response hands to the server, if any.
fn sendfile_target(headers: &http::HeaderMap) -> Option<String> {
    ["x-sendfile", "x-accel-redirect"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Gives a job up when the request's [`TimeoutNotice`] fired before the response head came
/// back; dropped unfired (the client left), it leaves the script running, as php-fpm does.
/// Gives a queued or running job up when the service future is dropped before its head
/// arrived: after a timeout the script is stopped; when the client left, a job still in the
/// queue is dropped (a running one learns at its next output, from the [`ClientGuard`]).
struct JobGuard {
    notice: Option<TimeoutNotice>,
    control: Option<JobControl>,
}

impl JobGuard {
    fn disarm(mut self) {
        self.control = None;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let Some(control) = self.control.take() else {
            return;
        };
        static WITHDRAWN: Throttle = Throttle::per_second(5);
        static TIMED_OUT_QUEUED: Throttle = Throttle::per_second(5);
        static INTERRUPTED: Throttle = Throttle::per_second(5);
        if !self.notice.as_ref().is_some_and(TimeoutNotice::fired) {
            if control.withdraw()
                && let Some(suppressed) = WITHDRAWN.admit()
            {
                tracing::info!(
                    suppressed,
                    "client left while its request was queued; it will not run"
                );
            }
            return;
        }
        match control.abandon() {
            Abandoned::FromQueue => {
                if let Some(suppressed) = TIMED_OUT_QUEUED.admit() {
                    tracing::info!(
                        suppressed,
                        "request timed out while queued; it will not run"
                    );
                }
            }
            Abandoned::Interrupted => {
                if let Some(suppressed) = INTERRUPTED.admit() {
                    tracing::warn!(suppressed, "request timed out; interrupting its PHP script");
                }
            }
            Abandoned::TooLate => {}
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
    fn worker_prefixes_match_whole_segments() {
        assert!(path_under("/anything", "/"));
        assert!(path_under("/api", "/api"));
        assert!(path_under("/api/users", "/api"));
        assert!(!path_under("/apix", "/api"));
        assert!(path_under("/api/x", "/api/"));
        assert!(!path_under("/other", "/api"));
    }

    #[test]
    fn mount_prefixes() {
        assert_eq!(mount_prefix("/legacy/index.php", "/index.php"), "/legacy");
        assert_eq!(mount_prefix("/legacy", "/"), "/legacy");
        assert_eq!(mount_prefix("/legacy/", "/"), "/legacy");
        assert_eq!(mount_prefix("/index.php", "/index.php"), "");
    }

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
