//! Run with `cargo run --example custom_stack`, then try:
//!
//! ```text
//! curl -s localhost:3001/                # public/index.php
//! curl -s localhost:3001/any/route       # also index.php: the front controller
//! curl -s -H 'Host: a b' localhost:3001/ # 400: the Host check runs first
//! ```
//!
//! The layers of the standalone server, assembled by hand: pick the ones you want, in the
//! order you want, around the bare PHP service.

use axum::Router;
use tokio_php::layers::{FrontControllerLayer, ValidateHostLayer};
use tokio_php::{App, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let php = App::start(Config::default().document_root("./public"))?;
    // The front controller must wrap the PHP service itself: it decides before routing,
    // with the service's own resolver (its ALIASES and SYMLINKS).
    let front = FrontControllerLayer::with_resolver(php.path_resolver(), "index.php")?;
    let router = Router::new()
        .fallback_service(front.layer_service(php.php_service()))
        .layer(ValidateHostLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://127.0.0.1:3001");
    tokio_php::server::serve(
        listener,
        router,
        tokio_php::server::shutdown_signal(),
        tokio_php::server::DEFAULT_DRAIN_TIMEOUT,
    )
    .await?;
    php.shutdown();
    Ok(())
}
