//! The request path into PHP: which script runs ([`script`]), the request PHP sees
//! ([`request`], [`body`]), each connection's share of the pool ([`admission`]), the engine
//! and its worker threads ([`engine`], [`pool`]), the
//! output coming back ([`output`], [`response`]), profiling figures ([`timings`]), and the
//! service tying them together ([`service`]).

pub mod admission;
pub mod body;
pub mod control;
pub mod engine;
pub mod output;
pub mod pool;
pub mod request;
pub mod response;
pub mod script;
pub mod service;
pub mod timings;
pub mod worker;

pub use request::ConnectionInfo;
pub use service::PhpService;
pub use timings::{CollectTimings, PhpTimings};
