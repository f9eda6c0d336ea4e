//! Rate limiting over HTTP: 429 with its headers, requests refused before PHP runs, and a
//! limit that a forged X-Forwarded-For cannot escape.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use common::{TestServer, client};

#[tokio::test]
async fn over_the_limit_is_429_with_headers_and_php_never_runs() {
    let server = TestServer::start(&[("RATE_LIMIT", "3"), ("RATE_WINDOW", "60")]);
    for remaining in [2, 1, 0] {
        let r = client().get(server.url("/hello.php")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(r.headers()["x-ratelimit-remaining"], remaining.to_string());
        assert!(r.headers().contains_key("x-ratelimit-reset"));
    }
    let r = client()
        .get(server.url("/log.php?marker=over-the-limit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let h = r.headers();
    let retry_after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=21).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(h["x-ratelimit-limit"], "3");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset >= retry_after && reset <= 61, "Reset {reset}");
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "429 Too Many Requests\n");
    // A browser gets the page.
    let r = client()
        .get(server.url("/hello.php"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Too many requests"));
    // The refused request never reached PHP.
    let r = client().get(server.url("/hello.php")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(!server.log().contains("over-the-limit"));
}

#[tokio::test]
async fn forged_forwarded_for_from_an_untrusted_peer_cannot_escape() {
    // 127.0.0.1 is not a trusted proxy here, so X-Forwarded-For is the client's own words.
    let server = TestServer::start(&[("RATE_LIMIT", "2"), ("RATE_WINDOW", "60")]);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = client()
            .get(server.url("/hello.php"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("forwarded", format!("for=203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_told_apart() {
    let server = TestServer::start(&[
        ("RATE_LIMIT", "1"),
        ("RATE_WINDOW", "60"),
        ("TRUSTED_PROXIES", "127.0.0.1/32, ::1"),
    ]);
    let get = |xff: &'static str| {
        client()
            .get(server.url("/hello.php"))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(get("198.51.100.1").await.unwrap().status(), 200);
    assert_eq!(get("198.51.100.2").await.unwrap().status(), 200);
    assert_eq!(get("198.51.100.1").await.unwrap().status(), 429);
    // The client cannot prepend its way out: the right-most untrusted hop counts.
    assert_eq!(get("10.9.9.9, 198.51.100.1").await.unwrap().status(), 429);
}

#[tokio::test]
async fn off_by_default() {
    let server = TestServer::start(&[]);
    for _ in 0..20 {
        let r = client().get(server.url("/hello.php")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-ratelimit-limit").is_none());
    }
}
