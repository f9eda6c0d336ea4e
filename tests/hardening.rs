//! What an attacker, a busy day or a careless script could still do, tried from outside
//! against the real server: spoof what PHP is told, leak one request's process-wide state
//! into another, hold a worker past its deadline, starve other clients, make a response lie,
//! flood the log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// `$_SERVER` for a raw HTTP/1.1 request (`head` without its final blank line).
fn server_vars(server: &TestServer, head: &str) -> Value {
    let reply = server.raw(
        format!("{head}Connection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

fn status_of(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("")
}

/// An HTTP/2 (prior knowledge) request sender on a new connection.
async fn h2(server: &TestServer) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

// === what PHP is told ===

#[test]
fn header_names_php_would_rewrite_cannot_pose_as_others() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let vars = server_vars(
        &server,
        "GET /server.php HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 1.1.1.1\r\n\
         X.Forwarded.For: 6.6.6.6\r\nFoo-Bar: real\r\nFoo.Bar: spoof\r\nX_Forwarded_For: 7.7.7.7\r\n",
    );
    // As nginx's ignore_invalid_headers: only letters, digits and '-' in a name.
    assert_eq!(vars["HTTP_X_FORWARDED_FOR"], "1.1.1.1");
    assert_eq!(vars["HTTP_FOO_BAR"], "real");
}

#[tokio::test]
async fn header_names_cannot_pose_as_others_over_http2_either() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let mut send = h2(&server).await;
    let request = http::Request::get(format!("http://{}/server.php", server.addr))
        .header("x.forwarded.for", "6.6.6.6")
        .header("x-forwarded-for", "1.1.1.1")
        .header("foo.bar", "spoof")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let vars: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(vars["HTTP_X_FORWARDED_FOR"], "1.1.1.1");
    assert_eq!(vars["HTTP_FOO_BAR"], Value::Null);
}

#[test]
fn a_host_port_out_of_range_is_400() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    for host in ["evil.com:99999", "evil.com:65536"] {
        let reply = server.raw(
            format!("GET /hello.php HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(status_of(&reply), "400", "{host}: {reply}");
    }
    let reply = server.raw(
        b"GET /hello.php HTTP/1.1\r\nHost: ok.example:65535\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&reply), "200", "{reply}");
}

#[test]
fn an_absolute_target_names_the_host_php_sees() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let vars = server_vars(
        &server,
        "GET http://a.example/server.php?x=1 HTTP/1.1\r\nHost: b.example\r\n",
    );
    // nginx: HTTP_HOST a.example, REQUEST_URI the path and query only.
    assert_eq!(vars["HTTP_HOST"], "a.example");
    assert_eq!(vars["SERVER_NAME"], "a.example");
    assert_eq!(vars["REQUEST_URI"], "/server.php?x=1");
}

#[tokio::test]
async fn an_http2_authority_that_disagrees_with_host_is_400() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let mut send = h2(&server).await;
    let request = http::Request::get(format!("http://{}/hello.php", server.addr))
        .header("host", "other.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 400);
    // Agreeing ones are served.
    let request = http::Request::get(format!("http://{}/hello.php", server.addr))
        .header("host", server.addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

// === process-wide state ===

/// A docroot with `scripts` (name, code) in a fresh directory.
fn docroot(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (name, code) in scripts {
        std::fs::write(root.path().join(name), code).unwrap();
    }
    root
}

/// A compiled de_DE.UTF-8 locale (decimal comma) under a directory for `LOCPATH`, made with
/// localedef from Debian's `locales` sources (`make test-deps` installs them).
fn german_locale() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("localedef")
        .args(["-i", "de_DE", "-f", "UTF-8"])
        .arg(dir.path().join("de_DE.UTF-8"))
        .output()
        .expect("localedef (libc-bin) runs");
    assert!(
        dir.path().join("de_DE.UTF-8").is_dir(),
        "localedef could not build de_DE.UTF-8 (install Debian's `locales`: make test-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[tokio::test]
async fn setlocale_in_one_request_does_not_change_other_requests() {
    let locales = german_locale();
    let root = docroot(&[
        (
            "german.php",
            "<?php $set = setlocale(LC_ALL, 'de_DE.UTF-8'); $mine = sprintf('%.2f', 1.5);\n\
             usleep(1500000);\n\
             echo json_encode([$set, $mine, sprintf('%.2f', 1.5), setlocale(LC_NUMERIC, 0)]);",
        ),
        (
            "format.php",
            "<?php echo sprintf('%.2f', 1.5), '|', localeconv()['decimal_point'], '|', setlocale(LC_ALL, 0);",
        ),
    ]);
    let locpath = locales.path().to_str().unwrap();
    let server =
        TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "4"), ("LOCPATH", locpath)]);
    let client = common::client();
    let format = || async {
        let r = client.get(server.url("/format.php")).send().await.unwrap();
        r.text().await.unwrap()
    };
    // The process's own locale (LC_CTYPE C.UTF-8 and C otherwise, as PHP sets it up).
    let before = format().await;
    assert!(before.starts_with("1.50|.|"), "{before}");
    let german = client.get(server.url("/german.php")).send();
    let others = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut bodies = Vec::new();
        for _ in 0..20 {
            bodies.push(format().await);
        }
        bodies
    };
    let (german, others) = tokio::join!(german, others);
    let german: Value = serde_json::from_str(&german.unwrap().text().await.unwrap()).unwrap();
    // The request that set it has its locale for its whole life…
    assert_eq!(
        german,
        serde_json::json!(["de_DE.UTF-8", "1,50", "1,50", "de_DE.UTF-8"])
    );
    // …and nobody else ever sees it, during or after.
    for body in others {
        assert_eq!(body, before, "another request saw the locale");
    }
    for _ in 0..8 {
        assert_eq!(format().await, before);
    }
}

#[tokio::test]
async fn umask_in_one_request_does_not_change_other_requests() {
    let root = docroot(&[
        (
            "umask.php",
            "<?php umask(077); usleep(1500000); echo decoct(umask());",
        ),
        (
            "create.php",
            "<?php $p = sys_get_temp_dir() . '/tphp-umask-' . bin2hex(random_bytes(6));\n\
             touch($p); echo decoct(fileperms($p) & 0777); unlink($p);",
        ),
    ]);
    let server = TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "4")]);
    let process_umask = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        .unwrap();
    let expected = format!("{:o}", 0o666 & !process_umask);
    let client = common::client();
    let restricted = client.get(server.url("/umask.php")).send();
    let others = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut modes = Vec::new();
        for _ in 0..20 {
            let r = client.get(server.url("/create.php")).send().await.unwrap();
            modes.push(r.text().await.unwrap());
        }
        modes
    };
    let (restricted, others) = tokio::join!(restricted, others);
    assert_eq!(restricted.unwrap().text().await.unwrap(), "77");
    for mode in others {
        assert_eq!(mode, expected, "another request's file got the umask");
    }
}

// === starving other clients ===

#[tokio::test]
async fn one_http2_connection_cannot_take_the_whole_pool() {
    let server = TestServer::start(&[("PHP_WORKERS", "4"), ("QUEUE_CAPACITY", "64")]);
    let send = h2(&server).await;
    // 200 streams of 100 ms each on one connection: 5 s of work for 4 workers.
    let mut streams = Vec::new();
    for _ in 0..200 {
        let mut send = send.clone();
        let url = format!("http://{}/sleep.php?ms=100", server.addr);
        streams.push(tokio::spawn(async move {
            let request = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
            send.send_request(request).await.unwrap().status()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another client is served at once, not told the server is full.
    let started = std::time::Instant::now();
    let r = common::client()
        .get(server.url("/hello.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another client got {}", r.status());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "another client waited {took:?}"
    );
    // The busy connection's requests all complete, none refused.
    for stream in streams {
        assert_eq!(stream.await.unwrap(), 200);
    }
}

// === the log under attack ===

#[tokio::test]
async fn an_overload_does_not_flood_the_log() {
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("QUEUE_CAPACITY", "1")]);
    let client = common::client();
    // The worker and the one queue place are taken for the whole test.
    let hold = |ms: u64| {
        client
            .get(server.url(&format!("/sleep.php?ms={ms}")))
            .send()
    };
    let busy = tokio::spawn(hold(30_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = tokio::spawn(hold(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let mut refused = 0;
    for _ in 0..30 {
        let burst: Vec<_> = (0..50)
            .map(|_| client.get(server.url("/hello.php")).send())
            .collect();
        for r in futures_util::future::join_all(burst).await {
            refused += usize::from(r.unwrap().status() == 503);
        }
    }
    let seconds = started.elapsed().as_secs() + 2;
    assert_eq!(refused, 1500, "every request of the burst is refused");
    let lines = server
        .log()
        .lines()
        .filter(|l| l.contains("PHP queue full"))
        .count() as u64;
    assert!(
        lines <= 5 * seconds,
        "{lines} lines for 1500 refusals in {seconds} s"
    );
    // The next line, a second later, says how many were held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        client
            .get(server.url("/hello.php"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // Wait for that line itself (every line has a `suppressed=` field).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while server.log().matches("PHP queue full").count() as u64 <= lines {
        assert!(
            std::time::Instant::now() < deadline,
            "no line for the last refusal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every refusal is a line or counted in the next line's `suppressed`.
    let log = server.log();
    let queue_full: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("PHP queue full"))
        .collect();
    let held: u64 = queue_full
        .iter()
        .filter_map(|l| l.split("suppressed=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(queue_full.len() as u64 + held, 1501, "{queue_full:#?}");
    assert!(held > 1000, "most refusals were held back: {held}");
    busy.abort();
    queued.abort();
}

// === small ones ===

#[tokio::test]
async fn a_huge_heartbeat_saturates_instead_of_panicking() {
    let root = docroot(&[(
        "beat.php",
        "<?php var_dump(tokio_request_heartbeat(PHP_INT_MAX)); echo 'alive';",
    )]);
    let server = TestServer::start_with_root(
        root.path(),
        &[("PHP_WORKERS", "1"), ("REQUEST_TIMEOUT", "5s")],
    );
    let r = common::client()
        .get(server.url("/beat.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "bool(true)\nalive");
    assert!(!server.log().contains("panic"), "{}", server.log());
}

// === responses that lie ===

#[test]
fn an_out_of_range_status_is_a_500_with_a_log_line() {
    let root = docroot(&[("code.php", "<?php http_response_code(65736); echo 'body';")]);
    let server = TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "1")]);
    let reply = server.raw(
        b"GET /code.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&reply), "500", "{reply}");
    assert!(server.wait_for_log("status that cannot be final", Duration::from_secs(2)));
    assert!(server.log().contains("65736"), "the log names the status");
}

#[test]
fn headers_send_refuses_101() {
    let root = docroot(&[(
        "switch.php",
        "<?php header('Link: </a.css>; rel=preload'); try { headers_send(101); } \
         catch (ValueError $e) { echo $e->getMessage(); }",
    )]);
    let server = TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "1")]);
    let reply = server.raw(
        b"GET /switch.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "nothing but the final response: {reply}"
    );
    assert!(!reply.contains("HTTP/1.1 101"), "{reply}");
    assert!(reply.contains("other than 101"), "{reply}");
}

#[test]
fn a_response_cut_short_by_a_fatal_error_has_no_final_chunk() {
    let root = docroot(&[(
        "cut.php",
        "<?php echo str_repeat('x', 1 << 20); flush(); undefined_function();",
    )]);
    let server = TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "1")]);
    let reply = server.raw(
        b"GET /cut.php HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "{}",
        &reply[..200.min(reply.len())]
    );
    assert!(reply.contains("transfer-encoding: chunked"));
    // The server closed the connection (a keep-alive request) without the terminal chunk.
    assert!(!reply.ends_with("0\r\n\r\n"), "the response looks complete");
    assert!(reply.len() > 1 << 20, "the flushed megabyte was sent");
}

#[tokio::test]
async fn over_http2_a_cut_short_response_is_a_reset_stream() {
    let root = docroot(&[(
        "cut.php",
        "<?php echo str_repeat('x', 100000); flush(); undefined_function();",
    )]);
    let server = TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "1")]);
    let mut send = h2(&server).await;
    let request = http::Request::get(format!("http://{}/cut.php", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    // The reset may even overtake the head in the client (send_request fails): not a whole
    // response either. When the head came, the body must end in an error.
    if let Ok(response) = send.send_request(request).await {
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await;
        assert!(body.is_err(), "the stream ended normally");
    }
}
