//! `cargo xtask bench`: oms against its fastest local peer (aws-local-stepfunctions) on
//! `machine10.json`, interleaved in the same run, and `docs/benchmarks.md` from the result.
//! Its JSONata section (bench_jsonata.rs) sets the `jsonata` crate beside jsonata-js.
//! `cargo xtask bench soak`: the long run of orders through `oms up` (soak.rs).
//! `cargo xtask bench storage`: bytes at rest per completed order (bench_storage.rs).
//! `cargo xtask bench instructions`: instructions an order, counted by callgrind, to
//! compare builds finer than the clock can (bench_instructions.rs).
//!
//! Figures on the shared machines are noisy, so each round runs the peer then oms back to
//! back, and what counts is the ratio of the medians over the rounds.

use crate::tools::run_status;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PEER: &str = "aws-local-stepfunctions";
/// Targets from the issue: at least this many times the peer's executions/s at C=1 ...
const TARGET_RATIO: f64 = 10.0;
/// ... and an oms p99 under this many milliseconds (20 µs).
const TARGET_P99_MS: f64 = 0.020;
/// The peer's executions/s of machine10 at C=1 as shared/bench/README.md saw it: a
/// cross-check, since a peer slower than usual in this run would flatter the ratio.
const PEER_REFERENCE_EXEC_PER_S: f64 = 16_400.0;

struct Options {
    rounds: usize,
    executions: usize,
    write_docs: bool,
    machine10: bool,
    saga4: bool,
    saga_rounds: usize,
    sagas: usize,
    saga_concurrency: Vec<usize>,
    jsonata: bool,
    jsonata_seconds: f64,
    jsonata_rounds: usize,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        rounds: 5,
        executions: 20_000,
        write_docs: true,
        machine10: true,
        saga4: true,
        saga_rounds: 3,
        sagas: 2_000,
        saga_concurrency: vec![1, 32, 128],
        jsonata: true,
        jsonata_seconds: 1.0,
        jsonata_rounds: 3,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut text = |name: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{name} needs a value")),
            }
        };
        match flag {
            "--rounds" => o.rounds = crate::positive(flag, &text(flag)?)?,
            "--executions" => o.executions = crate::positive(flag, &text(flag)?)?,
            "--saga-rounds" => o.saga_rounds = crate::positive(flag, &text(flag)?)?,
            "--sagas" => o.sagas = crate::positive(flag, &text(flag)?)?,
            "--saga-concurrency" => {
                o.saga_concurrency = text(flag)?
                    .split(',')
                    .map(|c| crate::positive(flag, c))
                    .collect::<Result<_, _>>()?
            }
            "--no-machine10" => o.machine10 = false,
            "--no-saga4" => o.saga4 = false,
            "--no-jsonata" => o.jsonata = false,
            "--jsonata-rounds" => o.jsonata_rounds = crate::positive(flag, &text(flag)?)?,
            "--jsonata-seconds" => {
                let v = text(flag)?;
                o.jsonata_seconds = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or(format!(
                        "{flag} needs a positive number of seconds, got {v:?}"
                    ))?
            }
            "--no-docs" => o.write_docs = false,
            "-h" | "--help" => {
                return Err(
                    "usage: cargo xtask bench [--rounds R (5)] [--executions N (20000)] \
                 [--saga-rounds R (3)] [--sagas N (2000)] [--saga-concurrency 1,32,128] \
                 [--jsonata-rounds R (3)] [--jsonata-seconds S (1)] [--no-machine10] [--no-saga4] [--no-jsonata] \
                 [--no-docs]\n\
                 docs/benchmarks.md is written whole when machine10 and saga4 run; the \
                 JSONata section alone otherwise."
                        .to_string(),
                )
            }
            other => return Err(format!("bench: unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// One implementation's figures for one round.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    exec_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Reads the last JSON object line a bench printed.
fn parse_sample(stdout: &str) -> Result<Sample, String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no JSON line in the output: {stdout:?}"))?;
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("bad JSON line {line:?}: {e}"))?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{k} missing from {line}"))
    };
    Ok(Sample {
        exec_per_s: num("exec_per_s")?,
        p50_ms: num("p50_ms")?,
        p99_ms: num("p99_ms")?,
    })
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn medians(samples: &[Sample]) -> Sample {
    let col = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
    Sample {
        exec_per_s: col(|s| s.exec_per_s),
        p50_ms: col(|s| s.p50_ms),
        p99_ms: col(|s| s.p99_ms),
    }
}

/// oms/peer for throughput, peer/oms for latency: above 1 means oms is better.
fn ratios(oms: &Sample, peer: &Sample) -> Sample {
    Sample {
        exec_per_s: oms.exec_per_s / peer.exec_per_s,
        p50_ms: peer.p50_ms / oms.p50_ms,
        p99_ms: peer.p99_ms / oms.p99_ms,
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.1}x")
    } else {
        "n/a".to_string()
    }
}

fn fmt_ms(ms: f64) -> String {
    format!("{ms:.4}")
}

pub fn bench_dir(root: &Path) -> PathBuf {
    match std::env::var_os("OMS_BENCH_DIR") {
        Some(p) => PathBuf::from(p),
        None => root.join("../shared/bench"),
    }
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                root.join(p)
            }
        }
        None => root.join("target"),
    }
}

/// Runs a command, returning its stdout, or an error carrying its stderr.
fn run_capture(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies a kit folder (files and subfolders, not node_modules) into `to`, writable:
/// the source is read-only in CI, and `fs::copy` would carry that mode over.
fn copy_kit(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if name == "node_modules" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_kit(&src, &dst)?;
        } else {
            let bytes =
                std::fs::read(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
            let _ = std::fs::remove_file(&dst);
            std::fs::write(&dst, bytes)
                .map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
            // Keep scripts executable (run.sh), and make everything writable.
            use std::os::unix::fs::PermissionsExt;
            let mode = entry
                .metadata()
                .map_err(|e| e.to_string())?
                .permissions()
                .mode();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o200))
                .map_err(|e| format!("cannot chmod {}: {e}", dst.display()))?;
        }
    }
    Ok(())
}

/// Copies the peer kit under target/bench/peers and installs it, once per package.json.
fn prepare_peer(kit: &Path, work: &Path) -> Result<(), String> {
    copy_kit(kit, work)?;
    let package = std::fs::read(work.join("package.json"))
        .map_err(|e| format!("the peer kit has no package.json: {e}"))?;
    let stamp = work.join(".installed-package.json");
    let installed =
        work.join("node_modules").is_dir() && std::fs::read(&stamp).is_ok_and(|s| s == package);
    if installed {
        eprintln!("bench: {PEER} already installed in {}", work.display());
        return Ok(());
    }
    eprintln!("bench: npm install in {}", work.display());
    run_status(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(work),
        "npm install",
    )?;
    std::fs::write(&stamp, package).map_err(|e| e.to_string())?;
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn version_of(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn git_head(root: &Path) -> String {
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    // The release build takes the working tree as it is: say so when it differs.
    let dirty = Command::new("git")
        .args([
            "status",
            "--porcelain",
            "--",
            "asl",
            "oms",
            "saga-core",
            "jsonata",
            "Cargo.toml",
            "Cargo.lock",
        ])
        .current_dir(root)
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes to asl/, saga-core/, oms/ or jsonata/)")
    } else {
        head
    }
}

struct Report {
    command: String,
    date: String,
    machine: String,
    toolchain: String,
    commit: String,
    executions: usize,
    rounds: Vec<(Sample, Sample)>, // (peer, oms)
    saga: Option<SagaReport>,
}

impl Report {
    fn peer_median(&self) -> Sample {
        medians(&self.rounds.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
    }
    fn oms_median(&self) -> Sample {
        medians(&self.rounds.iter().map(|r| r.1.clone()).collect::<Vec<_>>())
    }

    /// The per-round rows and the medians and ratios, as a Markdown table.
    fn table(&self) -> String {
        let mut t =
            String::from("| round | impl | exec/s | p50 ms | p99 ms |\n|---|---|---:|---:|---:|\n");
        let row = |t: &mut String, round: &str, name: &str, s: &Sample| {
            t.push_str(&format!(
                "| {round} | {name} | {:.0} | {} | {} |\n",
                s.exec_per_s,
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms)
            ));
        };
        for (i, (peer, oms)) in self.rounds.iter().enumerate() {
            row(&mut t, &(i + 1).to_string(), PEER, peer);
            row(&mut t, &(i + 1).to_string(), "oms", oms);
        }
        let (peer, oms) = (self.peer_median(), self.oms_median());
        row(&mut t, "median", PEER, &peer);
        row(&mut t, "median", "oms", &oms);
        let r = ratios(&oms, &peer);
        t.push_str(&format!(
            "| ratio | oms vs peer | {} | {} | {} |\n",
            fmt_ratio(r.exec_per_s),
            fmt_ratio(r.p50_ms),
            fmt_ratio(r.p99_ms)
        ));
        t
    }

    /// (target, measured, met) for each target of the issues; met is None when the
    /// target could not be measured.
    fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        if !self.rounds.is_empty() {
            let (peer, oms) = (self.peer_median(), self.oms_median());
            let r = ratios(&oms, &peer);
            out.push((
                format!(
                    "machine10 executions/s at concurrency 1: at least {TARGET_RATIO:.0}x the peer"
                ),
                format!(
                    "{} ({:.0} vs {:.0})",
                    fmt_ratio(r.exec_per_s),
                    oms.exec_per_s,
                    peer.exec_per_s
                ),
                Some(r.exec_per_s >= TARGET_RATIO),
            ));
            out.push((
                format!(
                    "machine10 p99 latency under {:.0} µs",
                    TARGET_P99_MS * 1000.0
                ),
                format!("{:.1} µs", oms.p99_ms * 1000.0),
                Some(oms.p99_ms < TARGET_P99_MS),
            ));
        }
        if let Some(s) = &self.saga {
            out.extend(s.targets());
        }
        out
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# Benchmarks\n\n");
        md.push_str("Generated by `cargo xtask bench`; do not edit by hand, run it again.\n\n");
        md.push_str(&format!(
            "- Command: `{}`\n- Date: {}\n- Machine: {}\n- Toolchain: {}\n- Commit: {}\n\n",
            self.command, self.date, self.machine, self.toolchain, self.commit
        ));
        md.push_str("## How to read this\n\n");
        md.push_str(
            "Absolute figures are noisy on this machine (a shared virtual CPU): the same binary \
             can move by tens of percent between runs. So every round runs the peer \
             (aws-local-stepfunctions, the fastest local ASL interpreter found) and then oms, \
             back to back on the same workload, and what counts is the ratio of the medians \
             over the rounds, measured in the same run. Ratios are oms/peer for executions/s \
             and peer/oms for latency, so above 1x means oms is ahead. Both sides run \
             in memory on one thread after a 500-execution warm-up; latencies are per \
             execution, input to final output.\n\n",
        );
        md.push_str(&format!(
            "## machine10 at concurrency 1\n\n`machine10.json` (ten to twelve executed Pass and \
             Choice transitions, no tasks, no durability), {} executions per round, {} rounds, \
             input `{{\"orderId\": \"o-N\", \"amount\": N % 200}}`.\n\n",
            self.executions,
            self.rounds.len()
        ));
        md.push_str(&self.table());
        let (peer, oms) = (self.peer_median(), self.oms_median());
        md.push_str(&format!(
            "\nCross-check: shared/bench/README.md saw the peer at about {:.0} executions/s; \
             this run's peer median is {:.0} ({:.0}% of that). Against the README's figure, \
             oms's median would be {}.\n",
            PEER_REFERENCE_EXEC_PER_S,
            peer.exec_per_s,
            100.0 * peer.exec_per_s / PEER_REFERENCE_EXEC_PER_S,
            fmt_ratio(oms.exec_per_s / PEER_REFERENCE_EXEC_PER_S)
        ));
        if let Some(saga) = &self.saga {
            md.push('\n');
            md.push_str(&saga.markdown());
        }
        md.push_str("\n## Targets\n\n| target | measured (medians) | met |\n|---|---|---|\n");
        for (what, measured, met) in self.targets() {
            let verdict = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not measured",
            };
            md.push_str(&format!("| {what} | {measured} | {verdict} |\n"));
        }
        md
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("soak") {
        return crate::soak::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("imports") {
        return crate::bench_imports::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("orders") {
        return crate::bench_orders::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("instructions") {
        return crate::bench_instructions::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("storage") {
        return crate::bench_storage::run(&args[1..]);
    }
    let opts = parse_args(args)?;
    let root = crate::root();
    let dir = bench_dir(&root);
    let target = target_dir(&root);
    // Run first: it needs no kit, and says plainly when it cannot run here.
    let jsonata = if opts.jsonata {
        Some(match crate::bench_jsonata::unavailable(&root) {
            Some(why) => Err(why),
            None => Ok(crate::bench_jsonata::run(
                &root,
                &target,
                opts.jsonata_seconds,
                opts.jsonata_rounds,
            )?),
        })
    } else {
        None
    };
    if !opts.machine10 && !opts.saga4 {
        return finish_jsonata(&opts, &root, args, jsonata.as_ref());
    }
    if !dir.is_dir() {
        return Err(format!(
            "the benchmark kit is missing: {} does not exist (it is the shared/bench folder \
             beside the repository; set OMS_BENCH_DIR to use another one)",
            dir.display()
        ));
    }
    eprintln!("bench: cargo build --release -p oms");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run_status(
        Command::new(&cargo)
            .args(["build", "--release", "-p", "oms"])
            .current_dir(&root),
        "cargo build --release -p oms",
    )?;
    let oms = target.join("release/oms");
    let rounds = if opts.machine10 {
        run_machine10(&opts, &dir, &target, &oms)?
    } else {
        Vec::new()
    };
    let saga = if opts.saga4 {
        Some(run_saga4(&opts, &dir, &target, &oms)?)
    } else {
        None
    };

    let report = Report {
        command: command_line(args),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: format!("{}, nproc {}", cpu_model(), nproc()),
        toolchain: format!(
            "{}; node {}",
            version_of("rustc", "--version"),
            version_of("node", "--version")
        ),
        commit: git_head(&root),
        executions: opts.executions,
        rounds,
        saga,
    };
    if opts.machine10 {
        let (peer, ours) = (report.peer_median(), report.oms_median());
        println!();
        let r = ratios(&ours, &peer);
        println!(
            "machine10 medians: {PEER} {:.0} exec/s, oms {:.0} exec/s; ratio {} (exec/s), {} (p50), {} (p99)",
            peer.exec_per_s,
            ours.exec_per_s,
            fmt_ratio(r.exec_per_s),
            fmt_ratio(r.p50_ms),
            fmt_ratio(r.p99_ms)
        );
    }
    if let Some(s) = &report.saga {
        println!();
        for case in &s.cases {
            let o = saga_medians(&case.oms);
            let line = match case.ratios() {
                Some((thr, lat)) => {
                    let r = saga_medians(&case.restate);
                    format!(
                        "Restate {:.0}/s p50 {:.2} ms run-cpu {} ms/saga; oms {:.0}/s p50 {:.2} ms cpu {} ms/saga; sagas/s {} p50 {}",
                        r.per_s, r.p50_ms, fmt_opt_ms(r.run_cpu_ms_per_saga),
                        o.per_s, o.p50_ms, fmt_opt_ms(o.cpu_ms_per_saga),
                        fmt_ratio(thr), fmt_ratio(lat)
                    )
                }
                None => format!(
                    "oms {:.0}/s p50 {:.2} ms cpu {} ms/saga (no Restate figures)",
                    o.per_s,
                    o.p50_ms,
                    fmt_opt_ms(o.cpu_ms_per_saga)
                ),
            };
            println!(
                "saga4 {} C={} medians: {line}",
                case.input(),
                case.concurrency
            );
        }
        if let Some(why) = &s.restate_unavailable {
            println!("Restate did not run: {why}");
        }
    }
    let jsonata_targets = match &jsonata {
        Some(Ok(j)) => {
            j.print();
            j.targets()
        }
        Some(Err(why)) => {
            println!("\nJSONata: not measured: {why}");
            Vec::new()
        }
        None => Vec::new(),
    };
    for (what, measured, met) in report.targets().into_iter().chain(jsonata_targets) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!("target: {what}: {measured}: {verdict}");
    }
    if opts.write_docs && opts.machine10 && opts.saga4 {
        let path = root.join("docs/benchmarks.md");
        // The soak's section (`cargo xtask bench soak`) is kept as it was.
        let soak = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| crate::soak::section(&old).map(str::to_string));
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let jsonata_md = jsonata_markdown(&report.command, jsonata.as_ref())
            .or_else(|| crate::bench_jsonata::section(&old).map(str::to_string));
        // So is the stock feed's (`cargo xtask bench imports`).
        let imports = crate::bench_imports::section(&old).map(str::to_string);
        // And the order system's (`cargo xtask bench orders`) and the storage one's
        // (`cargo xtask bench storage`).
        let orders = crate::bench_orders::section(&old).map(str::to_string);
        let storage = crate::bench_storage::section(&old).map(str::to_string);
        let mut markdown = report.markdown().trim_end().to_string();
        let kept = jsonata_md
            .iter()
            .chain(&soak)
            .chain(&imports)
            .chain(&orders)
            .chain(&storage);
        for section in kept {
            markdown.push_str("\n\n");
            markdown.push_str(section.trim_end());
        }
        markdown.push('\n');
        std::fs::write(&path, markdown)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    } else if opts.write_docs {
        write_jsonata_section(&root, &report.command, jsonata.as_ref())?;
    }
    Ok(())
}

fn command_line(args: &[String]) -> String {
    let mut c = "cargo xtask bench".to_string();
    for a in args {
        c.push(' ');
        c.push_str(a);
    }
    c
}

/// The JSONata section for this run: its figures, or why it could not run; `None`
/// when it was not asked for.
fn jsonata_markdown(
    command: &str,
    jsonata: Option<&Result<crate::bench_jsonata::JsonataReport, String>>,
) -> Option<String> {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let commit = git_head(&crate::root());
    jsonata.map(|j| match j {
        Ok(report) => report.markdown(command, &date, &commit),
        Err(why) => crate::bench_jsonata::not_run_markdown(why),
    })
}

/// Replaces only the JSONata section of docs/benchmarks.md (when machine10 and saga4
/// did not run, their sections stay as they were).
fn write_jsonata_section(
    root: &Path,
    command: &str,
    jsonata: Option<&Result<crate::bench_jsonata::JsonataReport, String>>,
) -> Result<(), String> {
    let Some(section) = jsonata_markdown(command, jsonata) else {
        eprintln!("bench: docs/benchmarks.md left as it was (no part that writes it ran)");
        return Ok(());
    };
    let path = root.join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, crate::bench_jsonata::replace_section(&old, &section))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("bench: wrote the JSONata section of {}", path.display());
    Ok(())
}

/// The end of a run that measured JSONata only.
fn finish_jsonata(
    opts: &Options,
    root: &Path,
    args: &[String],
    jsonata: Option<&Result<crate::bench_jsonata::JsonataReport, String>>,
) -> Result<(), String> {
    match jsonata {
        Some(Ok(j)) => {
            j.print();
            for (what, measured, met) in j.targets() {
                let verdict = if met == Some(true) { "met" } else { "NOT met" };
                println!("target: {what}: {measured}: {verdict}");
            }
        }
        Some(Err(why)) => println!("JSONata: not measured: {why}"),
        None => println!("bench: nothing to run (--no-machine10 --no-saga4 --no-jsonata)"),
    }
    if opts.write_docs {
        write_jsonata_section(root, &command_line(args), jsonata)?;
    }
    Ok(())
}

fn run_machine10(
    opts: &Options,
    dir: &Path,
    target: &Path,
    oms: &Path,
) -> Result<Vec<(Sample, Sample)>, String> {
    let machine = dir.join("machine10.json");
    if !machine.is_file() {
        return Err(format!("{} is missing", machine.display()));
    }
    let machine = machine.canonicalize().map_err(|e| e.to_string())?;
    let kit = dir.join("peers").join(PEER);
    if !kit.is_dir() {
        return Err(format!("the peer kit {} is missing", kit.display()));
    }
    let peer_dir = target.join("bench/peers").join(PEER);
    prepare_peer(&kit, &peer_dir)?;

    let n = opts.executions.to_string();
    let mut rounds = Vec::new();
    println!(
        "{:>6}  {:<24} {:>10} {:>9} {:>9}",
        "round", "impl", "exec/s", "p50 ms", "p99 ms"
    );
    let print = |round: &str, name: &str, s: &Sample| {
        println!(
            "{round:>6}  {name:<24} {:>10.0} {:>9} {:>9}",
            s.exec_per_s,
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms)
        );
    };
    for round in 1..=opts.rounds {
        let peer = parse_sample(&run_capture(
            Command::new("node")
                .args(["-r", "./polyfill.cjs", "bench.mjs"])
                .arg(&machine)
                .args([n.as_str(), "1"])
                .current_dir(&peer_dir),
            PEER,
        )?)?;
        print(&round.to_string(), PEER, &peer);
        let ours = parse_sample(&run_capture(
            Command::new(oms)
                .args(["bench", "--definition"])
                .arg(&machine)
                .args(["--executions", n.as_str(), "--concurrency", "1"]),
            "oms bench",
        )?)?;
        print(&round.to_string(), "oms", &ours);
        rounds.push((peer, ours));
    }
    Ok(rounds)
}

// ---------------------------------------------------------------------------------
// saga4, durable: oms bench --durable beside Restate (shared/bench/peers/restate).

const RESTATE: &str = "Restate";
/// At concurrency 128, oms's sagas/s must be at least this many times Restate's ...
const TARGET_SAGA_THROUGHPUT: f64 = 5.0;
/// ... and at concurrency 1, oms's p50 at most 1/this of Restate's.
const TARGET_SAGA_P50: f64 = 2.0;

/// One saga4 run's figures.
#[derive(Clone, Debug, PartialEq)]
struct SagaSample {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU of the measured sagas only (oms measures it in-process); None for Restate.
    cpu_ms_per_saga: Option<f64>,
    /// CPU of the whole run (every process the command started, start-up and warm-up
    /// included) divided by the measured sagas: the same yardstick for both sides.
    run_cpu_ms_per_saga: Option<f64>,
}

/// The CPU time of this process's waited-for children (cutime + cstime), in ms.
fn children_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the line, 14 and 15 after the name.
    let ticks = f.get(13)?.parse::<f64>().ok()? + f.get(14)?.parse::<f64>().ok()?;
    Some(ticks * 10.0) // USER_HZ is 100 on Linux
}

/// Runs `cmd` and returns its stdout and the CPU its whole process tree used.
fn run_measured(cmd: &mut Command, what: &str) -> Result<(String, Option<f64>), String> {
    let before = children_cpu_ms();
    let out = run_capture(cmd, what)?;
    let cpu = before.zip(children_cpu_ms()).map(|(a, b)| b - a);
    Ok((out, cpu))
}

fn last_json(stdout: &str) -> Result<Value, String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no JSON line in the output: {stdout:?}"))?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON line {line:?}: {e}"))
}

fn num(v: &Value, k: &str) -> Result<f64, String> {
    v.get(k)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{k} missing from {v}"))
}

/// `oms bench --durable`'s line.
fn parse_oms_saga(stdout: &str, total: usize, cpu: Option<f64>) -> Result<SagaSample, String> {
    let v = last_json(stdout)?;
    Ok(SagaSample {
        per_s: num(&v, "sagas_per_s")?,
        p50_ms: num(&v, "p50_ms")?,
        p99_ms: num(&v, "p99_ms")?,
        cpu_ms_per_saga: v.get("cpu_ms_per_saga").and_then(Value::as_f64),
        run_cpu_ms_per_saga: cpu.map(|c| c / total as f64),
    })
}

/// The Restate kit's loadgen line; every saga must have answered 200.
fn parse_restate(stdout: &str, total: usize, cpu: Option<f64>) -> Result<SagaSample, String> {
    let v = last_json(stdout)?;
    let (ok, errors) = (num(&v, "ok")?, num(&v, "errors")?);
    if ok as usize != total || errors > 0.0 {
        return Err(format!(
            "Restate answered {ok} of {total} sagas ({errors} errors): {v}"
        ));
    }
    Ok(SagaSample {
        per_s: num(&v, "per_sec")?,
        p50_ms: num(&v, "p50_ms")?,
        p99_ms: num(&v, "p99_ms")?,
        cpu_ms_per_saga: None,
        run_cpu_ms_per_saga: cpu.map(|c| c / total as f64),
    })
}

fn saga_medians(xs: &[SagaSample]) -> SagaSample {
    let col = |f: fn(&SagaSample) -> f64| median(&xs.iter().map(f).collect::<Vec<_>>());
    let opt = |f: fn(&SagaSample) -> Option<f64>| {
        let v: Vec<f64> = xs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    SagaSample {
        per_s: col(|s| s.per_s),
        p50_ms: col(|s| s.p50_ms),
        p99_ms: col(|s| s.p99_ms),
        cpu_ms_per_saga: opt(|s| s.cpu_ms_per_saga),
        run_cpu_ms_per_saga: opt(|s| s.run_cpu_ms_per_saga),
    }
}

/// One workload: a concurrency and an input.
#[derive(Clone, Debug)]
struct SagaCase {
    concurrency: usize,
    fail_at_ship: bool,
    restate: Vec<SagaSample>,
    oms: Vec<SagaSample>,
}

impl SagaCase {
    fn input(&self) -> &'static str {
        if self.fail_at_ship {
            r#"{"failAt": "ship"}"#
        } else {
            "{}"
        }
    }
    /// (sagas/s oms/Restate, p50 Restate/oms), when Restate ran.
    fn ratios(&self) -> Option<(f64, f64)> {
        if self.restate.is_empty() || self.oms.is_empty() {
            return None;
        }
        let (r, o) = (saga_medians(&self.restate), saga_medians(&self.oms));
        Some((o.per_s / r.per_s, r.p50_ms / o.p50_ms))
    }
}

struct SagaReport {
    sagas: usize,
    rounds: usize,
    cases: Vec<SagaCase>,
    /// Why Restate did not run (or stopped running), if it did not.
    restate_unavailable: Option<String>,
}

fn fmt_opt_ms(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.2}"))
}

impl SagaReport {
    /// (target, measured, met) for each case the targets speak of; None when unmeasured.
    fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut out = Vec::new();
        for case in &self.cases {
            let what = match case.concurrency {
                128 => format!(
                    "saga4 input {} at concurrency 128: sagas/s at least {TARGET_SAGA_THROUGHPUT:.0}x Restate's",
                    case.input()
                ),
                1 => format!(
                    "saga4 input {} at concurrency 1: p50 at most 1/{TARGET_SAGA_P50:.0} of Restate's",
                    case.input()
                ),
                _ => continue,
            };
            let o = saga_medians(&case.oms);
            let (measured, met) = match case.ratios() {
                Some((thr, _)) if case.concurrency == 128 => (
                    format!(
                        "{} ({:.0} vs {:.0} sagas/s)",
                        fmt_ratio(thr),
                        o.per_s,
                        saga_medians(&case.restate).per_s
                    ),
                    Some(thr >= TARGET_SAGA_THROUGHPUT),
                ),
                Some((_, lat)) => (
                    format!(
                        "Restate/oms {} (p50 {:.2} ms vs {:.2} ms)",
                        fmt_ratio(lat),
                        o.p50_ms,
                        saga_medians(&case.restate).p50_ms
                    ),
                    Some(lat >= TARGET_SAGA_P50),
                ),
                None => (
                    format!(
                        "not measured: Restate did not run (oms alone: {:.0} sagas/s, p50 {:.2} ms)",
                        o.per_s, o.p50_ms
                    ),
                    None,
                ),
            };
            out.push((what, measured, met));
        }
        out
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "## saga4, durable, beside Restate\n\n`saga4.asl.json` (four Task steps, each undone \
             in reverse on failure; the tasks are the trivial handlers shared/bench/README.md \
             describes), {} sagas per run, {} rounds. oms: `oms bench --durable` (the durable \
             runtime in process: SQLite WAL, `synchronous=FULL`, every transition committed \
             before it is acted on, group commit across executions; the built-in `bench` \
             handlers; 200 warm-up sagas first). Restate: the kit's `run.sh` (Restate 1.7.12, \
             the saga as a TypeScript service, fsync on, 200 warm-up sagas, a closed-loop \
             HTTP load on loopback). In each round every workload runs Restate then oms, back \
             to back. Latency is from submission to completion. Ratios: sagas/s oms/Restate, \
             p50 Restate/oms (above 1x, oms is ahead). Note the two measure slightly different \
             paths: Restate's sagas come in over HTTP and call their steps over HTTP/2, oms's \
             are started in process, as `oms up` starts them behind its API.\n\n\
             CPU: *oms CPU/saga* is oms's process CPU over the measured sagas only. *run CPU/saga* \
             is the CPU of every process the run started (server, service, load generator; \
             start-up and warm-up included), divided by the measured sagas: an upper bound, \
             the same yardstick for both.\n\n",
            self.sagas, self.rounds
        );
        if let Some(why) = &self.restate_unavailable {
            md.push_str(&format!(
                "**Restate did not run here**, so there are no ratios: {why}\n\n"
            ));
        }
        md.push_str(
            "| input | C | impl | sagas/s (per round) | sagas/s | p50 ms | p99 ms | oms CPU/saga ms | run CPU/saga ms |\n\
             |---|---:|---|---|---:|---:|---:|---:|---:|\n",
        );
        for case in &self.cases {
            let mut row = |name: &str, xs: &[SagaSample]| {
                if xs.is_empty() {
                    return;
                }
                let m = saga_medians(xs);
                let per_round = xs
                    .iter()
                    .map(|s| format!("{:.0}", s.per_s))
                    .collect::<Vec<_>>()
                    .join(", ");
                md.push_str(&format!(
                    "| `{}` | {} | {name} | {per_round} | {:.0} | {:.2} | {:.2} | {} | {} |\n",
                    case.input(),
                    case.concurrency,
                    m.per_s,
                    m.p50_ms,
                    m.p99_ms,
                    fmt_opt_ms(m.cpu_ms_per_saga),
                    fmt_opt_ms(m.run_cpu_ms_per_saga)
                ));
            };
            row(RESTATE, &case.restate);
            row("oms", &case.oms);
            if let Some((thr, lat)) = case.ratios() {
                md.push_str(&format!(
                    "| `{}` | {} | **oms vs Restate** | | **{}** | **{}** | | | |\n",
                    case.input(),
                    case.concurrency,
                    fmt_ratio(thr),
                    fmt_ratio(lat)
                ));
            }
        }
        md.push_str("\nThe sagas/s, p50, p99 and CPU columns are medians over the rounds.\n");
        md
    }
}

/// Copies the Restate kit under target/bench/peers/restate; None if it cannot run here.
fn restate_unavailable_reason(kit: &Path) -> Option<String> {
    if !kit.join("run.sh").is_file() {
        return Some(format!("the kit {} is missing", kit.display()));
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some(
            "its run.sh needs root (it runs Restate under `unshare -n`, since Restate checks \
             for a new release at every start and cannot be told not to)"
                .to_string(),
        );
    }
    for tool in ["unshare", "curl", "node", "npm", "ip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("its run.sh needs `{tool}`, which is not installed"));
        }
    }
    None
}

fn run_saga4(opts: &Options, dir: &Path, target: &Path, oms: &Path) -> Result<SagaReport, String> {
    let saga = dir.join("saga4.asl.json");
    if !saga.is_file() {
        return Err(format!("{} is missing", saga.display()));
    }
    let saga = saga.canonicalize().map_err(|e| e.to_string())?;
    let kit = dir.join("peers/restate");
    let peer_dir = target.join("bench/peers/restate");
    let mut unavailable = restate_unavailable_reason(&kit);
    if unavailable.is_none() {
        copy_kit(&kit, &peer_dir)?;
    }
    // run.sh installs into PEER_WORK (npm install, tsc) on its first run.
    let peer_work = peer_dir.join("work");
    let total = opts.sagas.to_string();
    let mut cases: Vec<SagaCase> = [false, true]
        .into_iter()
        .flat_map(|ship| {
            opts.saga_concurrency.iter().map(move |&c| SagaCase {
                concurrency: c,
                fail_at_ship: ship,
                restate: Vec::new(),
                oms: Vec::new(),
            })
        })
        .collect();
    println!(
        "\n{:>5}  {:<18} {:>5}  {:<9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "round", "input", "C", "impl", "sagas/s", "p50 ms", "p99 ms", "cpu/saga", "run cpu"
    );
    let print = |round: &str, case: &SagaCase, name: &str, s: &SagaSample| {
        println!(
            "{round:>5}  {:<18} {:>5}  {name:<9} {:>9.0} {:>9.2} {:>9.2} {:>9} {:>9}",
            case.input(),
            case.concurrency,
            s.per_s,
            s.p50_ms,
            s.p99_ms,
            fmt_opt_ms(s.cpu_ms_per_saga),
            fmt_opt_ms(s.run_cpu_ms_per_saga)
        );
    };
    let mut restate_ran = false;
    for round in 1..=opts.saga_rounds {
        for case in cases.iter_mut() {
            let c = case.concurrency.to_string();
            if unavailable.is_none() {
                let mut cmd = Command::new(peer_dir.join("run.sh"));
                cmd.args([total.as_str(), c.as_str()])
                    .args(case.fail_at_ship.then_some("ship"))
                    .env("PEER_WORK", &peer_work)
                    .current_dir(&peer_dir);
                match run_measured(&mut cmd, "Restate's run.sh")
                    .and_then(|(out, cpu)| parse_restate(&out, opts.sagas, cpu))
                {
                    Ok(s) => {
                        print(&round.to_string(), case, RESTATE, &s);
                        case.restate.push(s);
                        restate_ran = true;
                    }
                    Err(e) => {
                        // No ratio from a peer that ran only part of the time.
                        let ran = restate_ran;
                        let why = format!(
                            "{}{}",
                            if ran {
                                "it failed part-way through the run: "
                            } else {
                                ""
                            },
                            first_lines(&e, 12)
                        );
                        eprintln!("bench: Restate cannot run here, continuing with oms alone: {e}");
                        unavailable = Some(why);
                    }
                }
            }
            let mut cmd = Command::new(oms);
            cmd.args(["bench", "--durable", "--definition"])
                .arg(&saga)
                .args(["--executions", total.as_str(), "--concurrency", c.as_str()])
                .args(["--input", case.input()])
                .args([
                    "--expect",
                    if case.fail_at_ship {
                        "FAILED:Saga.Compensated"
                    } else {
                        "SUCCEEDED"
                    },
                ]);
            let (out, cpu) = run_measured(&mut cmd, "oms bench --durable")?;
            let s = parse_oms_saga(&out, opts.sagas, cpu)?;
            print(&round.to_string(), case, "oms", &s);
            case.oms.push(s);
        }
    }
    if unavailable.is_some() {
        for case in cases.iter_mut() {
            case.restate.clear();
        }
    }
    Ok(SagaReport {
        sagas: opts.sagas,
        rounds: opts.saga_rounds,
        cases,
        restate_unavailable: unavailable,
    })
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn parses_the_last_json_line() {
        let out = "warming up\n{\"impl\":\"oms\",\"executions\":10,\"concurrency\":1,\
                   \"seconds\":0.1,\"exec_per_s\":100,\"p50_ms\":0.0021,\"p99_ms\":0.004}\n";
        assert_eq!(
            parse_sample(out).unwrap(),
            Sample {
                exec_per_s: 100.0,
                p50_ms: 0.0021,
                p99_ms: 0.004
            }
        );
        assert!(parse_sample("nothing").is_err());
    }

    #[test]
    fn ratios_favour_oms_above_one() {
        let peer = Sample {
            exec_per_s: 100.0,
            p50_ms: 0.5,
            p99_ms: 1.0,
        };
        let oms = Sample {
            exec_per_s: 1000.0,
            p50_ms: 0.05,
            p99_ms: 0.5,
        };
        let r = ratios(&oms, &peer);
        assert_eq!((r.exec_per_s, r.p50_ms, r.p99_ms), (10.0, 10.0, 2.0));
    }

    #[test]
    fn flags() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&["--rounds", "3", "--executions=100"]).unwrap();
        assert_eq!((o.rounds, o.executions, o.write_docs), (3, 100, true));
        assert!(a(&["--rounds", "0"]).is_err());
        assert!(a(&["--bogus"]).is_err());
    }
}
