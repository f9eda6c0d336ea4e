//! Non-thread-safe PHP: Debian's own `libphp8.2-embed`, with the extensions Debian's
//! packages install, through `PHP_CONFIG`. Each serving process runs one PHP worker, so
//! `PROCESSES` gives the concurrency. The test builds that binary itself (in
//! `target/nts`), against `/usr/bin/php-config8.2` (scripts/setup-test-deps.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEBIAN_PHP_CONFIG: &str = "/usr/bin/php-config8.2";

/// The server built against Debian's NTS PHP.
fn nts_binary() -> PathBuf {
    assert!(
        Path::new(DEBIAN_PHP_CONFIG).exists(),
        "{DEBIAN_PHP_CONFIG} is missing: install libphp8.2-embed and php8.2-dev (scripts/setup-test-deps.sh)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/nts");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--bin", "tokio_php"])
        .current_dir(root)
        .env("PHP_CONFIG", DEBIAN_PHP_CONFIG)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building against {DEBIAN_PHP_CONFIG} failed"
    );
    target.join("debug/tokio_php")
}

struct Server {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, dir: &Path, port: u16) -> Server {
    let log = dir.join("server.log");
    let child = Command::new(binary)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DOCUMENT_ROOT", dir)
        .env("PROCESSES", "2")
        .env("PHP_WORKERS", "2")
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Killed on drop, should the start fail below.
    let server = Server { child, log, port };
    let text = || std::fs::read_to_string(&server.log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while text().matches("listening on").count() < 2 {
        assert!(Instant::now() < deadline, "not started: {}", text());
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debians_nts_php_serves_concurrent_requests_across_processes() {
    let binary = tokio::task::spawn_blocking(nts_binary).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.php"),
        "<?php usleep(400000); echo json_encode(['pid' => getmypid(), 'zts' => PHP_ZTS, \
         'version' => PHP_VERSION, 'mysqli' => extension_loaded('mysqli')]);",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = start(&binary, dir.path(), port);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("zts=false"), "{log}");
    assert!(log.contains("running exactly 1 PHP worker"), "{log}");

    // Two requests at once: one PHP worker per process, so they run in both processes.
    let url = format!("http://127.0.0.1:{}/slow.php", server.port);
    let started = Instant::now();
    let requests: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { common::get_json(&url).await })
        })
        .collect();
    let mut pids = std::collections::HashSet::new();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer["zts"], 0, "{answer}");
        assert_eq!(
            answer["mysqli"], true,
            "Debian's extension packages load: {answer}"
        );
        pids.insert(answer["pid"].as_u64().unwrap());
    }
    let took = started.elapsed();
    // The accept queue is shared, so a process may take both; then they ran one after
    // the other. Either way each was served; when both processes served, concurrently.
    if pids.len() == 2 {
        assert!(
            took < Duration::from_millis(780),
            "not concurrent: {took:?}"
        );
    }
    // Enough requests that both processes answer.
    let mut all = pids;
    for _ in 0..20 {
        let answers: Vec<_> = (0..2)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { common::get_json(&url).await })
            })
            .collect();
        for answer in answers {
            all.insert(answer.await.unwrap()["pid"].as_u64().unwrap());
        }
        if all.len() == 2 {
            break;
        }
    }
    assert_eq!(all.len(), 2, "both NTS processes should serve: {all:?}");
}
