//! Which PHP script a request path names, under the document root, and nothing outside it.
//!
//! The path is percent-decoded once and walked one segment at a time from the document
//! root: the first segment that is a regular file ending exactly in `.php` is the script and
//! the rest is PATH_INFO (`/index.php/users/42`). A directory runs its `index.php`, else
//! serves its `index.html`, never a listing. A `..` or dot-file segment, a backslash, PHP
//! source under another extension (`.phtml`, `.php5`, `.inc`, …), or anything whose real
//! path (symlinks resolved) leaves the root is refused; a NUL byte or a malformed escape is a
//! bad request.

use std::path::{Path, PathBuf};

/// A script to run and how the request named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptMatch {
    /// Absolute path of the script (SCRIPT_FILENAME).
    pub script_filename: PathBuf,
    /// The script's URL path from the document root (SCRIPT_NAME), such as `/index.php`.
    pub script_name: String,
    /// What follows the script in the path (PATH_INFO), such as `/users/42`.
    pub path_info: Option<String>,
}

/// What a request path resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A PHP script to run.
    Script(ScriptMatch),
    /// An existing regular file that is not a PHP script, with no extra path after it.
    File(StaticFile),
    /// A directory without a trailing slash in the request: redirect to `path/`.
    DirectoryWithoutSlash,
    /// Nothing at that path: 404, or the front controller's script.
    NotFound,
    /// Something that must never be served (hidden, outside the root, PHP source): 404,
    /// and never handed to a front controller either.
    Forbidden,
    /// A malformed path (bad percent-encoding, NUL byte): 400.
    BadRequest,
}

/// A regular file to serve as it is, with the metadata read while resolving it (so
/// serving it takes no second `stat`).
#[derive(Debug, Clone)]
pub struct StaticFile {
    /// The file's real path.
    pub path: PathBuf,
    /// Its metadata (of the symlink's target, when reached through one).
    pub meta: std::fs::Metadata,
}

/// Resolutions compare by path: the metadata is a snapshot of the same file.
impl PartialEq for StaticFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for StaticFile {}

/// The name of a directory's script.
pub(crate) const INDEX_SCRIPT: &str = "index.php";
/// A directory's page when it has no script.
pub(crate) const INDEX_PAGE: &str = "index.html";

/// Extensions whose files hold PHP source: never served as static files.
const SOURCE_EXTENSIONS: &[&str] = &[
    "php", "php3", "php4", "php5", "php7", "php8", "phtml", "phar", "phps", "pht", "inc",
];

/// Resolves `uri_path` (the raw, still percent-encoded path of the request URI) under
/// `root`, which must be canonical (absolute, symlinks resolved).
pub fn resolve(root: &Path, uri_path: &str) -> Resolution {
    let Some(decoded) = percent_decode(uri_path.as_bytes()) else {
        return Resolution::BadRequest;
    };
    if decoded.contains(&0) {
        return Resolution::BadRequest;
    }
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Resolution::NotFound;
    };
    if !decoded.starts_with('/') || decoded.contains('\\') {
        return Resolution::Forbidden;
    }
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| s.starts_with('.')) {
        return Resolution::Forbidden;
    }
    let trailing_slash = decoded.ends_with('/');

    // One lstat per segment. A path without symlinks below the canonical root is inside
    // it by construction (no `..`, no links); one through a symlink is checked by its real
    // path at the end.
    let mut path = root.to_path_buf();
    let mut via_symlink = false;
    for (i, segment) in segments.iter().enumerate() {
        path.push(segment);
        let Some(meta) = stat(&path, &mut via_symlink) else {
            return Resolution::NotFound;
        };
        if meta.is_dir() {
            continue;
        }
        if !meta.is_file() {
            return Resolution::NotFound;
        }
        let rest = &segments[i + 1..];
        if segment.ends_with(".php") {
            let mut info = String::new();
            for s in rest {
                info.push('/');
                info.push_str(s);
            }
            if trailing_slash {
                info.push('/');
            }
            let info = (!info.is_empty()).then_some(info);
            return script(root, path, via_symlink, &segments[..=i], info);
        }
        if !rest.is_empty() || trailing_slash {
            // `/uploads/evil.jpg/x.php`, `/style.css/`: a file is never a directory.
            return Resolution::NotFound;
        }
        return static_file(root, &path, meta, via_symlink);
    }

    // The path is a directory (or the root).
    if !trailing_slash && !segments.is_empty() {
        return Resolution::DirectoryWithoutSlash;
    }
    let index = path.join(INDEX_SCRIPT);
    let mut index_via_symlink = via_symlink;
    if stat(&index, &mut index_via_symlink).is_some_and(|m| m.is_file()) {
        let mut named: Vec<&str> = segments.clone();
        named.push(INDEX_SCRIPT);
        return script(root, index, index_via_symlink, &named, None);
    }
    let page = path.join(INDEX_PAGE);
    let mut page_via_symlink = via_symlink;
    if let Some(meta) = stat(&page, &mut page_via_symlink).filter(|m| m.is_file()) {
        return static_file(root, &page, meta, page_via_symlink);
    }
    Resolution::NotFound
}

/// The metadata of `path` (following a symlink, and noting that it did).
fn stat(path: &Path, via_symlink: &mut bool) -> Option<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        *via_symlink = true;
        return std::fs::metadata(path).ok();
    }
    Some(meta)
}

/// A regular file to serve as it is, unless it holds PHP source or lies outside the root.
fn static_file(root: &Path, path: &Path, meta: std::fs::Metadata, via_symlink: bool) -> Resolution {
    let Some(real) = within_root(root, path, via_symlink) else {
        return Resolution::Forbidden;
    };
    for name in [path, real.as_path()] {
        if is_php_source(name) {
            return Resolution::Forbidden;
        }
    }
    Resolution::File(StaticFile { path: real, meta })
}

/// Whether the file name ends in an extension that holds PHP source, in any letter case.
fn is_php_source(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SOURCE_EXTENSIONS.iter().any(|s| e.eq_ignore_ascii_case(s)))
}

fn script(
    root: &Path,
    path: PathBuf,
    via_symlink: bool,
    named: &[&str],
    path_info: Option<String>,
) -> Resolution {
    let Some(real) = within_root(root, &path, via_symlink) else {
        return Resolution::Forbidden;
    };
    // The real file must itself be a .php file, so a symlink `x.php -> secret.txt` never runs.
    if real.extension().and_then(|e| e.to_str()) != Some("php") {
        return Resolution::Forbidden;
    }
    let mut script_name = String::with_capacity(64);
    for s in named {
        script_name.push('/');
        script_name.push_str(s);
    }
    Resolution::Script(ScriptMatch {
        script_filename: path,
        script_name,
        path_info,
    })
}

/// The real path of `path` if it lies under `root`, else None. Without a symlink on the
/// way, `path` (built from plain segments under the canonical root) is already real.
fn within_root(root: &Path, path: &Path, via_symlink: bool) -> Option<PathBuf> {
    if !via_symlink {
        return Some(path.to_path_buf());
    }
    let real = path.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

/// Decodes `%XX` escapes once. None for a malformed escape.
pub(crate) fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = hex(*input.get(i + 1)?)?;
            let lo = hex(*input.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("index.php"), "<?php").unwrap();
        fs::write(root.join("x.php"), "<?php").unwrap();
        fs::write(root.join("style.css"), "a{}").unwrap();
        fs::write(root.join("x.phtml"), "<?php").unwrap();
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(root.join("sub/index.php"), "<?php").unwrap();
        fs::create_dir_all(root.join("uploads")).unwrap();
        fs::write(root.join("uploads/evil.jpg"), "<?php").unwrap();
        fs::write(root.join(".env"), "SECRET=1").unwrap();
        (dir, root)
    }

    fn script_of(r: Resolution) -> ScriptMatch {
        match r {
            Resolution::Script(m) => m,
            other => panic!("expected a script, got {other:?}"),
        }
    }

    #[test]
    fn runs_named_scripts_with_path_info() {
        let (_d, root) = root();
        let m = script_of(resolve(&root, "/x.php"));
        assert_eq!(m.script_name, "/x.php");
        assert_eq!(m.path_info, None);
        let m = script_of(resolve(&root, "/x.php/users/42"));
        assert_eq!(m.script_name, "/x.php");
        assert_eq!(m.path_info.as_deref(), Some("/users/42"));
        let m = script_of(resolve(&root, "/x.php/"));
        assert_eq!(m.path_info.as_deref(), Some("/"));
    }

    #[test]
    fn directories_run_their_index() {
        let (_d, root) = root();
        let m = script_of(resolve(&root, "/"));
        assert_eq!(m.script_name, "/index.php");
        let m = script_of(resolve(&root, "/sub/"));
        assert_eq!(m.script_name, "/sub/index.php");
        assert_eq!(resolve(&root, "/sub"), Resolution::DirectoryWithoutSlash);
        assert_eq!(resolve(&root, "/sub/deeper/"), Resolution::NotFound);
        fs::write(root.join("sub/deeper/index.html"), "<p>").unwrap();
        match resolve(&root, "/sub/deeper/") {
            Resolution::File(file) => {
                assert_eq!(file.path, root.join("sub/deeper/index.html"));
                assert_eq!(file.meta.len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_exact_php_files_run() {
        let (_d, root) = root();
        assert_eq!(resolve(&root, "/x.phtml"), Resolution::Forbidden);
        assert!(matches!(resolve(&root, "/style.css"), Resolution::File(_)));
        assert_eq!(resolve(&root, "/x.PHP"), Resolution::NotFound);
        fs::write(root.join("upper.PHP"), "<?php").unwrap();
        assert_eq!(resolve(&root, "/upper.PHP"), Resolution::Forbidden);
        assert_eq!(resolve(&root, "/x.php%20"), Resolution::NotFound);
        assert_eq!(resolve(&root, "/x.php."), Resolution::NotFound);
        assert_eq!(
            resolve(&root, "/uploads/evil.jpg/x.php"),
            Resolution::NotFound
        );
        assert_eq!(
            resolve(&root, "/uploads/evil.jpg%00.php"),
            Resolution::BadRequest
        );
        assert_eq!(resolve(&root, "/x.php%00"), Resolution::BadRequest);
        assert_eq!(resolve(&root, "/nope.php"), Resolution::NotFound);
    }

    #[test]
    fn nothing_outside_the_root_or_hidden() {
        let (_d, root) = root();
        for path in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/sub/%2E%2E/%2e%2e/etc/passwd",
            "/..%2fetc%2fpasswd",
            "/..%5c..%5cetc",
            "/sub%5c..%5c..%5cetc",
            "/.env",
            "/sub/../.env",
            "/.git/config",
        ] {
            assert_eq!(resolve(&root, path), Resolution::Forbidden, "{path}");
        }
        // Decoded once: `%252e` is a literal `%2e` name, which does not exist.
        assert_eq!(
            resolve(&root, "/%252e%252e/etc/passwd"),
            Resolution::NotFound
        );
        assert_eq!(resolve(&root, "/%zz"), Resolution::BadRequest);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_root_never_resolve() {
        let (_d, root) = root();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.php"), "<?php").unwrap();
        fs::write(outside.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.php"), root.join("link.php"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("style.css"), root.join("css.php")).unwrap();
        assert_eq!(resolve(&root, "/link.php"), Resolution::Forbidden);
        assert_eq!(resolve(&root, "/out/secret.txt"), Resolution::Forbidden);
        assert_eq!(resolve(&root, "/out/secret.php"), Resolution::Forbidden);
        assert_eq!(resolve(&root, "/css.php"), Resolution::Forbidden);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"/a%20b").unwrap(), b"/a b");
        assert_eq!(percent_decode(b"%2F").unwrap(), b"/");
        assert!(percent_decode(b"%2").is_none());
        assert!(percent_decode(b"%g0").is_none());
    }
}
