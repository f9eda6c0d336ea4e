//! PHP conformance: php-src's own `.phpt` tests, from the PHP source this project builds
//! (`scripts/setup-php.sh` keeps them beside the build), run as web requests against the
//! real tokio_php server and judged as `run-tests.php` judges them.
//!
//! Three selections:
//! - `request-handling`: every test under `tests/basic`, `main/` and `ext/standard/tests`
//!   that run-tests.php runs through php-cgi (`--GET--`, `--POST--`, `--POST_RAW--`,
//!   `--COOKIE--`, `--PUT--`, `--GZIP_POST--`, `--DEFLATE_POST--`, `--EXPECTHEADERS--`,
//!   `--CGI--`);
//! - `engine-sample`: the tests directly in `Zend/tests` and in `ext/standard/tests/{strings,
//!   array,math,general_functions}`, `ext/{session,json,pcre,date,mbstring}/tests`;
//! - `filesystem`: `ext/standard/tests/{file,dir}`: stat(), paths, the working directory,
//!   which thread-safe PHP resolves in user space (its virtual working directory) and
//!   `scripts/php-patches/zts-stat-absolute-path.patch` and `zts-access-absolute-path.patch`
//!   change.
//!
//! Each run is compared with `tests/phpt/expected/tokio_php/SELECTION.txt`. It fails when a
//! test killed the server, when a test that passed there no longer passes, and when a test
//! that nginx + php-fpm passes (`tests/phpt/expected/php-fpm/SELECTION.txt`, recorded by
//! `scripts/phpt-php-fpm.sh`) does not pass here and `tests/phpt/differences.txt` gives no
//! reason for it.
//!
//! - `PHPT_UPDATE=1` rewrites the tokio_php expectations from this run.
//! - `PHPT_TARGET=php-fpm` runs against nginx + php-fpm instead and records its results.
//! - `PHPT_ONLY=text` runs only the tests whose path contains `text` (no comparison).
//! - `PHP_SRC_TESTS=dir` takes the tests from `dir` instead of the PHP build.
//!
//! Outputs of failing tests: `target/tmp/phpt/TARGET/SELECTION/` (`.exp`, `.out`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod http;
mod judge;
mod locales;
mod phpt;
mod request;
mod runner;
mod target;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use runner::{Outcome, Run};
use target::{PhpFpm, Target, TokioPhp};

/// One selection at a time: each starts servers of its own on a machine of two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Requests in flight on the main server, and its PHP workers.
const PARALLEL: usize = 4;

#[test]
fn request_handling() {
    conformance("request-handling", |tree| {
        let mut tests = Vec::new();
        for dir in ["tests/basic", "main", "ext/standard/tests"] {
            for rel in phpt_files(tree, dir, true) {
                let is_web = phpt::TestFile::read(&tree.join(&rel)).is_ok_and(|t| t.is_cgi());
                if is_web {
                    tests.push(rel);
                }
            }
        }
        tests
    });
}

#[test]
fn engine_sample() {
    conformance("engine-sample", |tree| {
        [
            "Zend/tests",
            "ext/standard/tests/strings",
            "ext/standard/tests/array",
            "ext/standard/tests/math",
            "ext/standard/tests/general_functions",
            "ext/session/tests",
            "ext/json/tests",
            "ext/pcre/tests",
            "ext/date/tests",
            "ext/mbstring/tests",
        ]
        .iter()
        .flat_map(|dir| phpt_files(tree, dir, false))
        .collect()
    });
}

#[test]
fn filesystem() {
    conformance("filesystem", |tree| {
        ["ext/standard/tests/file", "ext/standard/tests/dir"]
            .iter()
            .flat_map(|dir| phpt_files(tree, dir, false))
            // Copies 4 GiB within max_execution_time (30 s): a measure of the disk, which ran
            // out of time here under the load of the full test run.
            .filter(|test| !test.ends_with("/bug81145.phpt"))
            .collect()
    });
}

fn conformance(selection: &str, select: impl Fn(&Path) -> Vec<String>) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let source = php_src_tests();
    assert!(
        source.join("Zend/tests").is_dir(),
        "php-src's tests are not at {}: build PHP with scripts/setup-php.sh (make php), which \
         keeps them, or set PHP_SRC_TESTS to a php-src checkout of the same version",
        source.display()
    );
    let locpath = locales::prepare();
    let (fpm, tokio_php);
    let target: &dyn Target = match std::env::var("PHPT_TARGET").as_deref() {
        Ok("php-fpm") => {
            fpm = PhpFpm::from_env(locpath);
            &fpm
        }
        Ok("tokio_php") | Err(_) => {
            tokio_php = TokioPhp { locpath };
            &tokio_php
        }
        Ok(other) => panic!("PHPT_TARGET={other}: use tokio_php or php-fpm"),
    };

    let work = tempfile::Builder::new().prefix("phpt-").tempdir().unwrap();
    let root = work.path().join("root");
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    copy_tree(&source, &root);
    let mut tests = select(&root);
    let only = std::env::var("PHPT_ONLY").ok();
    if let Some(only) = &only {
        tests.retain(|t| t.contains(only.as_str()));
    }
    let report_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("phpt")
        .join(target.name())
        .join(selection);
    let _ = std::fs::remove_dir_all(&report_dir);
    std::fs::create_dir_all(&report_dir).unwrap();
    let run = Run {
        target,
        root,
        tmp,
        report_dir: report_dir.clone(),
        parallel: PARALLEL,
    };
    let mut results = run
        .run(&tests)
        .unwrap_or_else(|e| panic!("{selection}: {e}"));
    write_results(&report_dir.join("results.txt"), &results, true);
    print_summary(selection, target.name(), &results);
    if only.is_some() {
        return;
    }

    let expected_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/phpt/expected");
    let ours_file = expected_dir
        .join(target.name())
        .join(format!("{selection}.txt"));
    if target.name() != "tokio_php" || std::env::var_os("PHPT_UPDATE").is_some() {
        write_results(&ours_file, &results, false);
        eprintln!("phpt: wrote {}", ours_file.display());
        if target.name() != "tokio_php" {
            return;
        }
    }
    let before = read_results(&ours_file);
    let fpm = read_results(
        &expected_dir
            .join("php-fpm")
            .join(format!("{selection}.txt")),
    );
    let known = known_differences();
    // A test that should pass (it did before, or php-fpm passes it) and did not runs once
    // more, on a server of its own, before it counts: a few tests depend on state PHP keeps
    // between requests (the garbage collector's threshold) or race the clock.
    let should_pass = |t: &String| {
        before.get(t).map(String::as_str) == Some("PASS")
            || (fpm.get(t).map(String::as_str) == Some("PASS") && !known.contains_key(t))
    };
    let again: Vec<String> = results
        .iter()
        .filter(|(t, o)| !matches!(o, Outcome::Pass | Outcome::Died(_)) && should_pass(t))
        .map(|(t, _)| t.clone())
        .collect();
    if !again.is_empty() {
        eprintln!(
            "phpt: {} tests that passed before run once more",
            again.len()
        );
        let retried = run
            .run(&again)
            .unwrap_or_else(|e| panic!("{selection}: {e}"));
        for (test, outcome) in retried {
            if outcome == Outcome::Pass {
                eprintln!("phpt:   passes on its second run: {test}");
            }
            if let Some(slot) = results.iter_mut().find(|(t, _)| *t == test) {
                slot.1 = outcome;
            }
        }
    }
    let mut problems = Vec::new();
    for (test, outcome) in &results {
        let was = before.get(test).map(String::as_str);
        let fpm_passes = fpm.get(test).map(String::as_str) == Some("PASS");
        match outcome {
            Outcome::Died(how) => problems.push(format!("DIED  {test}: {how}")),
            Outcome::Pass => {}
            other if was == Some("PASS") => problems.push(format!(
                "REGRESSED  {test}: passed before, now {} ({})",
                other.label(),
                other.detail()
            )),
            other if fpm_passes && !known.contains_key(test) => problems.push(format!(
                "BEHIND php-fpm  {test}: php-fpm passes it, here {} ({}); fix it or give the \
                 reason in tests/phpt/differences.txt",
                other.label(),
                other.detail()
            )),
            _ => {}
        }
    }
    let newly: Vec<&String> = results
        .iter()
        .filter(|(t, o)| *o == Outcome::Pass && before.get(t).map(String::as_str) != Some("PASS"))
        .map(|(t, _)| t)
        .collect();
    if !newly.is_empty() {
        eprintln!(
            "phpt: {} tests pass that did not before; record them with PHPT_UPDATE=1:\n  {}",
            newly.len(),
            newly
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    assert!(
        problems.is_empty(),
        "{selection}: {} problems (outputs in {}):\n{}",
        problems.len(),
        report_dir.display(),
        problems.join("\n")
    );
}

/// Where `scripts/setup-php.sh` kept php-src's tests for the PHP this was built with.
fn php_src_tests() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHP_SRC_TESTS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("TOKIO_PHP_PREFIX")).join("share/php-src-tests")
}

/// `.phpt` files under `dir` (recursively or not), as paths relative to `tree`, sorted.
fn phpt_files(tree: &Path, dir: &str, recursive: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![tree.join(dir)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if recursive {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "phpt")
                && let Ok(rel) = path.strip_prefix(tree)
            {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        } else if kind.is_symlink()
            && let Ok(link) = std::fs::read_link(entry.path())
        {
            let _ = std::os::unix::fs::symlink(link, &target);
        }
    }
}

/// `LABEL path` per line (with the reason when `details`), sorted by path.
fn write_results(file: &Path, results: &[(String, Outcome)], details: bool) {
    let mut sorted: Vec<&(String, Outcome)> = results.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = String::from(
        "# php-src .phpt results: LABEL path. Written by tests/phpt (see its module docs).\n",
    );
    for (test, outcome) in sorted {
        text.push_str(outcome.label());
        text.push(' ');
        text.push_str(test);
        if details && !outcome.detail().is_empty() {
            text.push_str("  # ");
            text.push_str(&outcome.detail().replace('\n', " | "));
        }
        text.push('\n');
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(file, text).unwrap();
}

/// path → label, from a results file (empty when it does not exist).
fn read_results(file: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(label, rest)| {
            let path = rest.split("  #").next().unwrap_or(rest).trim();
            (path.to_owned(), label.to_owned())
        })
        .collect()
}

/// `tests/phpt/differences.txt`: path → why it differs from php-fpm.
fn known_differences() -> BTreeMap<String, String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/phpt/differences.txt");
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(path, why)| (path.to_owned(), why.trim().to_owned()))
        .collect()
}

fn print_summary(selection: &str, target: &str, results: &[(String, Outcome)]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, outcome) in results {
        *counts.entry(outcome.label()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(l, n)| format!("{l} {n}")).collect();
    eprintln!(
        "phpt: {selection} on {target}: {} tests: {}",
        results.len(),
        counts.join(", ")
    );
    let failing: BTreeSet<&str> = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Fail(_) | Outcome::Died(_)))
        .map(|(t, _)| t.as_str())
        .collect();
    if failing.len() <= 40 {
        for test in failing {
            eprintln!("phpt:   not passing: {test}");
        }
    }
}
