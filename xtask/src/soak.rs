//! `cargo xtask bench soak`: a release `oms up` (fault injection on, stock for every
//! order) takes N orders (100,000 by default) from `oms load` with 2% transient faults
//! at every activity and compensation, C at a time, as fast as it goes. Meanwhile the
//! server's RSS is sampled from /proc; `oms load --check` reports p50/p99 per slice of
//! the run and audits the books as the chaos campaign does. At the end: the data dir's
//! bytes per order. It fails on any violation. The figures go to a section of
//! docs/benchmarks.md that `cargo xtask bench` keeps.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECTION_START: &str = "<!-- soak: written by cargo xtask bench soak -->";
pub const SECTION_END: &str = "<!-- /soak -->";

struct Options {
    orders: usize,
    concurrency: usize,
    fault_rate: f64,
    sample_s: u64,
    windows: usize,
    retention_s: Option<u64>,
    write_docs: bool,
    /// A release `oms` to measure instead of building one (say, a build kept while the
    /// tree changes under a long run).
    oms: Option<std::path::PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        orders: 100_000,
        concurrency: 32,
        fault_rate: 0.02,
        sample_s: 5,
        windows: 10,
        retention_s: None,
        write_docs: true,
        oms: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--orders" => o.orders = crate::positive(flag, value()?)?,
            "--concurrency" => o.concurrency = crate::positive(flag, value()?)?,
            "--windows" => o.windows = crate::positive(flag, value()?)?,
            "--sample-seconds" => o.sample_s = crate::positive(flag, value()?)? as u64,
            "--retention-seconds" => o.retention_s = Some(crate::positive(flag, value()?)? as u64),
            "--fault-rate" => {
                let v = value()?;
                o.fault_rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or(format!(
                        "--fault-rate needs a fraction from 0 to 1, got {v:?}"
                    ))?
            }
            "--no-docs" => o.write_docs = false,
            "--oms" => o.oms = Some(value()?.into()),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("bench soak: unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

const USAGE: &str = "usage: cargo xtask bench soak [--orders N (100000)] [--concurrency C (32)] \
    [--fault-rate F (0.02)] [--windows W (10)] [--sample-seconds S (5)] \
    [--retention-seconds S (none: oms's 90 days)] [--no-docs] [--oms PATH (a release build \
    to measure; default: build one)]";

pub(crate) fn build_release(root: &Path) -> Result<std::path::PathBuf, String> {
    eprintln!("soak: cargo build --release -p oms");
    crate::tools::run_status(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "oms"])
            .current_dir(root),
        "cargo build --release -p oms",
    )?;
    Ok(crate::bench::target_dir(root).join("release/oms"))
}

/// What a run against `oms up` works with: the binary it measures (the one given, or a
/// release build made now) and its work dir (`target/<name>`, emptied) holding an
/// empty data dir.
pub struct Workspace {
    pub oms: PathBuf,
    pub work: PathBuf,
    pub data: PathBuf,
}

impl Workspace {
    pub fn fresh(root: &Path, oms: Option<&PathBuf>, name: &str) -> Result<Workspace, String> {
        let oms = match oms {
            Some(path) => path.clone(),
            None => build_release(root)?,
        };
        let work = crate::bench::target_dir(root).join(name);
        let _ = std::fs::remove_dir_all(&work);
        let data = work.join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        Ok(Workspace { oms, work, data })
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse_args(args)?;
    let root = crate::root();
    let Workspace { oms, work, data } = Workspace::fresh(&root, opts.oms.as_ref(), "soak")?;
    let mut server = Server::start(&oms, &work, &data, &opts)?;
    let result = soak(&oms, &opts, &server);
    server.stop();
    let (load, rss) = result?;
    let report = Report {
        sizes: dir_sizes(&data)?,
        load,
        rss,
        opts,
    };
    println!("{}", report.table());
    if report.opts.write_docs {
        write_docs(&root.join("docs/benchmarks.md"), &report.markdown())?;
    }
    report.verdict()
}

/// The server under load: its process and where it listens.
pub(crate) struct Server {
    pub child: Child,
    pub endpoint: String,
}

impl Server {
    fn start(oms: &Path, work: &Path, data: &Path, opts: &Options) -> Result<Server, String> {
        // Every stock row receives as many units as there are orders: none runs out.
        let mut args = vec![
            "--fault-injection".to_string(),
            "--pick-delay-ms".into(),
            "20".into(),
        ];
        args.extend(["--bench-stock".into(), opts.orders.to_string()]);
        if let Some(s) = opts.retention_s {
            args.extend(["--retention-seconds".into(), s.to_string()]);
            args.extend(["--prune-every-seconds".into(), "10".into()]);
        }
        Server::start_with(oms, work, data, &args)
    }

    /// `oms up` on a free port with `data` as its data dir and `args` besides; its log
    /// in work/oms.log. Returns once it listens.
    pub(crate) fn start_with(
        oms: &Path,
        work: &Path,
        data: &Path,
        args: &[String],
    ) -> Result<Server, String> {
        Server::start_under(&[], oms, work, data, args)
    }

    /// `start_with`, run by `wrapper` (a command and its arguments, before `oms`'s
    /// path: valgrind, say); with no wrapper, `oms` itself.
    pub(crate) fn start_under(
        wrapper: &[String],
        oms: &Path,
        work: &Path,
        data: &Path,
        args: &[String],
    ) -> Result<Server, String> {
        let log = std::fs::File::create(work.join("oms.log")).map_err(|e| e.to_string())?;
        let mut cmd = match wrapper.split_first() {
            Some((program, before)) => {
                let mut c = Command::new(program);
                c.args(before).arg(oms);
                c
            }
            None => Command::new(oms),
        };
        cmd.args(["up", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .current_dir(work)
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {}: {e}",
                wrapper.first().map_or(oms, Path::new).display()
            )
        })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the server's output to its end, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if let Some(rest) = line.split_once("Step Functions API on ").map(|(_, r)| r) {
                let endpoint = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Ok(Server { child, endpoint });
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "oms up did not start within 60 s; see {}",
            work.join("oms.log").display()
        ))
    }

    /// SIGTERM (a clean stop truncates the WAL, so the sizes measured after are the
    /// database's own), then SIGKILL if it lingers.
    pub(crate) fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Said, not hidden: the sizes measured after a kill include an unchecked WAL.
        eprintln!("oms up did not stop within 30 s of SIGTERM: killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (seconds since the load began, RSS in KiB).
type RssSample = (f64, u64);

fn soak(oms: &Path, opts: &Options, server: &Server) -> Result<(Value, Vec<RssSample>), String> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(
        server.child.id(),
        opts.sample_s,
        samples.clone(),
        stop.clone(),
    );
    eprintln!(
        "soak: {} orders, {} at a time, fault rate {}, against {}",
        opts.orders, opts.concurrency, opts.fault_rate, server.endpoint
    );
    let out = Command::new(oms)
        .args(["--endpoint", &server.endpoint, "--output", "json", "load"])
        .args(["--orders", &opts.orders.to_string()])
        .args(["--concurrency", &opts.concurrency.to_string()])
        .args(["--fault-rate", &opts.fault_rate.to_string()])
        .args(["--windows", &opts.windows.to_string(), "--check"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run oms load: {e}"))?;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let load: Value = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "oms load ({}) printed no summary ({e}):\n{stdout}",
            out.status
        )
    })?;
    let rss = samples.lock().map_err(|e| e.to_string())?.clone();
    Ok((load, rss))
}

fn spawn_sampler(
    pid: u32,
    every_s: u64,
    samples: Arc<Mutex<Vec<RssSample>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut next = Duration::ZERO;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if stopping || began.elapsed() >= next {
                if let Some(kib) = rss_kib(pid) {
                    if let Ok(mut s) = samples.lock() {
                        s.push((began.elapsed().as_secs_f64(), kib));
                    }
                }
                next += Duration::from_secs(every_s);
            }
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes of each file in the data dir.
pub(crate) fn dir_sizes(dir: &Path) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = entry.metadata().map_err(|e| e.to_string())?;
        if meta.is_file() {
            out.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

struct Report {
    opts: Options,
    load: Value,
    rss: Vec<RssSample>,
    sizes: Vec<(String, u64)>,
}

impl Report {
    fn seconds(&self) -> f64 {
        self.load["seconds"].as_f64().unwrap_or(0.0)
    }

    /// The RSS sample nearest `fraction` of the run (0 start, 1 end), in MiB.
    fn rss_at(&self, fraction: f64) -> Option<(f64, f64)> {
        self.rss_near(self.seconds() * fraction)
    }

    /// The RSS sample nearest `at` seconds into the run: (its time, MiB).
    fn rss_near(&self, at: f64) -> Option<(f64, f64)> {
        self.rss
            .iter()
            .min_by(|a, b| (a.0 - at).abs().total_cmp(&(b.0 - at).abs()))
            .map(|(t, kib)| (*t, *kib as f64 / 1024.0))
    }

    fn total_bytes(&self) -> u64 {
        self.sizes.iter().map(|(_, b)| b).sum()
    }

    fn violations(&self) -> Vec<String> {
        let mut v: Vec<String> = self.load["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect();
        for (outcome, n) in self.load["outcomes"].as_object().into_iter().flatten() {
            if !matches!(outcome.as_str(), "COMPLETED" | "CANCELLED") {
                v.push(format!("{n} order(s) ended {outcome}"));
            }
        }
        v
    }

    fn verdict(&self) -> Result<(), String> {
        let v = self.violations();
        if v.is_empty() {
            return Ok(());
        }
        Err(format!(
            "soak: {} violation(s):\n  {}",
            v.len(),
            v.join("\n  ")
        ))
    }

    /// Lines of the report, as Markdown tables (the console shows the same text).
    fn table(&self) -> String {
        let l = &self.load;
        let num = |v: &Value| v.as_f64().unwrap_or(0.0);
        let orders = self.opts.orders as f64;
        let mut out = vec![
            format!(
                "{} orders, {} at a time, transient fault rate {}: {:.1} s, {:.1} orders/s \
                 (100,000 orders would take {:.0} min at this rate)",
                self.opts.orders,
                self.opts.concurrency,
                self.opts.fault_rate,
                self.seconds(),
                num(&l["orders_per_second"]),
                100_000.0 / num(&l["orders_per_second"]).max(f64::MIN_POSITIVE) / 60.0
            ),
            format!(
                "Outcomes: {}; retried after the faults were cleared: {}; violations: {}",
                l["outcomes"],
                l["retried"],
                self.violations().len()
            ),
            String::new(),
            "| RSS | at s | MiB |".into(),
            "|---|---:|---:|".into(),
        ];
        for (name, fraction) in [("start", 0.0), ("middle", 0.5), ("end", 1.0)] {
            if let Some((t, mib)) = self.rss_at(fraction) {
                out.push(format!("| {name} | {t:.0} | {mib:.1} |"));
            }
        }
        let max = self.rss.iter().map(|(_, k)| *k).max().unwrap_or(0) as f64 / 1024.0;
        out.push(format!(
            "| max of {} samples | | {max:.1} |",
            self.rss.len()
        ));
        out.extend([
            String::new(),
            "| until s | orders ended | p50 ms | p99 ms | RSS MiB |".into(),
            "|---:|---:|---:|---:|---:|".into(),
        ]);
        for w in l["windows"].as_array().into_iter().flatten() {
            let rss = self.rss_near(num(&w["until_s"])).map_or(0.0, |(_, m)| m);
            out.push(format!(
                "| {:.0} | {} | {:.0} | {:.0} | {rss:.1} |",
                num(&w["until_s"]),
                w["orders"],
                num(&w["p50_ms"]),
                num(&w["p99_ms"])
            ));
        }
        out.extend([
            String::new(),
            "| data dir file | bytes | bytes per order |".into(),
            "|---|---:|---:|".into(),
        ]);
        for (name, bytes) in &self.sizes {
            out.push(format!(
                "| {name} | {bytes} | {:.0} |",
                *bytes as f64 / orders
            ));
        }
        out.push(format!(
            "| total | {} | {:.0} |",
            self.total_bytes(),
            self.total_bytes() as f64 / orders
        ));
        out.join("\n")
    }

    fn markdown(&self) -> String {
        let retention = match self.opts.retention_s {
            Some(s) => format!("`--retention-seconds {s}` (pruned every 10 s)"),
            None => "the default retention (90 days: nothing pruned)".into(),
        };
        format!(
            "{SECTION_START}\n## Soak: orders through `oms up` with transient faults\n\n\
             - Command: `cargo xtask bench soak {args}`\n\
             - Date: {date}\n\
             - Build: {build}\n\
             - Machine: nproc {nproc}; release build; {retention}\n\n\
             `oms load --check` submits every order and follows it to its end through the \
             Orders API, then audits the books as the chaos campaign does (every order \
             COMPLETED or CANCELLED, paid for exactly, no stock left reserved, on hand + \
             shipped unchanged). Latency is submit to the end of the order's execution, \
             per slice of the run by when the order ended; RSS is the server's VmRSS; \
             sizes are the data dir's files after a clean stop.\n\n{table}\n{SECTION_END}\n",
            args = self.args(),
            date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            build = match &self.opts.oms {
                Some(path) => format!(
                    "`{}`, given with --oms (the tree was at commit {})",
                    path.display(),
                    crate::bench::git_head(&crate::root())
                ),
                None => format!("commit {}", crate::bench::git_head(&crate::root())),
            },
            nproc = std::thread::available_parallelism().map_or(1, |n| n.get()),
            table = self.table(),
        )
    }

    fn args(&self) -> String {
        let o = &self.opts;
        let mut a = format!(
            "--orders {} --concurrency {} --fault-rate {}",
            o.orders, o.concurrency, o.fault_rate
        );
        if let Some(s) = o.retention_s {
            a.push_str(&format!(" --retention-seconds {s}"));
        }
        a
    }
}

/// Replaces the soak section of `path` (or appends one).
fn write_docs(path: &Path, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let kept = without_section(&old);
    let text = format!("{}\n\n{section}", kept.trim_end());
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("soak: wrote its section of {}", path.display());
    Ok(())
}

/// `text` without its soak section.
fn without_section(text: &str) -> String {
    match (text.find(SECTION_START), text.find(SECTION_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}", &text[..a], &text[b + SECTION_END.len()..])
        }
        _ => text.to_string(),
    }
}

/// The soak section of `text`, if any (`cargo xtask bench` carries it over).
pub fn section(text: &str) -> Option<&str> {
    let a = text.find(SECTION_START)?;
    let b = text[a..].find(SECTION_END)? + a;
    Some(&text[a..b + SECTION_END.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_not_repeated() {
        let doc = format!("# B\n\ntext\n\n{SECTION_START}\nold\n{SECTION_END}\n\nafter\n");
        assert_eq!(
            section(&doc),
            Some(&*format!("{SECTION_START}\nold\n{SECTION_END}"))
        );
        let kept = without_section(&doc);
        assert!(!kept.contains("old") && kept.contains("after") && kept.contains("text"));
        assert_eq!(section("# B\n"), None);
    }

    #[test]
    fn flags() {
        let o = parse_args(&[
            "--orders".into(),
            "3000".into(),
            "--fault-rate".into(),
            "0.02".into(),
        ])
        .unwrap();
        assert_eq!((o.orders, o.fault_rate, o.concurrency), (3000, 0.02, 32));
        assert!(parse_args(&["--orders".into(), "0".into()]).is_err());
        assert!(parse_args(&["--fault-rate".into(), "2".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
    }
}
