//! Worker mode: a pool of threads that each boot a PHP application once (the worker
//! script) and serve many requests from it, as FrankenPHP's worker mode does.
//!
//! Each thread runs `WORKER_SCRIPT` as a request of its own. The script calls
//! `tokio_handle_request($handler)` in a loop; each call takes the next [`Job`] from this
//! pool's queue, gives PHP that request's superglobals and output, runs the handler and ends
//! the response. The call returns false when the pool stops, when `WORKER_MAX_REQUESTS` is
//! reached or when `WATCH` saw a PHP file change; the script then ends and, unless the pool
//! is stopping, starts again. A script that dies (a fatal error or `exit()` in a handler)
//! is started again too; one that keeps dying before it serves a request is started again
//! after a back-off (100 ms doubling to 5 s).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::job::{Job, RunningJob, WorkerSlot};
use super::pool::{PoolHandle, WORKER_STACK_SIZE};
use super::stats::PoolStats;
use crate::ffi::{
    self, ExecOutcome, ExecRequest, Interrupter, PhpLogLevel, SapiHandler, ScriptEnd, ServerVars,
    ThreadGuard, WorkerHost,
};

/// First wait before a worker script that failed before serving a request starts again.
pub(crate) const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two starts of a failing worker script.
pub(crate) const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often `WATCH` looks at the PHP files' modification times.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How the worker-mode pool runs.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSettings {
    /// The worker script (absolute).
    pub script: PathBuf,
    /// The canonical document root, for `$_SERVER['DOCUMENT_ROOT']`.
    pub document_root: PathBuf,
    /// Threads.
    pub count: usize,
    /// Requests per script run before it is restarted (0 = no limit).
    pub max_requests: u64,
    /// Queue capacity.
    pub capacity: usize,
    /// Restart the scripts when a PHP file under the document root changes.
    pub watch: bool,
    /// `$_SERVER['SERVER_SOFTWARE']` while the script boots.
    pub server_software: String,
}

/// The running worker-mode threads.
#[derive(Debug)]
pub(crate) struct WorkerModePool {
    handle: PoolHandle,
    stop: Option<Sender<()>>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
}

/// What every worker thread shares.
struct Shared {
    settings: WorkerSettings,
    stats: Arc<PoolStats>,
    /// Bumped to make every worker script start again (WATCH).
    generation: AtomicU64,
}

impl WorkerModePool {
    /// Starts `settings.count` threads running the worker script. PHP must be started.
    pub(crate) fn start(settings: WorkerSettings) -> std::io::Result<Self> {
        let count = settings.count;
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(settings.capacity.max(1));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let stats = Arc::new(PoolStats {
            requests_per_worker: (0..count).map(|_| AtomicU64::new(0)).collect(),
            ..PoolStats::default()
        });
        let watch = settings.watch;
        let shared = Arc::new(Shared {
            settings,
            stats: Arc::clone(&stats),
            generation: AtomicU64::new(0),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(count);
        for id in 0..count {
            let jobs = jobs_rx.clone();
            let stop = stop_rx.clone();
            let shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name(format!("php-worker-mode-{id}"))
                .stack_size(WORKER_STACK_SIZE)
                .spawn(move || worker_thread(id, &shared, jobs, stop))?;
            threads.push(thread);
        }
        let watcher = if watch {
            let shared = Arc::clone(&shared);
            let stopping = Arc::clone(&stopping);
            // The first look is taken before the pool serves: a change made right after
            // the server starts is a change.
            let roots = watch_roots(&shared.settings);
            let first = fingerprint(&roots);
            Some(
                std::thread::Builder::new()
                    .name("php-worker-watch".into())
                    .spawn(move || watch_loop(&shared, &roots, first, &stopping))?,
            )
        } else {
            None
        };
        Ok(Self {
            handle: PoolHandle::new(jobs_tx, count, stats),
            stop: Some(stop_tx),
            stopping,
            threads,
            watcher,
        })
    }

    /// A handle that queues requests for the worker scripts.
    pub(crate) fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// Lets every worker serve the queued requests and leave its loop, then ends the
    /// threads (each script ends normally: shutdown functions and destructors run).
    pub(crate) fn shutdown(mut self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.take();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a PHP worker-mode thread panicked while shutting down");
            }
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        tracing::info!("worker scripts stopped");
    }
}

// === the worker thread ===

/// Why a worker script's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopEnd {
    /// The pool is stopping.
    Stop,
    /// WORKER_MAX_REQUESTS reached.
    MaxRequests,
    /// WATCH saw a change.
    Reload,
}

fn worker_thread(id: usize, shared: &Shared, jobs: Receiver<Job>, stop: Receiver<()>) {
    let php = ThreadGuard::new();
    let script = shared.settings.script.display().to_string();
    let boot = match BootRequest::new(&shared.settings) {
        Ok(boot) => boot,
        Err(err) => {
            tracing::error!(worker = id, script, error = %err, "worker script cannot be run");
            return;
        }
    };
    let mut backoff = Duration::ZERO;
    let mut runs: u64 = 0;
    loop {
        let mut host = Host {
            id,
            shared,
            jobs: &jobs,
            stop: &stop,
            interrupter: php.interrupter(),
            generation: shared.generation.load(Ordering::Acquire),
            served: 0,
            stopping: false,
            ended: None,
        };
        let mut boot_handler = BootHandler {
            worker: id,
            workers: shared.settings.count,
        };
        if runs > 0 {
            shared.stats.script_restarts.fetch_add(1, Ordering::Relaxed);
        }
        runs += 1;
        tracing::debug!(worker = id, script, "worker script starting");
        let outcome = php.run_worker(&boot.exec(), &mut boot_handler, &mut host);
        let (served, ended, stopping) = (host.served, host.ended, host.stopping);
        if ended == Some(LoopEnd::Stop) || stopping || stop_requested(&stop) {
            break;
        }
        match ended {
            Some(LoopEnd::MaxRequests) => {
                tracing::info!(
                    worker = id,
                    served,
                    "worker script reached WORKER_MAX_REQUESTS; restarting it"
                );
                backoff = Duration::ZERO;
                continue;
            }
            Some(LoopEnd::Reload) => {
                tracing::info!(
                    worker = id,
                    "PHP files changed (WATCH); restarting the worker script"
                );
                backoff = Duration::ZERO;
                continue;
            }
            Some(LoopEnd::Stop) | None => {}
        }
        let how = match outcome {
            ExecOutcome::StartupFailed => "PHP could not start its request",
            ExecOutcome::Done(end) if end.timed_out => "it exceeded max_execution_time",
            ExecOutcome::Done(end) if end.fatal => "it ended in a fatal error",
            ExecOutcome::Done(_) => "it ended (exit(), or it left its tokio_handle_request() loop)",
        };
        if served > 0 {
            backoff = Duration::ZERO;
            tracing::warn!(
                worker = id,
                script,
                served,
                "worker script stopped: {how}; restarting it"
            );
            continue;
        }
        backoff = (backoff * 2).clamp(RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX);
        tracing::error!(
            worker = id,
            script,
            retry_in_ms = backoff.as_millis() as u64,
            "worker script stopped before serving a request: {how}; see the PHP log lines above"
        );
        match stop.recv_timeout(backoff) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    tracing::debug!(worker = id, "PHP worker-mode thread stopped");
}

/// True once the pool's stop channel is closed.
fn stop_requested(stop: &Receiver<()>) -> bool {
    matches!(
        stop.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected) | Ok(())
    )
}

/// Feeds one run of a worker script.
struct Host<'a> {
    id: usize,
    shared: &'a Shared,
    jobs: &'a Receiver<Job>,
    stop: &'a Receiver<()>,
    interrupter: Interrupter,
    generation: u64,
    served: u64,
    stopping: bool,
    ended: Option<LoopEnd>,
}

impl Host<'_> {
    /// The next job to run, or why the loop ends.
    fn take(&mut self) -> Result<Job, LoopEnd> {
        let max = self.shared.settings.max_requests;
        if max > 0 && self.served >= max {
            return Err(LoopEnd::MaxRequests);
        }
        loop {
            if self.shared.generation.load(Ordering::Acquire) != self.generation {
                return Err(LoopEnd::Reload);
            }
            if self.stopping {
                // Serve what was queued before the stop, then leave.
                return self.jobs.try_recv().map_err(|_| LoopEnd::Stop);
            }
            crossbeam_channel::select! {
                recv(self.jobs) -> job => match job {
                    Ok(job) => return Ok(job),
                    Err(_) => return Err(LoopEnd::Stop),
                },
                recv(self.stop) -> _ => self.stopping = true,
                default(WATCH_INTERVAL) => {}
            }
        }
    }
}

impl WorkerHost for Host<'_> {
    type Job = RunningJob;

    fn next(&mut self) -> Option<RunningJob> {
        loop {
            let job = match self.take() {
                Ok(job) => job,
                Err(end) => {
                    self.ended = Some(end);
                    return None;
                }
            };
            let slot = WorkerSlot {
                id: self.id,
                workers: self.shared.settings.count,
            };
            match RunningJob::start(job, slot, &self.shared.stats, &self.interrupter) {
                Some(job) => return Some(job),
                None => continue,
            }
        }
    }

    fn end(&mut self, job: RunningJob, end: ScriptEnd) {
        self.served += 1;
        job.finish(ExecOutcome::Done(end));
    }
}

// === the script's own request ===

/// The request a worker script runs as between requests: GET of the script, with the
/// `$_SERVER` entries that describe the server, and no client.
struct BootRequest {
    method: CString,
    request_uri: CString,
    query_string: CString,
    script_filename: CString,
    vars: ServerVars,
    started: f64,
}

impl BootRequest {
    fn new(settings: &WorkerSettings) -> Result<Self, std::ffi::NulError> {
        let script = settings.script.to_string_lossy().into_owned();
        let root = settings.document_root.to_string_lossy().into_owned();
        let script_name = script_name(&settings.document_root, &settings.script);
        let mut vars = ServerVars::with_capacity(10);
        // The script learns it is a worker script, under FrankenPHP's name too: Symfony
        // Runtime's FrankenPHP runners look for it before they loop.
        vars.push(b"TOKIO_PHP_WORKER", b"1");
        vars.push(b"FRANKENPHP_WORKER", b"1");
        vars.push(b"SCRIPT_FILENAME", script.as_bytes());
        vars.push(b"SCRIPT_NAME", script_name.as_bytes());
        vars.push(b"PHP_SELF", script_name.as_bytes());
        vars.push(b"DOCUMENT_ROOT", root.as_bytes());
        vars.push(b"SERVER_SOFTWARE", settings.server_software.as_bytes());
        vars.push(b"GATEWAY_INTERFACE", b"CGI/1.1");
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Ok(Self {
            method: CString::new("GET")?,
            request_uri: CString::new(script_name)?,
            query_string: CString::new("")?,
            script_filename: CString::new(script)?,
            vars,
            started,
        })
    }

    fn exec(&self) -> ExecRequest<'_> {
        ExecRequest {
            method: &self.method,
            request_uri: &self.request_uri,
            query_string: &self.query_string,
            script_filename: &self.script_filename,
            content_type: None,
            content_length: None,
            cookie: None,
            authorization: None,
            proto_num: 1001,
            headers_only: false,
            request_time: self.started,
            server_vars: &self.vars,
        }
    }
}

/// The worker script's URL path: from the document root when it lies under it, else its
/// file name.
pub(crate) fn script_name(root: &Path, script: &Path) -> String {
    match script.strip_prefix(root) {
        Ok(relative) => format!("/{}", relative.to_string_lossy()),
        Err(_) => format!(
            "/{}",
            script
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    }
}

/// Where a worker script's output and log lines go outside a request: output is dropped
/// (there is no client), log lines go to the server's log.
struct BootHandler {
    worker: usize,
    workers: usize,
}

impl SapiHandler for BootHandler {
    fn write(&mut self, data: &[u8]) -> bool {
        if !data.is_empty() {
            tracing::debug!(
                worker = self.worker,
                bytes = data.len(),
                "worker script output outside a request discarded"
            );
        }
        true
    }

    fn flush(&mut self) {}

    fn header(&mut self, _line: &[u8]) {}

    fn send_headers(&mut self, _status: i32, _status_line: Option<&[u8]>) {}

    fn read_post(&mut self, _buf: &mut [u8]) -> usize {
        0
    }

    fn log(&mut self, level: PhpLogLevel, message: &str) {
        ffi::log_php(level, message, Some("worker script"));
    }

    fn request_id(&self) -> &str {
        ""
    }

    fn worker_id(&self) -> i64 {
        i64::try_from(self.worker).unwrap_or(i64::MAX)
    }

    fn workers(&self) -> i64 {
        i64::try_from(self.workers).unwrap_or(i64::MAX)
    }

    fn finish_request(&mut self) -> bool {
        false
    }

    fn heartbeat(&mut self, _seconds: u64) -> bool {
        false
    }

    fn informational_header(&mut self, _line: &[u8]) {}

    fn send_informational(&mut self, _status: u16) -> bool {
        false
    }
}

// === WATCH ===

/// Polls the modification times of the PHP files under the document root (and the worker
/// script's directory) and restarts every worker script when one changes.
/// The directories WATCH looks at: the document root, and the worker script's own
/// directory when it lies outside.
fn watch_roots(settings: &WorkerSettings) -> Vec<PathBuf> {
    let mut roots = vec![settings.document_root.clone()];
    if let Some(dir) = settings.script.parent()
        && !dir.starts_with(&settings.document_root)
    {
        roots.push(dir.to_path_buf());
    }
    roots
}

fn watch_loop(shared: &Shared, roots: &[PathBuf], first: u64, stopping: &AtomicBool) {
    let mut last = first;
    tracing::info!(roots = ?roots, "WATCH: worker scripts restart when a PHP file changes");
    while !stopping.load(Ordering::Acquire) {
        std::thread::sleep(WATCH_INTERVAL);
        let now = fingerprint(roots);
        if now != last {
            last = now;
            shared.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!("WATCH: a PHP file changed; restarting the worker scripts");
        }
    }
}

/// A digest of every `.php` file's path, size and modification time under `roots`
/// (hidden directories and `vendor/` skipped, at most 20 000 files). Symbolic links are
/// followed, as PHP follows them when it includes a file (Debian's WordPress and MediaWiki
/// link their `wp-content/` and extensions in): a linked file counts with its target's size
/// and time, a linked directory is walked once however many links lead to it.
fn fingerprint(roots: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    // (device, inode) of every directory walked: a link back up the tree is not a loop.
    let mut walked = std::collections::HashSet::new();
    let mut files = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if !walked.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let Ok(mut kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            // A link stands for its target (a dangling one for nothing); other entries are
            // known from the directory listing, and only PHP files are stat'ed.
            let mut target = None;
            if kind.is_symlink() {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                kind = meta.file_type();
                target = Some(meta);
            }
            if kind.is_dir() {
                if name != "vendor" && name != "node_modules" {
                    stack.push(path);
                }
            } else if name.ends_with(".php")
                && let Some(meta) = target.or_else(|| entry.metadata().ok())
            {
                files += 1;
                if files > 20_000 {
                    return hasher.finish();
                }
                path.hash(&mut hasher);
                meta.len().hash(&mut hasher);
                meta.modified().ok().hash(&mut hasher);
            }
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_come_from_the_root() {
        assert_eq!(
            script_name(
                Path::new("/srv/public"),
                Path::new("/srv/public/worker.php")
            ),
            "/worker.php"
        );
        assert_eq!(
            script_name(Path::new("/srv/public"), Path::new("/srv/bin/worker.php")),
            "/worker.php"
        );
    }

    #[test]
    fn a_changed_php_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let roots = vec![dir.path().to_path_buf()];
        std::fs::write(dir.path().join("a.php"), "<?php 1;").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let first = fingerprint(&roots);
        std::fs::write(dir.path().join("notes.txt"), "changed").unwrap();
        assert_eq!(fingerprint(&roots), first, "only PHP files count");
        std::fs::write(dir.path().join("a.php"), "<?php 22;").unwrap();
        assert_ne!(fingerprint(&roots), first);
    }

    #[test]
    fn files_behind_symbolic_links_count() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(elsewhere.path().join("plugins")).unwrap();
        std::fs::write(elsewhere.path().join("plugins/p.php"), "<?php 1;").unwrap();
        std::fs::write(elsewhere.path().join("config.php"), "<?php 1;").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("plugins"),
            root.path().join("plugins"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("config.php"),
            root.path().join("config.php"),
        )
        .unwrap();
        // A link back up the tree and a dangling one: walked once, skipped.
        std::os::unix::fs::symlink(root.path(), root.path().join("loop")).unwrap();
        std::os::unix::fs::symlink(root.path().join("gone"), root.path().join("gone.php")).unwrap();
        let roots = vec![root.path().to_path_buf()];
        let first = fingerprint(&roots);
        assert_eq!(
            fingerprint(&roots),
            first,
            "the same tree gives the same digest"
        );
        std::fs::write(elsewhere.path().join("plugins/p.php"), "<?php 22;").unwrap();
        let second = fingerprint(&roots);
        assert_ne!(second, first, "a change inside a linked directory counts");
        std::fs::write(elsewhere.path().join("config.php"), "<?php 333;").unwrap();
        assert_ne!(
            fingerprint(&roots),
            second,
            "a change to a linked file's target counts"
        );
    }
}
