//! [`CompressionLayer`]: the settings.

use tower::Layer;

use super::service::Compression;

/// Bodies smaller than this (when their size is known) are sent as they are.
pub const DEFAULT_MIN_SIZE: u64 = 1024;
/// Brotli quality (0–11): fast enough for output made per request.
pub const BROTLI_QUALITY: u32 = 4;
/// Brotli window, as log2 of its size (256 KiB): bounds memory per response.
pub const BROTLI_WINDOW: u32 = 18;
/// zstd level (1–22).
pub const ZSTD_LEVEL: i32 = 3;
/// gzip level (0–9).
pub const GZIP_LEVEL: u32 = 4;

/// Applies [`Compression`] to a service.
#[derive(Debug, Clone, Copy)]
pub struct CompressionLayer {
    pub(super) min_size: u64,
}

impl Default for CompressionLayer {
    fn default() -> Self {
        Self {
            min_size: DEFAULT_MIN_SIZE,
        }
    }
}

impl CompressionLayer {
    /// Compression with the default minimum size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bodies of known size below `bytes` are not compressed.
    pub fn min_size(mut self, bytes: u64) -> Self {
        self.min_size = bytes;
        self
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression::new(inner, *self)
    }
}
