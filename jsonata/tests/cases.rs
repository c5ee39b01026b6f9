//! The crate's own cases (tests/cases/*.jsonl, suite format with expectations beside
//! each expression), and the official suite when it is present beside the repo.

use jsonata::cases::{judge, run_line};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Runs every line of `file`, returning (id, why it failed) for each failure.
fn failures(file: &Path) -> (usize, Vec<(String, String)>) {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut failed = Vec::new();
    let mut count = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        count += 1;
        let (id, outcome) = run_line(line, count);
        let verdict = match serde_json::from_str::<Value>(line) {
            Ok(raw) => judge(&raw, &outcome),
            Err(_) => Err(format!("{outcome:?}")),
        };
        if let Err(why) = verdict {
            failed.push((id, why));
        }
    }
    (count, failed)
}

#[test]
fn own_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cases exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {}", dir.display());
    let mut all_failed = Vec::new();
    for f in &files {
        let (count, failed) = failures(f);
        assert!(count > 0, "{} holds no cases", f.display());
        all_failed.extend(failed);
    }
    assert!(all_failed.is_empty(), "failed cases: {all_failed:#?}");
}

/// The official suite (../shared/jsonata-suite/cases.jsonl, or $JSONATA_SUITE): it is not
/// in the repo (nothing from ../shared/ may be copied in), so a fresh clone has only the
/// cases above; where it is present, every case not in suite-known-failures.txt passes.
#[test]
fn official_suite_when_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = std::env::var_os("JSONATA_SUITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../../shared/jsonata-suite/cases.jsonl"));
    if !suite.exists() {
        eprintln!("official JSONata suite not at {}: not run", suite.display());
        return;
    }
    let known_text = std::fs::read_to_string(root.join("tests/suite-known-failures.txt"))
        .expect("tests/suite-known-failures.txt");
    let known: Vec<&str> = known_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    let (count, failed) = failures(&suite);
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|(id, _)| !known.iter().any(|k| id.ends_with(k)))
        .collect();
    eprintln!("official suite: {} of {count} passed", count - failed.len());
    assert!(
        unexpected.is_empty(),
        "suite cases failing: {unexpected:#?}"
    );
}
