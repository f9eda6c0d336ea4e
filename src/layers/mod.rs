//! Tower layers, one feature each. The standalone server stacks them, outermost first:
//!
//! ```text
//! validate host → front controller (INDEX_FILE) → final service (PhpService)
//! ```
//!
//! Each is usable on its own in any axum application.

pub mod front_controller;
pub mod validate_host;

pub use front_controller::FrontControllerLayer;
pub use validate_host::ValidateHostLayer;
