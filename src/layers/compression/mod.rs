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
//!   reaches the client at once, compressed. `text/event-stream` is passed through
//!   untouched.
//! - Levels are fast ones, chosen for output made per request ([`BROTLI_QUALITY`],
//!   [`ZSTD_LEVEL`], [`GZIP_LEVEL`]). Brotli's window is 256 KiB ([`BROTLI_WINDOW`]), so its
//!   ring buffer stays at 576 KiB per response however long the response streams.
//!
//! This is not tower-http's `CompressionLayer`, although that one now flushes when the
//! body stalls too (async-compression 0.4.40 and later): it gives Brotli its default 4 MiB
//! window, an 8 MiB ring buffer per response, with no setting to lower it; on a tie it
//! picks zstd over Brotli, and it ignores `*` in `Accept-Encoding`. The measurements are
//! in `docs/compression.md`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::io::Read;
//!
//! use axum::body::Body;
//! use axum::response::Response;
//! use http::{HeaderValue, Request, header};
//! use http_body_util::BodyExt;
//! use tokio_php::layers::CompressionLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let page = "<p>tokio_php compresses this line.</p>\n".repeat(100);
//! let body = page.clone();
//! let app = service_fn(move |_: Request<Body>| {
//!     let body = body.clone();
//!     async move {
//!         let mut response = Response::new(Body::from(body));
//!         let html = HeaderValue::from_static("text/html");
//!         response.headers_mut().insert(header::CONTENT_TYPE, html);
//!         Ok::<_, Infallible>(response)
//!     }
//! });
//! let service = CompressionLayer::new().min_size(512).layer(app);
//!
//! let request = Request::builder()
//!     .header(header::ACCEPT_ENCODING, "gzip")
//!     .body(Body::empty())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
//! assert_eq!(response.headers()[header::VARY], "accept-encoding");
//!
//! let compressed = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(compressed.len() < page.len() / 10);
//! let mut html = String::new();
//! flate2::read::GzDecoder::new(&compressed[..])
//!     .read_to_string(&mut html)
//!     .unwrap();
//! assert_eq!(html, page);
//! # }
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
