//! Profiling over HTTP: `X-Profile: 1` gets Server-Timing and X-Profile-* figures measured
//! on the worker, only when PROFILE is on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use common::{TestServer, client};

fn micros(r: &reqwest::Response, name: &str) -> u64 {
    r.headers()[format!("x-profile-{name}-us").as_str()]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn asked_for_it_gets_real_figures() {
    let server = TestServer::start(&[("PROFILE", "1")]);
    let r = client()
        .get(server.url("/profile.php"))
        .header("x-profile", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = r.headers()["server-timing"].to_str().unwrap().to_owned();
    for name in ["queue", "startup", "script", "shutdown", "total"] {
        assert!(st.contains(&format!("{name};")), "{name} missing from {st}");
    }
    let script = micros(&r, "script");
    let total = micros(&r, "total");
    // profile.php sleeps 50 ms: the script figure is the script's.
    assert!((50_000..2_000_000).contains(&script), "script {script} us");
    let parts = micros(&r, "queue") + micros(&r, "startup") + script + micros(&r, "shutdown");
    assert!(total >= parts, "total {total} us < sum of parts {parts} us");
    assert_eq!(r.text().await.unwrap(), "profiled");
}

#[tokio::test]
async fn not_asked_or_not_enabled_means_no_figures() {
    let server = TestServer::start(&[("PROFILE", "1")]);
    let r = client()
        .get(server.url("/profile.php"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("server-timing").is_none());
    drop(server);

    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/profile.php"))
        .header("x-profile", "1")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("server-timing").is_none());
    assert!(r.headers().get("x-profile-script-us").is_none());
}
