//! `cargo xtask bench imports [--rows N]`: how long a stock feed of N rows (1,000,000 by
//! default) takes through `oms import` against a release `oms up`, and how much memory
//! the server and the CLI peak at (the feed is streamed and applied in store batches,
//! so neither should grow with the file). It writes its own section of
//! docs/benchmarks.md (kept by `cargo xtask bench`): a measurement of one machine, not
//! a test.

pub const SECTION_START: &str = "<!-- imports: written by cargo xtask bench imports -->";
pub const SECTION_END: &str = "<!-- /imports -->";

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Warehouses of the generated world; its SKUs are rows / WAREHOUSES, so that every
/// stock row names a distinct (warehouse, SKU) item, as a full count does.
const WAREHOUSES: usize = 100;

pub fn run(args: &[String]) -> Result<(), String> {
    let mut rows: usize = 1_000_000;
    let mut given_oms: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => rows = value.parse().map_err(|_| "--rows: a number of rows")?,
            // Another build of oms (a debug one, say) instead of building a release one.
            "--oms" => given_oms = Some(PathBuf::from(value)),
            _ => return Err("usage: cargo xtask bench imports [--rows N] [--oms PATH]".into()),
        }
    }
    let root = crate::root();
    let given = given_oms.is_some();
    let oms = match given_oms {
        Some(path) => path,
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            eprintln!("bench imports: cargo build --release -p oms");
            crate::tools::run_status(
                Command::new(&cargo)
                    .args(["build", "--release", "-p", "oms"])
                    .current_dir(&root),
                "cargo build --release -p oms",
            )?;
            crate::bench::target_dir(&root).join("release/oms")
        }
    };
    let work = std::env::temp_dir().join(format!("oms-bench-imports-{}", std::process::id()));
    std::fs::create_dir_all(work.join("data")).map_err(|e| e.to_string())?;
    let result = measure(&oms, &work, rows, given);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(oms: &Path, work: &Path, rows: usize, given: bool) -> Result<(), String> {
    let stock = work.join("stock.csv");
    write_world(work, rows).map_err(|e| format!("writing the feeds: {e}"))?;
    let size = std::fs::metadata(&stock).map_err(|e| e.to_string())?.len();
    let port = free_port()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(oms)
        .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(work.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("oms up: {e}"))?;
    let outcome = (|| {
        wait_listening(port)?;
        for kind in ["catalog", "warehouses"] {
            import(
                oms,
                &endpoint,
                kind,
                &work.join(format!("{kind}.csv")),
                false,
            )?;
        }
        let idle_kib = peak_kib(&server)?;
        let sampler = Sampler::start(server.id());
        let started = Instant::now();
        let cli_kib = import(oms, &endpoint, "stock", &stock, true)?;
        let first_s = started.elapsed().as_secs_f64();
        let samples = sampler.stop();
        let server_kib = peak_kib(&server)?;
        let started = Instant::now();
        import(oms, &endpoint, "stock", &stock, false)?;
        let again_s = started.elapsed().as_secs_f64();
        let figures = format!(
            "{rows} stock rows ({:.1} MB of CSV, one row per warehouse and SKU, {WAREHOUSES} \
             warehouses) applied in {first_s:.1} s ({:.0} rows/s); the same feed again \
             (checked whole, nothing applied: already_applied) {again_s:.1} s.\n\n\
             | peak RSS | MiB |\n|---|---:|\n\
             | `oms up`, before the feed | {} |\n\
             | `oms up`, after the feed | {} |\n\
             | `oms import` (the CLI) | {} |\n\n\
             The server's RSS while the feed ran, by quarter of its time (MiB, the \
             highest sample of each; flat means bounded): {}",
            size as f64 / 1e6,
            rows as f64 / first_s,
            idle_kib / 1024,
            server_kib / 1024,
            cli_kib / 1024,
            quarters(&samples),
        );
        println!("{figures}");
        write_section(oms, rows, given, &figures)?;
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    outcome
}

/// `oms import KIND FILE` under /usr/bin/time -v; the CLI's peak RSS in KiB (or 0
/// when `measure` is false).
fn import(
    oms: &Path,
    endpoint: &str,
    kind: &str,
    file: &Path,
    measure: bool,
) -> Result<u64, String> {
    let mut cmd = if measure {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(oms);
        c
    } else {
        Command::new(oms)
    };
    cmd.args(["--endpoint", endpoint, "import", kind]).arg(file);
    let out = cmd
        .output()
        .map_err(|e| format!("oms import {kind}: {e} (is /usr/bin/time installed?)"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "oms import {kind}: {}\n{}{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// A process's peak resident set so far (VmHWM), KiB.
fn peak_kib(child: &Child) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .map_err(|e| format!("/proc of oms up: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/PID/status".into())
}

/// The catalog and warehouses the stock names, and the stock feed: one row per
/// (warehouse, SKU), written as it goes.
fn write_world(work: &Path, rows: usize) -> std::io::Result<()> {
    let skus = rows.div_ceil(WAREHOUSES);
    let mut catalog = BufWriter::new(std::fs::File::create(work.join("catalog.csv"))?);
    writeln!(catalog, "sku,name,price_cents")?;
    for s in 0..skus {
        writeln!(catalog, "SKU-{s:06},Item {s},{}", 100 + s % 5000)?;
    }
    catalog.flush()?;
    let mut whs = BufWriter::new(std::fs::File::create(work.join("warehouses.csv"))?);
    writeln!(whs, "warehouse_id,name,country,lat,lon")?;
    for w in 0..WAREHOUSES {
        writeln!(
            whs,
            "WH-{w:03},Warehouse {w},US,{:.2},{:.2}",
            30.0 + (w % 15) as f64,
            -120.0 + (w % 40) as f64
        )?;
    }
    whs.flush()?;
    let mut stock = BufWriter::new(std::fs::File::create(work.join("stock.csv"))?);
    writeln!(stock, "warehouse_id,sku,on_hand")?;
    for i in 0..rows {
        writeln!(
            stock,
            "WH-{:03},SKU-{:06},{}",
            i % WAREHOUSES,
            i / WAREHOUSES,
            i % 997
        )?;
    }
    stock.flush()
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn wait_listening(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("oms up did not listen on {port} within 30 s"))
}

/// Replaces (or appends) this bench's section of docs/benchmarks.md.
fn write_section(oms: &Path, rows: usize, given: bool, figures: &str) -> Result<(), String> {
    let root = crate::root();
    let path = root.join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = format!(
        "{SECTION_START}\n## Stock feed: `oms import` of {rows} rows\n\n\
         - Command: `cargo xtask bench imports --rows {rows}{oms_arg}` (then `/usr/bin/time -v oms \
         import stock stock.csv` against `oms up`; the server's peak is its VmHWM)\n\
         - Date: {date}\n\
         - Build: `{build}` (the tree at commit {commit})\n\
         - Machine: nproc {nproc}\n\n{figures}\n{SECTION_END}\n",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        build = oms.display(),
        oms_arg = if given {
            format!(" --oms {}", oms.display())
        } else {
            String::new()
        },
        commit = crate::bench::git_head(&root),
        nproc = std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    std::fs::write(&path, replace_section(&text, &new))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// This bench's section of a docs/benchmarks.md text, markers included.
pub fn section(text: &str) -> Option<&str> {
    let a = text.find(SECTION_START)?;
    let b = a + text[a..].find(SECTION_END)?;
    Some(&text[a..b + SECTION_END.len()])
}

fn replace_section(text: &str, new: &str) -> String {
    match section(text) {
        Some(old) => text.replacen(old, new.trim_end(), 1),
        None => format!("{}\n\n{}\n", text.trim_end(), new.trim_end()),
    }
}

/// Samples a process's VmRSS every 250 ms on a thread of its own.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut kib = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(v) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    kib.push(v);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            kib
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The highest sample of each quarter of `kib`, in MiB.
fn quarters(kib: &[u64]) -> String {
    if kib.len() < 4 {
        return "too short to sample".into();
    }
    kib.chunks(kib.len().div_ceil(4))
        .map(|q| (q.iter().max().copied().unwrap_or(0) / 1024).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
