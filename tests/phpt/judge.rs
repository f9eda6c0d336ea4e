//! Judges a test's output the way php-src's `run-tests.php` (8.2) does: trimmed output
//! against `--EXPECT--` (exact), `--EXPECTF--` (placeholders made into a PCRE pattern) or
//! `--EXPECTREGEX--`, and `--EXPECTHEADERS--` against the response headers.

use pcre2::bytes::RegexBuilder;

use crate::phpt::{Expectation, TestFile, php_trim};

/// What the comparison found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Output and headers match.
    Pass,
    /// They do not; `expected` is what was wanted (text, or the pattern), `actual` what came.
    Mismatch {
        /// The expected text or pattern, headers first when they were wanted.
        expected: Vec<u8>,
        /// The output, headers first when they were wanted.
        actual: Vec<u8>,
    },
}

/// Judges `body` (the response body) and `headers` (name, value; in order) for `test`.
/// `headers` includes a `Status` line for a status other than 200, as php-cgi prints it.
pub(crate) fn judge(test: &TestFile, body: &[u8], headers: &[(String, String)]) -> Verdict {
    // run-tests.php normalises line ends of command-line output, not of php-cgi's body.
    let output = if test.is_cgi() {
        php_trim(body).to_vec()
    } else {
        crlf_to_lf(php_trim(body))
    };
    let (headers_ok, wanted_headers, got_headers) = match test.section("EXPECTHEADERS") {
        Some(want) => compare_headers(want, headers),
        None => (true, Vec::new(), Vec::new()),
    };
    let (output_ok, expected) = match test.expectation() {
        Expectation::Exact(text) => {
            let wanted = crlf_to_lf(php_trim(&text));
            (output == wanted, wanted)
        }
        Expectation::Format(text) => {
            let pattern = expectf_to_regex(&crlf_to_lf(php_trim(&text)));
            (matches(&pattern, &output), pattern)
        }
        Expectation::Regex(text) => {
            let pattern = crlf_to_lf(php_trim(&text));
            (matches(&pattern, &output), pattern)
        }
    };
    if output_ok && headers_ok {
        return Verdict::Pass;
    }
    if headers_ok {
        return Verdict::Mismatch {
            expected,
            actual: output,
        };
    }
    let join = |head: Vec<u8>, rest: Vec<u8>| {
        let mut all = head;
        all.extend_from_slice(b"\n--HEADERS--\n");
        all.extend_from_slice(&rest);
        all
    };
    Verdict::Mismatch {
        expected: join(wanted_headers, expected),
        actual: join(got_headers, output),
    }
}

/// `--EXPECTHEADERS--`: every wanted `Name: value` must be the response's last value of
/// that name. Names are compared without case: over HTTP they are case-insensitive (hyper
/// sends them in lower case), where run-tests.php reads php-cgi's spelling.
fn compare_headers(want: &[u8], headers: &[(String, String)]) -> (bool, Vec<u8>, Vec<u8>) {
    let text = String::from_utf8_lossy(want);
    let mut ok = true;
    let mut wanted = Vec::new();
    let mut got = Vec::new();
    for line in text.split(['\r', '\n']) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        wanted.push(format!("{name}: {value}"));
        let last = headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim());
        match last {
            Some(v) => {
                got.push(format!("{name}: {v}"));
                ok &= v == value;
            }
            None => ok = false,
        }
    }
    (
        ok,
        wanted.join("\n").into_bytes(),
        got.join("\n").into_bytes(),
    )
}

/// Whether `/^{pattern}$/s` matches `subject` (PCRE on bytes, as `preg_match` without `u`).
/// A pattern that does not compile never matches, as `preg_match` then returns false.
fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    // The pattern is bytes; each byte above ASCII is written as `\xHH`, which PCRE without
    // UTF mode reads as that byte, in a class too.
    let mut text = String::with_capacity(pattern.len() + 2);
    text.push('^');
    for &b in pattern {
        if b.is_ascii() {
            text.push(char::from(b));
        } else {
            text.push_str(&format!("\\x{b:02x}"));
        }
    }
    text.push('$');
    RegexBuilder::new()
        .dotall(true)
        .jit_if_available(true)
        .build(&text)
        .is_ok_and(|re| re.is_match(subject).unwrap_or(false))
}

/// run-tests.php's EXPECTF conversion: everything outside `%r…%r` is `preg_quote`d, the
/// `%r` parts are kept as groups, then the placeholders are replaced in one pass (`strtr`).
pub(crate) fn expectf_to_regex(wanted: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(wanted.len() * 2);
    let mut offset = 0;
    while offset < wanted.len() {
        let (start, end) = match find(wanted, b"%r", offset) {
            Some(start) => match find(wanted, b"%r", start + 2) {
                Some(end) => (start, end),
                None => (wanted.len(), wanted.len()), // unbalanced: quoted as text
            },
            None => (wanted.len(), wanted.len()),
        };
        preg_quote(&wanted[offset..start], &mut quoted);
        if end > start {
            quoted.push(b'(');
            quoted.extend_from_slice(&wanted[start + 2..end]);
            quoted.push(b')');
        }
        offset = end + 2;
    }
    let mut out = Vec::with_capacity(quoted.len() * 2);
    let mut i = 0;
    while i < quoted.len() {
        let replacement = (quoted[i] == b'%')
            .then(|| quoted.get(i + 1))
            .flatten()
            .and_then(|c| placeholder(*c));
        match replacement {
            Some(re) => {
                out.extend_from_slice(re.as_bytes());
                i += 2;
            }
            None => {
                out.push(quoted[i]);
                i += 1;
            }
        }
    }
    out
}

/// What each EXPECTF placeholder stands for.
fn placeholder(c: u8) -> Option<&'static str> {
    Some(match c {
        b'e' => "\\/",
        b's' => "[^\\r\\n]+",
        b'S' => "[^\\r\\n]*",
        b'a' => ".+",
        b'A' => ".*",
        b'w' => "\\s*",
        b'i' => "[+-]?\\d+",
        b'd' => "\\d+",
        b'x' => "[0-9a-fA-F]+",
        b'f' => "[+-]?(?:\\d+|(?=\\.\\d))(?:\\.\\d+)?(?:[Ee][+-]?\\d+)?",
        b'c' => ".",
        b'0' => "\\x00",
        _ => return None,
    })
}

/// PHP's `preg_quote($text, '/')`.
fn preg_quote(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'.' | b'\\' | b'+' | b'*' | b'?' | b'[' | b'^' | b']' | b'$' | b'(' | b')' | b'{'
            | b'}' | b'=' | b'!' | b'>' | b'<' | b'|' | b':' | b'-' | b'#' | b'/' => {
                out.push(b'\\');
                out.push(b);
            }
            0 => out.extend_from_slice(b"\\000"),
            _ => out.push(b),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn crlf_to_lf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn test(sections: &str) -> TestFile {
        let text = format!("--TEST--\nt\n--FILE--\n<?php\n{sections}");
        TestFile::parse(Path::new("/t/x.phpt"), text.as_bytes()).unwrap()
    }

    fn no_headers() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn exact_output_is_trimmed_and_line_ends_normalised() {
        let t = test("--EXPECT--\nline 1\nline 2\n");
        assert_eq!(
            judge(&t, b"\n line 1\r\nline 2 \n", &no_headers()),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&t, b"line 1\nline 3", &no_headers()),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn expectf_placeholders_match_as_in_run_tests() {
        let t = test("--EXPECTF--\nWarning: foo() in %s on line %d\nfloat(%f) %x %c|%a|\n");
        let out = b"Warning: foo() in /srv/t/x.php on line 12\nfloat(-1.5E+3) 1fA z|any\nthing|";
        assert_eq!(judge(&t, out, &no_headers()), Verdict::Pass);
        let bad = b"Warning: foo() in /srv/t/x.php on line twelve\nfloat(1) 0 z|x|";
        assert!(matches!(
            judge(&t, bad, &no_headers()),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn expectf_keeps_percent_r_as_a_regex_and_quotes_the_rest() {
        assert_eq!(
            expectf_to_regex(b"a.b%r(x|y)+%rc"),
            b"a\\.b((x|y)+)c".to_vec()
        );
        assert_eq!(
            expectf_to_regex(b"%r unbalanced"),
            b"%r unbalanced".to_vec()
        );
        let t = test("--EXPECTF--\n%rint\\(\\d+\\)%r (%s)\n");
        assert_eq!(judge(&t, b"int(42) (ok)", &no_headers()), Verdict::Pass);
    }

    #[test]
    fn expectregex_is_anchored_and_dotall() {
        let t = test("--EXPECTREGEX--\nstart.*end\n");
        assert_eq!(
            judge(&t, b"start\nmiddle\nend", &no_headers()),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&t, b"start end more", &no_headers()),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn binary_output_is_matched_as_bytes() {
        let t = TestFile::parse(
            Path::new("/t/x.phpt"),
            b"--TEST--\nt\n--FILE--\n<?php\n--EXPECTF--\n\xe9%s\xff\n",
        )
        .unwrap();
        assert_eq!(judge(&t, b"\xe9abc\xff", &no_headers()), Verdict::Pass);
        assert!(matches!(
            judge(&t, b"\xe8abc\xff", &no_headers()),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn expected_headers_are_the_last_of_their_name_without_case() {
        let t = test(
            "--GET--\na=1\n--EXPECTHEADERS--\nContent-type: text/plain\nStatus: 404 Not Found\n--EXPECT--\nx\n",
        );
        let headers = vec![
            ("content-type".to_owned(), "text/html".to_owned()),
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("Status".to_owned(), "404 Not Found".to_owned()),
        ];
        assert_eq!(judge(&t, b"x", &headers), Verdict::Pass);
        let Verdict::Mismatch { expected, actual } = judge(&t, b"x", &headers[..1]) else {
            panic!("headers differ");
        };
        assert!(expected.starts_with(b"Content-type: text/plain\nStatus: 404 Not Found"));
        assert!(actual.starts_with(b"Content-type: text/html\n--HEADERS--"));
    }

    #[test]
    fn a_pattern_that_does_not_compile_never_matches() {
        let t = test("--EXPECTREGEX--\n(unclosed\n");
        assert!(matches!(
            judge(&t, b"(unclosed", &no_headers()),
            Verdict::Mismatch { .. }
        ));
    }
}
