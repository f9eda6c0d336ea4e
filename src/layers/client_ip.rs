//! Who the client is: the peer address of the connection, or — only when that peer is a
//! trusted proxy — the right-most address in `X-Forwarded-For` (or, without it, `Forwarded`)
//! that is not itself a trusted proxy. Anything to the left of that address was written by
//! the client and proves nothing, so sending the header never changes who you are.
//!
//! Not a layer: the rate limit and the access log both ask it.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use tokio_php::ConnectionInfo;
//! use tokio_php::layers::client_ip::{TrustedProxies, client_ip, client_ip_from};
//!
//! let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
//! let mut request = Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(ConnectionInfo {
//!     remote: "10.0.0.1:40000".parse().unwrap(),
//!     local: "10.0.0.9:8080".parse().unwrap(),
//!     tls: false,
//! });
//! // The peer and 10.0.0.2 are trusted proxies; 6.6.6.6 is what the client wrote.
//! assert_eq!(client_ip(&request, &trusted), Some("203.0.113.7".parse().unwrap()));
//!
//! // The same header from a peer that is not a trusted proxy proves nothing.
//! let peer = "198.51.100.4".parse().unwrap();
//! assert_eq!(client_ip_from(peer, request.headers(), &trusted), peer);
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::{HeaderMap, Request, header};

use crate::context::ConnectionInfo;

/// The `X-Forwarded-For` header.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a prefix length outside 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose forwarding headers are believed. Empty by default: nobody's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// No proxy is trusted: the client is always the peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts these blocks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(nets.into_iter().collect())
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The blocks.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated addresses and CIDR blocks: `10.0.0.0/8, 192.168.1.1, ::1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }
}

/// The connection's peer address: from [`ConnectionInfo`] (set by [`crate::server`]) or
/// axum's `ConnectInfo<SocketAddr>`.
pub fn peer_addr<B>(request: &Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectionInfo>()
        .map(|c| c.remote)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr)
        })
}

/// The client's address for `request`, or None when the request carries no peer address.
pub fn client_ip<B>(request: &Request<B>, trusted: &TrustedProxies) -> Option<IpAddr> {
    peer_addr(request).map(|peer| client_ip_from(peer.ip(), request.headers(), trusted))
}

/// The client's address given the peer and the headers: see the module docs.
pub fn client_ip_from(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            // An entry that is not an address: what lies left of it cannot be trusted, so
            // the client is the last proxy that could be.
            None => return client,
            Some(ip) => {
                client = *ip;
                if !trusted.contains(*ip) {
                    return client;
                }
            }
        }
    }
    client
}

/// The addresses a request passed through, client first, from `X-Forwarded-For` or else
/// `Forwarded` (`for=`). An entry that is not an address is None.
pub fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<Option<IpAddr>> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| {
            v.to_str()
                .map_or_else(|_| vec![""], |s| s.split(',').collect())
        })
        .map(|item| parse_node(item.trim()))
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all(header::FORWARDED)
        .iter()
        .flat_map(|v| {
            v.to_str()
                .map_or_else(|_| vec![""], |s| s.split(',').collect())
        })
        .map(|element| {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            node.and_then(parse_node)
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80` → the address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.1.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        let one: IpNet = "192.168.1.1".parse().unwrap();
        assert!(one.contains(ip("192.168.1.1")) && !one.contains(ip("192.168.1.2")));
        let odd: IpNet = "172.16.0.0/12".parse().unwrap();
        assert!(odd.contains(ip("172.31.255.255")) && !odd.contains(ip("172.32.0.0")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "host",
            "10.0.0.0/x",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_lists_parse() {
        let t: TrustedProxies = " 10.0.0.0/8 , ::1,".parse().unwrap();
        assert_eq!(t.nets().len(), 2);
        assert!(t.contains(ip("::1")) && t.contains(ip("10.0.0.1")));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("10.0.0.0/8, nope".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(client_ip_from(ip("5.5.5.5"), &h, &trusted), ip("5.5.5.5"));
        assert_eq!(
            client_ip_from(ip("5.5.5.5"), &h, &TrustedProxies::none()),
            ip("5.5.5.5")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let peer = ip("10.0.0.1");
        // The client wrote 6.6.6.6 itself; the proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(client_ip_from(peer, &h, &trusted), ip("203.0.113.7"));
        // Split over two header lines, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7:5555"),
        ]);
        assert_eq!(client_ip_from(peer, &h, &trusted), ip("203.0.113.7"));
        // Every hop trusted: the left-most one.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(client_ip_from(peer, &h, &trusted), ip("10.1.1.1"));
        // Garbage before an untrusted hop: the last trusted hop is all we know.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, garbage, 10.0.0.2")]);
        assert_eq!(client_ip_from(peer, &h, &trusted), ip("10.0.0.2"));
        // No header: the proxy itself.
        assert_eq!(client_ip_from(peer, &HeaderMap::new(), &trusted), peer);
    }

    #[test]
    fn forwarded_is_read_without_x_forwarded_for() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3",
        )]);
        assert_eq!(
            client_ip_from(ip("10.0.0.1"), &h, &trusted),
            ip("2001:db8::7")
        );
        let h = headers(&[("forwarded", "for=unknown, For=192.0.2.60;by=10.0.0.1")]);
        assert_eq!(
            client_ip_from(ip("10.0.0.1"), &h, &trusted),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn nodes_parse_in_every_spelling() {
        assert_eq!(parse_node("1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("::1"), Some(ip("::1")));
        assert_eq!(parse_node("[::1]"), Some(ip("::1")));
        assert_eq!(parse_node("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_node("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(parse_node(""), None);
    }
}
