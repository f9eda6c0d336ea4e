//! The request body, received in full before a PHP worker is taken: in memory up to
//! [`MEMORY_LIMIT`], spilled to an anonymous temporary file beyond it, so a slow client never
//! holds a worker and a large upload never sits in memory. A body that arrives slower than
//! its [`MinRate`] is cut off (the service answers 408).

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;

/// Bodies up to this size stay in memory; larger ones go to a temporary file.
pub(crate) const MEMORY_LIMIT: usize = 1024 * 1024;

/// A received request body, read by PHP through `read_post`.
#[derive(Debug, Default)]
pub(crate) enum RequestBody {
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
pub(crate) enum BodyError {
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
    /// The body arrived slower than the minimum rate: 408.
    #[error(
        "request body slower than {bytes_per_second} bytes/s: {received} bytes after {elapsed:?}"
    )]
    TooSlow {
        /// The minimum rate.
        bytes_per_second: u64,
        /// Bytes received before it was cut off.
        received: u64,
        /// Time spent receiving.
        elapsed: Duration,
    },
}

/// The slowest a request body may arrive: on average `bytes_per_second` once `grace` has
/// passed. A client is cut off when it has sent fewer than
/// `(elapsed - grace) × bytes_per_second` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MinRate {
    /// Bytes per second; 0 means no minimum.
    pub bytes_per_second: u64,
    /// Time before the rate applies.
    pub grace: Duration,
}

impl MinRate {
    /// No minimum: a body may take as long as it likes.
    pub(crate) const NONE: Self = Self {
        bytes_per_second: 0,
        grace: Duration::ZERO,
    };

    /// How long after the body started the next bytes may arrive, `received` bytes in.
    /// None when there is no minimum.
    pub(crate) fn deadline(&self, received: u64) -> Option<Duration> {
        if self.bytes_per_second == 0 {
            return None;
        }
        let allowed = Duration::from_secs_f64(received as f64 / self.bytes_per_second as f64);
        Some(self.grace.saturating_add(allowed))
    }
}

impl Default for MinRate {
    fn default() -> Self {
        Self::NONE
    }
}

impl RequestBody {
    /// Receives `body`, refusing more than `limit` bytes or a body slower than `rate`.
    pub(crate) async fn receive<B>(body: B, limit: u64, rate: MinRate) -> Result<Self, BodyError>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut body = body;
        let mut memory = BytesMut::new();
        let mut file: Option<tokio::fs::File> = None;
        let mut total: u64 = 0;
        let started = tokio::time::Instant::now();
        loop {
            let next = body.frame();
            let frame = match rate.deadline(total) {
                Some(deadline) => match tokio::time::timeout_at(started + deadline, next).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        return Err(BodyError::TooSlow {
                            bytes_per_second: rate.bytes_per_second,
                            received: total,
                            elapsed: started.elapsed(),
                        });
                    }
                },
                None => next.await,
            };
            let Some(frame) = frame else {
                break;
            };
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
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
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
    #[cfg(test)]
    pub(crate) fn is_spooled(&self) -> bool {
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
        let body = RequestBody::receive(
            Full::new(Bytes::from_static(b"a=1&b=2")),
            100,
            MinRate::NONE,
        )
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
        let body = RequestBody::receive(stream, 10 << 20, MinRate::NONE)
            .await
            .unwrap();
        assert!(body.is_spooled());
        let data = read_all(body);
        assert_eq!(data.len(), 5 * 300 * 1024);
        assert!(data.iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn over_the_limit_is_refused() {
        let err = RequestBody::receive(Full::new(Bytes::from(vec![0u8; 101])), 100, MinRate::NONE)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 100 }));
    }

    #[test]
    fn the_deadline_grows_with_what_arrived() {
        let rate = MinRate {
            bytes_per_second: 100,
            grace: Duration::from_secs(5),
        };
        assert_eq!(rate.deadline(0), Some(Duration::from_secs(5)));
        assert_eq!(rate.deadline(250), Some(Duration::from_millis(7500)));
        assert_eq!(MinRate::NONE.deadline(1 << 30), None);
    }

    fn trickle(
        chunks: usize,
        every: Duration,
    ) -> impl HttpBody<Data = Bytes, Error = std::io::Error> + Unpin {
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((
                Ok(http_body::Frame::data(Bytes::from_static(b"0123456789"))),
                i + 1,
            ))
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_off_after_the_grace_period() {
        let rate = MinRate {
            bytes_per_second: 1000,
            grace: Duration::from_millis(300),
        };
        // 10 bytes every 100 ms: fine for the grace period, then too slow.
        let err = RequestBody::receive(trickle(100, Duration::from_millis(100)), 1 << 20, rate)
            .await
            .unwrap_err();
        let BodyError::TooSlow { received, .. } = err else {
            panic!("expected TooSlow, got {err}");
        };
        assert!((20..=50).contains(&received), "{received}");
        // 10 bytes every 5 ms (2000 bytes a second) arrives in full.
        let body = RequestBody::receive(trickle(50, Duration::from_millis(5)), 1 << 20, rate)
            .await
            .unwrap();
        assert_eq!(read_all(body).len(), 500);
    }

    #[tokio::test]
    async fn empty_is_empty() {
        let body = RequestBody::receive(Full::new(Bytes::new()), 100, MinRate::NONE)
            .await
            .unwrap();
        assert!(matches!(body, RequestBody::Empty));
    }
}
