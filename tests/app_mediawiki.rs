//! MediaWiki from Debian's package (`mediawiki`) in Debian's layout, on SQLite, driven over
//! HTTP: installed with `maintenance/install.php` (the ZTS PHP's CLI), then a login and an
//! edit through `api.php` as a bot or a gadget makes them, and the page and its history
//! read back at the addresses a reader uses.
//!
//! Debian's layout: the document root `/var/lib/mediawiki` is a tree of symlinks into
//! `/usr/share/mediawiki` (`index.php`, `api.php`, `load.php`, `resources/`, `skins/`…),
//! and its `LocalSettings.php` is a symlink to `/etc/mediawiki/LocalSettings.php`. The
//! test writes that file only when there is none (and removes it afterwards); when a real
//! one is there it leaves it alone and points MediaWiki at its own with `MW_CONFIG_FILE`.
//! The wiki's SQLite files live in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use reqwest::StatusCode;

use common::TestServer;
use common::apps::require_debian_packages;
use common::browser::{Browser, between};

const DOCUMENT_ROOT: &str = "/var/lib/mediawiki";
const DEBIAN_SETTINGS: &str = "/etc/mediawiki/LocalSettings.php";

const ADMIN: &str = "Admin";
const PASSWORD: &str = "correct-horse-battery-staple";
const PAGE: &str = "Served_by_tokio_php";

/// Everything the test set up; the server goes first, the settings file and the wiki's
/// data after it.
struct Wiki {
    server: TestServer,
    browser: Browser,
    _settings: Settings,
    _data: tempfile::TempDir,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mediawiki_in_debians_layout() {
    let started = Instant::now();
    let wiki = Wiki::install();
    log_in(&wiki.browser).await;
    let first = edit(&wiki.browser, "First version.", "Created by the test").await;
    let second = edit(&wiki.browser, "Second version.", "Edited by the test").await;
    assert!(second > first, "revision ids {first} then {second}");
    view(&wiki).await;
    history(&wiki.browser).await;
    eprintln!("MediaWiki flows took {:?}", started.elapsed());
}

impl Wiki {
    /// Claims the settings file, starts the server (the installer needs its address),
    /// runs the installer and writes the settings it made, with short URLs (`/wiki/Title`,
    /// answered by `index.php` as the front controller).
    fn install() -> Self {
        require_debian_packages("mediawiki", &["/usr/share/mediawiki/index.php"]);
        let data = tempfile::Builder::new()
            .prefix("mediawiki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let settings = Settings::claim(&data.path().join("LocalSettings.php"));
        let mut env = vec![("INDEX_FILE", "index.php")];
        let own_file = settings.own_file.to_str().unwrap().to_owned();
        if !settings.debian {
            env.push(("MW_CONFIG_FILE", &own_file));
        }
        let server = TestServer::start_with_root(Path::new(DOCUMENT_ROOT), &env);
        let browser = Browser::new("localhost", server.addr);

        let installed = php_cli()
            .current_dir(DOCUMENT_ROOT)
            .env("MW_CONFIG_FILE", &settings.own_file)
            .arg("maintenance/install.php")
            .arg("--dbtype=sqlite")
            .arg(format!("--dbpath={}", data.path().display()))
            .arg("--dbname=tokio_php_wiki")
            .arg(format!("--server={}", browser.origin))
            .arg("--scriptpath=")
            .arg(format!("--pass={PASSWORD}"))
            .arg(format!("--confpath={}", data.path().display()))
            .args(["tokio_php wiki", ADMIN])
            .output()
            .unwrap();
        let output = String::from_utf8_lossy(&installed.stdout).into_owned()
            + &String::from_utf8_lossy(&installed.stderr);
        assert!(
            installed.status.success() && output.contains("successfully installed"),
            "install.php: {output}"
        );
        let mut generated = std::fs::read_to_string(&settings.own_file).unwrap();
        generated.push_str(
            "\n# Added by the test: short URLs, which index.php answers as the front controller.\n\
             $wgArticlePath = \"/wiki/$1\";\n",
        );
        settings.write(&generated);
        Self {
            server,
            browser,
            _settings: settings,
            _data: data,
        }
    }
}

/// `action=clientlogin` with the login token, as the main account.
async fn log_in(b: &Browser) {
    let tokens = b
        .get("/api.php?action=query&meta=tokens&type=login&format=json")
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let token = tokens.json()["query"]["tokens"]["logintoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no login token: {}", tokens.text()))
        .to_owned();
    let return_url = b.url("/");
    let login = b
        .post_form(
            "/api.php",
            &[
                ("action", "clientlogin"),
                ("format", "json"),
                ("username", ADMIN),
                ("password", PASSWORD),
                ("logintoken", &token),
                ("loginreturnurl", &return_url),
            ],
        )
        .await;
    let json = login.json();
    assert_eq!(json["clientlogin"]["status"], "PASS", "{json}");
    assert_eq!(json["clientlogin"]["username"], ADMIN, "{json}");
}

/// `action=edit` of [`PAGE`] with a CSRF token; the new revision's id.
async fn edit(b: &Browser, text: &str, summary: &str) -> u64 {
    let tokens = b.get("/api.php?action=query&meta=tokens&format=json").await;
    let token = tokens.json()["query"]["tokens"]["csrftoken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        token, "+\\",
        "the CSRF token of an anonymous user: not logged in"
    );
    let content = format!("'''{text}''' [[Main Page]]");
    let edited = b
        .post_form(
            "/api.php",
            &[
                ("action", "edit"),
                ("format", "json"),
                ("title", PAGE),
                ("text", &content),
                ("summary", summary),
                ("token", &token),
            ],
        )
        .await;
    let json = edited.json();
    assert_eq!(json["edit"]["result"], "Success", "{json}");
    json["edit"]["newrevid"].as_u64().unwrap()
}

/// The page as a reader reaches it: `index.php?title=`, `/index.php/Title` (PATH_INFO) and
/// the short URL `/wiki/Title`; and the skin's stylesheet from `load.php` and its logo, a
/// static file through the symlinked `resources/` directory.
async fn view(wiki: &Wiki) {
    let reader = Browser::new("localhost", wiki.server.addr);
    for path in [
        format!("/index.php?title={PAGE}"),
        format!("/index.php/{PAGE}"),
        format!("/wiki/{PAGE}"),
    ] {
        let page = reader.get(&path).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{path}: {}\n{}",
            page.text(),
            wiki.server.log()
        );
        let text = page.text();
        assert!(text.contains("<b>Second version.</b>"), "{path}: {text}");
        assert!(text.contains("href=\"/wiki/Main_Page\""), "{path}: {text}");
    }
    let page = reader.get(&format!("/wiki/{PAGE}")).await.text();
    let stylesheet = between(&page, "<link rel=\"stylesheet\" href=\"", "\"")
        .unwrap_or_else(|| panic!("no stylesheet: {page}"))
        .replace("&amp;", "&");
    assert!(stylesheet.starts_with("/load.php?"), "{stylesheet}");
    let css = reader.get(&stylesheet).await;
    assert_eq!(css.status, StatusCode::OK, "{stylesheet}");
    assert!(
        css.header("content-type").starts_with("text/css"),
        "{stylesheet}: {:?}",
        css.headers
    );
    let logo = reader.get("/resources/assets/change-your-logo.svg").await;
    assert_eq!(logo.status, StatusCode::OK);
    assert_eq!(logo.header("content-type"), "image/svg+xml");
    let missing = reader.get("/wiki/No_such_page_here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// `action=history` lists both edits, with their summaries and author.
async fn history(b: &Browser) {
    let page = b
        .get(&format!("/index.php?title={PAGE}&action=history"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    for summary in ["Created by the test", "Edited by the test"] {
        assert!(text.contains(summary), "{summary}: {text}");
    }
    assert!(text.contains("User:Admin"), "{text}");
}

// === helpers ===

/// The CLI of the PHP the server is built with, beside its `php-config`.
fn php_cli() -> Command {
    let php_config = Path::new(env!("TOKIO_PHP_CONFIG"));
    Command::new(php_config.with_file_name("php"))
}

/// Where MediaWiki reads its settings: Debian's `/etc/mediawiki/LocalSettings.php` when
/// the test could create it (removed on drop), else the test's own file, named to
/// MediaWiki by `MW_CONFIG_FILE`.
struct Settings {
    /// The installer's output, in the test's directory.
    own_file: PathBuf,
    /// Whether Debian's file is the test's.
    debian: bool,
}

impl Settings {
    fn claim(own_file: &Path) -> Self {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(DEBIAN_SETTINGS);
        if let Err(e) = &created {
            eprintln!("{DEBIAN_SETTINGS} left alone ({e}); using MW_CONFIG_FILE");
        }
        Self {
            own_file: own_file.to_owned(),
            debian: created.is_ok(),
        }
    }

    /// Puts `contents` where MediaWiki reads them.
    fn write(&self, contents: &str) {
        let path = if self.debian {
            Path::new(DEBIAN_SETTINGS)
        } else {
            self.own_file.as_path()
        };
        let mut file = std::fs::File::create(path).unwrap();
        file.write_all(contents.as_bytes()).unwrap();
    }
}

impl Drop for Settings {
    fn drop(&mut self) {
        if self.debian {
            let _ = std::fs::remove_file(DEBIAN_SETTINGS);
        }
    }
}
