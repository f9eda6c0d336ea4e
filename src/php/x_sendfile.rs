//! X-Sendfile and X-Accel-Redirect: a PHP response that names a file in one of these
//! headers is replaced by that file, served as a static file (Range, conditional requests)
//! with PHP's descriptive headers kept, as nginx and Apache's mod_xsendfile do. Only files
//! under `SENDFILE_ROOTS` (default: the document root and the alias directories) are
//! handed over, reached through components the `SYMLINKS` policy allows; any other target
//! is a 500 with a log line.
//!
//! Not to be confused with [`crate::sendfile`], the zero-copy `sendfile(2)` path for
//! static files.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};

use super::response::ResponseHead;
use crate::docroot::{PathResolver, StaticFile, SymlinkPolicy};
use crate::error_response::error_response;
use crate::static_files::{self, StaticOptions};

/// Headers of the PHP response that stay on the file it hands over.
const KEPT_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::SET_COOKIE,
];

/// The directories files may be handed over from, canonical, and what symlinks below
/// them may do.
#[derive(Debug, Clone)]
pub(crate) struct SendfileRoots {
    roots: Vec<PathBuf>,
    symlinks: SymlinkPolicy,
}

impl SendfileRoots {
    /// The directories `resolver` serves: the document root and the alias directories,
    /// under its symlink policy.
    pub(crate) fn document_root(resolver: &PathResolver) -> Self {
        let mut roots = vec![resolver.document_root().to_path_buf()];
        roots.extend(resolver.alias_dirs().map(Path::to_path_buf));
        Self {
            roots,
            symlinks: resolver.symlink_policy(),
        }
    }

    /// `roots`, made canonical, under `symlinks`; directories that do not exist are
    /// skipped with a warning.
    pub(crate) fn new(roots: &[PathBuf], symlinks: SymlinkPolicy) -> Self {
        let roots = roots
            .iter()
            .filter_map(|root| match root.canonicalize() {
                Ok(real) => Some(real),
                Err(err) => {
                    tracing::warn!(root = %root.display(), error = %err, "SENDFILE_ROOTS entry skipped");
                    None
                }
            })
            .collect();
        Self { roots, symlinks }
    }

    /// The file `target` names when it is a regular file under one of the roots, reached
    /// through components the symlink policy allows. A relative target (X-Accel-Redirect
    /// style) is taken under the first root; `.` and `..` are taken as text, so `..` never
    /// leaves the root it is written under.
    fn allowed(&self, target: &str) -> Option<StaticFile> {
        let target = Path::new(target);
        let named = if target.is_absolute() && target.exists() {
            target.to_path_buf()
        } else {
            let first = self.roots.first()?;
            first.join(target.strip_prefix("/").unwrap_or(target))
        };
        let named = lexically_normal(&named)?;
        // The root it lies in is its shortest ancestor whose real path is a root: symlinks
        // above a root are the deployment's (`/var/www -> /srv/www`), those below it are
        // the policy's.
        let ancestors: Vec<&Path> = named.ancestors().collect();
        for ancestor in ancestors.into_iter().rev() {
            let Ok(real) = ancestor.canonicalize() else {
                return None;
            };
            if let Some(root) = self.roots.iter().find(|root| **root == real) {
                let rest = named.strip_prefix(ancestor).ok()?;
                return self.symlinks.file_below(root, rest);
            }
        }
        None
    }
}

/// `path` with `.` and `..` resolved as text (`/a/b/../c` → `/a/c`); None when it is not
/// absolute or climbs above `/`.
fn lexically_normal(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir => out.push(Component::RootDir),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::Prefix(_) => return None,
        }
    }
    out.is_absolute().then_some(out)
}

/// The file a PHP response hands to the server, if any.
pub(crate) fn target(headers: &HeaderMap) -> Option<String> {
    ["x-sendfile", "x-accel-redirect"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The response for a PHP response `head` that named `target`: the file, or 500.
pub(crate) async fn serve(
    roots: &SendfileRoots,
    static_options: &StaticOptions,
    parts: http::request::Parts,
    head: ResponseHead,
    target: &str,
) -> Response {
    let Some(file) = roots.allowed(target) else {
        tracing::error!(
            uri = %parts.uri,
            target,
            roots = ?roots.roots,
            "X-Sendfile target is missing or outside SENDFILE_ROOTS; answering 500"
        );
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let request = Request::from_parts(parts, Body::empty());
    let mut response = static_files::serve(&file, request, static_options).await;
    if response.status().is_success() {
        for name in KEPT_HEADERS {
            let values: Vec<HeaderValue> = head.headers.get_all(&name).iter().cloned().collect();
            if !values.is_empty() {
                response.headers_mut().remove(&name);
                for value in values {
                    response.headers_mut().append(&name, value);
                }
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `files/` (the root) with `a.txt`, a link `out -> ../outside`, a link to the root
    /// from elsewhere (`via -> files`), and `outside/secret.txt`.
    fn dirs() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("files/sub")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("files/a.txt"), "a").unwrap();
        std::fs::write(base.join("outside/secret.txt"), "s").unwrap();
        symlink("../outside", base.join("files/out")).unwrap();
        symlink("files", base.join("via")).unwrap();
        (dir, base)
    }

    fn allowed(base: &Path, policy: SymlinkPolicy, target: &str) -> Option<PathBuf> {
        SendfileRoots::new(&[base.join("files")], policy)
            .allowed(target)
            .map(|file| file.path)
    }

    #[test]
    fn targets_under_a_root_by_any_name() {
        let (_dir, base) = dirs();
        let a = base.join("files/a.txt");
        for target in [
            a.display().to_string(),
            "/a.txt".to_owned(),
            "sub/../a.txt".to_owned(),
            format!("{}/sub/../a.txt", base.join("files").display()),
            // Through a symlink above the root: the deployment's business.
            format!("{}/a.txt", base.join("via").display()),
        ] {
            assert_eq!(
                allowed(&base, SymlinkPolicy::Never, &target),
                Some(a.clone()),
                "{target}"
            );
        }
    }

    #[test]
    fn nothing_outside_the_roots() {
        let (_dir, base) = dirs();
        for target in [
            base.join("outside/secret.txt").display().to_string(),
            format!("{}/../outside/secret.txt", base.join("files").display()),
            "../outside/secret.txt".to_owned(),
            "/etc/passwd".to_owned(),
            "/../../etc/passwd".to_owned(),
            base.join("files/sub").display().to_string(),
            base.join("files/missing").display().to_string(),
        ] {
            assert_eq!(
                allowed(&base, SymlinkPolicy::Follow, &target),
                None,
                "{target}"
            );
        }
    }

    #[test]
    fn symlinks_below_a_root_follow_the_policy() {
        let (_dir, base) = dirs();
        let target = format!("{}/out/secret.txt", base.join("files").display());
        assert_eq!(
            allowed(&base, SymlinkPolicy::Follow, &target),
            Some(base.join("files/out/secret.txt"))
        );
        assert_eq!(
            allowed(&base, SymlinkPolicy::IfOwner, &target),
            Some(base.join("files/out/secret.txt"))
        );
        assert_eq!(allowed(&base, SymlinkPolicy::Never, &target), None);
        assert_eq!(
            allowed(&base, SymlinkPolicy::Never, "/out/secret.txt"),
            None
        );
    }

    #[test]
    fn the_default_roots_are_the_document_root_and_the_alias_directories() {
        let (_dir, base) = dirs();
        let resolver = PathResolver::new(&base.join("files"))
            .unwrap()
            .aliases(&[crate::docroot::Alias::new("/o", base.join("outside")).unwrap()])
            .unwrap();
        let roots = SendfileRoots::document_root(&resolver);
        let secret = base.join("outside/secret.txt");
        let allowed = |target: &str| roots.allowed(target).map(|file| file.path);
        assert_eq!(allowed(&secret.display().to_string()), Some(secret));
        assert_eq!(allowed("/a.txt"), Some(base.join("files/a.txt")));
    }
}
