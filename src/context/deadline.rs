//! The request's deadline: set by [`crate::layers::request_timeout`], pushed forward by
//! PHP's `tokio_request_heartbeat()`, and read by the PHP job that runs the request (a
//! deadline that passed stops the script).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The farthest a deadline goes (about 30 years): what a heartbeat too large to add becomes.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Request extension: the request's deadline, which may be pushed forward, and whether it
/// passed (set before the inner future is dropped).
#[derive(Debug, Clone)]
pub struct Deadline(Arc<DeadlineState>);

#[derive(Debug)]
struct DeadlineState {
    fired: AtomicBool,
    deadline: Mutex<Instant>,
    timeout: Duration,
}

impl Deadline {
    /// A deadline `timeout` from now that has not passed.
    pub fn new(timeout: Duration) -> Self {
        Self(Arc::new(DeadlineState {
            fired: AtomicBool::new(false),
            deadline: Mutex::new(Instant::now() + timeout),
            timeout,
        }))
    }

    /// Whether the deadline passed (the request timed out).
    pub fn fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// When the request's time is up (a heartbeat may move it later).
    pub fn at(&self) -> Instant {
        *self.0.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the deadline to `by` from now (None: the whole timeout again); it never moves
    /// back. False when the request has already timed out.
    pub fn extend(&self, by: Option<Duration>) -> bool {
        if self.fired() {
            return false;
        }
        let mut deadline = self.0.deadline.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // A heartbeat of PHP_INT_MAX seconds means "as long as there is": saturate.
        let wanted = now
            .checked_add(by.unwrap_or(self.0.timeout))
            .unwrap_or_else(|| now + FOREVER);
        *deadline = (*deadline).max(wanted);
        true
    }

    /// Marks the deadline as passed: set by the request timeout layer just before it drops
    /// the inner future, so that whoever holds the request's job sees why.
    pub(crate) fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
    }
}
