//! The PHP-facing API: tokio_* functions, finish_request, Early Hints, SSE, client
//! disconnects, X-Sendfile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, client};
use futures_util::StreamExt;

/// GETs `path` and parses the body as JSON.
async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    json(client().get(server.url(path)).send().await.unwrap()).await
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn tokio_functions_answer_from_the_server() {
    let server = TestServer::start(&[("PHP_WORKERS", "3")]);
    let v = get_json(&server, "/php_api.php").await;
    assert!(!v["request_id"].as_str().unwrap().is_empty());
    let worker = v["worker_id"].as_i64().unwrap();
    assert!((0..3).contains(&worker), "{v}");
    assert_eq!(v["server_info"]["server"], "tokio_php");
    assert_eq!(v["server_info"]["workers"], 3);
    assert_eq!(v["server_info"]["zts"], true);
    assert_eq!(v["server_info"]["sapi"], "tokio_php");
    assert!(
        v["server_info"]["php_version"]
            .as_str()
            .unwrap()
            .starts_with('8')
    );
    assert_eq!(
        v["server_info"]["server_version"],
        env!("CARGO_PKG_VERSION")
    );
    // REQUEST_TIMEOUT (2m by default) applies, so a heartbeat moves it.
    assert_eq!(v["heartbeat"], true);
    assert_eq!(v["fastcgi_finish_request"], true);

    // Two requests get two ids.
    let w = get_json(&server, "/php_api.php").await;
    assert_ne!(v["request_id"], w["request_id"]);
}

#[tokio::test]
async fn heartbeats_push_the_request_timeout_forward() {
    let server = TestServer::start(&[("REQUEST_TIMEOUT", "1s"), ("PHP_WORKERS", "1")]);
    // 2 s of work under a 1 s timeout: heartbeats every 0.5 s keep it alive.
    let r = client()
        .get(server.url("/heartbeat.php?beat=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[true,true,true,true]");
    // Without them it times out.
    let r = client()
        .get(server.url("/heartbeat.php"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    drop(server);
    // With no timeout there is nothing to push.
    let server = TestServer::start(&[("REQUEST_TIMEOUT", "off")]);
    let v = get_json(&server, "/php_api.php").await;
    assert_eq!(v["heartbeat"], false);
}

#[tokio::test]
async fn the_stub_file_matches_the_real_signatures() {
    let server = TestServer::start(&[]);
    let real = get_json(&server, "/signatures.php").await;
    let stub = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("php-ext/tokio_php.stub.php"),
    )
    .unwrap();
    let declared: Vec<&str> = stub
        .lines()
        .filter(|l| l.starts_with("function "))
        .map(|l| l.trim_end_matches(" {}"))
        .collect();
    assert_eq!(declared.len(), real.as_object().unwrap().len());
    for line in declared {
        let name = line["function ".len()..].split('(').next().unwrap();
        assert_eq!(real[name], line, "{name}");
    }
}

async fn finish_request_sends_early(function: &str) {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("done.json");
    let started = Instant::now();
    let r = client()
        .get(server.url(&format!(
            "/finish.php?fn={function}&marker={}",
            marker.display()
        )))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    let answered = started.elapsed();
    assert_eq!(body, "response sent early");
    assert!(
        answered < Duration::from_millis(1500),
        "the full body took {answered:?}; the script sleeps 2 s after finishing"
    );
    assert!(
        !marker.exists(),
        "the work after finishing cannot be done yet"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    assert_eq!(v["first"], true);
    assert_eq!(v["second"], false);
}

#[tokio::test]
async fn tokio_finish_request_delivers_before_the_work_ends() {
    finish_request_sends_early("tokio").await;
}

#[tokio::test]
async fn fastcgi_finish_request_is_the_same_function() {
    finish_request_sends_early("fastcgi").await;
}

#[tokio::test]
async fn early_hints_arrive_before_the_final_response() {
    let server = TestServer::start(&[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /early_hints.php HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // The 103 comes on its own, while the script still sleeps.
    let mut first = vec![0u8; 4096];
    let n = stream.read(&mut first).unwrap();
    let first = String::from_utf8_lossy(&first[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{first}");
    assert!(
        first.contains("link: </style.css>; rel=preload; as=style\r\n"),
        "{first}"
    );
    assert!(
        !first.to_ascii_lowercase().contains("x-not-a-hint"),
        "{first}"
    );
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    let all = format!("{first}{rest}");
    let final_at = all.find("HTTP/1.1 200 OK").expect("a final 200");
    assert!(final_at > 0);
    assert!(all.ends_with("final response, hints sent: 103"), "{all}");
    assert_eq!(all[final_at..].matches("link: ").count(), 2, "{all}");
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/sse.php"))
        .header("Accept", "text/event-stream")
        .header("Accept-Encoding", "gzip, br, zstd")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(r.headers().get("content-encoding").is_none());
    let mut stream = r.bytes_stream();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        arrivals.push((Instant::now(), String::from_utf8_lossy(&chunk).to_string()));
    }
    assert_eq!(
        text,
        "id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n"
    );
    assert_eq!(arrivals.len(), 3, "{arrivals:?}");
    for pair in arrivals.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(250),
            "events arrived together: {gap:?}"
        );
    }
}

#[tokio::test]
async fn sse_timeout_ends_a_long_stream_and_frees_the_worker() {
    let server = TestServer::start(&[
        ("SSE_TIMEOUT", "1s"),
        ("REQUEST_TIMEOUT", "30s"),
        ("PHP_WORKERS", "1"),
    ]);
    let started = Instant::now();
    let r = client()
        .get(server.url("/sse_long.php"))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap_or_default();
    let took = started.elapsed();
    assert!(body.starts_with("data: tick 0\n\n"), "{body}");
    assert!(!body.contains("tick 20"), "{body}");
    assert!(took < Duration::from_secs(4), "the stream lasted {took:?}");
    // The script stopped at its next event: the only worker serves the next request.
    let started = Instant::now();
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn read_first_chunk_then_leave(server: &TestServer, path: &str) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("tick 0"));
    drop(stream);
}

#[tokio::test]
async fn a_client_that_leaves_frees_the_only_worker() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    read_first_chunk_then_leave(&server, "/disconnect.php");
    // The loop would run 10 s; the next request is served long before.
    let started = Instant::now();
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the worker was held for {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ignore_user_abort_keeps_running_and_sees_the_abort() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("aborted.json");
    read_first_chunk_then_leave(
        &server,
        &format!("/disconnect.php?ignore=1&marker={}", marker.display()),
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    while !marker.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    assert_eq!(v["aborted"], 1);
    assert_eq!(v["status"], 1); // CONNECTION_ABORTED
}

fn ten_mib_file(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let path = dir.join("big.bin");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[tokio::test]
async fn x_sendfile_serves_a_file_with_range() {
    let files = tempfile::tempdir().unwrap();
    let (path, data) = ten_mib_file(files.path());
    let roots = files.path().to_str().unwrap().to_owned();
    let server = TestServer::start(&[("SENDFILE_ROOTS", &roots)]);
    let url = server.url(&format!("/sendfile.php?path={}", path.display()));
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"data.bin\""
    );
    assert!(r.headers().get("x-sendfile").is_none());
    assert!(r.headers().get("etag").is_some());
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert!(body[..] == data[..]);

    let r = client()
        .get(&url)
        .header("Range", "bytes=5000000-5000999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        "bytes 5000000-5000999/10485760"
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(&body[..], &data[5_000_000..5_001_000]);

    // X-Accel-Redirect with a path relative to the first root.
    let r = client()
        .get(server.url("/sendfile.php?header=X-Accel-Redirect&path=/big.bin"))
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &data[..10]);
}

#[tokio::test]
async fn x_sendfile_outside_the_roots_is_a_500_never_the_file() {
    let files = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let roots = files.path().to_str().unwrap().to_owned();
    let server = TestServer::start(&[("SENDFILE_ROOTS", &roots)]);
    for target in [
        outside.path().join("secret.txt").display().to_string(),
        format!(
            "{}/../{}/secret.txt",
            files.path().display(),
            outside.path().file_name().unwrap().to_str().unwrap()
        ),
        "/etc/passwd".to_owned(),
        "../etc/passwd".to_owned(),
    ] {
        let r = client()
            .get(server.url(&format!("/sendfile.php?path={target}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{target}");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("root:"),
            "{target}: {body}"
        );
    }
    assert!(server.wait_for_log(
        "X-Sendfile target is missing or outside",
        Duration::from_secs(5)
    ));
}

#[tokio::test]
async fn putenv_stays_in_its_request_and_thread() {
    let server = TestServer::start(&[("PHP_WORKERS", "2")]);
    let v = get_json(&server, "/putenv.php?set=one").await;
    assert_eq!(v["before"], false);
    assert_eq!(v["after"], "one");
    assert_eq!(v["same"], true);
    assert_eq!(v["path"], true, "the real environment still reads through");
    // While one worker holds a putenv() value, the other worker does not see it.
    let holder = tokio::spawn(
        client()
            .get(server.url("/putenv.php?set=held&hold=1"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = get_json(&server, "/putenv.php").await;
    assert_eq!(v["before"], false);
    assert_eq!(v["after"], false);
    let held = json(holder.await.unwrap().unwrap()).await;
    assert_eq!(held["after"], "held");
    // And the next request on any worker starts clean.
    for _ in 0..4 {
        let v = get_json(&server, "/putenv.php").await;
        assert_eq!(v["before"], false);
    }
}
