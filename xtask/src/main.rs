//! Project tasks: `cargo xtask test | conformance | bench | chaos | lambda | cdk | fuzz`.

mod bench;
mod bench_imports;
mod bench_instructions;
mod bench_jsonata;
mod bench_orders;
mod bench_states;
mod bench_storage;
mod cdk;
mod chaos;
mod conformance;
mod fuzz;
mod lambda;
mod ratchet;
mod soak;
mod test;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// A flag's value as a whole number above zero, or the error naming the flag.
fn positive(flag: &str, v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(format!("{flag} needs a positive whole number, got {v:?}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&root()),
        Some("conformance") => conformance_cmd(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("chaos") => chaos::run(&root(), &args[1..]),
        Some("lambda") => lambda::run(&root()),
        Some("cdk") => cdk::run(&root()),
        Some("fuzz") => fuzz::run(&root(), &args[1..]),
        _ => Err("usage: cargo xtask <test|conformance|bench|chaos|lambda|cdk|fuzz>".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn conformance_cmd(args: &[String]) -> Result<(), String> {
    let root = root();
    if args.iter().any(|a| a == "--check") {
        // The suite's step alone: does any listed case fail?
        return match ratchet::check(&root)? {
            ratchet::Checked::Ran => Ok(()),
            ratchet::Checked::NotRun(why) => Err(format!("not run: {why}")),
        };
    }
    let path = conformance::corpus_path(&root);
    let results = conformance::run_corpus(&path)?;
    let summary = conformance::summarize(&results);
    conformance::print_summary(&summary);
    if args.iter().any(|a| a == "--failures") {
        for r in &results {
            if let conformance::Verdict::Fail(d) = &r.verdict {
                let lang = if r.jsonata { " JSONata" } else { "" };
                println!("FAIL [{}{lang}] {}\n    {}", r.category, r.name, d);
            }
        }
    }
    if args.iter().any(|a| a == "--raise") {
        let added = ratchet::raise(&root, &results)?;
        println!("{added} cases added to {}", ratchet::PASSING_FILE);
    }
    let reasons = load_reasons(&root)?;
    let md = conformance::report(&results, &summary, &reasons);
    std::fs::write(root.join("docs/conformance.md"), md).map_err(|e| e.to_string())?;
    Ok(())
}

/// Known failures' reasons, keyed by a substring of the case name.
fn load_reasons(root: &Path) -> Result<Vec<(String, String)>, String> {
    let path = root.join("xtask/conformance-reasons.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.starts_with("//"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}
