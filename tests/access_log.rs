//! The access log: one JSON line per request on standard output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::Duration;

use common::{TestServer, client};

#[tokio::test]
async fn one_json_line_per_request() {
    let server = TestServer::start(&[("ACCESS_LOG", "1")]);
    let r = client()
        .get(server.url("/hello.php?a=1"))
        .header("user-agent", "access-log-test/1")
        .header("referer", "http://example.test/from")
        .header("x-request-id", "log-me-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
    let r = client().get(server.url("/nope.php")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    r.bytes().await.unwrap();

    let lines = server.wait_for_stdout_lines(2, Duration::from_secs(5));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/hello.php");
    assert_eq!(first["query"], "a=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], 13);
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["user_agent"], "access-log-test/1");
    assert_eq!(first["referer"], "http://example.test/from");
    assert_eq!(first["request_id"], "log-me-1");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["http_version"], "HTTP/1.1");
    assert_eq!(first["tls"], false);
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["status"], 404);
    assert_eq!(second["query"], serde_json::Value::Null);
}

#[tokio::test]
async fn off_by_default() {
    let server = TestServer::start(&[]);
    client()
        .get(server.url("/hello.php"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.stdout(), "");
}
