//! `SYMLINKS` and `ALIASES` over HTTP against the real server: each symlink policy as
//! nginx's `disable_symlinks` answers the same tree, aliases for static files and PHP
//! scripts (with `$_SERVER` as nginx gives it in an alias location), what startup says
//! about bad values, and the layouts Debian's wordpress and mediawiki packages install.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{TestServer, client};
use serde_json::{Value, json};

fn write(path: &Path, contents: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let r = client().get(server.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    common::get_json(&server.url(path)).await
}

/// The owner `if_owner` compares with: `nobody`.
const NOBODY: u32 = 65_534;

/// `root/` with `same.txt -> ../out/same.txt`, `other.txt -> ../out/other.txt` (the target
/// owned by nobody), `dir -> ../out`, and a plain `real/r.txt`: the tree the nginx
/// comparison in docs/static-files.md was made on. None when owners cannot be changed.
fn owner_tree() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    write(&base.join("out/same.txt"), "same");
    write(&base.join("out/other.txt"), "other");
    write(&base.join("root/real/r.txt"), "real");
    let root = base.join("root");
    symlink("../out/same.txt", root.join("same.txt")).unwrap();
    symlink("../out/other.txt", root.join("other.txt")).unwrap();
    symlink("../out", root.join("dir")).unwrap();
    if std::os::unix::fs::chown(base.join("out/other.txt"), Some(NOBODY), None).is_err() {
        return None;
    }
    Some((dir, root))
}

#[tokio::test]
async fn each_symlink_policy_answers_as_nginx_disable_symlinks_does() {
    let Some((_dir, root)) = owner_tree() else {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    };
    // Statuses nginx 1.22 gave for the same tree (`disable_symlinks off`, `if_not_owner
    // from=$document_root`, `on from=$document_root`); nginx's 403 is a 404 here, as
    // every refusal is.
    let paths = [
        "/same.txt",
        "/other.txt",
        "/dir/same.txt",
        "/dir/other.txt",
        "/real/r.txt",
    ];
    for (policy, expected) in [
        ("follow", [200, 200, 200, 200, 200]),
        ("if_owner", [200, 404, 200, 200, 200]),
        ("never", [404, 404, 404, 404, 200]),
    ] {
        let server = TestServer::start_with_root(&root, &[("SYMLINKS", policy)]);
        for (path, status) in paths.iter().zip(expected) {
            assert_eq!(
                get(&server, path).await.0,
                status,
                "SYMLINKS={policy} {path}"
            );
        }
    }
}

/// `root/` (a front controller and a script that hands files over with X-Sendfile) and
/// `content/`, the directory of the alias `/wp-content/`.
fn alias_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("root");
    let content = base.join("content");
    write(
        &root.join("index.php"),
        "<?php echo json_encode(['front' => $_SERVER['REQUEST_URI']]);",
    );
    write(
        &root.join("send.php"),
        "<?php header('X-Sendfile: ' . $_GET['path']);",
    );
    write(&content.join("uploads/a.css"), "a { color: red }");
    write(
        &content.join("plugins/x.php"),
        "<?php echo json_encode(array_intersect_key($_SERVER, array_flip(['SCRIPT_FILENAME', \
         'SCRIPT_NAME', 'DOCUMENT_ROOT', 'PATH_INFO', 'PATH_TRANSLATED', 'PHP_SELF', \
         'REQUEST_URI', 'DOCUMENT_URI'])));",
    );
    write(
        &content.join("index.php"),
        "<?php echo json_encode(['index' => $_SERVER['SCRIPT_NAME']]);",
    );
    write(&content.join(".env"), "SECRET=1");
    write(&content.join("plugins/x.php.bak"), "<?php // SECRET");
    write(&base.join("outside.txt"), "outside");
    symlink("../outside.txt", content.join("linked.txt")).unwrap();
    (dir, root, content)
}

#[tokio::test]
async fn aliases_serve_static_files_and_run_php_as_nginx_alias_does() {
    let (_dir, root, content) = alias_tree();
    let alias = format!("/wp-content/={}/", content.display());
    let server = TestServer::start_with_root(
        &root,
        &[("ALIASES", alias.as_str()), ("INDEX_FILE", "index.php")],
    );
    assert_eq!(
        get(&server, "/wp-content/uploads/a.css").await,
        (200, "a { color: red }".to_owned())
    );
    // nginx, `location /wp-content/ { alias DIR/; location ~ \.php$ { fastcgi_param
    // SCRIPT_FILENAME $request_filename; … } }`: the file under the alias, the URL path,
    // and the alias directory as DOCUMENT_ROOT.
    let v = get_json(&server, "/wp-content/plugins/x.php/extra/info?q=1").await;
    let content_text = content.display().to_string();
    assert_eq!(
        v,
        json!({
            "SCRIPT_FILENAME": format!("{content_text}/plugins/x.php"),
            "SCRIPT_NAME": "/wp-content/plugins/x.php",
            "DOCUMENT_ROOT": content_text,
            "PATH_INFO": "/extra/info",
            "PATH_TRANSLATED": format!("{content_text}/extra/info"),
            "PHP_SELF": "/wp-content/plugins/x.php/extra/info",
            "DOCUMENT_URI": "/wp-content/plugins/x.php/extra/info",
            "REQUEST_URI": "/wp-content/plugins/x.php/extra/info?q=1",
        })
    );
    // The directory itself: a redirect, then its index.
    let r = client()
        .get(server.url("/wp-content"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/wp-content/");
    assert_eq!(
        get_json(&server, "/wp-content/").await,
        json!({"index": "/wp-content/index.php"})
    );
    // A missing file under an alias is a plain 404, as in an nginx alias location without
    // try_files; the front controller keeps every other path.
    assert_eq!(get(&server, "/wp-content/uploads/missing.css").await.0, 404);
    assert_eq!(get(&server, "/wp-content/no/such/route").await.0, 404);
    assert_eq!(
        get_json(&server, "/wp-contents/x").await,
        json!({"front": "/wp-contents/x"})
    );
    // Hidden files, backups and traversal stay refused; a symlink out is followed.
    for path in [
        "/wp-content/.env",
        "/wp-content/plugins/x.php.bak",
        "/wp-content/../index.php",
        "/wp-content/%2e%2e/root/index.php",
    ] {
        // Sent as they are: an HTTP client would resolve the dot segments itself.
        let reply = server.raw(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            std::time::Duration::from_secs(10),
        );
        assert!(reply.starts_with("HTTP/1.1 404"), "{path}: {reply}");
        assert!(
            !reply.contains("SECRET") && !reply.contains("front"),
            "{path}: {reply}"
        );
    }
    assert_eq!(
        get(&server, "/wp-content/linked.txt").await,
        (200, "outside".to_owned())
    );
    // X-Sendfile hands over files of the alias directories too, by default.
    let css = content.join("uploads/a.css");
    assert_eq!(
        get(&server, &format!("/send.php?path={}", css.display())).await,
        (200, "a { color: red }".to_owned())
    );
}

#[tokio::test]
async fn the_symlink_policy_holds_under_aliases_and_for_x_sendfile() {
    let (_dir, root, content) = alias_tree();
    let alias = format!("/wp-content={}", content.display());
    let server =
        TestServer::start_with_root(&root, &[("ALIASES", alias.as_str()), ("SYMLINKS", "never")]);
    assert_eq!(get(&server, "/wp-content/linked.txt").await.0, 404);
    assert_eq!(get(&server, "/wp-content/uploads/a.css").await.0, 200);
    let linked = content.join("linked.txt");
    assert_eq!(
        get(&server, &format!("/send.php?path={}", linked.display()))
            .await
            .0,
        500
    );
}

#[tokio::test]
async fn the_worker_script_never_takes_paths_under_an_alias() {
    let (_dir, root, content) = alias_tree();
    let alias = format!("/wp-content/={}", content.display());
    let worker = common::fixtures().join("worker/app.php");
    let server = TestServer::start_with_root(
        &root,
        &[
            ("ALIASES", alias.as_str()),
            ("WORKER_SCRIPT", worker.to_str().unwrap()),
            ("WORKER_COUNT", "1"),
        ],
    );
    let v = get_json(&server, "/some/route").await;
    assert_eq!(v["script"], "/app.php", "{v}");
    assert_eq!(get(&server, "/wp-content/missing").await.0, 404);
    let v = get_json(&server, "/wp-content/plugins/x.php").await;
    assert_eq!(v["SCRIPT_NAME"], "/wp-content/plugins/x.php");
}

/// Starts the binary with `env` and returns its exit code and standard error.
fn refused_start(root: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"));
    command
        .env_clear()
        .env("DOCUMENT_ROOT", root)
        .env("LISTEN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_aliases_and_policies_stop_startup_with_what_is_wrong() {
    let (_dir, root, content) = alias_tree();
    let content = content.display().to_string();
    for (name, value, says) in [
        (
            "ALIASES",
            format!("wp-content={content}"),
            "must start with /",
        ),
        ("ALIASES", format!("/={content}"), "below /"),
        ("ALIASES", "/wp-content".to_owned(), "PREFIX=DIRECTORY"),
        ("ALIASES", "/x=/definitely/not/here".to_owned(), "exist"),
        ("SYMLINKS", "off".to_owned(), "follow, if_owner or never"),
        ("SERVER_SOFTWARE", "a\u{7}b".to_owned(), "printable text"),
    ] {
        let (code, err) = refused_start(&root, &[(name, value.as_str())]);
        assert_eq!(code, Some(2), "{name}={value}: {err}");
        assert!(
            err.contains(name) && err.contains(says),
            "{name}={value}: {err}"
        );
    }
}

// === Debian's layouts ===

/// Debian's mediawiki package: `/var/lib/mediawiki` (the document root) is a tree of
/// symlinks into `/usr/share/mediawiki`.
#[tokio::test]
async fn debian_mediawiki_is_served_through_its_symlinks() {
    let root = Path::new("/var/lib/mediawiki");
    let asset = "resources/assets/poweredby_mediawiki_88x31.png";
    let real = Path::new("/usr/share/mediawiki").join(asset);
    if !root.join(asset).is_file() {
        eprintln!("skipped: Debian's mediawiki package is not installed ({asset})");
        return;
    }
    assert!(
        fs::symlink_metadata(root.join("resources"))
            .unwrap()
            .is_symlink()
    );
    let server = TestServer::start_with_root(root, &[]);
    let r = client()
        .get(server.url(&format!("/{asset}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap(), fs::read(&real).unwrap());
    let (status, body) = get(&server, "/composer.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        fs::read_to_string("/usr/share/mediawiki/composer.json").unwrap()
    );
    // index.php is a symlink too, and runs (before setup, it says how to set the wiki up).
    let (status, body) = get(&server, "/index.php").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("MediaWiki"), "{body}");
    drop(server);
    // The package's links and their targets are all root's: if_owner follows them; never
    // serves nothing of it, as under nginx's `disable_symlinks on`.
    for (policy, status) in [("if_owner", 200), ("never", 404)] {
        let server = TestServer::start_with_root(root, &[("SYMLINKS", policy)]);
        assert_eq!(
            get(&server, &format!("/{asset}")).await.0,
            status,
            "{policy}"
        );
    }
}

/// Debian's wordpress package: `/usr/share/wordpress` (the document root) links bundled
/// scripts to `/usr/share/javascript`, and `wp-content` lives in `/var/lib/wordpress`,
/// served by an alias as its Apache and nginx examples do.
#[tokio::test]
async fn debian_wordpress_is_served_with_its_symlinks_and_wp_content_alias() {
    let root = Path::new("/usr/share/wordpress");
    let script = "wp-includes/js/underscore.min.js";
    let content = Path::new("/var/lib/wordpress/wp-content");
    if !root.join(script).is_file() || !content.is_dir() {
        eprintln!("skipped: Debian's wordpress package is not installed ({script})");
        return;
    }
    assert!(
        fs::symlink_metadata(root.join(script))
            .unwrap()
            .is_symlink()
    );
    let alias = format!("/wp-content/={}/", content.display());
    let server = TestServer::start_with_root(
        root,
        &[
            ("ALIASES", alias.as_str()),
            ("SERVER_SOFTWARE", "nginx (tokio_php)"),
        ],
    );
    let (status, body) = get(&server, &format!("/{script}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        fs::read_to_string(Path::new(
            "/usr/share/javascript/underscore/underscore.min.js"
        ))
        .unwrap()
    );
    // wp-content/index.php ("Silence is golden") runs from the alias directory.
    assert_eq!(
        get(&server, "/wp-content/index.php").await,
        (200, String::new())
    );
    // Its .htaccess is a symlink to /etc/wordpress/htaccess: a dot-file all the same.
    assert_eq!(get(&server, "/.htaccess").await.0, 404);
}
