//! WordPress from Debian's package (`wordpress`, `wordpress-theme-twentytwentythree`), in
//! Debian's layout, on a private MariaDB, driven over HTTP as a visitor's browser would:
//! install, log in, pretty permalinks that WordPress itself accepts, a post published
//! through the REST API as the block editor does, a comment, an image uploaded as
//! `wp-admin/media-new.php` does with its thumbnail made by gd, WP-cron, and Site Health's
//! checks of the server.
//!
//! Debian's layout: the code in `/usr/share/wordpress` (the document root), the site's
//! settings in `/etc/wordpress/config-HOST.php`, chosen by the request's host, and
//! `wp-content` in `/var/lib/wordpress/wp-content` (themes there are symlinks back into
//! `/usr/share/wordpress`), served at `/wp-content/` by an alias, as in Debian's nginx
//! example. The test's host name is unique to the run, so its config file touches no other
//! site's, and everything it writes there is removed when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode, multipart};

use common::TestServer;
use common::apps::require_debian_packages;
use common::browser::{Browser, between};
use common::mariadb::MariaDb;

const DOCUMENT_ROOT: &str = "/usr/share/wordpress";
const WP_CONTENT: &str = "/var/lib/wordpress/wp-content";
const CONFIG_DIR: &str = "/etc/wordpress";

const ADMIN: &str = "admin";
const PASSWORD: &str = "correct-horse-battery-staple";

/// Everything the test set up, torn down in this order: the server, the files WordPress
/// wrote, the config file, the database.
struct Site {
    server: TestServer,
    browser: Browser,
    _content: ContentCleanup,
    _config: ConfigFile,
    db: MariaDb,
    /// Unique to the run: in the host name and in the names of uploaded files.
    tag: String,
    /// `TAG.localhost`, the site's host name.
    host: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordpress_in_debians_layout() {
    let started = Instant::now();
    let site = Site::start();
    install(&site).await;
    log_in(&site).await;
    set_permalinks(&site).await;
    let post = publish_post(&site).await;
    visit_post(&site, &post).await;
    comment(&site, &post).await;
    upload_image(&site).await;
    cron(&site).await;
    site_health(&site).await;
    eprintln!("WordPress flows took {:?}", started.elapsed());
}

impl Site {
    fn start() -> Self {
        require_debian_packages(
            "wordpress, wordpress-theme-twentytwentythree, mariadb-server-core, mariadb-client-core",
            &[
                "/usr/share/wordpress/wp-settings.php",
                "/usr/share/wordpress/wp-content/themes/twentytwentythree/style.css",
                "/usr/sbin/mariadbd",
                "/usr/bin/mariadb",
            ],
        );
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("tokio-php-{}-{nanos}", std::process::id());
        let host = format!("{tag}.localhost");
        let db = MariaDb::start("wordpress");
        let config = ConfigFile::write(
            &Path::new(CONFIG_DIR).join(format!("config-{host}.php")),
            &format!(
                "<?php\n\
                 define('DB_NAME', '{name}');\n\
                 define('DB_USER', '{user}');\n\
                 define('DB_PASSWORD', '{password}');\n\
                 define('DB_HOST', '{db_host}');\n\
                 // No network here: no update checks against wordpress.org (loopback requests\n\
                 // to the site itself, such as WP-cron's, still go out).\n\
                 define('WP_HTTP_BLOCK_EXTERNAL', true);\n\
                 $table_prefix = 'wp_';\n",
                name = db.database,
                user = db.user,
                password = db.password,
                db_host = db.host(),
            ),
        );
        let content = ContentCleanup::snapshot(Path::new(WP_CONTENT), &tag);
        let alias = format!("/wp-content/={WP_CONTENT}/");
        let server = TestServer::start_with_root(
            Path::new(DOCUMENT_ROOT),
            &[
                ("INDEX_FILE", "index.php"),
                ("ALIASES", &alias),
                ("SERVER_SOFTWARE", "nginx (tokio_php)"),
                ("ACCESS_LOG", "1"),
                ("PHP_WORKERS", "4"),
            ],
        );
        let browser = Browser::new(&host, server.addr);
        Self {
            server,
            browser,
            _content: content,
            _config: config,
            db,
            tag,
            host,
        }
    }

    /// A row of `wp_options`, read from the database.
    fn option(&self, name: &str) -> String {
        let db = &self.db.database;
        let value = self.db.sql(&format!(
            "SELECT option_value FROM `{db}`.wp_options WHERE option_name = '{name}'"
        ));
        value.trim_end().to_owned()
    }

    /// The server's log and the database's error log, for a failure message.
    fn logs(&self) -> String {
        format!(
            "server log:\n{}\nMariaDB log:\n{}",
            self.server.log(),
            self.db.error_log()
        )
    }
}

/// `wp-admin/install.php`: the form, then its second step.
async fn install(site: &Site) {
    let b = &site.browser;
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::FOUND, "{}", site.logs());
    assert_eq!(
        home.location(),
        Some(b.url("/wp-admin/install.php").as_str()),
        "an empty database sends visitors to the installer"
    );
    let form = b.get("/wp-admin/install.php").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.text().contains("name=\"weblog_title\""),
        "{}",
        form.text()
    );
    let done = b
        .post_form(
            "/wp-admin/install.php?step=2",
            &[
                ("weblog_title", "tokio_php blog"),
                ("user_name", ADMIN),
                ("admin_password", PASSWORD),
                ("admin_password2", PASSWORD),
                ("admin_email", "admin@example.com"),
                ("blog_public", "0"),
                ("language", ""),
                ("Submit", "Install WordPress"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.text().contains("<h1>Success!</h1>"), "{}", done.text());
    // WordPress stores the address it was installed at, port included.
    assert_eq!(site.option("siteurl"), b.origin);
}

/// `wp-login.php` with the test cookie, as a browser posts the form.
async fn log_in(site: &Site) {
    let b = &site.browser;
    let form = b.get("/wp-login.php").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(b.cookie("wordpress_test_cookie").is_some());
    let dashboard = b.url("/wp-admin/");
    let login = b
        .post_form(
            "/wp-login.php",
            &[
                ("log", ADMIN),
                ("pwd", PASSWORD),
                ("wp-submit", "Log In"),
                ("redirect_to", &dashboard),
                ("testcookie", "1"),
            ],
        )
        .await;
    assert_eq!(login.status, StatusCode::FOUND, "{}", login.text());
    assert_eq!(login.location(), Some(dashboard.as_str()));
    assert!(
        b.cookie_names()
            .iter()
            .any(|n| n.starts_with("wordpress_logged_in_")),
        "logged-in cookie: {:?}",
        b.cookie_names()
    );
    let page = b.get("/wp-admin/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text().contains("<h1>Dashboard</h1>"),
        "{}",
        page.text()
    );
}

/// Settings → Permalinks: `/%postname%/`. Under a server WordPress recognises (here by
/// `SERVER_SOFTWARE` naming nginx) it offers the structures without `/index.php/` and says
/// nothing about rules to add.
async fn set_permalinks(site: &Site) {
    let b = &site.browser;
    let page = b.get("/wp-admin/options-permalink.php").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    assert!(
        !text.contains("/index.php/"),
        "WordPress thinks the server cannot rewrite URLs: {text}"
    );
    let nonce = input_value(&text, "_wpnonce");
    let saved = b
        .post_form(
            "/wp-admin/options-permalink.php",
            &[
                ("_wpnonce", &nonce),
                ("_wp_http_referer", "/wp-admin/options-permalink.php"),
                ("selection", "custom"),
                ("permalink_structure", "/%postname%/"),
                ("category_base", ""),
                ("tag_base", ""),
                ("submit", "Save Changes"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::FOUND, "{}", saved.text());
    let page = b
        .get(saved.location().expect("redirect after saving"))
        .await;
    let text = page.text();
    assert!(text.contains("Permalink structure updated."), "{text}");
    assert!(!text.contains(".htaccess"), "{text}");
    assert!(!text.contains("/index.php/"), "{text}");
    assert_eq!(site.option("permalink_structure"), "/%postname%/");
}

/// A published post, as the REST API returned it.
struct Post {
    id: u64,
    link: String,
    title: String,
}

/// Publishes a post as the block editor does: its page gives the REST nonce, and the post
/// goes to `/wp-json/wp/v2/posts` (a pretty URL the front controller serves).
async fn publish_post(site: &Site) -> Post {
    let b = &site.browser;
    let nonce = rest_nonce(b).await;
    let title = "Hello from tokio_php";
    let body = serde_json::json!({
        "title": title,
        "content": "<!-- wp:paragraph --><p>Served by a PHP server written in Rust.</p><!-- /wp:paragraph -->",
        "status": "publish",
    });
    let created = b
        .send(
            b.request(Method::POST, "/wp-json/wp/v2/posts")
                .header("X-WP-Nonce", &nonce)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let json = created.json();
    let link = json["link"].as_str().unwrap().to_owned();
    assert_eq!(link, b.url("/hello-from-tokio_php/"), "{json}");
    Post {
        id: json["id"].as_u64().unwrap(),
        link,
        title: title.to_owned(),
    }
}

/// The REST nonce the block editor's page hands `wp.apiFetch`.
async fn rest_nonce(b: &Browser) -> String {
    let editor = b.get("/wp-admin/post-new.php").await;
    assert_eq!(editor.status, StatusCode::OK);
    let text = editor.text();
    between(&text, "createNonceMiddleware( \"", "\"")
        .unwrap_or_else(|| panic!("no REST nonce in the editor: {text}"))
        .to_owned()
}

/// The post at its pretty URL, with the theme's assets: the stylesheets and scripts from
/// the document root, and a font from the theme, which is a symlink in `wp-content` into
/// `/usr/share/wordpress`, through the alias; and a plugin's script there, run.
async fn visit_post(site: &Site, post: &Post) {
    let visitor = Browser::new(&site.host, site.server.addr);
    let page = visitor.get(&post.link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", site.logs());
    let text = page.text();
    assert!(text.contains(&post.title), "{text}");
    assert!(text.contains("Served by a PHP server written in Rust."));
    let alternate = format!("/wp-json/wp/v2/posts/{}>", post.id);
    assert!(
        page.headers
            .get_all("link")
            .iter()
            .any(|v| v.to_str().unwrap().contains(&alternate)),
        "the REST link for the post: {:?}",
        page.headers
    );
    let missing = visitor.get("/no-such-post/").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let origin = format!("{}/", visitor.origin);
    let assets: BTreeSet<&str> = text
        .split(['\'', '"'])
        .filter(|url| {
            let path = url.split('?').next().unwrap_or_default();
            url.starts_with(&origin) && (path.ends_with(".css") || path.ends_with(".js"))
        })
        .collect();
    assert!(!assets.is_empty(), "no stylesheets or scripts: {text}");
    for asset in assets {
        let fetched = visitor.get(asset).await;
        assert_eq!(fetched.status, StatusCode::OK, "{asset}");
    }
    let font = between(&text, "url('/wp-content/themes/", "'")
        .unwrap_or_else(|| panic!("no theme font: {text}"));
    let fetched = visitor.get(&format!("/wp-content/themes/{font}")).await;
    assert_eq!(fetched.status, StatusCode::OK, "{font}: {}", site.logs());
    let on_disk = std::fs::read(Path::new(WP_CONTENT).join("themes").join(font)).unwrap();
    assert!(fetched.body == on_disk, "{font} differs from the file");

    // A plugin's own script under the alias runs (Debian's nginx example would send its
    // source: its `/wp-content/` location has no FastCGI in it).
    let plugin = visitor.get("/wp-content/plugins/akismet/akismet.php").await;
    assert_eq!(plugin.status, StatusCode::OK);
    assert_eq!(
        plugin.text(),
        "Hi there!  I'm just a plugin, not much I can do when called directly."
    );
}

/// A comment through `wp-comments-post.php`, as the post's form sends it; the logged-in
/// administrator's comment is approved at once and shows under the post.
async fn comment(site: &Site, post: &Post) {
    let b = &site.browser;
    let text = "What a fast blog.";
    let sent = b
        .post_form(
            "/wp-comments-post.php",
            &[
                ("comment", text),
                ("comment_post_ID", &post.id.to_string()),
                ("comment_parent", "0"),
                ("submit", "Post Comment"),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::FOUND, "{}", sent.text());
    let location = sent.location().unwrap();
    assert!(
        location.starts_with(&format!("{}#comment-", post.link)),
        "{location}"
    );
    let page = b.get(&post.link).await;
    assert!(page.text().contains(text), "{}", page.text());
}

/// An image uploaded as `wp-admin/media-new.php` uploads it (a multipart POST to
/// `async-upload.php`), then the original and the thumbnail gd made from it, fetched at
/// the URLs WordPress gives, under `/wp-content/uploads/` through the alias.
async fn upload_image(site: &Site) {
    let b = &site.browser;
    let page = b.get("/wp-admin/media-new.php").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    let params = between(&text, "\"multipart_params\":{", "}")
        .unwrap_or_else(|| panic!("no uploader settings: {text}"));
    let nonce = between(params, "\"_wpnonce\":\"", "\"").unwrap().to_owned();

    let name = format!("{}.png", site.tag);
    let png = png(320, 240);
    let form = multipart::Form::new()
        .text("name", name.clone())
        .text("post_id", "0")
        .text("_wpnonce", nonce)
        .text("type", "")
        .text("tab", "")
        .text("short", "1")
        .part(
            "async-upload",
            multipart::Part::bytes(png.clone())
                .file_name(name.clone())
                .mime_str("image/png")
                .unwrap(),
        );
    let uploaded = b
        .send(
            b.request(Method::POST, "/wp-admin/async-upload.php")
                .multipart(form),
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::OK, "{}", site.logs());
    let id: u64 = uploaded
        .text()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an attachment id: {}", uploaded.text()));

    let media = b.get(&format!("/wp-json/wp/v2/media/{id}")).await;
    assert_eq!(media.status, StatusCode::OK, "{}", media.text());
    let media = media.json();
    let original = media["source_url"].as_str().unwrap();
    assert!(
        original.starts_with(&b.url("/wp-content/uploads/")) && original.ends_with(&name),
        "{media}"
    );
    let thumbnail = media["media_details"]["sizes"]["thumbnail"]["source_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no thumbnail (is gd loaded?): {media}"));
    assert!(thumbnail.ends_with("-150x150.png"), "{thumbnail}");
    let on_disk = Path::new(WP_CONTENT).join(
        thumbnail
            .strip_prefix(&b.url("/wp-content/"))
            .unwrap_or_else(|| panic!("{thumbnail} outside wp-content")),
    );
    assert!(on_disk.is_file(), "{} missing", on_disk.display());

    let fetched = b.get(original).await;
    assert_eq!(fetched.status, StatusCode::OK, "{original}");
    assert_eq!(fetched.header("content-type"), "image/png");
    assert!(fetched.body == png, "the original comes back as uploaded");

    let fetched = b.get(thumbnail).await;
    assert_eq!(fetched.status, StatusCode::OK, "{thumbnail}");
    assert_eq!(png_size(&fetched.body), (150, 150), "{thumbnail}");
    assert!(fetched.body == std::fs::read(&on_disk).unwrap());
}

/// WP-cron: `wp-cron.php` answers at once (WordPress ends the response with
/// `fastcgi_finish_request()` before running the events), and WordPress's own loopback
/// requests to it reached the server while the test browsed.
async fn cron(site: &Site) {
    let b = &site.browser;
    let started = Instant::now();
    let answer = b.get("/wp-cron.php").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.is_empty(), "{}", answer.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    let spawned = site
        .server
        .stdout()
        .lines()
        .any(|l| l.contains("\"path\":\"/wp-cron.php\"") && l.contains("doing_wp_cron"));
    assert!(
        spawned,
        "no request from WordPress's spawn_cron(); access log:\n{}",
        site.server.stdout()
    );
}

/// Tools → Site Health, whose checks test the server as WordPress sees it: the REST API
/// answers, a loopback request from PHP to the site works, and the `Authorization` header
/// reaches PHP (the page's script sends `Basic user:pwd` and expects it back).
async fn site_health(site: &Site) {
    let b = &site.browser;
    let page = b.get("/wp-admin/site-health.php").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    let status = between(&text, "var SiteHealth = ", ";\n")
        .unwrap_or_else(|| panic!("no Site Health results: {text}"));
    let status: serde_json::Value = serde_json::from_str(status).unwrap();
    let direct = status["site_status"]["direct"].as_array().unwrap();
    let rest = direct
        .iter()
        .find(|t| t["test"] == "rest_availability")
        .unwrap();
    assert_eq!(rest["status"], "good", "{rest}");

    let nonce = rest_nonce(b).await;
    for test in ["loopback-requests", "authorization-header"] {
        let result = b
            .send(
                b.request(
                    Method::GET,
                    &format!("/wp-json/wp-site-health/v1/tests/{test}"),
                )
                .header("X-WP-Nonce", &nonce)
                .basic_auth("user", Some("pwd")),
            )
            .await;
        assert_eq!(result.status, StatusCode::OK, "{test}: {}", result.text());
        assert_eq!(result.json()["status"], "good", "{test}: {}", result.text());
    }
}

// === helpers ===

/// The `value` of the input named `name` in `html`.
fn input_value(html: &str, name: &str) -> String {
    let input = between(html, &format!("name=\"{name}\" value=\""), "\"")
        .unwrap_or_else(|| panic!("no input {name}: {html}"));
    input.to_owned()
}

/// A `width`×`height` RGB PNG of a gradient.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]);
        }
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(&raw).unwrap();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", header),
        (b"IDAT", zlib.finish().unwrap()),
        (b"IEND", Vec::new()),
    ] {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(&data);
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(kind);
        out.extend(&data);
        out.extend(crc.sum().to_be_bytes());
    }
    out
}

/// Width and height from a PNG's header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

// === clean-up ===

/// `/etc/wordpress/config-HOST.php`, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn write(path: &Path, contents: &str) -> Self {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.write_all(contents.as_bytes()).unwrap();
        Self(path.to_owned())
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// On drop, removes from `wp-content` the files whose names carry the run's tag (uploads
/// and the sizes made from them) and the directories that appeared since the snapshot and
/// are empty then (`uploads/YYYY/MM`).
struct ContentCleanup {
    root: PathBuf,
    tag: String,
    dirs_before: BTreeSet<PathBuf>,
}

impl ContentCleanup {
    fn snapshot(root: &Path, tag: &str) -> Self {
        Self {
            root: root.to_owned(),
            tag: tag.to_owned(),
            dirs_before: walk(root).0,
        }
    }
}

impl Drop for ContentCleanup {
    fn drop(&mut self) {
        let (dirs, files) = walk(&self.root);
        for file in files {
            if file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&self.tag))
            {
                let _ = std::fs::remove_file(file);
            }
        }
        // Deepest first, so `2026/12` goes before `2026`.
        let new: Vec<&PathBuf> = dirs.difference(&self.dirs_before).collect();
        for dir in new.into_iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The directories and files under `root`, not following symlinks.
fn walk(root: &Path) -> (BTreeSet<PathBuf>, Vec<PathBuf>) {
    let (mut dirs, mut files) = (BTreeSet::new(), Vec::new());
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
                dirs.insert(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    (dirs, files)
}
