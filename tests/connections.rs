//! Connections: HTTP/2 with prior knowledge and many streams on one connection, and the
//! hygiene that protects the server from slow, silent, idle and oversized clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestServer, client};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Reads from `stream` until the server closes it or `limit` passes; returns what arrived
/// and when the connection ended (None: still open at `limit`).
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(started.elapsed()),
                );
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), None)
}

#[tokio::test]
async fn h2c_prior_knowledge_multiplexes_50_streams_on_one_connection() {
    let server = TestServer::start(&[("PHP_WORKERS", "4")]);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);

    let started = Instant::now();
    let mut streams = Vec::new();
    for id in 0..50 {
        let mut send = send.clone();
        let url = format!("http://{}/echo_id.php?id={id}", server.addr);
        streams.push(tokio::spawn(async move {
            let request = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
            let response = send.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), http::Version::HTTP_2);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (id, String::from_utf8(body.to_vec()).unwrap())
        }));
    }
    for stream in streams {
        let (id, body) = stream.await.unwrap();
        assert_eq!(body, format!("id={id}"));
    }
    assert!(started.elapsed() < Duration::from_secs(20));

    // Streams run at the same time: 8 sleeps of 500 ms on 4 workers take about 1 s.
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut send = send.clone();
        let url = format!("http://{}/sleep.php?ms=500", server.addr);
        streams.push(tokio::spawn(async move {
            let request = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
            send.send_request(request).await.unwrap().status()
        }));
    }
    for stream in streams {
        assert_eq!(stream.await.unwrap(), 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3000),
        "8 streams took {took:?}"
    );

    let mut send = send;
    let request = http::Request::get(format!("http://{}/server.php", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let vars: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(vars["SERVER_PROTOCOL"], "HTTP/2.0");
    assert_eq!(vars["HTTPS"], serde_json::Value::Null);
}

#[tokio::test]
async fn reqwest_h2c_prior_knowledge_reaches_php() {
    let server = TestServer::start(&[]);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
}

#[tokio::test]
async fn a_silent_client_is_closed_at_the_header_timeout_while_others_are_served() {
    let server = TestServer::start(&[("HEADER_TIMEOUT_SECS", "1")]);
    let addr = server.addr;
    let silent = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        read_until_closed(&mut s, Duration::from_secs(10))
    });
    // A client that starts its headers and never finishes them.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n")
            .unwrap();
        let started = Instant::now();
        let mut closed = None;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b"X").is_err() {
                closed = Some(started.elapsed());
                break;
            }
        }
        let (text, at) = read_until_closed(&mut s, Duration::from_secs(5));
        (text, closed.or(at.map(|a| a + started.elapsed())))
    });
    // Meanwhile other clients are served at once.
    for _ in 0..5 {
        let started = Instant::now();
        let r = client().get(server.url("/hello.php")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (text, closed_at) = silent.join().unwrap();
    assert_eq!(text, "");
    let closed_at = closed_at.expect("the silent connection stayed open");
    assert!(
        closed_at >= Duration::from_millis(900) && closed_at < Duration::from_secs(3),
        "closed after {closed_at:?}"
    );
    let (text, closed_at) = slow.join().unwrap();
    assert!(!text.contains("200 OK"), "{text}");
    let closed_at = closed_at.expect("the slow-header connection stayed open");
    assert!(
        closed_at < Duration::from_secs(4),
        "closed after {closed_at:?}"
    );
}

#[tokio::test]
async fn slow_headers_on_a_kept_alive_connection_are_cut_but_idle_ones_wait() {
    let server = TestServer::start(&[("HEADER_TIMEOUT_SECS", "1"), ("IDLE_TIMEOUT_SECS", "3")]);
    let addr = server.addr;
    let result = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // Idle longer than the header timeout: still open.
        std::thread::sleep(Duration::from_millis(1500));
        s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // Now a head that never completes.
        s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(10))
    })
    .await
    .unwrap();
    let (text, closed_at) = result;
    assert_eq!(text.matches("Hello, world!").count(), 2, "{text}");
    let closed_at = closed_at.expect("the connection stayed open");
    assert!(
        closed_at >= Duration::from_millis(300) && closed_at < Duration::from_millis(2500),
        "closed {closed_at:?} after the second response"
    );
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout_but_long_requests_do_not() {
    let server = TestServer::start(&[("IDLE_TIMEOUT_SECS", "1")]);
    let addr = server.addr;
    let (text, closed_at) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // A request that takes longer than the idle timeout.
        s.write_all(b"GET /sleep.php?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("slept"), "{text}");
    let closed_at = closed_at.expect("the idle connection stayed open");
    assert!(
        closed_at >= Duration::from_millis(2800) && closed_at < Duration::from_millis(5000),
        "closed {closed_at:?} after the request started"
    );

    // HTTP/2: an idle connection gets a GOAWAY and closes.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get(format!("http://{}/hello.php", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trickling_body_is_cut_off_with_408() {
    let server = TestServer::start(&[
        ("MIN_BODY_RATE", "1000"),
        ("MIN_BODY_RATE_GRACE_SECS", "1"),
        ("PHP_WORKERS", "1"),
    ]);
    let addr = server.addr;
    let (text, answered_at) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            b"POST /log.php?marker=too-slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n",
        )
        .unwrap();
        let started = Instant::now();
        let mut answered_at = None;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            s.set_nonblocking(true).unwrap();
            let mut peek = [0u8; 1];
            let answered = matches!(s.peek(&mut peek), Ok(n) if n > 0);
            s.set_nonblocking(false).unwrap();
            // A write that fails means the server answered and closed since the last peek.
            if answered || s.write_all(b"0123456789").is_err() {
                answered_at = Some(started.elapsed());
                break;
            }
        }
        let (text, _) = read_until_closed(&mut s, Duration::from_secs(5));
        (text, answered_at)
    })
    .await
    .unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let answered_at = answered_at.expect("no answer while the body trickled");
    assert!(
        answered_at >= Duration::from_millis(900) && answered_at < Duration::from_secs(3),
        "{answered_at:?}"
    );
    assert!(!server.log().contains("log line from php: too-slow"));
    // The worker is free for the next request.
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn oversized_heads_get_431_and_long_targets_414() {
    let server = TestServer::start(&[("MAX_HEADER_SIZE", "8K"), ("MAX_URI_LENGTH", "100")]);
    let timeout = Duration::from_secs(5);
    let big = format!(
        "GET /hello.php HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    let r = server.raw(big.as_bytes(), timeout);
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");

    let long = format!(
        "GET /hello.php?{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "q".repeat(200)
    );
    let r = server.raw(long.as_bytes(), timeout);
    assert!(r.starts_with("HTTP/1.1 414"), "{r}");

    let fine = format!(
        "GET /hello.php?{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "q".repeat(50)
    );
    let r = server.raw(fine.as_bytes(), timeout);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    // HTTP/2 too: the header list limit answers 431.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(server.url("/hello.php"))
        .header("x-big", "b".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = h2
        .get(server.url(&format!("/hello.php?{}", "q".repeat(200))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
}

#[tokio::test]
async fn beyond_max_connections_new_connections_wait_for_a_free_slot() {
    let server = TestServer::start(&[("MAX_CONNECTIONS", "2"), ("HEADER_TIMEOUT_SECS", "10")]);
    let addr = server.addr;
    let hello = b"GET /hello.php HTTP/1.1\r\nHost: t\r\n\r\n";
    // Two kept-alive connections take both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(hello).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third connects (the kernel queues it) but is not served while they are open.
    let mut third = TcpStream::connect(addr).unwrap();
    third.write_all(hello).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        third.read(&mut buf).is_err(),
        "served beyond MAX_CONNECTIONS"
    );
    // The held connections still work.
    held[0].write_all(hello).unwrap();
    let n = held[0].read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // One closes: the third is served.
    drop(held.remove(0));
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let n = third.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(server.log().contains("connection limit reached"));
}

#[test]
fn a_client_that_stops_reading_is_cut_off_and_frees_its_worker() {
    let root = tempfile::tempdir().unwrap();
    // 256 MiB of output: far more than the socket buffers and the output queue hold.
    std::fs::write(
        root.path().join("stream.php"),
        "<?php $chunk = str_repeat('x', 65536); for ($i = 0; $i < 4096; $i++) { echo $chunk; flush(); } error_log('stream finished');",
    )
    .unwrap();
    std::fs::write(root.path().join("hello.php"), "<?php echo 'Hello';").unwrap();
    let server = TestServer::start_with_root(
        root.path(),
        &[("PHP_WORKERS", "1"), ("WRITE_TIMEOUT_SECS", "1")],
    );
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(b"GET /stream.php HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 16];
    stalled.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    // It reads no further. The only worker is busy with it until the write timeout.
    let started = Instant::now();
    let mut other = TcpStream::connect(server.addr).unwrap();
    other
        .write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (text, _) = read_until_closed(&mut other, Duration::from_secs(20));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("Hello"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the worker was held for {:?}",
        started.elapsed()
    );
    assert!(server.wait_for_log("client stopped reading", Duration::from_secs(5)));
    assert!(
        !server.log().contains("stream finished"),
        "the script ran to the end"
    );
}

/// Reads one response with a Content-Length from `stream` (informational responses before
/// it included) and returns it as text.
fn read_response(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        // The final head is the last one; 1xx heads come before it.
        let mut rest = text.as_str();
        while rest.starts_with("HTTP/1.1 1")
            && let Some(end) = rest.find("\r\n\r\n")
        {
            rest = &rest[end + 4..];
        }
        if let Some(end) = rest.find("\r\n\r\n") {
            let length: usize = rest[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a response with a Content-Length");
            if rest.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut buf).expect("the response arrives");
        assert!(n > 0, "connection closed mid-response: {text}");
        out.extend_from_slice(&buf[..n]);
    }
}

/// The server's log with the connection module's trace lines (parking) in it.
const TRACE_CONNECTIONS: (&str, &str) = ("LOG_LEVEL", "info,tokio_php::server::connection=trace");

#[test]
fn an_idle_keep_alive_connection_is_parked_and_serves_its_next_requests() {
    let server = TestServer::start(&[TRACE_CONNECTIONS]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        server.wait_for_log("connection parked", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // The parked connection's next request, one whose hints are written straight to the
    // socket (the stream hyper gave back is the one Early Hints write to).
    s.write_all(b"GET /early_hints.php HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let hinted = read_response(&mut s);
    assert!(hinted.starts_with("HTTP/1.1 103"), "{hinted}");
    assert!(hinted.contains("\r\n\r\nHTTP/1.1 200"), "{hinted}");
    assert!(
        hinted.ends_with("final response, hints sent: 103"),
        "{hinted}"
    );
    assert!(server.log().contains("parked connection resumed"));
    // Parked again, and a request that ends the connection still ends it.
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (last, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(last.starts_with("HTTP/1.1 200"), "{last}");
    assert!(closed.is_some(), "still open after Connection: close");
    assert_eq!(server.log().matches("parked connection resumed").count(), 2);
}

#[test]
fn a_request_begun_before_the_connection_parks_is_kept() {
    let server = TestServer::start(&[TRACE_CONNECTIONS]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    // One request and the first half of the next, in one write: hyper has read the half
    // when it gives the idle connection back.
    s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n\r\nGET /server.php?half=1 HT")
        .unwrap();
    let first = read_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        server.wait_for_log("parked with the next request begun", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    s.write_all(b"TP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let second = read_response(&mut s);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains(r#""QUERY_STRING":"half=1""#), "{second}");
}

#[test]
fn a_head_begun_before_parking_is_still_under_the_header_timeout() {
    let server = TestServer::start(&[TRACE_CONNECTIONS, ("HEADER_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.php HT")
        .unwrap();
    let first = read_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The rest never comes: the connection closes at the header timeout, not the idle one.
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(6));
    let closed = closed.expect("a begun head outlived the header timeout");
    assert!(closed < Duration::from_millis(4500), "{closed:?}");
    assert!(server.log().contains("parked with the next request begun"));
}
