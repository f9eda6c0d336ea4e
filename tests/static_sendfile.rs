//! Static files large enough to go out with sendfile(2) on plain TCP: every byte arrives,
//! on keep-alive HTTP/1.1, HTTP/2, with Range and compression, over TLS, and after the file
//! changes on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, client};

/// Deterministic, incompressible-looking bytes, so a shifted or repeated block shows.
fn contents(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn root_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

/// Sends `count` GETs for `path` on one connection (pipelined) and returns the bodies.
fn keep_alive_gets(server: &TestServer, path: &str, count: usize) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.repeat(count).as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut bodies = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while bodies.len() < count {
        // Parse as many complete responses as the buffer holds.
        while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .expect("content-length")
                .trim()
                .parse()
                .unwrap();
            if received.len() < end + 4 + length {
                break;
            }
            bodies.push(received[end + 4..end + 4 + length].to_vec());
            received.drain(..end + 4 + length);
        }
        if bodies.len() == count {
            break;
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed after {} responses", bodies.len());
        received.extend_from_slice(&buf[..n]);
    }
    bodies
}

#[test]
fn large_files_arrive_whole_on_one_keep_alive_connection() {
    let big = contents(300 * 1024, 1);
    let medium = contents(100 * 1024, 2);
    let root = root_with(&[("big.bin", &big), ("medium.txt", &medium)]);
    let server = TestServer::start_with_root(root.path(), &[]);
    for body in keep_alive_gets(&server, "/big.bin", 5) {
        assert!(body == big, "big.bin differs");
    }
    for body in keep_alive_gets(&server, "/medium.txt", 8) {
        assert!(body == medium, "medium.txt differs");
    }
}

#[tokio::test]
async fn large_files_over_http2_with_range_and_compression() {
    let medium = contents(100 * 1024, 3);
    let text = "static text compresses well. ".repeat(4000);
    let root = root_with(&[("medium.bin", &medium), ("page.txt", text.as_bytes())]);
    let server = TestServer::start_with_root(root.path(), &[]);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..3 {
        let response = h2.get(server.url("/medium.bin")).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert!(response.bytes().await.unwrap()[..] == medium[..]);
    }
    let client = client();
    let range = client
        .get(server.url("/medium.bin"))
        .header("range", "bytes=50000-50099")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(&range.bytes().await.unwrap()[..], &medium[50000..50100]);
    // Compressed: the encoder reads the memory copy; the client gets the original back.
    let response = client
        .get(server.url("/page.txt"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.unwrap();
    assert!(compressed.len() < text.len() / 10);
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, text);
}

#[tokio::test]
async fn a_changed_file_is_served_as_it_now_is() {
    let first = contents(64 * 1024, 4);
    let root = root_with(&[("asset.js", &first)]);
    let server = TestServer::start_with_root(root.path(), &[]);
    let client = client();
    let get = || async {
        let response = client.get(server.url("/asset.js")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap().to_vec()
    };
    assert!(get().await == first);
    assert!(get().await == first);
    // Rewritten in place, shorter, with a different modification time.
    std::thread::sleep(Duration::from_millis(20));
    let second = contents(40 * 1024, 5);
    fs::write(root.path().join("asset.js"), &second).unwrap();
    assert!(get().await == second);
    // Replaced by rename, as deploys do.
    let third = contents(80 * 1024, 6);
    fs::write(root.path().join("asset.js.new"), &third).unwrap();
    fs::rename(
        root.path().join("asset.js.new"),
        root.path().join("asset.js"),
    )
    .unwrap();
    assert!(get().await == third);
}

#[tokio::test]
async fn large_files_over_tls() {
    let big = contents(200 * 1024, 7);
    let root = root_with(&[("big.bin", &big)]);
    let certs = tempfile::tempdir().unwrap();
    let cert = common::dev_cert(certs.path(), "localhost");
    let server = TestServer::start_with_root(
        root.path(),
        &[
            ("TLS_CERT", cert.cert.to_str().unwrap()),
            ("TLS_KEY", cert.key.to_str().unwrap()),
        ],
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/big.bin", server.addr.port());
    for _ in 0..2 {
        let response = client.get(&url).send().await.unwrap();
        assert!(response.bytes().await.unwrap()[..] == big[..]);
    }
}
