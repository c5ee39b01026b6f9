//! `cargo xtask lambda`: the activities' Lambda functions, built for x86_64 (Amazon
//! Linux 2023, provided.al2023) by cargo-lambda, one zip each under target/lambda/.

use crate::tools;
use std::path::Path;
use std::process::Command;

pub fn run(root: &Path) -> Result<(), String> {
    tools::python_tools(root)?;
    let cargo_lambda = tools::cargo_lambda(root);
    // cargo-lambda finds zig (from the python-zig wheel) through the venv's python.
    let venv_bin = cargo_lambda
        .parent()
        .expect("cargo-lambda is in a bin folder");
    let path = std::env::join_paths(std::iter::once(venv_bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .map_err(|e| e.to_string())?;
    println!("\n==> cargo lambda build --profile lambda-zip (x86_64, zips in target/lambda/)");
    let status = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "build",
            // Cargo.toml's lambda-zip profile: release without the cross-crate LTO that
            // `--release` adds, which costs minutes per function on two cores.
            "--profile",
            "lambda-zip",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "activities",
            "--output-format",
            "zip",
            "--lambda-dir",
            "target/lambda",
        ])
        .env("PATH", path)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo_lambda.display()))?;
    if !status.success() {
        return Err(format!("cargo lambda build failed ({status})"));
    }
    let dir = root.join("target/lambda");
    let mut zips = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let zip = entry
            .map_err(|e| e.to_string())?
            .path()
            .join("bootstrap.zip");
        if zip.exists() {
            zips.push(zip);
        }
    }
    zips.sort();
    for z in &zips {
        let size = std::fs::metadata(z).map(|m| m.len()).unwrap_or(0);
        println!(
            "{} ({:.1} MB)",
            z.strip_prefix(root).unwrap_or(z).display(),
            size as f64 / 1e6
        );
    }
    if zips.is_empty() {
        return Err("cargo lambda build wrote no bootstrap.zip under target/lambda".into());
    }
    Ok(())
}
