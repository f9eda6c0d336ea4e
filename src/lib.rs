//! # tokio_php
//!
//! A PHP application server: axum (hyper, tokio) in front, PHP's embed SAPI in-process on a
//! pool of worker threads behind. PHP parses each request itself (`$_GET`, `$_POST`,
//! `$_FILES`, `$_COOKIE`, `php://input`), exactly as under php-fpm.
//!
//! ## Embedding
//!
//! Start PHP once with an [`App`], then serve its [`App::router`] or mount its
//! [`App::php_service`] beside your own routes:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tokio_php::{App, Config};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = App::start(Config::default().document_root("./public").php_workers(4))?;
//! let router = Router::new()
//!     .route("/api/health", get(|| async { "ok" }))
//!     .fallback_service(app.php_service());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! tokio_php::server::serve(listener, router, tokio_php::server::shutdown_signal(),
//!     tokio_php::server::DEFAULT_DRAIN_TIMEOUT).await?;
//! app.shutdown();
//! # Ok(()) }
//! ```
//!
//! PHP runs once per process: a second [`App::start`] returns an error.
//!
//! [`App::router`] is the standalone server's whole stack: the feature layers of
//! [`layers`] (request id, access log, HTTP metrics, request timeout, rate limit,
//! compression, error pages, Host validation, Server-Timing, front controller) in the
//! order that module documents. Each layer also works alone
//! over [`App::php_service`] or any other axum service.
//!
//! ## Running it in production
//!
//! [`server::Server`] serves any router with TLS ([`server::TlsConfig`], reloadable),
//! HTTP/1.1 and HTTP/2, the connection timeouts and limits, and graceful draining;
//! [`App::internal_router`] has the probes, health, metrics and configuration for a
//! private port, and [`App::lifecycle`] turns readiness off when shutdown starts.
//!
//! HTTP metrics ([`layers::MetricsLayer`], axum-prometheus) go through the `metrics`
//! facade to whichever recorder the process installed. The binary installs tokio_php's with
//! [`metrics::install_recorder`]; an application that owns the recorder skips that call and
//! receives them itself, while `/metrics` still shows the PHP pool's figures. Nothing
//! panics or replaces a recorder that is already installed.

pub mod config;
pub mod context;
pub mod layers;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod standalone;

mod app;
mod docroot;
mod early_hints;
mod error_response;
mod ffi;
mod internal;
mod log_throttle;
mod php;
mod scoreboard;
mod sendfile;
mod static_files;
mod supervisor;

pub use app::{App, StartError};
pub use config::Config;
pub use context::ConnectionInfo;
pub use ffi::StartupError;
pub use internal::Lifecycle;
pub use php::PhpService;

/// The pure-Rust pieces on every request's path, for `benches/hot_paths.rs` only: not part
/// of the API, and may change at any time.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::docroot::{PathResolver, ScriptMatch};
    pub use crate::php::request::{PhpRequest, RequestParts};
    pub use crate::php::response::add_header_line;
}

/// The README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
