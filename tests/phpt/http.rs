//! A small blocking HTTP/1.1 client: one request per connection (`Connection: close`),
//! so any server (tokio_php, nginx) answers it the same way and a dead server shows as a
//! failed connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A request to send.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// `GET`, `POST`, `PUT`.
    pub method: String,
    /// The request target, already encoded (`/dir/test.php?a=1`).
    pub target: String,
    /// Extra headers; values are bytes (tests send raw ones).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (sent with a Content-Length when the method has one).
    pub body: Option<Vec<u8>>,
}

/// A response as received.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase from the status line.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum Error {
    /// The connection failed, or closed before a complete response (a dead server).
    Connection(std::io::Error),
    /// No complete response within the timeout.
    Timeout,
    /// What came back is not HTTP.
    Malformed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connection(e) => write!(f, "connection failed: {e}"),
            Self::Timeout => write!(f, "no response in time"),
            Self::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

/// Sends `request` to `addr` and reads the whole response.
pub(crate) fn send(
    addr: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> Result<Response, Error> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(Error::Connection)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(Error::Connection)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(Error::Connection)?;
    let mut bytes = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
        request.method,
        request.target,
        addr.port()
    )
    .into_bytes();
    for (name, value) in &request.headers {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    if let Some(body) = &request.body {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    if let Some(body) = &request.body {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes).map_err(io_error)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io_error)?;
    parse(&raw)
}

fn io_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::Connection(e),
    }
}

/// Parses a complete response read until the server closed the connection.
fn parse(raw: &[u8]) -> Result<Response, Error> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(if raw.is_empty() {
            Error::Connection(std::io::ErrorKind::UnexpectedEof.into())
        } else {
            Error::Malformed("no end of head".into())
        });
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (_, code, reason) = (parts.next(), parts.next(), parts.next());
    let status = code
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Malformed(format!("status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if rest.len() < len {
            return Err(Error::Connection(std::io::ErrorKind::UnexpectedEof.into()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        reason: reason.unwrap_or_default().to_owned(),
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Err(Error::Connection(std::io::ErrorKind::UnexpectedEof.into()));
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Error::Malformed(format!("chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(Error::Connection(std::io::ErrorKind::UnexpectedEof.into()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Percent-encodes what may not stand in a request target as it is (controls, space,
/// non-ASCII, `"<>\^`{|}`), leaving everything PHP's own parsing reads (`%`, `&`, `=`, `+`,
/// `[`, `]`) alone.
pub(crate) fn encode_target(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}#".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let r = parse(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\ncontent-length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"));
        assert_eq!(r.body, b"abc");
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
            Err(Error::Connection(_))
        ));
        assert!(matches!(parse(b""), Err(Error::Connection(_))));
    }

    #[test]
    fn targets_keep_what_php_parses() {
        assert_eq!(encode_target(b"a=1&b[]=x y+z%20"), "a=1&b[]=x%20y+z%20");
        assert_eq!(encode_target("é\"#".as_bytes()), "%C3%A9%22%23");
    }
}
