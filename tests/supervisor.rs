//! The supervisor (`PROCESSES`): PHP code that crashes its process costs only the requests
//! that process was running; the listeners stay open, a replacement serves at once, and the
//! log names the request. Real crashes (C stack overflows in plain PHP), real signals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, client, get_json, get_text};

/// Requests `/hello.php` until it answers 200; how long that took.
async fn first_good_response(server: &TestServer, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(r) = client().get(server.url("/hello.php")).send().await
            && r.status() == 200
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "no good response within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// `clients` loops of `/hello.php` until `stop`.
fn load(
    server: &TestServer,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let counts = Arc::new(Load::default());
    let tasks = (0..clients)
        .map(|_| {
            let url = server.url("/hello.php");
            let counts = Arc::clone(&counts);
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) => {
                            let good = r.status() == 200;
                            if good && r.text().await.is_ok() {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(err) if err.is_connect() => {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    (counts, tasks)
}

/// Stops the load; (ok, failed, refused).
async fn stop_load(
    stop: &AtomicBool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counts: &Load,
) -> (u64, u64, u64) {
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_script_costs_only_its_own_process_requests() {
    let server = TestServer::start(&[("PROCESSES", "2"), ("PHP_WORKERS", "2")]);
    first_good_response(&server, Duration::from_secs(5)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = load(&server, 8, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let crash = client()
        .get(server.url("/crash_destructors.php"))
        .send()
        .await;
    assert!(
        crash.is_err() || crash.as_ref().is_ok_and(|r| r.status() != 200),
        "the crashing script answered {crash:?}"
    );
    let recovered = first_good_response(&server, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, refused) = stop_load(&stop, tasks, &counts).await;
    eprintln!("load: {ok} ok, {failed} failed, {refused} refused; recovered in {recovered:?}");
    assert_eq!(refused, 0, "connections were refused");
    // Only requests that reached the crashing process can fail: the one each client had
    // on it, and a retry that the process accepted in the ~0.4 s before it died. The other
    // process kept serving throughout (ok counts every client's successes).
    assert!(failed <= 16, "{failed} requests failed");
    assert!(ok > 50, "too little load: {ok}");
    assert!(server.wait_for_log("serving process crashed", Duration::from_secs(2)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("serving process crashed"))
        .unwrap();
    assert!(line.contains("GET /crash_destructors.php"), "{line}");
    assert!(line.contains("script="), "{line}");
}

#[tokio::test]
async fn five_crashes_in_a_row_and_the_server_still_serves() {
    let server = TestServer::start(&[("PROCESSES", "1"), ("PHP_WORKERS", "2")]);
    for round in 0..5 {
        let script = if round % 2 == 0 {
            "/crash_destructors.php"
        } else {
            "/crash_recursion.php"
        };
        let crash = client().get(server.url(script)).send().await;
        assert!(crash.is_err(), "round {round}: {script} answered {crash:?}");
        let recovered = first_good_response(&server, Duration::from_secs(1)).await;
        eprintln!("round {round}: {script}, serving again after {recovered:?}");
    }
    assert_eq!(server.log().matches("serving process crashed").count(), 5);
    assert!(server.log().contains("GET /crash_recursion.php"));
}

#[tokio::test]
async fn a_killed_process_is_replaced_and_a_killed_master_leaves_none() {
    let server = TestServer::start(&[
        ("PROCESSES", "2"),
        ("PHP_WORKERS", "1"),
        ("INTERNAL_ADDR", "127.0.0.1:0"),
    ]);
    first_good_response(&server, Duration::from_secs(5)).await;
    let children = server.children();
    assert_eq!(children.len(), 2, "{children:?}");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &children[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        server.wait_for_log("SIGKILL", Duration::from_secs(2)),
        "{}",
        server.log()
    );
    first_good_response(&server, Duration::from_secs(1)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.children().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no replacement: {:?}",
            server.children()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!server.children().contains(&children[0]));
    // Both processes answer for the whole: the restart is counted.
    let health = get_json(&server.internal_url("/health")).await;
    assert_eq!(health["process_restarts"], 1, "{health}");
    assert_eq!(
        health["processes"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );

    // SIGKILL of the master: its serving processes follow (they drain and exit).
    let children = server.children();
    server.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while children.iter().any(|pid| {
        std::path::Path::new(&format!("/proc/{pid}/status")).exists() && !is_zombie(*pid)
    }) {
        assert!(
            Instant::now() < deadline,
            "serving processes outlived the master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

#[tokio::test]
async fn every_process_shares_one_opcache() {
    let server = TestServer::start(&[("PROCESSES", "2"), ("PHP_WORKERS", "1")]);
    first_good_response(&server, Duration::from_secs(5)).await;
    // Enough requests that both processes answer some.
    let mut answers = Vec::new();
    for _ in 0..40 {
        answers.push(get_json(&server.url("/opcache_status.php")).await);
    }
    let pids: std::collections::HashSet<u64> =
        answers.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 2, "both processes should answer: {answers:?}");
    // One cache: the same cache start, the script cached, and one hit count that grows
    // with every request whichever process answers it.
    let hits: Vec<u64> = answers
        .iter()
        .map(|r| r["hits"].as_u64().unwrap())
        .collect();
    assert!(
        hits.windows(2).all(|w| w[1] > w[0]),
        "hits {hits:?} are not one count"
    );
    assert!(
        answers
            .iter()
            .all(|r| r["start_time"] == answers[0]["start_time"])
    );
    assert!(answers.iter().skip(1).all(|r| r["cached_here"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_at_once_spread_evenly_over_the_processes() {
    let server = TestServer::start(&[
        ("PROCESSES", "4"),
        ("PHP_WORKERS", "1"),
        ("INTERNAL_ADDR", "127.0.0.1:0"),
    ]);
    first_good_response(&server, Duration::from_secs(5)).await;
    let started = Instant::now();
    loop {
        let health = get_json(&server.internal_url("/health")).await;
        let processes = health["processes"].as_array().unwrap();
        if processes.iter().all(|p| p["accepting"] == true) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not every process accepts: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clients = 16;
    for round in 0..3 {
        // One client each, all at once: 16 connections arrive together, as a load
        // generator's do, and each stays with the process that accepted it.
        let requests: Vec<_> = (0..clients)
            .map(|_| {
                let url = server.url("/opcache_status.php");
                tokio::spawn(async move {
                    let client = client();
                    let pid_of = |body: String| -> u64 {
                        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                        json["pid"].as_u64().unwrap()
                    };
                    let first = client.get(&url).send().await.unwrap();
                    let pid = pid_of(first.text().await.unwrap());
                    let again = client.get(&url).send().await.unwrap();
                    let same = pid_of(again.text().await.unwrap());
                    assert_eq!(pid, same, "a keep-alive connection moved between processes");
                    pid
                })
            })
            .collect();
        let mut per_process = std::collections::HashMap::<u64, usize>::new();
        for request in requests {
            *per_process.entry(request.await.unwrap()).or_default() += 1;
        }
        let mut counts: Vec<usize> = per_process.values().copied().collect();
        counts.sort_unstable();
        eprintln!("round {round}: connections per process {counts:?}");
        // Even is 4 each; without the balancing one process took up to all 16.
        assert_eq!(
            counts.len(),
            4,
            "every process should hold some: {counts:?}"
        );
        assert!(
            counts.iter().all(|&n| n <= 6),
            "connections per process {counts:?}"
        );
    }
}

#[tokio::test]
async fn processes_0_runs_one_process_without_supervisor() {
    let server = TestServer::start(&[("PROCESSES", "0")]);
    first_good_response(&server, Duration::from_secs(5)).await;
    assert!(server.children().is_empty());
    assert!(!server.log().contains("supervisor started"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_switched_release_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    for release in ["1", "2"] {
        let root = dir.path().join("releases").join(release);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.php"), "<?php echo 'hello';").unwrap();
        std::fs::write(root.join("version.php"), format!("<?php echo '{release}';")).unwrap();
    }
    let current = dir.path().join("current");
    std::os::unix::fs::symlink(dir.path().join("releases/1"), &current).unwrap();
    let server = TestServer::start_with_root(&current, &[("PROCESSES", "2"), ("PHP_WORKERS", "1")]);
    first_good_response(&server, Duration::from_secs(5)).await;
    let version_url = server.url("/version.php");
    let version = || get_text(&version_url);
    assert_eq!(version().await, "1");
    let before = server.children();

    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = load(&server, 8, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The usual atomic deploy: a new link renamed over `current` (ln -sfn), then SIGHUP.
    let next = dir.path().join("current.next");
    std::os::unix::fs::symlink(dir.path().join("releases/2"), &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while version().await != "2" {
        assert!(
            Instant::now() < deadline,
            "release 2 not served: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.wait_for_log("the previous one drains", Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, refused) = stop_load(&stop, tasks, &counts).await;
    eprintln!("reload under load: {ok} ok, {failed} failed, {refused} refused");
    assert_eq!(
        (failed, refused),
        (0, 0),
        "requests failed across the reload"
    );
    assert!(ok > 50, "too little load: {ok}");
    // Every request now runs in the new generation, from release 2.
    for _ in 0..10 {
        assert_eq!(version().await, "2");
    }
    let after = server.children();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "{before:?} {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_four_processes_a_crash_costs_about_a_quarter_of_the_requests_in_flight() {
    let server = TestServer::start(&[("PROCESSES", "4"), ("PHP_WORKERS", "1")]);
    first_good_response(&server, Duration::from_secs(5)).await;
    let clients = 16;
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = load(&server, clients, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crash = client()
        .get(server.url("/crash_destructors.php"))
        .send()
        .await;
    assert!(crash.is_err(), "the crashing script answered {crash:?}");
    first_good_response(&server, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, refused) = stop_load(&stop, tasks, &counts).await;
    eprintln!("4 processes, {clients} clients: {ok} ok, {failed} failed, {refused} refused");
    assert_eq!(refused, 0);
    // Each client keeps its connection on one process, and the connections are balanced
    // over the processes: the clients on the crashed one (a quarter, 3 to 5 of 16) lose
    // the request they had there.
    assert!(failed <= 6, "{failed} of {clients} in flight failed");
    assert!(ok > 100, "too little load: {ok}");
}

#[tokio::test]
async fn metrics_and_health_count_every_process() {
    let server = TestServer::start(&[
        ("PROCESSES", "2"),
        ("PHP_WORKERS", "1"),
        ("INTERNAL_ADDR", "127.0.0.1:0"),
    ]);
    first_good_response(&server, Duration::from_secs(5)).await;
    let before = get_json(&server.internal_url("/health")).await["requests_served"]
        .as_u64()
        .unwrap();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..30 {
        pids.insert(
            get_json(&server.url("/opcache_status.php")).await["pid"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(pids.len(), 2, "both processes should serve");
    // Whichever process answers, the figures are the sum over both.
    for _ in 0..6 {
        let health = get_json(&server.internal_url("/health")).await;
        assert_eq!(
            health["requests_served"].as_u64().unwrap(),
            before + 30,
            "{health}"
        );
        assert_eq!(health["workers"], 2, "{health}");
        let text = get_text(&server.internal_url("/metrics")).await;
        let served = text
            .lines()
            .find_map(|l| l.strip_prefix("tokio_php_requests_served_total "))
            .unwrap();
        assert_eq!(served.parse::<u64>().unwrap(), before + 30, "{text}");
    }
}
