//! Request ids and trace context over HTTP: kept or generated, echoed, given to PHP, and on
//! the log lines of the request, PHP's own included.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::Duration;

use common::{TestServer, client};

async fn php_view(server: &TestServer, headers: &[(&str, &str)]) -> (String, serde_json::Value) {
    let mut request = client().get(server.url("/request_id.php"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    (
        echoed,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn a_sane_id_is_kept_echoed_and_given_to_php() {
    let server = TestServer::start(&[]);
    let (echoed, php) = php_view(&server, &[("x-request-id", "lb-7f3a:42")]).await;
    assert_eq!(echoed, "lb-7f3a:42");
    assert_eq!(php["REQUEST_ID"], "lb-7f3a:42");
    assert_eq!(php["HTTP_X_REQUEST_ID"], "lb-7f3a:42");
}

#[tokio::test]
async fn a_missing_or_insane_id_is_replaced_by_a_generated_one() {
    let server = TestServer::start(&[]);
    let (first, php) = php_view(&server, &[]).await;
    assert_eq!(first.len(), 36, "{first}");
    assert_eq!(php["REQUEST_ID"], first.as_str());
    assert_eq!(php["HTTP_X_REQUEST_ID"], first.as_str());
    let too_long = "a".repeat(129);
    let (second, php) = php_view(&server, &[("x-request-id", &too_long)]).await;
    assert_eq!(second.len(), 36);
    assert_ne!(second, first);
    assert_eq!(php["HTTP_X_REQUEST_ID"], second.as_str());
    // Server-made responses carry it too.
    let r = client()
        .get(server.url("/missing.php"))
        .header("x-request-id", "on-a-404")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "on-a-404");
}

#[tokio::test]
async fn log_lines_carry_the_request_id_and_trace() {
    let server = TestServer::start(&[]);
    let (_, php) = php_view(
        &server,
        &[
            ("x-request-id", "trace-me-1"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
    )
    .await;
    // PHP sees this server's span as the parent, in the same trace.
    let passed_on = php["HTTP_TRACEPARENT"].as_str().unwrap();
    assert!(
        passed_on.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && passed_on.ends_with("-01"),
        "{passed_on}"
    );
    let span_id = &passed_on[36..52];
    assert_ne!(span_id, "00f067aa0ba902b7");
    // PHP's own log line, written on the worker thread, is inside the request's span.
    assert!(server.wait_for_log("request id log line from php", Duration::from_secs(5)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("request id log line from php"))
        .unwrap();
    assert!(line.contains("trace-me-1"), "{line}");
    assert!(line.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{line}");
    assert!(line.contains(span_id), "{line}");
}

#[tokio::test]
async fn json_logs_carry_the_span_fields() {
    let server = TestServer::start(&[("LOG_FORMAT", "json")]);
    let (_, _) = php_view(&server, &[("x-request-id", "json-id-1")]).await;
    assert!(server.wait_for_log("request id log line from php", Duration::from_secs(5)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("request id log line from php"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["span"]["id"], "json-id-1", "{line}");
}
