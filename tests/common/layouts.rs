//! The three ways a test reaches the same site: as the document root, through a document
//! root of symlinks into it, and under an alias. Shared by `tests/docroot.rs` (over HTTP)
//! and the unit tests of `src/docroot.rs` (`#[path]`), so both attack the same layouts.

use std::path::{Path, PathBuf};

/// How a site's directory is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The site's directory is the document root.
    Plain,
    /// The document root holds a symlink to each entry of the site, as Debian's mediawiki
    /// package lays out `/var/lib/mediawiki`.
    Symlinked,
    /// The site is the directory of the alias [`ALIAS_PREFIX`], under an empty root.
    Alias,
}

/// Every layout, for tests that run in each.
pub(crate) const LAYOUTS: [Layout; 3] = [Layout::Plain, Layout::Symlinked, Layout::Alias];

/// The URL prefix of the site in [`Layout::Alias`].
pub(crate) const ALIAS_PREFIX: &str = "/app";

/// Where a site laid out one way is served from.
#[derive(Debug)]
pub(crate) struct LaidOut {
    /// The document root.
    pub root: PathBuf,
    /// The alias (prefix, directory), in [`Layout::Alias`].
    pub alias: Option<(&'static str, PathBuf)>,
    /// What request paths start with to reach the site: empty, or [`ALIAS_PREFIX`].
    pub prefix: &'static str,
}

impl Layout {
    /// Lays `site` out this way, making new directories (`linked/`, `root/`) in `base`.
    /// Laying out the same site twice reuses what the first time made.
    pub(crate) fn lay_out(self, site: &Path, base: &Path) -> LaidOut {
        match self {
            Self::Plain => LaidOut {
                root: site.to_path_buf(),
                alias: None,
                prefix: "",
            },
            Self::Symlinked => {
                let root = base.join("linked");
                if !root.exists() {
                    std::fs::create_dir(&root).unwrap();
                    for entry in std::fs::read_dir(site).unwrap() {
                        let entry = entry.unwrap();
                        std::os::unix::fs::symlink(entry.path(), root.join(entry.file_name()))
                            .unwrap();
                    }
                }
                LaidOut {
                    root,
                    alias: None,
                    prefix: "",
                }
            }
            Self::Alias => {
                let root = base.join("root");
                std::fs::create_dir_all(&root).unwrap();
                LaidOut {
                    root,
                    alias: Some((ALIAS_PREFIX, site.to_path_buf())),
                    prefix: ALIAS_PREFIX,
                }
            }
        }
    }
}
