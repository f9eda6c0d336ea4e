//! Profiling figures measured on the worker. A request carrying the [`CollectTimings`]
//! extension (put on by [`crate::layers::timing`]) gets a [`PhpTimings`] extension on its
//! response from the PHP job; the timing layer turns it into `Server-Timing`. Without the
//! request extension nothing is measured.

use std::time::Duration;

/// Request extension: measure this request's phases on the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectTimings;

/// Response extension: where one request spent its time on the PHP side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhpTimings {
    /// Waiting in the queue for a free worker.
    pub queue: Duration,
    /// `php_request_startup()` (superglobals, session auto-start, extensions' RINIT).
    /// None when the response head left before the script ended (a streamed response).
    pub startup: Option<Duration>,
    /// The script itself, until it ended, exited or failed.
    pub script: Option<Duration>,
    /// `php_request_shutdown()` (shutdown functions, destructors, output flush, cleanup).
    pub shutdown: Option<Duration>,
}
