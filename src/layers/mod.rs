//! Tower layers, one feature each, each usable on its own in any axum application.
//!
//! [`App::router`](crate::App::router) stacks them in this order, outermost first (the
//! README shows the same list):
//!
//! ```text
//! request id / trace context   request_id       every log line below carries the request id
//! → access log                 access_log       ACCESS_LOG; sees the final status and bytes
//! → metrics                    http_metrics     HTTP metrics for /metrics (axum-prometheus)
//! → request timeout            request_timeout  REQUEST_TIMEOUT; 504, interrupts the script
//! → rate limit                 rate_limit       RATE_LIMIT; 429 before anything runs
//! → compression                compression      COMPRESSION; flushes per chunk
//! → error pages                error_pages      ERROR_PAGES_DIR; pages for empty errors
//! → validate host              validate_host    400 for a bad Host
//! → timing (Server-Timing)     timing           PROFILE; X-Profile: 1
//! → front controller           front_controller INDEX_FILE; wraps the final service itself
//! → final service (PhpService)
//! ```
//!
//! Why this order: the request id comes first so that every later log line, the access
//! log's included, carries it. The access log sits outside everything that can answer on
//! its own (timeout, rate limit) so it records those answers too, with the bytes as sent
//! after compression. The timeout is outside the rate limit and compression, so its clock
//! covers them. Rate limiting comes before any work is done for a request. Compression
//! wraps the error pages, so pages are compressed like any other body. The timeout's 504 and
//! the rate limit's 429 are made outside the error-pages layer; they get the same pages
//! through an [`ErrorResponder`]. Timing is
//! innermost, next to PHP, which it measures.
//!
//! [`client_ip`] is not a layer: it is the rule the rate limit and the access log share for
//! who the client is.

pub mod access_log;
pub mod client_ip;
pub mod compression;
pub mod error_pages;
pub mod front_controller;
pub mod http_metrics;
pub mod rate_limit;
pub mod request_id;
pub mod request_timeout;
pub mod timing;
pub mod validate_host;

pub use crate::error_response::{ErrorResponder, PlainText, ServerMadeError};
pub use access_log::AccessLogLayer;
pub use compression::CompressionLayer;
pub use error_pages::ErrorPagesLayer;
pub use front_controller::FrontControllerLayer;
pub use http_metrics::MetricsLayer;
pub use rate_limit::RateLimitLayer;
pub use request_id::SetRequestIdLayer;
pub use request_timeout::RequestTimeoutLayer;
pub use timing::ServerTimingLayer;
pub use validate_host::ValidateHostLayer;
