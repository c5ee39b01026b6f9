//! `cargo xtask test`: the whole suite, as CI runs it.

use crate::cdk;
use crate::conformance;
use crate::tools;
use std::path::Path;
use std::process::Command;

/// The number of corpus cases that passed when the ratchet was last raised. The suite
/// fails if fewer pass; raise it (never lower it) when more do.
const RATCHET_FILE: &str = "xtask/conformance-ratchet";

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    println!("\n==> cargo {}", args.join(" "));
    tools::run_status(
        Command::new(env!("CARGO")).args(args).current_dir(root),
        &format!("cargo {}", args.join(" ")),
    )
}

/// What a clean clone's run leaves under target/ (debug build, venv, node tools), with
/// room for the servers' data: measured at 3.8 GB on 2026-11-26.
const DISK_NEEDED_MB: u64 = 6 * 1024;

pub fn run(root: &Path) -> Result<(), String> {
    disk_space(root);
    // What the suite needs beyond cargo, installed first so that no test finds it
    // missing: DynamoDB Local and asl-validator (npm), and the Python tools.
    println!("\n==> test tools");
    tools::node_tools(root)?;
    tools::python_tools(root)?;
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
    println!("\n==> asl-validator (npm) on statemachines/");
    match tools::asl_validator(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    println!("\n==> infra-cdk: the AWS deployment (synth, tests, cdk-nag, cfn-lint)");
    match cdk::run(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(format!("infra-cdk: {e}")),
    }
    match ratchet(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    match api_tests(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    match console_tests(root) {
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

/// Says how much disk is free before the build starts: a full disk surfaces much later,
/// as a store's "database or disk is full" in some unrelated test.
fn disk_space(root: &Path) {
    let free_mb = Command::new("df")
        .args(["-Pm", "."])
        .current_dir(root)
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse::<u64>()
                .ok()
        });
    match free_mb {
        Some(mb) if mb < DISK_NEEDED_MB => println!(
            "WARNING: {mb} MB free on this disk; the suite needs about {DISK_NEEDED_MB} MB \
             (target/ grows to about 3.8 GB): expect \"disk is full\" failures"
        ),
        Some(mb) => println!("disk: {mb} MB free (the suite needs about {DISK_NEEDED_MB} MB)"),
        None => println!("disk: could not read free space with df"),
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

/// The API tests (`tests/api`): boto3 against a real `oms up`, and the activities'
/// Lambda functions under `cargo lambda watch`.
fn api_tests(root: &Path) -> Result<(), String> {
    println!("\n==> API tests (boto3)");
    let oms = build_oms(root)?;
    let python = tools::python_tools(root)?;
    tools::run_status(
        Command::new(&python)
            .args(["-m", "pytest", "tests/api", "-q"])
            .env("OMS_BIN", &oms)
            .env("OMS_CARGO_LAMBDA", tools::cargo_lambda(root))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(root),
        "API tests (boto3, pytest)",
    )
}

/// The web console in headless Chromium (`tests/console`, node's test runner with
/// playwright-core); screenshots are kept under target/console/.
fn console_tests(root: &Path) -> Result<(), String> {
    println!("\n==> console tests (headless Chromium)");
    tools::chromium()?;
    let oms = build_oms(root)?;
    tools::run_status(
        Command::new("node")
            .args(["--test", "tests/console/"])
            .env("OMS_BIN", &oms)
            .env("OMS_TOOLS", root.join("target/tools"))
            .env("OMS_SCREENSHOTS", root.join("target/console"))
            .current_dir(root),
        "console tests (node)",
    )?;
    println!("screenshots in target/console/");
    Ok(())
}

/// The oms binary that `cargo test --workspace` built for oms's integration tests, and
/// its path as cargo reports it. `cargo build -p oms` would resolve features for oms
/// alone and so rebuild the whole AWS SDK a second time: minutes, and gigabytes of disk.
fn build_oms(root: &Path) -> Result<std::path::PathBuf, String> {
    println!("cargo test --workspace --no-run (the oms binary the tests built)");
    let out = Command::new(env!("CARGO"))
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo test --workspace --no-run failed ({})",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == "oms"
                && m["target"]["kind"] == serde_json::json!(["bin"])
                && m["profile"]["test"] == false
        })
        .filter_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
        .next_back()
        .ok_or_else(|| "cargo test --workspace --no-run reported no oms executable".to_string())
}
