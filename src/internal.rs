//! The internal server's routes, for operators and orchestrators, on their own address
//! (`INTERNAL_ADDR`), never on the public listener:
//!
//! - `GET /livez`: 200 while the process is up;
//! - `GET /readyz`: 200 while PHP runs and the server is not draining, else 503;
//! - `GET /health`: JSON with status, uptime, workers, busy workers, queue depth and
//!   requests served;
//! - `GET /metrics`: Prometheus text, HTTP and PHP pool metrics ([`crate::metrics`]);
//! - `GET /config`: the effective configuration as JSON, the TLS key path redacted.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = tokio_php::App::start(tokio_php::Config::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! tokio_php::server::Server::default()
//!     .serve(listener, app.internal_router(), std::future::pending())
//!     .await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use crate::php::pool::PoolHandle;

/// Whether the application takes traffic. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    inner: Arc<LifecycleInner>,
}

#[derive(Debug)]
struct LifecycleInner {
    started_at: Instant,
    draining: AtomicBool,
}

impl Lifecycle {
    /// A lifecycle that starts now, ready.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(LifecycleInner {
                started_at: Instant::now(),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// From now on `/readyz` answers 503: the server is shutting down.
    pub fn start_draining(&self) {
        if !self.inner.draining.swap(true, Ordering::AcqRel) {
            tracing::info!("draining: /readyz now answers 503");
        }
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Time since the application started.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started_at.elapsed()
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
struct Internal {
    lifecycle: Lifecycle,
    pool: PoolHandle,
    worker_pool: Option<PoolHandle>,
    config: Arc<serde_json::Value>,
}

/// The internal routes over `pool` (and the worker-mode pool, when worker mode is on),
/// answering readiness from `lifecycle` and showing `config` (already redacted) at
/// `/config`.
pub(crate) fn router(
    lifecycle: Lifecycle,
    pool: PoolHandle,
    worker_pool: Option<PoolHandle>,
    config: serde_json::Value,
) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/config", get(config_json))
        .with_state(Internal {
            lifecycle,
            pool,
            worker_pool,
            config: Arc::new(config),
        })
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(internal): State<Internal>) -> Response {
    if internal.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn health(State(internal): State<Internal>) -> Response {
    let draining = internal.lifecycle.is_draining();
    let stats = internal.pool.stats();
    let mut body = serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "uptime_secs": internal.lifecycle.uptime().as_secs(),
        "workers": internal.pool.total_workers(),
        "busy_workers": stats.total_busy(),
        "queue_depth": internal.pool.queue_depth(),
        "requests_served": stats.total(crate::scoreboard::Counter::Served),
    });
    // Under the supervisor: every serving process, from the shared scoreboard.
    if let Some(board) = crate::scoreboard::board() {
        let processes: Vec<_> = (0..board.processes())
            .map(|index| {
                serde_json::json!({
                    "process": index,
                    "pid": board.pid(index),
                    "busy_workers": board.busy(index),
                    "accepting": board.ready(index),
                    "open_connections": board.open_connections(index),
                })
            })
            .collect();
        body["processes"] = serde_json::Value::Array(processes);
        body["process_restarts"] = board.restarts().into();
    }
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(internal): State<Internal>) -> Response {
    let mut text = crate::metrics::render_http();
    if let Some(board) = crate::scoreboard::board() {
        board.render_metrics(&mut text);
    }
    internal.pool.render_metrics(&mut text);
    if let Some(worker_pool) = &internal.worker_pool {
        worker_pool.render_worker_mode_metrics(&mut text);
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn config_json(State(internal): State<Internal>) -> Response {
    axum::Json(internal.config.as_ref().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    use crate::php::pool::WorkerPool;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_lifecycle() {
        // No worker threads: the routes need a pool handle, not PHP.
        let pool = WorkerPool::start(0, 4).unwrap();
        let lifecycle = Lifecycle::new();
        let router = router(
            lifecycle.clone(),
            pool.handle(),
            None,
            serde_json::json!({"tls_key": "[redacted]"}),
        );
        assert_eq!(get(&router, "/livez").await.0, StatusCode::OK);
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
        let (status, health) = get(&router, "/health").await;
        assert_eq!(status, StatusCode::OK);
        let health: serde_json::Value = serde_json::from_str(&health).unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["workers"], 0);
        assert_eq!(health["requests_served"], 0);

        lifecycle.start_draining();
        assert_eq!(
            get(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&router, "/livez").await.0, StatusCode::OK);
        let (status, health) = get(&router, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(health.contains("\"draining\""));

        let (_, config) = get(&router, "/config").await;
        assert_eq!(config, r#"{"tls_key":"[redacted]"}"#);
        let (status, metrics) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(metrics.contains("# TYPE tokio_php_queue_depth gauge\ntokio_php_queue_depth 0\n"));
        assert!(metrics.contains("tokio_php_execution_duration_seconds_count 0\n"));
        pool.shutdown();
    }
}
