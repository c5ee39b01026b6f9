//! Project tasks: `cargo xtask test | conformance | bench`.

mod conformance;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("conformance") => conformance_cmd(&args[1..]),
        _ => Err("usage: cargo xtask <test|conformance|bench>".to_string()),
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
    let path = conformance::corpus_path(&root);
    let results = conformance::run_corpus(&path)?;
    let summary = conformance::summarize(&results);
    conformance::print_summary(&summary);
    if args.iter().any(|a| a == "--failures") {
        for r in &results {
            if let conformance::Verdict::Fail(d) = &r.verdict {
                if !r.jsonata {
                    println!("FAIL [{}] {}\n    {}", r.category, r.name, d);
                }
            }
        }
    }
    let reasons: BTreeMap<String, String> = BTreeMap::new();
    let md = conformance::report(&results, &summary, &reasons);
    std::fs::write(root.join("docs/conformance.md"), md).map_err(|e| e.to_string())?;
    Ok(())
}
