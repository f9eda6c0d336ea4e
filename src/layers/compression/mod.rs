//! Compresses responses with Brotli, zstd or gzip, chosen from `Accept-Encoding`, and keeps
//! streaming responses streaming.
//!
//! - The coding is negotiated with q-values; on a tie Brotli wins, then zstd, then gzip.
//!   `identity;q=0` is respected: such a client gets even a small body compressed.
//! - Only compressible types (`text/*` except `text/event-stream`, JSON, JavaScript, XML,
//!   SVG, wasm) at or above the minimum size (default 1 KiB; a body of unknown size counts
//!   as large) are compressed; never a response that is already encoded, a 206, a
//!   response marked `Cache-Control: no-transform`, or the answer to a HEAD.
//! - Every response gets `Vary: Accept-Encoding`.
//! - **Each data frame is compressed and flushed on its own**, so a PHP script's `flush()`
//!   reaches the client at once, compressed. (tower-http's `CompressionLayer` holds output
//!   until its encoder fills, which breaks streaming.) `text/event-stream` is passed
//!   through untouched.
//! - Levels are fast ones, chosen for output made per request ([`BROTLI_QUALITY`],
//!   [`ZSTD_LEVEL`], [`GZIP_LEVEL`]).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tokio_php::layers::CompressionLayer;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello ".repeat(1000) }))
//!     .layer(CompressionLayer::new().min_size(512));
//! ```

mod body;
mod layer;
mod negotiate;
mod predicate;
mod service;

pub use body::CompressionBody;
pub use layer::{
    BROTLI_QUALITY, BROTLI_WINDOW, CompressionLayer, DEFAULT_MIN_SIZE, GZIP_LEVEL, ZSTD_LEVEL,
};
pub use negotiate::{Coding, Negotiated, negotiate};
pub use predicate::is_compressible_type;
pub use service::{Compression, ResponseFuture};
