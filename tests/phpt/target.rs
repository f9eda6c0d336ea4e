//! The servers the tests run against: tokio_php (the real binary), or nginx + php-fpm as
//! the reference (`PHPT_TARGET=php-fpm`, see `scripts/phpt-php-fpm.sh`). Each server is
//! started on 127.0.0.1 with a php.ini of the runner's and stopped, by PID, when dropped.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::TestServer;

/// A server family that can be started with a given php.ini.
pub(crate) trait Target: Sync {
    /// The name results are filed under (`tokio_php`, `php-fpm`).
    fn name(&self) -> &'static str;
    /// Starts a server on `root` with `php_ini` and `workers` PHP workers.
    fn start(&self, root: &Path, php_ini: &Path, workers: usize)
    -> Result<Box<dyn Server>, String>;
}

/// A running server.
pub(crate) trait Server: Send + Sync {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// How it died, if it has ("killed by signal 11").
    fn death(&self) -> Option<String>;
    /// The end of its log, for a report.
    fn log_tail(&self) -> String;
}

// === tokio_php ===

/// The tokio_php binary built with the tests.
pub(crate) struct TokioPhp {
    /// `LOCPATH` for the servers (the locales the tests ask for).
    pub locpath: Option<PathBuf>,
}

struct TokioPhpServer {
    server: Mutex<TestServer>,
    addr: SocketAddr,
}

impl Target for TokioPhp {
    fn name(&self) -> &'static str {
        "tokio_php"
    }

    fn start(
        &self,
        root: &Path,
        php_ini: &Path,
        workers: usize,
    ) -> Result<Box<dyn Server>, String> {
        let ini = php_ini.to_string_lossy().into_owned();
        let workers = workers.to_string();
        let locpath = self
            .locpath
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut env = vec![
            ("PHP_INI", ini.as_str()),
            ("PHP_WORKERS", workers.as_str()),
            ("REQUEST_TIMEOUT", "90s"),
            ("LOG_LEVEL", "info"),
        ];
        if self.locpath.is_some() {
            env.push(("LOCPATH", locpath.as_str()));
        }
        let server = TestServer::try_start_with_root(root, &env)?;
        let addr = server.addr;
        Ok(Box::new(TokioPhpServer {
            server: Mutex::new(server),
            addr,
        }))
    }
}

impl Server for TokioPhpServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn death(&self) -> Option<String> {
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        server.exited().map(describe_exit)
    }

    fn log_tail(&self) -> String {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        tail(&server.log(), 20)
    }
}

// === nginx + php-fpm ===

/// nginx in front of php-fpm, as Debian ships them (`nginx-light`, `php8.2-fpm`).
pub(crate) struct PhpFpm {
    /// The nginx binary.
    pub nginx: PathBuf,
    /// The php-fpm binary.
    pub php_fpm: PathBuf,
    /// `LOCPATH` for the PHP workers (the locales the tests ask for).
    pub locpath: Option<PathBuf>,
}

impl PhpFpm {
    /// From `PHPT_NGINX` and `PHPT_PHP_FPM`, with Debian's paths as defaults.
    pub(crate) fn from_env(locpath: Option<PathBuf>) -> Self {
        let path = |var: &str, default: &str| {
            PathBuf::from(std::env::var_os(var).unwrap_or_else(|| default.into()))
        };
        Self {
            nginx: path("PHPT_NGINX", "/usr/sbin/nginx"),
            php_fpm: path("PHPT_PHP_FPM", "/usr/sbin/php-fpm8.2"),
            locpath,
        }
    }
}

struct FpmServer {
    processes: Mutex<Vec<Child>>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Target for PhpFpm {
    fn name(&self) -> &'static str {
        "php-fpm"
    }

    fn start(
        &self,
        root: &Path,
        php_ini: &Path,
        workers: usize,
    ) -> Result<Box<dyn Server>, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let socket = dir.path().join("fpm.sock");
        let port = free_port()?;
        let fpm_conf = dir.path().join("php-fpm.conf");
        std::fs::write(
            &fpm_conf,
            format!(
                "[global]\nerror_log = {log}\ndaemonize = no\n\n[phpt]\nlisten = {socket}\n\
                 pm = static\npm.max_children = {workers}\ncatch_workers_output = yes\n{env}",
                log = dir.path().join("php-fpm.log").display(),
                socket = socket.display(),
                env = self
                    .locpath
                    .as_ref()
                    .map(|p| format!("env[LOCPATH] = {}\n", p.display()))
                    .unwrap_or_default(),
            ),
        )
        .map_err(|e| format!("php-fpm.conf: {e}"))?;
        let nginx_conf = dir.path().join("nginx.conf");
        let d = dir.path().display();
        std::fs::write(
            &nginx_conf,
            format!(
                "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_max_body_size 64m;\n\
                   client_body_temp_path {d}/body;\n  fastcgi_temp_path {d}/fastcgi;\n\
                   proxy_temp_path {d}/proxy;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                   server {{\n    listen 127.0.0.1:{port};\n    root {root};\n\
                     location ~ \\.php$ {{\n      include /etc/nginx/fastcgi_params;\n\
                       fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
                       fastcgi_read_timeout 90s;\n      fastcgi_pass unix:{socket};\n    }}\n  }}\n}}\n",
                root = root.display(),
                socket = socket.display(),
            ),
        )
        .map_err(|e| format!("nginx.conf: {e}"))?;
        let fpm = Command::new(&self.php_fpm)
            .args(["-F", "-R", "-c"])
            .arg(php_ini)
            .arg("-y")
            .arg(&fpm_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.php_fpm.display()))?;
        let mut processes = vec![fpm];
        wait_until(|| socket.exists(), "php-fpm's socket")?;
        let nginx = Command::new(&self.nginx)
            .arg("-c")
            .arg(&nginx_conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.nginx.display()))?;
        processes.push(nginx);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = FpmServer {
            processes: Mutex::new(processes),
            addr,
            dir,
        };
        wait_until(|| TcpStream::connect(addr).is_ok(), "nginx's port")?;
        Ok(Box::new(server))
    }
}

impl Server for FpmServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn death(&self) -> Option<String> {
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        processes
            .iter_mut()
            .find_map(|p| p.try_wait().ok().flatten())
            .map(describe_exit)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("php-fpm.log")).unwrap_or_default();
        tail(&log, 20)
    }
}

impl Drop for FpmServer {
    fn drop(&mut self) {
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        // nginx first, then php-fpm; each by its own PID.
        for child in processes.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// === helpers ===

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn wait_until(mut ready: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not appear within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (_, Some(signal)) => format!("killed by signal {signal}"),
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended".into(),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
