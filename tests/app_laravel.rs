//! Laravel 8 as Debian installs it (php-laravel-framework) on tokio_php, in classic mode
//! (INDEX_FILE) and in worker mode (WORKER_SCRIPT): routes, a controller, Blade views, a
//! session with a CSRF-protected form, validation errors after a redirect, JSON, Eloquent on
//! SQLite, a login. The application is tests/fixtures/apps/laravel; its storage/ and its
//! database are made in a temporary directory, its tables by `php artisan migrate`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use common::apps::{
    Browser, CsrfForm, check_csrf_form, check_fresh_sessions, check_pages, require_debian_packages,
};

/// 32 bytes, base64: the key of the fixture's cookie and session encryption.
const APP_KEY: &str = "base64:dG9raW9fcGhwIGxhcmF2ZWwgZml4dHVyZSBrZXkhISE=";

fn app() -> PathBuf {
    common::fixtures().join("apps/laravel")
}

enum Mode {
    /// `INDEX_FILE=index.php`: public/index.php boots the application for every request.
    Classic,
    /// `WORKER_SCRIPT=../worker.php` on one thread: one application serves every request.
    Worker,
}

/// The server on the application, with its storage and database.
struct Laravel {
    server: TestServer,
    _storage: tempfile::TempDir,
}

fn start(mode: Mode) -> Laravel {
    require_debian_packages(
        "php-laravel-framework",
        &["/usr/share/php/Illuminate/Foundation/Application.php"],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in [
        "storage/framework/sessions",
        "storage/framework/views",
        "storage/framework/cache/data",
        "storage/logs",
        "cache",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("database.sqlite"), b"").unwrap();
    let path = |p: &str| root.join(p).to_str().unwrap().to_owned();
    let env = vec![
        ("APP_KEY", APP_KEY.to_owned()),
        ("APP_STORAGE", path("storage")),
        ("DB_DATABASE", path("database.sqlite")),
        // bootstrap/cache of a real application: out of the repository here.
        ("APP_SERVICES_CACHE", path("cache/services.php")),
        ("APP_PACKAGES_CACHE", path("cache/packages.php")),
    ];
    migrate(&env);
    let mode_env: &[(&str, &str)] = match mode {
        Mode::Classic => &[("INDEX_FILE", "index.php")],
        Mode::Worker => &[("WORKER_SCRIPT", "../worker.php"), ("WORKER_COUNT", "1")],
    };
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(mode_env);
    Laravel {
        server: TestServer::start_with_root(&app().join("public"), &all),
        _storage: dir,
    }
}

/// `php artisan migrate --force` with the ZTS PHP's CLI, as a deployment runs it.
fn migrate(env: &[(&str, String)]) {
    let php = Path::new(env!("TOKIO_PHP_PREFIX")).join("bin/php");
    let out = Command::new(&php)
        .arg(app().join("artisan"))
        .args(["migrate", "--force", "--no-interaction"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", php.display()));
    assert!(
        out.status.success(),
        "artisan migrate: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every flow of the application, the same in both modes; `tag` keeps names apart.
async fn flows(server: &TestServer, tag: &str) {
    check_pages(server, "Laravel 8.83").await;
    let title = format!("A note from {tag}");
    let form = CsrfForm {
        path: "/notes",
        field: "title",
        session_cookie: "laravel_session",
        rejected: 419,
        required: "The title field is required.",
        saved: "Note saved.",
    };
    let (mut alice, _, saved) = check_csrf_form(server, &form, &title).await;
    saved.expect_text(&title);

    // JSON, read back through Eloquent.
    let mut visitor = Browser::new(server);
    let notes = visitor.get("/api/notes").await.expect(200).json();
    let note = notes["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == title.as_str())
        .unwrap_or_else(|| panic!("{title} not in {notes}"))
        .clone();
    let one = visitor
        .get(&format!("/api/notes/{}", note["id"]))
        .await
        .expect(200)
        .json();
    assert_eq!(one["title"], title.as_str());
    visitor.get("/api/notes/999999").await.expect(404);

    // A login: the user is this client's only.
    let mut bob = Browser::new(server);
    let name = format!("bob{tag}");
    let token = bob.get("/login").await.expect(200).input_value("_token");
    bob.post("/login", &[("_token", &token), ("name", &name)])
        .await
        .expect_redirect("/me");
    assert_eq!(
        bob.get("/me").await.expect(200).json()["user"],
        name.as_str()
    );
    Browser::new(server)
        .get("/me")
        .await
        .expect_redirect("/login");

    // Two clients without cookies: nobody logged in; a client's session goes on.
    let (first, second) = check_fresh_sessions(server).await;
    for fresh in [first, second] {
        assert_eq!(fresh["user"], serde_json::Value::Null, "{fresh}");
    }
    let own = bob.get("/session").await.expect(200).json();
    assert!(own["user"].is_number(), "{own}");
    assert_eq!(alice.get("/session").await.expect(200).json()["visits"], 1);
    assert_eq!(alice.get("/session").await.expect(200).json()["visits"], 2);
}

#[tokio::test]
async fn classic_mode_serves_the_application_booting_it_per_request() {
    let app = start(Mode::Classic);
    flows(&app.server, "classic").await;
    let mut client = Browser::new(&app.server);
    let first = client.get("/api/boot").await.expect(200).json();
    let second = client.get("/api/boot").await.expect(200).json();
    assert_eq!(first["laravel"], "8.83.26");
    assert_ne!(first["boot"], second["boot"]);
    assert_eq!(first["served"], serde_json::Value::Null);
}

#[tokio::test]
async fn worker_mode_serves_the_application_booted_once() {
    let app = start(Mode::Worker);
    let mut client = Browser::new(&app.server);
    let before = client.get("/api/boot").await.expect(200).json();
    flows(&app.server, "worker").await;
    let after = client.get("/api/boot").await.expect(200).json();
    // One application served every request, one after the other.
    assert_eq!(after["boot"], before["boot"]);
    let (before, after) = (before["served"].as_u64(), after["served"].as_u64());
    assert!(
        before.zip(after).is_some_and(|(b, a)| a > b + 20),
        "served {before:?} then {after:?}"
    );
    assert!(
        app.server.log().contains("worker mode on"),
        "{}",
        app.server.log()
    );
}
