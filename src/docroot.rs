//! Which file a request path names, under the document root or an alias directory, and
//! nothing it must not name. [`PathResolver`] is the one place that decides: the PHP
//! service, the front controller, worker mode and X-Sendfile all ask it.
//!
//! The path is percent-decoded once and split into segments. The longest alias prefix
//! (`ALIASES`, nginx's `alias`) its segments start with picks the directory the rest is
//! looked up in; otherwise it is the document root. The rest is walked one segment at a
//! time: the first segment that is a regular file ending exactly in `.php` is the script
//! and what follows is PATH_INFO (`/index.php/users/42`). A directory runs its
//! `index.php`, else serves its `index.html`, never a listing.
//!
//! Refused (404, never the front controller's): a `..` or dot-file segment, a backslash,
//! PHP source under another extension (`.phtml`, `.inc`, `x.php.txt`, …), a backup or editor
//! copy (`x.php~`, `x.bak`, `#x#`); a NUL byte or a malformed escape is a bad request.
//!
//! Symlinks: each component below the document root (or alias directory) that is a symlink
//! is followed or refused as [`SymlinkPolicy`] says, as nginx's `disable_symlinks` with
//! `from=$document_root`; the root itself, as configured, is taken as it is. What a symlink
//! leads to is held to the same name rules as a request path: its real file is never a
//! dot-file, PHP source (unless it runs as a script) or a backup, and no directory of its
//! real path below the one it shares with the root is hidden (`a.txt -> ../.git/config`).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// A script to run and how the request named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptMatch {
    /// Absolute path of the script (SCRIPT_FILENAME): under the document root or an alias
    /// directory, as the request named it (a symlink is not replaced by its target).
    pub script_filename: PathBuf,
    /// The script's URL path (SCRIPT_NAME), such as `/index.php`.
    pub script_name: String,
    /// What follows the script in the path (PATH_INFO), such as `/users/42`.
    pub path_info: Option<String>,
    /// The alias directory the script lies under, for `DOCUMENT_ROOT` (nginx's
    /// `$document_root` in an alias location); None under the document root.
    pub alias_root: Option<PathBuf>,
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
    /// Something that must never be served (hidden, PHP source, a backup, outside the root,
    /// a symlink [`SymlinkPolicy`] refuses): 404, and never handed to a front controller
    /// either.
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
    /// What its precompressed siblings are held to ([`StaticFile::precompressed_allowed`]).
    siblings: SiblingRules,
}

/// The symlink policy and the base directory a static file was resolved under, for its
/// precompressed siblings.
#[derive(Debug, Clone)]
struct SiblingRules {
    policy: SymlinkPolicy,
    base: PathBuf,
}

impl StaticFile {
    /// Whether its precompressed siblings (`app.js.br`, `app.js.gz`) may be sent in its
    /// place: false when one is a symlink the policy refuses or that leads somewhere the
    /// file itself could not. Looked at when asked (two `lstat`s), so only for a client
    /// that takes a precompressed body.
    pub fn precompressed_allowed(&self) -> bool {
        precompressed_allowed(self.siblings.policy, &self.siblings.base, &self.path)
    }
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

/// Extensions whose files hold PHP source: never served as static files, wherever they
/// stand in the name (`x.phtml`, `x.php.txt`, `config.inc.old`).
const SOURCE_EXTENSIONS: &[&str] = &[
    "php", "php3", "php4", "php5", "php7", "php8", "phtml", "phar", "phps", "pht", "inc",
];

/// Last extensions of backup and editor copies: never served.
const BACKUP_EXTENSIONS: &[&str] = &["bak", "backup", "old", "orig", "save", "swp", "swo", "rej"];

/// A path that names nothing to serve, as the [`Resolution`] it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    NotFound,
    Forbidden,
    BadRequest,
}

impl From<Miss> for Resolution {
    fn from(miss: Miss) -> Self {
        match miss {
            Miss::NotFound => Self::NotFound,
            Miss::Forbidden => Self::Forbidden,
            Miss::BadRequest => Self::BadRequest,
        }
    }
}

// === SymlinkPolicy ===

/// What a symlink below the document root (or an alias directory) may do
/// ([`crate::config::ENV_SYMLINKS`]): nginx's `disable_symlinks` with
/// `from=$document_root`. Every component of the path below the root counts, directories
/// and the file alike; a refused path is a 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymlinkPolicy {
    /// Followed wherever it points (nginx's `disable_symlinks off`, its default).
    #[default]
    Follow,
    /// Followed only when the link and the file it finally leads to have the same owner
    /// (nginx's `disable_symlinks if_not_owner`).
    IfOwner,
    /// Never followed: a path with a symlink below the root is refused (nginx's
    /// `disable_symlinks on`).
    Never,
}

impl SymlinkPolicy {
    /// `follow`, `if_owner` or `never`, in any letter case.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "follow" => Some(Self::Follow),
            "if_owner" => Some(Self::IfOwner),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    /// The metadata of the component at `path` (of its target when it is a symlink this
    /// policy follows, noting that in `via_symlink`): NotFound when it is missing,
    /// Forbidden when it is a symlink the policy refuses.
    fn step(self, path: &Path, via_symlink: &mut bool) -> Result<std::fs::Metadata, Miss> {
        let meta = std::fs::symlink_metadata(path).map_err(|_| Miss::NotFound)?;
        if !meta.file_type().is_symlink() {
            return Ok(meta);
        }
        if self == Self::Never {
            return Err(Miss::Forbidden);
        }
        let target = std::fs::metadata(path).map_err(|_| Miss::NotFound)?;
        if self == Self::IfOwner && meta.uid() != target.uid() {
            return Err(Miss::Forbidden);
        }
        *via_symlink = true;
        Ok(target)
    }

    /// `base` joined with `rest`, as a file to serve, when that is a regular file and every
    /// component of `rest` is one this policy allows. `rest` must be plain names (no `..`).
    pub(crate) fn file_below(self, base: &Path, rest: &Path) -> Option<StaticFile> {
        let mut path = base.to_path_buf();
        let mut via_symlink = false;
        let mut meta = None;
        for component in rest.components() {
            let Component::Normal(name) = component else {
                return None;
            };
            path.push(name);
            meta = Some(self.step(&path, &mut via_symlink).ok()?);
        }
        let meta = meta.filter(std::fs::Metadata::is_file)?;
        Some(StaticFile {
            path,
            meta,
            siblings: SiblingRules {
                policy: self,
                base: base.to_path_buf(),
            },
        })
    }
}

// === Alias ===

/// A URL prefix served from a directory, as nginx's `alias`
/// ([`crate::config::ENV_ALIASES`]): `/wp-content/uploads/a.png` with the alias
/// `/wp-content` → `/var/lib/wordpress/wp-content` is that directory's `uploads/a.png`.
/// The prefix matches whole segments of the decoded path (`/wp-content` takes
/// `/wp-content` and `/wp-content/x`, never `/wp-contents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// `/` and the prefix's segments joined by `/`, without a trailing slash.
    prefix: String,
    dir: PathBuf,
}

/// An alias that cannot be used: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAlias(String);

impl Alias {
    /// `prefix` (a URL path starting with `/`, as decoded: `/wp-content` or
    /// `/wp-content/`) served from `dir`. The directory is checked when the server starts.
    pub fn new(prefix: &str, dir: impl Into<PathBuf>) -> Result<Self, InvalidAlias> {
        let fail = |why: &str| Err(InvalidAlias(format!("alias prefix {prefix:?} {why}")));
        if !prefix.starts_with('/') {
            return fail("must start with /");
        }
        if prefix.contains(['\\', '\0']) {
            return fail("must not contain a backslash or a NUL byte");
        }
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return fail("must name a path below / (DOCUMENT_ROOT serves /)");
        }
        if hidden_segments(&segments) {
            return fail("must not have a segment starting with a dot (but a first /.well-known)");
        }
        let dir = dir.into();
        if dir.as_os_str().is_empty() {
            return fail("needs a directory");
        }
        Ok(Self {
            prefix: format!("/{}", segments.join("/")),
            dir,
        })
    }

    /// A comma-separated list of `PREFIX=DIRECTORY` entries, such as
    /// `/wp-content/=/var/lib/wordpress/wp-content/,/doc=/usr/share/doc`; a prefix may
    /// appear once.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, InvalidAlias> {
        let mut aliases: Vec<Self> = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((prefix, dir)) = entry.split_once('=') else {
                return Err(InvalidAlias(format!(
                    "{entry:?} is not PREFIX=DIRECTORY (such as /wp-content/=/var/lib/wordpress/wp-content/)"
                )));
            };
            let alias = Self::new(prefix.trim(), dir.trim())?;
            if aliases.iter().any(|a| a.prefix == alias.prefix) {
                return Err(InvalidAlias(format!(
                    "alias prefix {} is given twice",
                    alias.prefix
                )));
            }
            aliases.push(alias);
        }
        Ok(aliases)
    }

    /// The prefix, normalised: `/` and its segments, without a trailing slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The directory, as given.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl std::fmt::Display for Alias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.prefix, self.dir.display())
    }
}

// === PathResolver ===

/// Resolves request paths under a document root, its aliases, and a symlink policy.
/// Cheap to clone (shared); build it once and hand the same one to the PHP service and the
/// front controller.
#[derive(Debug, Clone)]
pub struct PathResolver {
    inner: Arc<Resolver>,
}

#[derive(Debug, Clone)]
struct Resolver {
    root: PathBuf,
    symlinks: SymlinkPolicy,
    /// Longest prefix first.
    mounts: Vec<Mount>,
}

/// An alias with its directory made canonical.
#[derive(Debug, Clone)]
struct Mount {
    segments: Vec<String>,
    dir: PathBuf,
}

impl PathResolver {
    /// A resolver for `document_root` (made canonical here), following symlinks, without
    /// aliases.
    pub fn new(document_root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            inner: Arc::new(Resolver {
                root: document_root.canonicalize()?,
                symlinks: SymlinkPolicy::default(),
                mounts: Vec::new(),
            }),
        })
    }

    /// Sets what symlinks below the root and the alias directories may do.
    pub fn symlinks(mut self, policy: SymlinkPolicy) -> Self {
        Arc::make_mut(&mut self.inner).symlinks = policy;
        self
    }

    /// Serves each alias's prefix from its directory (made canonical here: the error names
    /// the alias when it is missing).
    pub fn aliases(mut self, aliases: &[Alias]) -> std::io::Result<Self> {
        let mut mounts = Vec::with_capacity(aliases.len());
        for alias in aliases {
            let dir = alias
                .dir
                .canonicalize()
                .map_err(|err| std::io::Error::new(err.kind(), format!("alias {alias}: {err}")))?;
            if !dir.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("alias {alias}: not a directory"),
                ));
            }
            let segments = segments(&alias.prefix)
                .into_iter()
                .map(str::to_owned)
                .collect();
            mounts.push(Mount { segments, dir });
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.segments.len()));
        Arc::make_mut(&mut self.inner).mounts = mounts;
        Ok(self)
    }

    /// The canonical document root.
    pub fn document_root(&self) -> &Path {
        &self.inner.root
    }

    /// The symlink policy.
    pub fn symlink_policy(&self) -> SymlinkPolicy {
        self.inner.symlinks
    }

    /// The alias directories, canonical.
    pub(crate) fn alias_dirs(&self) -> impl Iterator<Item = &Path> {
        self.inner.mounts.iter().map(|m| m.dir.as_path())
    }

    /// What `uri_path` (the raw, still percent-encoded path of the request URI) names.
    pub fn resolve(&self, uri_path: &str) -> Resolution {
        let decoded = match decode(uri_path) {
            Ok(decoded) => decoded,
            Err(miss) => return miss.into(),
        };
        let segments = segments(&decoded);
        if hidden_segments(&segments) {
            return Resolution::Forbidden;
        }
        let symlinks = self.inner.symlinks;
        let (walk, below) = match self.inner.mount_for(&segments) {
            Some(mount) => {
                let walk = Walk {
                    base: &mount.dir,
                    alias: true,
                    symlinks,
                };
                (walk, mount.segments.len())
            }
            None => {
                let walk = Walk {
                    base: &self.inner.root,
                    alias: false,
                    symlinks,
                };
                (walk, 0)
            }
        };
        walk.resolve(&segments, below, decoded.ends_with('/'))
            .unwrap_or_else(Resolution::from)
    }

    /// Whether `uri_path` lies under an alias. A path there that names nothing is a plain
    /// 404: an alias is a location of its own, as in nginx, so neither the front
    /// controller nor the worker script takes it over.
    pub fn in_alias(&self, uri_path: &str) -> bool {
        if self.inner.mounts.is_empty() {
            return false;
        }
        let Ok(decoded) = decode(uri_path) else {
            return false;
        };
        self.inner.mount_for(&segments(&decoded)).is_some()
    }
}

impl Resolver {
    /// The alias with the longest prefix that `segments` start with.
    fn mount_for(&self, segments: &[&str]) -> Option<&Mount> {
        self.mounts.iter().find(|m| {
            m.segments.len() <= segments.len()
                && m.segments.iter().zip(segments).all(|(a, b)| a == b)
        })
    }
}

/// The path percent-decoded, as UTF-8 text starting with `/` and without backslashes;
/// else how to answer.
fn decode(uri_path: &str) -> Result<String, Miss> {
    let decoded = percent_decode(uri_path.as_bytes()).ok_or(Miss::BadRequest)?;
    if decoded.contains(&0) {
        return Err(Miss::BadRequest);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| Miss::NotFound)?;
    if !decoded.starts_with('/') || decoded.contains('\\') {
        return Err(Miss::Forbidden);
    }
    Ok(decoded)
}

/// The non-empty segments of a decoded path (`//` collapses, as with nginx's
/// `merge_slashes`).
fn segments(decoded: &str) -> Vec<&str> {
    decoded.split('/').filter(|s| !s.is_empty()).collect()
}

/// The one dot segment a URL path may have: first, RFC 8615's well-known URIs
/// (`/.well-known/acme-challenge/…`, `/.well-known/security.txt`), which nginx serves too.
const WELL_KNOWN: &str = ".well-known";

/// Whether a path's segments name a hidden place: any segment starting with a dot, but a
/// first `.well-known`.
fn hidden_segments(segments: &[&str]) -> bool {
    segments
        .iter()
        .enumerate()
        .any(|(i, s)| s.starts_with('.') && !(i == 0 && *s == WELL_KNOWN))
}

/// One lookup: the segments below `base` (the canonical document root or alias directory).
struct Walk<'a> {
    base: &'a Path,
    alias: bool,
    symlinks: SymlinkPolicy,
}

impl Walk<'_> {
    /// Resolves `segments[below..]` under the base; `segments` (all of them) name the
    /// script in SCRIPT_NAME. An `Err` is a refusal or a miss, answered as it is.
    fn resolve(
        &self,
        segments: &[&str],
        below: usize,
        trailing_slash: bool,
    ) -> Result<Resolution, Miss> {
        // One lstat per segment. A path without symlinks below the canonical base is
        // inside it by construction (no `..`, no links); one through a symlink is checked
        // by its real path at the end.
        let mut path = self.base.to_path_buf();
        let mut via_symlink = false;
        for (i, segment) in segments.iter().enumerate().skip(below) {
            path.push(segment);
            let meta = self.symlinks.step(&path, &mut via_symlink)?;
            if meta.is_dir() {
                continue;
            }
            if !meta.is_file() {
                return Err(Miss::NotFound);
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
                return self.script(path, via_symlink, &segments[..=i], info);
            }
            if !rest.is_empty() || trailing_slash {
                // `/uploads/evil.jpg/x.php`, `/style.css/`: a file is never a directory.
                return Err(Miss::NotFound);
            }
            return self.static_file(path, meta, via_symlink);
        }

        // The path is a directory (or the base).
        if !trailing_slash && !segments.is_empty() {
            return Ok(Resolution::DirectoryWithoutSlash);
        }
        let index = path.join(INDEX_SCRIPT);
        let mut index_via_symlink = via_symlink;
        match self.symlinks.step(&index, &mut index_via_symlink) {
            Ok(meta) if meta.is_file() => {
                let mut named = segments.to_vec();
                named.push(INDEX_SCRIPT);
                return self.script(index, index_via_symlink, &named, None);
            }
            Ok(_) | Err(Miss::NotFound) => {}
            Err(refused) => return Err(refused),
        }
        let page = path.join(INDEX_PAGE);
        let mut page_via_symlink = via_symlink;
        let meta = self.symlinks.step(&page, &mut page_via_symlink)?;
        if !meta.is_file() {
            return Err(Miss::NotFound);
        }
        self.static_file(page, meta, page_via_symlink)
    }

    /// A regular file to serve as it is, unless its name, or its real file's, is PHP
    /// source or a backup, or a symlink led to a hidden place.
    fn static_file(
        &self,
        path: PathBuf,
        meta: std::fs::Metadata,
        via_symlink: bool,
    ) -> Result<Resolution, Miss> {
        let real = self.real_path(&path, via_symlink)?;
        for file in [&path, &real] {
            if file.file_name().is_some_and(never_sent) {
                return Err(Miss::Forbidden);
            }
        }
        Ok(Resolution::File(StaticFile {
            path: real,
            meta,
            siblings: SiblingRules {
                policy: self.symlinks,
                base: self.base.to_path_buf(),
            },
        }))
    }

    fn script(
        &self,
        path: PathBuf,
        via_symlink: bool,
        named: &[&str],
        path_info: Option<String>,
    ) -> Result<Resolution, Miss> {
        let real = self.real_path(&path, via_symlink)?;
        // The real file must itself be a .php file, so a symlink `x.php -> secret.txt`
        // never runs.
        if real.extension().and_then(|e| e.to_str()) != Some("php") {
            return Err(Miss::Forbidden);
        }
        let mut script_name = String::with_capacity(64);
        for s in named {
            script_name.push('/');
            script_name.push_str(s);
        }
        Ok(Resolution::Script(ScriptMatch {
            script_filename: path,
            script_name,
            path_info,
            alias_root: self.alias.then(|| self.base.to_path_buf()),
        }))
    }

    /// The real path of `path`, refused when a symlink on the way led to a hidden place.
    /// Without a symlink, `path` (plain segments under the canonical base) is already real.
    fn real_path(&self, path: &Path, via_symlink: bool) -> Result<PathBuf, Miss> {
        if !via_symlink {
            return Ok(path.to_path_buf());
        }
        let real = path.canonicalize().map_err(|_| Miss::NotFound)?;
        if hidden_below_shared(self.base, &real) {
            return Err(Miss::Forbidden);
        }
        Ok(real)
    }
}

/// Whether the precompressed siblings of `file` (`file.br`, `file.gz`, which static files
/// are sent from when the client takes them) may stand in for it: each that is a symlink is
/// held to `policy`, and to the rules for what a symlink below `base` may lead to.
pub(crate) fn precompressed_allowed(policy: SymlinkPolicy, base: &Path, file: &Path) -> bool {
    [".br", ".gz"].iter().all(|extension| {
        let mut name = file.as_os_str().to_owned();
        name.push(extension);
        let sibling = PathBuf::from(name);
        match std::fs::symlink_metadata(&sibling) {
            Ok(meta) if meta.file_type().is_symlink() => {
                policy.step(&sibling, &mut false).is_ok()
                    && sibling.canonicalize().is_ok_and(|real| {
                        !hidden_below_shared(base, &real)
                            && real.file_name().is_none_or(|name| !never_sent(name))
                    })
            }
            Ok(_) | Err(_) => true,
        }
    })
}

/// Whether a component of `real` below the directory it shares with `base` starts with a
/// dot: `/srv/app/.git/config` for the base `/srv/app/public`, `/home/u/.ssh/id` for
/// `/srv/www`.
fn hidden_below_shared(base: &Path, real: &Path) -> bool {
    let mut base = base.components();
    let mut rest = real.components().peekable();
    while let (Some(a), Some(b)) = (base.next(), rest.peek()) {
        if a != *b {
            break;
        }
        rest.next();
    }
    rest.any(|c| matches!(c, Component::Normal(name) if name.as_encoded_bytes().starts_with(b".")))
}

/// Whether a file of this name is never sent as it is: PHP source by any extension in
/// the name, in any letter case, or a backup or editor copy (`~` at the end, `#name#`,
/// [`BACKUP_EXTENSIONS`]). Dot-files are refused before this, as path segments.
fn never_sent(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_lowercase();
    if name.ends_with('~') || (name.len() > 1 && name.starts_with('#') && name.ends_with('#')) {
        return true;
    }
    let mut extensions = name.split('.').skip(1).peekable();
    while let Some(extension) = extensions.next() {
        if SOURCE_EXTENSIONS.contains(&extension)
            || (extensions.peek().is_none() && BACKUP_EXTENSIONS.contains(&extension))
        {
            return true;
        }
    }
    false
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

/// The layouts the attack tests run in, shared with `tests/docroot.rs`.
#[cfg(test)]
#[path = "../tests/common/layouts.rs"]
mod test_layouts;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::test_layouts::{LAYOUTS, Layout};

    struct Site {
        _dir: tempfile::TempDir,
        /// The site's files (canonical).
        site: PathBuf,
        /// Files beside the site that a symlink in it leads to.
        secret: PathBuf,
        /// The document root.
        root: PathBuf,
        resolver: PathResolver,
        /// What request paths start with to reach the site.
        prefix: &'static str,
    }

    fn write(path: &Path, contents: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    impl Site {
        fn new(layout: Layout) -> Self {
            Self::with(layout, SymlinkPolicy::Follow)
        }

        fn with(layout: Layout, policy: SymlinkPolicy) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let base = dir.path().canonicalize().unwrap();
            let site = base.join("site");
            let secret = base.join("secret");
            for name in [
                "index.php",
                "x.php",
                "x.phtml",
                "upper.PHP",
                "sub/index.php",
                "uploads/evil.jpg",
                "x.php~",
                "x.php.bak",
                "x.php.txt",
                "config.inc.old",
                "#x.php#",
                "notes.swp",
            ] {
                write(&site.join(name), "<?php");
            }
            write(&site.join("style.css"), "a{}");
            write(&site.join(".env"), "SECRET=1");
            write(&site.join(".git/config"), "[core]");
            fs::create_dir_all(site.join("sub/deeper")).unwrap();
            write(&secret.join(".env"), "SECRET=2");
            write(&secret.join(".git/config"), "[core]");
            write(&secret.join("passwd.txt"), "root:x:0:0");
            write(&secret.join("secret.php"), "<?php");
            for (link, target) in [
                ("a.txt", "../secret/.env"),
                ("x.txt", "x.php"),
                ("git.txt", "../secret/.git/config"),
                ("gitdir", "../secret/.git"),
                ("bak.txt", "x.php.bak"),
                ("css.php", "style.css"),
                ("passwd.txt", "../secret/passwd.txt"),
                ("out", "../secret"),
                ("link.php", "../secret/secret.php"),
            ] {
                symlink(target, site.join(link)).unwrap();
            }
            let laid_out = layout.lay_out(&site, &base);
            let aliases: Vec<Alias> = laid_out
                .alias
                .iter()
                .map(|(prefix, dir)| Alias::new(prefix, dir).unwrap())
                .collect();
            let (root, prefix) = (laid_out.root, laid_out.prefix);
            let resolver = PathResolver::new(&root)
                .unwrap()
                .symlinks(policy)
                .aliases(&aliases)
                .unwrap();
            Self {
                _dir: dir,
                site,
                secret,
                root,
                resolver,
                prefix,
            }
        }

        fn resolve(&self, path: &str) -> Resolution {
            self.resolver.resolve(&format!("{}{path}", self.prefix))
        }

        fn script(&self, path: &str) -> ScriptMatch {
            match self.resolve(path) {
                Resolution::Script(m) => m,
                other => panic!("{path}: expected a script, got {other:?}"),
            }
        }

        fn file(&self, path: &str) -> PathBuf {
            match self.resolve(path) {
                Resolution::File(file) => file.path,
                other => panic!("{path}: expected a file, got {other:?}"),
            }
        }

        /// The URL path of `path` in this layout.
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.prefix)
        }
    }

    /// Attacks and near misses, with what each must resolve to, in every layout.
    fn attacks() -> Vec<(&'static str, Resolution)> {
        use Resolution::{BadRequest, Forbidden, NotFound};
        vec![
            ("/../etc/passwd", Forbidden),
            ("/%2e%2e/etc/passwd", Forbidden),
            ("/sub/%2E%2E/%2e%2e/etc/passwd", Forbidden),
            ("/..%2fetc%2fpasswd", Forbidden),
            ("/..%5c..%5cetc", Forbidden),
            ("/sub%5c..%5c..%5cetc", Forbidden),
            ("/.env", Forbidden),
            ("/sub/../.env", Forbidden),
            ("/.git/config", Forbidden),
            // PHP source by another name, backups and editor copies.
            ("/x.phtml", Forbidden),
            ("/upper.PHP", Forbidden),
            ("/x.php~", Forbidden),
            ("/x.php.bak", Forbidden),
            ("/x.php.txt", Forbidden),
            ("/config.inc.old", Forbidden),
            ("/%23x.php%23", Forbidden),
            ("/notes.swp", Forbidden),
            // Symlinks whose targets are hidden, PHP source or backups.
            ("/a.txt", Forbidden),
            ("/x.txt", Forbidden),
            ("/git.txt", Forbidden),
            ("/gitdir/config", Forbidden),
            ("/bak.txt", Forbidden),
            ("/css.php", Forbidden),
            // Decoded once: `%252e` is a literal `%2e` name, which does not exist.
            ("/%252e%252e/etc/passwd", NotFound),
            ("/x.PHP", NotFound),
            ("/x.php%20", NotFound),
            ("/x.php.", NotFound),
            ("/uploads/evil.jpg/x.php", NotFound),
            ("/nope.php", NotFound),
            ("/%zz", BadRequest),
            ("/uploads/evil.jpg%00.php", BadRequest),
            ("/x.php%00", BadRequest),
        ]
    }

    #[test]
    fn attacks_are_refused_in_every_layout() {
        for layout in LAYOUTS {
            let site = Site::new(layout);
            for (path, expected) in attacks() {
                assert_eq!(site.resolve(path), expected, "{layout:?} {path}");
            }
        }
    }

    #[test]
    fn runs_named_scripts_with_path_info() {
        for layout in LAYOUTS {
            let site = Site::new(layout);
            let m = site.script("/x.php");
            assert_eq!(m.script_name, site.url("/x.php"), "{layout:?}");
            assert_eq!(m.path_info, None);
            let m = site.script("/x.php/users/42");
            assert_eq!(m.script_name, site.url("/x.php"));
            assert_eq!(m.path_info.as_deref(), Some("/users/42"));
            let m = site.script("/x.php/");
            assert_eq!(m.path_info.as_deref(), Some("/"));
            // SCRIPT_FILENAME is the path the request named, symlinks and all.
            let (filename, alias_root) = match layout {
                Layout::Plain => (site.site.join("x.php"), None),
                Layout::Symlinked => (site.root.join("x.php"), None),
                Layout::Alias => (site.site.join("x.php"), Some(site.site.clone())),
            };
            assert_eq!(m.script_filename, filename, "{layout:?}");
            assert_eq!(m.alias_root, alias_root, "{layout:?}");
        }
    }

    #[test]
    fn directories_run_their_index() {
        for layout in LAYOUTS {
            let site = Site::new(layout);
            assert_eq!(site.script("/").script_name, site.url("/index.php"));
            assert_eq!(site.script("/sub/").script_name, site.url("/sub/index.php"));
            assert_eq!(site.resolve("/sub"), Resolution::DirectoryWithoutSlash);
            assert_eq!(site.resolve("/sub/deeper/"), Resolution::NotFound);
            fs::write(site.site.join("sub/deeper/index.html"), "<p>").unwrap();
            assert_eq!(
                site.file("/sub/deeper/"),
                site.site.join("sub/deeper/index.html"),
                "{layout:?}"
            );
            assert_eq!(site.file("/style.css"), site.site.join("style.css"));
        }
    }

    #[test]
    fn follow_takes_symlinks_wherever_they_point() {
        for layout in LAYOUTS {
            let site = Site::new(layout);
            assert_eq!(site.file("/passwd.txt"), site.secret.join("passwd.txt"));
            assert_eq!(site.file("/out/passwd.txt"), site.secret.join("passwd.txt"));
            assert_eq!(site.script("/link.php").script_name, site.url("/link.php"));
            let m = site.script("/out/secret.php");
            assert_eq!(m.script_name, site.url("/out/secret.php"), "{layout:?}");
        }
    }

    #[test]
    fn never_refuses_every_symlink_below_the_root() {
        let site = Site::with(Layout::Plain, SymlinkPolicy::Never);
        for path in [
            "/passwd.txt",
            "/out/passwd.txt",
            "/link.php",
            "/out/secret.php",
        ] {
            assert_eq!(site.resolve(path), Resolution::Forbidden, "{path}");
        }
        assert_eq!(site.file("/style.css"), site.site.join("style.css"));
        // Debian's layout: every entry is a symlink, so nothing is served.
        let site = Site::with(Layout::Symlinked, SymlinkPolicy::Never);
        assert_eq!(site.resolve("/style.css"), Resolution::Forbidden);
        assert_eq!(site.resolve("/x.php"), Resolution::Forbidden);
        assert_eq!(site.resolve("/"), Resolution::Forbidden);
        // The same holds below an alias directory.
        let site = Site::with(Layout::Alias, SymlinkPolicy::Never);
        assert_eq!(site.resolve("/passwd.txt"), Resolution::Forbidden);
        assert_eq!(site.file("/style.css"), site.site.join("style.css"));
    }

    #[test]
    fn the_root_itself_may_be_a_symlink() {
        let site = Site::new(Layout::Plain);
        let link = site.secret.join("current");
        symlink(&site.site, &link).unwrap();
        let resolver = PathResolver::new(&link)
            .unwrap()
            .symlinks(SymlinkPolicy::Never);
        assert_eq!(resolver.document_root(), site.site);
        assert!(matches!(
            resolver.resolve("/style.css"),
            Resolution::File(_)
        ));
    }

    #[test]
    fn if_owner_follows_only_links_owned_like_their_target() {
        let site = Site::with(Layout::Plain, SymlinkPolicy::IfOwner);
        // Links and targets made by this process share its owner.
        assert_eq!(site.file("/passwd.txt"), site.secret.join("passwd.txt"));
        assert_eq!(site.file("/out/passwd.txt"), site.secret.join("passwd.txt"));
        // A link owned by someone else: changing its owner needs root.
        const NOBODY: u32 = 65_534;
        if std::os::unix::fs::lchown(site.site.join("passwd.txt"), Some(NOBODY), None).is_err() {
            eprintln!("skipped the other-owner half: changing a link's owner needs root");
            return;
        }
        assert_eq!(site.resolve("/passwd.txt"), Resolution::Forbidden);
        // A file of another owner reached through a link owned like its target directory
        // is fine: only symlinks are compared with what they lead to (as nginx does).
        std::os::unix::fs::chown(site.secret.join("passwd.txt"), Some(NOBODY), None).unwrap();
        assert_eq!(site.file("/out/passwd.txt"), site.secret.join("passwd.txt"));
        // Same owner again on both sides: followed.
        assert_eq!(site.file("/passwd.txt"), site.secret.join("passwd.txt"));
    }

    #[test]
    fn aliases_match_whole_decoded_segments_longest_first() {
        let site = Site::new(Layout::Alias);
        assert_eq!(
            site.resolver.resolve("/app"),
            Resolution::DirectoryWithoutSlash
        );
        let m = site.script("/");
        assert_eq!(m.script_name, "/app/index.php");
        assert_eq!(m.script_filename, site.site.join("index.php"));
        assert_eq!(
            site.resolver.resolve("/appx/style.css"),
            Resolution::NotFound
        );
        assert_eq!(
            site.resolver.resolve("//app//style.css"),
            site.resolve("/style.css")
        );
        assert_eq!(
            site.resolver.resolve("/%61pp/style.css"),
            site.resolve("/style.css")
        );
        assert!(site.resolver.in_alias("/app"));
        assert!(site.resolver.in_alias("/app/missing"));
        assert!(site.resolver.in_alias("/%61pp/"));
        assert!(!site.resolver.in_alias("/appx"));
        assert!(!site.resolver.in_alias("/"));
        // A deeper alias wins over a shorter one, and an alias over the root's own files.
        let other = site.secret.join("other");
        write(&other.join("style.css"), "b{}");
        fs::create_dir_all(site.root.join("app")).unwrap();
        write(&site.root.join("app/style.css"), "root's own");
        let resolver = PathResolver::new(&site.root)
            .unwrap()
            .aliases(
                &Alias::parse_list(&format!(
                    "/app={},/app/sub/={}",
                    site.site.display(),
                    other.display()
                ))
                .unwrap(),
            )
            .unwrap();
        let file = |path: &str| match resolver.resolve(path) {
            Resolution::File(file) => file.path,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(file("/app/sub/style.css"), other.join("style.css"));
        assert_eq!(file("/app/style.css"), site.site.join("style.css"));
    }

    #[test]
    fn alias_lists_parse_or_say_what_is_wrong() {
        let aliases = Alias::parse_list(
            " /wp-content/=/var/lib/wordpress/wp-content/ , /doc=/usr/share/doc,",
        )
        .unwrap();
        assert_eq!(aliases.len(), 2);
        assert_eq!(aliases[0].prefix(), "/wp-content");
        assert_eq!(
            aliases[0].dir(),
            Path::new("/var/lib/wordpress/wp-content/")
        );
        assert_eq!(aliases[1].to_string(), "/doc=/usr/share/doc");
        assert_eq!(Alias::parse_list("").unwrap(), Vec::new());
        for (value, says) in [
            ("wp-content=/x", "must start with /"),
            ("/=/x", "below /"),
            ("/a=", "needs a directory"),
            ("/a", "PREFIX=DIRECTORY"),
            ("/.git=/x", "dot"),
            ("/a/../b=/x", "dot"),
            ("/a\\b=/x", "backslash"),
            ("/a=/x,/a/=/y", "twice"),
        ] {
            let err = Alias::parse_list(value).unwrap_err().to_string();
            assert!(err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn a_missing_alias_directory_is_named() {
        let err = PathResolver::new(Path::new("/"))
            .unwrap()
            .aliases(&[Alias::new("/x", "/definitely/not/here").unwrap()])
            .unwrap_err();
        assert!(err.to_string().contains("/x=/definitely/not/here"), "{err}");
    }

    #[test]
    fn names_never_sent() {
        for name in [
            "x.php",
            "x.PHTML",
            "x.inc",
            "x.php.txt",
            "lib.inc.js",
            "x.php~",
            "notes~",
            "x.bak",
            "x.SWP",
            "x.orig",
            "#x#",
            "x.tar.old",
        ] {
            assert!(never_sent(OsStr::new(name)), "{name}");
        }
        for name in [
            "app.js",
            "style.css",
            "x.txt",
            "#",
            "phpinfo.txt",
            "old.png",
            "a.b.c",
        ] {
            assert!(!never_sent(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn only_a_first_well_known_segment_is_not_hidden() {
        assert!(!hidden_segments(&[
            ".well-known",
            "acme-challenge",
            "token"
        ]));
        assert!(!hidden_segments(&[".well-known", "security.txt"]));
        assert!(hidden_segments(&[".well-known", ".env"]));
        assert!(hidden_segments(&["app", ".well-known", "x"]));
        assert!(hidden_segments(&[".git", "config"]));
        assert!(hidden_segments(&[".well-knownx"]));
        assert!(Alias::new("/.well-known/acme-challenge/", "/var/www/acme").is_ok());
        assert!(Alias::new("/app/.well-known/", "/var/www/acme").is_err());
    }

    #[test]
    fn hidden_places_below_the_shared_directory() {
        let base = Path::new("/srv/app/public");
        assert!(hidden_below_shared(base, Path::new("/srv/app/.git/config")));
        assert!(hidden_below_shared(base, Path::new("/srv/app/public/.env")));
        assert!(hidden_below_shared(base, Path::new("/home/u/.ssh/id")));
        assert!(!hidden_below_shared(
            base,
            Path::new("/srv/app/shared/x.css")
        ));
        assert!(!hidden_below_shared(
            Path::new("/home/u/.local/www"),
            Path::new("/home/u/.local/lib/x.js")
        ));
    }

    #[test]
    fn files_below_a_base_under_each_policy() {
        let site = Site::new(Layout::Plain);
        let below = |policy: SymlinkPolicy, rest: &str| {
            policy
                .file_below(&site.site, Path::new(rest))
                .map(|file| file.path)
        };
        assert_eq!(
            below(SymlinkPolicy::Follow, "out/passwd.txt"),
            Some(site.site.join("out/passwd.txt"))
        );
        assert_eq!(below(SymlinkPolicy::Follow, "out"), None);
        assert_eq!(below(SymlinkPolicy::Follow, "../x"), None);
        assert_eq!(below(SymlinkPolicy::Follow, "nope"), None);
        assert_eq!(below(SymlinkPolicy::Never, "out/passwd.txt"), None);
        assert_eq!(
            below(SymlinkPolicy::Never, "style.css"),
            Some(site.site.join("style.css"))
        );
    }

    #[test]
    fn precompressed_siblings_are_held_to_the_same_rules() {
        let site = Site::new(Layout::Plain);
        let precompressed = |path: &str| match site.resolve(path) {
            Resolution::File(file) => file.precompressed_allowed(),
            other => panic!("{path}: {other:?}"),
        };
        assert!(precompressed("/style.css"));
        write(&site.site.join("style.css.gz"), "gz");
        assert!(precompressed("/style.css"));
        symlink("style.css.gz", site.site.join("style.css.br")).unwrap();
        assert!(precompressed("/style.css"));
        assert!(!precompressed_allowed(
            SymlinkPolicy::Never,
            &site.site,
            &site.site.join("style.css")
        ));
        fs::remove_file(site.site.join("style.css.br")).unwrap();
        symlink("../secret/.env", site.site.join("style.css.br")).unwrap();
        assert!(!precompressed("/style.css"));
    }

    #[test]
    fn policies_parse() {
        assert_eq!(SymlinkPolicy::parse("follow"), Some(SymlinkPolicy::Follow));
        assert_eq!(
            SymlinkPolicy::parse("IF_OWNER"),
            Some(SymlinkPolicy::IfOwner)
        );
        assert_eq!(SymlinkPolicy::parse(" never "), Some(SymlinkPolicy::Never));
        assert_eq!(SymlinkPolicy::parse("off"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"/a%20b").unwrap(), b"/a b");
        assert_eq!(percent_decode(b"%2F").unwrap(), b"/");
        assert!(percent_decode(b"%2").is_none());
        assert!(percent_decode(b"%g0").is_none());
    }
}
