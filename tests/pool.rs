//! The worker pool: concurrency, isolation from slow clients, a bounded queue, large bodies
//! that never sit in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TestServer, client};

#[tokio::test]
async fn two_hundred_concurrent_requests_get_their_own_bodies() {
    let server = TestServer::start(&[("PHP_WORKERS", "4")]);
    let client = client();
    let mut tasks = Vec::new();
    for id in 0..200 {
        let url = server.url(&format!("/echo_id.php?id={id}"));
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            (id, r.text().await.unwrap())
        }));
    }
    for task in tasks {
        let (id, body) = task.await.unwrap();
        assert_eq!(body, format!("id={id}"));
    }
}

#[tokio::test]
async fn a_slow_upload_does_not_hold_the_only_worker() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let addr = server.addr;
    // A client that announces 100 bytes and sends one every 100 ms.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /superglobals.php HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: 30\r\nConnection: close\r\n\r\n").unwrap();
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b"x").is_err() {
                break;
            }
        }
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        out
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?} while the slow upload was still arriving",
        started.elapsed()
    );
    let slow_response = slow.join().unwrap();
    assert!(slow_response.starts_with("HTTP/1.1 200"), "{slow_response}");
    assert!(slow_response.contains(&"x".repeat(30)));
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("QUEUE_CAPACITY", "1")]);
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = server.url("/sleep.php?ms=800");
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.headers().get("retry-after").cloned())
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut ok = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert_eq!(retry_after.unwrap(), "1");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 2 && refused >= 1, "ok={ok} refused={refused}");
}

#[tokio::test]
async fn a_request_that_waits_longer_than_max_wait_time_gets_503_and_never_runs() {
    let server = TestServer::start(&[
        ("PHP_WORKERS", "1"),
        ("MAX_WAIT_TIME", "300ms"),
        ("INTERNAL_ADDR", "127.0.0.1:0"),
    ]);
    let client = client();
    // The only worker is busy for 1.5 s.
    let busy = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/sleep.php?ms=1500"));
        async move { client.get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let marker = std::env::temp_dir().join("tokio_php_mark_max_wait");
    let _ = std::fs::remove_file(&marker);
    let asked = Instant::now();
    let refused = client
        .get(server.url("/mark.php?m=max_wait"))
        .send()
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert_eq!(refused.status(), 503, "{}", server.log());
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1200),
        "answered after {waited:?}, not at MAX_WAIT_TIME"
    );
    assert_eq!(busy.await.unwrap(), 200);
    // The refused request never ran, even once the worker was free.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "the refused request ran");
    assert!(
        server.log().contains("waited longer than MAX_WAIT_TIME"),
        "{}",
        server.log()
    );
    // A request that gets the worker in time runs as usual, and the wait is measured.
    let ok = client.get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let metrics = common::get_text(&server.internal_url("/metrics")).await;
    assert!(
        metrics.contains("tokio_php_queue_wait_timeouts_total 1\n"),
        "{metrics}"
    );
    let waits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tokio_php_queue_wait_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(
        waits,
        Some(2),
        "two requests reached the worker:\n{metrics}"
    );
}

#[tokio::test]
async fn a_large_upload_streams_through_a_temp_file_not_memory() {
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("MAX_BODY_SIZE", "2G")]);
    // Warm up so PHP's own allocations are counted in the baseline.
    client().get(server.url("/hello.php")).send().await.unwrap();
    let before = server.rss_kib();
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 256;
    let chunks = (0..CHUNKS).map(|i| Ok::<_, std::io::Error>(vec![(i % 251) as u8; CHUNK]));
    let r = client()
        .put(server.url("/input_length.php"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let after = server.rss_kib();
    let body = r.text().await.unwrap();
    let mut hasher = Crc32::new();
    for i in 0..CHUNKS {
        hasher.update(&vec![(i % 251) as u8; CHUNK]);
    }
    let expected = hasher.finish();
    assert_eq!(body, format!("{} {:08x}", CHUNK * CHUNKS, expected));
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "RSS grew by {grown_mib} MiB for a 256 MiB upload"
    );
}

/// CRC-32 (IEEE), as PHP's crc32b.
struct Crc32 {
    table: [u32; 256],
    value: u32,
}

impl Crc32 {
    fn new() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Self {
            table,
            value: 0xFFFF_FFFF,
        }
    }

    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.value =
                self.table[((self.value ^ u32::from(*b)) & 0xFF) as usize] ^ (self.value >> 8);
        }
    }

    fn finish(self) -> u32 {
        self.value ^ 0xFFFF_FFFF
    }
}
