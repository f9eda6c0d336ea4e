//! The PHP worker pool: a fixed set of threads, each owning its PHP (TSRM) context for its
//! whole life, fed from one bounded queue. A full queue is refused at once (the service
//! answers 503) rather than waited on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::admission::Admission;
use super::body::RequestBody;
use super::control::RequestControl;
use super::output::{OutputWriter, RequestContext};
use super::request::PhpRequest;
use super::response::{ResponseHead, ResponseStart};
use super::timings::PhpTimings;
use crate::ffi::{ExecOutcome, ExecTimings, Interrupter, ThreadGuard};
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
    /// Where informational (1xx) responses go, when the connection can carry them.
    pub informational: Option<tokio::sync::mpsc::UnboundedSender<ResponseHead>>,
    /// State shared with the running script (client gone, heartbeat deadline).
    pub shared: Arc<RequestControl>,
    /// When it was queued.
    pub queued_at: Instant,
    /// The request's tracing span, entered while a worker runs it, so PHP's log lines
    /// carry the request id.
    pub span: tracing::Span,
    /// Measure the phases of the request ([`PhpTimings`] on the response).
    pub profile: bool,
    /// Lets the HTTP side give the request up (after a timeout).
    pub control: JobControl,
    /// The request's place among its connection's requests in the pool, held until the job
    /// ends ([`super::admission`]).
    pub admission: Option<Admission>,
}

/// The HTTP side's hold on a queued or running [`Job`]: giving it up drops it from the
/// queue, or interrupts its script if a worker runs it, and never touches the request a
/// worker runs after it (the state changes under one lock).
#[derive(Debug, Clone, Default)]
pub struct JobControl(Arc<Mutex<JobState>>);

#[derive(Debug, Default)]
enum JobState {
    #[default]
    Queued,
    Running(Interrupter),
    /// Running past its deadline: interrupted, and again every [`OVERDUE_INTERVAL`] until it
    /// ends (a shutdown function or destructor may run on after the first interrupt).
    Overdue(Interrupter),
    Finished,
    Abandoned,
}

/// How often a script past its deadline is interrupted again while it runs on.
pub const OVERDUE_INTERVAL: Duration = Duration::from_millis(100);

/// What [`JobControl::abandon`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// The job was still queued; no worker will run it.
    FromQueue,
    /// Its script was running and has been told to stop (as if it hit
    /// `max_execution_time`).
    Interrupted,
    /// It had already finished, or was given up before.
    TooLate,
}

impl JobControl {
    /// A control for a job about to be queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the job up: see [`Abandoned`]. A running script is interrupted now and again
    /// every [`OVERDUE_INTERVAL`] until it ends, shutdown functions included.
    pub fn abandon(&self) -> Abandoned {
        let mut state = self.lock();
        match std::mem::take(&mut *state) {
            JobState::Queued => {
                *state = JobState::Abandoned;
                Abandoned::FromQueue
            }
            JobState::Running(interrupter) => {
                // Under the lock: the worker cannot finish this job and start the next
                // one until the interrupt is raised.
                interrupter.interrupt();
                *state = JobState::Overdue(interrupter);
                drop(state);
                overdue::watch(self.clone());
                Abandoned::Interrupted
            }
            other => {
                *state = other;
                Abandoned::TooLate
            }
        }
    }

    /// Drops the job if it is still queued (its client left): true if it was. A running
    /// job is left alone; its script learns that the client is gone at its next output.
    pub fn withdraw(&self) -> bool {
        let mut state = self.lock();
        if matches!(*state, JobState::Queued) {
            *state = JobState::Abandoned;
            true
        } else {
            false
        }
    }

    /// Interrupts the job again if it still runs past its deadline; false once it ended.
    fn interrupt_if_overdue(&self) -> bool {
        match &*self.lock() {
            JobState::Overdue(interrupter) => {
                interrupter.interrupt();
                true
            }
            _ => false,
        }
    }

    /// The worker takes the job; false if it was given up while queued.
    pub(crate) fn start(&self, interrupter: &Interrupter) -> bool {
        let mut state = self.lock();
        match &*state {
            JobState::Queued => {
                *state = JobState::Running(interrupter.clone());
                true
            }
            _ => false,
        }
    }

    /// The script has ended; interrupting is no longer possible.
    pub(crate) fn finish(&self) {
        *self.lock() = JobState::Finished;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    /// Worker mode: times a worker script was started again (it ended, failed, reached
    /// WORKER_MAX_REQUESTS, or WATCH saw a change).
    pub script_restarts: AtomicU64,
    /// Worker mode: requests served by each worker thread, by its number.
    pub requests_per_worker: Vec<AtomicU64>,
}

/// A handle that queues requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct PoolHandle {
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
                .spawn(move || worker_main(id, workers, &jobs, &stop, &stats))?;
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

fn worker_main(
    id: usize,
    workers: usize,
    jobs: &Receiver<Job>,
    stop: &Receiver<()>,
    stats: &PoolStats,
) {
    let mut php = ThreadGuard::new();
    tracing::debug!(worker = id, "PHP worker started");
    loop {
        crossbeam_channel::select! {
            recv(jobs) -> job => match job {
                Ok(job) => php = supervised(php, id, workers, job, stats),
                Err(_) => break,
            },
            recv(stop) -> _ => {
                while let Ok(job) = jobs.try_recv() {
                    php = supervised(php, id, workers, job, stats);
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
fn supervised(
    php: ThreadGuard,
    id: usize,
    workers: usize,
    job: Job,
    stats: &PoolStats,
) -> ThreadGuard {
    match catch_unwind(AssertUnwindSafe(|| run(&php, id, workers, job, stats))) {
        Ok(()) => php,
        Err(_) => {
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
pub(crate) struct BusyGuard<'a>(&'a PoolStats);

impl<'a> BusyGuard<'a> {
    pub(crate) fn new(stats: &'a PoolStats) -> Self {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

fn run(php: &ThreadGuard, worker: usize, workers: usize, job: Job, stats: &PoolStats) {
    let Job {
        request,
        body,
        respond,
        informational,
        shared,
        queued_at,
        span,
        profile,
        control,
        admission: _admission,
    } = job;
    let _span = span.enter();
    if !control.start(&php.interrupter()) {
        tracing::debug!(
            worker,
            request = request.tag(),
            "request given up while queued; not run"
        );
        return;
    }
    let _busy = BusyGuard::new(stats);
    let waited = queued_at.elapsed();
    let context = RequestContext {
        request_id: request.request_id().to_owned(),
        worker,
        workers,
        control: shared,
        informational,
    };
    let mut writer = OutputWriter::new(respond, body, request.tag().to_owned(), context);
    // Profiling: the queue wait goes with a head that leaves early (a streamed response);
    // the shim fills in the phases, which go with a head that leaves at the end.
    let mut exec_timings = None;
    if profile {
        writer.set_timings(PhpTimings::queued(waited));
        exec_timings = Some(ExecTimings::default());
    }
    let started = Instant::now();
    let outcome = php.execute(&request.exec(), &mut writer, exec_timings.as_mut());
    control.finish();
    stats
        .execution_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Some(exec) = &exec_timings {
        writer.set_timings(PhpTimings::queued(waited).with_exec(exec));
    }
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
    let fatal = matches!(outcome, ExecOutcome::Done(end) if end.fatal);
    writer.finish(fatal);
    stats.served.fetch_add(1, Ordering::Relaxed);
}

/// The scripts past their deadline, interrupted again until they end: one thread for the
/// process, started on first use, asleep while there are none.
mod overdue {
    use std::sync::{Condvar, Mutex, OnceLock};

    use super::{JobControl, OVERDUE_INTERVAL};

    struct Overdue {
        jobs: Mutex<Vec<JobControl>>,
        added: Condvar,
    }

    fn overdue() -> &'static Overdue {
        static OVERDUE: OnceLock<&'static Overdue> = OnceLock::new();
        OVERDUE.get_or_init(|| {
            let overdue: &'static Overdue = Box::leak(Box::new(Overdue {
                jobs: Mutex::new(Vec::new()),
                added: Condvar::new(),
            }));
            let spawned = std::thread::Builder::new()
                .name("php-overdue".into())
                .spawn(move || run(overdue));
            if let Err(err) = spawned {
                tracing::error!(error = %err, "cannot start the overdue-script thread: scripts past their deadline are interrupted once only");
            }
            overdue
        })
    }

    /// Keeps interrupting `job` until it ends.
    pub(super) fn watch(job: JobControl) {
        let overdue = overdue();
        overdue
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        overdue.added.notify_one();
    }

    fn run(overdue: &Overdue) {
        loop {
            {
                let jobs = overdue.jobs.lock().unwrap_or_else(|e| e.into_inner());
                let _jobs = overdue
                    .added
                    .wait_while(jobs, |jobs| jobs.is_empty())
                    .unwrap_or_else(|e| e.into_inner());
            }
            std::thread::sleep(OVERDUE_INTERVAL);
            let mut jobs = overdue.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.retain(JobControl::interrupt_if_overdue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_job_given_up_is_never_started() {
        let control = JobControl::new();
        assert_eq!(control.abandon(), Abandoned::FromQueue);
        assert_eq!(control.abandon(), Abandoned::TooLate);
        assert!(matches!(*control.lock(), JobState::Abandoned));
    }

    #[test]
    fn a_finished_job_is_left_alone() {
        let control = JobControl::new();
        control.finish();
        assert_eq!(control.abandon(), Abandoned::TooLate);
        assert!(matches!(*control.lock(), JobState::Finished));
    }
}
