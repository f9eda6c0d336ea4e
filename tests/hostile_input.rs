//! Hostile input, from outside, against the real server: malformed and abusive multipart
//! bodies, odd content types, oversized bodies and fields, and scripts that misuse
//! `header()`, `setcookie()` and sessions. PHP's own error paths run for each (through the
//! SAPI's `sapi_error`); each gets the status and body nginx + php-fpm 8.2 give it (the
//! expectations below were read off php-fpm), the log names what PHP objected to with the
//! request, and the single worker serves a good request right after.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;
#[path = "phpt/http.rs"]
mod http;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};

fn send(server: &TestServer, request: &http::Request) -> http::Response {
    http::send(server.addr, request, Duration::from_secs(30)).unwrap_or_else(|e| {
        panic!(
            "{} {}: {e}; log:\n{}",
            request.method,
            request.target,
            server.log()
        )
    })
}

fn post(content_type: Option<&[u8]>, body: Vec<u8>) -> http::Request {
    http::Request {
        method: "POST".into(),
        target: "/parsed.php".into(),
        headers: content_type
            .map(|t| vec![("Content-Type".to_owned(), t.to_vec())])
            .unwrap_or_default(),
        body: Some(body),
    }
}

fn get(target: &str) -> http::Request {
    http::Request {
        method: "GET".into(),
        target: target.into(),
        ..http::Request::default()
    }
}

/// Waits for `needle` in what the server logged after byte `from` of its log.
fn logged_since(server: &TestServer, from: usize, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if server
            .log()
            .get(from..)
            .is_some_and(|new| new.contains(needle))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The one worker still serves: the process is alive and PHP's state is clean.
fn served_after(server: &TestServer, case: &str) {
    let r = send(server, &get("/hello.php"));
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"Hello, world!"[..]),
        "after {case}"
    );
}

const MULTIPART: &[u8] = b"multipart/form-data; boundary=BOUND";

fn part(name: &str, value: &[u8], filename: Option<&str>) -> Vec<u8> {
    let mut p = format!("--BOUND\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
    if let Some(filename) = filename {
        p.extend_from_slice(
            format!("; filename=\"{filename}\"\r\nContent-Type: text/plain").as_bytes(),
        );
    }
    p.extend_from_slice(b"\r\n\r\n");
    p.extend_from_slice(value);
    p.extend_from_slice(b"\r\n");
    p
}

fn multipart(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = parts.concat();
    body.extend_from_slice(b"--BOUND--\r\n");
    body
}

/// One abusive body: what it is, and what php-fpm made of it.
struct BodyCase {
    name: &'static str,
    content_type: Option<Vec<u8>>,
    body: Vec<u8>,
    /// The fields of parsed.php's answer that must match.
    parsed: Value,
    /// What PHP logs about it, if anything.
    log: Option<&'static str>,
}

fn body_cases() -> Vec<BodyCase> {
    let ct = |t: &[u8]| Some(t.to_vec());
    let form = || ct(b"application/x-www-form-urlencoded");
    let file =
        |error: u32, name: &str, size: u32| json!({"name": name, "size": size, "error": error});
    vec![
        BodyCase {
            name: "multipart without a boundary",
            content_type: ct(b"multipart/form-data"),
            body: b"x=1".to_vec(),
            parsed: json!({"post": 0, "files": {}, "input": 3}),
            log: Some("Missing boundary in multipart/form-data POST data"),
        },
        BodyCase {
            name: "boundary with an unterminated quote",
            content_type: ct(b"multipart/form-data; boundary=\"abc"),
            body: b"--abc\r\n".to_vec(),
            parsed: json!({"post": 0, "files": {}, "input": 7}),
            log: Some("Invalid boundary in multipart/form-data POST data"),
        },
        BodyCase {
            name: "boundary of 6000 bytes",
            content_type: Some([&b"multipart/form-data; boundary="[..], &[b'b'; 6000]].concat()),
            body: [&b"--"[..], &[b'b'; 6000], b"\r\n"].concat(),
            parsed: json!({"post": 0, "files": {}, "input": 6004}),
            log: Some("Boundary too large in multipart/form-data POST data"),
        },
        BodyCase {
            name: "empty boundary",
            content_type: ct(b"multipart/form-data; boundary="),
            body: b"--\r\n".to_vec(),
            parsed: json!({"post": 0, "files": {}, "input": 0}),
            log: None,
        },
        BodyCase {
            name: "part without a name",
            content_type: ct(MULTIPART),
            body: b"--BOUND\r\nContent-Disposition: form-data\r\n\r\nv\r\n--BOUND--\r\n".to_vec(),
            parsed: json!({"post": 0, "files": {}, "input": 0}),
            log: Some("File Upload Mime headers garbled"),
        },
        BodyCase {
            name: "part without headers",
            content_type: ct(MULTIPART),
            body: b"--BOUND\r\n\r\nv\r\n--BOUND--\r\n".to_vec(),
            parsed: json!({"post": 0, "files": {}, "input": 0}),
            log: None,
        },
        BodyCase {
            name: "25 files, over max_file_uploads",
            content_type: ct(MULTIPART),
            body: multipart(
                &(0..25)
                    .map(|i| part(&format!("f{i}"), b"x", Some(&format!("f{i}.txt"))))
                    .collect::<Vec<_>>(),
            ),
            parsed: json!({"post": 0}),
            log: Some("Maximum number of allowable file uploads has been exceeded"),
        },
        BodyCase {
            name: "file over upload_max_filesize",
            content_type: ct(MULTIPART),
            body: multipart(&[part("big", &vec![b'a'; 3 << 20], Some("big.bin"))]),
            parsed: json!({"post": 0, "files": {"big": file(1, "big.bin", 0)}, "input": 0}),
            log: None, // PHP reports it only in a debug build
        },
        BodyCase {
            name: "file over MAX_FILE_SIZE",
            content_type: ct(MULTIPART),
            body: multipart(&[
                part("MAX_FILE_SIZE", b"10", None),
                part("f", &[b'a'; 100], Some("f.txt")),
            ]),
            parsed: json!({"post": 1, "names": ["MAX_FILE_SIZE"], "files": {"f": file(2, "f.txt", 0)}}),
            log: None, // PHP reports it only in a debug build
        },
        BodyCase {
            name: "body ends inside a file",
            content_type: ct(MULTIPART),
            body: b"--BOUND\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\ndata"
                .to_vec(),
            parsed: json!({"post": 0, "files": {"f": file(3, "a.txt", 0)}, "input": 0}),
            log: None, // PHP reports it only in a debug build
        },
        BodyCase {
            name: "file part without a file",
            content_type: ct(MULTIPART),
            body: multipart(&[part("f", b"", Some(""))]),
            parsed: json!({"post": 0, "files": {"f": file(4, "", 0)}}),
            log: None,
        },
        BodyCase {
            name: "path in a file name",
            content_type: ct(MULTIPART),
            body: multipart(&[part("f", b"x", Some("../../etc/passwd"))]),
            parsed: json!({"files": {"f": file(0, "passwd", 1)}}),
            log: None,
        },
        BodyCase {
            name: "1500 fields, over max_input_vars",
            content_type: form(),
            body: (0..1500).map(|i| format!("v{i}=1")).collect::<Vec<_>>().join("&").into_bytes(),
            parsed: json!({"post": 1001, "names": ["v0", "v1", "v2", "v3", "v4"]}),
            log: Some("Input variables exceeded 1000"),
        },
        BodyCase {
            name: "field nested 100 deep, over max_input_nesting_level",
            content_type: form(),
            body: format!("a{}=1&ok=1", "[]".repeat(100)).into_bytes(),
            parsed: json!({"post": 1, "names": ["ok"]}),
            log: Some("Input variable nesting level exceeded 64"),
        },
        BodyCase {
            name: "unbalanced brackets in names",
            content_type: form(),
            body: b"a[b=1&c]=2&d[e]f=3".to_vec(),
            parsed: json!({"post": 4, "names": ["a_b", "c]", "d"]}),
            log: None,
        },
        BodyCase {
            name: "NUL bytes in a name and a value",
            content_type: form(),
            body: b"a%00b=1&c=d%00e".to_vec(),
            parsed: json!({"post": 2, "names": ["a", "c"]}),
            log: None,
        },
        BodyCase {
            name: "form over post_max_size",
            content_type: form(),
            body: [&b"a="[..], &vec![b'x'; 9 << 20]].concat(),
            parsed: json!({"post": 0, "input": (9 << 20) + 2}),
            log: Some("POST Content-Length of 9437186 bytes exceeds the limit of 8388608 bytes"),
        },
        BodyCase {
            name: "multipart over post_max_size",
            content_type: ct(MULTIPART),
            body: multipart(&[part("f", &vec![b'a'; 9 << 20], Some("f.bin"))]),
            parsed: json!({"post": 0, "files": {}}),
            log: Some("exceeds the limit of 8388608 bytes"),
        },
        BodyCase {
            name: "2 MiB field",
            content_type: form(),
            body: [&b"a="[..], &vec![b'y'; 2 << 20]].concat(),
            parsed: json!({"post": 1, "names": ["a"], "input": (2 << 20) + 2}),
            log: None,
        },
        BodyCase {
            name: "content type of only a semicolon",
            content_type: ct(b";"),
            body: b"a=1".to_vec(),
            parsed: json!({"post": 0, "input": 3}),
            log: None,
        },
        BodyCase {
            name: "every byte as a form",
            content_type: ct(b"application/x-www-form-urlencoded; charset=binary"),
            body: (0..=255u8).collect(),
            parsed: json!({"post": 1, "input": 256}),
            log: None,
        },
        BodyCase {
            name: "text/plain",
            content_type: ct(b"text/plain"),
            body: b"a=1".to_vec(),
            parsed: json!({"post": 0, "input": 3}),
            log: None,
        },
        BodyCase {
            name: "no content type",
            content_type: None,
            body: b"a=1".to_vec(),
            parsed: json!({"post": 0, "input": 3}),
            log: None,
        },
        BodyCase {
            name: "multipart/mixed",
            content_type: ct(b"multipart/mixed; boundary=BOUND"),
            body: multipart(&[part("a", b"1", None)]),
            parsed: json!({"post": 0, "files": {}, "input": 67}),
            log: None,
        },
    ]
}

#[test]
fn abusive_bodies_get_what_php_fpm_gives_and_the_worker_serves_on() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    for case in body_cases() {
        let from = server.log().len();
        let r = send(&server, &post(case.content_type.as_deref(), case.body));
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&r.body)
        );
        let parsed: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", case.name, String::from_utf8_lossy(&r.body)));
        for (field, want) in case.parsed.as_object().unwrap() {
            assert_eq!(&parsed[field], want, "{}: {field} in {parsed}", case.name);
        }
        if let Some(needle) = case.log {
            assert!(
                logged_since(&server, from, needle),
                "{}: no log line {needle:?}; log:\n{}",
                case.name,
                server.log()
            );
        }
        served_after(&server, case.name);
    }
    // The warnings are PHP's, tagged with the request they belong to.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("Missing boundary in multipart/form-data POST data"))
        .unwrap();
    assert!(line.contains("POST /parsed.php"), "{line}");
}

#[test]
fn too_many_files_keeps_the_first_twenty() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let body = multipart(
        &(0..25)
            .map(|i| part(&format!("f{i}"), b"x", Some(&format!("f{i}.txt"))))
            .collect::<Vec<_>>(),
    );
    let r = send(&server, &post(Some(MULTIPART), body));
    let parsed: Value = serde_json::from_slice(&r.body).unwrap();
    let files = parsed["files"].as_object().unwrap();
    assert_eq!(files.len(), 20);
    assert!(files.values().all(|f| f["error"] == 0));
}

#[test]
fn a_body_over_max_body_size_is_413_before_php() {
    let server = TestServer::start(&[("PHP_WORKERS", "1"), ("MAX_BODY_SIZE", "1M")]);
    let r = send(
        &server,
        &post(
            Some(MULTIPART),
            multipart(&[part("f", &vec![b'a'; 2 << 20], Some("f"))]),
        ),
    );
    assert_eq!(r.status, 413);
    served_after(&server, "a body over MAX_BODY_SIZE");
}

#[test]
fn a_nul_byte_in_a_request_header_is_400() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let reply = server.raw(
        b"POST /parsed.php HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=a\0b\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    served_after(&server, "a NUL in a header");
}

/// One everyday mistake in a script (tests/fixtures/misuse.php).
struct MisuseCase {
    case: &'static str,
    status: u16,
    /// The reason phrase on HTTP/1.1.
    reason: &'static str,
    body: &'static str,
    log: Option<&'static str>,
}

const MISUSE: &[MisuseCase] = &[
    MisuseCase {
        case: "header_after_output",
        status: 200,
        reason: "OK",
        body: "out done",
        log: Some("Cannot modify header information - headers already sent by (output started at"),
    },
    MisuseCase {
        case: "header_crlf",
        status: 200,
        reason: "OK",
        body: "done",
        log: Some("Header may not contain more than a single header, new line detected"),
    },
    MisuseCase {
        case: "header_lf",
        status: 200,
        reason: "OK",
        body: "done",
        log: Some("Header may not contain more than a single header, new line detected"),
    },
    MisuseCase {
        case: "header_nul",
        status: 200,
        reason: "OK",
        body: "done",
        log: Some("Header may not contain NUL bytes"),
    },
    MisuseCase {
        case: "header_remove_colon",
        status: 200,
        reason: "OK",
        body: "done",
        log: Some("Header to delete may not contain colon."),
    },
    MisuseCase {
        case: "setcookie_after_output",
        status: 200,
        reason: "OK",
        body: "out done",
        log: Some("Cannot modify header information - headers already sent"),
    },
    MisuseCase {
        case: "session_after_output",
        status: 200,
        reason: "OK",
        body: "out done",
        log: Some("Session cannot be started after headers have already been sent"),
    },
    MisuseCase {
        case: "setcookie_bad_name",
        status: 500,
        reason: "Internal Server Error",
        body: "",
        log: Some("Uncaught ValueError: setcookie(): Argument #1 ($name) cannot contain"),
    },
    MisuseCase {
        case: "response_code_after_output",
        status: 200,
        reason: "OK",
        body: "out done",
        log: None,
    },
    MisuseCase {
        case: "redirect_after_output",
        status: 200,
        reason: "OK",
        body: "out done",
        log: Some("Cannot modify header information"),
    },
    MisuseCase {
        case: "status_line",
        status: 418,
        reason: "Short And Stout",
        body: "done",
        log: None,
    },
    MisuseCase {
        case: "status_header",
        status: 410,
        reason: "Gone Away",
        body: "done",
        log: None,
    },
];

#[test]
fn scripts_that_misuse_headers_cookies_and_sessions_get_what_php_fpm_gives() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    for m in MISUSE {
        let from = server.log().len();
        let r = send(&server, &get(&format!("/misuse.php?case={}", m.case)));
        assert_eq!(
            (
                r.status,
                r.reason.as_str(),
                String::from_utf8_lossy(&r.body).as_ref()
            ),
            (m.status, m.reason, m.body),
            "{}",
            m.case
        );
        let header = |name: &str| r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        // A header PHP refused is not half-sent; nothing injected; no Status header.
        assert!(
            header("x-injected").is_none() && header("x-split").is_none(),
            "{}",
            m.case
        );
        assert!(
            header("x-late").is_none() && header("status").is_none(),
            "{}",
            m.case
        );
        if m.case == "header_remove_colon" {
            assert!(
                header("x-keep").is_some(),
                "the refused removal removes nothing"
            );
        }
        if let Some(needle) = m.log {
            assert!(
                logged_since(&server, from, needle),
                "{}: no log line {needle:?}; log:\n{}",
                m.case,
                server.log()
            );
        }
        served_after(&server, m.case);
    }
}
