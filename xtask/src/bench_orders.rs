//! `cargo xtask bench orders`: the order system as its users meet it. A release
//! `oms up --pick-delay-ms 0` (fsync on every acknowledged commit, as always) is given
//! stock through `oms import stock`, the way real stock arrives, enough that no order
//! runs out; then `oms load` submits orders through the Orders API and learns each one's
//! end from the order events (`GET /events`), at concurrency 1 (latency), 64 (p99
//! under load) and 256 (throughput). For each phase: orders/s, submit-to-COMPLETED p50
//! and p99, and the server's CPU per order from /proc (user + system, every thread).
//! At the end the server is stopped cleanly and the data dir's bytes per completed
//! order are counted. Each phase also counts, with `perf stat`, the server's context
//! switches, page faults and storage syscalls per order: counts do not move with the
//! machine's speed as times do. `--perf` also records a `perf` profile of the server
//! during the throughput phase. The figures go to a section of docs/benchmarks.md.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const SECTION_START: &str = "<!-- orders: written by cargo xtask bench orders -->";
pub const SECTION_END: &str = "<!-- /orders -->";

/// Issue 16's targets.
const TARGET_ORDERS_PER_S: f64 = 1000.0;
const TARGET_CPU_MS: f64 = 1.0;
const TARGET_P50_C1_MS: f64 = 5.0;
const TARGET_BYTES_PER_ORDER: f64 = 4096.0;

struct Options {
    orders: usize,
    oms: Option<PathBuf>,
    perf: bool,
    write_docs: bool,
}

const USAGE: &str = "usage: cargo xtask bench orders [--orders N (3000 per loaded phase)] \
    [--oms PATH (default: build a release one)] [--perf] [--no-docs]";

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        orders: 3000,
        oms: None,
        perf: false,
        write_docs: true,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--orders" => {
                let v = it.next().ok_or("--orders needs a value")?;
                o.orders = v.parse().ok().filter(|n| *n >= 100).ok_or(format!(
                    "--orders: a whole number of at least 100, got {v:?}"
                ))?;
            }
            "--oms" => o.oms = Some(it.next().ok_or("--oms needs a path")?.into()),
            "--perf" => o.perf = true,
            "--no-docs" => o.write_docs = false,
            _ => return Err(format!("bench orders: unknown argument {flag:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// One load phase: its concurrency and orders, and what was measured.
struct Phase {
    concurrency: usize,
    orders: usize,
    load: Value,
    cpu_ms: f64,
    /// `perf stat`'s counts over the phase by event, or why there are none.
    counts: Result<BTreeMap<String, f64>, String>,
}

impl Phase {
    fn completed(&self) -> u64 {
        self.load["outcomes"]["COMPLETED"].as_u64().unwrap_or(0)
    }
    fn per_s(&self) -> f64 {
        self.load["orders_per_second"].as_f64().unwrap_or(0.0)
    }
    fn latency(&self, p: &str) -> f64 {
        self.load["latency_ms"][p].as_f64().unwrap_or(f64::NAN)
    }
    fn cpu_per_order_ms(&self) -> f64 {
        self.cpu_ms / self.orders as f64
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse_args(args)?;
    let root = crate::root();
    let crate::soak::Workspace { oms, work, data } =
        crate::soak::Workspace::fresh(&root, opts.oms.as_ref(), "bench-orders")?;
    let args = ["--pick-delay-ms".to_string(), "0".into()];
    let mut server = crate::soak::Server::start_with(&oms, &work, &data, &args)?;
    let measured = measure(&oms, &work, &opts, &server);
    server.stop();
    let (phases, warmup) = measured?;
    let completed: u64 = phases.iter().map(Phase::completed).sum::<u64>() + warmup;
    let sizes = crate::soak::dir_sizes(&data)?;
    let report = report(&phases, completed, &sizes, &oms, &opts);
    println!("{report}");
    if opts.write_docs {
        write_section(&root.join("docs/benchmarks.md"), &report)?;
    }
    Ok(())
}

/// Stocks the server, warms it up, runs the phases. Returns them and the orders the
/// warm-up completed.
fn measure(
    oms: &Path,
    work: &Path,
    opts: &Options,
    server: &crate::soak::Server,
) -> Result<(Vec<Phase>, u64), String> {
    // Enough that no SKU runs out even if every order of every phase chose it.
    let units = (opts.orders * 4 + 1000) as u64;
    stock(oms, work, &server.endpoint, units)?;
    let warmup = load(oms, &server.endpoint, 300, 32)?;
    let pid = server.child.id();
    let mut phases = Vec::new();
    for (concurrency, orders) in [
        (1, 300.min(opts.orders)),
        (64, opts.orders),
        (256, opts.orders),
    ] {
        let profile = (opts.perf && concurrency == 256).then(|| start_perf(pid, work));
        let counter = start_counts(pid);
        let before = cpu_ms(pid)?;
        let load = load(oms, &server.endpoint, orders, concurrency)?;
        let cpu = cpu_ms(pid)? - before;
        let counts = counter.and_then(finish_counts);
        if let Some(p) = profile {
            finish_perf(p?, work)?;
        }
        eprintln!(
            "bench orders: C={concurrency}: {:.0} orders/s, {:.2} ms CPU an order",
            load["orders_per_second"].as_f64().unwrap_or(0.0),
            cpu / orders as f64
        );
        phases.push(Phase {
            concurrency,
            orders,
            load,
            cpu_ms: cpu,
            counts,
        });
    }
    Ok((
        phases,
        warmup["outcomes"]["COMPLETED"].as_u64().unwrap_or(0),
    ))
}

/// SKUs in the bench catalog: orders spread over them as a real shop's do, rather than
/// queueing on the few stock rows of the demo seed.
const BENCH_SKUS: usize = 1000;

/// A catalog of [`BENCH_SKUS`] SKUs and `units` of each at every warehouse the server
/// knows, loaded by `oms import` (catalog, then stock) as a shop's feeds would be.
fn stock(oms: &Path, work: &Path, endpoint: &str, units: u64) -> Result<(), String> {
    let inventory = http_get_json(&format!("{endpoint}/inventory"))?;
    let mut warehouses: Vec<&str> = inventory["inventory"]
        .as_array()
        .ok_or_else(|| format!("GET /inventory answered no rows: {inventory}"))?
        .iter()
        .filter_map(|r| r["warehouse_id"].as_str())
        .collect();
    warehouses.sort();
    warehouses.dedup();
    let mut catalog = String::from("sku,name,price_cents\n");
    let mut stock = String::from("warehouse_id,sku,on_hand\n");
    for i in 0..BENCH_SKUS {
        catalog.push_str(&format!("BENCH-{i:04},Bench item {i},{}\n", 500 + i));
        for w in &warehouses {
            stock.push_str(&format!("{w},BENCH-{i:04},{units}\n"));
        }
    }
    import(oms, work, endpoint, "catalog", &catalog)?;
    import(oms, work, endpoint, "stock", &stock)
}

fn import(oms: &Path, work: &Path, endpoint: &str, kind: &str, csv: &str) -> Result<(), String> {
    let feed = work.join(format!("bench-{kind}.csv"));
    std::fs::write(&feed, csv).map_err(|e| format!("{}: {e}", feed.display()))?;
    let status = Command::new(oms)
        .args(["--endpoint", endpoint, "import", kind])
        .arg(&feed)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run oms import: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("oms import {kind} failed ({status})"))
}

/// A GET of the Orders API (curl: xtask has no HTTP client, and needs one only here).
fn http_get_json(url: &str) -> Result<Value, String> {
    let out = Command::new("curl")
        .args(["-sf", url])
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("GET {url}: no JSON ({e})"))
}

fn oms_json(oms: &Path, endpoint: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(oms)
        .args(["--endpoint", endpoint, "--output", "json"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run oms {}: {e}", args.join(" ")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .map_err(|e| format!("oms {} printed no JSON ({e}): {text}", args.join(" ")))
}

fn load(oms: &Path, endpoint: &str, orders: usize, concurrency: usize) -> Result<Value, String> {
    let load = oms_json(
        oms,
        endpoint,
        &[
            "load",
            "--orders",
            &orders.to_string(),
            "--concurrency",
            &concurrency.to_string(),
        ],
    )?;
    let completed = load["outcomes"]["COMPLETED"].as_u64().unwrap_or(0);
    if completed != orders as u64 {
        return Err(format!(
            "oms load: {completed} of {orders} orders completed: {}",
            load["outcomes"]
        ));
    }
    Ok(load)
}

/// The CPU `pid` has used so far, user and system, in milliseconds.
pub(crate) fn cpu_ms(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // The command name may hold spaces: the fields counted from after its ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let (user, system) = ticks(11)
        .zip(ticks(12))
        .ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
    Ok((user + system) * 1000.0 / clock_ticks_per_s())
}

fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// What each phase counts (`perf stat` events) and the column each goes to. An order's
/// storage work shows in these: its read transactions in fcntl (the WAL index's locks)
/// and pread (a reader's cache emptied by every commit), its WAL frames in pwrite.
const COUNTED: [(&str, &str); 7] = [
    ("context-switches", "context switches"),
    ("page-faults", "page faults"),
    ("syscalls:sys_enter_pread64", "pread"),
    ("syscalls:sys_enter_pwrite64", "pwrite"),
    ("syscalls:sys_enter_fcntl", "fcntl"),
    ("syscalls:sys_enter_fsync", "fsync"),
    ("syscalls:sys_enter_fdatasync", "fdatasync"),
];

/// SIGINT, which makes `perf` write what it recorded or counted and exit.
fn interrupt(perf: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
}

/// `perf stat` on the server until `finish_counts`, printing CSV to its stdout.
fn start_counts(pid: u32) -> Result<std::process::Child, String> {
    let events: Vec<&str> = COUNTED.iter().map(|(event, _)| *event).collect();
    let child = Command::new("perf")
        .args(["stat", "-x", ",", "--log-fd", "1", "-e", &events.join(",")])
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run perf stat: {e}"))?;
    // perf attaches to the server's threads after it starts.
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(child)
}

/// Stops `perf stat` and reads its counts by event. An event it could not count (a
/// tracepoint it may not read) is left out, and the report says so in its place.
fn finish_counts(perf: std::process::Child) -> Result<BTreeMap<String, f64>, String> {
    interrupt(&perf);
    let out = perf
        .wait_with_output()
        .map_err(|e| format!("perf stat: {e}"))?;
    let counts: BTreeMap<String, f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // value,unit,event,...; "<not supported>" or "<not counted>" as the value.
            let mut fields = line.split(',');
            let value = fields.next()?.parse::<f64>().ok()?;
            let event = fields.nth(1)?;
            Some((event.to_string(), value))
        })
        .collect();
    if counts.is_empty() {
        return Err(format!("perf stat counted nothing ({})", out.status));
    }
    Ok(counts)
}

/// The counts of every phase per order, as markdown.
fn counts_table(phases: &[Phase]) -> String {
    let mut md = String::from(
        "\nCounted per order over each phase (`perf stat` on the server, every thread; counts \
         do not move with the machine's speed as times do):\n\n| C |",
    );
    for (_, column) in COUNTED {
        md.push_str(&format!(" {column} |"));
    }
    md.push_str("\n|---:|");
    md.push_str(&"---:|".repeat(COUNTED.len()));
    md.push('\n');
    for p in phases {
        md.push_str(&format!("| {} |", p.concurrency));
        for (event, _) in COUNTED {
            let cell = match &p.counts {
                Ok(counts) => counts.get(event).map_or("not counted".to_string(), |n| {
                    format!("{:.1}", n / p.orders as f64)
                }),
                Err(_) => "-".to_string(),
            };
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    for p in phases {
        if let Err(why) = &p.counts {
            md.push_str(&format!("\nC={}: no counts: {why}.\n", p.concurrency));
        }
    }
    md
}

fn start_perf(pid: u32, work: &Path) -> Result<std::process::Child, String> {
    Command::new("perf")
        .args([
            "record",
            "-F",
            "199",
            "--call-graph",
            "dwarf,16384",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(work.join("perf.data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run perf: {e}"))
        .inspect(|_| {
            // perf attaches to the server's threads after it starts: a phase begun at
            // once and as short as a few seconds was sometimes not sampled at all.
            std::thread::sleep(std::time::Duration::from_secs(1));
        })
}

/// Stops the recording and writes the flat profile (self time by symbol) beside it.
fn finish_perf(mut perf: std::process::Child, work: &Path) -> Result<(), String> {
    interrupt(&perf);
    let _ = perf.wait();
    let report = perf_report(work, &[]).map_err(|e| format!("cannot run perf report: {e}"))?;
    let path = work.join("perf.txt");
    std::fs::write(&path, &report.stdout).map_err(|e| e.to_string())?;
    eprintln!("bench orders: profile in {}", path.display());
    Ok(())
}

/// `perf report` of the recording: self time by library and symbol, `extra` flags added.
fn perf_report(work: &Path, extra: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("perf")
        .args(["report", "--no-children", "--sort", "dso,symbol", "--stdio"])
        .args(extra)
        .arg("-i")
        .arg(work.join("perf.data"))
        .stderr(Stdio::null())
        .output()
}

/// The profile's heaviest functions by self time, as markdown rows: what an order's CPU
/// is spent on, for docs/benchmarks.md.
fn profile_top(work: &Path, rows: usize) -> Option<String> {
    let out = perf_report(work, &["-g", "none"]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut md = String::from("| self % | where | function |\n|---:|---|---|\n");
    let mut listed = 0;
    for line in text
        .lines()
        .filter(|l| l.contains('%') && !l.starts_with('#'))
        .take(rows)
    {
        let mut parts = line.split_whitespace();
        let (Some(pct), Some(dso)) = (parts.next(), parts.next()) else {
            continue;
        };
        // perf prints "[.]" before the symbol and "-" for its IPC columns after it.
        let symbol: Vec<&str> = parts.skip(1).filter(|p| *p != "-").collect();
        let symbol = symbol.join(" ").replace('|', "\\|");
        md.push_str(&format!("| {pct} | {dso} | `{symbol}` |\n"));
        listed += 1;
    }
    // No rows: perf sampled nothing, which the report says rather than an empty table.
    (listed > 0).then_some(md)
}

fn report(
    phases: &[Phase],
    completed: u64,
    sizes: &[(String, u64)],
    oms: &Path,
    opts: &Options,
) -> String {
    let mut md = String::new();
    md.push_str("## Orders through the Orders API\n\n");
    md.push_str(&format!(
        "- Command: `cargo xtask bench orders{}{}`\n- Date: {}\n- Commit: {}\n- Binary: {}\n\n",
        if opts.orders == 3000 {
            String::new()
        } else {
            format!(" --orders {}", opts.orders)
        },
        // The C=256 phase runs under the profiler then, which costs it some of its CPU.
        if opts.perf { " --perf" } else { "" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        crate::bench::git_head(&crate::root()),
        oms.display()
    ));
    md.push_str(
        "A release `oms up --pick-delay-ms 0` on this machine (fsync on every acknowledged \
         commit), given a catalog of 1,000 SKUs stocked at every warehouse by `oms import`; `oms load` (its own process, on the same two \
         cores) submits orders through the Orders API and learns each one's end from \
         `GET /events`. Latency is from submission to the order's COMPLETED event. CPU is the \
         server's (user + system, all threads) over the phase, divided by its orders.\n\n",
    );
    md.push_str("| C | orders | orders/s | p50 ms | p99 ms | server CPU ms/order |\n|---:|---:|---:|---:|---:|---:|\n");
    for p in phases {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.3} |\n",
            p.concurrency,
            p.orders,
            p.per_s(),
            p.latency("p50"),
            p.latency("p99"),
            p.cpu_per_order_ms()
        ));
    }
    let total: u64 = sizes.iter().map(|(_, b)| b).sum();
    let per_order = total as f64 / completed.max(1) as f64;
    md.push_str(&format!(
        "\nData dir at rest after a clean stop: {total} bytes for {completed} completed orders, \
         **{per_order:.0} bytes an order** ("
    ));
    let files: Vec<String> = sizes
        .iter()
        .filter(|(_, b)| *b > 0)
        .map(|(n, b)| format!("{n} {:.0}", *b as f64 / completed.max(1) as f64))
        .collect();
    md.push_str(&files.join(", "));
    md.push_str(").\n");
    md.push_str(&counts_table(phases));
    md.push('\n');
    md.push_str(&targets(phases, per_order));
    if opts.perf {
        let work = crate::bench::target_dir(&crate::root()).join("bench-orders");
        if let Some(top) = profile_top(&work, 20) {
            md.push_str(
                "\nWhere the server's CPU went at C=256 (`perf record --call-graph dwarf`, self \
                 time, the top 20 functions; the whole report is target/bench-orders/perf.txt):\n\n",
            );
            md.push_str(&top);
        } else {
            md.push_str(
                "\nThe profile asked for (`--perf`) recorded no samples: see \
                 target/bench-orders/perf.txt.\n",
            );
        }
    }
    md
}

fn targets(phases: &[Phase], bytes_per_order: f64) -> String {
    let best = phases.iter().map(Phase::per_s).fold(0.0, f64::max);
    let cpu = phases
        .iter()
        .filter(|p| p.concurrency > 1)
        .map(Phase::cpu_per_order_ms)
        .fold(f64::INFINITY, f64::min);
    let p50 = phases
        .iter()
        .find(|p| p.concurrency == 1)
        .map_or(f64::NAN, |p| p.latency("p50"));
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    let rows = [
        (
            format!("at least {TARGET_ORDERS_PER_S:.0} orders/s"),
            format!("{best:.0}"),
            best >= TARGET_ORDERS_PER_S,
        ),
        (
            format!("at most {TARGET_CPU_MS} ms server CPU an order (loaded)"),
            format!("{cpu:.3} ms"),
            cpu <= TARGET_CPU_MS,
        ),
        (
            format!("p50 at C=1 at most {TARGET_P50_C1_MS} ms"),
            format!("{p50:.2} ms"),
            p50 <= TARGET_P50_C1_MS,
        ),
        (
            format!("at most {TARGET_BYTES_PER_ORDER:.0} bytes an order at rest"),
            format!("{bytes_per_order:.0}"),
            bytes_per_order <= TARGET_BYTES_PER_ORDER,
        ),
    ];
    let mut md = String::from("| target | measured | met |\n|---|---|---|\n");
    for (t, m, ok) in rows {
        md.push_str(&format!("| {t} | {m} | {} |\n", yes(ok)));
    }
    md
}

fn write_section(path: &Path, body: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let section = format!("{SECTION_START}\n{body}{SECTION_END}\n");
    let new = match (text.find(SECTION_START), text.find(SECTION_END)) {
        (Some(a), Some(b)) if b > a => {
            format!(
                "{}{section}{}",
                &text[..a],
                &text[b + SECTION_END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!("{}\n{section}", text.trim_end()),
    };
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}

/// The section as last written, for `cargo xtask bench` to keep when it rewrites the file.
pub fn section(text: &str) -> Option<&str> {
    let a = text.find(SECTION_START)?;
    let b = text.find(SECTION_END)?;
    (b > a).then(|| &text[a..b + SECTION_END.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_section_replaces_the_old_one() {
        let dir = std::env::temp_dir().join(format!("bench-orders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.md");
        std::fs::write(&path, "# B\n\nintro\n").unwrap();
        write_section(&path, "one\n").unwrap();
        write_section(&path, "two\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("two") && !text.contains("one"), "{text}");
        assert_eq!(section(&text).map(|s| s.contains("two")), Some(true));
        assert!(text.starts_with("# B\n\nintro\n"));
    }
}
