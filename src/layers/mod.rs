//! Tower layers, one feature each. The standalone server stacks them, outermost first:
//!
//! ```text
//! metrics → validate host → final service (PhpService)
//! ```
//!
//! Each is usable on its own in any axum application.

pub mod metrics;
pub mod validate_host;

pub use metrics::MetricsLayer;
pub use validate_host::ValidateHostLayer;
