//! Tower layers, one feature each. The standalone server stacks them, outermost first:
//!
//! ```text
//! validate host → final service (PhpService)
//! ```
//!
//! Each is usable on its own in any axum application.

pub mod request_id;
pub mod request_timeout;
pub mod validate_host;

pub use request_id::SetRequestIdLayer;
pub use request_timeout::RequestTimeoutLayer;
pub use validate_host::ValidateHostLayer;
