//! The request path into PHP: which script runs ([`script`]), the request PHP sees
//! ([`request`], [`body`]), each connection's share of the pool ([`admission`]), the engine
//! and its worker threads ([`engine`], [`pool`]), the
//! output coming back ([`output`], [`response`]), profiling figures ([`timings`]), and the
//! service tying them together ([`service`]).

pub mod body;
pub mod engine;
pub mod job;
pub mod output;
pub mod pool;
pub mod request;
pub mod response;
pub mod service;
pub mod stats;
pub mod worker;
pub mod x_sendfile;

pub use service::PhpService;
