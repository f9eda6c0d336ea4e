//! [`PhpService`]: the final service for a document root. It resolves the request path
//! (see [`docroot`](crate::docroot)), serves static files, and for a script receives the
//! body, queues the request for a worker and turns PHP's answer into a response. Every
//! failure becomes a response here: 404, 400, 408, 413, 503, 500.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri};
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};

use super::body::{BodyError, MinRate, RequestBody};
use super::job::{JobEvent, JobHandle, NewJob};
use super::pool::{PoolHandle, SubmitError};
use super::request::{PhpRequest, RequestParts};
use super::response::{PhpBody, ResponseStart};
use super::x_sendfile::{self, SendfileRoots};
use crate::config::{DEFAULT_MAX_BODY_SIZE, DEFAULT_SERVER_SOFTWARE};
use crate::context::{
    CollectTimings, ConnectionInfo, ConnectionShare, Deadline, RequestId, ResolvedPath,
};
use crate::docroot::{PathResolver, Resolution, ScriptMatch};
use crate::early_hints::EarlyHints;
use crate::error_response::{error_response, retry_later};
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
    resolver: PathResolver,
    root_text: String,
    max_body_size: u64,
    static_options: StaticOptions,
    x_sendfile: SendfileRoots,
    sse_timeout: Option<Duration>,
    min_body_rate: MinRate,
    max_wait_time: Option<Duration>,
    worker_mode: Option<WorkerRoute>,
    server_software: String,
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

/// The future [`PhpService`] returns.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl PhpService {
    /// A service for the paths `resolver` resolves, running scripts on `pool`.
    pub(crate) fn new(pool: PoolHandle, resolver: PathResolver) -> Self {
        let root_text = resolver.document_root().to_string_lossy().into_owned();
        let x_sendfile = SendfileRoots::document_root(&resolver);
        Self {
            inner: Arc::new(Inner {
                pool,
                resolver,
                root_text,
                max_body_size: DEFAULT_MAX_BODY_SIZE,
                static_options: StaticOptions::default(),
                x_sendfile,
                sse_timeout: Some(crate::config::DEFAULT_SSE_TIMEOUT),
                min_body_rate: MinRate::NONE,
                max_wait_time: None,
                worker_mode: None,
                server_software: DEFAULT_SERVER_SOFTWARE.to_owned(),
            }),
        }
    }

    /// Sets the largest request body, in bytes (larger gets 413).
    pub(crate) fn max_body_size(mut self, bytes: u64) -> Self {
        Arc::make_mut(&mut self.inner).max_body_size = bytes;
        self
    }

    /// Sets the directories X-Sendfile / X-Accel-Redirect may hand files from (default: the
    /// document root), under the resolver's symlink policy. Directories that do not exist
    /// are skipped with a warning.
    pub(crate) fn sendfile_roots(mut self, roots: &[PathBuf]) -> Self {
        let policy = self.inner.resolver.symlink_policy();
        Arc::make_mut(&mut self.inner).x_sendfile = SendfileRoots::new(roots, policy);
        self
    }

    /// Sets the longest life of a `text/event-stream` response (None: unbounded).
    pub(crate) fn sse_timeout(mut self, limit: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.inner).sse_timeout = limit;
        self
    }

    /// Sets how static files are served (cache lifetime).
    pub(crate) fn static_options(mut self, options: StaticOptions) -> Self {
        Arc::make_mut(&mut self.inner).static_options = options;
        self
    }

    /// Sets `$_SERVER['SERVER_SOFTWARE']`.
    pub(crate) fn server_software(mut self, value: &str) -> Self {
        value.clone_into(&mut Arc::make_mut(&mut self.inner).server_software);
        self
    }

    /// Cuts off request bodies that arrive slower than `rate` with 408 Request Timeout.
    pub(crate) fn min_body_rate(mut self, rate: MinRate) -> Self {
        Arc::make_mut(&mut self.inner).min_body_rate = rate;
        self
    }

    /// Answers 503 with Retry-After to a request that waits longer than `limit` for a
    /// worker (its connection's share of the pool, then the queue); None: no limit.
    pub(crate) fn max_wait_time(mut self, limit: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.inner).max_wait_time = limit;
        self
    }

    /// Worker mode: requests whose path lies under `prefix` run in the worker script
    /// `script` (absolute) on `pool`, a [`WorkerModePool`](super::worker::WorkerModePool)'s
    /// handle; static files are still served as files.
    pub(crate) fn worker_mode(mut self, pool: PoolHandle, script: &Path, prefix: &str) -> Self {
        let script_name = super::worker::script_name(self.document_root(), script);
        Arc::make_mut(&mut self.inner).worker_mode = Some(WorkerRoute {
            pool,
            script: ScriptMatch {
                script_filename: script.to_path_buf(),
                script_name,
                path_info: None,
                alias_root: None,
            },
            prefix: prefix.to_owned(),
        });
        self
    }

    /// The worker-mode pool, when worker mode is on.
    pub(crate) fn worker_pool(&self) -> Option<&PoolHandle> {
        self.inner.worker_mode.as_ref().map(|route| &route.pool)
    }

    /// The canonical document root.
    pub fn document_root(&self) -> &Path {
        self.inner.resolver.document_root()
    }

    /// What resolves request paths to files: the document root, the aliases, the symlink
    /// policy. Give the same one to a [`FrontControllerLayer`](crate::layers::FrontControllerLayer).
    pub fn path_resolver(&self) -> &PathResolver {
        &self.inner.resolver
    }

    /// The worker pool this service queues on.
    pub(crate) fn pool(&self) -> &PoolHandle {
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
            None => self.resolver.resolve(request.uri().path()),
        };
        // An alias is a location of its own: the worker script never takes its paths.
        if let Some(route) = &self.worker_mode
            && route.matches(request.uri().path())
            && !self.resolver.in_alias(request.uri().path())
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
                static_files::serve(&file, request, &self.static_options).await
            }
            Resolution::DirectoryWithoutSlash => redirect_to_directory(&request),
            Resolution::BadRequest => error_response(StatusCode::BAD_REQUEST),
            Resolution::NotFound => error_response(StatusCode::NOT_FOUND),
            Resolution::Forbidden => {
                static REFUSED: Throttle = Throttle::per_second(5);
                if let Some(suppressed) = REFUSED.admit() {
                    tracing::info!(uri = %request.uri(), suppressed, "refused a hidden, PHP source or backup path, or a symlink SYMLINKS does not allow; answering 404");
                }
                error_response(StatusCode::NOT_FOUND)
            }
        }
    }

    /// Runs `script` for `request` on `pool`: a short sequence of steps, each of which may
    /// answer instead (413, 408, 400, 503, 500).
    async fn run(
        &self,
        request: Request<Body>,
        script: ScriptMatch,
        pool: &PoolHandle,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let (body, content_length) = match self.receive_body(&parts, body).await {
            Ok(received) => received,
            Err(refused) => return refused.response(),
        };
        let php_request = match self.php_request(&parts, &script, content_length) {
            Ok(php_request) => php_request,
            Err(refused) => return refused.response(),
        };
        let early_hints = parts.extensions.get::<EarlyHints>().cloned();
        // MAX_WAIT_TIME counts from here: the wait for a place among this connection's
        // requests, then for a worker.
        let wait_limit = self
            .max_wait_time
            .map(|limit| (limit, Instant::now() + limit));
        // Wait for a place among this connection's requests in the pool (still under the
        // request timeout, holding no worker).
        let admission = match parts.extensions.get::<ConnectionShare>() {
            Some(share) => {
                let admit = share.admit(pool.workers());
                match wait_limit {
                    None => Some(admit.await),
                    Some((limit, until)) => {
                        match tokio::time::timeout_at(until.into(), admit).await {
                            Ok(admission) => Some(admission),
                            Err(_) => return waited_too_long(pool, limit, &parts.uri),
                        }
                    }
                }
            }
            None => None,
        };
        let new = NewJob {
            request: php_request,
            body,
            deadline: parts.extensions.get::<Deadline>().cloned(),
            early_hints: early_hints.is_some(),
            profile: parts.extensions.get::<CollectTimings>().is_some(),
            admission,
        };
        let mut job = match submit(pool, new) {
            Ok(job) => job,
            Err(refused) => return refused.response(),
        };
        // From here until the response is complete, dropping `job` (this future dropped by
        // a timeout or a client that left) cancels it: see `super::job`.
        let withdrawal = job.withdrawal();
        let started = relay_hints_until_start(&mut job, early_hints.as_ref());
        let started = match wait_limit {
            None => started.await,
            Some((limit, until)) => {
                tokio::pin!(started);
                tokio::select! {
                    start = &mut started => start,
                    () = tokio::time::sleep_until(until.into()) => {
                        // A worker may have taken it just now: then wait for it as usual.
                        if withdrawal.if_queued() {
                            return waited_too_long(pool, limit, &parts.uri);
                        }
                        started.await
                    }
                }
            }
        };
        let Some(start) = started else {
            tracing::error!(uri = %parts.uri, "PHP worker ended without a response; answering 500");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR);
        };
        if let Some(target) = x_sendfile::target(&start.head.headers) {
            job.complete();
            return x_sendfile::serve(
                &self.x_sendfile,
                &self.static_options,
                parts,
                start.head,
                &target,
            )
            .await;
        }
        self.response(start, job)
    }

    /// Receives the request body, within the size limit and the minimum rate; with its
    /// length as PHP's CONTENT_LENGTH.
    async fn receive_body(
        &self,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<(RequestBody, Option<u64>), Refused> {
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
            return Err(Refused(StatusCode::PAYLOAD_TOO_LARGE));
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
                return Err(Refused(status));
            }
        };
        let content_length = match &body {
            RequestBody::Empty => declared.filter(|n| *n == 0),
            RequestBody::Memory(data) => Some(data.len() as u64),
            RequestBody::File(f) => f.metadata().ok().map(|m| m.len()),
        };
        Ok((body, content_length))
    }

    /// The request as PHP sees it (`$_SERVER` and the SAPI fields); 400 when PHP cannot
    /// take it.
    fn php_request(
        &self,
        parts: &http::request::Parts,
        script: &ScriptMatch,
        content_length: Option<u64>,
    ) -> Result<PhpRequest, Refused> {
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
            server_software: &self.server_software,
        };
        // Under an alias, DOCUMENT_ROOT is its directory, as nginx's `$document_root` there.
        let document_root = script.alias_root.as_deref().map_or(
            Cow::Borrowed(self.root_text.as_str()),
            Path::to_string_lossy,
        );
        PhpRequest::new(request_parts, script, &document_root, content_length).map_err(|err| {
            static INVALID: Throttle = Throttle::per_second(5);
            if let Some(suppressed) = INVALID.admit() {
                tracing::info!(uri = %parts.uri, error = %err, suppressed, "request PHP cannot take; answering 400");
            }
            Refused(StatusCode::BAD_REQUEST)
        })
    }

    /// The response from PHP's start: a streamed body carries the job (so a client that
    /// leaves mid-stream stops the script) and, for server-sent events, `SSE_TIMEOUT`.
    fn response(&self, start: ResponseStart, job: JobHandle) -> Response {
        let ResponseStart {
            head,
            mut body,
            timings,
        } = start;
        match &mut body {
            PhpBody::Stream {
                job: held,
                deadline,
                ..
            } => {
                *held = Some(job);
                if let Some(limit) = self.sse_timeout
                    && is_event_stream(&head.headers)
                {
                    *deadline = Some(Box::pin(tokio::time::sleep(limit)));
                }
            }
            PhpBody::Full(_) => job.complete(),
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
}

/// Why a step of [`Inner::run`] answers instead of going on: the status (the step has
/// logged the detail).
struct Refused(StatusCode);

impl Refused {
    fn response(self) -> Response {
        match self.0 {
            // The pool's queue is full or closed: worth retrying soon.
            StatusCode::SERVICE_UNAVAILABLE => retry_later(StatusCode::SERVICE_UNAVAILABLE, 1),
            status => error_response(status),
        }
    }
}

/// Queues `new` on `pool`: the job's handle, or 503 when the queue is full or closed.
fn submit(pool: &PoolHandle, new: NewJob) -> Result<JobHandle, Refused> {
    match pool.submit(new) {
        Ok(job) => Ok(job),
        Err(SubmitError::QueueFull(job)) => {
            static QUEUE_FULL: Throttle = Throttle::per_second(5);
            if let Some(suppressed) = QUEUE_FULL.admit() {
                tracing::warn!(
                    request = job.tag(),
                    workers = pool.workers(),
                    suppressed,
                    "PHP queue full; answering 503"
                );
            }
            Err(Refused(StatusCode::SERVICE_UNAVAILABLE))
        }
        Err(SubmitError::ShuttingDown(job)) => {
            static SHUTTING_DOWN: Throttle = Throttle::per_second(5);
            if let Some(suppressed) = SHUTTING_DOWN.admit() {
                tracing::info!(
                    request = job.tag(),
                    suppressed,
                    "PHP pool shutting down; answering 503"
                );
            }
            Err(Refused(StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// 503 with Retry-After for a request that waited `limit` for a worker in vain; counted and
/// logged (throttled).
fn waited_too_long(pool: &PoolHandle, limit: Duration, uri: &http::Uri) -> Response {
    static WAITED: Throttle = Throttle::per_second(5);
    pool.stats().wait_timeouts.fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = WAITED.admit() {
        tracing::warn!(
            %uri,
            max_wait_ms = limit.as_millis() as u64,
            workers = pool.workers(),
            queued = pool.queue_depth(),
            suppressed,
            "request waited longer than MAX_WAIT_TIME for a PHP worker; answering 503"
        );
    }
    retry_later(StatusCode::SERVICE_UNAVAILABLE, limit.as_secs().max(1))
}

/// Waits for the job's response start, passing its informational responses (103 Early
/// Hints) to the connection meanwhile; None if the worker dropped the job.
async fn relay_hints_until_start(
    job: &mut JobHandle,
    early_hints: Option<&EarlyHints>,
) -> Option<ResponseStart> {
    loop {
        match job.next().await {
            JobEvent::Started(start) => return Some(start),
            JobEvent::Lost => return None,
            JobEvent::Hint(head) => {
                if let Some(hints) = early_hints
                    && let Err(err) = hints.send(head.status, &head.headers).await
                {
                    tracing::debug!(error = %err, "informational response not sent");
                }
            }
        }
    }
}

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
