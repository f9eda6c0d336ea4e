//! Library mode: the embedding example's router, in this process — a Rust route and a PHP
//! app mounted under a prefix, served by one router — and PHP starting once per process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

#[path = "../examples/embed_in_axum.rs"]
#[allow(dead_code)]
mod example;

mod common;

use tokio_php::{App, Config, StartError, StartupError};

#[tokio::test]
async fn rust_and_php_routes_share_one_router() {
    let php = App::start(
        Config::default()
            .document_root(common::fixtures())
            .php_workers(2),
    )
    .unwrap();

    // A second start in the same process is an error value, not a crash.
    let again = App::start(Config::default().document_root(common::fixtures()));
    assert!(
        matches!(again, Err(StartError::Php(StartupError::AlreadyStarted))),
        "{again:?}"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tokio_php::server::serve(
        listener,
        example::router(&php),
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(5),
    ));
    let client = common::client();

    let rust = client
        .get(format!("http://{addr}/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(rust.text().await.unwrap(), "ok from Rust\n");

    let v: serde_json::Value = serde_json::from_str(
        &client
            .get(format!("http://{addr}/app/pathinfo.php/more?q=1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["REQUEST_URI"], "/app/pathinfo.php/more?q=1");
    assert_eq!(v["SCRIPT_NAME"], "/app/pathinfo.php");
    assert_eq!(v["PATH_INFO"], "/more");
    assert_eq!(v["PHP_SELF"], "/app/pathinfo.php/more");

    let index = client
        .get(format!("http://{addr}/app/dir"))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 301);
    assert_eq!(index.headers()["location"], "/app/dir/");
    let index = client
        .get(format!("http://{addr}/app/dir/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        index.text().await.unwrap(),
        "directory index: /app/dir/index.php"
    );

    // The mount point itself runs the index with the prefix in SCRIPT_NAME.
    let root = client
        .get(format!("http://{addr}/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "fixture index: /app/index.php");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    php.shutdown();
}
