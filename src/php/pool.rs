//! The PHP worker pool: a fixed set of threads, each owning its PHP (TSRM) context for its
//! whole life, fed from one bounded queue. A full queue is refused at once (the service
//! answers 503) rather than waited on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::body::RequestBody;
use super::output::OutputWriter;
use super::request::PhpRequest;
use super::response::ResponseStart;
use crate::ffi::{ExecOutcome, ThreadGuard};
use crate::metrics::Histogram;

/// Stack size of a worker thread: PHP recursion and large arrays need room.
pub const WORKER_STACK_SIZE: usize = 64 * 1024 * 1024;

/// One request waiting for a worker.
#[derive(Debug)]
pub struct Job {
    /// The request.
    pub request: PhpRequest,
    /// Its body.
    pub body: RequestBody,
    /// Where the response goes.
    pub respond: oneshot::Sender<ResponseStart>,
    /// When it was queued.
    pub queued_at: Instant,
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum SubmitError {
    /// Every worker is busy and the queue is full: 503 with Retry-After.
    QueueFull(Box<Job>),
    /// The pool is shutting down: 503.
    ShuttingDown(Box<Job>),
}

/// Figures about the pool, shared with whoever reports them (the internal server's
/// `/health` and `/metrics`).
#[derive(Debug, Default)]
pub struct PoolStats {
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
}

/// A handle that queues requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    jobs: Sender<Job>,
    workers: usize,
    stats: Arc<PoolStats>,
}

impl PoolHandle {
    /// Queues `job`, or gives it back when the queue is full or closed.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(SubmitError::QueueFull(Box::new(job)))
            }
            Err(TrySendError::Disconnected(job)) => Err(SubmitError::ShuttingDown(Box::new(job))),
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Requests waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.jobs.len()
    }

    /// The pool's counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }
}

/// The running worker threads.
#[derive(Debug)]
pub struct WorkerPool {
    handle: PoolHandle,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `workers` threads with a queue of `capacity`. PHP must be started.
    pub fn start(workers: usize, capacity: usize) -> std::io::Result<Self> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(capacity.max(1));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let stats = Arc::new(PoolStats::default());
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let jobs = jobs_rx.clone();
            let stop = stop_rx.clone();
            let stats = Arc::clone(&stats);
            let thread = std::thread::Builder::new()
                .name(format!("php-worker-{id}"))
                .stack_size(WORKER_STACK_SIZE)
                .spawn(move || worker_main(id, &jobs, &stop, &stats))?;
            threads.push(thread);
        }
        Ok(Self {
            handle: PoolHandle {
                jobs: jobs_tx,
                workers,
                stats,
            },
            stop: Some(stop_tx),
            threads,
        })
    }

    /// A handle that queues requests.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// Lets every worker finish the queued requests, then ends the threads.
    pub fn shutdown(mut self) {
        self.stop.take();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a PHP worker thread panicked while shutting down");
            }
        }
    }
}

fn worker_main(id: usize, jobs: &Receiver<Job>, stop: &Receiver<()>, stats: &PoolStats) {
    let mut php = ThreadGuard::new();
    tracing::debug!(worker = id, "PHP worker started");
    loop {
        crossbeam_channel::select! {
            recv(jobs) -> job => match job {
                Ok(job) => php = supervised(php, id, job, stats),
                Err(_) => break,
            },
            recv(stop) -> _ => {
                while let Ok(job) = jobs.try_recv() {
                    php = supervised(php, id, job, stats);
                }
                break;
            }
        }
    }
    tracing::debug!(worker = id, "PHP worker stopped");
}

/// Runs `job`; if the Rust side of it panics (PHP's callbacks already catch their own),
/// the request's channel is dropped (the client gets 500) and the worker starts over with
/// a fresh PHP context.
fn supervised(php: ThreadGuard, id: usize, job: Job, stats: &PoolStats) -> ThreadGuard {
    let busy = BusyGuard::new(stats);
    match catch_unwind(AssertUnwindSafe(|| run(&php, id, job, stats))) {
        Ok(()) => {
            drop(busy);
            php
        }
        Err(_) => {
            drop(busy);
            tracing::error!(
                worker = id,
                "PHP worker panicked while handling a request; restarting it with a fresh PHP context"
            );
            drop(php);
            stats.worker_restarts.fetch_add(1, Ordering::Relaxed);
            ThreadGuard::new()
        }
    }
}

/// Counts a worker as busy while it lives, panics included.
struct BusyGuard<'a>(&'a PoolStats);

impl<'a> BusyGuard<'a> {
    fn new(stats: &'a PoolStats) -> Self {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

fn run(php: &ThreadGuard, worker: usize, job: Job, stats: &PoolStats) {
    let Job {
        request,
        body,
        respond,
        queued_at,
    } = job;
    let waited = queued_at.elapsed();
    let mut writer = OutputWriter::new(respond, body, request.tag().to_owned());
    let started = Instant::now();
    let outcome = php.execute(&request.exec(), &mut writer);
    stats
        .execution_seconds
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        ExecOutcome::StartupFailed => {
            tracing::error!(
                worker,
                request = request.tag(),
                "PHP could not start the request; answering 500"
            );
        }
        ExecOutcome::Done(end) => {
            if end.fatal {
                stats.fatal_errors.fetch_add(1, Ordering::Relaxed);
            }
            if end.timed_out {
                stats.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tracing::trace!(
        worker,
        request = request.tag(),
        waited_us = waited.as_micros() as u64,
        "PHP request done"
    );
    writer.finish();
    stats.served.fetch_add(1, Ordering::Relaxed);
}
