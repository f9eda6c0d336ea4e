//! The request's identity: its id (`X-Request-ID`) and its place in a W3C trace
//! (`traceparent`). [`crate::layers::request_id`] sets both on every request; the PHP
//! service passes the id to PHP as `$_SERVER['REQUEST_ID']`.

use std::fmt::Write as _;

use http::{HeaderName, HeaderValue};

/// The `X-Request-ID` header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The longest request id kept from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Request extension: the request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id, if `value` is a sane one: 1 to 128 bytes of printable ASCII.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        is_sane(value.as_bytes()).then(|| Self(value.clone()))
    }

    /// A new random id (UUID version 4 format).
    pub fn generate() -> Self {
        let bits = fastrand::u128(..);
        // Version 4, variant 10xx, as in RFC 9562.
        let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        Self(HeaderValue::from_bytes(&uuid_text(bits)).unwrap_or(HeaderValue::from_static("-")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Request extension: where this request sits in a W3C trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, as the caller named it.
    pub trace_id: [u8; 16],
    /// The caller's span: this server's parent.
    pub parent_id: [u8; 8],
    /// This server's span for the request.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled), passed on unchanged.
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` value (`00-<trace>-<parent>-<flags>`) and starts a new span
    /// under it. None if it is not valid (an invalid one is ignored, as the spec says).
    pub fn from_traceparent(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let mut parts = text.splitn(5, '-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        let version = u8::from_str_radix(version, 16).ok()?;
        // Version 00 has exactly four fields; later versions may append more.
        if version == 0 && rest.is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let parent_id: [u8; 8] = hex_bytes(parent)?;
        let [flags] = hex_bytes::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            span_id: new_span_id(),
            flags,
        })
    }

    /// The trace id in lower-case hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// This server's span id in lower-case hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// The `traceparent` to pass on: this server's span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Exactly `2 * N` lower-case hex digits.
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N
        || !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// `bits` as a UUID's text: 8-4-4-4-12 lowercase hex digits, written without formatting
/// machinery (this runs on every request).
fn uuid_text(bits: u128) -> [u8; 36] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; 36];
    let mut nibble = 0;
    for (i, byte) in text.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        *byte = DIGITS[((bits >> (124 - 4 * nibble)) & 0xf) as usize];
        nibble += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_printable_ascii_up_to_128_bytes() {
        assert!(is_sane(b"abc-123"));
        assert!(is_sane(b"with space and {json:1}"));
        assert!(is_sane(&[b'a'; 128]));
        assert!(!is_sane(&[b'a'; 129]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"tab\there"));
        assert!(!is_sane("caf\u{e9}".as_bytes()));
        assert!(!is_sane(b"del\x7f"));
    }

    #[test]
    fn uuid_text_is_the_hex_digits_in_groups() {
        let bits = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(&uuid_text(bits), b"01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(&uuid_text(u128::MAX)[..9], b"ffffffff-");
    }

    #[test]
    fn generated_ids_look_like_uuids_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        let text = a.as_str();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "{text}");
        assert!("89ab".contains(&text[19..20]), "{text}");
        assert!(is_sane(text.as_bytes()));
    }

    #[test]
    fn traceparent_parses_by_the_spec() {
        let t = TraceContext::from_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(t.flags, 1);
        assert_ne!(t.span_id, t.parent_id);
        let passed_on = t.traceparent();
        assert!(passed_on.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(passed_on.ends_with("-01"));
        assert!(passed_on.contains(&t.span_id_hex()));
        // A later version may carry more fields.
        assert!(
            TraceContext::from_traceparent(
                b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
            )
            .is_some()
        );
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"garbage",
            b"",
        ] {
            assert!(
                TraceContext::from_traceparent(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
