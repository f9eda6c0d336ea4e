//! Operations: the internal server (probes, health, metrics), graceful shutdown under load,
//! and OPcache with its JIT.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestServer, client};

/// The value of the metric line that starts with `series` (name and labels, exactly).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

async fn get_text(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn probes_health_and_metrics_reflect_the_traffic() {
    let server = TestServer::start(&[
        ("INTERNAL_ADDR", "127.0.0.1:0"),
        ("PHP_WORKERS", "1"),
        ("QUEUE_CAPACITY", "1"),
    ]);
    assert_eq!(get_text(&server.internal_url("/livez")).await.0, 200);
    let (status, body) = get_text(&server.internal_url("/readyz")).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let (_, before) = get_text(&server.internal_url("/metrics")).await;
    assert_eq!(metric(&before, "tokio_php_workers"), 1.0);
    let served_before = metric(&before, "tokio_php_requests_served_total");

    // Traffic: 5 successes, a fatal error, a timeout, and a burst the queue refuses.
    for _ in 0..5 {
        let r = client().get(server.url("/hello.php")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        client()
            .get(server.url("/fatal.php"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(
        client()
            .get(server.url("/timeout.php"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    let mut burst = Vec::new();
    for _ in 0..5 {
        let url = server.url("/sleep.php?ms=800");
        burst.push(tokio::spawn(async move {
            client().get(url).send().await.unwrap().status().as_u16()
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the burst runs, /health shows the busy worker.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, health) = get_text(&server.internal_url("/health")).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["workers"], 1);
    assert_eq!(health["busy_workers"], 1);
    assert!(health["queue_depth"].as_u64().unwrap() <= 1);
    assert!(health["uptime_secs"].is_u64());
    let mut statuses = Vec::new();
    for task in burst {
        statuses.push(task.await.unwrap());
    }
    let refused = statuses.iter().filter(|s| **s == 503).count() as f64;
    let slept = statuses.iter().filter(|s| **s == 200).count() as f64;
    assert!(refused >= 1.0, "{statuses:?}");

    let (_, after) = get_text(&server.internal_url("/metrics")).await;
    let ran = 5.0 + 2.0 + slept;
    assert_eq!(
        metric(&after, "tokio_php_requests_served_total") - served_before,
        ran,
        "{after}"
    );
    assert_eq!(metric(&after, "tokio_php_fatal_errors_total"), 2.0);
    assert_eq!(metric(&after, "tokio_php_timeouts_total"), 1.0);
    assert_eq!(metric(&after, "tokio_php_rejected_total"), refused);
    assert_eq!(metric(&after, "tokio_php_worker_restarts_total"), 0.0);
    assert_eq!(metric(&after, "tokio_php_busy_workers"), 0.0);
    assert_eq!(metric(&after, "tokio_php_queue_depth"), 0.0);
    assert_eq!(
        metric(&after, "tokio_php_execution_duration_seconds_count"),
        ran + served_before
    );
    // The timeout ran for about a second.
    assert!(
        metric(
            &after,
            r#"tokio_php_execution_duration_seconds_bucket{le="0.5"}"#
        ) < metric(&after, "tokio_php_execution_duration_seconds_count")
    );
    // HTTP metrics from axum-prometheus, by method, status and endpoint.
    let ok = r#"axum_http_requests_total{method="GET",status="200",endpoint="fallback"}"#;
    assert_eq!(metric(&after, ok), 5.0 + slept, "{after}");
    let failed = r#"axum_http_requests_total{method="GET",status="500",endpoint="fallback"}"#;
    assert_eq!(metric(&after, failed), 2.0);
    let refused_series =
        r#"axum_http_requests_total{method="GET",status="503",endpoint="fallback"}"#;
    assert_eq!(metric(&after, refused_series), refused);
    assert!(after.contains("axum_http_requests_duration_seconds_bucket{"));
    assert!(after.contains("axum_http_requests_pending{"));

    // The internal routes are not on the public listener.
    let r = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn shutdown_under_load_finishes_every_accepted_request_and_exits_0() {
    let server = TestServer::start(&[
        ("INTERNAL_ADDR", "127.0.0.1:0"),
        ("PHP_WORKERS", "8"),
        ("DRAIN_TIMEOUT_SECS", "20"),
    ]);
    let internal = server.internal_url("/readyz");

    // Long requests, accepted before the signal.
    let mut long = Vec::new();
    for _ in 0..4 {
        let url = server.url("/sleep.php?ms=1500");
        long.push(tokio::spawn(async move {
            client().get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    // A streaming response in flight across the signal.
    let stream_url = server.url("/stream.php");
    let stream = tokio::spawn(async move {
        let r = client().get(stream_url).send().await.unwrap();
        (r.status().as_u16(), r.text().await)
    });
    // Steady load: each request on a new connection, started every few milliseconds.
    let stop_at = Instant::now() + Duration::from_secs(4);
    let mut load = Vec::new();
    for worker in 0..4 {
        let url = server.url(&format!("/echo_id.php?id={worker}"));
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut results = Vec::new();
            while Instant::now() < stop_at && results.len() < 2000 {
                let started = Instant::now();
                let result = client.get(&url).send().await;
                let outcome = match result {
                    Ok(r) => Ok((r.status().as_u16(), r.text().await.is_ok())),
                    Err(e) => Err(e.to_string()),
                };
                results.push((started, outcome));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            results
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, _) = get_text(&internal).await;
    assert_eq!(status, 200);

    let signalled = Instant::now();
    server.signal("TERM");
    // Probes see the drain while requests finish.
    let mut saw_503 = false;
    for _ in 0..50 {
        match client().get(&internal).send().await {
            Ok(r) if r.status() == 503 => {
                saw_503 = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(saw_503, "/readyz never answered 503 while draining");

    for task in long {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    let (status, body) = stream.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.unwrap(), "first chunk\nsecond chunk\n");

    let mut before = 0;
    let mut after_ok = 0;
    let mut after_refused = 0;
    for task in load {
        for (started, outcome) in task.await.unwrap() {
            let margin = Duration::from_millis(200);
            if started + margin < signalled {
                // Sent well before the signal: it must have succeeded.
                assert_eq!(
                    outcome,
                    Ok((200, true)),
                    "a request sent before the signal failed"
                );
                before += 1;
            } else {
                match outcome {
                    // After the signal: served in full, or never accepted. Never a 5xx and
                    // never a response cut short.
                    Ok(done) => {
                        assert_eq!(done, (200, true));
                        after_ok += 1;
                    }
                    Err(_) => after_refused += 1,
                }
            }
        }
    }
    assert!(before > 10, "too little load before the signal: {before}");
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    eprintln!(
        "load: {before} requests before the signal, {after_ok} served and {after_refused} refused after it"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let url = server.url("/sleep.php?ms=8000");
    let slow = tokio::spawn(async move { client().get(url).send().await.is_ok() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    assert!(server.wait_for_log("draining", Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(130));
    slow.abort();
}

#[tokio::test]
async fn opcache_is_on_and_opcache_jit_switches_the_jit_on() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/opcache.php"))
        .send()
        .await
        .unwrap();
    let status: HashMap<String, serde_json::Value> =
        serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status["opcache_enabled"], true);
    assert_eq!(status["jit_on"], false);
    assert_eq!(status["validate_timestamps"], "1");
    drop(server);

    let server = TestServer::start(&[("OPCACHE_JIT", "tracing")]);
    let r = client()
        .get(server.url("/opcache.php"))
        .send()
        .await
        .unwrap();
    let status: HashMap<String, serde_json::Value> =
        serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status["opcache_enabled"], true);
    assert_eq!(status["jit_enabled"], true);
    assert_eq!(status["jit_on"], true, "{status:?}");
    assert_eq!(status["ini_jit"], "tracing");
    assert!(status["jit_buffer_size"].as_u64().unwrap() > 60 << 20);
}

#[tokio::test]
async fn the_repository_php_ini_loads_and_turns_timestamps_off() {
    let ini = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("php.ini");
    let server = TestServer::start(&[("PHP_INI", ini.to_str().unwrap())]);
    let r = client()
        .get(server.url("/opcache.php"))
        .send()
        .await
        .unwrap();
    let status: HashMap<String, serde_json::Value> =
        serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(status["opcache_enabled"], true);
    assert_eq!(status["validate_timestamps"], "0");
    assert_eq!(status["jit_on"], true, "{status:?}");
}

#[tokio::test]
async fn opcache_preload_declares_the_classes_for_every_worker_thread() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::create_dir(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("src/Greeter.php"),
        "<?php\nfinal class Greeter { public function hello(string $who): string { return \"hello, $who\"; } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("preload.php"),
        "<?php\nopcache_compile_file(__DIR__ . '/src/Greeter.php');\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("page.php"),
        "<?php\nusleep(100000);\n$s = opcache_get_status(false);\necho json_encode([\n  'declared' => class_exists('Greeter', false),\n  'hello' => class_exists('Greeter', false) ? (new Greeter)->hello('preload') : null,\n  'included' => count(get_included_files()),\n  'preloaded' => $s['preload_statistics']['classes'] ?? [],\n]);\n",
    )
    .unwrap();
    // PHP preloads as opcache.preload_user; under root it insists on being told.
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
    let ini = dir.join("php.ini");
    std::fs::write(
        &ini,
        format!(
            "opcache.enable=1\nopcache.preload={}\nopcache.preload_user={user}\n",
            dir.join("preload.php").display()
        ),
    )
    .unwrap();
    let server = TestServer::start_with_root(dir, &[("PHP_INI", ini.to_str().unwrap())]);
    // Requests at once, so that both PHP worker threads answer some.
    let url = server.url("/page.php");
    let answers = futures_util::future::join_all((0..6).map(|_| get_text(&url))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}\n{}", server.log());
        let page: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(page["declared"], true, "{body}");
        assert_eq!(page["hello"], "hello, preload");
        assert_eq!(
            page["included"], 1,
            "only the page itself was included: {body}"
        );
        assert_eq!(page["preloaded"], serde_json::json!(["Greeter"]), "{body}");
    }
}
