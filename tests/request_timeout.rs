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
    // This one keeps its own deadline moving with heartbeats, so it holds the only worker
    // for 2 s, well past the deadline of the request queued behind it.
    let busy = tokio::spawn({
        let url = server.url("/heartbeat.php?beat=1");
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
    assert_eq!(busy.await.unwrap(), 200);
    assert!(server.wait_for_log("timed out while queued", Duration::from_secs(5)));
    // The worker then skips the abandoned request and serves the next one.
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

#[tokio::test]
async fn shutdown_functions_end_at_the_deadline_too() {
    // The script dies of max_execution_time after 1 s; a shutdown function then blocks in
    // sleep(15), another spins. REQUEST_TIMEOUT must stop them all.
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("REQUEST_TIMEOUT", "3s")]);
    let started = Instant::now();
    let r = client()
        .get(server.url("/shutdown_loop.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "the worker was free after {took:?}"
    );
}

#[tokio::test]
async fn workers_blocked_in_sleep_are_free_within_a_second_of_the_deadline() {
    let server = TestServer::start(&[
        ("PHP_WORKERS", "4"),
        ("REQUEST_TIMEOUT", "2s"),
        ("INTERNAL_ADDR", "127.0.0.1:0"),
    ]);
    let health = server.internal_url("/health");
    let started = Instant::now();
    let mut sleepers = Vec::new();
    for _ in 0..12 {
        sleepers.push(client().get(server.url("/sleep_long.php?s=60")).send());
    }
    for r in futures_util::future::join_all(sleepers).await {
        assert_eq!(r.unwrap().status(), 504);
    }
    // Four ran and timed out; eight timed out in the queue. All 504 at the deadline…
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // …and no worker stays in sleep(60) afterwards.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let h: serde_json::Value = serde_json::from_str(
            &client()
                .get(&health)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        if h["busy_workers"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "workers still busy: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_queued_request_whose_client_left_never_runs() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let marker = std::env::temp_dir().join("tokio_php_mark_gone_client");
    let _ = std::fs::remove_file(&marker);
    let busy = tokio::spawn({
        let url = server.url("/sleep.php?ms=1500");
        async move { client().get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Queued behind the sleeper; the client gives up and closes the connection.
    let gone = server.raw(
        b"GET /mark.php?m=gone_client HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_millis(200),
    );
    assert_eq!(gone, "", "no answer before the client left");
    assert_eq!(busy.await.unwrap(), 200);
    // The worker is free; give it a moment in case it (wrongly) ran the queued request.
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "the request of a client that left ran");
}
