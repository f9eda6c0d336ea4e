//! For the framework application tests (tests/app_*.rs): a browser that keeps cookies, and
//! the check that the Debian packages the applications are built on are installed.

use std::path::Path;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::TestServer;
use super::browser::CookieJar;

/// Panics with the way to install them unless every one of `files` exists.
pub(crate) fn require_debian_packages(packages: &str, files: &[&str]) {
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !Path::new(f).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "Debian's {packages} missing ({}): run scripts/setup-test-deps.sh",
        missing.join(", ")
    );
}

/// One client: its own cookie jar, redirects not followed.
pub(crate) struct Browser<'a> {
    server: &'a TestServer,
    client: reqwest::Client,
    cookies: CookieJar,
}

/// A response, read whole.
pub(crate) struct Page<'a> {
    server: &'a TestServer,
    /// `METHOD path`, for messages.
    pub request: String,
    pub status: u16,
    /// The Location header.
    pub location: Option<String>,
    pub body: String,
}

impl<'a> Browser<'a> {
    /// A new client without cookies.
    pub(crate) fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            client: super::client(),
            cookies: CookieJar::default(),
        }
    }

    /// The value of a cookie the server set.
    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name)
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page<'a> {
        let request = self.client.get(self.server.url(path));
        self.send(format!("GET {path}"), request).await
    }

    /// POSTs `form` urlencoded.
    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page<'a> {
        let request = self.client.post(self.server.url(path)).form(form);
        self.send(format!("POST {path}"), request).await
    }

    async fn send(&mut self, name: String, mut request: reqwest::RequestBuilder) -> Page<'a> {
        if let Some(cookies) = self.cookies.header() {
            request = request.header(COOKIE, cookies);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}; log:\n{}", self.server.log()));
        for set in response.headers().get_all(SET_COOKIE) {
            self.cookies
                .store(set.to_str().expect("Set-Cookie is ASCII"));
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().expect("Location is ASCII").to_owned());
        let body = response.text().await.expect("a body");
        Page {
            server: self.server,
            request: name,
            status,
            location,
            body,
        }
    }
}

impl Page<'_> {
    /// Panics, with the body and the server's log, unless the status is `status`.
    pub(crate) fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status,
            status,
            "{}: body:\n{}\nlog:\n{}",
            self.request,
            self.body,
            self.server.log()
        );
        self
    }

    /// Panics unless this is a redirect (302 or 303) to a URL ending in `path`.
    pub(crate) fn expect_redirect(self, path: &str) -> Self {
        assert!(
            matches!(self.status, 302 | 303)
                && self.location.as_deref().is_some_and(|l| l.ends_with(path)),
            "{}: expected a redirect to {path}, got {} {:?}; body:\n{}\nlog:\n{}",
            self.request,
            self.status,
            self.location,
            self.body,
            self.server.log()
        );
        self
    }

    /// Panics unless the body contains `text`.
    pub(crate) fn expect_text(self, text: &str) -> Self {
        assert!(
            self.body.contains(text),
            "{}: no {text:?} in:\n{}",
            self.request,
            self.body
        );
        self
    }

    /// The body, parsed as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", self.request, self.body))
    }

    /// The value of the form field `name` (`name="NAME" value="VALUE"`) in the page.
    pub(crate) fn input_value(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("{}: no field {name} in:\n{}", self.request, self.body))
            + needle.len();
        let len = self.body[start..].find('"').expect("a closing quote");
        self.body[start..start + len].to_owned()
    }
}

/// The pages every application of the tests has: `/` naming the framework (`title`) and
/// tokio_php, `/hello/{name}` with the name escaped, and a 404 for an unknown route.
pub(crate) async fn check_pages(server: &TestServer, title: &str) {
    let mut visitor = Browser::new(server);
    visitor
        .get("/")
        .await
        .expect(200)
        .expect_text(title)
        .expect_text("on tokio_php");
    visitor
        .get("/hello/ada%3Cb%3E")
        .await
        .expect(200)
        .expect_text("Hello, ada&lt;b&gt;!");
    visitor.get("/no/such/route").await.expect(404);
}

/// A form of one field behind a CSRF token kept in the session.
pub(crate) struct CsrfForm<'f> {
    /// Where it is shown (GET) and posted (POST); a post redirects back to it.
    pub path: &'f str,
    /// Its field.
    pub field: &'f str,
    /// The session cookie's name.
    pub session_cookie: &'f str,
    /// The status of a post without a valid token.
    pub rejected: u16,
    /// The error shown after an empty value was posted.
    pub required: &'f str,
    /// The message shown after a value was saved.
    pub saved: &'f str,
}

/// Uses `form` as a browser does: takes the token from the page and posts it back with the
/// session cookie; a post without the token, or with it but without the session, is
/// rejected; an empty value comes back as an error shown once; then `value` is saved.
/// Returns the client, its token and the page shown after the save.
pub(crate) async fn check_csrf_form<'a>(
    server: &'a TestServer,
    form: &CsrfForm<'_>,
    value: &str,
) -> (Browser<'a>, String, Page<'a>) {
    let mut client = Browser::new(server);
    let token = client
        .get(form.path)
        .await
        .expect(200)
        .input_value("_token");
    assert!(
        client.cookie(form.session_cookie).is_some(),
        "no {} cookie",
        form.session_cookie
    );
    client
        .post(form.path, &[(form.field, "no token")])
        .await
        .expect(form.rejected);
    Browser::new(server)
        .post(form.path, &[("_token", &token), (form.field, "no session")])
        .await
        .expect(form.rejected);
    let mut submit = async |value: &str| {
        client
            .post(form.path, &[("_token", &token), (form.field, value)])
            .await
            .expect_redirect(form.path);
        client.get(form.path).await.expect(200)
    };
    submit("").await.expect_text(form.required);
    let saved = submit(value).await.expect_text(form.saved);
    let again = client.get(form.path).await.expect(200);
    for message in [form.required, form.saved] {
        assert!(!again.body.contains(message), "{message} shown twice");
    }
    (client, token, saved)
}

/// Two clients without cookies GET `/session` (JSON with `session`, `token`, `visits`):
/// two sessions, two tokens, a first visit each. Returns both answers.
pub(crate) async fn check_fresh_sessions(
    server: &TestServer,
) -> (serde_json::Value, serde_json::Value) {
    let first = Browser::new(server)
        .get("/session")
        .await
        .expect(200)
        .json();
    let second = Browser::new(server)
        .get("/session")
        .await
        .expect(200)
        .json();
    assert_ne!(first["session"], second["session"]);
    assert_ne!(first["token"], second["token"]);
    for fresh in [&first, &second] {
        assert_eq!(fresh["visits"], 1, "{fresh}");
    }
    (first, second)
}
