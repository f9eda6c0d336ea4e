//! TLS: the handshake (TLS 1.3 and 1.2, ALPN h2 and http/1.1), what PHP sees over it, the
//! certificate reloading on SIGHUP without dropping open connections, and startup errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{DevCert, TestServer, dev_cert};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn start_tls(cert: &DevCert, env: &[(&str, &str)]) -> TestServer {
    let mut all = vec![
        ("TLS_CERT", cert.cert.to_str().unwrap()),
        ("TLS_KEY", cert.key.to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    TestServer::start(&all)
}

/// A TLS connection to `addr` trusting only `trusted`, offering `versions` and `alpn`.
async fn connect(
    addr: SocketAddr,
    trusted: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted.to_vec()))
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_over(tls: TlsStream<TcpStream>) -> H2 {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn get_json(send: &mut H2, addr: SocketAddr, path: &str) -> serde_json::Value {
    let request = http::Request::get(format!("https://localhost:{}{path}", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn tls_1_3_with_alpn_h2_and_php_sees_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dev_cert(dir.path(), "server");
    let server = start_tls(&cert, &[]);
    assert!(server.log().contains("listening on https://"));

    let tls = connect(
        server.addr,
        &cert.der,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));

    let mut h2 = h2_over(tls).await;
    let vars = get_json(&mut h2, server.addr, "/server.php").await;
    assert_eq!(vars["HTTPS"], "on");
    assert_eq!(vars["REQUEST_SCHEME"], "https");
    assert_eq!(vars["SERVER_PORT"], server.addr.port().to_string());
    assert_eq!(vars["SERVER_PROTOCOL"], "HTTP/2.0");
}

#[tokio::test]
async fn tls_1_2_and_http_1_1_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dev_cert(dir.path(), "server");
    let server = start_tls(
        &cert,
        &[("LOG_LEVEL", "info,tokio_php::server::connection=trace")],
    );
    let tls = connect(
        server.addr,
        &cert.der,
        &[&rustls::version::TLS12],
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/server.php")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let vars: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(vars["HTTPS"], "on");
    assert_eq!(vars["SERVER_PROTOCOL"], "HTTP/1.1");

    // Idle, the connection is parked (hyper's buffers freed, the TLS session kept); the
    // next request on it is served.
    assert!(
        server.wait_for_log("connection parked", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let request = http::Request::get("/hello.php")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(server.log().contains("parked connection resumed"));
}

#[tokio::test]
async fn reqwest_over_https_with_the_dev_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dev_cert(dir.path(), "server");
    let server = start_tls(&cert, &[]);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://localhost:{}/hello.php",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "Hello, world!");
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        common::client()
            .get(server.url("/hello.php"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_connections_keep_working() {
    // A single process rotates its certificate in place; under the supervisor SIGHUP
    // starts a new generation instead (tests/supervisor.rs).
    let dir = tempfile::tempdir().unwrap();
    let first = dev_cert(dir.path(), "first");
    let server = start_tls(&first, &[("PROCESSES", "0")]);
    let versions = [&rustls::version::TLS13];

    let mut open = h2_over(
        connect(server.addr, &first.der, &versions, &[b"h2"])
            .await
            .unwrap(),
    )
    .await;
    get_json(&mut open, server.addr, "/server.php").await;

    // A new pair replaces the files; SIGHUP loads it.
    let second = dev_cert(dir.path(), "second");
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    server.signal("HUP");
    assert!(
        server.wait_for_log("TLS certificate reloaded", Duration::from_secs(10)),
        "{}",
        server.log()
    );

    // New connections get the second certificate: trusting only the first now fails.
    assert!(
        connect(server.addr, &first.der, &versions, &[b"h2"])
            .await
            .is_err()
    );
    let mut fresh = h2_over(
        connect(server.addr, &second.der, &versions, &[b"h2"])
            .await
            .unwrap(),
    )
    .await;
    get_json(&mut fresh, server.addr, "/server.php").await;
    // The connection opened before the reload still serves requests.
    let vars = get_json(&mut open, server.addr, "/server.php").await;
    assert_eq!(vars["HTTPS"], "on");

    // A broken file on the next SIGHUP keeps the second certificate in use.
    std::fs::write(&first.cert, "not a certificate").unwrap();
    server.signal("HUP");
    assert!(server.wait_for_log("previous one stays in use", Duration::from_secs(10)));
    connect(server.addr, &second.der, &versions, &[b"h2"])
        .await
        .unwrap();
}

#[test]
fn tls_needs_both_files_and_usable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dev_cert(dir.path(), "server");
    let run = |env: &[(&str, &std::path::Path)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"));
        command
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("DOCUMENT_ROOT", common::fixtures());
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, err) = run(&[("TLS_CERT", &cert.cert)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TLS_KEY") && err.contains("TLS_CERT"), "{err}");

    let (code, err) = run(&[("TLS_KEY", &cert.key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TLS_CERT"), "{err}");

    // The key file given as the certificate.
    let (code, err) = run(&[("TLS_CERT", &cert.key), ("TLS_KEY", &cert.key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("TLS_CERT=") && err.contains("no PEM certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn the_config_endpoint_redacts_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dev_cert(dir.path(), "secret-name");
    let server = start_tls(&cert, &[("INTERNAL_ADDR", "127.0.0.1:0")]);
    let r = common::client()
        .get(server.internal_url("/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["tls_key"], "[redacted]");
    assert!(!text.contains("secret-name.key.pem"), "{text}");
    assert_eq!(config["header_timeout_secs"], 5);
    assert_eq!(config["php_workers"], 2);
}
