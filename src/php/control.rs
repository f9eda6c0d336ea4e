//! What the HTTP side and the PHP worker share about one running request: whether the
//! client is gone, and the request timeout a heartbeat may push forward.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::layers::request_timeout::TimeoutNotice;

/// Shared state of one request, between its service future and its worker.
#[derive(Debug, Default)]
pub struct RequestControl {
    client_gone: AtomicBool,
    timeout: Option<TimeoutNotice>,
}

impl RequestControl {
    /// State for a request under `timeout` (None: no request timeout applies).
    pub fn new(timeout: Option<TimeoutNotice>) -> Self {
        Self {
            client_gone: AtomicBool::new(false),
            timeout,
        }
    }

    /// Marks the client as gone (it closed the connection or dropped the response).
    pub fn set_client_gone(&self) {
        self.client_gone.store(true, Ordering::Release);
    }

    /// Whether the client is gone.
    pub fn client_gone(&self) -> bool {
        self.client_gone.load(Ordering::Acquire)
    }

    /// Pushes the request timeout to `seconds` from now (0: the whole timeout again).
    /// False when no timeout applies or it has already passed.
    pub fn heartbeat(&self, seconds: u64) -> bool {
        let by = (seconds > 0).then(|| Duration::from_secs(seconds));
        self.timeout
            .as_ref()
            .is_some_and(|notice| notice.extend(by))
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

    #[tokio::test]
    async fn heartbeat_moves_an_enforced_deadline_only() {
        assert!(!RequestControl::default().heartbeat(5));
        let notice = TimeoutNotice::new(Duration::from_secs(1));
        let control = RequestControl::new(Some(notice.clone()));
        let before = notice.deadline();
        assert!(control.heartbeat(10));
        let after = notice.deadline();
        assert!(after >= before + Duration::from_secs(8));
        // 0 grants the full timeout again, never shortens.
        assert!(control.heartbeat(0));
        assert_eq!(notice.deadline(), after);
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
