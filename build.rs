//! Finds PHP (PHP_CONFIG, then the project's cached ZTS build, then `php-config` on PATH),
//! compiles the SAPI shim in `php-ext/`, links libphp with a runtime search path, and warns
//! when that PHP is not thread-safe (one PHP worker per process then).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const NO_PHP: &str = "tokio_php: no PHP with the embed SAPI found: run `make php` (scripts/setup-php.sh builds a ZTS PHP once) or set PHP_CONFIG=/path/to/php-config";

fn main() {
    println!("cargo::rerun-if-env-changed=PHP_CONFIG");
    println!("cargo::rerun-if-env-changed=TOKIO_PHP_CACHE");
    println!("cargo::rerun-if-changed=php-ext");

    let Some(php_config) = find_php_config() else {
        println!("cargo::error={NO_PHP}");
        return;
    };
    println!("cargo::rerun-if-changed={}", php_config.display());

    let includes = php_config_output(&php_config, "--includes");
    let prefix = php_config_output(&php_config, "--prefix");
    let include_dir = php_config_output(&php_config, "--include-dir");
    let extension_dir = php_config_output(&php_config, "--extension-dir");

    let Some((lib_dir, lib_name)) = find_libphp(&prefix) else {
        println!(
            "cargo::error=tokio_php: {} has no libphp*.so under {prefix}/lib: PHP must be built with --enable-embed=shared; {NO_PHP}",
            php_config.display()
        );
        return;
    };

    let mut build = cc::Build::new();
    build
        .file("php-ext/tokio_php_sapi.c")
        .include("php-ext")
        .define("_GNU_SOURCE", None);
    for flag in includes.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-I") {
            build.include(dir);
        }
    }
    build
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .compile("tokio_php_sapi");

    println!("cargo::rustc-link-search=native={}", lib_dir.display());
    println!("cargo::rustc-link-lib=dylib={lib_name}");
    println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo::rustc-env=TOKIO_PHP_CONFIG={}", php_config.display());
    println!("cargo::rustc-env=TOKIO_PHP_EXTENSION_DIR={extension_dir}");
    println!("cargo::rustc-env=TOKIO_PHP_PREFIX={prefix}");

    let php_config_h = Path::new(&include_dir).join("main/php_config.h");
    let header = std::fs::read_to_string(&php_config_h).unwrap_or_default();
    if !header.lines().any(|l| l.trim() == "#define ZTS 1") {
        println!(
            "cargo::warning=PHP at {} is not thread-safe (no ZTS in {}): each serving process runs one PHP worker (PROCESSES gives the concurrency) and worker mode is off; `make php` builds a ZTS PHP",
            php_config.display(),
            php_config_h.display()
        );
    }
}

fn find_php_config() -> Option<PathBuf> {
    if let Some(path) = env::var_os("PHP_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let cache = env::var_os("TOKIO_PHP_CACHE")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cache/tokio_php")));
    if let Some(cache) = cache {
        // A new build in the cache (its directory changes) is picked up on the next build.
        println!("cargo::rerun-if-changed={}", cache.display());
        let mut builds: Vec<PathBuf> = std::fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(".complete").exists() && p.join("bin/php-config").exists())
            .collect();
        builds.sort();
        if let Some(build) = builds.pop() {
            return Some(build.join("bin/php-config"));
        }
    }
    let on_path = Command::new("php-config").arg("--prefix").output().ok()?;
    on_path
        .status
        .success()
        .then(|| PathBuf::from("php-config"))
}

fn php_config_output(php_config: &Path, arg: &str) -> String {
    match Command::new(php_config).arg(arg).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => String::new(),
    }
}

/// The directory and link name of the embed library: `libphp.so` from a source build,
/// `libphp8.2.so` from Debian's libphp-embed.
fn find_libphp(prefix: &str) -> Option<(PathBuf, String)> {
    let candidates = [Path::new(prefix).join("lib"), PathBuf::from("/usr/lib")];
    for dir in candidates {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("libphp") && n.ends_with(".so"))
            .collect();
        names.sort();
        if let Some(name) = names.first() {
            let link = name.trim_start_matches("lib").trim_end_matches(".so");
            return Some((dir, link.to_owned()));
        }
    }
    None
}
