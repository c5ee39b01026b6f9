//! `cargo xtask test`: the whole suite, as CI runs it.

use crate::conformance;
use std::path::Path;
use std::process::Command;

/// The number of corpus cases that passed when the ratchet was last raised. The suite
/// fails if fewer pass; raise it (never lower it) when more do.
const RATCHET_FILE: &str = "xtask/conformance-ratchet";

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    println!("\n==> cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

pub fn run(root: &Path) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut passed = 0;
    let steps: &[&[&str]] = &[
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ],
        &["test", "--workspace", "--quiet"],
    ];
    for step in steps {
        match cargo(root, step) {
            Ok(()) => passed += 1,
            Err(e) => failures.push(e),
        }
    }
    match ratchet(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    println!();
    for f in &failures {
        println!("FAILED: {f}");
    }
    println!("xtask test: {passed} passed, {} failed", failures.len());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} step(s) failed", failures.len()))
    }
}

fn ratchet(root: &Path) -> Result<(), String> {
    println!("\n==> ASL conformance ratchet");
    let corpus = conformance::corpus_path(root);
    if !corpus.exists() {
        println!(
            "conformance corpus not found at {}: the ratchet was NOT checked (CI always has the corpus; \
             the engine's own cases in asl/tests/engine_cases ran above)",
            corpus.display()
        );
        return Ok(());
    }
    let floor: usize = std::fs::read_to_string(root.join(RATCHET_FILE))
        .map_err(|e| format!("cannot read {RATCHET_FILE}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{RATCHET_FILE} must hold one number: {e}"))?;
    let results = conformance::run_corpus(&corpus)?;
    let summary = conformance::summarize(&results);
    conformance::print_summary(&summary);
    let now = summary.all.passed;
    if now < floor {
        return Err(format!(
            "conformance fell to {now} passing cases, below the ratchet of {floor}"
        ));
    }
    if now > floor {
        println!("{now} cases pass, above the ratchet of {floor}: raise {RATCHET_FILE} to {now}");
    } else {
        println!("{now} cases pass (ratchet {floor})");
    }
    Ok(())
}
