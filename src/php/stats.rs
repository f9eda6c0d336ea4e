//! What a PHP pool counts, and how `/metrics` shows it: the figures both pools (classic and
//! worker mode) share, the panic-safe busy count, and their Prometheus text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::pool::PoolHandle;
use crate::metrics::Histogram;
use crate::scoreboard::{self, Counter};

/// Figures about the pool, shared with whoever reports them (the internal server's
/// `/health` and `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct PoolStats {
    /// Workers running a request now.
    pub busy: AtomicUsize,
    /// Requests finished.
    pub served: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Scripts that ended in a fatal error (uncaught exception, memory or time exhausted,
    /// parse error…): PHP answered 500 unless output had already gone out.
    pub fatal_errors: AtomicU64,
    /// Scripts ended by `max_execution_time` (also counted in `fatal_errors`).
    pub timeouts: AtomicU64,
    /// Times a worker rebuilt its PHP context after a panic on the Rust side of a request.
    pub worker_restarts: AtomicU64,
    /// Time PHP spent running each request (request startup to shutdown), in seconds.
    pub execution_seconds: Histogram,
    /// Time each request waited in the queue before a worker took it, in seconds.
    pub queue_wait_seconds: Histogram,
    /// Requests answered 503 because they waited longer than `MAX_WAIT_TIME`.
    pub wait_timeouts: AtomicU64,
    /// Worker mode: times a worker script was started again (it ended, failed, reached
    /// WORKER_MAX_REQUESTS, or WATCH saw a change).
    pub script_restarts: AtomicU64,
    /// Worker mode: requests served by each worker thread, by its number.
    pub requests_per_worker: Vec<AtomicU64>,
    /// The classic pool: its counters are mirrored on the supervisor's scoreboard, so
    /// `/metrics` and `/health` show them summed over every serving process.
    pub on_scoreboard: bool,
}

impl PoolStats {
    /// Counts `counter` here and, for the classic pool under a supervisor, on the board.
    pub(crate) fn count(&self, counter: Counter) {
        self.local(counter).fetch_add(1, Ordering::Relaxed);
        if self.on_scoreboard {
            scoreboard::count(counter);
        }
    }

    /// `counter` as `/metrics` shows it: summed over every serving process under a
    /// supervisor (classic pool), else this process's.
    pub(crate) fn total(&self, counter: Counter) -> u64 {
        if self.on_scoreboard
            && let Some(board) = scoreboard::board()
        {
            return board.total(counter);
        }
        self.local(counter).load(Ordering::Relaxed)
    }

    fn local(&self, counter: Counter) -> &AtomicU64 {
        match counter {
            Counter::Served => &self.served,
            Counter::Rejected => &self.rejected,
            Counter::FatalErrors => &self.fatal_errors,
            Counter::Timeouts => &self.timeouts,
        }
    }

    /// Busy workers as `/metrics` shows them (summed over processes likewise).
    pub(crate) fn total_busy(&self) -> u64 {
        match scoreboard::board() {
            Some(board) if self.on_scoreboard => board.total_busy(),
            _ => self.busy.load(Ordering::Relaxed) as u64,
        }
    }
}

/// Counts a worker as busy while it lives, panics included.
pub(crate) struct BusyGuard(Arc<PoolStats>);

impl BusyGuard {
    pub(crate) fn new(stats: Arc<PoolStats>) -> Self {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolHandle {
    /// Worker threads as `/metrics` and `/health` show them: of every serving process under
    /// a supervisor (classic pool), else of this one.
    pub(crate) fn total_workers(&self) -> usize {
        match scoreboard::board() {
            Some(board) if self.stats().on_scoreboard => self.workers() * board.processes(),
            _ => self.workers(),
        }
    }

    /// Appends the PHP pool's metrics, in Prometheus text format, to `out`.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let pool = self;
        let stats = pool.stats();
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        gauge(
            out,
            "tokio_php_workers",
            "PHP worker threads (of every serving process).",
            pool.total_workers() as u64,
        );
        gauge(
            out,
            "tokio_php_busy_workers",
            "PHP workers running a request now.",
            stats.total_busy(),
        );
        gauge(
            out,
            "tokio_php_queue_depth",
            "Requests waiting for a PHP worker.",
            pool.queue_depth() as u64,
        );
        counter(
            out,
            "tokio_php_requests_served_total",
            "Requests PHP finished.",
            stats.total(Counter::Served),
        );
        counter(
            out,
            "tokio_php_rejected_total",
            "Requests refused with 503 because the PHP queue was full.",
            stats.total(Counter::Rejected),
        );
        counter(
            out,
            "tokio_php_fatal_errors_total",
            "PHP scripts that ended in a fatal error (500 unless output had been sent).",
            stats.total(Counter::FatalErrors),
        );
        counter(
            out,
            "tokio_php_timeouts_total",
            "PHP scripts ended by max_execution_time.",
            stats.total(Counter::Timeouts),
        );
        counter(
            out,
            "tokio_php_worker_restarts_total",
            "PHP workers restarted after a panic.",
            stats.worker_restarts.load(Ordering::Relaxed),
        );
        counter(
            out,
            "tokio_php_queue_wait_timeouts_total",
            "Requests refused with 503 after waiting MAX_WAIT_TIME for a PHP worker.",
            stats.wait_timeouts.load(Ordering::Relaxed),
        );
        stats.execution_seconds.render(
            out,
            "tokio_php_execution_duration_seconds",
            "Time PHP spent running a request.",
        );
        stats.queue_wait_seconds.render(
            out,
            "tokio_php_queue_wait_seconds",
            "Time a request waited in the queue before a PHP worker took it.",
        );
    }

    /// Appends the worker-mode pool's metrics (`WORKER_SCRIPT`), in Prometheus text format.
    pub(crate) fn render_worker_mode_metrics(&self, out: &mut String) {
        let pool = self;
        let stats = pool.stats();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        family(
            "tokio_php_worker_mode_workers",
            "gauge",
            "Threads running the worker script.",
            &[(String::new(), pool.workers() as u64)],
        );
        family(
            "tokio_php_worker_mode_busy_workers",
            "gauge",
            "Worker-mode threads handling a request now.",
            &[(String::new(), stats.busy.load(Ordering::Relaxed) as u64)],
        );
        family(
            "tokio_php_worker_mode_queue_depth",
            "gauge",
            "Requests waiting for a worker script.",
            &[(String::new(), pool.queue_depth() as u64)],
        );
        family(
            "tokio_php_worker_mode_restarts_total",
            "counter",
            "Worker scripts started again (ended, failed, WORKER_MAX_REQUESTS, WATCH).",
            &[(String::new(), load(&stats.script_restarts))],
        );
        let per_worker: Vec<(String, u64)> = stats
            .requests_per_worker
            .iter()
            .enumerate()
            .map(|(id, count)| (format!("{{worker=\"{id}\"}}"), load(count)))
            .collect();
        family(
            "tokio_php_worker_mode_requests_total",
            "counter",
            "Requests served by each worker-mode thread.",
            &per_worker,
        );
        family(
            "tokio_php_worker_mode_fatal_errors_total",
            "counter",
            "Worker-mode requests that ended in a fatal error or an uncaught exception.",
            &[(String::new(), load(&stats.fatal_errors))],
        );
        family(
            "tokio_php_worker_mode_timeouts_total",
            "counter",
            "Worker-mode requests ended by max_execution_time or REQUEST_TIMEOUT.",
            &[(String::new(), load(&stats.timeouts))],
        );
        family(
            "tokio_php_worker_mode_queue_wait_timeouts_total",
            "counter",
            "Worker-mode requests refused with 503 after waiting MAX_WAIT_TIME.",
            &[(String::new(), load(&stats.wait_timeouts))],
        );
        stats.execution_seconds.render(
            out,
            "tokio_php_worker_mode_execution_duration_seconds",
            "Time a worker script spent handling a request.",
        );
        stats.queue_wait_seconds.render(
            out,
            "tokio_php_worker_mode_queue_wait_seconds",
            "Time a request waited before a worker script took it.",
        );
    }
}
