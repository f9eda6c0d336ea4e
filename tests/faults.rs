//! Faults end the request, never the worker or the process, and nothing leaks from one
//! request to the next.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client};

async fn expect_then_recover(
    server: &TestServer,
    path: &str,
    status: u16,
    body_check: impl Fn(&str) -> bool,
) {
    let r = client().get(server.url(path)).send().await.unwrap();
    assert_eq!(r.status(), status, "{path}");
    let body = r.text().await.unwrap();
    assert!(body_check(&body), "{path}: unexpected body {body:?}");
    // The single worker serves the next request.
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 200, "after {path}");
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
}

#[tokio::test]
async fn fatal_error_is_a_500_without_error_text() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    expect_then_recover(&server, "/fatal.php", 500, |b| {
        !b.contains("function_that_does_not_exist")
    })
    .await;
    assert!(server.wait_for_log("function_that_does_not_exist", Duration::from_secs(5)));
}

#[tokio::test]
async fn uncaught_exception_is_a_500() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    expect_then_recover(&server, "/exception.php", 500, |b| {
        !b.contains("uncaught on purpose")
    })
    .await;
    assert!(server.wait_for_log("uncaught on purpose", Duration::from_secs(5)));
}

#[tokio::test]
async fn exhausted_memory_limit_is_a_500() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    expect_then_recover(&server, "/memory.php", 500, |_| true).await;
    assert!(server.wait_for_log("Allowed memory size", Duration::from_secs(5)));
}

#[tokio::test]
async fn max_execution_time_is_a_500_and_the_worker_serves_on() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let started = Instant::now();
    expect_then_recover(&server, "/timeout.php", 500, |_| true).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.wait_for_log("Maximum execution time", Duration::from_secs(5)));
}

/// The POSIX timers of process `pid` (Linux's /proc/PID/timers; None where the kernel
/// does not list them).
fn posix_timers(pid: u32) -> Option<usize> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/timers")).ok()?;
    Some(list.lines().filter(|l| l.starts_with("ID:")).count())
}

#[tokio::test]
async fn max_execution_time_holds_on_every_request_of_a_worker() {
    // ZTS PHP measures max_execution_time with a POSIX timer per thread, which the PHP build
    // keeps from one request to the next (scripts/php-patches/zts-thread-timer.patch): it
    // must fire on every request of the worker, and requests must not add timers.
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("PROCESSES", "0")]);
    let hello = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(hello.status(), 200);
    let timers_before = posix_timers(server.pid());
    for round in 1..=3 {
        let started = Instant::now();
        let r = client()
            .get(server.url("/timeout.php"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "round {round}");
        let took = started.elapsed();
        // set_time_limit(1): the timer, not something else, ended it.
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "round {round}: {took:?}"
        );
        for _ in 0..20 {
            let r = client().get(server.url("/hello.php")).send().await.unwrap();
            assert_eq!(r.status(), 200, "round {round}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches("Maximum execution time").count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.log().matches("Maximum execution time").count(),
        3,
        "{}",
        server.log()
    );
    assert_eq!(
        posix_timers(server.pid()),
        timers_before,
        "timers were added"
    );
}

#[tokio::test]
async fn exit_keeps_the_output_and_the_worker() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    expect_then_recover(&server, "/exit.php", 200, |b| b == "before exit").await;
}

#[tokio::test]
async fn fatal_after_output_ends_the_body_there() {
    // The output was flushed, so the 200 had left; the fatal error then leaves the
    // response visibly incomplete (no final chunk), so no cache keeps it as whole.
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let reply = server.raw(
        b"GET /output_then_fatal.php HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.contains("partial output\n"), "{reply}");
    assert!(
        !body.ends_with("0\r\n\r\n"),
        "the body looks complete: {reply}"
    );
    assert!(server.wait_for_log(
        "fatal error after the response started",
        Duration::from_secs(5)
    ));
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
}

#[tokio::test]
async fn no_state_leaks_between_requests() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let r = client()
        .get(server.url("/state.php?set=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-leak"], "yes");
    assert_eq!(r.text().await.unwrap(), "buffered and never closed");

    let r = client().get(server.url("/state.php")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-leak").is_none());
    assert!(r.headers().get("set-cookie").is_none());
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["global"], serde_json::Value::Null);
    assert_eq!(v["status"], 200);
    assert_eq!(v["ob_level"], 0);
    assert_eq!(v["get"], serde_json::json!([]));
    let headers = v["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .all(|h| !h.as_str().unwrap().contains("leak")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn missing_scripts_are_404() {
    let server = TestServer::start(&[]);
    for path in [
        "/nope.php",
        "/missing/",
        "/hello.php.bak",
        "/notes.txt/x.php",
    ] {
        let r = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn bad_hosts_are_400() {
    let server = TestServer::start(&[]);
    let timeout = Duration::from_secs(5);
    let no_host = server.raw(
        b"GET /hello.php HTTP/1.1\r\nConnection: close\r\n\r\n",
        timeout,
    );
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let two = server.raw(
        b"GET /hello.php HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        timeout,
    );
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let bad = server.raw(
        b"GET /hello.php HTTP/1.1\r\nHost: a/b@c\r\nConnection: close\r\n\r\n",
        timeout,
    );
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let http10 = server.raw(b"GET /hello.php HTTP/1.0\r\n\r\n", timeout);
    assert!(http10.starts_with("HTTP/1.0 200"), "{http10}");
}

#[tokio::test]
async fn oversized_bodies_get_413_without_reaching_php() {
    let server = TestServer::start(&[("MAX_BODY_SIZE", "1K")]);
    let r = client()
        .post(server.url("/log.php?marker=should-not-run"))
        .body(vec![b'a'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Chunked (no Content-Length) is counted as it arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'b'; 512])).collect();
    let r = client()
        .post(server.url("/log.php?marker=should-not-run"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(!server.log().contains("log line from php: should-not-run"));
}

#[test]
fn bad_configuration_stops_startup_with_a_clear_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .env("PHP_WORKERS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PHP_WORKERS") && err.contains("lots") && err.contains("whole number"),
        "{err}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .env("DOCUMENT_ROOT", "/definitely/not/here")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DOCUMENT_ROOT") && err.contains("/definitely/not/here"),
        "{err}"
    );
}

#[test]
fn help_lists_every_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for setting in tokio_php::config::SETTINGS {
        assert!(help.contains(setting.env), "{} missing", setting.env);
    }
}

/// OPcache's restart (`opcache_reset()`, or a full cache) rewinds shared memory that other
/// worker threads may be executing; PHP built by scripts/setup-php.sh waits for them
/// (scripts/php-patches/opcache-zts-restart.patch). Without that wait this kills the
/// process (SIGSEGV, "zend_mm_heap corrupted") within a few hundred requests.
#[tokio::test]
async fn opcache_restarts_under_load_do_not_take_the_server_down() {
    let root = tempfile::tempdir().unwrap();
    let scripts = 300;
    for i in 0..scripts {
        std::fs::write(
            root.path().join(format!("s{i}.php")),
            format!(
                "<?php\nfunction f{i}($n) {{ return array_map(fn($v) => $v * {i}, range(1, $n)); }}\n\
                 class C{i} {{ public $a = ['k{i}' => 1]; function m() {{ return strrev('abc{i}'); }} }}\n\
                 $t = 0; for ($k = 0; $k < 300; $k++) {{ $t += count(f{i}(20)); }}\n\
                 echo array_sum(f{i}(50)), (new C{i})->m();\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        root.path().join("reset.php"),
        "<?php for ($i = 0; $i < 20; $i++) { opcache_reset(); usleep(1000); } echo 'reset';",
    )
    .unwrap();
    std::fs::write(
        root.path().join("status.php"),
        "<?php echo opcache_get_status(false)['opcache_statistics']['manual_restarts'];",
    )
    .unwrap();
    let server = TestServer::start_with_root(root.path(), &[("PHP_WORKERS", "4")]);
    assert!(
        !server.log().contains("may restart its shared memory"),
        "this PHP lacks the OPcache fix; log:\n{}",
        server.log()
    );
    let client = client();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let resets = {
        let (client, url, done) = (client.clone(), server.url("/reset.php"), done.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(client.get(&url).send().await.map(|r| r.status().as_u16()));
            }
            statuses
        })
    };
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(5) {
        round += 1;
        let mut load = Vec::new();
        for i in 0..scripts {
            load.push(client.get(server.url(&format!("/s{i}.php"))).send());
        }
        for (i, r) in futures_util::future::join_all(load)
            .await
            .into_iter()
            .enumerate()
        {
            let r = r
                .unwrap_or_else(|e| panic!("round {round}, s{i}.php: {e}; log:\n{}", server.log()));
            assert_eq!(r.status(), 200, "round {round}, s{i}.php");
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for status in resets.await.unwrap() {
        assert_eq!(status.unwrap(), 200);
    }
    let r = client.get(server.url("/s1.php")).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        format!("{}1cba", (1..=50).sum::<i32>())
    );
    // The restarts were carried out (when no thread was inside a request), not skipped.
    let r = client.get(server.url("/status.php")).send().await.unwrap();
    let restarts: u64 = r.text().await.unwrap().parse().unwrap();
    assert!(restarts > 0, "no OPcache restart was carried out");
}
