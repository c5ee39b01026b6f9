//! `cargo xtask bench instructions`: the instructions an order costs the server,
//! counted by callgrind (valgrind), for comparing builds.
//!
//! On this machine the clock moves by more than most single changes save (an order's
//! CPU time varies by a third between hours, and by a tenth between alternated runs in
//! one), and it has no hardware counters (`perf stat` cannot count instructions in its
//! VM). Callgrind counts every instruction the server's threads run in user space; one
//! build's count repeats to about 0.2% within one invocation and 1% across them, so
//! builds are compared in one invocation (`--oms` given twice each, alternated, shows
//! the spread). It does not count the kernel's work (syscalls, page faults) nor what
//! memory stalls cost, and under valgrind the threads run one at a time, so group
//! commits batch differently: use it to compare builds, beside `cargo xtask bench
//! orders` for what a user sees.
//!
//! Each build: `oms up --pick-delay-ms 0` under callgrind, `oms load` of the warm-up
//! orders, counters zeroed (`callgrind_control -z`), `oms load` of the measured orders,
//! counters dumped (`callgrind_control -d`): the dump's total over the orders.

use crate::soak::{Server, Workspace};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Options {
    orders: usize,
    concurrency: usize,
    warmup: usize,
    builds: Vec<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench instructions [--orders N (200)] \
    [--concurrency C (16)] [--warmup N (50)] [--oms PATH]... \
    (each --oms a release build to count, in turn; default: build one)";

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        orders: 200,
        concurrency: 16,
        warmup: 50,
        builds: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--orders" => o.orders = crate::positive(flag, value()?)?,
            "--concurrency" => o.concurrency = crate::positive(flag, value()?)?,
            "--warmup" => o.warmup = crate::positive(flag, value()?)?,
            "--oms" => o.builds.push(value()?.into()),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => {
                return Err(format!(
                    "bench instructions: unknown argument {other:?}\n{USAGE}"
                ))
            }
        }
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse_args(args)?;
    if Command::new("callgrind_control")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Err(
            "bench instructions needs valgrind (callgrind_control is not on PATH): \
             apt-get install valgrind"
                .into(),
        );
    }
    let root = crate::root();
    let builds: Vec<Option<&PathBuf>> = match opts.builds.as_slice() {
        [] => vec![None],
        given => given.iter().map(Some).collect(),
    };
    let mut counted = Vec::new();
    for (i, build) in builds.into_iter().enumerate() {
        let ws = Workspace::fresh(&root, build, &format!("bench-instructions-{i}"))?;
        let per_order = count(&ws, &opts)?;
        println!(
            "bench instructions: {}: {per_order} instructions an order",
            ws.oms.display()
        );
        counted.push((ws.oms, per_order));
    }
    println!("{}", table(&counted, &opts));
    Ok(())
}

/// The instructions an order cost one build's server.
fn count(ws: &Workspace, opts: &Options) -> Result<u64, String> {
    let dump = ws.work.join("callgrind.out");
    let wrapper = [
        "valgrind".to_string(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", dump.display()),
    ];
    let stock = [
        "--pick-delay-ms".to_string(),
        "0".into(),
        "--bench-stock".into(),
        (opts.orders + opts.warmup).to_string(),
    ];
    let mut server = Server::start_under(&wrapper, &ws.oms, &ws.work, &ws.data, &stock)?;
    let result = measure(ws, opts, &server);
    server.stop();
    let instructions = result?;
    Ok(instructions / opts.orders as u64)
}

/// Warm-up, zero, the measured orders, dump: the dump's total instructions.
fn measure(ws: &Workspace, opts: &Options, server: &Server) -> Result<u64, String> {
    let pid = server.child.id().to_string();
    load(&ws.oms, &server.endpoint, opts.warmup, opts.concurrency)?;
    callgrind_control("-z", &pid)?;
    let completed = load(&ws.oms, &server.endpoint, opts.orders, opts.concurrency)?;
    callgrind_control("-d", &pid)?;
    if completed != opts.orders {
        return Err(format!(
            "{} of {} orders completed: the count would not be of orders",
            completed, opts.orders
        ));
    }
    // The first dump after the start is part 1.
    let path = ws.work.join("callgrind.out.1");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    total_instructions(&text).ok_or_else(|| format!("{}: no totals line", path.display()))
}

fn callgrind_control(what: &str, pid: &str) -> Result<(), String> {
    let out = Command::new("callgrind_control")
        .args([what, pid])
        .output()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "callgrind_control {what} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// `oms load`; answers how many orders completed.
fn load(oms: &Path, endpoint: &str, orders: usize, concurrency: usize) -> Result<usize, String> {
    let out = Command::new(oms)
        .args(["--endpoint", endpoint, "--output", "json", "load"])
        .args(["--orders", &orders.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run oms load: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "oms load ({}) printed no summary ({e}):\n{stdout}",
            out.status
        )
    })?;
    Ok(summary["outcomes"]["COMPLETED"].as_u64().unwrap_or(0) as usize)
}

/// The total of a callgrind dump's first event (instructions, `Ir`): its `totals:` line,
/// or `summary:` in dumps that have no totals.
fn total_instructions(dump: &str) -> Option<u64> {
    let line = |prefix: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    line("totals:").or_else(|| line("summary:"))
}

fn table(counted: &[(PathBuf, u64)], opts: &Options) -> String {
    let mut out = format!(
        "Instructions an order in the server (callgrind), over {} orders at C={} after {} \
         warm-up:\n| oms | instructions an order | against the first |\n|---|---:|---:|\n",
        opts.orders, opts.concurrency, opts.warmup
    );
    let first = counted.first().map_or(1, |(_, n)| (*n).max(1));
    for (oms, n) in counted {
        out.push_str(&format!(
            "| {} | {n} | {:.3} |\n",
            oms.display(),
            *n as f64 / first as f64
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_the_first_event_of_the_totals_line() {
        let cases = [
            (
                "events: Ir\nsummary: 12 3\ntotals: 1605886451 7\n",
                Some(1_605_886_451),
            ),
            ("events: Ir\nsummary: 42\n", Some(42)),
            ("events: Ir\n", None),
            ("totals: many\n", None),
        ];
        for (dump, total) in cases {
            assert_eq!(total_instructions(dump), total, "{dump:?}");
        }
    }

    #[test]
    fn builds_are_compared_with_the_first() {
        let opts = parse_args(&["--oms".into(), "a".into(), "--oms".into(), "b".into()]).unwrap();
        assert_eq!(opts.builds.len(), 2);
        let t = table(&[("a".into(), 8_000_000), ("b".into(), 7_600_000)], &opts);
        assert!(t.contains("| a | 8000000 | 1.000 |"), "{t}");
        assert!(t.contains("| b | 7600000 | 0.950 |"), "{t}");
    }
}
