//! What PHP sends back: status, headers, cookies, framing the server owns, and output that
//! streams as the script flushes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client};
use futures_util::StreamExt;

#[tokio::test]
async fn hello() {
    let server = TestServer::start(&[]);
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=UTF-8");
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
}

#[tokio::test]
async fn status_headers_and_cookies() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/headers.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let h = r.headers();
    assert_eq!(h["x-one"], "1");
    assert_eq!(h["x-two"], "2");
    assert!(h.get("x-removed").is_none());
    assert_eq!(h["x-replaced"], "new");
    let multi: Vec<_> = h.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    let cookies: Vec<_> = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(cookies[0].starts_with("first=one"));
    assert!(cookies[1].starts_with("second=two") && cookies[1].contains("HttpOnly"));
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["headers_sent_before"], false);
    assert!(
        v["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "X-One: 1")
    );
}

#[tokio::test]
async fn a_scripts_content_length_never_breaks_framing() {
    let server = TestServer::start(&[]);
    // Two requests on one keep-alive connection: a wrong length would desynchronise them.
    let raw = server.raw(
        b"GET /wrong_length.php HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.php HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(raw.contains("a body longer than three bytes"), "{raw}");
    assert!(raw.contains("Hello, world!"), "{raw}");
    assert!(
        !raw.to_ascii_lowercase().contains("content-length: 3\r\n"),
        "{raw}"
    );
    assert_eq!(raw.matches("HTTP/1.1 200").count(), 2, "{raw}");
}

#[tokio::test]
async fn flushed_output_arrives_before_the_script_ends() {
    let server = TestServer::start(&[]);
    let started = Instant::now();
    let r = client()
        .get(server.url("/stream.php"))
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"first chunk\n");
    assert!(
        first_at < Duration::from_millis(1500),
        "first chunk took {first_at:?}; the script sleeps 2 s after flushing"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"second chunk\n");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_megabyte_of_output_arrives_whole() {
    let server = TestServer::start(&[]);
    let body = client()
        .get(server.url("/big.php"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 1024 * 1024);
    assert!(
        body.chunks(1024)
            .all(|c| c[..1023].iter().all(|b| *b == b'y') && c[1023] == b'\n')
    );
}

#[tokio::test]
async fn exit_sends_what_was_produced() {
    let server = TestServer::start(&[]);
    let r = client().get(server.url("/exit.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "before exit");
}

#[tokio::test]
async fn head_gets_headers_and_no_body() {
    let server = TestServer::start(&[]);
    let r = client()
        .head(server.url("/hello.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=UTF-8");
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn php_sapi_name_and_opcache() {
    let server = TestServer::start(&[]);
    let mut cached = 0;
    for _ in 0..3 {
        let r = client().get(server.url("/sapi.php")).send().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["sapi"], "tokio_php");
        assert_eq!(v["PHP_SAPI"], "tokio_php");
        assert_eq!(v["opcache_enabled"], true, "{v}");
        assert_eq!(v["display_errors"], "0");
        assert_eq!(v["log_errors"], "1");
        assert_eq!(v["max_execution_time"], "30");
        assert_eq!(v["register_argc_argv"], "0");
        assert_eq!(v["expose_php"], "0");
        cached = v["cached_scripts"].as_i64().unwrap();
    }
    assert!(cached >= 1, "OPcache cached {cached} scripts");
}

#[tokio::test]
async fn php_ini_file_overrides_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("php.ini");
    // A php.ini that loads OPcache itself, as distribution ones do: it is not loaded twice.
    std::fs::write(
        &ini,
        "zend_extension=opcache\nmax_execution_time = 7\nexpose_php = On\n",
    )
    .unwrap();
    let server = TestServer::start(&[("PHP_INI", ini.to_str().unwrap())]);
    let r = client().get(server.url("/sapi.php")).send().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["max_execution_time"], "7");
    assert_eq!(v["expose_php"], "1");
    assert_eq!(v["opcache_enabled"], true);
    assert!(
        !server.log().contains("Cannot load Zend OPcache"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn php_log_lines_reach_the_server_log_tagged_with_the_request() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/log.php?marker=m4rk3r"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "logged");
    assert!(server.wait_for_log("log line from php: m4rk3r", Duration::from_secs(5)));
    let log = server.log();
    let line = log.lines().find(|l| l.contains("m4rk3r")).unwrap();
    assert!(line.contains("GET /log.php?marker=m4rk3r"), "{line}");
    assert!(log.contains("a warning from php"));
}
