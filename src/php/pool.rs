//! The PHP worker pool: a fixed set of threads, each owning its PHP (TSRM) context for its
//! whole life, fed from one bounded queue. A full queue is refused at once (the service
//! answers 503) rather than waited on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::job::{Job, JobHandle, NewJob, RunningJob, WorkerSlot};
use super::stats::PoolStats;
use crate::ffi::ThreadGuard;
use crate::scoreboard::Counter;

/// Stack size of a worker thread: PHP recursion and large arrays need room.
pub(crate) const WORKER_STACK_SIZE: usize = 64 * 1024 * 1024;

/// Why a job was not queued.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// Every worker is busy and the queue is full: 503 with Retry-After.
    QueueFull(Box<Job>),
    /// The pool is shutting down: 503.
    ShuttingDown(Box<Job>),
}

/// A handle that queues requests; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PoolHandle {
    jobs: Sender<Job>,
    workers: usize,
    stats: Arc<PoolStats>,
}

impl PoolHandle {
    /// A handle over a queue that `workers` threads read, counting into `stats`.
    pub(crate) fn new(jobs: Sender<Job>, workers: usize, stats: Arc<PoolStats>) -> Self {
        Self {
            jobs,
            workers,
            stats,
        }
    }

    /// Queues a job for `new` and returns the HTTP side's handle on it ([`super::job`]), or
    /// says why it could not be queued.
    pub(crate) fn submit(&self, new: NewJob) -> Result<JobHandle, SubmitError> {
        let (job, handle) = Job::new(new);
        let refused = match self.jobs.try_send(job) {
            Ok(()) => return Ok(handle),
            Err(TrySendError::Full(job)) => {
                self.stats.count(Counter::Rejected);
                SubmitError::QueueFull(Box::new(job))
            }
            Err(TrySendError::Disconnected(job)) => SubmitError::ShuttingDown(Box::new(job)),
        };
        handle.forget();
        Err(refused)
    }

    /// Number of worker threads.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Requests waiting for a worker.
    pub(crate) fn queue_depth(&self) -> usize {
        self.jobs.len()
    }

    /// The pool's counters.
    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }
}

/// The running worker threads.
#[derive(Debug)]
pub(crate) struct WorkerPool {
    handle: PoolHandle,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `workers` threads with a queue of `capacity`. PHP must be started.
    pub(crate) fn start(workers: usize, capacity: usize) -> std::io::Result<Self> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(capacity.max(1));
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let stats = Arc::new(PoolStats {
            on_scoreboard: true,
            ..PoolStats::default()
        });
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let jobs = jobs_rx.clone();
            let stop = stop_rx.clone();
            let stats = Arc::clone(&stats);
            let thread = std::thread::Builder::new()
                .name(format!("php-worker-{id}"))
                .stack_size(WORKER_STACK_SIZE)
                .spawn(move || worker_main(WorkerSlot { id, workers }, &jobs, &stop, &stats))?;
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
    pub(crate) fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// Lets every worker finish the queued requests, then ends the threads.
    pub(crate) fn shutdown(mut self) {
        self.stop.take();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a PHP worker thread panicked while shutting down");
            }
        }
    }
}

fn worker_main(
    slot: WorkerSlot,
    jobs: &Receiver<Job>,
    stop: &Receiver<()>,
    stats: &Arc<PoolStats>,
) {
    let mut php = ThreadGuard::new();
    tracing::debug!(worker = slot.id, "PHP worker started");
    loop {
        crossbeam_channel::select! {
            recv(jobs) -> job => match job {
                Ok(job) => php = supervised(php, slot, job, stats),
                Err(_) => break,
            },
            recv(stop) -> _ => {
                while let Ok(job) = jobs.try_recv() {
                    php = supervised(php, slot, job, stats);
                }
                break;
            }
        }
    }
    tracing::debug!(worker = slot.id, "PHP worker stopped");
}

/// Runs `job`; if the Rust side of it panics (PHP's callbacks already catch their own),
/// the request's channel is dropped (the client gets 500) and the worker starts over with
/// a fresh PHP context.
fn supervised(php: ThreadGuard, slot: WorkerSlot, job: Job, stats: &Arc<PoolStats>) -> ThreadGuard {
    match catch_unwind(AssertUnwindSafe(|| run(&php, slot, job, stats))) {
        Ok(()) => php,
        Err(_) => {
            tracing::error!(
                worker = slot.id,
                "PHP worker panicked while handling a request; restarting it with a fresh PHP context"
            );
            drop(php);
            stats.worker_restarts.fetch_add(1, Ordering::Relaxed);
            ThreadGuard::new()
        }
    }
}

fn run(php: &ThreadGuard, slot: WorkerSlot, job: Job, stats: &Arc<PoolStats>) {
    let Some(mut job) = RunningJob::start(job, slot, stats, &php.interrupter()) else {
        return;
    };
    let outcome = job.execute(php);
    job.finish(outcome);
}
