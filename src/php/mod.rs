//! The request path into PHP: which script runs ([`script`]), the request PHP sees
//! ([`request`], [`body`]), each connection's share of the pool ([`admission`]), the engine
//! and its worker threads ([`engine`], [`pool`]), the
//! output coming back ([`output`], [`response`]), profiling figures ([`timings`]), and the
//! service tying them together ([`service`]).

pub(crate) mod body;
pub(crate) mod engine;
pub(crate) mod job;
pub(crate) mod output;
pub(crate) mod pool;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod service;
pub(crate) mod stats;
pub(crate) mod worker;
pub(crate) mod x_sendfile;

pub use service::PhpService;
