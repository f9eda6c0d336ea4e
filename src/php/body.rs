//! The request body, received in full before a PHP worker is taken: in memory up to
//! [`MEMORY_LIMIT`], spilled to an anonymous temporary file beyond it, so a slow client never
//! holds a worker and a large upload never sits in memory.

use std::io::{Read, Seek, SeekFrom, Write};

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;

/// Bodies up to this size stay in memory; larger ones go to a temporary file.
pub const MEMORY_LIMIT: usize = 1024 * 1024;

/// A received request body, read by PHP through `read_post`.
#[derive(Debug, Default)]
pub enum RequestBody {
    /// No body.
    #[default]
    Empty,
    /// The whole body, in memory.
    Memory(Bytes),
    /// The body in an unlinked temporary file, positioned at its start.
    File(std::fs::File),
}

/// Why a body could not be received.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the configured limit: 413.
    #[error("request body over the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client's body stream failed (it went away, or sent a malformed body): 400.
    #[error("reading the request body failed: {0}")]
    Client(String),
    /// The temporary file could not be written: 500.
    #[error("spooling the request body to a temporary file failed: {0}")]
    Spool(#[from] std::io::Error),
}

impl RequestBody {
    /// Receives `body`, refusing more than `limit` bytes.
    pub async fn receive<B>(body: B, limit: u64) -> Result<Self, BodyError>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut body = body;
        let mut memory = BytesMut::new();
        let mut file: Option<tokio::fs::File> = None;
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Client(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            total += data.len() as u64;
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            if let Some(f) = file.as_mut() {
                tokio::io::AsyncWriteExt::write_all(f, &data).await?;
                continue;
            }
            memory.extend_from_slice(&data);
            if memory.len() > MEMORY_LIMIT {
                let mut spool = tempfile::tempfile()?;
                spool.write_all(&memory)?;
                memory = BytesMut::new();
                file = Some(tokio::fs::File::from_std(spool));
            }
        }
        match file {
            Some(f) => {
                let mut f = f.into_std().await;
                f.flush()?;
                f.seek(SeekFrom::Start(0))?;
                Ok(Self::File(f))
            }
            None if memory.is_empty() => Ok(Self::Empty),
            None => Ok(Self::Memory(memory.freeze())),
        }
    }

    /// Fills `buf` from the body; 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        match self {
            Self::Empty => 0,
            Self::Memory(data) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                data.advance(n);
                n
            }
            Self::File(f) => match f.read(buf) {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!(error = %err, "reading the spooled request body failed; PHP sees it cut short");
                    0
                }
            },
        }
    }

    /// True when the body is in a temporary file.
    pub fn is_spooled(&self) -> bool {
        matches!(self, Self::File(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn read_all(mut body: RequestBody) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = body.read(&mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory() {
        let body = RequestBody::receive(Full::new(Bytes::from_static(b"a=1&b=2")), 100)
            .await
            .unwrap();
        assert!(matches!(body, RequestBody::Memory(_)));
        assert_eq!(read_all(body), b"a=1&b=2");
    }

    #[tokio::test]
    async fn large_bodies_spill_to_a_file_intact() {
        let chunk = vec![7u8; 300 * 1024];
        let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..5)
            .map(|_| Ok(http_body::Frame::data(Bytes::from(chunk.clone()))))
            .collect();
        let stream = StreamBody::new(futures_util::stream::iter(chunks));
        let body = RequestBody::receive(stream, 10 << 20).await.unwrap();
        assert!(body.is_spooled());
        let data = read_all(body);
        assert_eq!(data.len(), 5 * 300 * 1024);
        assert!(data.iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn over_the_limit_is_refused() {
        let err = RequestBody::receive(Full::new(Bytes::from(vec![0u8; 101])), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 100 }));
    }

    #[tokio::test]
    async fn empty_is_empty() {
        let body = RequestBody::receive(Full::new(Bytes::new()), 100)
            .await
            .unwrap();
        assert!(matches!(body, RequestBody::Empty));
    }
}
