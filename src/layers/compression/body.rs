//! [`CompressionBody`]: compresses each data frame and flushes the encoder after it, so
//! every chunk the inner body yields leaves at once, compressed.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::BoxError;
use bytes::Bytes;
use flate2::write::GzEncoder;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::layer::{BROTLI_QUALITY, BROTLI_WINDOW, GZIP_LEVEL, ZSTD_LEVEL};
use super::negotiate::Coding;

/// Brotli's internal buffer between the encoder and the output.
const BROTLI_BUFFER: usize = 4096;

/// One streaming encoder writing into a buffer that is emptied after every frame.
pub(super) enum Encoder {
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gzip(GzEncoder<Vec<u8>>),
}

impl Encoder {
    pub(super) fn new(coding: Coding) -> io::Result<Self> {
        Ok(match coding {
            Coding::Brotli => Self::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
            Coding::Zstd => Self::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?),
            Coding::Gzip => Self::Gzip(GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
        })
    }

    /// Compresses `data` and flushes: the returned bytes decode to everything given so far.
    fn compress(&mut self, data: &[u8]) -> io::Result<Bytes> {
        let out = match self {
            Self::Brotli(w) => {
                w.write_all(data)?;
                w.flush()?;
                w.get_mut()
            }
            Self::Zstd(w) => {
                w.write_all(data)?;
                w.flush()?;
                w.get_mut()
            }
            Self::Gzip(w) => {
                w.write_all(data)?;
                w.flush()?;
                w.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(out)))
    }

    /// Ends the stream: the last bytes (checksums, end markers).
    fn finish(self) -> io::Result<Bytes> {
        let out = match self {
            Self::Brotli(w) => w.into_inner(),
            Self::Zstd(w) => w.finish()?,
            Self::Gzip(w) => w.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

pin_project! {
    /// A body compressed frame by frame.
    pub struct CompressionBody<B> {
        #[pin]
        inner: B,
        encoder: Option<Encoder>,
        trailers: Option<HeaderMap>,
    }
}

impl<B> CompressionBody<B> {
    /// Compresses `inner` with `coding`. Fails only if the encoder cannot be set up.
    pub fn new(inner: B, coding: Coding) -> io::Result<Self> {
        Ok(Self::with_encoder(inner, Encoder::new(coding)?))
    }

    pub(super) fn with_encoder(inner: B, encoder: Encoder) -> Self {
        Self {
            inner,
            encoder: Some(encoder),
            trailers: None,
        }
    }
}

impl<B> Body for CompressionBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                // The encoder is finished: only trailers may be left.
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        let out = encoder.compress(&data)?;
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    Err(frame) => {
                        // Trailers end the data: finish first, send them after.
                        if let Ok(trailers) = frame.into_trailers() {
                            *this.trailers = Some(trailers);
                        }
                        return Poll::Ready(finish(this.encoder, this.trailers));
                    }
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                None => return Poll::Ready(finish(this.encoder, this.trailers)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Finishes the encoder; its last bytes, or the trailers if it had nothing left.
fn finish(
    encoder: &mut Option<Encoder>,
    trailers: &mut Option<HeaderMap>,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    let encoder = encoder.take()?;
    match encoder.finish() {
        Ok(last) if !last.is_empty() => Some(Ok(Frame::data(last))),
        Ok(_) => trailers.take().map(|t| Ok(Frame::trailers(t))),
        Err(err) => Some(Err(err.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};
    use std::io::Read;

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        }
        out
    }

    /// Decodes a prefix of a stream that has not ended, as a client does mid-response.
    fn decode_prefix(coding: Coding, data: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Brotli => {
                let mut w = brotli::DecompressorWriter::new(Vec::new(), 4096);
                w.write_all(data).unwrap();
                w.flush().unwrap();
                w.get_ref().clone()
            }
            Coding::Zstd => {
                let mut w = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
                w.write_all(data).unwrap();
                w.flush().unwrap();
                w.get_ref().clone()
            }
            Coding::Gzip => {
                let mut w = flate2::write::GzDecoder::new(Vec::new());
                w.write_all(data).unwrap();
                w.flush().unwrap();
                w.get_ref().clone()
            }
        }
    }

    #[tokio::test]
    async fn every_frame_decodes_on_its_own_and_the_whole_round_trips() {
        for coding in Coding::PREFERENCE {
            let chunks: Vec<Result<Frame<Bytes>, io::Error>> =
                ["first chunk\n", "", "second chunk\n"]
                    .into_iter()
                    .map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
                    .collect();
            let mut body =
                CompressionBody::new(StreamBody::new(stream::iter(chunks)), coding).unwrap();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(
                decode_prefix(coding, &first),
                b"first chunk\n",
                "{coding:?}"
            );
            let mut all = first.to_vec();
            while let Some(frame) = body.frame().await {
                all.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            assert_eq!(
                decode(coding, &all),
                b"first chunk\nsecond chunk\n",
                "{coding:?}"
            );
        }
    }
}
