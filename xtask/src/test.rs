//! `cargo xtask test`: the whole suite, as CI runs it.

use crate::cdk;
use crate::fuzz;
use crate::ratchet;
use crate::tools;
use std::path::Path;
use std::process::Command;

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    println!("\n==> cargo {}", args.join(" "));
    tools::run_status(
        Command::new(env!("CARGO")).args(args).current_dir(root),
        &format!("cargo {}", args.join(" ")),
    )
}

/// `cargo test`, its output passed through as it comes and, when it fails, what
/// failed said again in the step's error: CI keeps only the end of a long log, and a
/// failure that happens once in many runs must name itself there.
fn cargo_test(root: &Path, args: &[&str]) -> Result<(), String> {
    use std::io::{BufRead, Write};
    println!("\n==> cargo {}", args.join(" "));
    let what = format!("cargo {}", args.join(" "));
    let mut child = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut failed = FailureLines::default();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("{what}: reading its output: {e}"))?;
        println!("{line}");
        let _ = std::io::stdout().flush();
        failed.see(&line);
    }
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    Err(format!("{what} failed ({status}){}", failed.told()))
}

/// The lines of libtest's output that say what failed: each failed test's header and
/// the first lines of its panic, at most [`FailureLines::MAX`] in all.
#[derive(Default)]
struct FailureLines {
    lines: Vec<String>,
    /// Lines still to keep after a panic's first line (its message).
    after_panic: usize,
}

impl FailureLines {
    const MAX: usize = 60;
    const PANIC_LINES: usize = 4;

    fn see(&mut self, line: &str) {
        let keep = if line.starts_with("---- ") || line.contains("panicked at") {
            self.after_panic = if line.contains("panicked at") {
                Self::PANIC_LINES
            } else {
                0
            };
            true
        } else if self.after_panic > 0 {
            self.after_panic -= 1;
            true
        } else {
            line.starts_with("test result: FAILED")
        };
        if keep && self.lines.len() < Self::MAX {
            self.lines.push(line.to_string());
        }
    }

    fn told(&self) -> String {
        self.lines.iter().map(|l| format!("\n    {l}")).collect()
    }
}

/// What a clean clone's run leaves under target/ (debug build, venv, node tools), with
/// room for the servers' data: measured at 3.8 GB on 2026-11-26.
const DISK_NEEDED_MB: u64 = 6 * 1024;

/// Each step's wall time, printed at the end: CI has a budget (45 minutes on two
/// cores, DEVELOPERS.md) and this says where it goes.
struct Clock {
    began: std::time::Instant,
    steps: Vec<(String, std::time::Duration)>,
}

impl Clock {
    fn lap(&mut self, step: &str) {
        let now = std::time::Instant::now();
        let since = self
            .steps
            .iter()
            .map(|(_, d)| *d)
            .sum::<std::time::Duration>();
        self.steps
            .push((step.to_string(), now - self.began - since));
    }

    fn print(&self) {
        println!("\nstep times:");
        for (step, d) in &self.steps {
            println!("  {:>6.0} s  {step}", d.as_secs_f64());
        }
        println!("  {:>6.0} s  in all", self.began.elapsed().as_secs_f64());
    }
}

pub fn run(root: &Path) -> Result<(), String> {
    let mut clock = Clock {
        began: std::time::Instant::now(),
        steps: Vec::new(),
    };
    let result = run_steps(root, &mut clock);
    clock.print();
    result
}

fn run_steps(root: &Path, clock: &mut Clock) -> Result<(), String> {
    disk_space(root);
    // What the suite needs beyond cargo, installed first so that no test finds it
    // missing: DynamoDB Local and asl-validator (npm), and the Python tools.
    println!("\n==> test tools");
    tools::node_tools(root)?;
    tools::python_tools(root)?;
    clock.lap("test tools");
    let mut failures = Vec::new();
    let mut not_run = Vec::new();
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
        let ran = if step[0] == "test" {
            cargo_test(root, step)
        } else {
            cargo(root, step)
        };
        match ran {
            Ok(()) => passed += 1,
            Err(e) => failures.push(e),
        }
        clock.lap(&format!("cargo {}", step[0]));
    }
    if let Some(why) = jsonata_suite_absent(root) {
        not_run.push(why);
    }
    println!(
        "\n==> the engine's fuzz targets, {} each",
        fuzz::TEST_BUDGET
    );
    match fuzz::run_targets(root, &fuzz::ENGINE_TARGETS, fuzz::TEST_BUDGET) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    clock.lap("fuzz targets");
    println!("\n==> asl-validator (npm) on statemachines/");
    match tools::asl_validator(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    clock.lap("asl-validator");
    println!("\n==> infra-cdk: the AWS deployment (synth, tests, cdk-nag, cfn-lint)");
    match cdk::run(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(format!("infra-cdk: {e}")),
    }
    clock.lap("infra-cdk");
    println!("\n==> ASL conformance ratchet ({})", ratchet::PASSING_FILE);
    match ratchet::check(root) {
        Ok(ratchet::Checked::Ran) => passed += 1,
        Ok(ratchet::Checked::NotRun(why)) => {
            println!("NOT RUN: {why}");
            not_run.push(format!("the conformance ratchet: {why}"));
        }
        Err(e) => failures.push(e),
    }
    clock.lap("conformance ratchet");
    match api_tests(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    clock.lap("API tests");
    match console_tests(root) {
        Ok(()) => passed += 1,
        Err(e) => failures.push(e),
    }
    clock.lap("console tests");
    println!();
    for f in &failures {
        println!("FAILED: {f}");
    }
    for n in &not_run {
        println!("NOT RUN: {n}");
    }
    println!(
        "xtask test: {passed} passed, {} failed, {} not run",
        failures.len(),
        not_run.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} step(s) failed", failures.len()))
    }
}

/// The official JSONata suite runs inside `cargo test` (jsonata/tests/cases.rs, which
/// reads it from this same place or $JSONATA_SUITE) only where it is present; say so
/// when it is not, rather than let the test's note vanish under `--quiet`.
fn jsonata_suite_absent(root: &Path) -> Option<String> {
    if std::env::var_os("JSONATA_SUITE").is_some() {
        return None;
    }
    let suite = root.join("../shared/jsonata-suite/cases.jsonl");
    (!suite.exists()).then(|| {
        format!(
            "the official JSONata suite is not at {} (the jsonata crate's own cases ran)",
            suite.display()
        )
    })
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

/// The API tests (`tests/api`): boto3 against a real `oms up`, and the activities'
/// Lambda functions under `cargo lambda watch`.
fn api_tests(root: &Path) -> Result<(), String> {
    println!("\n==> API tests (boto3)");
    let oms = build_oms(root)?;
    let python = tools::python_tools(root)?;
    tools::run_status(
        Command::new(&python)
            .args(["-m", "pytest", "tests/api", "-q", "--durations=15"])
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

#[cfg(test)]
mod tests {
    use super::FailureLines;

    #[test]
    fn a_failed_tests_name_and_panic_are_told_again() {
        let out = "\
running 2 tests
.F
failures:

---- store::tests::races stdout ----

thread 'store::tests::races' panicked at src/store.rs:10:5:
read version 3 after 4
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    store::tests::races

test result: FAILED. 1 passed; 1 failed; 0 ignored";
        let mut seen = FailureLines::default();
        for line in out.lines() {
            seen.see(line);
        }
        let told = seen.told();
        assert!(
            told.contains("---- store::tests::races stdout ----"),
            "{told}"
        );
        assert!(told.contains("read version 3 after 4"), "{told}");
        assert!(told.contains("test result: FAILED"), "{told}");
        assert!(!told.contains("running 2 tests"), "{told}");
    }
}
