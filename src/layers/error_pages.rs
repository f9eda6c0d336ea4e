//! Custom error pages: `{status}.html` files from a directory, loaded and checked once at
//! startup, served for 4xx and 5xx responses that have nothing better to show.
//!
//! A response is given its page when the client accepts `text/html` (named, or `text/*`;
//! a bare `*/*` is taken as an API client) and the response is either one the server made
//! itself (it carries [`ServerMadeError`]: 404, 413, 503, a 500 after a fatal error, …) or
//! came from PHP with an empty body. A PHP response with a body is never replaced, and
//! clients that do not accept HTML get PHP's response as it is, an empty body included, as
//! nginx passes it on (`fastcgi_intercept_errors off`); the server's own errors are plain
//! text for them.
//!
//! The layers that answer errors from further out (request timeout, rate limit) get the
//! same pages through [`ErrorPageSet`]'s [`ErrorResponder`] implementation.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, response::IntoResponse};
//! use http::{Request, StatusCode, header};
//! use tower::{Layer, ServiceExt};
//! use tokio_php::layers::ErrorPagesLayer;
//! use tokio_php::layers::error_pages::ErrorPageSet;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pages = ErrorPageSet::from_pages([(StatusCode::NOT_FOUND, "<h1>Nothing here</h1>")]);
//! // Or, at startup: ErrorPageSet::load("./errors")?
//! // The inner service (PHP, say) answers an empty 404.
//! let service = ErrorPagesLayer::new(pages).layer(tower::service_fn(|_: Request<Body>| async {
//!     Ok::<_, std::convert::Infallible>(StatusCode::NOT_FOUND.into_response())
//! }));
//! let browser = Request::get("/missing").header(header::ACCEPT, "text/html").body(Body::empty())?;
//! let response = service.oneshot(browser).await?;
//! assert_eq!(response.status(), StatusCode::NOT_FOUND);
//! assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
//! let page = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
//! assert_eq!(page, "<h1>Nothing here</h1>");
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error_response::{ErrorResponder, ServerMadeError, error_response};

/// The largest error page accepted.
pub const MAX_PAGE_SIZE: u64 = 1024 * 1024;

/// Why the error pages could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ErrorPagesError {
    /// The directory cannot be listed.
    #[error("error pages directory {path} cannot be read: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A page cannot be read.
    #[error("error page {path} cannot be read: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A page is larger than [`MAX_PAGE_SIZE`].
    #[error("error page {path} is {size} bytes; the most accepted is {MAX_PAGE_SIZE}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// The loaded pages, by status. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ErrorPageSet {
    pages: Arc<HashMap<StatusCode, Bytes>>,
}

impl ErrorPageSet {
    /// No pages: every error stays plain text.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Pages given directly.
    pub fn from_pages<P: Into<Bytes>>(pages: impl IntoIterator<Item = (StatusCode, P)>) -> Self {
        Self {
            pages: Arc::new(pages.into_iter().map(|(s, p)| (s, p.into())).collect()),
        }
    }

    /// Loads every `{status}.html` (400–599) from `dir`. Other files are ignored; a file
    /// that cannot be read is an error naming it.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, ErrorPagesError> {
        let dir = dir.as_ref();
        let entries = std::fs::read_dir(dir).map_err(|source| ErrorPagesError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut pages = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| ErrorPagesError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
            let name = entry.file_name();
            let Some(status) = name.to_str().and_then(status_of_file_name) else {
                continue;
            };
            let path = entry.path();
            let file_error = |source| ErrorPagesError::File {
                path: path.clone(),
                source,
            };
            let size = std::fs::metadata(&path).map_err(file_error)?.len();
            if size > MAX_PAGE_SIZE {
                return Err(ErrorPagesError::TooLarge { path, size });
            }
            let page = std::fs::read(&path).map_err(file_error)?;
            pages.insert(status, Bytes::from(page));
        }
        Ok(Self {
            pages: Arc::new(pages),
        })
    }

    /// The page for `status`.
    pub fn get(&self, status: StatusCode) -> Option<&Bytes> {
        self.pages.get(&status)
    }

    /// The statuses that have a page, in order.
    pub fn statuses(&self) -> Vec<u16> {
        let mut statuses: Vec<u16> = self.pages.keys().map(StatusCode::as_u16).collect();
        statuses.sort_unstable();
        statuses
    }

    /// The HTML page for `status`, if there is one and the client accepts HTML.
    fn html_for(&self, status: StatusCode, accept: Option<&HeaderValue>) -> Option<Bytes> {
        if !accepts_html(accept) {
            return None;
        }
        self.get(status).cloned()
    }
}

impl ErrorResponder for ErrorPageSet {
    fn respond(&self, status: StatusCode, accept: Option<&HeaderValue>) -> Response {
        let mut response = error_response(status);
        if let Some(page) = self.html_for(status, accept) {
            set_html(&mut response, page);
        }
        response
    }
}

/// `404.html` → 404, for 400–599 only.
fn status_of_file_name(name: &str) -> Option<StatusCode> {
    let code = name.strip_suffix(".html")?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let status = StatusCode::from_bytes(code.as_bytes()).ok()?;
    (status.is_client_error() || status.is_server_error()).then_some(status)
}

/// Whether an `Accept` header names `text/html` or `text/*` with a non-zero quality.
pub fn accepts_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        let html = media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("text/*");
        html && params.all(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return true;
            };
            !name.trim().eq_ignore_ascii_case("q")
                || value.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
        })
    })
}

fn set_html(response: &mut Response, page: Bytes) {
    *response.body_mut() = Body::from(page);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
}

/// Applies [`ErrorPages`] to a service.
#[derive(Debug, Clone, Default)]
pub struct ErrorPagesLayer {
    pages: ErrorPageSet,
}

impl ErrorPagesLayer {
    /// Serves `pages`.
    pub fn new(pages: ErrorPageSet) -> Self {
        Self { pages }
    }
}

impl<S> Layer<S> for ErrorPagesLayer {
    type Service = ErrorPages<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorPages::new(inner, self.pages.clone())
    }
}

/// Gives error responses without content a page (or plain text).
#[derive(Debug, Clone)]
pub struct ErrorPages<S> {
    inner: S,
    pages: ErrorPageSet,
}

impl<S> ErrorPages<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, pages: ErrorPageSet) -> Self {
        Self { inner, pages }
    }
}

impl<S, B> Service<Request<B>> for ErrorPages<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let head = request.method() == Method::HEAD;
        let accept = request.headers().get(header::ACCEPT).cloned();
        ResponseFuture {
            future: self.inner.call(request),
            pages: self.pages.clone(),
            accept,
            head,
        }
    }
}

pin_project! {
    /// The future of [`ErrorPages`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        pages: ErrorPageSet,
        accept: Option<HeaderValue>,
        head: bool,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        let status = response.status();
        if *this.head || !(status.is_client_error() || status.is_server_error()) {
            return Poll::Ready(Ok(response));
        }
        let server_made = response.extensions().get::<ServerMadeError>().is_some();
        let body = response.body();
        let empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
        if !server_made && !empty {
            return Poll::Ready(Ok(response));
        }
        if let Some(page) = this.pages.html_for(status, this.accept.as_ref()) {
            set_html(&mut response, page);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn pages() -> ErrorPageSet {
        ErrorPageSet::from_pages([
            (StatusCode::NOT_FOUND, "<p>404 page</p>"),
            (StatusCode::INTERNAL_SERVER_ERROR, "<p>500 page</p>"),
        ])
    }

    async fn call(response: fn() -> Response, accept: &str, method: Method) -> (Response, String) {
        let service = ErrorPagesLayer::new(pages()).layer(tower::service_fn(
            move |_: Request<Body>| async move { Ok::<_, Infallible>(response()) },
        ));
        let request = Request::builder()
            .method(method)
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (Response::from_parts(parts, Body::empty()), text)
    }

    fn server_404() -> Response {
        error_response(StatusCode::NOT_FOUND)
    }

    fn empty_500() -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/html"));
        r
    }

    fn php_404_with_body() -> Response {
        let mut r = Response::new(Body::from("{\"error\":\"no such user\"}"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    }

    fn empty_418() -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::IM_A_TEAPOT;
        r
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[tokio::test]
    async fn browsers_get_the_page_for_server_errors_and_empty_ones() {
        let (r, body) = call(server_404, BROWSER, Method::GET).await;
        assert_eq!(r.status(), 404);
        assert_eq!(body, "<p>404 page</p>");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let (r, body) = call(empty_500, BROWSER, Method::GET).await;
        assert_eq!(r.status(), 500);
        assert_eq!(body, "<p>500 page</p>");
    }

    #[tokio::test]
    async fn a_php_body_is_never_replaced() {
        let (r, body) = call(php_404_with_body, BROWSER, Method::GET).await;
        assert_eq!(r.status(), 404);
        assert_eq!(body, "{\"error\":\"no such user\"}");
    }

    #[tokio::test]
    async fn others_get_the_servers_plain_text_and_phps_response_as_it_is() {
        let (_, body) = call(server_404, "*/*", Method::GET).await;
        assert_eq!(body, "404 Not Found\n");
        // PHP's empty error body stays empty, as nginx passes it on.
        let (r, body) = call(empty_500, "application/json", Method::GET).await;
        assert_eq!(body, "");
        assert_eq!(r.headers()["content-type"], "text/html");
        // No page for the status: PHP's response as it is, for browsers too.
        let (_, body) = call(empty_418, BROWSER, Method::GET).await;
        assert_eq!(body, "");
        // HEAD: untouched.
        let (_, body) = call(empty_500, BROWSER, Method::HEAD).await;
        assert_eq!(body, "");
    }

    #[test]
    fn html_acceptance_reads_q_values() {
        let h = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(accepts_html(h("text/html").as_ref()));
        assert!(accepts_html(h("TEXT/HTML;level=1").as_ref()));
        assert!(accepts_html(h("text/*;q=0.5").as_ref()));
        assert!(accepts_html(h(BROWSER).as_ref()));
        assert!(!accepts_html(h("text/html;q=0").as_ref()));
        assert!(!accepts_html(h("*/*").as_ref()));
        assert!(!accepts_html(h("application/json").as_ref()));
        assert!(!accepts_html(None));
    }

    #[test]
    fn only_status_named_html_files_are_pages() {
        assert_eq!(status_of_file_name("404.html"), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            status_of_file_name("503.html"),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(status_of_file_name("200.html"), None);
        assert_eq!(status_of_file_name("404.htm"), None);
        assert_eq!(status_of_file_name("4040.html"), None);
        assert_eq!(status_of_file_name("abc.html"), None);
    }

    #[test]
    fn loading_names_the_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("404.html"), "<p>gone</p>").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let set = ErrorPageSet::load(dir.path()).unwrap();
        assert_eq!(set.statuses(), [404]);
        // A directory named like a page cannot be read as one.
        std::fs::create_dir(dir.path().join("500.html")).unwrap();
        let err = ErrorPageSet::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("500.html"), "{err}");
        let err = ErrorPageSet::load(dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
