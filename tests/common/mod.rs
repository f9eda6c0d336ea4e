//! A real tokio_php process on 127.0.0.1:0 for integration tests, with its log captured.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod apps;
pub(crate) mod layouts;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub(crate) mod browser;
pub(crate) mod mariadb;

/// The fixture document root.
pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A running server, killed on drop.
pub(crate) struct TestServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl TestServer {
    /// Starts the server on the fixtures with `env` on top of test defaults.
    pub(crate) fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with_root(&fixtures(), env)
    }

    /// Starts the server on `root` with `env`.
    pub(crate) fn start_with_root(root: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::try_start_with_root(root, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the server on `root` with `env`; the error says why it did not come up.
    pub(crate) fn try_start_with_root(
        root: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokio_php"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("DOCUMENT_ROOT", root)
            .env("PHP_WORKERS", "2")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn tokio_php");
        let stderr = child.stderr.take().expect("stderr");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stdout_writer = Arc::clone(&stdout);
        let child_stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(child_stdout).lines() {
                let Ok(line) = line else { break };
                let mut out = stdout_writer.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TEST_SERVER_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
                // The public listener: "listening on http://ADDR" or "https://ADDR" (the
                // internal server's line comes later and is read by `internal_addr`).
                let public = line
                    .split("listening on http")
                    .nth(1)
                    .filter(|_| !line.contains("internal server"))
                    .map(|rest| rest.trim_start_matches('s'))
                    .and_then(|rest| rest.strip_prefix("://"));
                let addr: Option<SocketAddr> = public.and_then(|rest| {
                    rest.chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect::<String>()
                        .parse()
                        .ok()
                });
                // The line is in the log before anyone learns the address from it.
                {
                    let mut log = log_writer.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let (Some(addr), Some(tx)) = (addr, addr_tx.as_ref()) {
                    let _ = tx.send(addr);
                    addr_tx = None;
                }
            }
        });
        let Ok(addr) = addr_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "server did not start; log:\n{}",
                log.lock().unwrap()
            ));
        };
        Ok(Self {
            child,
            addr,
            log,
            stdout,
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The internal server's address (started with `INTERNAL_ADDR=127.0.0.1:0`).
    pub(crate) fn internal_addr(&self) -> SocketAddr {
        let needle = "internal server listening on http://";
        assert!(
            self.wait_for_log(needle, Duration::from_secs(10)),
            "no internal server; log:\n{}",
            self.log()
        );
        let log = self.log();
        let rest = log.split(needle).nth(1).unwrap();
        let addr: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        addr.parse().unwrap()
    }

    /// `http://INTERNAL_ADDR{path}`.
    pub(crate) fn internal_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.internal_addr())
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`, …) to the server.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the server to exit on its own.
    pub(crate) fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the server logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Everything the server wrote to standard output so far (the access log).
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for standard output to have `lines` lines; returns them.
    pub(crate) fn wait_for_stdout_lines(&self, lines: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out: Vec<String> = self.stdout().lines().map(str::to_owned).collect();
            if out.len() >= lines || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the log to contain `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// How the server exited, if it has (without waiting).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The serving processes the supervisor forked (empty with `PROCESSES=0`).
    pub(crate) fn children(&self) -> Vec<u32> {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Resident memory of the server, its serving processes included, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        std::iter::once(self.child.id())
            .chain(self.children())
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Sends raw bytes on a new connection and returns everything read until the server
    /// closes it or `timeout` passes.
    pub(crate) fn raw(&self, request: &[u8], timeout: Duration) -> String {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM into `dir`.
pub(crate) struct DevCert {
    /// The certificate file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// The certificate, DER, to trust in clients.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
}

/// Generates a [`DevCert`] named `name` in `dir`.
pub(crate) fn dev_cert(dir: &std::path::Path, name: &str) -> DevCert {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.join(format!("{name}.crt.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    let pem = generated.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    DevCert {
        cert,
        key,
        der: generated.cert.der().to_vec(),
        pem,
    }
}

/// GETs `url` and parses its body as JSON.
pub(crate) async fn get_json(url: &str) -> serde_json::Value {
    let text = get_text(url).await;
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{url}: {err}: {text}"))
}

/// GETs `url`: its body as text.
pub(crate) async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A client that does not pool connections between tests.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
