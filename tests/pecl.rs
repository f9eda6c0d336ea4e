//! PECL extensions built with the documented command (scripts/build-pecl.sh, from Debian's
//! source packages) load through php.ini and work in requests: APCu's cache is shared by
//! the worker threads, and phpredis talks to a real redis-server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A redis-server on 127.0.0.1 with nothing saved to disk, killed by PID on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(dir: &std::path::Path) -> Self {
        assert!(
            std::path::Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: install redis-server (scripts/setup-test-deps.sh)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_and_apcu_built_with_the_pecl_script_work() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pecl");
    let _ = std::fs::remove_dir_all(&dir);
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();

    // The documented command, into a directory of the test's own (not PHP's extension dir).
    let php_config = PathBuf::from(env!("TOKIO_PHP_PREFIX")).join("bin/php-config");
    let output = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-pecl.sh"
    ))
    .arg("--out")
    .arg(&modules)
    .args(["apcu", "redis"])
    .env("PHP_CONFIG", &php_config)
    .output()
    .expect("run scripts/build-pecl.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "build-pecl.sh failed:\n{stderr}");
    let ini_lines = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        ini_lines.lines().count(),
        2,
        "one php.ini line per extension:\n{ini_lines}"
    );
    for name in ["apcu", "redis"] {
        assert!(
            ini_lines.contains(&format!(
                "extension={}",
                modules.join(format!("{name}.so")).display()
            )),
            "{ini_lines}"
        );
    }

    let redis = Redis::start(&dir);
    let ini = dir.join("php.ini");
    std::fs::write(
        &ini,
        format!("{ini_lines}apc.enabled=1\napc.shm_size=16M\n"),
    )
    .unwrap();
    let root = dir.join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("apcu.php"),
        r#"<?php
header('Content-Type: text/plain');
if (isset($_GET['store'])) { var_dump(apcu_store('k', ['v' => $_GET['store']])); }
else { echo json_encode([apcu_fetch('k'), apcu_inc('n'), apcu_sma_info(true)['num_seg'] ?? null]); }
"#,
    )
    .unwrap();
    std::fs::write(
        root.join("redis.php"),
        r#"<?php
$r = new Redis();
$r->connect('127.0.0.1', (int) $_GET['port'], 2.0);
$r->set('tokio_php', 'from ' . $_GET['from']);
echo json_encode([$r->get('tokio_php'), $r->incr('hits'), phpversion('redis')]);
"#,
    )
    .unwrap();
    let server = TestServer::start_with_root(
        &root,
        &[("PHP_INI", ini.to_str().unwrap()), ("PHP_WORKERS", "2")],
    );
    let client = common::client();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(path).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };

    // APCu: stored by one request, read by the next ones, whichever worker thread runs them.
    assert_eq!(
        get(server.url("/apcu.php?store=shared")).await,
        "bool(true)\n"
    );
    let mut counts = Vec::new();
    for _ in 0..6 {
        let r: serde_json::Value =
            serde_json::from_str(&get(server.url("/apcu.php")).await).unwrap();
        assert_eq!(r[0]["v"], "shared", "{r}\nlog:\n{}", server.log());
        counts.push(r[1].as_i64().unwrap());
    }
    assert_eq!(counts, [1, 2, 3, 4, 5, 6], "one counter for all threads");

    // phpredis against the real server.
    for n in 1..=3 {
        let body = get(server.url(&format!("/redis.php?port={}&from=req{n}", redis.port))).await;
        let r: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(r[0], format!("from req{n}"), "{r}");
        assert_eq!(r[1], n, "{r}");
        assert!(
            r[2].as_str().is_some_and(|v| v.starts_with('5')),
            "phpredis 5.x: {r}"
        );
    }
    assert!(!server.log().contains("PHP Warning"), "{}", server.log());
}
