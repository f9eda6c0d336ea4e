//! A request as PHP will see it: the SAPI fields and `$_SERVER`, filled as php-fpm behind
//! nginx fills them (`fastcgi_params` plus every request header as `HTTP_*`).

use std::ffi::CString;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::{Method, Version};

use crate::context::ConnectionInfo;
use crate::docroot::ScriptMatch;
use crate::ffi::{ExecRequest, ServerVars};

/// The parts of an HTTP request that PHP sees, borrowed while a [`PhpRequest`] is built.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// HTTP version.
    pub version: Version,
    /// Path and query as the client sent them (before any mount prefix was stripped).
    pub original_path_and_query: &'a str,
    /// The query, without `?`.
    pub query: &'a str,
    /// The request target's authority: HTTP/2's `:authority`, or an HTTP/1 absolute-form
    /// target's (`GET http://example.com/ HTTP/1.1`). When present it is the host PHP sees,
    /// as behind nginx, whatever the Host header says (RFC 9112 §3.2.2).
    pub authority: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// URL path under which this service is mounted (empty at the root).
    pub mount_prefix: &'a str,
    /// The connection, when known.
    pub connection: Option<ConnectionInfo>,
    /// The request id ([`crate::layers::request_id`]), given to PHP as `REQUEST_ID`.
    pub request_id: Option<&'a str>,
    /// `$_SERVER['SERVER_SOFTWARE']` ([`crate::config::ENV_SERVER_SOFTWARE`]).
    pub server_software: &'a str,
}

/// A request ready for a PHP worker.
#[derive(Debug)]
pub struct PhpRequest {
    method: CString,
    request_uri: CString,
    query_string: CString,
    script_filename: CString,
    content_type: Option<CString>,
    content_length: Option<u64>,
    cookie: Option<CString>,
    authorization: Option<CString>,
    proto_num: i32,
    headers_only: bool,
    request_time: f64,
    server_vars: ServerVars,
    request_id: String,
    tag: String,
}

/// A request PHP cannot be given (a NUL byte where C needs a string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request field {0} contains a NUL byte")]
pub struct InvalidRequest(pub &'static str);

fn cstring(field: &'static str, bytes: impl Into<Vec<u8>>) -> Result<CString, InvalidRequest> {
    CString::new(bytes).map_err(|_| InvalidRequest(field))
}

impl PhpRequest {
    /// Builds the request for `script` under `document_root`, with `content_length` the
    /// size of the received body (None when there is none).
    pub fn new(
        parts: RequestParts<'_>,
        script: &ScriptMatch,
        document_root: &str,
        content_length: Option<u64>,
    ) -> Result<Self, InvalidRequest> {
        let request_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let headers = parts.headers;
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        let cookie = joined(headers, header::COOKIE, b"; ");
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let script_filename = script.script_filename.to_string_lossy();
        let script_name = format!("{}{}", parts.mount_prefix, script.script_name);
        let path_info = script.path_info.as_deref();
        let (protocol, proto_num) = match parts.version {
            Version::HTTP_09 => ("HTTP/0.9", 900),
            Version::HTTP_10 => ("HTTP/1.0", 1000),
            Version::HTTP_2 => ("HTTP/2.0", 2000),
            Version::HTTP_3 => ("HTTP/3.0", 3000),
            _ => ("HTTP/1.1", 1001),
        };
        let host = parts
            .authority
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        let server_name = host_without_port(host);
        let tls = parts.connection.is_some_and(|c| c.tls);
        let length_text = content_length.map(|n| n.to_string()).unwrap_or_default();

        let mut vars = ServerVars::with_capacity(32 + headers.len());
        vars.push(b"QUERY_STRING", parts.query.as_bytes());
        vars.push(b"REQUEST_METHOD", parts.method.as_str().as_bytes());
        vars.push(b"CONTENT_TYPE", content_type.unwrap_or_default());
        vars.push(b"CONTENT_LENGTH", length_text.as_bytes());
        vars.push(b"SCRIPT_NAME", script_name.as_bytes());
        vars.push(b"SCRIPT_FILENAME", script_filename.as_bytes());
        vars.push(b"REQUEST_URI", parts.original_path_and_query.as_bytes());
        let document_uri = format!("{script_name}{}", path_info.unwrap_or(""));
        vars.push(b"DOCUMENT_URI", document_uri.as_bytes());
        vars.push(b"DOCUMENT_ROOT", document_root.as_bytes());
        vars.push(b"SERVER_PROTOCOL", protocol.as_bytes());
        vars.push(b"REQUEST_SCHEME", if tls { b"https" } else { b"http" });
        if tls {
            vars.push(b"HTTPS", b"on");
        }
        vars.push(b"GATEWAY_INTERFACE", b"CGI/1.1");
        vars.push(b"SERVER_SOFTWARE", parts.server_software.as_bytes());
        if let Some(conn) = parts.connection {
            vars.push(b"REMOTE_ADDR", conn.remote.ip().to_string().as_bytes());
            vars.push(b"REMOTE_PORT", conn.remote.port().to_string().as_bytes());
            vars.push(b"SERVER_ADDR", conn.local.ip().to_string().as_bytes());
            vars.push(b"SERVER_PORT", conn.local.port().to_string().as_bytes());
        }
        vars.push(b"SERVER_NAME", server_name.as_bytes());
        vars.push(b"REDIRECT_STATUS", b"200");
        if let Some(info) = path_info {
            vars.push(b"PATH_INFO", info.as_bytes());
            vars.push(
                b"PATH_TRANSLATED",
                format!("{document_root}{info}").as_bytes(),
            );
        }
        vars.push(b"PHP_SELF", document_uri.as_bytes());
        if let Some(id) = parts.request_id {
            vars.push(b"REQUEST_ID", id.as_bytes());
        }
        push_http_headers(&mut vars, headers, parts.authority);

        let request_id = vars
            .get("REQUEST_ID")
            .and_then(|id| std::str::from_utf8(id).ok())
            .map_or_else(generate_request_id, str::to_owned);
        let tag = format!("{} {}", parts.method, parts.original_path_and_query);
        Ok(Self {
            method: cstring("method", parts.method.as_str())?,
            request_uri: cstring("request_uri", parts.original_path_and_query)?,
            query_string: cstring("query_string", parts.query)?,
            script_filename: cstring("script_filename", script_filename.as_bytes())?,
            content_type: content_type
                .map(|v| cstring("content_type", v))
                .transpose()?,
            content_length,
            cookie: cookie.map(|v| cstring("cookie", v)).transpose()?,
            authorization: authorization
                .map(|v| cstring("authorization", v))
                .transpose()?,
            proto_num,
            headers_only: parts.method == Method::HEAD,
            request_time,
            server_vars: vars,
            request_id,
            tag,
        })
    }

    /// The request id (`tokio_request_id()`): `$_SERVER['REQUEST_ID']` when a layer set it,
    /// otherwise one made here.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// `METHOD /path?query`, for log lines about this request.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `$_SERVER` as it will be registered.
    pub fn server_vars(&self) -> &ServerVars {
        &self.server_vars
    }

    /// The borrowed form the FFI layer hands to the shim.
    pub(crate) fn exec(&self) -> ExecRequest<'_> {
        ExecRequest {
            method: &self.method,
            request_uri: &self.request_uri,
            query_string: &self.query_string,
            script_filename: &self.script_filename,
            content_type: self.content_type.as_deref(),
            content_length: self.content_length,
            cookie: self.cookie.as_deref(),
            authorization: self.authorization.as_deref(),
            proto_num: self.proto_num,
            headers_only: self.headers_only,
            request_time: self.request_time,
            server_vars: &self.server_vars,
        }
    }
}

/// Every header as `HTTP_NAME`, repeated headers joined with ", " (cookies with "; ").
///
/// Only names of letters, digits and `-` are passed, as nginx's `ignore_invalid_headers`
/// does: PHP would turn `.`, ` `, `_` and `[` into `_` (or an array), so `X.Forwarded.For`
/// or `X_Forwarded_For` could pose as `X-Forwarded-For` and override it. With that alphabet
/// (and names already in lower case) no two names give the same `HTTP_*` variable. `Proxy`
/// is skipped against httpoxy. The target's authority, when there is one, is `HTTP_HOST`.
fn push_http_headers(vars: &mut ServerVars, headers: &HeaderMap, authority: Option<&str>) {
    if let Some(authority) = authority {
        vars.push(b"HTTP_HOST", authority.as_bytes());
    }
    for name in headers.keys() {
        let n = name.as_str();
        let plain = n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !plain || n == "proxy" || (authority.is_some() && name == header::HOST) {
            continue;
        }
        let separator: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
        let Some(value) = joined(headers, name.clone(), separator) else {
            continue;
        };
        vars.push_with(
            |out| {
                out.extend_from_slice(b"HTTP_");
                out.extend(n.bytes().map(|b| {
                    if b == b'-' {
                        b'_'
                    } else {
                        b.to_ascii_uppercase()
                    }
                }));
            },
            &value,
        );
    }
}

fn joined(headers: &HeaderMap, name: header::HeaderName, separator: &[u8]) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let mut out = values.next()?.as_bytes().to_vec();
    for v in values {
        out.extend_from_slice(separator);
        out.extend_from_slice(v.as_bytes());
    }
    Some(out)
}

/// A process-unique id: the time in microseconds and a counter, in hex.
fn generate_request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    format!("{micros:x}-{n:x}")
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub(crate) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn build(headers: &HeaderMap, version: Version, authority: Option<&str>) -> PhpRequest {
        let script = ScriptMatch {
            script_filename: PathBuf::from("/srv/public/index.php"),
            script_name: "/index.php".into(),
            path_info: Some("/users/42".into()),
            alias_root: None,
        };
        let parts = RequestParts {
            method: &Method::POST,
            version,
            original_path_and_query: "/index.php/users/42?x=1",
            query: "x=1",
            authority,
            headers,
            mount_prefix: "",
            connection: Some(ConnectionInfo {
                remote: "10.0.0.1:5555".parse().unwrap(),
                local: "127.0.0.1:8080".parse().unwrap(),
                tls: true,
            }),
            request_id: Some("req-1"),
            server_software: "nginx (test)",
        };
        PhpRequest::new(parts, &script, "/srv/public", Some(3)).unwrap()
    }

    fn var<'a>(r: &'a PhpRequest, name: &str) -> Option<&'a str> {
        r.server_vars()
            .get(name)
            .map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn server_vars_match_php_fpm() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com:8080".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        headers.append("x-multi", "1".parse().unwrap());
        headers.append("x-multi", "2".parse().unwrap());
        headers.insert("x_spoof", "1".parse().unwrap());
        headers.insert("proxy", "evil".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        let r = build(&headers, Version::HTTP_11, None);
        assert_eq!(var(&r, "REQUEST_URI"), Some("/index.php/users/42?x=1"));
        assert_eq!(var(&r, "SCRIPT_NAME"), Some("/index.php"));
        assert_eq!(var(&r, "PATH_INFO"), Some("/users/42"));
        assert_eq!(var(&r, "PHP_SELF"), Some("/index.php/users/42"));
        assert_eq!(var(&r, "PATH_TRANSLATED"), Some("/srv/public/users/42"));
        assert_eq!(var(&r, "SERVER_NAME"), Some("example.com"));
        assert_eq!(var(&r, "SERVER_PORT"), Some("8080"));
        assert_eq!(var(&r, "REMOTE_ADDR"), Some("10.0.0.1"));
        assert_eq!(var(&r, "HTTPS"), Some("on"));
        assert_eq!(var(&r, "REQUEST_SCHEME"), Some("https"));
        assert_eq!(var(&r, "CONTENT_LENGTH"), Some("3"));
        assert_eq!(var(&r, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(var(&r, "HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(var(&r, "HTTP_X_MULTI"), Some("1, 2"));
        assert_eq!(var(&r, "HTTP_X_SPOOF"), None);
        assert_eq!(var(&r, "HTTP_PROXY"), None);
        assert_eq!(var(&r, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(var(&r, "REQUEST_ID"), Some("req-1"));
        assert_eq!(var(&r, "SERVER_SOFTWARE"), Some("nginx (test)"));
        assert_eq!(r.cookie.as_deref().unwrap().to_str().unwrap(), "a=1; b=2");
    }

    #[test]
    fn http2_takes_host_from_the_authority() {
        let r = build(&HeaderMap::new(), Version::HTTP_2, Some("example.org"));
        assert_eq!(var(&r, "HTTP_HOST"), Some("example.org"));
        assert_eq!(var(&r, "SERVER_NAME"), Some("example.org"));
        assert_eq!(var(&r, "SERVER_PROTOCOL"), Some("HTTP/2.0"));
    }

    #[test]
    fn an_absolute_target_names_the_host_over_the_host_header() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "other.example".parse().unwrap());
        let r = build(&headers, Version::HTTP_11, Some("example.org:8443"));
        assert_eq!(var(&r, "HTTP_HOST"), Some("example.org:8443"));
        assert_eq!(var(&r, "SERVER_NAME"), Some("example.org"));
        assert_eq!(
            r.server_vars()
                .iter()
                .filter(|(n, _)| *n == b"HTTP_HOST")
                .count(),
            1
        );
    }

    #[test]
    fn only_plain_header_names_reach_server_vars() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        headers.insert("x.forwarded.for", "6.6.6.6".parse().unwrap());
        headers.insert("x_forwarded_for", "6.6.6.6".parse().unwrap());
        headers.insert("foo-bar", "y".parse().unwrap());
        headers.insert("foo.bar", "x".parse().unwrap());
        headers.insert("x~y", "1".parse().unwrap());
        let r = build(&headers, Version::HTTP_11, None);
        let http: Vec<(String, String)> = r
            .server_vars()
            .iter()
            .filter(|(n, _)| n.starts_with(b"HTTP_"))
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            http,
            [
                ("HTTP_X_FORWARDED_FOR".to_owned(), "1.1.1.1".to_owned()),
                ("HTTP_FOO_BAR".to_owned(), "y".to_owned())
            ]
        );
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("a.b:80"), "a.b");
        assert_eq!(host_without_port("a.b"), "a.b");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }
}
