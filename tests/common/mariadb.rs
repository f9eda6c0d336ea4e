//! A private MariaDB server for one test: its own data directory under `target/tmp`
//! (`mariadb-install-db`), `mariadbd` on 127.0.0.1 and a free port with its own socket and
//! pid file, one database and a user for it. Dropping it kills the server by its process id
//! and removes the directory. Works as root (the server then runs as root, `--user=root`)
//! and as any other user. Needs Debian's `mariadb-server-core` and `mariadb-client-core`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const INSTALL_DB: &str = "mariadb-install-db";
const SERVER: &str = "/usr/sbin/mariadbd";
const CLIENT: &str = "mariadb";

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running MariaDB with one database, killed and deleted on drop.
#[derive(Debug)]
pub(crate) struct MariaDb {
    child: Child,
    dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The database created for the test.
    pub database: String,
    /// A user with every privilege on `database`, from 127.0.0.1 and over the socket.
    pub user: String,
    /// That user's password.
    pub password: String,
}

impl MariaDb {
    /// Installs a data directory and starts the server with a database `database`, owned
    /// by a user of the same name.
    pub(crate) fn start(database: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "mariadb-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("mysqld.sock");
        // A Unix socket's path has room for 107 bytes.
        assert!(
            socket.as_os_str().len() < 100,
            "socket path too long for a Unix socket: {}",
            socket.display()
        );
        install(&dir);
        let port = free_port();
        let mut server = Command::new(SERVER);
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--max-connections=50",
            ])
            .args(as_root_arg())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = server.spawn().unwrap_or_else(|e| panic!("{SERVER}: {e}"));
        let mut db = Self {
            child,
            dir,
            port,
            database: database.to_owned(),
            user: database.to_owned(),
            password: format!("pw-{port}"),
        };
        db.wait_ready();
        let (name, user, password) = (&db.database, &db.user, &db.password);
        db.sql(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4;
             CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';
             CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}';
             GRANT ALL ON `{name}`.* TO '{user}'@'127.0.0.1', '{user}'@'localhost';"
        ));
        db
    }

    /// `127.0.0.1:PORT`, as PHP's `DB_HOST`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's Unix socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Runs `sql` as the server's root user over the socket; the rows, tab-separated, one a
    /// line, without column names.
    pub(crate) fn sql(&self, sql: &str) -> String {
        let out = self
            .client()
            .args(["-N", "-B", "-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{CLIENT} -e {sql:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.error_log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The server's error log so far.
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn client(&self) -> Command {
        let mut command = Command::new(CLIENT);
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--user=root", "--connect-timeout=2"])
            .stdin(Stdio::null());
        command
    }

    /// Waits until the server answers a query (it first recovers, then opens its socket).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mariadbd exited with {status}:\n{}", self.error_log());
            }
            let ping = self
                .client()
                .args(["-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if ping.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not ready after {READY_TIMEOUT:?}:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `mariadb-install-db` into `dir/data`: the system tables, and a root user that logs in
/// over the socket without a password.
fn install(dir: &Path) {
    let out = Command::new(INSTALL_DB)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .args(as_root_arg())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{INSTALL_DB}: {e}"));
    assert!(
        out.status.success(),
        "{INSTALL_DB} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--user=root` when the tests run as root: mariadbd refuses to run as root without it,
/// and a normal user needs nothing (the option would only draw a warning).
fn as_root_arg() -> Option<&'static str> {
    effective_uid_is_root().then_some("--user=root")
}

fn effective_uid_is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\tsaved\tfs".
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
