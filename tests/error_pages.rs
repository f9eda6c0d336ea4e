//! Custom error pages over HTTP: for errors the server makes and for PHP's empty error
//! responses, only for clients that accept HTML, never over a body PHP wrote; other clients
//! get PHP's responses as PHP sent them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use common::{TestServer, client};

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn get(server: &TestServer, path: &str, accept: &str) -> (u16, String, String) {
    let r = client()
        .get(server.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, r.text().await.unwrap())
}

#[tokio::test]
async fn the_default_pages_are_served_to_browsers() {
    // The server runs from the crate root, so the default ./errors is the shipped one.
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("MAX_BODY_SIZE", "1K")]);
    let (status, ct, body) = get(&server, "/nope.php", BROWSER).await;
    assert_eq!(status, 404);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(body.contains("<title>404 Page not found</title>"), "{body}");
    // A fatal error: PHP's 500 has no body, so it gets the page.
    let (status, ct, body) = get(&server, "/fatal.php", BROWSER).await;
    assert_eq!(status, 500);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(body.contains("500"), "{body}");
    assert!(!body.contains("function_that_does_not_exist"));
    // An empty PHP error response.
    let (status, _, body) = get(&server, "/empty.php?status=503", BROWSER).await;
    assert_eq!(status, 503);
    assert!(body.contains("Service unavailable"), "{body}");
    // Too large: 413 made by the server.
    let r = client()
        .post(server.url("/hello.php"))
        .header("accept", "text/html")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("Request too large"));
}

#[tokio::test]
async fn a_php_body_is_never_replaced_and_api_clients_get_phps_response() {
    let server = TestServer::start(&[]);
    let (status, ct, body) = get(&server, "/not_found_body.php", BROWSER).await;
    assert_eq!(status, 404);
    assert_eq!(ct, "application/json");
    assert_eq!(body, r#"{"error":"no such user"}"#);
    // The server's own 404: plain text.
    let (status, ct, body) = get(&server, "/nope.php", "*/*").await;
    assert_eq!(status, 404);
    assert_eq!(ct, "text/plain; charset=utf-8");
    assert_eq!(body, "404 Not Found\n");
    // PHP's empty 500 and 404 reach an API client as PHP sent them, as behind nginx.
    let (status, ct, body) = get(&server, "/fatal.php", "application/json").await;
    assert_eq!(status, 500);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert_eq!(body, "");
    let (status, _, body) = get(&server, "/empty.php?status=404", "*/*").await;
    assert_eq!(status, 404);
    assert_eq!(body, "");
    // No page for 418: PHP's empty response, even for a browser.
    let (status, _, body) = get(&server, "/empty.php?status=418", BROWSER).await;
    assert_eq!(status, 418);
    assert_eq!(body, "");
}

#[tokio::test]
async fn error_pages_off_leaves_every_php_response_as_php_sent_it() {
    let server = TestServer::start(&[("ERROR_PAGES_DIR", "off")]);
    let (status, _, body) = get(&server, "/empty.php?status=503", BROWSER).await;
    assert_eq!(status, 503);
    assert_eq!(body, "");
    let (status, _, body) = get(&server, "/nope.php", BROWSER).await;
    assert_eq!(status, 404);
    assert_eq!(body, "404 Not Found\n");
}

#[tokio::test]
async fn a_custom_directory_is_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("404.html"), "<h1>custom missing</h1>").unwrap();
    let server = TestServer::start(&[("ERROR_PAGES_DIR", dir.path().to_str().unwrap())]);
    let (_, _, body) = get(&server, "/nope.php", BROWSER).await;
    assert_eq!(body, "<h1>custom missing</h1>");
    // No 500.html there: PHP's empty 500 as it is.
    let (status, _, body) = get(&server, "/fatal.php", BROWSER).await;
    assert_eq!((status, body.as_str()), (500, ""));
}

#[test]
fn an_unreadable_page_or_missing_directory_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where a page should be cannot be read as one (root reads any file).
    std::fs::create_dir(dir.path().join("503.html")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .env("ERROR_PAGES_DIR", dir.path())
        .env("DOCUMENT_ROOT", common::fixtures())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR_PAGES_DIR") && err.contains("503.html"),
        "{err}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .env("ERROR_PAGES_DIR", "/definitely/not/here")
        .env("DOCUMENT_ROOT", common::fixtures())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR_PAGES_DIR") && err.contains("/definitely/not/here"),
        "{err}"
    );
}
