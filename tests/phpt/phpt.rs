//! One `.phpt` file, read the way php-src's `run-tests.php` (8.2) reads it: the sections,
//! the checks that make a test "borked", `--FILEEOF--` and the `*_EXTERNAL` sections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The sections `run-tests.php` accepts; any other name borks the test.
const ALLOWED_SECTIONS: &[&str] = &[
    "EXPECT",
    "EXPECTF",
    "EXPECTREGEX",
    "EXPECTREGEX_EXTERNAL",
    "EXPECT_EXTERNAL",
    "EXPECTF_EXTERNAL",
    "EXPECTHEADERS",
    "POST",
    "POST_RAW",
    "GZIP_POST",
    "DEFLATE_POST",
    "PUT",
    "GET",
    "COOKIE",
    "ARGS",
    "FILE",
    "FILEEOF",
    "FILE_EXTERNAL",
    "REDIRECTTEST",
    "CAPTURE_STDIO",
    "STDIN",
    "CGI",
    "PHPDBG",
    "INI",
    "ENV",
    "EXTENSIONS",
    "SKIPIF",
    "XFAIL",
    "XLEAK",
    "CLEAN",
    "CREDITS",
    "DESCRIPTION",
    "CONFLICTS",
    "WHITESPACE_SENSITIVE",
    "FLAKY",
];

/// A parsed test. Section bodies are bytes: tests carry binary data and other encodings.
#[derive(Debug, Clone)]
pub(crate) struct TestFile {
    /// The `.phpt` file.
    pub path: PathBuf,
    sections: BTreeMap<String, Vec<u8>>,
}

/// How the output is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expectation {
    /// `--EXPECT--`: the exact text.
    Exact(Vec<u8>),
    /// `--EXPECTF--`: text with `%s`, `%d`, … placeholders.
    Format(Vec<u8>),
    /// `--EXPECTREGEX--`: a PCRE pattern.
    Regex(Vec<u8>),
}

impl TestFile {
    /// Reads and checks `path`; the error is run-tests.php's reason to bork the test.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read test: {e}"))?;
        Self::parse(path, &bytes)
    }

    /// Parses the text of the test at `path`.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Self, String> {
        let mut lines = split_lines(bytes);
        let first = lines.next().ok_or("empty test")?;
        if !first.starts_with(b"--TEST--") {
            return Err("tests must start with --TEST--".into());
        }
        let mut sections: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        sections.insert("TEST".into(), Vec::new());
        let mut section = String::from("TEST");
        let mut in_file = false;
        let mut done = false;
        for line in lines {
            if let Some(name) = section_start(line) {
                if sections.get(&name).is_some_and(|text| !text.is_empty()) {
                    return Err(format!("duplicated {name} section"));
                }
                if !ALLOWED_SECTIONS.contains(&name.as_str()) {
                    return Err(format!("Unknown section \"{name}\""));
                }
                in_file = matches!(name.as_str(), "FILE" | "FILEEOF" | "FILE_EXTERNAL");
                done = false;
                sections.insert(name.clone(), Vec::new());
                section = name;
                continue;
            }
            if !done && let Some(text) = sections.get_mut(&section) {
                text.extend_from_slice(line);
            }
            if in_file && is_done_marker(line) {
                done = true;
            }
        }
        let mut test = Self {
            path: path.to_path_buf(),
            sections,
        };
        test.validate()?;
        Ok(test)
    }

    fn validate(&mut self) -> Result<(), String> {
        if self.has("REDIRECTTEST") {
            return Ok(());
        }
        let files = ["FILE", "FILEEOF", "FILE_EXTERNAL"]
            .iter()
            .filter(|s| self.has(s))
            .count();
        if !self.has("PHPDBG") && files != 1 {
            return Err("missing section --FILE--".into());
        }
        if let Some(text) = self.sections.remove("FILEEOF") {
            let end = text
                .iter()
                .rposition(|b| *b != b'\r' && *b != b'\n')
                .map_or(0, |i| i + 1);
            self.sections.insert("FILE".into(), text[..end].to_vec());
        }
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for prefix in ["FILE", "EXPECT", "EXPECTF", "EXPECTREGEX"] {
            let key = format!("{prefix}_EXTERNAL");
            if let Some(name) = self.sections.get(&key) {
                // As run-tests.php: only files under the test's own directory.
                let name = String::from_utf8_lossy(name).replace("..", "");
                let file = dir.join(name.trim());
                let text = std::fs::read(&file)
                    .map_err(|_| format!("could not load --{key}-- {}", file.display()))?;
                self.sections.insert(prefix.into(), text);
            }
        }
        let expects = ["EXPECT", "EXPECTF", "EXPECTREGEX"]
            .iter()
            .filter(|s| self.has(s))
            .count();
        if expects != 1 {
            return Err("missing section --EXPECT--, --EXPECTF-- or --EXPECTREGEX--".into());
        }
        Ok(())
    }

    /// Whether the section exists (it may be empty).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// The section's text, if it exists.
    pub(crate) fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections.get(name).map(Vec::as_slice)
    }

    /// The section's text if it exists and is not empty (PHP's `!empty()`: "0" is empty).
    pub(crate) fn non_empty(&self, name: &str) -> Option<&[u8]> {
        self.section(name).filter(|s| !s.is_empty() && *s != b"0")
    }

    /// The section as text (lossy), trimmed as PHP's `trim()` does.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.section(name)
            .map(|s| String::from_utf8_lossy(php_trim(s)).into_owned())
    }

    /// `--TEST--`, the test's title.
    pub(crate) fn title(&self) -> String {
        self.text("TEST").unwrap_or_default()
    }

    /// Whether run-tests.php would run it through php-cgi (a web request).
    pub(crate) fn is_cgi(&self) -> bool {
        self.has("CGI")
            || [
                "GET",
                "POST",
                "GZIP_POST",
                "DEFLATE_POST",
                "POST_RAW",
                "PUT",
                "COOKIE",
                "EXPECTHEADERS",
            ]
            .iter()
            .any(|s| self.non_empty(s).is_some())
    }

    /// How the output is judged (exactly one exists, `validate` made sure).
    pub(crate) fn expectation(&self) -> Expectation {
        if let Some(text) = self.section("EXPECTF") {
            Expectation::Format(text.to_vec())
        } else if let Some(text) = self.section("EXPECTREGEX") {
            Expectation::Regex(text.to_vec())
        } else {
            Expectation::Exact(self.section("EXPECT").unwrap_or_default().to_vec())
        }
    }

    /// `--INI--` as (name, value) pairs, in order, with `{PWD}` and `{TMP}` filled in.
    pub(crate) fn ini(&self, tmp: &Path) -> Vec<(String, String)> {
        let Some(text) = self.section("INI") else {
            return Vec::new();
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let text = String::from_utf8_lossy(text)
            .replace("{PWD}", &dir.to_string_lossy())
            .replace("{TMP}", &tmp.to_string_lossy());
        settings(&text)
    }

    /// `--EXTENSIONS--`: the extensions the test needs, lower-cased.
    pub(crate) fn extensions(&self) -> Vec<String> {
        self.text("EXTENSIONS")
            .map(|t| {
                t.split(['\r', '\n'])
                    .map(|e| e.trim().to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `--CONFLICTS--`, or the directory's `CONFLICTS` file: keys no two tests running at
    /// once may share.
    pub(crate) fn conflicts(&self) -> Vec<String> {
        let text = match self.section("CONFLICTS") {
            Some(text) => String::from_utf8_lossy(text).into_owned(),
            None => self
                .path
                .parent()
                .and_then(|d| std::fs::read_to_string(d.join("CONFLICTS")).ok())
                .unwrap_or_default(),
        };
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// `name=value` lines as run-tests.php's `settings2array` reads them (both trimmed; lines
/// without `=` ignored; the last value of a name wins, except for `extension`).
pub(crate) fn settings(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split(['\r', '\n']) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        let repeatable = name == "extension" || name == "zend_extension";
        if !repeatable && let Some(slot) = out.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            out.push((name, value));
        }
    }
    out
}

/// PHP's `trim()`: " \t\n\r\0\x0B" from both ends.
pub(crate) fn php_trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0 | 0x0b);
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Lines with their line endings, as PHP's `fgets` returns them.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// `--NAME--` at the start of a line (`/^--([_A-Z]+)--/`).
fn section_start(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"--")?;
    let len = rest
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'_')
        .count();
    (len > 0 && rest[len..].starts_with(b"--"))
        .then(|| String::from_utf8_lossy(&rest[..len]).into_owned())
}

/// `/^===DONE===\s*$/`.
fn is_done_marker(line: &[u8]) -> bool {
    line.strip_prefix(b"===DONE===")
        .is_some_and(|rest| rest.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TestFile, String> {
        TestFile::parse(Path::new("/t/x.phpt"), text.as_bytes())
    }

    #[test]
    fn sections_are_split_at_their_markers() {
        let t = parse(
            "--TEST--\nA title\n--INI--\nprecision = 14\nfoo=\"a=b\"\n--GET--\na=1\n--FILE--\n<?php echo 1;\n===DONE===\nignored\n--EXPECT--\n1\n",
        )
        .unwrap();
        assert_eq!(t.title(), "A title");
        assert_eq!(t.section("FILE").unwrap(), b"<?php echo 1;\n===DONE===\n");
        assert!(t.is_cgi());
        assert_eq!(
            t.ini(Path::new("/tmp")),
            [
                ("precision".to_owned(), "14".to_owned()),
                ("foo".to_owned(), "\"a=b\"".to_owned())
            ]
        );
        assert_eq!(t.expectation(), Expectation::Exact(b"1\n".to_vec()));
    }

    #[test]
    fn fileeof_loses_its_final_newlines() {
        let t = parse("--TEST--\nx\n--FILEEOF--\n<?php echo 1;\n\n--EXPECT--\n1\n").unwrap();
        assert_eq!(t.section("FILE").unwrap(), b"<?php echo 1;");
        assert!(!t.is_cgi());
    }

    #[test]
    fn broken_tests_are_borked_with_run_tests_reasons() {
        assert_eq!(parse("x").unwrap_err(), "tests must start with --TEST--");
        assert_eq!(
            parse("--TEST--\nx\n--EXPECT--\n1\n").unwrap_err(),
            "missing section --FILE--"
        );
        assert!(
            parse("--TEST--\nx\n--FILE--\n1\n--BOGUS--\n")
                .unwrap_err()
                .contains("Unknown section")
        );
        assert!(
            parse("--TEST--\nx\n--FILE--\n1\n--EXPECT--\n1\n--EXPECTF--\n1\n")
                .unwrap_err()
                .contains("missing section --EXPECT--")
        );
    }

    #[test]
    fn an_empty_get_section_is_no_request() {
        let t = parse("--TEST--\nx\n--GET--\n--FILE--\n1\n--EXPECT--\n1\n").unwrap();
        assert!(!t.is_cgi());
    }

    #[test]
    fn settings_keep_the_last_value_and_every_extension() {
        let s = settings("a=1\nb\nextension=x\nextension=y\na = 2\r\n");
        assert_eq!(
            s,
            [
                ("a".to_owned(), "2".to_owned()),
                ("extension".to_owned(), "x".to_owned()),
                ("extension".to_owned(), "y".to_owned())
            ]
        );
    }

    #[test]
    fn trim_is_php_trim() {
        assert_eq!(php_trim(b" \0\x0bab c\r\n"), b"ab c");
        assert_eq!(php_trim(b"   "), b"");
    }
}
