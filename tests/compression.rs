//! Compression over HTTP: negotiated codings, what is never compressed, and flushed output
//! that reaches the client compressed before the script ends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{TestServer, client};
use futures_util::StreamExt;

/// Decodes the start of a compressed stream that has not ended, as a browser does.
fn decode_prefix(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "br" => {
            let mut w = brotli::DecompressorWriter::new(Vec::new(), 4096);
            w.write_all(data).unwrap();
            w.flush().unwrap();
            w.get_ref().clone()
        }
        "zstd" => {
            let mut w = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
            w.write_all(data).unwrap();
            w.flush().unwrap();
            w.get_ref().clone()
        }
        "gzip" => {
            let mut w = flate2::write::GzDecoder::new(Vec::new());
            w.write_all(data).unwrap();
            w.flush().unwrap();
            w.get_ref().clone()
        }
        other => panic!("unexpected coding {other}"),
    }
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        other => panic!("unexpected coding {other}"),
    }
    out
}

#[tokio::test]
async fn flushed_output_arrives_compressed_before_the_script_ends() {
    let server = TestServer::start(&[]);
    for coding in ["br", "gzip", "zstd"] {
        let started = Instant::now();
        let r = client()
            .get(server.url("/stream.php"))
            .header("accept-encoding", coding)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], coding);
        assert_eq!(r.headers()["vary"], "accept-encoding");
        let mut stream = r.bytes_stream();
        let first = stream.next().await.unwrap().unwrap();
        let first_at = started.elapsed();
        // The script sleeps 2 s after flush(): the first part must be here long before.
        assert!(
            first_at < Duration::from_millis(1500),
            "{coding}: first compressed chunk took {first_at:?}"
        );
        assert_eq!(decode_prefix(coding, &first), b"first chunk\n", "{coding}");
        let mut all = first.to_vec();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk.unwrap());
        }
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert_eq!(
            decode(coding, &all),
            b"first chunk\nsecond chunk\n",
            "{coding}"
        );
    }
}

#[tokio::test]
async fn codings_are_negotiated_with_q_values() {
    let server = TestServer::start(&[]);
    let url = server.url("/text.php?bytes=20000");
    for (accept, expected) in [
        ("gzip, deflate, br, zstd", Some("br")),
        ("gzip, zstd", Some("zstd")),
        ("br;q=0.2, gzip;q=0.9", Some("gzip")),
        ("*", Some("br")),
        ("deflate", None),
        ("br;q=0, gzip;q=0", None),
    ] {
        let r = client()
            .get(&url)
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["vary"], "accept-encoding", "{accept}");
        let got = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), expected, "{accept}");
        let body = r.bytes().await.unwrap();
        let plain = match expected {
            Some(coding) => {
                assert!(body.len() < 20000 / 5, "{accept}: {} bytes", body.len());
                decode(coding, &body)
            }
            None => body.to_vec(),
        };
        assert_eq!(plain.len(), 20000, "{accept}");
    }
}

#[tokio::test]
async fn small_binary_head_and_event_streams_are_not_compressed() {
    let server = TestServer::start(&[]);
    let get = |path: &str| {
        client()
            .get(server.url(path))
            .header("accept-encoding", "br, gzip")
    };
    // Below COMPRESSION_MIN_SIZE (1 KiB by default).
    let r = get("/text.php?bytes=500").send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.headers()["vary"], "accept-encoding");
    assert_eq!(r.bytes().await.unwrap().len(), 500);
    // Not a compressible type.
    let r = get("/text.php?bytes=5000&type=image/png")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    // HEAD.
    let r = client()
        .head(server.url("/text.php?bytes=5000"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    // Server-sent events: untouched and not held back.
    let started = Instant::now();
    let r = get("/sse_pause.php").send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn identity_refused_gets_even_a_small_body_compressed() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/text.php?bytes=500"))
        .header("accept-encoding", "gzip, identity;q=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(decode("gzip", &r.bytes().await.unwrap()).len(), 500);
}

#[tokio::test]
async fn settings_turn_it_off_and_move_the_threshold() {
    let off = TestServer::start(&[("COMPRESSION", "off")]);
    let r = client()
        .get(off.url("/text.php?bytes=20000"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert!(r.headers().get("vary").is_none());
    drop(off);

    let low = TestServer::start(&[("COMPRESSION_MIN_SIZE", "100")]);
    let r = client()
        .get(low.url("/text.php?bytes=500"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
}
