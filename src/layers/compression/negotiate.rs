//! Choosing a content coding from `Accept-Encoding` (RFC 9110 §12.5.3).

use http::HeaderValue;

/// A coding this server can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
    /// `gzip`.
    Gzip,
}

impl Coding {
    /// In order of preference when the client likes several equally.
    pub const PREFERENCE: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    /// The token in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }
}

/// What the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The coding to use, if any is acceptable.
    pub coding: Option<Coding>,
    /// Whether an uncompressed body is acceptable (false after `identity;q=0`, or `*;q=0`
    /// without `identity`).
    pub identity_ok: bool,
}

/// Reads every `Accept-Encoding` value. No header: no coding, identity fine.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Negotiated {
    let mut explicit: [Option<f32>; 3] = [None; 3];
    let mut identity: Option<f32> = None;
    let mut any: Option<f32> = None;
    for value in values {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for item in text.split(',') {
            let mut params = item.split(';');
            let token = params.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let Some(q) = quality(params) else {
                continue; // a malformed q makes the item meaningless
            };
            let slot = if token.eq_ignore_ascii_case("br") {
                &mut explicit[0]
            } else if token.eq_ignore_ascii_case("zstd") {
                &mut explicit[1]
            } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                &mut explicit[2]
            } else if token.eq_ignore_ascii_case("identity") {
                &mut identity
            } else if token == "*" {
                &mut any
            } else {
                continue;
            };
            *slot = Some(q);
        }
    }
    let mut best: Option<(Coding, f32)> = None;
    for (coding, q) in Coding::PREFERENCE.into_iter().zip(explicit) {
        let q = q.or(any).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((coding, q));
        }
    }
    let identity_q = identity.or(any).unwrap_or(1.0);
    Negotiated {
        coding: best.map(|(coding, _)| coding),
        identity_ok: identity_q > 0.0,
    }
}

/// The `q` parameter (1 when absent); None when it is not a number from 0 to 1.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<f32> {
    let mut q = 1.0;
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            q = value
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))?;
        }
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(header: &'static str) -> Negotiated {
        negotiate([&HeaderValue::from_static(header)])
    }

    #[test]
    fn brotli_wins_ties() {
        assert_eq!(n("gzip, deflate, br, zstd").coding, Some(Coding::Brotli));
        assert_eq!(n("gzip, zstd").coding, Some(Coding::Zstd));
        assert_eq!(n("gzip").coding, Some(Coding::Gzip));
        assert_eq!(n("x-gzip").coding, Some(Coding::Gzip));
        assert_eq!(n("*").coding, Some(Coding::Brotli));
        assert_eq!(n("BR").coding, Some(Coding::Brotli));
    }

    #[test]
    fn q_values_decide() {
        assert_eq!(n("br;q=0.5, gzip;q=0.8").coding, Some(Coding::Gzip));
        assert_eq!(n("br;q=0, gzip").coding, Some(Coding::Gzip));
        assert_eq!(n("gzip;q=0.1, *;q=0.5").coding, Some(Coding::Brotli));
        assert_eq!(n("*;q=0.5, br;q=0").coding, Some(Coding::Zstd));
        assert_eq!(n("br;q=0, zstd;q=0, gzip;q=0").coding, None);
        assert_eq!(n("deflate, compress").coding, None);
        assert_eq!(n("gzip;q=2").coding, None, "q above 1 is malformed");
        assert_eq!(n("gzip;q=x").coding, None);
        assert_eq!(n("gzip ; q = 0.3").coding, Some(Coding::Gzip));
    }

    #[test]
    fn identity_refusal_is_seen() {
        assert!(n("gzip").identity_ok);
        assert!(!n("gzip, identity;q=0").identity_ok);
        assert!(!n("gzip, *;q=0").identity_ok);
        assert!(n("gzip, identity, *;q=0").identity_ok);
        let none = negotiate(std::iter::empty());
        assert_eq!(none.coding, None);
        assert!(none.identity_ok);
    }

    #[test]
    fn several_header_lines_combine() {
        let a = HeaderValue::from_static("gzip");
        let b = HeaderValue::from_static("br;q=0.9");
        assert_eq!(negotiate([&a, &b]).coding, Some(Coding::Gzip));
    }
}
