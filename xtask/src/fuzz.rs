//! `cargo xtask fuzz [--seconds N | --as-in-test] [target...]`: builds the fuzz targets (fuzz/, see
//! docs/ARCHITECTURE.md, "Fuzzing") with cargo-fuzz and runs each for a bounded time.
//! A crash fails the run, naming the input that caused it.
//!
//! cargo-fuzz's own `run` is not used to run them: it would rebuild per target and
//! treat the committed corpus as the place for new inputs. Here the binary runs with a
//! working corpus under target/ first (where libFuzzer writes what it finds) and the
//! committed seeds after it (read only).

use crate::tools;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The engine's targets: they need only `asl`, so they build quickly.
pub const ENGINE_TARGETS: [&str; 3] = ["definition", "jsonpath", "intrinsics"];
/// The service's targets (fuzz/'s `service` feature): they need saga-core and
/// activities, whose SQLite, OpenSSL and AWS SDK take a quarter hour of CPU to build
/// instrumented, so `cargo xtask test` leaves them to `cargo xtask fuzz`.
pub const SERVICE_TARGETS: [&str; 2] = ["aws_json", "orders_body"];

/// How long `cargo xtask fuzz` runs each target unless told otherwise.
const DEFAULT_SECONDS: u64 = 60;

/// How much `cargo xtask test` runs each engine target: a smoke run that replays the
/// seeds and explores a little (about 30 s in all on 2 cores). A count of inputs, a
/// fixed random seed and an empty working corpus keep its outcome from depending on the
/// machine's speed or on what earlier runs found; it is not bit-for-bit repeatable
/// (hash-map order in the code under test steers coverage feedback), so a finding in CI
/// may need `cargo xtask fuzz --as-in-test` run a few times, or the input the failure
/// prints. Open-ended search is `cargo xtask fuzz`.
pub const TEST_BUDGET: Budget = Budget::Runs {
    seed: 1,
    runs: 150_000,
};

/// How long a target runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// Explore for this long, from a random seed, growing the working corpus under
    /// target/fuzz/corpus.
    Seconds(u64),
    /// Run exactly this many inputs from this seed, from the committed seeds alone.
    Runs { seed: u64, runs: u64 },
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Seconds(s) => write!(f, "{s} s"),
            Budget::Runs { seed, runs } => write!(f, "{runs} inputs from seed {seed}"),
        }
    }
}

/// The most of a crashing input a failure prints, so a CI log alone can reproduce it.
const SHOWN_INPUT_BYTES: usize = 4096;

/// The cargo-fuzz release installed into target/tools; `--locked` pins its
/// dependencies. cargo-fuzz needs no nightly with `--sanitizer none`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// libFuzzer's limits per input: an input that runs longer or uses more memory than
/// this is a finding (a hang or an unbounded allocation), not a slow test.
const INPUT_TIMEOUT_SECONDS: u64 = 10;
const RSS_LIMIT_MB: u64 = 2048;

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let mut budget = Budget::Seconds(DEFAULT_SECONDS);
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&s| s > 0)
                    .ok_or("--seconds takes a whole number of seconds above 0")?;
                budget = Budget::Seconds(seconds);
            }
            // Exactly what `cargo xtask test` runs, to reproduce its outcome.
            "--as-in-test" => budget = TEST_BUDGET,
            t if ENGINE_TARGETS.contains(&t) || SERVICE_TARGETS.contains(&t) => targets.push(t),
            other => {
                return Err(format!(
                    "unknown fuzz target or option '{other}'; targets: {}, {}",
                    ENGINE_TARGETS.join(", "),
                    SERVICE_TARGETS.join(", ")
                ))
            }
        }
    }
    if targets.is_empty() {
        targets = [ENGINE_TARGETS.as_slice(), &SERVICE_TARGETS].concat();
    }
    run_targets(root, &targets, budget)
}

/// Builds the targets (with the `service` feature when one of `targets` needs it),
/// then runs each of `targets` within `budget`.
pub fn run_targets(root: &Path, targets: &[&str], budget: Budget) -> Result<(), String> {
    let cargo_fuzz = install_cargo_fuzz(root)?;
    let service = targets.iter().any(|t| SERVICE_TARGETS.contains(t));
    println!("building the fuzz targets (cargo fuzz build --sanitizer none)");
    let mut build = Command::new(&cargo_fuzz);
    build
        .args(["fuzz", "build", "--sanitizer", "none", "--fuzz-dir", "fuzz"])
        .arg("--target-dir")
        .arg(target_dir(root))
        .current_dir(root);
    if service {
        build.args(["--features", "service"]);
    }
    tools::run_status(&mut build, "cargo fuzz build")?;
    let mut crashes = Vec::new();
    for target in targets {
        if let Err(e) = run_one(root, target, budget) {
            crashes.push(e);
        }
    }
    if crashes.is_empty() {
        Ok(())
    } else {
        Err(crashes.join("\n"))
    }
}

fn target_dir(root: &Path) -> PathBuf {
    root.join("target/fuzz")
}

/// Runs one target's binary within `budget`; on a crash, the error names the input
/// file, shows the input and says how to replay it.
fn run_one(root: &Path, target: &str, budget: Budget) -> Result<(), String> {
    let dir = target_dir(root);
    let binary = dir.join(format!("{}/release/{target}", host_triple()?));
    let work = match budget {
        Budget::Seconds(_) => dir.join("corpus").join(target),
        Budget::Runs { .. } => dir.join("suite-corpus").join(target),
    };
    let artifacts = dir.join("artifacts").join(target);
    // Only this run's findings are reported; a counted run starts from the seeds alone.
    let _ = std::fs::remove_dir_all(&artifacts);
    if let Budget::Runs { .. } = budget {
        let _ = std::fs::remove_dir_all(&work);
    }
    for d in [&work, &artifacts] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    println!("\n==> fuzz {target}: {budget}");
    let mut command = Command::new(&binary);
    command
        .arg(&work)
        .arg(root.join("fuzz/corpus").join(target))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .current_dir(root);
    match budget {
        Budget::Seconds(s) => command.arg(format!("-max_total_time={s}")),
        Budget::Runs { seed, runs } => command
            .arg(format!("-seed={seed}"))
            .arg(format!("-runs={runs}")),
    };
    let status = command
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if status.success() {
        return Ok(());
    }
    let found: Vec<PathBuf> = std::fs::read_dir(&artifacts)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let shown: Vec<String> = found.iter().map(|p| show_input(p)).collect();
    Err(format!(
        "fuzz target {target} failed ({status}); input(s): {}; replay with `{} <input>`, \
         then add the input as a regression case (docs/ARCHITECTURE.md, \"Fuzzing\")",
        if shown.is_empty() {
            "none written".to_string()
        } else {
            shown.join("; ")
        },
        binary.display()
    ))
}

/// A crashing input's path and its bytes, escaped (and cut at [`SHOWN_INPUT_BYTES`]).
fn show_input(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let cut = &bytes[..bytes.len().min(SHOWN_INPUT_BYTES)];
    let escaped: String = cut
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let more = if bytes.len() > cut.len() {
        " (cut)"
    } else {
        ""
    };
    format!(
        "{} ({} bytes{more}): b\"{escaped}\"",
        path.display(),
        bytes.len()
    )
}

/// The triple cargo-fuzz builds for (it always passes `--target`): the host's.
fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "rustc -vV names no host triple".to_string())
}

/// cargo-fuzz under target/tools/cargo-fuzz, installed from crates.io unless the
/// version there is already [`CARGO_FUZZ_VERSION`].
fn install_cargo_fuzz(root: &Path) -> Result<PathBuf, String> {
    let prefix = root.join("target/tools/cargo-fuzz");
    let binary = prefix.join("bin/cargo-fuzz");
    let installed = Command::new(&binary)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if installed {
        println!("cargo-fuzz {CARGO_FUZZ_VERSION} already installed in target/tools");
        return Ok(binary);
    }
    println!("installing cargo-fuzz {CARGO_FUZZ_VERSION} into target/tools (cargo install)");
    tools::run_status(
        Command::new(env!("CARGO"))
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .arg("--root")
            .arg(&prefix),
        "cargo install cargo-fuzz",
    )?;
    Ok(binary)
}
