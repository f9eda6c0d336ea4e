//! Log lines about events a client can repeat at will (a full queue's 503, a refused
//! request, a timeout), limited to a few per second each, so an overload or an attacker
//! cannot fill the disk faster than the events matter. The first line after lines were held
//! back says how many: `suppressed=914`.
//!
//! ```ignore
//! // Inside the crate (the module is private):
//! use crate::log_throttle::Throttle;
//!
//! static QUEUE_FULL: Throttle = Throttle::per_second(5);
//! for _ in 0..100 {
//!     if let Some(suppressed) = QUEUE_FULL.admit() {
//!         tracing::warn!(suppressed, "PHP queue full; answering 503");
//!     }
//! }
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Lines admitted per second for one kind of event, and the count of those held back.
#[derive(Debug)]
pub(crate) struct Throttle {
    per_second: u32,
    /// The second (since the process's first throttled line) the count is for.
    window: AtomicU64,
    admitted: AtomicU32,
    suppressed: AtomicU64,
}

impl Throttle {
    /// At most `per_second` lines a second.
    pub(crate) const fn per_second(per_second: u32) -> Self {
        Self {
            per_second,
            window: AtomicU64::new(0),
            admitted: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Some(lines held back since the last admitted one) when this line may be logged;
    /// None when it is held back (and counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(seconds())
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let window = self.window.load(Ordering::Relaxed);
        if window != now
            && self
                .window
                .compare_exchange(window, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.admitted.store(0, Ordering::Relaxed);
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whole seconds since the first call (a monotonic clock).
fn seconds() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_a_second_then_a_count() {
        let throttle = Throttle::per_second(2);
        assert_eq!(throttle.admit_at(1), Some(0));
        assert_eq!(throttle.admit_at(1), Some(0));
        for _ in 0..10 {
            assert_eq!(throttle.admit_at(1), None);
        }
        // The next second's first line carries the count of those held back.
        assert_eq!(throttle.admit_at(2), Some(10));
        assert_eq!(throttle.admit_at(2), Some(0));
        assert_eq!(throttle.admit_at(2), None);
        assert_eq!(throttle.admit_at(7), Some(1));
    }
}
