//! The request timeout: 504 with the error page, and the script behind it stopped so the
//! worker serves the next request at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client};

#[tokio::test]
async fn a_busy_loop_gets_504_and_the_single_worker_serves_on_at_once() {
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("REQUEST_TIMEOUT", "1s")]);
    let started = Instant::now();
    let r = client()
        .get(server.url("/busy.php"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "504 after {waited:?}"
    );
    assert!(r.text().await.unwrap().contains("Request timed out"));

    // The only worker is free again: the next request is answered at once.
    let started = Instant::now();
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "next request took {took:?}"
    );
    assert!(server.wait_for_log("Maximum execution time", Duration::from_secs(5)));
    assert!(server.log().contains("interrupting its PHP script"));
}

#[tokio::test]
async fn a_request_that_timed_out_in_the_queue_never_runs() {
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("REQUEST_TIMEOUT", "1s")]);
    // A script blocked in usleep() stops only when the call returns (PHP checks the
    // interrupt between opcodes), so this one holds the only worker for 2.5 s.
    let busy = tokio::spawn({
        let url = server.url("/sleep.php?ms=2500");
        async move { client().get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Queued behind it, this one times out before the worker is free.
    let r = client()
        .get(server.url("/log.php?marker=queued-too-long"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.text().await.unwrap(), "504 Gateway Timeout\n");
    assert_eq!(busy.await.unwrap(), 504);
    assert!(server.wait_for_log("timed out while queued", Duration::from_secs(5)));
    // The sleeper ends (stopped by the interrupt as its usleep returns); the worker then
    // skips the abandoned request and serves the next one.
    assert!(server.wait_for_log("Maximum execution time", Duration::from_secs(5)));
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!server.log().contains("queued-too-long"));
}

#[tokio::test]
async fn streaming_responses_are_not_cut_off() {
    // The limit covers the wait for the head; stream.php flushes at once, then sleeps 2 s.
    let server = TestServer::start(&[("REQUEST_TIMEOUT", "1s")]);
    let r = client()
        .get(server.url("/stream.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "first chunk\nsecond chunk\n");
}

#[tokio::test]
async fn off_means_no_limit() {
    let server = TestServer::start(&[("REQUEST_TIMEOUT", "off")]);
    let r = client()
        .get(server.url("/sleep.php?ms=1200"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "slept");
}
