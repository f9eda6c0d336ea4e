//! One connection's life: the TLS handshake, HTTP/1.1 or HTTP/2 (told apart by the first
//! bytes: the HTTP/2 preface or not), the connection's facts on every request, and the
//! watchdog that closes connections which send nothing, send headers too slowly, or sit
//! idle.
//!
//! The watchdog works from what the connection does, not from the socket alone:
//!
//! - a connection that has not started a request `header_timeout` after it was accepted
//!   (TLS handshake included) is closed;
//! - an HTTP/1 connection whose next request head started arriving more than
//!   `header_timeout` ago, and is not complete, is closed;
//! - a connection with no request in flight for `idle_timeout` is closed. A request in
//!   flight — a slow PHP script, a long stream — never is.
//!
//! HTTP/2 connections get a GOAWAY and a moment to close; HTTP/1 ones are dropped.
//!
//! An idle connection costs little: no hyper state exists before the first bytes arrive,
//! and an HTTP/1 connection with nothing in flight for [`PARK_AFTER`] is parked — hyper
//! hands the stream back with any bytes it had read, its read and write buffers are
//! freed, and the task waits for the next bytes with no buffer of its own.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::context::{ConnectionInfo, ConnectionShare};
use crate::early_hints::{EarlyHints, SharedIo};
use crate::error_response::error_response;
use crate::log_throttle::Throttle;
use crate::scoreboard::OpenConnection;
use crate::sendfile::SendfileStream;

use super::rewind::Rewind;

/// After the watchdog asks an HTTP/2 connection to close, how long it may take before it
/// is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often a draining connection that has not sent its first request is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long an idle HTTP/1 keep-alive connection stays open once the listener drains: a
/// request its client sends meanwhile is answered with `Connection: close` instead of
/// meeting a closed socket (a request in flight when an idle connection closes is lost to
/// a client that does not retry).
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(250);
/// How long an HTTP/1 connection has nothing in flight before it is parked: hyper's
/// buffers (16–24 KiB) are freed until the client sends again. Busy keep-alive
/// connections, whose next request follows within this, never pay for the re-creation.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// The per-connection limits the watchdog and the service enforce.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_uri_length: usize,
}

/// Everything a connection task needs, shared by all connections of a listener.
#[derive(Clone)]
pub(super) struct Shared {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    pub router: Router,
    pub limits: Limits,
    pub tls: Option<super::TlsConfig>,
    pub local: SocketAddr,
}

/// Serves one accepted connection until it ends, is closed by the watchdog, or drains.
/// `_permit` is the connection's place under the connection limit, `_open` its count on
/// the scoreboard; `_drain` keeps the listener's drain waiting until this connection is
/// gone.
pub(super) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    drain: watch::Receiver<bool>,
    _permit: Option<OwnedSemaphorePermit>,
    _open: OpenConnection,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let info = ConnectionInfo {
        remote,
        local: shared.local,
        tls: shared.tls.is_some(),
    };
    match &shared.tls {
        Some(tls) => {
            let acceptor = tls.acceptor(shared.limits.header_timeout);
            match axum_server::accept::Accept::accept(&acceptor, stream, ()).await {
                Ok((stream, _)) => {
                    let io = Watched::new(stream, Arc::clone(&activity));
                    drive(&shared, io, info, activity, drain).await;
                }
                Err(err) => {
                    tracing::debug!(%remote, error = %err, "TLS handshake failed or timed out; connection closed");
                }
            }
        }
        None => {
            let io = Watched::new(SendfileStream::new(stream), Arc::clone(&activity));
            drive(&shared, io, info, activity, drain).await;
        }
    }
}

async fn drive<I>(
    shared: &Shared,
    io: I,
    info: ConnectionInfo,
    activity: Arc<Activity>,
    drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Shared with the requests' Early Hints, which write 103s while a response is pending.
    let io = SharedIo::new(io);
    let service = ConnectionService {
        router: shared.router.clone(),
        info,
        share: ConnectionShare::new(),
        activity: Arc::clone(&activity),
        max_uri_length: shared.limits.max_uri_length,
        early_hints: io.early_hints(),
        drain: drain.clone(),
    };
    let mut io = Rewind::new(io);
    // The first bytes tell the HTTP/2 preface from an HTTP/1 request. No hyper state
    // exists until they arrive.
    let http2 = tokio::select! {
        sniffed = std::future::poll_fn(|cx| poll_sniff_http2(&mut io, cx)) => match sniffed {
            Ok(Some(http2)) => http2,
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(remote = %info.remote, error = %err, "connection failed before its first request");
                return;
            }
        },
        reason = watchdog(&activity, shared.limits, false) => {
            tracing::debug!(remote = %info.remote, reason = reason.as_str(), "closing connection");
            return;
        }
    };
    if http2 {
        activity.http2.store(true, Ordering::Relaxed);
        serve_http2(shared, io, service, &activity, drain).await;
    } else {
        serve_http1(shared, io, service, &activity, drain).await;
    }
}

/// The HTTP/2 connection preface, which a client sends before anything else.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the bytes are the HTTP/2 preface (`Some(true)`) or cannot be
/// (`Some(false)`), and puts them back for hyper. `None`: the client closed first.
fn poll_sniff_http2<T: AsyncRead + Unpin>(
    io: &mut Rewind<T>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<bool>>> {
    loop {
        let seen = io.unread();
        let n = seen.len().min(HTTP2_PREFACE.len());
        if seen[..n] != HTTP2_PREFACE[..n] {
            return Poll::Ready(Ok(Some(false)));
        }
        if n == HTTP2_PREFACE.len() {
            return Poll::Ready(Ok(Some(true)));
        }
        if !std::task::ready!(io.poll_read_more(cx))? {
            // Closed mid-preface: hyper's HTTP/1 parser answers what was sent, if anything.
            return Poll::Ready(Ok((!io.unread().is_empty()).then_some(false)));
        }
    }
}

async fn serve_http2<I>(
    shared: &Shared,
    io: Rewind<SharedIo<I>>,
    service: ConnectionService,
    activity: &Activity,
    mut drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = service.info.remote;
    let connection = shared.http2.serve_connection(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    let mut closing = false;
    let mut drop_at: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            reason = watchdog(activity, shared.limits, false), if drop_at.is_none() => {
                log_close(remote, reason);
                if !closing {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                drop_at = Some(Instant::now() + CLOSE_GRACE);
            }
            () = draining(&mut drain, activity), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until_some(drop_at) => return,
        }
    }
}

/// Serves HTTP/1 requests, and parks the connection while it is idle: hyper gives the
/// stream back (with any bytes it read and did not use), its buffers are freed, and a new
/// hyper connection takes over when the client sends again.
async fn serve_http1<I>(
    shared: &Shared,
    mut io: Rewind<SharedIo<I>>,
    mut service: ConnectionService,
    activity: &Activity,
    mut drain: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = service.info.remote;
    loop {
        // Boxed so that a parked connection's task does not keep room for it.
        let mut connection = Box::new(shared.http1.serve_connection(TokioIo::new(io), service));
        let mut parking = false;
        let mut closing = false;
        let ended = loop {
            tokio::select! {
                result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
                reason = watchdog(activity, shared.limits, !(parking || closing)) => {
                    if reason != CloseReason::Parked {
                        // Nothing in flight, or a response its client does not read:
                        // nothing to finish.
                        log_close(remote, reason);
                        return;
                    }
                    // Idle: hyper closes at once and returns the stream.
                    Pin::new(&mut *connection).graceful_shutdown();
                    parking = true;
                }
                () = draining_http1(&mut drain, activity), if !closing => {
                    Pin::new(&mut *connection).graceful_shutdown();
                    closing = true;
                }
            }
        };
        if let Err(err) = ended {
            tracing::debug!(%remote, error = %err, "connection ended with an error");
            return;
        }
        let parts = connection.into_parts();
        io = parts.io.into_inner();
        io.put_back(parts.read_buf);
        service = parts.service;
        if !parking || closing {
            // hyper closed the connection (the client asked, or a request it refused), or
            // the listener drains: finish it.
            let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
            return;
        }
        if !io.unread().is_empty() {
            // hyper had read the start of the next request: its head has started.
            activity.on_read();
            tracing::trace!(%remote, unread = io.unread().len(), "connection parked with the next request begun; resuming");
            continue;
        }
        tracing::trace!(%remote, "connection parked");
        tokio::select! {
            more = std::future::poll_fn(|cx| io.poll_read_more(cx)) => match more {
                Ok(true) => tracing::trace!(%remote, "parked connection resumed"),
                Ok(false) => return,
                Err(err) => {
                    tracing::debug!(%remote, error = %err, "idle connection failed");
                    return;
                }
            },
            reason = watchdog(activity, shared.limits, false) => {
                log_close(remote, reason);
                return;
            }
            () = draining_http1(&mut drain, activity) => return,
        }
    }
}

fn log_close(remote: SocketAddr, reason: CloseReason) {
    static STALLED: Throttle = Throttle::per_second(5);
    if reason == CloseReason::WriteStalled {
        if let Some(suppressed) = STALLED.admit() {
            tracing::info!(%remote, reason = reason.as_str(), suppressed, "client stopped reading the response; closing connection (its script stops at its next output)");
        }
    } else {
        tracing::debug!(%remote, reason = reason.as_str(), "closing connection");
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the listener drains and this connection may be asked to close: at once
/// if it has served a request, else when its first request starts (so a connection
/// accepted just before the signal still gets its answer; the watchdog bounds the wait).
async fn draining(drain: &mut watch::Receiver<bool>, activity: &Activity) {
    if drain.wait_for(|draining| *draining).await.is_err() {
        // The listener is gone without draining: nothing to wait for.
        return std::future::pending().await;
    }
    while activity.requests.load(Ordering::Acquire) == 0 {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// [`draining`] for HTTP/1: then [`DRAIN_IDLE_GRACE`] for a request already on its way
/// (answered with `Connection: close`), then once nothing is in flight.
async fn draining_http1(drain: &mut watch::Receiver<bool>, activity: &Activity) {
    draining(drain, activity).await;
    tokio::time::sleep(DRAIN_IDLE_GRACE).await;
    while activity.in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Resolves when the connection should be closed (or, with `park`, parked), with the
/// reason.
///
/// It reads the connection's [`Activity`] and sleeps until the next deadline, but never
/// longer than the shortest timeout: a request head that starts, a request that ends, or
/// a write that blocks while it sleeps sets a deadline at least that far away, so the next
/// look still finds it on time. Requests themselves never wake it (no notification per
/// request on the hot path).
async fn watchdog(activity: &Activity, limits: Limits, park: bool) -> CloseReason {
    let mut longest_sleep = limits
        .header_timeout
        .min(limits.idle_timeout)
        .min(limits.write_timeout);
    if park {
        longest_sleep = longest_sleep.min(PARK_AFTER);
    }
    loop {
        let now = activity.born.elapsed();
        let wake_at = match activity.deadline(limits, park) {
            Some((at, reason)) if now >= at => return reason,
            Some((at, _)) => at.min(now + longest_sleep),
            None => now + longest_sleep,
        };
        tokio::time::sleep_until(activity.born + wake_at).await;
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// No request within the header timeout of the connection opening.
    NoRequest,
    /// A request head took longer than the header timeout.
    SlowHeaders,
    /// No request in flight for the idle timeout.
    Idle,
    /// A response write made no progress for the write timeout: the client stopped
    /// reading.
    WriteStalled,
    /// Not a close: an HTTP/1 connection idle for [`PARK_AFTER`] gives up hyper's buffers.
    Parked,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::NoRequest => "no request within HEADER_TIMEOUT_SECS of connecting",
            Self::SlowHeaders => "request headers not complete within HEADER_TIMEOUT_SECS",
            Self::Idle => "idle for IDLE_TIMEOUT_SECS",
            Self::WriteStalled => "no response bytes accepted for WRITE_TIMEOUT_SECS",
            Self::Parked => "idle; parked",
        }
    }
}

// === impl Activity ===

/// What a connection has been doing, shared by its IO, its requests and its watchdog.
/// Times are milliseconds since `born`, plus one where 0 means "not now"
/// (`head_started_ms`, `write_blocked_ms`).
#[derive(Debug)]
pub(super) struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    idle_since_ms: AtomicU64,
    head_started_ms: AtomicU64,
    write_blocked_ms: AtomicU64,
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            write_blocked_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        }
    }

    fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived. While no request is in flight on HTTP/1 they start a request head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let now = self.now_ms().saturating_add(1);
            let _ =
                self.head_started_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Notes how a write to the socket went. Pending: the socket's buffer is full, and
    /// the first of a run of blocked writes starts the write timeout. Ready: the bytes
    /// went out (the client reads) or the write failed (the connection is done).
    fn on_write<T>(&self, result: &Poll<T>) {
        if result.is_pending() {
            let now = self.now_ms().saturating_add(1);
            let _ =
                self.write_blocked_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        } else if self.write_blocked_ms.load(Ordering::Relaxed) != 0 {
            self.write_blocked_ms.store(0, Ordering::Release);
        }
    }

    /// A request reached the service; the guard marks it finished when dropped.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
        InFlight {
            activity: Arc::clone(self),
        }
    }

    /// When (ms since `born`, as a duration) the watchdog should close the connection,
    /// and why: the earlier of a blocked write's deadline and the connection's own.
    fn deadline(&self, limits: Limits, park: bool) -> Option<(Duration, CloseReason)> {
        let blocked = self.write_blocked_ms.load(Ordering::Acquire);
        let stalled = (blocked > 0).then(|| {
            (
                Duration::from_millis(blocked - 1) + limits.write_timeout,
                CloseReason::WriteStalled,
            )
        });
        let parked = park.then(|| self.park_deadline()).flatten();
        [stalled, self.connection_deadline(limits), parked]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// When an HTTP/1 connection that has served a request, has none in flight, has not
    /// started the next one and is not blocked writing is parked: [`PARK_AFTER`] after its
    /// last request ended.
    fn park_deadline(&self) -> Option<(Duration, CloseReason)> {
        let quiet = !self.is_http2()
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.requests.load(Ordering::Acquire) > 0
            && self.head_started_ms.load(Ordering::Acquire) == 0
            && self.write_blocked_ms.load(Ordering::Acquire) == 0;
        quiet.then(|| {
            let ended = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            (ended + PARK_AFTER, CloseReason::Parked)
        })
    }

    /// The deadline from requests alone; None while a request is in flight.
    fn connection_deadline(&self, limits: Limits) -> Option<(Duration, CloseReason)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Acquire) == 0 {
            return Some((limits.header_timeout, CloseReason::NoRequest));
        }
        let idle =
            Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)) + limits.idle_timeout;
        let head_started = self.head_started_ms.load(Ordering::Acquire);
        if head_started > 0 && !self.is_http2() {
            let slow = Duration::from_millis(head_started - 1) + limits.header_timeout;
            if slow < idle {
                return Some((slow, CloseReason::SlowHeaders));
            }
        }
        Some((idle, CloseReason::Idle))
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(super) struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .idle_since_ms
            .store(self.activity.now_ms(), Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Watched ===

pin_project_lite::pin_project! {
    /// The connection's IO, reporting arriving bytes to its [`Activity`].
    struct Watched<I> {
        #[pin]
        inner: I,
        activity: Arc<Activity>,
    }
}

impl<I> Watched<I> {
    fn new(inner: I, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result
            && buf.filled().len() > before
        {
            this.activity.on_read();
        }
        result
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        this.activity.on_write(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        this.activity.on_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

// === impl ConnectionService ===

/// The router for one connection: every request carries the connection's facts, counts
/// as in flight until its response body is done, and is refused with 414 when its target
/// is longer than the limit.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    info: ConnectionInfo,
    /// This connection's share of the PHP pool, the same for all its requests.
    share: ConnectionShare,
    activity: Arc<Activity>,
    max_uri_length: usize,
    early_hints: EarlyHints,
    /// Whether the listener drains: HTTP/1 responses then close their connection.
    drain: watch::Receiver<bool>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<InFlightBody>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let guard = self.activity.begin_request();
        let target_length = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if target_length > self.max_uri_length {
            static TOO_LONG: Throttle = Throttle::per_second(5);
            if let Some(suppressed) = TOO_LONG.admit() {
                tracing::info!(
                    remote = %self.info.remote,
                    length = target_length,
                    limit = self.max_uri_length,
                    suppressed,
                    "request target too long; answering 414 (MAX_URI_LENGTH)"
                );
            }
            let response = error_response(http::StatusCode::URI_TOO_LONG);
            return Box::pin(std::future::ready(Ok(
                response.map(|body| InFlightBody { inner: body, guard })
            )));
        }
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.info);
        request.extensions_mut().insert(self.share.clone());
        if request.version() == http::Version::HTTP_11 {
            request.extensions_mut().insert(self.early_hints.clone());
        }
        let close = request.version() <= http::Version::HTTP_11 && *self.drain.borrow();
        let future = tower::Service::call(&mut self.router.clone(), request);
        Box::pin(async move {
            let mut response = future.await?;
            if close {
                // Draining: this is the connection's last response.
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            // The body type hyper writes: no second box around the response body.
            Ok(response.map(|inner| InFlightBody { inner, guard }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is done.
    struct InFlightBody {
        #[pin]
        inner: Body,
        guard: InFlight,
    }
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(30),
        max_uri_length: 8192,
    };

    #[test]
    fn a_silent_connection_is_due_at_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        assert_eq!(
            activity.deadline(LIMITS, false),
            Some((Duration::from_secs(5), CloseReason::NoRequest))
        );
        // Bytes alone do not count as a request.
        activity.on_read();
        assert_eq!(
            activity.deadline(LIMITS, false).unwrap().1,
            CloseReason::NoRequest
        );
    }

    #[test]
    fn a_blocked_write_is_due_at_the_write_timeout_even_in_flight() {
        let activity = Arc::new(Activity::new());
        let _request = activity.begin_request();
        assert_eq!(activity.deadline(LIMITS, false), None);
        activity.on_write(&Poll::<()>::Pending);
        activity.on_write(&Poll::<()>::Pending);
        let (at, reason) = activity.deadline(LIMITS, false).unwrap();
        assert_eq!(reason, CloseReason::WriteStalled);
        assert!(at >= LIMITS.write_timeout && at < LIMITS.write_timeout + Duration::from_secs(1));
        // A write that goes out means the client reads again.
        activity.on_write(&Poll::Ready(()));
        assert_eq!(activity.deadline(LIMITS, false), None);
    }

    #[test]
    fn in_flight_requests_are_never_due_and_idle_counts_from_the_last() {
        let activity = Arc::new(Activity::new());
        let a = activity.begin_request();
        let b = activity.begin_request();
        assert_eq!(activity.deadline(LIMITS, false), None);
        drop(a);
        assert_eq!(activity.deadline(LIMITS, false), None);
        drop(b);
        let ended = activity.idle_since_ms.load(Ordering::Relaxed);
        assert_eq!(
            activity.deadline(LIMITS, false),
            Some((
                Duration::from_millis(ended) + LIMITS.idle_timeout,
                CloseReason::Idle
            ))
        );
    }

    #[test]
    fn a_slow_http1_head_after_a_request_is_due_at_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        activity.on_read();
        drop(activity.begin_request());
        activity.idle_since_ms.store(20_000, Ordering::Relaxed);
        activity.on_read();
        // Pretend the head started 30 s in.
        activity.head_started_ms.store(30_001, Ordering::Relaxed);
        assert_eq!(
            activity.deadline(LIMITS, false),
            Some((Duration::from_secs(35), CloseReason::SlowHeaders))
        );
        // The head completes: the request starts and the slow-head clock stops.
        drop(activity.begin_request());
        assert_eq!(
            activity.deadline(LIMITS, false).unwrap().1,
            CloseReason::Idle
        );
    }

    #[test]
    fn http2_frames_between_requests_only_count_towards_idle() {
        let activity = Arc::new(Activity::new());
        activity.http2.store(true, Ordering::Relaxed);
        activity.on_read();
        drop(activity.begin_request());
        activity.on_read(); // a PING
        assert_eq!(
            activity.deadline(LIMITS, false).unwrap().1,
            CloseReason::Idle
        );
    }

    #[tokio::test]
    async fn the_watchdog_wakes_when_a_slow_head_starts() {
        let limits = Limits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(60),
            ..LIMITS
        };
        let activity = Arc::new(Activity::new());
        let request = activity.begin_request();
        let watching = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { watchdog(&activity, limits, false).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(request);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        activity.on_read();
        let reason = tokio::time::timeout(Duration::from_secs(5), watching)
            .await
            .expect("the watchdog slept through the slow head")
            .unwrap();
        assert_eq!(reason, CloseReason::SlowHeaders);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_counts_from_the_end_of_a_longer_request() {
        let limits = Limits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(1),
            ..LIMITS
        };
        let activity = Arc::new(Activity::new());
        let request = activity.begin_request();
        let watching = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move {
                let reason = watchdog(&activity, limits, false).await;
                (reason, activity.born.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(request);
        let (reason, at) = watching.await.unwrap();
        assert_eq!(reason, CloseReason::Idle);
        assert!(
            at >= Duration::from_secs(3) && at < Duration::from_millis(3100),
            "{at:?}"
        );
    }

    #[test]
    fn an_idle_http1_connection_is_parked_after_its_last_request() {
        let activity = Arc::new(Activity::new());
        // Nothing to park before the first request, or while one is in flight.
        assert_eq!(
            activity.deadline(LIMITS, true).unwrap().1,
            CloseReason::NoRequest
        );
        let request = activity.begin_request();
        assert_eq!(activity.deadline(LIMITS, true), None);
        drop(request);
        let ended = activity.idle_since_ms.load(Ordering::Relaxed);
        assert_eq!(
            activity.deadline(LIMITS, true),
            Some((
                Duration::from_millis(ended) + PARK_AFTER,
                CloseReason::Parked
            ))
        );
        // A blocked write, or the next head arriving, keeps hyper's buffers.
        activity.on_write(&Poll::<()>::Pending);
        assert_eq!(
            activity.deadline(LIMITS, true).unwrap().1,
            CloseReason::WriteStalled
        );
        activity.on_write(&Poll::Ready(()));
        activity.on_read();
        assert_eq!(
            activity.deadline(LIMITS, true).unwrap().1,
            CloseReason::SlowHeaders
        );
    }

    #[test]
    fn http2_connections_are_never_parked() {
        let activity = Arc::new(Activity::new());
        activity.http2.store(true, Ordering::Relaxed);
        drop(activity.begin_request());
        assert_eq!(
            activity.deadline(LIMITS, true).unwrap().1,
            CloseReason::Idle
        );
    }

    #[tokio::test]
    async fn the_watchdog_fires_at_the_deadline() {
        let limits = Limits {
            header_timeout: Duration::from_millis(100),
            ..LIMITS
        };
        let activity = Arc::new(Activity::new());
        let started = Instant::now();
        let reason = watchdog(&activity, limits, false).await;
        assert_eq!(reason, CloseReason::NoRequest);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(95) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
}
