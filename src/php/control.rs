//! What the HTTP side and the PHP worker share about one running request: whether the
//! client is gone, and the deadline a heartbeat may push forward.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shared state of one request, between its service future and its worker.
#[derive(Debug, Default)]
pub struct RequestControl {
    client_gone: AtomicBool,
    deadline: Mutex<Option<Deadline>>,
}

/// When a request times out, and by how much a heartbeat moves that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant the request times out.
    pub at: Instant,
    /// The full timeout, which a heartbeat of 0 seconds grants again.
    pub timeout: Duration,
}

impl RequestControl {
    /// Marks the client as gone (it closed the connection or dropped the response).
    pub fn set_client_gone(&self) {
        self.client_gone.store(true, Ordering::Release);
    }

    /// Whether the client is gone.
    pub fn client_gone(&self) -> bool {
        self.client_gone.load(Ordering::Acquire)
    }

    /// Starts enforcing `timeout` from now.
    pub fn set_timeout(&self, timeout: Duration) {
        if let Ok(mut deadline) = self.deadline.lock() {
            *deadline = Some(Deadline {
                at: Instant::now() + timeout,
                timeout,
            });
        }
    }

    /// The current deadline, if a timeout is enforced.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline.lock().ok().and_then(|d| *d)
    }

    /// Pushes the deadline to `seconds` from now (0: the full timeout from now). False when
    /// no timeout is enforced for this request.
    pub fn heartbeat(&self, seconds: u64) -> bool {
        let Ok(mut guard) = self.deadline.lock() else {
            return false;
        };
        match guard.as_mut() {
            Some(deadline) => {
                let extend = match seconds {
                    0 => deadline.timeout,
                    n => Duration::from_secs(n),
                };
                deadline.at = deadline.at.max(Instant::now() + extend);
                true
            }
            None => false,
        }
    }
}

/// Marks the client gone when dropped before [`ClientGuard::disarm`]: held by the service
/// future, which the server drops when the client goes away.
#[derive(Debug)]
pub struct ClientGuard {
    control: std::sync::Arc<RequestControl>,
    armed: bool,
}

impl ClientGuard {
    /// A guard for `control`.
    pub fn new(control: std::sync::Arc<RequestControl>) -> Self {
        Self {
            control,
            armed: true,
        }
    }

    /// The request completed normally: dropping the guard no longer means anything.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if self.armed {
            self.control.set_client_gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn heartbeat_moves_an_enforced_deadline_only() {
        let control = RequestControl::default();
        assert!(!control.heartbeat(5));
        control.set_timeout(Duration::from_secs(1));
        let before = control.deadline().unwrap().at;
        assert!(control.heartbeat(10));
        let after = control.deadline().unwrap().at;
        assert!(after >= before + Duration::from_secs(8));
        // 0 grants the full timeout again, never shortens.
        assert!(control.heartbeat(0));
        assert_eq!(control.deadline().unwrap().at, after);
    }

    #[test]
    fn a_dropped_guard_means_the_client_left() {
        let control = Arc::new(RequestControl::default());
        drop(ClientGuard::new(Arc::clone(&control)));
        assert!(control.client_gone());
        let control = Arc::new(RequestControl::default());
        let mut guard = ClientGuard::new(Arc::clone(&control));
        guard.disarm();
        drop(guard);
        assert!(!control.client_gone());
    }
}
