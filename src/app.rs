//! The built application: PHP's engine, the worker pool, and the services over them.

use std::path::Path;

use axum::Router;
use tower::ServiceBuilder;

use crate::config::{Config, ConfigError};
use crate::docroot::PathResolver;
use crate::ffi::{self, StartupError};
use crate::internal::{self, Lifecycle};
use crate::layers::error_pages::{ErrorPageSet, ErrorPagesError};
use crate::layers::front_controller::FrontControllerError;
use crate::layers::rate_limit::InvalidRateLimit;
use crate::layers::{
    AccessLogLayer, CompressionLayer, ErrorPagesLayer, FrontControllerLayer, MetricsLayer,
    RateLimitLayer, RequestTimeoutLayer, ServerTimingLayer, SetRequestIdLayer, ValidateHostLayer,
};
use crate::php::PhpService;
use crate::php::body::MinRate;
use crate::php::engine::{self, PhpEngine};
use crate::php::pool::{PoolHandle, WorkerPool};
use crate::php::worker::{WorkerModePool, WorkerSettings};
use crate::static_files::StaticOptions;

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
    /// The front controller (INDEX_FILE) cannot be used.
    #[error(transparent)]
    FrontController(#[from] FrontControllerError),
    /// The worker script cannot be used (`WORKER_SCRIPT`).
    #[error("WORKER_SCRIPT {path} cannot be used: {source}")]
    WorkerScript {
        /// The resolved path.
        path: String,
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
    /// An error page cannot be loaded (`ERROR_PAGES_DIR`).
    #[error("ERROR_PAGES_DIR: {0}")]
    ErrorPages(#[from] ErrorPagesError),
    /// The rate limit cannot be enforced (`RATE_LIMIT`, `RATE_WINDOW`).
    #[error(transparent)]
    RateLimit(#[from] InvalidRateLimit),
}

/// The configured error pages; the default directory may be missing.
fn load_error_pages(config: &Config) -> Result<ErrorPageSet, ErrorPagesError> {
    let Some((dir, optional)) = config.effective_error_pages_dir() else {
        tracing::debug!("error pages off (ERROR_PAGES_DIR=off)");
        return Ok(ErrorPageSet::empty());
    };
    if optional && !dir.exists() {
        tracing::debug!(dir = %dir.display(), "no error pages directory; no error pages");
        return Ok(ErrorPageSet::empty());
    }
    let pages = ErrorPageSet::load(&dir)?;
    tracing::info!(dir = %dir.display(), statuses = ?pages.statuses(), "error pages loaded");
    Ok(pages)
}

/// A running tokio_php: PHP started, workers waiting. Build the HTTP side with
/// [`App::router`] or [`App::php_service`], the operators' side with
/// [`App::internal_router`], and end with [`App::shutdown`].
#[derive(Debug)]
pub struct App {
    config: Config,
    engine: Option<PhpEngine>,
    pool: Option<WorkerPool>,
    worker_pool: Option<WorkerModePool>,
    php: PhpService,
    front_controller: Option<FrontControllerLayer>,
    error_pages: ErrorPageSet,
    rate_limit: Option<RateLimitLayer>,
    lifecycle: Lifecycle,
}

impl App {
    /// Validates `config`, starts PHP and the worker pool. PHP starts once per process: a
    /// second `App` in the same process fails with [`StartupError::AlreadyStarted`].
    pub fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with(config, |config| {
            PhpEngine::start(
                config.php_ini.as_deref(),
                engine::jit_entries(config.opcache_jit, config.opcache_jit_buffer_size),
            )
        })
    }

    /// Like [`App::start`], over a PHP `engine` the supervisor started before it forked
    /// this process.
    pub(crate) fn start_with_engine(config: Config, engine: PhpEngine) -> Result<Self, StartError> {
        Self::start_with(config, move |_| Ok(engine))
    }

    fn start_with(
        config: Config,
        start_engine: impl FnOnce(&Config) -> Result<PhpEngine, StartupError>,
    ) -> Result<Self, StartError> {
        config.validate()?;
        // Settings that can fail are checked before PHP starts.
        let error_pages = load_error_pages(&config)?;
        let rate_limit = match config.rate_limit {
            0 => None,
            limit => Some(
                RateLimitLayer::new(limit, config.rate_window)?
                    .trusted_proxies(config.trusted_proxies.clone())
                    .error_responder(error_pages.clone()),
            ),
        };
        let mut workers = config.effective_workers();
        if config.worker_script.is_some() && !ffi::is_zts() {
            return Err(ConfigError {
                name: crate::config::ENV_WORKER_SCRIPT,
                value: config
                    .worker_script
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                expected: "a thread-safe (ZTS) PHP: worker mode runs beside the classic worker; build one with `make php`".to_owned(),
            }
            .into());
        }
        if !ffi::is_zts() && workers > 1 {
            tracing::warn!(
                requested = workers,
                "PHP is not thread-safe (NTS): running exactly 1 PHP worker per process; PROCESSES=N runs N processes, or build a ZTS PHP (make php) for more workers per process"
            );
            workers = 1;
        }
        let capacity = config.effective_queue_capacity(workers);
        let engine = start_engine(&config)?;
        if ffi::is_zts() && ffi::opcache_restart_waits_for_threads() == Some(false) {
            tracing::warn!(
                "this PHP's OPcache may restart its shared memory while other worker threads run \
                 scripts (opcache_reset(), a full cache), which crashes the server; build PHP with \
                 scripts/setup-php.sh, which applies scripts/php-patches/opcache-zts-restart.patch"
            );
        }
        let pool = WorkerPool::start(workers, capacity)
            .map_err(|source| StartError::Workers { workers, source })?;
        let resolver = PathResolver::new(&config.document_root)
            .map_err(|source| StartError::DocumentRoot {
                path: config.document_root.display().to_string(),
                source,
            })?
            .symlinks(config.symlinks)
            .aliases(&config.aliases)
            .map_err(|err| ConfigError {
                name: crate::config::ENV_ALIASES,
                value: config
                    .aliases
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                expected: format!("existing directories ({err})"),
            })?;
        let php = PhpService::new(pool.handle(), resolver)
            .max_body_size(config.max_body_size)
            .max_wait_time(config.max_wait_time)
            .server_software(config.effective_server_software())
            .sse_timeout(config.sse_timeout)
            .static_options(StaticOptions::default().cache_ttl(config.static_cache_ttl))
            .min_body_rate(MinRate {
                bytes_per_second: config.min_body_rate,
                grace: config.min_body_rate_grace,
            });
        let php = if config.sendfile_roots.is_empty() {
            php
        } else {
            php.sendfile_roots(&config.sendfile_roots)
        };
        let (php, worker_pool) = match config.worker_script_path() {
            None => (php, None),
            Some(script) => {
                let script = script
                    .canonicalize()
                    .map_err(|source| StartError::WorkerScript {
                        path: script.display().to_string(),
                        source,
                    })?;
                let count = match config.worker_count {
                    0 => workers,
                    n => n,
                };
                let worker_pool = WorkerModePool::start(WorkerSettings {
                    script: script.clone(),
                    document_root: php.document_root().to_path_buf(),
                    count,
                    max_requests: config.worker_max_requests,
                    capacity: config.effective_queue_capacity(count),
                    watch: config.watch,
                    server_software: config.effective_server_software().to_owned(),
                })
                .map_err(|source| StartError::Workers {
                    workers: count,
                    source,
                })?;
                tracing::info!(
                    script = %script.display(),
                    workers = count,
                    max_requests = config.worker_max_requests,
                    r#match = %config.worker_match,
                    watch = config.watch,
                    "worker mode on"
                );
                let php = php.worker_mode(worker_pool.handle(), &script, &config.worker_match);
                (php, Some(worker_pool))
            }
        };
        let front_controller = match &config.index_file {
            Some(script) => Some(FrontControllerLayer::with_resolver(
                php.path_resolver(),
                script,
            )?),
            None => None,
        };
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
            worker_pool,
            php,
            front_controller,
            error_pages,
            rate_limit,
            lifecycle: Lifecycle::new(),
        })
    }

    /// The whole stack for the standalone server, as a router: the feature layers the
    /// configuration turns on, in the order [`crate::layers`] documents, over the PHP
    /// service.
    pub fn router(&self) -> Router {
        let config = &self.config;
        let layers = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .option_layer(
                config
                    .access_log
                    .then(|| AccessLogLayer::new().trusted_proxies(config.trusted_proxies.clone())),
            )
            // HTTP metrics are read on the internal server; without it they cost for nothing.
            .option_layer(config.internal_addr.is_some().then(MetricsLayer::new))
            .option_layer(config.request_timeout.map(|timeout| {
                RequestTimeoutLayer::new(timeout).error_responder(self.error_pages.clone())
            }))
            .option_layer(self.rate_limit.clone())
            .option_layer(
                config
                    .compression
                    .then(|| CompressionLayer::new().min_size(config.compression_min_size)),
            )
            .layer(ErrorPagesLayer::new(self.error_pages.clone()))
            .layer(ValidateHostLayer::new())
            .option_layer(config.profile.then(ServerTimingLayer::new));
        let router = match &self.front_controller {
            Some(front) => Router::new().fallback_service(front.layer_service(self.php_service())),
            None => Router::new().fallback_service(self.php_service()),
        };
        router.layer(layers)
    }

    /// The error pages loaded at startup (empty when there are none).
    pub fn error_pages(&self) -> &ErrorPageSet {
        &self.error_pages
    }

    /// The internal server's routes: `/livez`, `/readyz`, `/health`, `/metrics` and
    /// `/config` (docs/health-checks.md and docs/metrics.md describe them). Serve them on a separate, private address.
    pub fn internal_router(&self) -> Router {
        internal::router(
            self.lifecycle.clone(),
            self.pool().clone(),
            self.php.worker_pool().cloned(),
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
    pub(crate) fn pool(&self) -> &PoolHandle {
        self.php.pool()
    }

    /// The canonical document root.
    pub fn document_root(&self) -> &Path {
        self.php.document_root()
    }

    /// What resolves request paths to files (document root, `ALIASES`, `SYMLINKS`): give
    /// it to [`FrontControllerLayer::with_resolver`] when composing the stack yourself.
    pub fn path_resolver(&self) -> &PathResolver {
        self.php.path_resolver()
    }

    /// Finishes queued requests, ends the workers and shuts PHP down.
    pub fn shutdown(mut self) {
        self.lifecycle.start_draining();
        if let Some(pool) = self.worker_pool.take() {
            pool.shutdown();
        }
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
        tracing::info!("PHP shut down");
    }
}
