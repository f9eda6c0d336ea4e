//! Worker mode (WORKER_SCRIPT): a script boots once per worker thread and serves requests
//! with tokio_handle_request() / frankenphp_handle_request(), over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestServer, client};

fn root() -> PathBuf {
    common::fixtures().join("worker/public")
}

/// A server on the worker fixtures with one worker-mode thread running `script`.
fn start(script: &str, env: &[(&str, &str)]) -> TestServer {
    let mut all = vec![("WORKER_SCRIPT", script), ("WORKER_COUNT", "1")];
    all.extend_from_slice(env);
    TestServer::start_with_root(&root(), &all)
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn get(server: &TestServer, path: &str) -> serde_json::Value {
    let r = client().get(server.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    json(r).await
}

#[tokio::test]
async fn state_persists_while_superglobals_do_not_leak() {
    let server = start("../app.php", &[]);
    let first = json(
        client()
            .post(server.url("/form?from=first"))
            .header("Cookie", "session=abc")
            .form(&[("secret", "s3cret")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(first["count"], 1);
    assert_eq!(first["method"], "POST");
    assert_eq!(first["post"]["secret"], "s3cret");
    assert_eq!(first["get"]["from"], "first");
    assert_eq!(first["request"]["secret"], "s3cret");
    assert_eq!(first["cookie"]["session"], "abc");
    assert_eq!(first["input"], "secret=s3cret");
    assert_eq!(first["script"], "/app.php");
    assert_eq!(first["uri"], "/form?from=first");
    // The script's own $_SERVER says it is a worker script; a request's $_SERVER is the
    // request's own.
    assert_eq!(first["boot_marks"], serde_json::json!(["1", "1"]));
    assert_eq!(first["request_marks"], serde_json::json!([null, null]));

    let second = get(&server, "/other").await;
    // The application's own state grows: same boot, one more request.
    assert_eq!(second["boot"], first["boot"]);
    assert_eq!(second["count"], 2);
    // The request's state does not: no POST field, query, cookie or body from before.
    assert_eq!(second["method"], "GET");
    assert_eq!(second["post"], serde_json::json!([]));
    assert_eq!(second["get"], serde_json::json!([]));
    assert_eq!(second["request"], serde_json::json!([]));
    assert_eq!(second["cookie"], serde_json::json!([]));
    assert_eq!(second["input"], "");
    assert_eq!(second["uri"], "/other");
    assert_ne!(second["request_id"], first["request_id"]);

    let third = get(&server, "/").await;
    assert_eq!(third["count"], 3);
}

#[tokio::test]
async fn uploads_are_per_request_and_removed_after_it() {
    let server = start("../app.php", &[]);
    let form = reqwest::multipart::Form::new().part(
        "doc",
        reqwest::multipart::Part::bytes(b"file body".to_vec()).file_name("a.txt"),
    );
    let v = json(
        client()
            .post(server.url("/upload"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["files"]["doc"]["name"], "a.txt");
    assert_eq!(v["files"]["doc"]["exists"], true);
    let tmp = PathBuf::from(v["files"]["doc"]["tmp"].as_str().unwrap());
    assert!(
        !tmp.exists(),
        "uploaded temp file {tmp:?} outlived its request"
    );
    let next = get(&server, "/").await;
    assert_eq!(next["files"], serde_json::json!([]));
}

#[tokio::test]
async fn a_fatal_error_restarts_the_script_and_the_next_request_succeeds() {
    let server = start("../app.php", &[("INTERNAL_ADDR", "127.0.0.1:0")]);
    let before = get(&server, "/").await;
    let r = client().get(server.url("/?fatal=1")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let after = get(&server, "/").await;
    assert_ne!(after["boot"], before["boot"], "the script was restarted");
    assert_eq!(after["count"], 1);
    // The log lines are written as the script dies; the response may arrive first.
    assert!(server.wait_for_log("fatal error in the handler", Duration::from_secs(5)));
    assert!(server.wait_for_log(
        "worker script stopped: it ended in a fatal error",
        Duration::from_secs(5)
    ));

    // exit() in a handler: the request keeps what it produced, the script starts again.
    let r = client().get(server.url("/?exit=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "bye");
    let after_exit = get(&server, "/").await;
    assert_ne!(after_exit["boot"], after["boot"]);

    // An uncaught exception is a 500 for that request only; the application lives on.
    let r = client().get(server.url("/?throw=1")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let after_throw = get(&server, "/").await;
    assert_eq!(after_throw["boot"], after_exit["boot"]);

    let metrics = client()
        .get(server.internal_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tokio_php_worker_mode_restarts_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tokio_php_worker_mode_requests_total{worker=\"0\"} 7\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn max_requests_restarts_the_script_after_n_requests() {
    let server = start("../app.php", &[("WORKER_MAX_REQUESTS", "5")]);
    let mut boots = Vec::new();
    for _ in 0..12 {
        let v = get(&server, "/").await;
        boots.push((
            v["boot"].as_str().unwrap().to_owned(),
            v["count"].as_u64().unwrap(),
        ));
    }
    let counts: Vec<u64> = boots.iter().map(|(_, c)| *c).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]);
    assert!(boots[..5].iter().all(|(b, _)| *b == boots[0].0));
    assert!(boots[5..10].iter().all(|(b, _)| *b == boots[5].0));
    assert_ne!(boots[0].0, boots[5].0);
    assert_ne!(boots[5].0, boots[10].0);
    assert!(server.log().contains("reached WORKER_MAX_REQUESTS"));
}

#[tokio::test]
async fn request_timeout_interrupts_a_handler_and_the_worker_recovers() {
    let server = start("../app.php", &[("REQUEST_TIMEOUT", "1s")]);
    let r = client().get(server.url("/?spin=1")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    // The interrupted script is restarted; the worker serves again.
    let v = get(&server, "/").await;
    assert_eq!(v["count"], 1);
}

#[tokio::test]
async fn shutdown_ends_every_worker_loop_and_exits_zero() {
    let markers = tempfile::tempdir().unwrap();
    let dir = markers.path().to_str().unwrap().to_owned();
    let server = TestServer::start_with_root(
        &root(),
        &[
            ("WORKER_SCRIPT", "../shutdown_marker.php"),
            ("WORKER_COUNT", "3"),
            ("WORKER_MARKER_DIR", &dir),
        ],
    );
    let r = client().get(server.url("/")).send().await.unwrap();
    assert!(r.text().await.unwrap().starts_with("worker "));
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    for id in 0..3 {
        let marker = markers.path().join(format!("loop-ended-{id}"));
        assert!(marker.exists(), "worker {id} did not leave its loop");
    }
}

#[tokio::test]
async fn a_symfony_runtime_style_front_script_runs_unchanged() {
    // Without FRANKENPHP_WORKER the script would not loop: requests would wait for it.
    let server = start("../symfony_front.php", &[("REQUEST_TIMEOUT", "10s")]);
    let first = get(&server, "/blog/42?page=2").await;
    assert_eq!(first["runtime"], "frankenphp-style");
    assert_eq!(first["handled"], 1);
    assert_eq!(first["path"], "/blog/42");
    assert_eq!(first["query"]["page"], "2");
    assert_eq!(first["app_env"], "prod");
    let second = get(&server, "/").await;
    assert_eq!(second["boot"], first["boot"]);
    assert_eq!(second["handled"], 2);
    assert_eq!(second["query"], serde_json::json!([]));
    // terminate() ran between the two requests, outside either.
    assert_eq!(second["terminated_before"], 1);
}

#[tokio::test]
async fn a_session_save_handler_registered_once_serves_every_request() {
    let sessions = tempfile::tempdir().unwrap();
    let dir = sessions.path().to_str().unwrap();
    let server = start("../session_handler.php", &[("SESSION_DIR", dir)]);
    let visit = |cookie: Option<String>| {
        let mut request = client().get(server.url("/"));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        async move {
            let r = request.send().await.unwrap();
            let cookie = r
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            (json(r).await, cookie)
        }
    };
    let (first, cookie) = visit(None).await;
    assert_eq!(first["started"], true);
    assert_eq!(first["visits"], 1);
    let cookie = cookie.expect("a session cookie");
    // The handler registered at boot still serves the second request and the third.
    for visits in 2..=3 {
        let (next, _) = visit(Some(cookie.clone())).await;
        assert_eq!(next["started"], true, "{next}");
        assert_eq!(next["module"], "user");
        assert_eq!(next["id"], first["id"]);
        assert_eq!(next["visits"], visits);
        assert_eq!(next["reads"], visits);
    }
    let (other, _) = visit(None).await;
    assert_eq!(other["visits"], 1);
    assert_ne!(other["id"], first["id"]);
    assert!(
        !server
            .log()
            .contains("User session functions are not defined")
    );
}

#[tokio::test]
async fn a_request_without_a_session_sees_no_session_data() {
    let sessions = tempfile::tempdir().unwrap();
    let dir = sessions.path().to_str().unwrap();
    let server = start("../session_handler.php", &[("SESSION_DIR", dir)]);
    assert_eq!(get(&server, "/").await["visits"], 1);
    // It starts no session: as under php-fpm, no $_SESSION, not the previous client's.
    let peek = get(&server, "/?peek=1").await;
    assert_eq!(peek["peek"], serde_json::Value::Null);
}

#[tokio::test]
async fn classic_scripts_run_beside_worker_mode() {
    let server = start("../app.php", &[("WORKER_MATCH", "/app")]);
    let worker = get(&server, "/app/users").await;
    assert_eq!(worker["script"], "/app.php");
    assert_eq!(worker["count"], 1);
    let classic = get(&server, "/classic.php").await;
    assert_eq!(classic["classic"], true);
    assert_eq!(classic["worker_mark"], serde_json::Value::Null);
    // Outside the prefix, unknown paths are 404 as usual; static files are files.
    let r = client().get(server.url("/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(server.url("/static.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "static file\n");
    let again = get(&server, "/app").await;
    assert_eq!(again["count"], 2);
}

#[tokio::test]
async fn a_script_that_cannot_boot_is_retried_with_a_back_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.php"), "<?php\nthis is not php;\n").unwrap();
    let server = TestServer::start_with_root(
        dir.path(),
        &[("WORKER_SCRIPT", "broken.php"), ("WORKER_COUNT", "1")],
    );
    assert!(server.wait_for_log(
        "worker script stopped before serving a request",
        Duration::from_secs(10)
    ));
    assert!(server.wait_for_log("retry_in_ms=200", Duration::from_secs(10)));
}

#[tokio::test]
async fn watch_restarts_the_scripts_when_a_php_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    restarts_on_change(dir.path(), || {
        std::fs::write(dir.path().join("lib.php"), "<?php // new file\n").unwrap();
    })
    .await;
}

/// Debian's packages link directories into their document roots (WordPress's wp-content,
/// MediaWiki's extensions): a change behind the link counts.
#[tokio::test]
async fn watch_follows_symbolic_links_in_the_document_root() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("plugin.php"), "<?php // v1\n").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("wp-content")).unwrap();
    restarts_on_change(dir.path(), || {
        std::fs::write(elsewhere.path().join("plugin.php"), "<?php // version 2\n").unwrap();
    })
    .await;
}

/// Serves the worker fixture from `root` with WATCH=1, runs `change`, and expects the
/// script to be restarted (a new boot id).
async fn restarts_on_change(root: &std::path::Path, change: impl FnOnce()) {
    std::fs::copy(
        common::fixtures().join("worker/app.php"),
        root.join("app.php"),
    )
    .unwrap();
    let server = TestServer::start_with_root(
        root,
        &[
            ("WORKER_SCRIPT", "app.php"),
            ("WORKER_COUNT", "1"),
            ("WATCH", "1"),
        ],
    );
    let first = get(&server, "/").await;
    change();
    assert!(server.wait_for_log(
        "PHP files changed (WATCH); restarting the worker script",
        Duration::from_secs(10)
    ));
    let second = get(&server, "/").await;
    assert_ne!(second["boot"], first["boot"]);
}
