//! The whole stack in its default order, every layer on: request id → access log → request
//! timeout → rate limit → compression → error pages → validate host → timing → PHP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{TestServer, client};

fn gunzip(data: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn every_layer_in_the_default_order() {
    let server = TestServer::start(&[
        ("PHP_WORKERS", "1"),
        ("ACCESS_LOG", "1"),
        ("PROFILE", "1"),
        ("RATE_LIMIT", "5"),
        ("RATE_WINDOW", "60"),
        ("REQUEST_TIMEOUT", "1s"),
        ("COMPRESSION_MIN_SIZE", "512"),
    ]);

    // 1. A compressed, profiled PHP response: every layer adds its part.
    let r = client()
        .get(server.url("/text.php?bytes=20000"))
        .header("accept-encoding", "gzip")
        .header("x-profile", "1")
        .header("x-request-id", "stack-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-request-id"], "stack-1");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["vary"], "accept-encoding");
    assert_eq!(h["x-ratelimit-remaining"], "4");
    assert!(h["server-timing"].to_str().unwrap().contains("script;"));
    let compressed = r.bytes().await.unwrap();
    assert_eq!(gunzip(&compressed).len(), 20000);

    // 2. A server-made 404 gets its page, and the page is compressed: compression wraps
    //    the error pages.
    let r = client()
        .get(server.url("/nope.php"))
        .header("accept", "text/html")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(r.headers().contains_key("x-request-id"));
    assert!(gunzip(&r.bytes().await.unwrap()).contains("Page not found"));

    // 3. A runaway script: the timeout (outside the error pages) still answers with the page,
    //    and the single worker is free at once.
    let r = client()
        .get(server.url("/busy.php"))
        .header("accept", "text/html")
        .header("x-request-id", "stack-busy")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-request-id"], "stack-busy");
    assert!(r.text().await.unwrap().contains("Request timed out"));
    let started = Instant::now();
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(900));

    // 4. The last allowed request, then the rate limit answers with its page.
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    r.bytes().await.unwrap();
    let r = client()
        .get(server.url("/hello.php"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.headers().contains_key("x-request-id"));
    assert!(r.text().await.unwrap().contains("Too many requests"));

    // 5. The access log, outermost but for the request id, saw all six with their ids and
    //    the bytes as sent (compressed).
    let lines = server.wait_for_stdout_lines(6, Duration::from_secs(5));
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<u64> = entries
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 504, 200, 200, 429]);
    assert_eq!(entries[0]["request_id"], "stack-1");
    assert_eq!(entries[0]["bytes"], compressed.len() as u64);
    assert_eq!(entries[2]["request_id"], "stack-busy");
    assert!(entries.iter().all(|e| e["request_id"].is_string()));
    // PHP's fatal error for the interrupted script is logged under its request id.
    assert!(server.wait_for_log("Maximum execution time", Duration::from_secs(5)));
    let log = server.log();
    let fatal = log
        .lines()
        .find(|l| l.contains("Maximum execution time"))
        .unwrap();
    assert!(fatal.contains("stack-busy"), "{fatal}");
}
