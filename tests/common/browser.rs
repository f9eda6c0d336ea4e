//! A client that behaves as a browser does for one site: it keeps the cookies the site sets
//! and sends them back, and reaches a host name of the test's choosing (`*.localhost`) at
//! the test server's address, so an application sees the `Host` a real visitor sends. Its
//! [`CookieJar`] is the one `apps.rs`'s browser keeps too.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};

/// One visitor of the site at `origin`.
#[derive(Debug)]
pub(crate) struct Browser {
    client: reqwest::Client,
    /// `http://HOST:PORT`, without a trailing slash.
    pub origin: String,
    cookies: Mutex<CookieJar>,
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Page {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

impl Page {
    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }

    /// The `Location` header.
    pub(crate) fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// A header's value, or "".
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Browser {
    /// A browser that reaches `host` (a name, no port) at `addr`; its origin is
    /// `http://host:PORT` with `addr`'s port.
    pub(crate) fn new(host: &str, addr: SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, addr)
            .build()
            .unwrap();
        Self {
            client,
            origin: format!("http://{host}:{}", addr.port()),
            cookies: Mutex::default(),
        }
    }

    /// `origin` + `path` unless `path` is already absolute.
    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.origin)
        }
    }

    /// A request to `path` carrying the cookies; finish it with [`Browser::send`].
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match self.cookies.lock().unwrap().header() {
            Some(cookies) => request.header(COOKIE, cookies),
            None => request,
        }
    }

    /// Sends `request`, keeps the cookies it sets and reads the whole response.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Page {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        {
            let mut jar = self.cookies.lock().unwrap();
            for set_cookie in headers.get_all(SET_COOKIE) {
                jar.store(set_cookie.to_str().unwrap_or_default());
            }
        }
        let body = response.bytes().await.unwrap().to_vec();
        Page {
            status,
            headers,
            body,
        }
    }

    /// GET `path`.
    pub(crate) async fn get(&self, path: &str) -> Page {
        self.send(self.request(Method::GET, path)).await
    }

    /// POST `form` (urlencoded) to `path`.
    pub(crate) async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.request(Method::POST, path).form(form)).await
    }

    /// The value of cookie `name`, if set.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).map(str::to_owned)
    }

    /// The names of the cookies held.
    pub(crate) fn cookie_names(&self) -> Vec<String> {
        self.cookies
            .lock()
            .unwrap()
            .names()
            .map(str::to_owned)
            .collect()
    }
}

/// The cookies one site set, by name. Paths and domains are not told apart: one site, one
/// jar.
#[derive(Debug, Default)]
pub(crate) struct CookieJar(BTreeMap<String, String>);

impl CookieJar {
    /// The value of cookie `name`, if set.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The names of the cookies held.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The `Cookie` header that sends them all back, unless there are none.
    pub(crate) fn header(&self) -> Option<String> {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Keeps `name=value` of a `Set-Cookie` header, or forgets the cookie it expires (PHP
    /// sends `Max-Age=0` with every expiry in the past; some applications send `deleted`).
    pub(crate) fn store(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let expired = value.is_empty()
            || value == "deleted"
            || parts.any(|attribute| attribute.eq_ignore_ascii_case("max-age=0"));
        if expired {
            self.0.remove(name);
        } else {
            self.0.insert(name.to_owned(), value.to_owned());
        }
    }
}

/// The text between the first `start` in `text` and the next `end` after it.
pub(crate) fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}
