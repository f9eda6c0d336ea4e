//! A request's life in a PHP pool, with one owner on each side.
//!
//! **The HTTP side** gives [`PoolHandle::submit`](super::pool::PoolHandle::submit) a
//! [`NewJob`] and gets a [`JobHandle`]. The handle relays the script's informational
//! responses ([`JobEvent::Hint`]), then yields its response start. Dropping the handle
//! before the response is complete cancels the job, for the reason the request's
//! [`Deadline`] gives:
//! - **the deadline passed** (the request timeout answered 504): a queued job is dropped; a
//!   running script is stopped as if it hit `max_execution_time`, and again every
//!   [`OVERDUE_INTERVAL`] until it ends, shutdown functions and destructors included;
//! - **else the client is gone**: a queued job is dropped; a running script learns at its
//!   next output (the output writer reads [`Control::client_gone`]).
//!
//! A streamed response carries the handle in its body ([`super::response::PhpBody`]), so a
//! client that leaves mid-stream cancels it the same way; a response that completed calls
//! [`JobHandle::complete`] and cancels nothing.
//!
//! **The worker side** takes a queued [`Job`] as a [`RunningJob`], in both pools (classic
//! and worker mode): it counts the worker busy (panic-safe), holds the request's span and its
//! place among its connection's requests, feeds PHP's output to the client, and records the
//! pool's figures when it finishes.
//!
//! Both sides share one [`Control`]: the job's state under one lock (queued, running with
//! the thread's interrupter, overdue, finished, abandoned), whether the client is gone, and
//! the deadline a heartbeat may push forward. Giving a job up never touches the request a
//! worker runs after it: the worker cannot finish one job and start the next while the
//! state changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::body::RequestBody;
use super::output::{OutputWriter, RequestContext};
use super::request::PhpRequest;
use super::response::{ResponseHead, ResponseStart};
use super::stats::{BusyGuard, PoolStats};
use crate::context::{Admission, Deadline, PhpTimings};
use crate::ffi::{
    ExecOutcome, ExecRequest, ExecTimings, Interrupter, SapiHandler, ScriptEnd, ThreadGuard,
    WorkerJob,
};
use crate::log_throttle::Throttle;
use crate::scoreboard::{self, Counter};

/// How often a script past its deadline is interrupted again while it runs on.
pub(crate) const OVERDUE_INTERVAL: Duration = Duration::from_millis(100);

/// What the HTTP side submits: a request PHP can take, and how to run it.
#[derive(Debug)]
pub(crate) struct NewJob {
    /// The request.
    pub request: PhpRequest,
    /// Its body, received in full.
    pub body: RequestBody,
    /// The request's deadline, when a request timeout applies.
    pub deadline: Option<Deadline>,
    /// Whether informational (1xx) responses can be relayed to the client.
    pub early_hints: bool,
    /// Measure the phases of the request ([`PhpTimings`] on the response).
    pub profile: bool,
    /// The request's place among its connection's requests in the pool.
    pub admission: Option<Admission>,
}

/// A request waiting in a pool's queue for a worker.
#[derive(Debug)]
pub(crate) struct Job {
    request: PhpRequest,
    body: RequestBody,
    respond: oneshot::Sender<ResponseStart>,
    informational: Option<mpsc::UnboundedSender<ResponseHead>>,
    control: Arc<Control>,
    queued_at: Instant,
    /// Entered while a worker runs the job, so PHP's log lines carry the request id.
    span: tracing::Span,
    profile: bool,
    admission: Option<Admission>,
}

impl Job {
    /// The job to queue, and the HTTP side's handle on it (armed: dropping it cancels).
    pub(crate) fn new(new: NewJob) -> (Self, JobHandle) {
        let (respond, response) = oneshot::channel();
        let (informational, hints) = if new.early_hints {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let control = Arc::new(Control::new(new.deadline));
        let job = Self {
            request: new.request,
            body: new.body,
            respond,
            informational,
            control: Arc::clone(&control),
            queued_at: Instant::now(),
            span: tracing::Span::current(),
            profile: new.profile,
            admission: new.admission,
        };
        let handle = JobHandle {
            control,
            response: Some(response),
            hints,
            armed: true,
        };
        (job, handle)
    }

    /// The request's short description, for log lines.
    pub(crate) fn tag(&self) -> &str {
        self.request.tag()
    }
}

// === the HTTP side ===

/// The HTTP side's hold on a submitted job; dropped while armed, it cancels the job (see
/// the module docs).
#[derive(Debug)]
pub(crate) struct JobHandle {
    control: Arc<Control>,
    response: Option<oneshot::Receiver<ResponseStart>>,
    hints: Option<mpsc::UnboundedReceiver<ResponseHead>>,
    armed: bool,
}

/// What a job sends back before its response body.
#[derive(Debug)]
pub(crate) enum JobEvent {
    /// An informational (1xx) response (`headers_send(103)`).
    Hint(ResponseHead),
    /// The response head, with the whole body if the script ended first.
    Started(ResponseStart),
    /// The worker dropped the job without a response (a panic on the Rust side).
    Lost,
}

impl JobHandle {
    /// The next thing the job sends: hints, then its start (once), then [`JobEvent::Lost`].
    pub(crate) async fn next(&mut self) -> JobEvent {
        let Some(response) = self.response.as_mut() else {
            return JobEvent::Lost;
        };
        let hint = async {
            match self.hints.as_mut() {
                Some(hints) => hints.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            start = response => {
                self.response = None;
                self.hints = None;
                start.map_or(JobEvent::Lost, JobEvent::Started)
            }
            Some(head) = hint => JobEvent::Hint(head),
        }
    }

    /// The response is complete (or no longer needs the script): dropping the handle
    /// cancels nothing.
    pub(crate) fn complete(mut self) {
        self.armed = false;
    }

    /// A way to give the job up while no worker has taken it, usable while the handle
    /// waits (`MAX_WAIT_TIME`).
    pub(crate) fn withdrawal(&self) -> Withdrawal {
        Withdrawal(Arc::clone(&self.control))
    }

    /// Submitting failed: the job never reached the queue, there is nothing to cancel.
    pub(super) fn forget(self) {
        self.complete();
    }
}

/// Gives a queued job up ([`JobHandle::withdrawal`]).
#[derive(Debug)]
pub(crate) struct Withdrawal(Arc<Control>);

impl Withdrawal {
    /// Gives the job up if no worker has taken it yet: it will not run, and dropping its
    /// handle cancels nothing more. False once a worker runs it or it ended.
    pub(crate) fn if_queued(&self) -> bool {
        self.0.withdraw_if_queued()
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if self.armed {
            self.control.cancel();
        }
    }
}

// === the state both sides share ===

/// One job's state, shared by its [`JobHandle`] and the worker running it.
#[derive(Debug)]
pub(crate) struct Control {
    state: Mutex<State>,
    client_gone: AtomicBool,
    deadline: Option<Deadline>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Queued,
    Running(Interrupter),
    /// Running past its deadline: interrupted, and again every [`OVERDUE_INTERVAL`] until it
    /// ends (a shutdown function or destructor may run on after the first interrupt).
    Overdue(Interrupter),
    Finished,
    Abandoned,
}

impl Default for Control {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Control {
    fn new(deadline: Option<Deadline>) -> Self {
        Self {
            state: Mutex::new(State::Queued),
            client_gone: AtomicBool::new(false),
            deadline,
        }
    }

    /// Whether the client is gone (it closed the connection, dropped the response, or the
    /// request timed out): the script's next output stops it.
    pub(crate) fn client_gone(&self) -> bool {
        self.client_gone.load(Ordering::Acquire)
    }

    /// Marks the client as gone.
    pub(crate) fn set_client_gone(&self) {
        self.client_gone.store(true, Ordering::Release);
    }

    /// Pushes the request's deadline to `seconds` from now (0: the whole timeout again).
    /// False when no deadline applies or it has already passed.
    pub(crate) fn heartbeat(&self, seconds: u64) -> bool {
        let by = (seconds > 0).then(|| Duration::from_secs(seconds));
        self.deadline
            .as_ref()
            .is_some_and(|deadline| deadline.extend(by))
    }

    /// The HTTP side let go of the job before its response was complete.
    fn cancel(self: &Arc<Self>) {
        static WITHDRAWN: Throttle = Throttle::per_second(5);
        static TIMED_OUT_QUEUED: Throttle = Throttle::per_second(5);
        static INTERRUPTED: Throttle = Throttle::per_second(5);
        self.set_client_gone();
        let timed_out = self.deadline.as_ref().is_some_and(Deadline::fired);
        let mut state = self.lock();
        match std::mem::take(&mut *state) {
            State::Queued => {
                *state = State::Abandoned;
                let (throttle, message) = if timed_out {
                    (
                        &TIMED_OUT_QUEUED,
                        "request timed out while queued; it will not run",
                    )
                } else {
                    (
                        &WITHDRAWN,
                        "client left while its request was queued; it will not run",
                    )
                };
                if let Some(suppressed) = throttle.admit() {
                    tracing::info!(suppressed, "{message}");
                }
            }
            State::Running(interrupter) if timed_out => {
                // Under the lock: the worker cannot finish this job and start the next one
                // until the interrupt is raised.
                interrupter.interrupt();
                *state = State::Overdue(interrupter);
                drop(state);
                overdue::watch(Arc::clone(self));
                if let Some(suppressed) = INTERRUPTED.admit() {
                    tracing::warn!(suppressed, "request timed out; interrupting its PHP script");
                }
            }
            // Running for a client that left: it stops at its next output. Finished or
            // given up before: nothing to do.
            other => *state = other,
        }
    }

    /// Queued → given up, without a log line (the caller says why); false otherwise.
    fn withdraw_if_queued(&self) -> bool {
        let mut state = self.lock();
        if matches!(*state, State::Queued) {
            *state = State::Abandoned;
            true
        } else {
            false
        }
    }

    /// The worker takes the job; false if it was given up while queued.
    fn start(&self, interrupter: &Interrupter) -> bool {
        let mut state = self.lock();
        if matches!(*state, State::Queued) {
            *state = State::Running(interrupter.clone());
            true
        } else {
            false
        }
    }

    /// The script has ended; interrupting is no longer possible.
    fn finish(&self) {
        *self.lock() = State::Finished;
    }

    /// Interrupts the job again if it still runs past its deadline; false once it ended.
    fn interrupt_if_overdue(&self) -> bool {
        match &*self.lock() {
            State::Overdue(interrupter) => {
                interrupter.interrupt();
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === the worker side ===

/// Which worker runs a job, for the `tokio_*` PHP functions and the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerSlot {
    /// The worker thread's number.
    pub id: usize,
    /// How many workers its pool has.
    pub workers: usize,
}

/// A job a worker runs: the same in both pools.
pub(crate) struct RunningJob {
    request: PhpRequest,
    writer: OutputWriter,
    control: Arc<Control>,
    stats: Arc<PoolStats>,
    worker: usize,
    waited: Duration,
    profile: bool,
    started: Instant,
    _busy: BusyGuard,
    _on_scoreboard: Option<OnScoreboard>,
    _admission: Option<Admission>,
    _span: tracing::span::EnteredSpan,
}

impl RunningJob {
    /// Takes `job` on the worker whose thread `interrupter` stops; None when it was given
    /// up while queued (it is dropped unrun).
    pub(crate) fn start(
        job: Job,
        slot: WorkerSlot,
        stats: &Arc<PoolStats>,
        interrupter: &Interrupter,
    ) -> Option<Self> {
        let Job {
            request,
            body,
            respond,
            informational,
            control,
            queued_at,
            span,
            profile,
            admission,
        } = job;
        let span = span.entered();
        if !control.start(interrupter) {
            tracing::debug!(
                worker = slot.id,
                request = request.tag(),
                "request given up while queued; not run"
            );
            return None;
        }
        let waited = queued_at.elapsed();
        stats.queue_wait_seconds.observe(waited.as_secs_f64());
        let busy = BusyGuard::new(Arc::clone(stats));
        let on_scoreboard = OnScoreboard::new(&request);
        let context = RequestContext {
            request_id: request.request_id().to_owned(),
            worker: slot.id,
            workers: slot.workers,
            control: Arc::clone(&control),
            informational,
        };
        let writer = OutputWriter::new(respond, body, request.tag().to_owned(), context);
        Some(Self {
            request,
            writer,
            control,
            stats: Arc::clone(stats),
            worker: slot.id,
            waited,
            profile,
            started: Instant::now(),
            _busy: busy,
            _on_scoreboard: on_scoreboard,
            _admission: admission,
            _span: span,
        })
    }

    /// Classic mode: runs the whole request on `php`, measuring its phases when the request
    /// asked for them.
    pub(crate) fn execute(&mut self, php: &ThreadGuard) -> ExecOutcome {
        if !self.profile {
            return php.execute(&self.request.exec(), &mut self.writer, None);
        }
        // The queue wait goes with a head that leaves early (a streamed response); the
        // phases go with a head that leaves at the end.
        self.writer.set_timings(PhpTimings {
            queue: self.waited,
            ..PhpTimings::default()
        });
        let mut exec = ExecTimings::default();
        let outcome = php.execute(&self.request.exec(), &mut self.writer, Some(&mut exec));
        self.writer.set_timings(PhpTimings {
            queue: self.waited,
            startup: Some(exec.startup),
            script: exec.script,
            shutdown: Some(exec.shutdown),
        });
        outcome
    }

    /// The script has ended: counts it and ends the response.
    pub(crate) fn finish(self, outcome: ExecOutcome) {
        self.control.finish();
        let stats = &self.stats;
        stats
            .execution_seconds
            .observe(self.started.elapsed().as_secs_f64());
        let end = match outcome {
            ExecOutcome::StartupFailed => {
                tracing::error!(
                    worker = self.worker,
                    request = self.request.tag(),
                    "PHP could not start the request; answering 500"
                );
                ScriptEnd::default()
            }
            ExecOutcome::Done(end) => end,
        };
        if end.fatal {
            stats.count(Counter::FatalErrors);
        }
        if end.timed_out {
            stats.count(Counter::Timeouts);
        }
        if let Some(count) = stats.requests_per_worker.get(self.worker) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        tracing::trace!(
            worker = self.worker,
            request = self.request.tag(),
            waited_us = self.waited.as_micros() as u64,
            "PHP request done"
        );
        stats.count(Counter::Served);
        self.writer.finish(end.fatal);
        // The busy count, the admission and the span end with `self`, here.
    }
}

/// The running request's line on the supervisor's scoreboard, while the job runs (panics
/// included); nothing without a supervisor.
struct OnScoreboard;

impl OnScoreboard {
    fn new(request: &PhpRequest) -> Option<Self> {
        scoreboard::board()?;
        let script = request
            .exec()
            .script_filename
            .to_string_lossy()
            .into_owned();
        scoreboard::job_started(&format!(
            "id={} {} script={script}",
            request.request_id(),
            request.tag()
        ));
        Some(Self)
    }
}

impl Drop for OnScoreboard {
    fn drop(&mut self) {
        scoreboard::job_ended();
    }
}

/// Worker mode: the worker script's `tokio_handle_request()` runs the job's request.
impl WorkerJob for RunningJob {
    fn request(&self) -> ExecRequest<'_> {
        self.request.exec()
    }

    fn handler(&mut self) -> &mut (dyn SapiHandler + 'static) {
        &mut self.writer
    }
}

/// The scripts past their deadline, interrupted again until they end: one thread for the
/// process, started on first use, asleep while there are none.
mod overdue {
    use std::sync::{Arc, Condvar, Mutex, OnceLock};

    use super::{Control, OVERDUE_INTERVAL};

    struct Overdue {
        jobs: Mutex<Vec<Arc<Control>>>,
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
    pub(super) fn watch(job: Arc<Control>) {
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
            jobs.retain(|job| job.interrupt_if_overdue());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_out() -> Deadline {
        let deadline = Deadline::new(Duration::from_secs(1));
        deadline.fire();
        deadline
    }

    #[test]
    fn a_queued_job_whose_client_left_is_never_started() {
        let control = Arc::new(Control::new(None));
        control.cancel();
        assert!(control.client_gone());
        assert!(matches!(*control.lock(), State::Abandoned));
    }

    #[test]
    fn a_queued_job_past_its_deadline_is_never_started() {
        let control = Arc::new(Control::new(Some(timed_out())));
        control.cancel();
        assert!(matches!(*control.lock(), State::Abandoned));
        // Cancelled twice: still abandoned, nothing else happens.
        control.cancel();
        assert!(matches!(*control.lock(), State::Abandoned));
    }

    #[test]
    fn a_finished_job_is_left_alone() {
        let control = Arc::new(Control::new(Some(timed_out())));
        control.finish();
        control.cancel();
        assert!(matches!(*control.lock(), State::Finished));
    }

    #[tokio::test]
    async fn heartbeat_moves_an_enforced_deadline_only() {
        assert!(!Control::default().heartbeat(5));
        let deadline = Deadline::new(Duration::from_secs(1));
        let control = Control::new(Some(deadline.clone()));
        let before = deadline.at();
        assert!(control.heartbeat(10));
        let after = deadline.at();
        assert!(after >= before + Duration::from_secs(8));
        // 0 grants the full timeout again, never shortens.
        assert!(control.heartbeat(0));
        assert_eq!(deadline.at(), after);
        assert!(!Control::new(Some(timed_out())).heartbeat(5));
    }

    #[test]
    fn a_completed_handle_cancels_nothing() {
        let control = Arc::new(Control::new(None));
        let handle = JobHandle {
            control: Arc::clone(&control),
            response: None,
            hints: None,
            armed: true,
        };
        handle.complete();
        assert!(!control.client_gone());
        assert!(matches!(*control.lock(), State::Queued));
        drop(JobHandle {
            control: Arc::clone(&control),
            response: None,
            hints: None,
            armed: true,
        });
        assert!(control.client_gone());
    }
}
