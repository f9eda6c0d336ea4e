//! The web request a test's sections describe, built as `run-tests.php` (8.2) builds the
//! php-cgi environment for them: `--GET--` is the query string, `--COOKIE--` the Cookie
//! header, `--POST--` a form body, `--POST_RAW--` and `--PUT--` a body whose first
//! `Content-Type:` line is the content type, `--GZIP_POST--` and `--DEFLATE_POST--` a
//! compressed form body.

use std::io::Write;

use crate::http::{Request, encode_target};
use crate::phpt::{TestFile, php_trim};

/// The request for `test`, whose script is at URL path `path`. The error borks the test.
pub(crate) fn build(test: &TestFile, path: &str) -> Result<Request, String> {
    let mut request = Request {
        method: "GET".into(),
        target: path.to_owned(),
        ..Request::default()
    };
    if let Some(query) = test.section("GET") {
        let query = php_trim(query);
        if !query.is_empty() {
            request.target = format!("{path}?{}", encode_target(query));
        }
    }
    if let Some(cookie) = test.section("COOKIE") {
        // A header cannot hold a line break; PHP's cookie parser skips the whitespace
        // before each name, so a space reads the same as the section's line breaks.
        let cookie: Vec<u8> = php_trim(cookie)
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        if !cookie.is_empty() {
            request.headers.push(("Cookie".into(), cookie));
        }
    }
    if let Some(raw) = test.non_empty("POST_RAW") {
        raw_body(&mut request, "POST", raw)?;
    } else if let Some(raw) = test.non_empty("PUT") {
        raw_body(&mut request, "PUT", raw)?;
    } else if let Some(post) = test.non_empty("POST") {
        request.method = "POST".into();
        form(&mut request);
        request.body = Some(php_trim(post).to_vec());
    } else if let Some((encoding, post)) = [("gzip", "GZIP_POST"), ("deflate", "DEFLATE_POST")]
        .into_iter()
        .find_map(|(encoding, section)| test.non_empty(section).map(|p| (encoding, p)))
    {
        request.method = "POST".into();
        form(&mut request);
        request.body = Some(compress(encoding, php_trim(post))?);
        request
            .headers
            .push(("Content-Encoding".into(), encoding.as_bytes().to_vec()));
    }
    Ok(request)
}

fn form(request: &mut Request) {
    request.headers.push((
        "Content-Type".into(),
        b"application/x-www-form-urlencoded".to_vec(),
    ));
}

/// `data` as PHP's `gzencode()` (gzip) or `gzcompress()` (deflate) write it, at level 9.
fn compress(encoding: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let level = flate2::Compression::best();
    let compressed = if encoding == "gzip" {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
        encoder.write_all(data).and_then(|()| encoder.finish())
    } else {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
        encoder.write_all(data).and_then(|()| encoder.finish())
    };
    compressed.map_err(|e| format!("cannot compress the body: {e}"))
}

/// `--POST_RAW--` / `--PUT--`: the first `Content-Type:` line names the type; the other
/// lines, joined with "\n" (a "\r" before it stays), are the body.
fn raw_body(request: &mut Request, method: &str, raw: &[u8]) -> Result<(), String> {
    request.method = method.into();
    let mut content_type: Option<String> = None;
    let mut body = Vec::new();
    let mut started = false;
    for line in php_trim(raw).split(|b| *b == b'\n') {
        if content_type.is_none()
            && line.len() >= 13
            && line[..13].eq_ignore_ascii_case(b"content-type:")
        {
            let value = String::from_utf8_lossy(&line[13..]).replace('\r', "");
            content_type = Some(value.trim().to_owned());
            continue;
        }
        if started {
            body.push(b'\n');
        }
        started = true;
        body.extend_from_slice(line);
    }
    if body.is_empty() {
        return Err("empty $request".into());
    }
    if let Some(content_type) = content_type.filter(|t| !t.is_empty()) {
        request
            .headers
            .push(("Content-Type".into(), content_type.into_bytes()));
    }
    request.body = Some(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn test(sections: &str) -> TestFile {
        let text = format!("--TEST--\nt\n{sections}--FILE--\n<?php\n--EXPECT--\n");
        TestFile::parse(Path::new("/t/x.phpt"), text.as_bytes()).unwrap()
    }

    #[test]
    fn get_and_cookie_go_in_the_target_and_header() {
        let r = build(&test("--GET--\na=1&b=x y\n--COOKIE--\nc=2\n"), "/t/x.php").unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("GET", "/t/x.php?a=1&b=x%20y")
        );
        assert_eq!(r.headers, [("Cookie".to_owned(), b"c=2".to_vec())]);
        assert!(r.body.is_none());
        let r = build(&test("--COOKIE--\na=1;\nb=2;\n"), "/x.php").unwrap();
        assert_eq!(r.headers, [("Cookie".to_owned(), b"a=1; b=2;".to_vec())]);
    }

    #[test]
    fn post_raw_takes_its_content_type_line() {
        let r = build(
            &test("--POST_RAW--\nContent-Type: multipart/form-data; boundary=X\r\n--X\r\nbody\n"),
            "/x.php",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.headers,
            [(
                "Content-Type".to_owned(),
                b"multipart/form-data; boundary=X".to_vec()
            )]
        );
        assert_eq!(r.body.unwrap(), b"--X\r\nbody");
        assert_eq!(
            build(&test("--POST_RAW--\nContent-Type: text/plain\n"), "/x.php").unwrap_err(),
            "empty $request"
        );
    }

    #[test]
    fn post_is_a_form_and_gzip_post_is_compressed() {
        let r = build(&test("--POST--\na=1\n"), "/x.php").unwrap();
        assert_eq!(r.body.as_deref(), Some(&b"a=1"[..]));
        let r = build(&test("--GZIP_POST--\na=1\n"), "/x.php").unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&r.body.unwrap()[..]),
            &mut plain,
        )
        .unwrap();
        assert_eq!(plain, b"a=1");
        assert!(
            r.headers
                .contains(&("Content-Encoding".to_owned(), b"gzip".to_vec()))
        );
    }
}
