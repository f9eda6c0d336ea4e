//! The pure-Rust pieces on every request's path, so regressions show:
//! `cargo bench --bench hot_paths` (needs PHP to link, like everything in this crate).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // benchmark code

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Version};
use tokio_php::ConnectionInfo;
use tokio_php::bench_support::{
    PathResolver, PhpRequest, RequestParts, ScriptMatch, add_header_line,
};

fn docroot() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("index.php"), "<?php").unwrap();
    std::fs::write(root.join("hello.php"), "<?php").unwrap();
    std::fs::create_dir_all(root.join("assets/css")).unwrap();
    std::fs::write(root.join("assets/css/app.css"), "a{}").unwrap();
    (dir, root)
}

fn script_resolution(c: &mut Criterion) {
    let (_dir, root) = docroot();
    let resolver = PathResolver::new(&root).unwrap();
    let mut group = c.benchmark_group("resolve");
    for path in [
        "/hello.php",
        "/index.php/users/42",
        "/assets/css/app.css",
        "/users/42",
        "/",
    ] {
        group.bench_function(path, |b| {
            b.iter(|| resolver.resolve(black_box(path)));
        });
    }
    group.finish();
}

fn header_conversion(c: &mut Criterion) {
    let lines: [&[u8]; 5] = [
        b"Content-Type: text/html; charset=UTF-8",
        b"Set-Cookie: session=abc123; path=/; HttpOnly",
        b"Cache-Control: no-store, no-cache",
        b"X-Powered-By: nothing",
        b"Content-Length: 12",
    ];
    c.bench_function("php header lines -> HeaderMap", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            for line in lines {
                let _ = add_header_line(&mut headers, black_box(line));
            }
            headers
        });
    });

    let mut request_headers = HeaderMap::new();
    for (name, value) in [
        ("host", "example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("cookie", "session=abc123; theme=dark"),
        ("x-request-id", "5f2b6a1c-0000-4000-8000-000000000001"),
        ("referer", "https://example.com/"),
    ] {
        request_headers.insert(name, HeaderValue::from_static(value));
    }
    let script = ScriptMatch {
        script_filename: PathBuf::from("/srv/app/public/index.php"),
        script_name: "/index.php".into(),
        path_info: None,
        alias_root: None,
    };
    let connection = ConnectionInfo {
        remote: "127.0.0.1:50000".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        tls: false,
    };
    c.bench_function("request -> $_SERVER (8 headers)", |b| {
        b.iter(|| {
            let parts = RequestParts {
                method: &Method::GET,
                version: Version::HTTP_11,
                original_path_and_query: "/users/42?tab=posts",
                query: "tab=posts",
                authority: None,
                headers: &request_headers,
                mount_prefix: "",
                connection: Some(connection),
                request_id: None,
                server_software: tokio_php::config::DEFAULT_SERVER_SOFTWARE,
            };
            PhpRequest::new(black_box(parts), &script, "/srv/app/public", None).unwrap()
        });
    });
}

criterion_group!(benches, script_resolution, header_conversion);
criterion_main!(benches);
