//! Symfony 5.4 as Debian installs it (php-symfony-framework-bundle, php-symfony-runtime) on
//! tokio_php: a MicroKernelTrait kernel, a controller, a form whose value is kept in the
//! session behind a CSRF token, in classic mode (INDEX_FILE, Symfony's own runtime) and in
//! worker mode (WORKER_SCRIPT, the runtime in php/symfony-runtime/). The application is
//! tests/fixtures/apps/symfony; its var/ is a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::path::PathBuf;

use common::TestServer;
use common::apps::{
    Browser, CsrfForm, check_csrf_form, check_fresh_sessions, check_pages, require_debian_packages,
};

/// The runtime this repository ships for worker mode.
const RUNTIME: &str = "TokioPhp\\SymfonyRuntime\\Runtime";

fn public() -> PathBuf {
    common::fixtures().join("apps/symfony/public")
}

enum Mode {
    /// `INDEX_FILE=index.php` with Symfony's own SymfonyRuntime.
    Classic,
    /// `INDEX_FILE=index.php` with tokio_php's runtime, which runs classic requests as
    /// SymfonyRuntime does.
    ClassicWithRuntime,
    /// `WORKER_SCRIPT=index.php` on one thread, tokio_php's runtime: one kernel serves all.
    Worker,
}

/// The server on the application, with its var/ directory.
struct Symfony {
    server: TestServer,
    _var: tempfile::TempDir,
}

fn start(mode: Mode) -> Symfony {
    require_debian_packages(
        "php-symfony-framework-bundle and php-symfony-runtime",
        &[
            "/usr/share/php/Symfony/Bundle/FrameworkBundle/autoload.php",
            "/usr/share/php/Symfony/Component/Runtime/autoload.php",
        ],
    );
    let var = tempfile::tempdir().unwrap();
    let var_dir = var.path().to_str().unwrap().to_owned();
    let mut env = vec![
        ("APP_ENV", "prod"),
        ("APP_DEBUG", "0"),
        ("APP_SECRET", "tokio_php symfony fixture"),
        ("APP_VAR_DIR", var_dir.as_str()),
    ];
    env.extend_from_slice(match mode {
        Mode::Classic => &[("INDEX_FILE", "index.php")],
        Mode::ClassicWithRuntime => &[("INDEX_FILE", "index.php"), ("APP_RUNTIME", RUNTIME)],
        Mode::Worker => &[
            ("WORKER_SCRIPT", "index.php"),
            ("WORKER_COUNT", "1"),
            ("APP_RUNTIME", RUNTIME),
        ],
    });
    Symfony {
        server: TestServer::start_with_root(&public(), &env),
        _var: var,
    }
}

/// Every flow of the application, the same in each mode.
async fn flows(server: &TestServer) {
    check_pages(server, "Symfony 5.4").await;
    let form = CsrfForm {
        path: "/form",
        field: "note",
        session_cookie: "PHPSESSID",
        rejected: 403,
        required: "The note must not be empty.",
        saved: "Saved.",
    };
    let (mut alice, token, saved) = check_csrf_form(server, &form, "kept <safe>").await;
    saved.expect_text("Stored: <span id=\"stored\">kept &lt;safe&gt;");
    // The token stays the session's; another client sees nothing of its value.
    assert_eq!(
        alice.get("/form").await.expect(200).input_value("_token"),
        token
    );
    Browser::new(server)
        .get("/form")
        .await
        .expect(200)
        .expect_text("Stored: <span id=\"stored\">(nothing)");

    check_fresh_sessions(server).await;
    let own = alice.get("/session").await.expect(200).json();
    assert_eq!(own["token"], token.as_str());

    // State a request puts in a service is gone in the next request.
    let mut visitor = Browser::new(server);
    let who = visitor.get("/whoami?as=alice").await.expect(200).json();
    assert_eq!(who["name"], "alice");
    let who = visitor.get("/whoami").await.expect(200).json();
    assert_eq!(who["name"], serde_json::Value::Null);
}

async fn boot(server: &TestServer) -> serde_json::Value {
    Browser::new(server)
        .get("/api/boot")
        .await
        .expect(200)
        .json()
}

/// Two kernels for two requests: each request boots its own.
async fn assert_boots_per_request(server: &TestServer) {
    let (first, second) = (boot(server).await, boot(server).await);
    assert_eq!(first["env"], "prod");
    assert_eq!(first["debug"], false);
    assert_ne!(first["boot"], second["boot"]);
    assert_eq!(second["handled"], 1);
    assert_eq!(second["worker"], serde_json::Value::Null);
}

#[tokio::test]
async fn classic_mode_with_symfony_runtime() {
    let app = start(Mode::Classic);
    flows(&app.server).await;
    assert_boots_per_request(&app.server).await;
}

#[tokio::test]
async fn classic_mode_with_the_tokio_php_runtime() {
    let app = start(Mode::ClassicWithRuntime);
    flows(&app.server).await;
    assert_boots_per_request(&app.server).await;
}

#[tokio::test]
async fn worker_mode_with_the_tokio_php_runtime_boots_the_kernel_once() {
    let app = start(Mode::Worker);
    let before = boot(&app.server).await;
    assert_eq!(before["env"], "prod");
    assert_eq!(before["worker"], "1");
    flows(&app.server).await;
    let after = boot(&app.server).await;
    assert_eq!(after["boot"], before["boot"]);
    let (before, after) = (before["handled"].as_u64(), after["handled"].as_u64());
    assert!(
        before.zip(after).is_some_and(|(b, a)| a > b + 15),
        "handled {before:?} then {after:?}"
    );
}
