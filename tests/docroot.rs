//! Serving a whole document root: static files, directories, the front controller, and
//! nothing hidden, PHP source or a backup. The attacks run in each of
//! [`common::layouts`]: on the tree as it is, through a document root of symlinks into it
//! (Debian's MediaWiki layout), and under an alias (`ALIASES`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::layouts::{LAYOUTS, Layout};
use common::{TestServer, client};

const EXECUTED: &str = "EXECUTED-PHP";

/// A framework-style application: `app/public` is the document root, `app/.env` and a
/// secret directory sit beside it.
struct AppDir {
    dir: tempfile::TempDir,
    public: PathBuf,
}

fn write(path: &Path, contents: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn app() -> AppDir {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    let public = app.join("public");
    write(&app.join(".env"), b"APP_KEY=outside-secret");
    write(&dir.path().join("secret/passwd.txt"), b"TOP-SECRET-OUTSIDE");
    write(&dir.path().join("secret/.env"), b"TOP-SECRET-ENV");
    write(&public.join(".env"), b"DB_PASSWORD=inside-secret");
    write(&public.join(".git/config"), b"[core] secret-git");
    write(&public.join(".htaccess"), b"Deny from all secret-htaccess");
    write(
        &public.join("index.php"),
        br#"<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
header('Content-Type: application/json');
if (preg_match('#^/users/(\d+)$#', $path, $m)) {
    $route = ['route' => 'user', 'id' => (int) $m[1]];
} elseif ($path === '/api/items') {
    $route = ['route' => 'items', 'x' => $_GET['x'] ?? null];
} else {
    $route = ['route' => 'home'];
}
echo json_encode($route + [
    'REQUEST_URI' => $_SERVER['REQUEST_URI'],
    'SCRIPT_NAME' => $_SERVER['SCRIPT_NAME'],
    'PATH_INFO' => $_SERVER['PATH_INFO'] ?? null,
    'QUERY_STRING' => $_SERVER['QUERY_STRING'],
    'PHP_SELF' => $_SERVER['PHP_SELF'],
]);
"#,
    );
    let php = format!("<?php echo '{EXECUTED}';");
    write(&public.join("x.php"), php.as_bytes());
    write(&public.join("x.phtml"), php.as_bytes());
    write(&public.join("x.php5"), php.as_bytes());
    write(&public.join("x.phar"), php.as_bytes());
    write(&public.join("x.php~"), php.as_bytes());
    write(&public.join("x.php.bak"), php.as_bytes());
    write(&public.join("config.inc.old"), php.as_bytes());
    write(&public.join("uploads/evil.jpg"), php.as_bytes());
    write(&public.join("css/app.css"), b"body { color: red; }\n");
    write(&public.join("build/app.js"), b"console.log('identity');\n");
    write(&public.join("build/app.js.br"), b"BROTLI-BYTES");
    write(&public.join("build/app.js.gz"), b"GZIP-BYTES");
    write(&public.join("pages/index.html"), b"<h1>pages index</h1>");
    write(
        &public.join("dir/index.php"),
        b"<?php echo 'dir index ', $_SERVER['SCRIPT_NAME'];",
    );
    fs::create_dir_all(public.join("empty")).unwrap();
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, public.join(name)).unwrap();
    };
    link("../../secret", "outside");
    link("../../secret/passwd.txt", "linked.txt");
    // Symlinks whose targets must never be served, whatever the link is called.
    link("../../secret/.env", "env.txt");
    link(".git/config", "git.txt");
    link("x.php", "source.txt");
    link("x.php.bak", "backup.txt");
    AppDir { dir, public }
}

/// A server on `app` reached as `layout` says, with `env`; and the prefix its paths take.
fn serve(app: &AppDir, layout: Layout, env: &[(&str, &str)]) -> (TestServer, &'static str) {
    let laid_out = layout.lay_out(&app.public, app.dir.path());
    let mut env = env.to_vec();
    let alias = laid_out
        .alias
        .map(|(prefix, dir)| format!("{prefix}={}", dir.display()));
    if let Some(alias) = &alias {
        // The root has only a front controller: everything else is under the alias.
        write(
            &laid_out.root.join("index.php"),
            b"<?php echo 'root front controller';",
        );
        env.push(("ALIASES", alias));
    }
    (
        TestServer::start_with_root(&laid_out.root, &env),
        laid_out.prefix,
    )
}

fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn raw_get(server: &TestServer, path: &str) -> String {
    server.raw(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
}

fn assert_no_leak(raw: &str, path: &str) {
    for secret in ["secret", "SECRET", EXECUTED, "<?php"] {
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(!body.contains(secret), "{path} leaked {secret}: {raw}");
    }
}

/// Every path in `paths` (after the layout's prefix) gets one of `statuses` and leaks
/// nothing, in every layout, with `env`.
fn assert_refused_everywhere(paths: &[&str], statuses: &[u16], env: &[(&str, &str)]) {
    assert_refused_in(&LAYOUTS, paths, statuses, env);
}

/// [`assert_refused_everywhere`] in `layouts` only.
fn assert_refused_in(layouts: &[Layout], paths: &[&str], statuses: &[u16], env: &[(&str, &str)]) {
    let app = app();
    for &layout in layouts {
        let (server, prefix) = serve(&app, layout, env);
        for path in paths {
            let path = format!("{prefix}{path}");
            let raw = raw_get(&server, &path);
            let status = status_of(&raw);
            assert!(statuses.contains(&status), "{layout:?} {path}: {raw}");
            assert_no_leak(&raw, &path);
        }
    }
}

#[tokio::test]
async fn static_files_with_validators_ranges_and_caching() {
    let app = app();
    let server = TestServer::start_with_root(&app.public, &[]);
    let c = client();
    let r = c.get(server.url("/css/app.css")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css");
    assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
    let etag = r.headers()["etag"].clone();
    let last_modified = r.headers()["last-modified"].clone();
    assert!(etag.to_str().unwrap().starts_with('"'));
    assert_eq!(r.text().await.unwrap(), "body { color: red; }\n");

    let r = c
        .get(server.url("/css/app.css"))
        .header("If-None-Match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = c
        .get(server.url("/css/app.css"))
        .header("If-Modified-Since", last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = c
        .get(server.url("/css/app.css"))
        .header("Range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-3/21");
    assert_eq!(r.text().await.unwrap(), "body");

    let r = c.head(server.url("/css/app.css")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "21");
    assert!(r.bytes().await.unwrap().is_empty());

    // PHP responses get no static caching header.
    let r = c.get(server.url("/dir/")).send().await.unwrap();
    assert!(r.headers().get("cache-control").is_none());
}

#[tokio::test]
async fn precompressed_siblings_when_accepted() {
    let app = app();
    let server = TestServer::start_with_root(&app.public, &[]);
    let c = client();
    let r = c
        .get(server.url("/build/app.js"))
        .header("Accept-Encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(r.text().await.unwrap(), "BROTLI-BYTES");
    let r = c
        .get(server.url("/build/app.js"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.text().await.unwrap(), "GZIP-BYTES");
    let r = c.get(server.url("/build/app.js")).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.text().await.unwrap(), "console.log('identity');\n");
}

#[tokio::test]
async fn static_cache_ttl_is_configurable() {
    let app = app();
    let server = TestServer::start_with_root(&app.public, &[("STATIC_CACHE_TTL", "off")]);
    let r = client()
        .get(server.url("/css/app.css"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("cache-control").is_none());
    drop(server);
    let server = TestServer::start_with_root(&app.public, &[("STATIC_CACHE_TTL", "1h")]);
    let r = client()
        .get(server.url("/css/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
}

#[tokio::test]
async fn php_source_is_never_served() {
    let app = app();
    for layout in LAYOUTS {
        let (server, prefix) = serve(&app, layout, &[]);
        // `/x.php/` runs the script (PATH_INFO "/"): output, never source.
        let raw = raw_get(&server, &format!("{prefix}/x.php/"));
        assert_eq!(status_of(&raw), 200, "{layout:?}: {raw}");
        assert!(raw.ends_with(EXECUTED) && !raw.contains("<?php"), "{raw}");
    }
    assert_refused_everywhere(
        &[
            "/x.PHP",
            "/x.php%20",
            "/x.php.",
            "/x.php%0a",
            "/x.php%00",
            "/X.php",
        ],
        &[404, 400],
        &[],
    );
}

#[tokio::test]
async fn only_exact_php_files_execute() {
    assert_refused_everywhere(
        &[
            "/x.phtml",
            "/x.php5",
            "/x.phar",
            "/uploads/evil.jpg/x.php",
            "/uploads/evil.jpg%00.php",
        ],
        &[404, 400],
        &[],
    );
}

#[tokio::test]
async fn hidden_files_and_backups_are_404() {
    assert_refused_everywhere(
        &[
            "/.env",
            "/.git/config",
            "/.htaccess",
            "/css/../.env",
            "/%2eenv",
            "/x.php~",
            "/x.php.bak",
            "/config.inc.old",
        ],
        &[404],
        &[],
    );
}

/// RFC 8615's `/.well-known/` is the one dot directory served (ACME http-01 challenges that
/// certbot's webroot mode writes, security.txt), as nginx serves it; dot-files inside it,
/// and `.well-known` anywhere but first, stay hidden.
#[tokio::test]
async fn well_known_uris_are_served_and_nothing_else_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    write(
        &public.join(".well-known/acme-challenge/tok3n"),
        b"tok3n.key-auth",
    );
    write(
        &public.join(".well-known/security.txt"),
        b"Contact: mailto:sec@example.com",
    );
    write(&public.join(".well-known/.env"), b"SECRET=1");
    write(&public.join("app/.well-known/x.txt"), b"secret nested");
    let server = TestServer::start_with_root(&public, &[]);
    let challenge = raw_get(&server, "/.well-known/acme-challenge/tok3n");
    assert_eq!(status_of(&challenge), 200, "{challenge}");
    assert!(challenge.ends_with("tok3n.key-auth"), "{challenge}");
    let security = raw_get(&server, "/.well-known/security.txt");
    assert_eq!(status_of(&security), 200, "{security}");
    for hidden in [
        "/.well-known/.env",
        "/app/.well-known/x.txt",
        "/.well-known/../.env",
    ] {
        let raw = raw_get(&server, hidden);
        assert_eq!(status_of(&raw), 404, "{hidden}: {raw}");
        assert_no_leak(&raw, hidden);
    }
}

/// A symlink is followed by default, but what it leads to is held to the same rules as a
/// request path: never a dot-file (or a file in a hidden directory), PHP source or a backup.
#[tokio::test]
async fn symlinks_never_lead_to_hidden_source_or_backup_files() {
    assert_refused_everywhere(
        &["/env.txt", "/git.txt", "/source.txt", "/backup.txt"],
        &[404],
        &[],
    );
}

#[tokio::test]
async fn nothing_outside_the_document_root_by_name() {
    assert_refused_everywhere(
        &[
            "/../.env",
            "/../../secret/passwd.txt",
            "/%2e%2e/.env",
            "/%2E%2E/%2e%2e/secret/passwd.txt",
            "/%252e%252e/.env",
            "/..%2f.env",
            "/..%2f..%2fsecret%2fpasswd.txt",
            "/..%5c.env",
            "/css%5c..%5c..%5c.env",
            "/css/%00/../.env",
        ],
        &[404, 400],
        &[],
    );
}

/// Symlinks that lead out of the root: followed by default (nginx's `disable_symlinks
/// off`), refused with `SYMLINKS=never`.
#[tokio::test]
async fn symlinks_out_of_the_root_follow_the_symlinks_setting() {
    let app = app();
    for layout in LAYOUTS {
        let (server, prefix) = serve(&app, layout, &[]);
        for path in ["/outside/passwd.txt", "/linked.txt"] {
            let r = client()
                .get(server.url(&format!("{prefix}{path}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{layout:?} {path}");
            assert_eq!(r.text().await.unwrap(), "TOP-SECRET-OUTSIDE");
        }
    }
    assert_refused_everywhere(
        &["/outside/passwd.txt", "/linked.txt"],
        &[404],
        &[("SYMLINKS", "never")],
    );
}

#[tokio::test]
async fn directories_redirect_then_index_and_never_list() {
    let app = app();
    let server = TestServer::start_with_root(&app.public, &[]);
    let raw = raw_get(&server, "/dir?a=1");
    assert_eq!(status_of(&raw), 301, "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("location: /dir/?a=1\r\n"),
        "{raw}"
    );
    let r = client().get(server.url("/dir/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "dir index /dir/index.php");
    let r = client().get(server.url("/pages/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "<h1>pages index</h1>");
    let r = client().get(server.url("/empty/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn no_redirect_ever_leaves_the_site() {
    let app = app();
    fs::create_dir_all(app.public.join("evil.com")).unwrap();
    let server = TestServer::start_with_root(&app.public, &[]);
    for path in [
        "//evil.com",
        "//evil.com/",
        "///evil.com",
        "/\\evil.com",
        "//evil.com/%2e%2e",
    ] {
        let raw = raw_get(&server, path);
        let lower = raw.to_ascii_lowercase();
        if let Some(location) = lower.split("location: ").nth(1) {
            let location = location.lines().next().unwrap();
            assert!(
                location.starts_with('/')
                    && !location.starts_with("//")
                    && !location.contains('\\'),
                "{path} redirected to {location}"
            );
        }
    }
}

#[tokio::test]
async fn front_controller_routes_like_try_files() {
    let app = app();
    let server = TestServer::start_with_root(&app.public, &[("INDEX_FILE", "index.php")]);
    let c = client();
    let v: serde_json::Value = c
        .get(server.url("/users/42"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(v["route"], "user");
    assert_eq!(v["id"], 42);
    assert_eq!(v["REQUEST_URI"], "/users/42");
    assert_eq!(v["SCRIPT_NAME"], "/index.php");
    assert_eq!(v["PHP_SELF"], "/index.php");
    assert_eq!(v["PATH_INFO"], serde_json::Value::Null);

    let v = c
        .get(server.url("/api/items?x=1"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(v["route"], "items");
    assert_eq!(v["x"], "1");
    assert_eq!(v["REQUEST_URI"], "/api/items?x=1");
    assert_eq!(v["QUERY_STRING"], "x=1");

    // Assets and other scripts are still themselves.
    let r = c.get(server.url("/css/app.css")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "body { color: red; }\n");
    let r = c.get(server.url("/x.php")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), EXECUTED);
}

#[tokio::test]
async fn nothing_leaks_through_the_front_controller() {
    assert_refused_everywhere(
        &[
            "/.env",
            "/../.env",
            "/%2e%2e/.env",
            "/x.phtml",
            "/x.php.bak",
            "/env.txt",
            "/source.txt",
        ],
        &[404],
        &[("INDEX_FILE", "index.php")],
    );
    // With SYMLINKS=never the symlinked layout has no front controller to start with.
    assert_refused_in(
        &[Layout::Plain, Layout::Alias],
        &["/outside/passwd.txt", "/linked.txt"],
        &[404],
        &[("INDEX_FILE", "index.php"), ("SYMLINKS", "never")],
    );
}

#[test]
fn a_missing_front_controller_stops_startup() {
    let app = app();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .env("DOCUMENT_ROOT", &app.public)
        .env("INDEX_FILE", "front.php")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INDEX_FILE") && err.contains("front.php"),
        "{err}"
    );
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}
