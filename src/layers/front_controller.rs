//! Single entry point: every request whose path names no file or directory of the document
//! root runs one script (`index.php`), as nginx's
//! `try_files $uri $uri/ /index.php?$query_string` does for Laravel, Symfony and WordPress.
//!
//! PHP sees `SCRIPT_NAME=/index.php`, the original `REQUEST_URI` and `QUERY_STRING`, and no
//! `PATH_INFO` — what those frameworks route on. Hidden files (`/.env`), paths leaving the
//! root and PHP source under other extensions still get 404, never the front controller;
//! so does a missing file under an alias (`ALIASES`), a location of its own as in nginx.
//! Build the layer with the PHP service's [`PathResolver`] ([`FrontControllerLayer::with_resolver`])
//! so both see the same aliases and symlink policy.
//!
//! The layer must wrap the document-root service directly, since it decides before
//! routing: it resolves the path once and hands its decision on in a [`ResolvedPath`]
//! extension.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use tower::ServiceExt;
//! use tokio_php::context::ResolvedPath;
//! use tokio_php::context::Resolution;
//! use tokio_php::layers::FrontControllerLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! std::fs::write(root.path().join("index.php"), "<?php echo 'front';")?;
//! let front = FrontControllerLayer::new(root.path(), "index.php")?;
//! // The inner service runs the script the layer chose: in a server, that is
//! // `App::php_service()`, under `App::document_root()`.
//! let php = tower::service_fn(|request: Request<()>| async move {
//!     let chosen = match request.extensions().get::<ResolvedPath>() {
//!         Some(ResolvedPath(Resolution::Script(script))) => script.script_name.clone(),
//!         other => format!("{other:?}"),
//!     };
//!     Ok::<_, std::convert::Infallible>(chosen)
//! });
//! let service = front.layer_service(php);
//! let chosen = service.oneshot(Request::get("/users/42?page=2").body(())?).await?;
//! assert_eq!(chosen, "/index.php");
//! # Ok(())
//! # }
//! ```

use std::path::Path;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use crate::context::ResolvedPath;
use crate::docroot::{PathResolver, Resolution, ScriptMatch};

/// Applies [`FrontController`] to a service.
#[derive(Debug, Clone)]
pub struct FrontControllerLayer {
    resolver: PathResolver,
    index: ScriptMatch,
}

/// The front controller script cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("front controller {script:?} is not a .php file under the document root {root}: {reason}")]
pub struct FrontControllerError {
    /// The script as configured.
    pub script: String,
    /// The document root.
    pub root: String,
    /// What is wrong.
    pub reason: String,
}

impl FrontControllerLayer {
    /// Runs `script` (relative to `document_root`, such as `index.php`) for every path that
    /// names no file, following symlinks, without aliases. Fails when the script does not
    /// exist under the root.
    pub fn new(document_root: &Path, script: &str) -> Result<Self, FrontControllerError> {
        let resolver = PathResolver::new(document_root).map_err(|e| FrontControllerError {
            script: script.to_owned(),
            root: document_root.display().to_string(),
            reason: format!("document root: {e}"),
        })?;
        Self::with_resolver(&resolver, script)
    }

    /// Runs `script` (relative to the resolver's document root) for every path that names
    /// no file as `resolver` sees it: the PHP service's
    /// ([`PhpService::path_resolver`](crate::PhpService::path_resolver)), with its aliases
    /// and symlink policy. Fails when the script does not resolve to a script.
    pub fn with_resolver(
        resolver: &PathResolver,
        script: &str,
    ) -> Result<Self, FrontControllerError> {
        let name = format!("/{}", script.trim_start_matches('/'));
        match resolver.resolve(&name) {
            Resolution::Script(index) if index.path_info.is_none() => Ok(Self {
                resolver: resolver.clone(),
                index,
            }),
            other => Err(FrontControllerError {
                script: script.to_owned(),
                root: resolver.document_root().display().to_string(),
                reason: format!("it resolves to {other:?}"),
            }),
        }
    }

    /// The same layer applied to `service`: shorthand for `Layer::layer`.
    pub fn layer_service<S>(&self, service: S) -> FrontController<S> {
        self.layer(service)
    }

    /// The script run for unmatched paths.
    pub fn script(&self) -> &ScriptMatch {
        &self.index
    }
}

impl<S> Layer<S> for FrontControllerLayer {
    type Service = FrontController<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FrontController::new(inner, self.clone())
    }
}

/// Resolves each request path and sends those that name nothing to the front controller.
#[derive(Debug, Clone)]
pub struct FrontController<S> {
    inner: S,
    layer: FrontControllerLayer,
}

impl<S> FrontController<S> {
    /// Wraps `inner` (the document-root service) with the decisions of `layer`.
    pub fn new(inner: S, layer: FrontControllerLayer) -> Self {
        Self { inner, layer }
    }
}

impl<S, B> Service<Request<B>> for FrontController<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let resolver = &self.layer.resolver;
        let resolution = match resolver.resolve(path) {
            Resolution::NotFound if !resolver.in_alias(path) => {
                Resolution::Script(self.layer.index.clone())
            }
            other => other,
        };
        request.extensions_mut().insert(ResolvedPath(resolution));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn app() -> (tempfile::TempDir, FrontControllerLayer) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
        std::fs::write(dir.path().join("other.php"), "<?php").unwrap();
        std::fs::write(dir.path().join(".env"), "SECRET=1").unwrap();
        std::fs::create_dir(dir.path().join("css")).unwrap();
        std::fs::write(dir.path().join("css/app.css"), "a{}").unwrap();
        let layer = FrontControllerLayer::new(dir.path(), "index.php").unwrap();
        (dir, layer)
    }

    async fn decide(layer: &FrontControllerLayer, path: &str) -> Resolution {
        let service = layer.layer_service(tower::service_fn(|r: Request<()>| async move {
            Ok::<_, Infallible>(r.extensions().get::<ResolvedPath>().unwrap().0.clone())
        }));
        let request = Request::builder().uri(path).body(()).unwrap();
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn unmatched_paths_run_the_front_controller() {
        let (_dir, layer) = app();
        for path in [
            "/users/42",
            "/api/items?x=1",
            "/nope.php",
            "/css/missing.css",
        ] {
            match decide(&layer, path).await {
                Resolution::Script(m) => {
                    assert_eq!(m.script_name, "/index.php", "{path}");
                    assert_eq!(m.path_info, None);
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn files_scripts_and_refusals_stay_as_they_are() {
        let (_dir, layer) = app();
        assert!(matches!(
            decide(&layer, "/css/app.css").await,
            Resolution::File(_)
        ));
        match decide(&layer, "/other.php").await {
            Resolution::Script(m) => assert_eq!(m.script_name, "/other.php"),
            other => panic!("{other:?}"),
        }
        assert_eq!(decide(&layer, "/.env").await, Resolution::Forbidden);
        assert_eq!(
            decide(&layer, "/%2e%2e/etc/passwd").await,
            Resolution::Forbidden
        );
        assert_eq!(decide(&layer, "/a%00b").await, Resolution::BadRequest);
    }

    #[test]
    fn a_missing_script_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = FrontControllerLayer::new(dir.path(), "index.php").unwrap_err();
        assert!(err.to_string().contains("index.php"));
    }
}
