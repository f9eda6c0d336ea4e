//! The supervisor: php-fpm's process model under tokio_php's in-process HTTP.
//!
//! The master binds the listeners and starts PHP's module (MINIT) once, on its only thread,
//! so OPcache's shared memory exists once; then it forks `PROCESSES` serving processes.
//! Each starts its runtime and PHP worker threads and accepts on the inherited sockets: one
//! accept queue, so a process that dies loses no queued connection. The master stays
//! single-threaded and never runs a request. It restarts a process that ends: at once when
//! a request killed it, with a back-off (100 ms doubling to 5 s) when it keeps dying on its
//! own within a second of its start; and it logs the signal and the requests the process
//! was running, read from the [scoreboard](crate::scoreboard).
//!
//! SIGTERM / SIGINT / SIGQUIT go to every serving process, which drains as a single
//! process does (a second one exits at once); the master exits when they all have.
//!
//! SIGHUP is a graceful reload: the master keeps its listening sockets open and executes
//! its binary again (same pid, same arguments and environment). The new image reads the
//! configuration, php.ini and TLS files afresh, resolves `DOCUMENT_ROOT` again (a switched
//! `current` symlink takes effect), starts PHP with a new OPcache and forks a new
//! generation; once every new process accepts, the previous generation drains. Both
//! accept from the same queues meanwhile, so no connection is refused.
//!
//! A serving process receives SIGTERM when the master dies, so none is left behind. A
//! process that exits with status 2 could not start (its configuration): the master stops
//! the others and exits with 2.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::App;
use crate::config::Config;
use crate::ffi::process::{self, ChildEnd, Forked, WATCHED_SIGNALS};
use crate::metrics;
use crate::php::engine::{self, PhpEngine};
use crate::scoreboard::{self, Scoreboard};
use crate::server::Server;
use crate::standalone::{self, ENV_INHERITED_LISTENERS, Listeners};

/// The serving processes of the generation before a reload, which drain once the new one
/// accepts ("pid,pid").
const ENV_PREVIOUS_GENERATION: &str = "TOKIO_PHP_PREVIOUS_GENERATION";
/// How long a new generation may take to start before the previous one drains anyway.
const GENERATION_START: Duration = Duration::from_secs(30);

/// How often the master looks at its children when no signal comes.
const TICK: Duration = Duration::from_millis(200);
/// A process that ends sooner than this after its start counts as failing to start.
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// First wait before restarting a process that keeps dying quickly.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait before restarting a process that keeps dying quickly.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Exit status of a serving process that could not start (configuration).
const CANNOT_START: i32 = 2;

/// One serving process slot.
#[derive(Debug, Default)]
struct Child {
    pid: Option<i32>,
    started: Option<Instant>,
    /// Quick deaths in a row.
    failures: u32,
    /// When a process that died may be started again.
    restart_at: Option<Instant>,
}

struct Master {
    config: Config,
    server: Server,
    listeners: Option<Listeners>,
    engine: Option<PhpEngine>,
    board: &'static Scoreboard,
    children: Vec<Child>,
    stopping: bool,
    exit_code: u8,
    /// The previous generation's processes (after a reload), until they are told to drain.
    previous: Vec<i32>,
    started: Instant,
}

/// The previous generation's serving processes, when this image was started by a reload.
fn previous_generation() -> Vec<i32> {
    std::env::var(ENV_PREVIOUS_GENERATION)
        .map(|pids| pids.split(',').filter_map(|pid| pid.parse().ok()).collect())
        .unwrap_or_default()
}

/// Runs the master until every serving process has ended; the exit code.
pub(crate) fn run(config: Config, server: Server, listeners: Listeners) -> u8 {
    let processes = config.processes;
    let board = match scoreboard::install(processes) {
        Ok(board) => board,
        Err(err) => {
            tracing::error!(error = %err, "cannot map the supervisor's scoreboard");
            return 1;
        }
    };
    let jit = engine::jit_entries(config.opcache_jit, config.opcache_jit_buffer_size);
    let engine = match PhpEngine::start_here(config.php_ini.as_deref(), &jit) {
        Ok(engine) => engine,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return 2;
        }
    };
    if let Err(err) = process::block_signals(&WATCHED_SIGNALS) {
        tracing::error!(error = %err, "cannot take over the process's signals");
        return 1;
    }
    tracing::info!(processes, master = process::pid(), "supervisor started");
    let mut master = Master {
        config,
        server,
        listeners: Some(listeners),
        engine: Some(engine),
        board,
        children: (0..processes).map(|_| Child::default()).collect(),
        stopping: false,
        exit_code: 0,
        previous: previous_generation(),
        started: Instant::now(),
    };
    for index in 0..processes {
        master.start(index);
    }
    master.watch()
}

impl Master {
    /// Forks serving process number `index`.
    fn start(&mut self, index: usize) {
        let master = process::pid();
        match process::fork() {
            Ok(Forked::Child) => {
                let code = self.serve_as_child(index, master);
                std::process::exit(i32::from(code));
            }
            Ok(Forked::Parent(pid)) => {
                self.board.set_pid(index, pid);
                let child = &mut self.children[index];
                child.pid = Some(pid);
                child.started = Some(Instant::now());
                child.restart_at = None;
                tracing::debug!(process = index, pid, "serving process started");
            }
            Err(err) => {
                tracing::error!(process = index, error = %err, "cannot fork a serving process; trying again");
                self.children[index].restart_at = Some(Instant::now() + BACKOFF_MAX);
            }
        }
    }

    /// In the forked child: serve as one process does, until a signal.
    fn serve_as_child(&mut self, index: usize, master: i32) -> u8 {
        if !process::die_with_parent(process::SIGTERM, master) {
            return 1;
        }
        if let Err(err) = process::unblock_signals(&WATCHED_SIGNALS) {
            tracing::error!(error = %err, "cannot restore the signal mask");
            return 1;
        }
        scoreboard::enter_process(index);
        let Some(engine) = self.engine.take() else {
            return 1;
        };
        let config = self.config.clone();
        let server = self.server.clone();
        let Some(listeners) = self.listeners.take() else {
            return 1;
        };
        let runtime = match standalone::runtime() {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
        runtime.block_on(async move {
            if config.internal_addr.is_some() {
                metrics::install_recorder();
            }
            match App::start_with_engine(config, engine) {
                Ok(app) => standalone::serve(server, listeners, app).await,
                Err(err) => {
                    tracing::error!("cannot start: {err}");
                    CANNOT_START as u8
                }
            }
        })
    }

    /// The master's loop: signals, ended children, restarts.
    fn watch(mut self) -> u8 {
        loop {
            match process::wait_for_signal(&WATCHED_SIGNALS, TICK) {
                Some(signal @ (process::SIGTERM | process::SIGINT | process::SIGQUIT)) => {
                    if !self.stopping {
                        tracing::info!("supervisor: stopping every serving process");
                    }
                    self.stopping = true;
                    // The same signal: a second one makes them exit at once, with its code.
                    self.signal_all(signal);
                }
                Some(process::SIGHUP) if !self.stopping => self.reload(),
                _ => {}
            }
            self.retire_previous_generation();
            while let Some((pid, end)) = process::reap_child() {
                self.ended(pid, end);
            }
            if self.stopping {
                if self.children.iter().all(|child| child.pid.is_none()) {
                    tracing::info!("supervisor: every serving process has ended");
                    return self.exit_code;
                }
                continue;
            }
            let now = Instant::now();
            for index in 0..self.children.len() {
                let child = &self.children[index];
                if child.pid.is_none() && child.restart_at.is_some_and(|at| at <= now) {
                    self.board.count_restart();
                    self.start(index);
                }
            }
        }
    }

    /// SIGHUP: executes the binary again over the same listeners (see the module docs).
    /// On failure the current generation keeps serving.
    fn reload(&mut self) {
        let Some(listeners) = &self.listeners else {
            return;
        };
        // What the new image will read, checked first: a certificate pair that does not
        // load (or a document root that is gone) keeps the current generation serving.
        let checked = self
            .config
            .validate()
            .map_err(|err| err.to_string())
            .and_then(|()| Server::from_config(&self.config).map_err(|err| err.to_string()));
        if let Err(err) = checked {
            tracing::error!("reload refused: {err}; the current processes keep serving");
            return;
        }
        let fds = match listeners.keep_across_exec() {
            Ok(fds) => fds,
            Err(err) => {
                tracing::error!(error = %err, "reload failed: cannot keep the listeners open; the current processes keep serving");
                return;
            }
        };
        let generation: Vec<String> = self
            .children
            .iter()
            .filter_map(|child| child.pid)
            .chain(self.previous.iter().copied())
            .map(|pid| pid.to_string())
            .collect();
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(err) => {
                tracing::error!(error = %err, "reload failed: cannot find the binary; the current processes keep serving");
                return;
            }
        };
        tracing::info!(binary = %exe.display(), draining_after_start = ?generation, "reload (SIGHUP): starting a new generation");
        let err = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(ENV_INHERITED_LISTENERS, fds)
            .env(ENV_PREVIOUS_GENERATION, generation.join(","))
            .exec();
        tracing::error!(binary = %exe.display(), error = %err, "reload failed: cannot execute the binary; the current processes keep serving");
    }

    /// After a reload: tells the previous generation to drain once every new process
    /// accepts (or the new generation took too long, or the master stops).
    fn retire_previous_generation(&mut self) {
        if self.previous.is_empty() {
            return;
        }
        let all_ready = (0..self.children.len()).all(|index| self.board.ready(index));
        if !(all_ready || self.stopping || self.started.elapsed() > GENERATION_START) {
            return;
        }
        tracing::info!(processes = ?self.previous, "reload: the new generation serves; the previous one drains");
        for pid in self.previous.drain(..) {
            if let Err(err) = process::send_signal(pid, process::SIGTERM) {
                tracing::debug!(pid, error = %err, "previous serving process already gone");
            }
        }
    }

    fn signal_all(&self, signal: i32) {
        for pid in self.children.iter().filter_map(|child| child.pid) {
            if let Err(err) = process::send_signal(pid, signal) {
                tracing::debug!(pid, error = %err, "serving process not signalled");
            }
        }
    }

    /// Process `pid` ended: log it, and schedule its restart.
    fn ended(&mut self, pid: i32, end: ChildEnd) {
        let Some(index) = self.children.iter().position(|c| c.pid == Some(pid)) else {
            return;
        };
        let running = self.board.running(index);
        self.board.set_pid(index, 0);
        let child = &mut self.children[index];
        child.pid = None;
        let lived = child
            .started
            .take()
            .map_or(Duration::ZERO, |at| at.elapsed());
        if self.stopping {
            tracing::debug!(process = index, pid, ?end, "serving process ended");
            // The master exits as its processes did (130 after a second Ctrl-C).
            if let ChildEnd::Exited(code) = end
                && code != 0
                && self.exit_code == 0
            {
                self.exit_code = u8::try_from(code).unwrap_or(1);
            }
            return;
        }
        let requests: Vec<String> = running
            .iter()
            .map(|r| format!("{} ({} ms)", r.what, r.for_ms))
            .collect();
        match end {
            ChildEnd::Exited(CANNOT_START) if !self.previous.is_empty() => {
                tracing::error!(
                    process = index,
                    pid,
                    "reload: the new generation cannot start (see its error above); the previous one keeps serving: fix it and send SIGHUP again"
                );
                return;
            }
            ChildEnd::Exited(CANNOT_START) => {
                tracing::error!(
                    process = index,
                    pid,
                    "serving process could not start; stopping (see its error above)"
                );
                self.exit_code = CANNOT_START as u8;
                self.stopping = true;
                self.signal_all(process::SIGTERM);
                return;
            }
            ChildEnd::Signaled(signal) => tracing::error!(
                process = index,
                pid,
                signal = process::signal_name(signal),
                running = ?requests,
                lived_ms = lived.as_millis() as u64,
                "serving process crashed; restarting it (the requests it was running failed)"
            ),
            ChildEnd::Exited(status) => tracing::warn!(
                process = index,
                pid,
                status,
                running = ?requests,
                "serving process exited; restarting it"
            ),
        }
        // A process killed by the request it ran is replaced at once; one that dies on its
        // own soon after it starts (it cannot start) waits longer each time.
        if lived < QUICK_DEATH && running.is_empty() {
            child.failures = child.failures.saturating_add(1);
        } else {
            child.failures = 0;
        }
        let wait = match child.failures {
            0 | 1 => Duration::ZERO,
            n => (BACKOFF_MIN * 2u32.saturating_pow(n - 2)).min(BACKOFF_MAX),
        };
        if !wait.is_zero() {
            tracing::warn!(
                process = index,
                wait_ms = wait.as_millis() as u64,
                "serving process keeps dying; waiting before the next start"
            );
        }
        child.restart_at = Some(Instant::now() + wait);
    }
}
