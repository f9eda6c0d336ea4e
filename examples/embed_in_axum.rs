//! Run with `cargo run --example embed_in_axum` (it serves ./public under /app), then try:
//!
//! ```text
//! curl -s localhost:3000/api/health          # answered by a Rust handler
//! curl -s localhost:3000/app/                 # public/index.php, run by PHP
//! curl -s localhost:3000/app/index.php?x=1    # PHP sees REQUEST_URI=/app/index.php?x=1
//! ```
//!
//! A Rust application keeps its own routes and mounts a PHP application beside them with
//! `nest_service`; PHP sees the full REQUEST_URI and a SCRIPT_NAME that includes `/app`.

use axum::Router;
use axum::routing::get;
use tokio_php::{App, Config};

/// The application: Rust routes beside a PHP app mounted under `/app`.
pub(crate) fn router(php: &App) -> Router {
    Router::new()
        .route("/api/health", get(|| async { "ok from Rust\n" }))
        .nest_service("/app", php.php_service())
}

#[allow(dead_code)] // also compiled into tests/embed.rs, which has its own main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let php = App::start(Config::default().document_root("./public").php_workers(2))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000 (try /api/health and /app/)");
    tokio_php::server::serve(
        listener,
        router(&php),
        tokio_php::server::shutdown_signal(),
        tokio_php::server::DEFAULT_DRAIN_TIMEOUT,
    )
    .await?;
    php.shutdown();
    Ok(())
}
