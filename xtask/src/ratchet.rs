//! The conformance ratchet: the ids of the AWS-recorded cases that pass, one per line
//! in `xtask/conformance-passing`. The suite fails when any case on the list fails, so
//! a regression cannot hide behind an unrelated fix (as it could behind a count).
//! `cargo xtask conformance --raise` adds the cases that newly pass; a case leaves the
//! list only by a hand edit, which the diff shows.

use crate::conformance::{self, CaseResult, Verdict};
use std::collections::BTreeSet;
use std::path::Path;

pub const PASSING_FILE: &str = "xtask/conformance-passing";

/// What the ratchet step did.
pub enum Checked {
    Ran,
    /// The corpus is not on this machine: nothing was checked.
    NotRun(String),
}

/// Runs the corpus and fails if a listed case no longer passes.
pub fn check(root: &Path) -> Result<Checked, String> {
    let corpus = conformance::corpus_path(root);
    if !corpus.exists() {
        return Ok(Checked::NotRun(format!(
            "the conformance corpus is not at {} (CI always has it; the engine's own cases in \
             asl/tests/engine_cases ran in cargo test)",
            corpus.display()
        )));
    }
    let listed = read(root)?;
    let results = conformance::run_corpus(&corpus)?;
    conformance::print_summary(&conformance::summarize(&results));
    let passing = passing(&results);
    let fell: Vec<&String> = listed.difference(&passing).collect();
    let rose = passing.difference(&listed).count();
    if rose > 0 {
        println!("{rose} cases pass that {PASSING_FILE} does not list: `cargo xtask conformance --raise` adds them");
    }
    if fell.is_empty() {
        println!("all {} listed cases pass", listed.len());
        return Ok(Checked::Ran);
    }
    for name in fell.iter().take(20) {
        println!("no longer passes: {name}");
    }
    Err(format!(
        "{} of the {} cases in {PASSING_FILE} no longer pass",
        fell.len(),
        listed.len()
    ))
}

/// Adds the cases that pass to the list (never removes one); returns how many it added.
pub fn raise(root: &Path, results: &[CaseResult]) -> Result<usize, String> {
    let mut listed = read(root)?;
    let before = listed.len();
    listed.extend(passing(results));
    let mut text: String = listed.iter().map(|n| format!("{n}\n")).collect();
    if text.is_empty() {
        text.push('\n');
    }
    std::fs::write(root.join(PASSING_FILE), text)
        .map_err(|e| format!("cannot write {PASSING_FILE}: {e}"))?;
    Ok(listed.len() - before)
}

fn passing(results: &[CaseResult]) -> BTreeSet<String> {
    results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Pass))
        .map(|r| r.name.clone())
        .collect()
}

fn read(root: &Path) -> Result<BTreeSet<String>, String> {
    match std::fs::read_to_string(root.join(PASSING_FILE)) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(format!("cannot read {PASSING_FILE}: {e}")),
    }
}
