//! The locales php-src's tests ask for (`de_DE`, `en_US.utf8`, `zh_CN.utf8`, …), compiled
//! with localedef from Debian's `locales` sources into a directory both servers get as
//! `LOCPATH`, so the tests that need them run instead of skipping. Made once and kept under
//! `target/tmp/phpt-locales`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (name as glibc looks it up, localedef input, charmap).
const LOCALES: &[(&str, &str, &str)] = &[
    ("C.utf8", "C", "UTF-8"),
    ("de_DE", "de_DE", "ISO-8859-1"),
    ("de_DE.iso88591", "de_DE", "ISO-8859-1"),
    ("de_DE.utf8", "de_DE", "UTF-8"),
    ("de_DE@euro", "de_DE@euro", "ISO-8859-15"),
    ("en_US", "en_US", "ISO-8859-1"),
    ("en_US.iso88591", "en_US", "ISO-8859-1"),
    ("en_US.utf8", "en_US", "UTF-8"),
    ("en_AU.utf8", "en_AU", "UTF-8"),
    ("fr_FR@euro", "fr_FR@euro", "ISO-8859-15"),
    ("fr_FR.utf8", "fr_FR", "UTF-8"),
    ("nl_NL.utf8", "nl_NL", "UTF-8"),
    ("pt_PT", "pt_PT", "ISO-8859-1"),
    ("pt_PT.iso88591", "pt_PT", "ISO-8859-1"),
    ("ja_JP.utf8", "ja_JP", "UTF-8"),
    ("ko_KR.utf8", "ko_KR", "UTF-8"),
    ("zh_CN.utf8", "zh_CN", "UTF-8"),
];

/// The directory for `LOCPATH`, or None when localedef or the locale sources are missing
/// (then the tests that need a locale skip, on both servers alike).
pub(crate) fn prepare() -> Option<PathBuf> {
    if !Path::new("/usr/share/i18n/locales/de_DE").is_file() {
        eprintln!("phpt: no locale sources (Debian's `locales`): locale tests will skip");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("phpt-locales");
    std::fs::create_dir_all(&dir).ok()?;
    for (name, input, charmap) in LOCALES {
        let target = dir.join(name);
        if target.join("LC_CTYPE").is_file() {
            continue;
        }
        let built = Command::new("localedef")
            .args(["--no-archive", "-i", input, "-f", charmap])
            .arg(&target)
            .output();
        match built {
            Ok(out) if target.join("LC_CTYPE").is_file() => drop(out),
            Ok(out) => eprintln!(
                "phpt: localedef {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => {
                eprintln!("phpt: localedef cannot run ({e}): locale tests will skip");
                return None;
            }
        }
    }
    Some(dir)
}
