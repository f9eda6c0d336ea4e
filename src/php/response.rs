//! A PHP response on its way out: the head (status and headers, parsed from PHP's header
//! lines) and the body, either complete (the script ended before anything had to be sent)
//! or streamed chunk by chunk as the script flushes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};
use hyper::ext::ReasonPhrase;
use tokio::sync::mpsc;

use super::job::JobHandle;
use crate::context::PhpTimings;

/// Status and headers of a PHP response.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHead {
    /// The status PHP set (200 unless the script or an error changed it).
    pub status: StatusCode,
    /// A reason phrase other than the status's usual one, sent on HTTP/1 (see
    /// [`response_status`]).
    pub reason: Option<ReasonPhrase>,
    /// The headers the script set, less those the server owns (framing, hop-by-hop).
    pub headers: HeaderMap,
}

impl ResponseHead {
    /// A head with `status`, its usual reason phrase and `headers`.
    pub(crate) fn new(status: StatusCode, headers: HeaderMap) -> Self {
        Self {
            status,
            reason: None,
            headers,
        }
    }

    /// The head of a response PHP never produced: 500, no headers.
    pub(crate) fn internal_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new())
    }
}

/// Why PHP's status could not be sent as it is: the code PHP had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidStatus(pub i32);

/// The status a PHP response goes out with, decided as php-fpm and nginx decide it:
///
/// - a status other than 200 with a status line (`header("HTTP/1.1 399 My Reason")`) takes
///   the code and reason phrase of that line;
/// - otherwise a `Status:` header from the script (`header("Status: 404 Not Found")`), the
///   CGI way, names them;
/// - otherwise PHP's code, with its usual reason phrase (an empty one for a code that has
///   none, where hyper would write `<none>`).
///
/// A code that cannot end a response (below 200, above 999) is an error.
pub(crate) fn response_status(
    code: i32,
    status_line: Option<&[u8]>,
    status_header: Option<&[u8]>,
) -> Result<(StatusCode, Option<ReasonPhrase>), InvalidStatus> {
    // http_response_code(65736) is an int to PHP: out of range is an error, not 200.
    let code = u16::try_from(code).map_err(|_| InvalidStatus(code))?;
    let from_line = status_line
        .filter(|_| code != 200)
        .and_then(|line| {
            let space = line.iter().position(|b| *b == b' ')?;
            let is_http = space >= 5 && line[..5].eq_ignore_ascii_case(b"HTTP/");
            is_http.then(|| code_and_reason(&line[space + 1..]))
        })
        .filter(|(code, _)| *code != 0);
    let from_header = || {
        status_header
            .map(code_and_reason)
            .filter(|(code, _)| *code != 0)
    };
    let (code, reason) = from_line.or_else(from_header).unwrap_or((code, &[]));
    let code = if code == 0 { 200 } else { code };
    let status = match StatusCode::from_u16(code) {
        Ok(status) if code >= 200 => status,
        _ => return Err(InvalidStatus(i32::from(code))),
    };
    let canonical = status.canonical_reason().map(str::as_bytes);
    let reason = match (reason, canonical) {
        ([], Some(_)) => None,
        (reason, Some(usual)) if reason.eq_ignore_ascii_case(usual) => None,
        (reason, _) => ReasonPhrase::try_from(reason).ok(),
    };
    Ok((status, reason))
}

/// `"404 Not Found"` → (404, `"Not Found"`), reading the code as C's `atoi` (0 when none).
fn code_and_reason(text: &[u8]) -> (u16, &[u8]) {
    let text = trim(text);
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let code = std::str::from_utf8(&text[..digits.min(4)])
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    (code, trim(&text[digits..]))
}

/// Whether a PHP header line is the CGI `Status:` header (which is not sent as a header).
pub(crate) fn status_header_value(line: &[u8]) -> Option<&[u8]> {
    let (name, value) = line.split_at(line.iter().position(|b| *b == b':')?);
    name.eq_ignore_ascii_case(b"status")
        .then(|| trim(&value[1..]))
}

/// What the worker hands to the HTTP side when the response starts.
#[derive(Debug)]
pub(crate) struct ResponseStart {
    /// Status and headers.
    pub head: ResponseHead,
    /// The body, complete or streaming.
    pub body: PhpBody,
    /// Profiling figures, when the request asked for them ([`crate::context::CollectTimings`]).
    pub timings: Option<PhpTimings>,
}

/// Headers a script may set that the server must own: a wrong Content-Length or a
/// Transfer-Encoding would desynchronise the connection, and hop-by-hop headers are illegal
/// in HTTP/2.
pub(crate) fn is_server_owned(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Parses one PHP header line (`Name: value`) into the map. Lines that are not valid HTTP
/// headers, and server-owned headers, are skipped; the reason is returned for the log.
pub fn add_header_line(headers: &mut HeaderMap, line: &[u8]) -> Result<(), &'static str> {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return Err("no colon");
    };
    let name = HeaderName::from_bytes(trim(&line[..colon])).map_err(|_| "invalid name")?;
    if is_server_owned(&name) {
        return Err("set by the server");
    }
    let value = HeaderValue::from_bytes(trim(&line[colon + 1..])).map_err(|_| "invalid value")?;
    headers.append(name, value);
    Ok(())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// A streamed body that the script did not finish: it ended in a fatal error after the
/// response had started. The body ends with this error instead of its normal end, so that
/// hyper leaves the response visibly incomplete (HTTP/1.1: the connection closes without
/// the terminal chunk; HTTP/2: the stream is reset) and no cache or proxy keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the PHP script ended in a fatal error after its response had started; the response is incomplete"
)]
pub(crate) struct CutShort;

/// One piece of a streamed body: bytes, or the sign that the rest will never come.
pub(crate) type Chunk = Result<Bytes, CutShort>;

/// The body of a PHP response.
#[derive(Debug)]
pub(crate) enum PhpBody {
    /// Everything the script wrote, known before the head went out.
    Full(Option<Bytes>),
    /// Chunks as the script flushes them; ends when the worker drops its sender.
    Stream {
        /// Output produced before the stream started.
        first: Option<Bytes>,
        /// The rest.
        rx: mpsc::Receiver<Chunk>,
        /// The job: dropped before the stream's end, it tells the script the client left.
        job: Option<JobHandle>,
        /// When the stream is cut off (server-sent events: `SSE_TIMEOUT`).
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        /// The script was cut short: the error goes out on the next poll, once hyper has
        /// flushed what came before (it would drop its unwritten buffer on the error).
        cut_short: bool,
    },
}

impl PhpBody {
    /// A complete body.
    pub(crate) fn full(data: Bytes) -> Self {
        Self::Full((!data.is_empty()).then_some(data))
    }
}

impl http_body::Body for PhpBody {
    type Data = Bytes;
    type Error = CutShort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Stream {
                first,
                rx,
                job,
                deadline,
                cut_short,
            } => {
                if let Some(data) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if *cut_short {
                    return Poll::Ready(Some(Err(CutShort)));
                }
                if let Some(sleep) = deadline.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    // Ended here: the job, dropped with the body, tells the script, which
                    // stops at its next output.
                    tracing::info!("event stream reached SSE_TIMEOUT; ending it");
                    rx.close();
                    return Poll::Ready(None);
                }
                let polled = rx.poll_recv(cx);
                if let Poll::Ready(None) = polled
                    && let Some(job) = job.take()
                {
                    job.complete();
                }
                if let Poll::Ready(Some(Err(CutShort))) = polled {
                    // One pending poll lets hyper write out what it holds first.
                    *cut_short = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                polled.map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Stream { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_parse_and_repeat() {
        let mut h = HeaderMap::new();
        add_header_line(&mut h, b"Content-Type: text/plain").unwrap();
        add_header_line(&mut h, b"Set-Cookie: a=1").unwrap();
        add_header_line(&mut h, b"Set-Cookie:b=2  ").unwrap();
        assert_eq!(h["content-type"], "text/plain");
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn the_status_comes_from_the_line_then_the_status_header_then_the_code() {
        let reason = |r: &str| Some(ReasonPhrase::try_from(r.as_bytes()).unwrap());
        let line = Some(&b"HTTP/1.1 399 Choose Your Own Adventure"[..]);
        assert_eq!(
            response_status(399, line, None),
            Ok((
                StatusCode::from_u16(399).unwrap(),
                reason("Choose Your Own Adventure")
            ))
        );
        // The usual reason is not repeated; an unknown code without one gets an empty one.
        assert_eq!(
            response_status(404, Some(b"HTTP/1.0 404 Not Found"), None),
            Ok((StatusCode::NOT_FOUND, None))
        );
        assert_eq!(
            response_status(299, None, None),
            Ok((StatusCode::from_u16(299).unwrap(), reason("")))
        );
        // A 200 status line is not used (php-fpm sends no Status for it); a Status header is.
        assert_eq!(
            response_status(200, Some(b"HTTP/1.1 200 Fine"), Some(b"410 Gone Away")),
            Ok((StatusCode::GONE, reason("Gone Away")))
        );
        assert_eq!(
            response_status(302, None, Some(b"nonsense")),
            Ok((StatusCode::FOUND, None))
        );
        assert_eq!(response_status(0, None, None), Ok((StatusCode::OK, None)));
        assert_eq!(response_status(103, None, None), Err(InvalidStatus(103)));
        assert_eq!(
            response_status(200, None, Some(b"1000 Big")),
            Err(InvalidStatus(1000))
        );
        assert_eq!(
            response_status(65736, None, None),
            Err(InvalidStatus(65736))
        );
        assert_eq!(response_status(-1, None, None), Err(InvalidStatus(-1)));
    }

    #[test]
    fn the_cgi_status_header_is_recognised() {
        assert_eq!(
            status_header_value(b"Status: 404 Not Found"),
            Some(&b"404 Not Found"[..])
        );
        assert_eq!(status_header_value(b"status:201"), Some(&b"201"[..]));
        assert_eq!(status_header_value(b"Status-Code: 1"), None);
        assert_eq!(status_header_value(b"no colon"), None);
    }

    #[test]
    fn framing_headers_are_the_servers() {
        let mut h = HeaderMap::new();
        assert!(add_header_line(&mut h, b"Content-Length: 5").is_err());
        assert!(add_header_line(&mut h, b"Transfer-Encoding: chunked").is_err());
        assert!(add_header_line(&mut h, b"Connection: close").is_err());
        assert!(add_header_line(&mut h, b"no colon here").is_err());
        assert!(add_header_line(&mut h, b"Bad Name: x").is_err());
        assert!(h.is_empty());
    }
}
