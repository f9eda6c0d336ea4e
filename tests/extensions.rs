//! The extensions of the default PHP build (scripts/setup-php.sh's catalogue) work in a
//! request: each is loaded, and the ones applications lean on do their job (gd encodes
//! JPEG, PNG and WebP and draws text with FreeType, intl formats for a locale, …). A build
//! from Debian's source has Debian's include_path. And a build with an extension whose
//! library is missing stops and names it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The PHP this binary was built against.
fn php_prefix() -> PathBuf {
    PathBuf::from(env!("TOKIO_PHP_PREFIX"))
}

fn script_root(name: &str, php: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("extensions-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.php"), php).unwrap();
    dir
}

async fn run_json(name: &str, php: &str) -> Value {
    let root = script_root(name, php);
    let server = TestServer::start_with_root(&root, &[]);
    let response = reqwest::get(server.url("/index.php")).await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{name}: {body}\nlog:\n{}", server.log());
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}\nlog:\n{}", server.log()))
}

/// The extensions this build was configured with (written by setup-php.sh), or None for a
/// PHP that setup-php.sh did not build.
fn built_extensions() -> Option<Vec<String>> {
    let list = std::fs::read_to_string(php_prefix().join("share/extensions")).ok()?;
    Some(list.lines().map(str::to_owned).collect())
}

#[tokio::test]
async fn every_extension_of_the_build_is_loaded() {
    let Some(expected) = built_extensions() else {
        eprintln!(
            "skipped: {} was not built by scripts/setup-php.sh",
            php_prefix().display()
        );
        return;
    };
    let loaded = run_json(
        "loaded",
        "<?php echo json_encode(array_map('strtolower', get_loaded_extensions()));",
    )
    .await;
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    for name in &expected {
        // OPcache registers as "Zend OPcache"; mysqlnd, libxml and the rest by their name.
        let found = loaded
            .iter()
            .any(|l| l == name || *l == format!("zend {name}"));
        assert!(
            found,
            "{name} is in the build but not loaded; loaded: {loaded:?}"
        );
    }
}

#[tokio::test]
async fn the_extensions_applications_need_work() {
    let Some(built) = built_extensions() else {
        eprintln!(
            "skipped: {} was not built by scripts/setup-php.sh",
            php_prefix().display()
        );
        return;
    };
    for name in [
        "gd", "intl", "exif", "calendar", "gmp", "bz2", "pgsql", "soap", "xsl", "ldap",
    ] {
        assert!(
            built.iter().any(|b| b == name),
            "{name} is missing from the default build"
        );
    }
    let font = find_font();
    let php = format!(
        r#"<?php
$r = [];
$info = gd_info();
foreach (['JPEG Support', 'PNG Support', 'WebP Support', 'FreeType Support'] as $k) {{ $r[$k] = $info[$k] ?? false; }}
$im = imagecreatetruecolor(40, 20);
imagefilledrectangle($im, 0, 0, 39, 19, imagecolorallocate($im, 200, 30, 30));
$font = {font};
if ($font !== null) {{ $r['ttf'] = is_array(imagettftext($im, 10, 0, 2, 15, imagecolorallocate($im, 255, 255, 255), $font, 'Hi')); }}
foreach (['png', 'jpeg', 'webp'] as $f) {{
    ob_start(); ("image$f")($im); $bytes[$f] = ob_get_clean();
    $back = imagecreatefromstring($bytes[$f]);
    $r[$f] = $back !== false && imagesx($back) === 40;
}}
$r['thumbnail'] = imagesx(imagescale($im, 10)) === 10;
$r['intl'] = (new NumberFormatter('de_DE', NumberFormatter::DECIMAL))->format(1234.5);
$r['intl_collator'] = (new Collator('sv_SE'))->compare('z', 'ö');
$r['idn'] = idn_to_ascii('bücher.example');
$r['calendar'] = cal_days_in_month(CAL_GREGORIAN, 2, 2024);
$r['gmp'] = gmp_strval(gmp_pow(2, 100));
$r['bz2'] = bzdecompress(bzcompress(str_repeat('tokio', 100))) === str_repeat('tokio', 100);
$jpeg = tempnam(sys_get_temp_dir(), 'exif');
file_put_contents($jpeg, $bytes['jpeg']);
$r['exif'] = exif_imagetype($jpeg) === IMAGETYPE_JPEG;
unlink($jpeg);
$xsl = new XSLTProcessor();
$xsl->importStylesheet(new SimpleXMLElement('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:output method="text"/><xsl:template match="/">[<xsl:value-of select="/a"/>]</xsl:template></xsl:stylesheet>'));
$r['xsl'] = $xsl->transformToXml(new SimpleXMLElement('<a>x</a>'));
$r['soap'] = class_exists('SoapClient') && class_exists('SoapServer');
$r['ldap'] = ldap_connect('ldap://127.0.0.1:1') !== false;
$r['pdo_drivers'] = PDO::getAvailableDrivers();
$r['pgsql'] = function_exists('pg_connect');
echo json_encode($r);
"#,
        font = font
            .as_ref()
            .map_or("null".to_owned(), |f| format!("'{}'", f.display())),
    );
    let r = run_json("work", &php).await;
    for k in [
        "JPEG Support",
        "PNG Support",
        "WebP Support",
        "FreeType Support",
    ] {
        assert_eq!(r[k], true, "gd_info()['{k}']: {r}");
    }
    for k in [
        "png",
        "jpeg",
        "webp",
        "thumbnail",
        "bz2",
        "exif",
        "soap",
        "ldap",
        "pgsql",
    ] {
        assert_eq!(r[k], true, "{k}: {r}");
    }
    if font.is_some() {
        assert_eq!(r["ttf"], true, "imagettftext: {r}");
    }
    assert_eq!(r["intl"], "1.234,5", "{r}");
    assert_eq!(r["intl_collator"], -1, "Swedish sorts z before ö: {r}");
    assert_eq!(r["idn"], "xn--bcher-kva.example", "{r}");
    assert_eq!(r["calendar"], 29, "{r}");
    assert_eq!(r["gmp"], "1267650600228229401496703205376", "{r}");
    assert_eq!(r["xsl"], "[x]", "{r}");
    let drivers: Vec<&str> = r["pdo_drivers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for driver in ["mysql", "pgsql", "sqlite"] {
        assert!(
            drivers.contains(&driver),
            "PDO driver {driver}: {drivers:?}"
        );
    }
}

/// A TrueType font on this machine, if any (gd draws text with it through FreeType).
fn find_font() -> Option<PathBuf> {
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test]
async fn a_debian_build_has_debians_include_path() {
    if !php_prefix().to_string_lossy().contains("-debian-") {
        eprintln!(
            "skipped: {} is not built from Debian's source",
            php_prefix().display()
        );
        return;
    }
    let r = run_json(
        "include-path",
        "<?php echo json_encode([ini_get('include_path'), DEFAULT_INCLUDE_PATH,
            stream_resolve_include_path('PEAR.php') ?: stream_resolve_include_path('Psr/Log/LoggerInterface.php')]);",
    )
    .await;
    assert_eq!(r[0], ".:/usr/share/php", "{r}");
    assert_eq!(r[1], ".:/usr/share/php", "{r}");
    // A library Debian installs there (php-pear or php-psr-log, both pulled in by the test
    // dependencies) is found by its relative name, as under Debian's own PHP.
    if Path::new("/usr/share/php/PEAR.php").exists()
        || Path::new("/usr/share/php/Psr/Log/LoggerInterface.php").exists()
    {
        assert!(
            r[2].as_str()
                .is_some_and(|p| p.starts_with("/usr/share/php/")),
            "{r}"
        );
    }
}

/// An extension whose library is not installed stops the build at configure, and the
/// message names the extension's check and what was missing. pdo_firebird is in php-src
/// but not in the catalogue, so the script installs nothing for it; Firebird's client
/// library is not on this machine.
#[test]
fn a_missing_library_is_named() {
    if Path::new("/usr/include/ibase.h").exists() || Path::new("/usr/include/firebird").exists() {
        eprintln!("skipped: Firebird's headers are installed here, so nothing would be missing");
        return;
    }
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("setup-php-missing-library");
    let _ = std::fs::remove_dir_all(&cache);
    let mut child = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup-php.sh"))
        .env_remove("PHP_CONFIG")
        .env("TOKIO_PHP_CACHE", &cache)
        .env("PHP_EXTENSIONS", "+pdo_firebird")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // configure fails within a few minutes; a build that went on to compile would be a bug.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("setup-php.sh with +pdo_firebird ran for 10 minutes instead of failing");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&cache);
    assert!(
        !status.success(),
        "the build succeeded without Firebird:\n{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "a failed build printed a php-config path"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("configure failed"), "{stderr}");
    assert!(
        last.to_lowercase().contains("firebird"),
        "the message names Firebird:\n{last}"
    );
    assert!(
        last.contains("PHP_EXTENSIONS=-name"),
        "the message says how to leave it out:\n{last}"
    );
}
