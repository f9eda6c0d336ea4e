//! Every setting of the table, `tokio_php::config::SETTINGS`, is documented: in
//! docs/configuration.md with the table's default and example, and in `--help` with its
//! default.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

use std::collections::BTreeMap;
use std::path::Path;

use tokio_php::config::SETTINGS;

/// The rows of docs/configuration.md's tables: variable → (default, example) cells.
fn documented() -> BTreeMap<String, (String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let docs = std::fs::read_to_string(path).unwrap();
    let mut rows = BTreeMap::new();
    for line in docs.lines() {
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = row.trim_end_matches('|').split(" | ").collect();
        assert_eq!(
            cells.len(),
            4,
            "not a variable | default | meaning | example row: {line}"
        );
        let name = cells[0].trim_end_matches('`');
        let cell = |i: usize| cells[i].trim().to_owned();
        let earlier = rows.insert(name.to_owned(), (cell(1), cell(3)));
        assert!(earlier.is_none(), "{name} is documented twice");
    }
    rows
}

#[test]
fn every_setting_is_in_docs_configuration_md_with_its_default_and_example() {
    let rows = documented();
    for s in SETTINGS {
        let (default, example) = rows
            .get(s.env)
            .unwrap_or_else(|| panic!("{} is not in docs/configuration.md", s.env));
        if s.default.is_empty() {
            assert!(default.starts_with("unset"), "{}: default {default}", s.env);
        } else {
            let written = format!("`{}`", s.default);
            assert!(
                default.starts_with(&written),
                "{}: docs say {default}, the table {written}",
                s.env
            );
        }
        assert_eq!(*example, format!("`{}`", s.example), "{}'s example", s.env);
    }
    for name in rows.keys() {
        assert!(
            SETTINGS.iter().any(|s| s.env == name),
            "docs/configuration.md documents {name}, which is no setting"
        );
    }
}

#[test]
fn every_setting_is_in_help_with_its_default() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokio_php"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = help.lines().collect();
    for s in SETTINGS {
        let at = lines
            .iter()
            .position(|line| line.trim_start().starts_with(&format!("{} ", s.env)))
            .unwrap_or_else(|| panic!("{} is not in --help", s.env));
        assert!(lines[at].contains(s.help), "{}'s help", s.env);
        let default = if s.default.is_empty() {
            "unset"
        } else {
            s.default
        };
        assert_eq!(
            lines.get(at + 1).map(|line| line.trim()),
            Some(format!("default: {default}").as_str()),
            "{}'s default in --help",
            s.env
        );
    }
}
