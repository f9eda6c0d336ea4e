//! What an attacker, a busy day or a careless script could still do, tried from outside
//! against the real server: spoof what PHP is told, leak one request's process-wide state
//! into another, hold a worker past its deadline, starve other clients, make a response lie,
//! flood the log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// `$_SERVER` for a raw HTTP/1.1 request (`head` without its final blank line).
fn server_vars(server: &TestServer, head: &str) -> Value {
    let reply = server.raw(
        format!("{head}Connection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

fn status_of(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("")
}

/// An HTTP/2 (prior knowledge) request sender on a new connection.
async fn h2(server: &TestServer) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

// === what PHP is told ===

#[test]
fn header_names_php_would_rewrite_cannot_pose_as_others() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let vars = server_vars(
        &server,
        "GET /server.php HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 1.1.1.1\r\n\
         X.Forwarded.For: 6.6.6.6\r\nFoo-Bar: real\r\nFoo.Bar: spoof\r\nX_Forwarded_For: 7.7.7.7\r\n",
    );
    // As nginx's ignore_invalid_headers: only letters, digits and '-' in a name.
    assert_eq!(vars["HTTP_X_FORWARDED_FOR"], "1.1.1.1");
    assert_eq!(vars["HTTP_FOO_BAR"], "real");
}

#[tokio::test]
async fn header_names_cannot_pose_as_others_over_http2_either() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let mut send = h2(&server).await;
    let request = http::Request::get(format!("http://{}/server.php", server.addr))
        .header("x.forwarded.for", "6.6.6.6")
        .header("x-forwarded-for", "1.1.1.1")
        .header("foo.bar", "spoof")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let vars: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(vars["HTTP_X_FORWARDED_FOR"], "1.1.1.1");
    assert_eq!(vars["HTTP_FOO_BAR"], Value::Null);
}

#[test]
fn a_host_port_out_of_range_is_400() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    for host in ["evil.com:99999", "evil.com:65536"] {
        let reply = server.raw(
            format!("GET /hello.php HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(status_of(&reply), "400", "{host}: {reply}");
    }
    let reply = server.raw(
        b"GET /hello.php HTTP/1.1\r\nHost: ok.example:65535\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&reply), "200", "{reply}");
}

#[test]
fn an_absolute_target_names_the_host_php_sees() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let vars = server_vars(
        &server,
        "GET http://a.example/server.php?x=1 HTTP/1.1\r\nHost: b.example\r\n",
    );
    // nginx: HTTP_HOST a.example, REQUEST_URI the path and query only.
    assert_eq!(vars["HTTP_HOST"], "a.example");
    assert_eq!(vars["SERVER_NAME"], "a.example");
    assert_eq!(vars["REQUEST_URI"], "/server.php?x=1");
}

#[tokio::test]
async fn an_http2_authority_that_disagrees_with_host_is_400() {
    let server = TestServer::start(&[("PHP_WORKERS", "1")]);
    let mut send = h2(&server).await;
    let request = http::Request::get(format!("http://{}/hello.php", server.addr))
        .header("host", "other.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 400);
    // Agreeing ones are served.
    let request = http::Request::get(format!("http://{}/hello.php", server.addr))
        .header("host", server.addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
}
