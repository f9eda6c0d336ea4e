//! The built application: PHP's engine, the worker pool, and the services over them.

use std::path::Path;

use axum::Router;

use crate::config::{Config, ConfigError};
use crate::ffi::{self, StartupError};
use crate::internal::{self, Lifecycle};
use crate::layers::{MetricsLayer, ValidateHostLayer};
use crate::php::PhpService;
use crate::php::body::MinRate;
use crate::php::engine::{self, PhpEngine};
use crate::php::pool::{PoolHandle, WorkerPool};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// PHP did not start (or was already started in this process).
    #[error(transparent)]
    Php(#[from] StartupError),
    /// The worker threads could not be created.
    #[error("starting {workers} PHP worker threads failed: {source}")]
    Workers {
        /// How many were asked for.
        workers: usize,
        /// Why.
        source: std::io::Error,
    },
    /// The document root cannot be used.
    #[error("document root {path} cannot be used: {source}")]
    DocumentRoot {
        /// The configured path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running tokio_php: PHP started, workers waiting. Build the HTTP side with
/// [`App::router`] or [`App::php_service`], the operators' side with
/// [`App::internal_router`], and end with [`App::shutdown`].
#[derive(Debug)]
pub struct App {
    config: Config,
    engine: Option<PhpEngine>,
    pool: Option<WorkerPool>,
    php: PhpService,
    lifecycle: Lifecycle,
}

impl App {
    /// Validates `config`, starts PHP and the worker pool. PHP starts once per process: a
    /// second `App` in the same process fails with [`StartupError::AlreadyStarted`].
    pub fn start(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let mut workers = config.effective_workers();
        if !ffi::is_zts() && workers > 1 {
            tracing::warn!(
                requested = workers,
                "PHP is not thread-safe (NTS): running exactly 1 PHP worker; build a ZTS PHP (make php) for more"
            );
            workers = 1;
        }
        let capacity = config.effective_queue_capacity(workers);
        let engine = PhpEngine::start(
            config.php_ini.as_deref(),
            engine::opcache_entries(config.opcache_jit, config.opcache_jit_buffer_size),
        )?;
        let pool = WorkerPool::start(workers, capacity)
            .map_err(|source| StartError::Workers { workers, source })?;
        let php = PhpService::new(pool.handle(), &config.document_root, config.max_body_size)
            .map_err(|source| StartError::DocumentRoot {
                path: config.document_root.display().to_string(),
                source,
            })?
            .min_body_rate(MinRate {
                bytes_per_second: config.min_body_rate,
                grace: config.min_body_rate_grace,
            });
        tracing::info!(
            php = ffi::php_version(),
            zts = ffi::is_zts(),
            workers,
            queue = capacity,
            document_root = %php.document_root().display(),
            "PHP started"
        );
        Ok(Self {
            config,
            engine: Some(engine),
            pool: Some(pool),
            php,
            lifecycle: Lifecycle::new(),
        })
    }

    /// The whole stack for the standalone server, as a router.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback_service(self.php_service())
            .layer(ValidateHostLayer::new())
            .layer(MetricsLayer::new())
    }

    /// The internal server's routes: `/livez`, `/readyz`, `/health`, `/metrics` and
    /// `/config` (see [`crate::internal`]). Serve them on a separate, private address.
    pub fn internal_router(&self) -> Router {
        internal::router(
            self.lifecycle.clone(),
            self.pool().clone(),
            self.config.to_json(),
        )
    }

    /// Readiness: [`Lifecycle::start_draining`] turns `/readyz` to 503.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The bare PHP service, to mount with `nest_service` or `fallback_service` and wrap
    /// with the layers of your choice.
    pub fn php_service(&self) -> PhpService {
        self.php.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The worker pool's handle (counters, queue depth).
    pub fn pool(&self) -> &PoolHandle {
        self.php.pool()
    }

    /// The canonical document root.
    pub fn document_root(&self) -> &Path {
        self.php.document_root()
    }

    /// Finishes queued requests, ends the workers and shuts PHP down.
    pub fn shutdown(mut self) {
        self.lifecycle.start_draining();
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
        tracing::info!("PHP shut down");
    }
}
