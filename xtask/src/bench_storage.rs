//! `cargo xtask bench storage`: what a completed order leaves in the data dir at rest.
//! A release `oms up` on a fresh data dir is started and stopped once (the empty data
//! dir: seeds, definitions), then started again and given N orders by `oms load --check`
//! (no faults, so every order ends COMPLETED) and stopped cleanly, so every WAL is
//! checkpointed into its database. The report: each database's bytes, per completed
//! order (the growth over the empty data dir), per table where the `sqlite3` shell can
//! say (its `dbstat`), and the server's CPU per order over the load. The figures go to a
//! section of docs/benchmarks.md that `cargo xtask bench` keeps.

use crate::soak::Server;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const SECTION_START: &str = "<!-- storage: written by cargo xtask bench storage -->";
pub const SECTION_END: &str = "<!-- /storage -->";

/// Issue 16's target: bytes at rest per completed order, history and ledger included.
const TARGET_BYTES_PER_ORDER: f64 = 4096.0;

struct Options {
    orders: usize,
    concurrency: usize,
    write_docs: bool,
    oms: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench storage [--orders N (1000)] [--concurrency C (32)] \
    [--no-docs] [--oms PATH (a release build to measure; default: build one)]";

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        orders: 1000,
        concurrency: 32,
        write_docs: true,
        oms: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--orders" => o.orders = crate::positive(flag, value()?)?,
            "--concurrency" => o.concurrency = crate::positive(flag, value()?)?,
            "--no-docs" => o.write_docs = false,
            "--oms" => o.oms = Some(value()?.into()),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => {
                return Err(format!(
                    "bench storage: unknown argument {other:?}\n{USAGE}"
                ))
            }
        }
    }
    Ok(o)
}

/// The databases of a data dir, by file-name prefix: a database and its `-wal`/`-shm`.
/// The activities' items (orders, ledger) and the order event log are in the runtime's
/// database: one WAL orders them all (activities/src/store/sqlite.rs,
/// oms/src/events/log.rs); dbstat splits them by table.
const DATABASES: [(&str, &str); 1] = [(
    "oms.sqlite3",
    "runtime (executions, history), activities (items: orders, ledger) and the order event log",
)];

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse_args(args)?;
    let root = crate::root();
    let crate::soak::Workspace { oms, work, data } =
        crate::soak::Workspace::fresh(&root, opts.oms.as_ref(), "bench-storage")?;
    let stock = [
        "--pick-delay-ms".to_string(),
        "20".into(),
        "--bench-stock".into(),
        opts.orders.to_string(),
    ];
    // The empty data dir: what any data dir holds before its first order.
    Server::start_with(&oms, &work, &data, &stock)?.stop();
    for (file, _) in DATABASES {
        checkpoint(&data.join(file));
    }
    let empty = crate::soak::dir_sizes(&data)?;
    let mut server = Server::start_with(&oms, &work, &data, &stock)?;
    let cpu_before = cpu_seconds(server.child.id());
    let load = run_load(&oms, &opts, &server.endpoint);
    // The relay publishes the outbox behind the orders: what is at rest is measured
    // once it has caught up (its CPU counts too).
    let drained_s = wait_for_outbox(&data.join("oms.sqlite3"));
    let cpu_after = cpu_seconds(server.child.id());
    server.stop();
    let load = load?;
    // What a clean stop leaves in each WAL, then checkpointed: the sizes at rest.
    let wal_at_stop: u64 = crate::soak::dir_sizes(&data)?
        .iter()
        .filter(|(f, _)| f.ends_with("-wal"))
        .map(|(_, b)| b)
        .sum();
    for (file, _) in DATABASES {
        checkpoint(&data.join(file));
    }
    let report = Report {
        completed: load["outcomes"]["COMPLETED"].as_u64().unwrap_or(0),
        seconds: load["seconds"].as_f64().unwrap_or(0.0),
        cpu_s: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
        empty,
        after: crate::soak::dir_sizes(&data)?,
        tables: DATABASES
            .iter()
            .filter_map(|(file, _)| tables(&data.join(file)).map(|t| (file.to_string(), t)))
            .collect(),
        violations: load["violations"].as_array().map_or(0, Vec::len),
        drained_s,
        wal_at_stop,
        opts,
    };
    println!("{}", report.table());
    if report.opts.write_docs {
        write_docs(&root.join("docs/benchmarks.md"), &report.markdown())?;
    }
    if report.completed == 0 {
        return Err("bench storage: no order completed; see the oms.log".into());
    }
    Ok(())
}

fn run_load(oms: &Path, opts: &Options, endpoint: &str) -> Result<Value, String> {
    eprintln!(
        "storage: {} orders, {} at a time, against {endpoint}",
        opts.orders, opts.concurrency
    );
    let out = Command::new(oms)
        .args(["--endpoint", endpoint, "--output", "json", "load"])
        .args(["--orders", &opts.orders.to_string()])
        .args(["--concurrency", &opts.concurrency.to_string(), "--check"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run oms load: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "oms load ({}) printed no summary ({e}):\n{stdout}",
            out.status
        )
    })
}

/// Waits (up to 5 minutes) until the order store's outbox is empty, through the
/// `sqlite3` shell; answers the seconds waited, None without a shell.
fn wait_for_outbox(database: &Path) -> Option<f64> {
    let began = std::time::Instant::now();
    loop {
        let out = Command::new("sqlite3")
            .arg("-readonly")
            .arg(database)
            .arg("SELECT count(*) FROM items WHERE pk >= 'OUTBOX#' AND pk < 'OUTBOX$';")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let left: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        if left == 0 || began.elapsed().as_secs() > 300 {
            return Some(began.elapsed().as_secs_f64());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Checkpoints and truncates the WAL of the (closed) database at `path`, if the
/// `sqlite3` shell is there: `oms up` leaves its WALs behind at exit.
fn checkpoint(path: &Path) {
    if path.exists() {
        let _ = Command::new("sqlite3")
            .arg(path)
            .arg("PRAGMA wal_checkpoint(TRUNCATE);")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// User + system CPU seconds of `pid` so far (/proc/PID/stat, in USER_HZ = 100 ticks).
/// The CPU `pid` has used so far, in seconds (`bench_orders` reads /proc for it).
fn cpu_seconds(pid: u32) -> Option<f64> {
    crate::bench_orders::cpu_ms(pid).ok().map(|ms| ms / 1000.0)
}

/// Bytes per table and index of the database at `path` (free pages as `(free)`), from
/// the `sqlite3` shell's dbstat; None when there is no shell or it cannot read the file.
fn tables(path: &Path) -> Option<Vec<(String, u64)>> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(path)
        .arg(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name \
             UNION ALL SELECT '(free)', freelist_count * page_size \
             FROM pragma_freelist_count, pragma_page_size ORDER BY 2 DESC;",
        )
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rows: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, bytes) = l.rsplit_once('|')?;
            Some((name.to_string(), bytes.trim().parse().ok()?))
        })
        .filter(|(_, b)| *b > 0)
        .collect();
    (!rows.is_empty()).then_some(rows)
}

struct Report {
    opts: Options,
    completed: u64,
    seconds: f64,
    cpu_s: Option<f64>,
    violations: usize,
    /// Seconds the relay took to empty the outbox after the load.
    drained_s: Option<f64>,
    /// Bytes in the WALs when the server had stopped, before they were checkpointed.
    wal_at_stop: u64,
    empty: Vec<(String, u64)>,
    after: Vec<(String, u64)>,
    tables: Vec<(String, Vec<(String, u64)>)>,
}

impl Report {
    /// Bytes of each database (its files together), empty and after the load.
    fn databases(&self) -> BTreeMap<&'static str, (u64, u64)> {
        let sum = |files: &[(String, u64)], prefix: &str| -> u64 {
            files
                .iter()
                .filter(|(f, _)| f.starts_with(prefix))
                .map(|(_, b)| b)
                .sum()
        };
        DATABASES
            .iter()
            .map(|(file, _)| (*file, (sum(&self.empty, file), sum(&self.after, file))))
            .collect()
    }

    fn per_order(&self, bytes: u64) -> f64 {
        bytes as f64 / self.completed.max(1) as f64
    }

    fn growth_per_order(&self) -> f64 {
        let total = |files: &[(String, u64)]| files.iter().map(|(_, b)| *b).sum::<u64>();
        self.per_order(total(&self.after).saturating_sub(total(&self.empty)))
    }

    fn table(&self) -> String {
        let mut out = vec![
            format!(
                "{} orders, {} at a time: {} COMPLETED in {:.1} s; violations: {}",
                self.opts.orders,
                self.opts.concurrency,
                self.completed,
                self.seconds,
                self.violations
            ),
            match self.cpu_s {
                Some(s) => format!(
                    "Server CPU over the load and the relay's catching up: {s:.2} s, \
                     {:.3} ms per order",
                    s * 1000.0 / self.completed.max(1) as f64
                ),
                None => "Server CPU: not measured (no /proc)".into(),
            },
            format!(
                "The relay emptied the outbox {} after the load; the WALs held {} bytes at \
                 the stop, checkpointed before measuring.",
                self.drained_s
                    .map_or("(not watched: no sqlite3 shell)".into(), |s| format!("{s:.0} s")),
                self.wal_at_stop
            ),
            String::new(),
            "| database | files | empty data dir, bytes | after, bytes | growth per completed order, bytes |".into(),
            "|---|---|---:|---:|---:|".into(),
        ];
        let dbs = self.databases();
        for (file, what) in DATABASES {
            let (empty, after) = dbs[file];
            let files: Vec<&str> = self
                .after
                .iter()
                .filter(|(f, _)| f.starts_with(file))
                .map(|(f, _)| f.as_str())
                .collect();
            out.push(format!(
                "| {what} | {} | {empty} | {after} | {:.0} |",
                files.join(", "),
                self.per_order(after.saturating_sub(empty))
            ));
        }
        let others: u64 = self
            .after
            .iter()
            .filter(|(f, _)| !DATABASES.iter().any(|(d, _)| f.starts_with(d)))
            .map(|(_, b)| b)
            .sum();
        out.push(format!("| other files | | | {others} | |"));
        let growth = self.growth_per_order();
        out.push(format!(
            "| **total** | | | | **{growth:.0}** ({}) |",
            if growth <= TARGET_BYTES_PER_ORDER {
                "target ≤ 4096: met"
            } else {
                "target ≤ 4096: NOT met"
            }
        ));
        let free: u64 = self
            .tables
            .iter()
            .flat_map(|(_, rows)| rows.iter())
            .filter(|(name, _)| name == "(free)")
            .map(|(_, b)| b)
            .sum();
        if free > 0 {
            out.push(format!(
                "| of which free pages (rows deleted; later orders reuse them) | | | {free} | {:.0} |",
                self.per_order(free)
            ));
        }
        for (file, rows) in &self.tables {
            out.extend([
                String::new(),
                format!("`{file}` by table and index (dbstat), after the load:"),
                String::new(),
                "| table or index | bytes | per completed order |".into(),
                "|---|---:|---:|".into(),
            ]);
            for (name, bytes) in rows {
                out.push(format!(
                    "| {name} | {bytes} | {:.0} |",
                    self.per_order(*bytes)
                ));
            }
        }
        out.join("\n")
    }

    fn markdown(&self) -> String {
        format!(
            "{SECTION_START}\n## Storage: bytes at rest per completed order\n\n\
             - Command: `cargo xtask bench storage --orders {} --concurrency {}`\n\
             - Date: {}\n\
             - Build: {}\n\
             - Machine: nproc {}; release build; default retention (nothing is old \
             enough to prune)\n\n\
             A fresh data dir is started and stopped once (the empty data dir), then \
             `oms up` takes the orders from `oms load --check`, the relay empties the \
             outbox into the event log, and the server stops; each WAL is then \
             checkpointed into its database (with the `sqlite3` shell). Growth per order is the data dir's \
             growth over the empty one divided by the COMPLETED orders; the CPU is the \
             server's over the load.\n\n{}\n{SECTION_END}\n",
            self.opts.orders,
            self.opts.concurrency,
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            match &self.opts.oms {
                Some(path) => format!(
                    "`{}`, given with --oms (the tree was at commit {})",
                    path.display(),
                    crate::bench::git_head(&crate::root())
                ),
                None => format!("commit {}", crate::bench::git_head(&crate::root())),
            },
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            self.table()
        )
    }
}

/// Replaces the storage section of `path` (or appends one).
fn write_docs(path: &Path, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let kept = match (old.find(SECTION_START), old.find(SECTION_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}", &old[..a], &old[b + SECTION_END.len()..])
        }
        _ => old,
    };
    let text = format!("{}\n\n{section}", kept.trim_end());
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("storage: wrote its section of {}", path.display());
    Ok(())
}

/// The storage section of `text`, if any (`cargo xtask bench` carries it over).
pub fn section(text: &str) -> Option<&str> {
    let a = text.find(SECTION_START)?;
    let b = a + text[a..].find(SECTION_END)?;
    Some(&text[a..b + SECTION_END.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let o = parse_args(&["--orders".into(), "300".into()]).unwrap();
        assert_eq!((o.orders, o.concurrency, o.write_docs), (300, 32, true));
        assert!(parse_args(&["--orders".into(), "0".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
    }

    #[test]
    fn growth_is_over_the_empty_data_dir_per_completed_order() {
        let r = Report {
            opts: parse_args(&[]).unwrap(),
            completed: 10,
            seconds: 1.0,
            cpu_s: None,
            violations: 0,
            drained_s: None,
            wal_at_stop: 0,
            empty: vec![("oms.sqlite3".into(), 1000), ("oms.lock".into(), 5)],
            after: vec![
                ("oms.sqlite3".into(), 31_000),
                ("oms.sqlite3-wal".into(), 500),
                ("oms.lock".into(), 5),
            ],
            tables: Vec::new(),
        };
        assert_eq!(r.databases()["oms.sqlite3"], (1000, 31_500));
        // (31,505 - 1,005) / 10
        assert_eq!(r.growth_per_order(), 3050.0);
        let table = r.table();
        assert!(
            table.contains("| oms.sqlite3, oms.sqlite3-wal | 1000 | 31500 | 3050 |"),
            "{table}"
        );
    }

    #[test]
    fn the_cpu_of_this_process_is_read() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
