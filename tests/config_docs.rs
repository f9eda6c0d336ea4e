//! Every variable the config module reads is documented: in docs/configuration.md and in
//! `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

use std::collections::BTreeMap;
use std::path::Path;

/// `ENV_X` constant name → variable name, and the constants `Config` reads.
fn variables_read() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let mut names = BTreeMap::new();
    for line in source.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub const ENV_") {
            let (constant, value) = rest.split_once(": &str = ").unwrap();
            names.insert(
                format!("ENV_{constant}"),
                value.trim_end_matches(';').trim_matches('"').to_owned(),
            );
        }
    }
    let mut read = Vec::new();
    for (constant, name) in &names {
        if source.contains(&format!("source.get({constant})")) {
            read.push(name.clone());
        }
    }
    assert!(read.len() >= 8, "found only {read:?}");
    read
}

#[test]
fn every_variable_is_in_docs_configuration_md() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    for name in variables_read() {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not in docs/configuration.md"
        );
    }
}

#[test]
fn every_variable_is_in_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for name in variables_read() {
        assert!(help.contains(&name), "{name} is not in --help");
    }
}
