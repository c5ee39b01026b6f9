//! `cargo xtask cdk` (and a step of `cargo xtask test`): the AWS deployment in
//! infra-cdk/, checked without an AWS account. It installs the CDK app's npm packages
//! from its lockfile, type-checks it, synthesises it with `cdk synth` (cdk-nag's AWS
//! Solutions checks run as a validation plugin) into target/cdk.out with no AWS
//! credentials in sight, runs its tests, and lints the template with cfn-lint.
//!
//! Synth needs a `bootstrap.zip` per activity. `cargo xtask lambda` builds the real
//! ones into target/lambda (minutes); when any is missing, stand-ins (a zip whose
//! `bootstrap` only says it is a stand-in) are written to target/cdk-stand-in-zips.

use crate::tools;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// cfn-lint checks that are not failures: W3005 (a DependsOn that a Ref or GetAtt
/// already implies) is how CDK makes a Lambda function wait for its role's default
/// policy as well as the role; the extra edge is harmless.
const CFN_LINT_IGNORED: &[&str] = &["W3005"];

pub fn run(root: &Path) -> Result<(), String> {
    let started = Instant::now();
    let app = root.join("infra-cdk");
    npm_ci(&app)?;

    println!("\n==> infra-cdk: tsc --noEmit (typescript 5)");
    run_in(
        &app,
        bin(&app, "tsc", &["--noEmit", "-p", "."]),
        "tsc --noEmit",
    )?;

    let zips = lambda_zips(root)?;
    let out = root.join("target/cdk.out");
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| format!("cannot remove {}: {e}", out.display()))?;
    }
    println!("\n==> infra-cdk: cdk synth (cdk-nag AwsSolutions) into target/cdk.out, without AWS credentials");
    let mut synth = bin(&app, "cdk", &["synth", "--quiet", "--no-notices", "-c"]);
    synth
        .arg(format!("lambdaZipDir={}", zips.display()))
        .arg("-o")
        .arg(&out);
    run_in(&app, synth, "cdk synth")?;
    let template = out.join("Oms.template.json");
    if !template.exists() {
        return Err(format!("cdk synth wrote no {}", template.display()));
    }

    println!("\n==> infra-cdk: node --test (assertions, request model, cdk-nag)");
    run_in(&app, npm(&["test", "--silent"]), "the infra-cdk tests")?;

    println!(
        "\n==> cfn-lint target/cdk.out/Oms.template.json (ignoring {})",
        CFN_LINT_IGNORED.join(", ")
    );
    tools::python_tools(root)?;
    let cfn_lint = root.join("target/venv/bin/cfn-lint");
    let status = Command::new(&cfn_lint)
        .arg("--ignore-checks")
        .args(CFN_LINT_IGNORED)
        .arg("--")
        .arg(&template)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cfn_lint.display()))?;
    // cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
    match status.code() {
        Some(0) | Some(8) => println!("cfn-lint: no errors, no warnings"),
        Some(code) if code & 2 != 0 => return Err("cfn-lint found errors in the template".into()),
        Some(code) if code & 4 != 0 => {
            return Err(format!(
                "cfn-lint found warnings in the template (fix them, or add the check to CFN_LINT_IGNORED in xtask/src/cdk.rs with its reason) ({status})"
            ))
        }
        _ => return Err(format!("cfn-lint failed ({status})")),
    }
    println!("infra-cdk checked in {:.0?}", started.elapsed());
    Ok(())
}

/// `npm ci` in infra-cdk when node_modules is missing or was installed from another
/// package-lock.json (a stamp in node_modules holds the lockfile it came from).
fn npm_ci(app: &Path) -> Result<(), String> {
    tools::install_once(
        &app.join("package-lock.json"),
        &app.join("node_modules/.oms-package-lock.json"),
        "infra-cdk/node_modules",
        || {
            println!("\n==> infra-cdk: npm ci");
            // No install scripts: the one package that has any (esbuild's postinstall)
            // only re-checks the platform binary that npm already installed.
            run_in(
                app,
                npm(&["ci", "--no-audit", "--no-fund", "--ignore-scripts"]),
                "npm ci in infra-cdk",
            )
        },
    )
}

/// The folder of `<function>/bootstrap.zip` to synthesise with: target/lambda when it
/// holds every activity's zip, otherwise stand-ins written to target/cdk-stand-in-zips.
fn lambda_zips(root: &Path) -> Result<PathBuf, String> {
    let functions = activity_binaries(root)?;
    let built = root.join("target/lambda");
    let missing: Vec<&String> = functions
        .iter()
        .filter(|f| !built.join(f).join("bootstrap.zip").is_file())
        .collect();
    if missing.is_empty() {
        println!(
            "Lambda zips: the real ones, target/lambda/<function>/bootstrap.zip ({} functions, from cargo xtask lambda)",
            functions.len()
        );
        return Ok(built);
    }
    let dir = root.join("target/cdk-stand-in-zips");
    for f in &functions {
        let folder = dir.join(f);
        std::fs::create_dir_all(&folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        let zip = stand_in_zip(f);
        std::fs::write(folder.join("bootstrap.zip"), zip)
            .map_err(|e| format!("cannot write {}: {e}", folder.display()))?;
    }
    println!(
        "Lambda zips: STAND-INS in target/cdk-stand-in-zips (target/lambda lacks {} of {}: {}); \
         the template is checked, but deploy only after `cargo xtask lambda`",
        missing.len(),
        functions.len(),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(dir)
}

/// The activities' Lambda binaries: activities/src/bin/*.rs, as the CDK app reads them.
fn activity_binaries(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("activities/src/bin");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "rs") {
            if let Some(stem) = path.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(format!("no activity binaries in {}", dir.display()));
    }
    Ok(names)
}

/// A zip holding one executable `bootstrap` that fails, saying it is a stand-in (so a
/// stand-in deployed by mistake says so in its logs).
fn stand_in_zip(function: &str) -> Vec<u8> {
    let script = format!(
        "#!/bin/sh\necho 'oms {function}: this is a stand-in bootstrap from target/cdk-stand-in-zips; \
         build the real one with cargo xtask lambda' >&2\nexit 1\n"
    );
    zip_one_file("bootstrap", script.as_bytes(), 0o100755)
}

/// A zip archive of one stored (uncompressed) file with Unix mode `mode`. Its bytes
/// depend only on the arguments, so the CDK asset hash is stable.
fn zip_one_file(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let crc = crc32(data);
    let size = u32::try_from(data.len()).expect("a stand-in is small");
    let name_len = u16::try_from(name.len()).expect("a short name");
    // 1980-01-01 00:00, the earliest date a zip can hold.
    let (dos_time, dos_date): (u16, u16) = (0, (1 << 5) | 1);
    let mut out = Vec::new();
    let header = |out: &mut Vec<u8>, central: bool| {
        if central {
            out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            out.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        } else {
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        }
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&dos_time.to_le_bytes());
        out.extend_from_slice(&dos_date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes()); // compressed
        out.extend_from_slice(&size.to_le_bytes()); // uncompressed
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        if central {
            out.extend_from_slice(&0u16.to_le_bytes()); // comment length
            out.extend_from_slice(&0u16.to_le_bytes()); // disk number
            out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            out.extend_from_slice(&(mode << 16).to_le_bytes()); // external: Unix mode
            out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        }
        out.extend_from_slice(name.as_bytes());
    };
    header(&mut out, false);
    out.extend_from_slice(data);
    let central_start = out.len();
    header(&mut out, true);
    let central_size = out.len() - central_start;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // this disk
    out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
    out.extend_from_slice(&1u16.to_le_bytes()); // entries on this disk
    out.extend_from_slice(&1u16.to_le_bytes()); // entries
    out.extend_from_slice(&(central_size as u32).to_le_bytes());
    out.extend_from_slice(&(central_start as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// CRC-32 (IEEE), as zip uses it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A command the app's own node_modules provide (node_modules/.bin/NAME).
fn bin(app: &Path, name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(app.join("node_modules/.bin").join(name));
    c.args(args);
    c
}

fn npm(args: &[&str]) -> Command {
    let mut c = Command::new("npm");
    c.args(args);
    c
}

/// Runs `cmd` in `dir` with no AWS credentials, profile or region in its environment
/// and nothing that would reach out: no instance metadata lookup, no CDK CLI
/// telemetry, notices or version check.
fn run_in(dir: &Path, mut cmd: Command, what: &str) -> Result<(), String> {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("AWS_") || key.starts_with("CDK_DEFAULT_") {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("CDK_DISABLE_VERSION_CHECK", "true")
        .current_dir(dir);
    tools::run_status(&mut cmd, &format!("{what} (Node.js and npm are needed)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_stand_in_zip_holds_one_executable_bootstrap() {
        let zip = stand_in_zip("place-order");
        let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
        // The end-of-central-directory record points at one central entry.
        let eocd = zip.len() - 22;
        assert_eq!(u32_at(eocd), 0x0605_4b50);
        assert_eq!(u16_at(eocd + 10), 1);
        let central = u32_at(eocd + 16) as usize;
        assert_eq!(u32_at(central), 0x0201_4b50);
        assert_eq!(u32_at(central + 38) >> 16, 0o100755);
        assert_eq!(&zip[central + 46..central + 46 + 9], b"bootstrap");
        // The local entry holds the script, stored, with its CRC.
        assert_eq!(u32_at(0), 0x0403_4b50);
        let size = u32_at(18) as usize;
        let data = &zip[30 + 9..30 + 9 + size];
        assert!(data.starts_with(b"#!/bin/sh\n"));
        assert!(String::from_utf8_lossy(data).contains("place-order"));
        assert_eq!(u32_at(14), crc32(data));
        // Same input, same bytes: the asset hash does not change between runs.
        assert_eq!(zip, stand_in_zip("place-order"));
    }
}
