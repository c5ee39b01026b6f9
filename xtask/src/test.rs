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
    match api_tests(root) {
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

/// The Step Functions API tests (`tests/api`): boto3 against a real `oms up`, in a venv
/// at `target/venv` made on first use.
fn api_tests(root: &Path) -> Result<(), String> {
    println!("\n==> API tests (boto3)");
    let oms = build_oms(root)?;
    let python = venv(root)?;
    let requirements = root.join("tests/api/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("API tests: cannot read {}: {e}", requirements.display()))?;
    let stamp = root.join("target/venv/.oms-requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        println!("tests/api/requirements.txt already installed in target/venv");
    } else {
        println!("installing tests/api/requirements.txt into target/venv");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements)
            .current_dir(root)
            .status()
            .map_err(|e| format!("API tests: cannot run {}: {e}", python.display()))?;
        if !status.success() {
            return Err(format!(
                "API tests: pip install -r tests/api/requirements.txt into target/venv failed ({status})"
            ));
        }
        std::fs::write(&stamp, &wanted)
            .map_err(|e| format!("API tests: cannot write {}: {e}", stamp.display()))?;
    }
    let status = Command::new(&python)
        .args(["-m", "pytest", "tests/api", "-q"])
        .env("OMS_BIN", &oms)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .status()
        .map_err(|e| format!("API tests: cannot run pytest: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("API tests (boto3) failed ({status})"))
    }
}

/// Builds the oms binary and returns its path, as cargo reports it.
fn build_oms(root: &Path) -> Result<std::path::PathBuf, String> {
    println!("cargo build -p oms");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "oms",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "API tests: cargo build -p oms failed ({})",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "oms")
        .filter_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
        .next_back()
        .ok_or_else(|| "API tests: cargo build -p oms reported no oms executable".to_string())
}

/// `target/venv`, made with `python3 -m venv` if missing; returns its python. Where the
/// venv module is missing (Debian splits it out), installs python3-venv when root.
fn venv(root: &Path) -> Result<std::path::PathBuf, String> {
    let dir = root.join("target/venv");
    let python = dir.join("bin/python");
    if python.exists() {
        return Ok(python);
    }
    let has_venv = |py: &str| {
        Command::new(py)
            .args(["-c", "import venv, ensurepip"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_venv("python3") {
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root_user {
            return Err(
                "API tests: python3's venv module is missing; install Debian's python3-venv \
                        (apt-get install python3-venv) and run again"
                    .into(),
            );
        }
        println!("python3's venv module is missing: installing Debian's python3-venv with apt-get (as root)");
        let ok = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        let installed = ok(&["update", "-q"])
            && ok(&["install", "-y", "-q", "python3-venv"])
            && has_venv("python3");
        if !installed {
            return Err(
                "API tests: could not install python3-venv with apt-get; install it and run again"
                    .into(),
            );
        }
    }
    // A half-made venv (say, from an interrupted run) is made again.
    let _ = std::fs::remove_dir_all(&dir);
    println!("creating target/venv (python3 -m venv)");
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .map_err(|e| format!("API tests: cannot run python3 (is it installed?): {e}"))?;
    if !status.success() || !python.exists() {
        return Err(format!(
            "API tests: python3 -m venv target/venv failed ({status})"
        ));
    }
    Ok(python)
}
