//! `oms bench`: in-memory executions per second of one machine, for comparison with a
//! peer measured in the same run (see `cargo xtask bench`).

use crate::exec::load_machine;
use asl::runner::{self, RunHost, RunOptions, SeededRandom, TaskOutcome, VirtualClock};
use asl::{ExecutionInfo, Machine, Status};
use chrono::Utc;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

// The flags of `oms bench` (its help is the `Bench` subcommand's doc comment).
#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long)]
    definition: PathBuf,
    /// How many executions to measure [default: 20000 in memory, 2000 durable].
    #[arg(long)]
    executions: Option<usize>,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// A fixed input for every execution. Without it, execution i gets
    /// {"orderId": "o-i", "amount": i % 200}, as the peer benchmark does.
    #[arg(long)]
    input: Option<String>,
    /// Run executions through the durable runtime, as `oms up` does; `bench-*`
    /// Lambda functions go to the built-in bench handlers (see shared/bench).
    #[arg(long)]
    durable: bool,
    /// Where the durable bench keeps its database [default: a fresh temporary
    /// folder, deleted afterwards].
    #[arg(long, requires = "durable")]
    data_dir: Option<PathBuf>,
    /// oms.toml whose [[tasks]] rules route the durable bench's tasks.
    #[arg(long, requires = "durable")]
    config: Option<PathBuf>,
    /// Durable executions run before the measured ones, 8 at a time.
    #[arg(long, requires = "durable", default_value_t = 200)]
    warmup: usize,
    /// How every measured durable execution must end: STATUS or STATUS:ERROR
    /// (e.g. FAILED:Saga.Compensated); exit 2 otherwise.
    #[arg(long, requires = "durable")]
    expect: Option<String>,
}

/// Executions measured when `--executions` is not given: in memory, and durable.
const IN_MEMORY_EXECUTIONS: usize = 20_000;
const DURABLE_EXECUTIONS: usize = 2_000;

/// `oms bench`: in memory, or with `--durable` through the durable runtime.
pub fn bench_command(args: BenchArgs) -> Result<ExitCode, String> {
    if args.durable {
        return bench_durable(&args);
    }
    bench(
        &args.definition,
        args.executions.unwrap_or(IN_MEMORY_EXECUTIONS),
        args.concurrency,
        args.input.as_deref(),
    )
}

fn input_for(i: usize, fixed: Option<&Value>) -> Value {
    match fixed {
        Some(v) => v.clone(),
        None => json!({"orderId": format!("o-{i}"), "amount": i % 200}),
    }
}

/// Runs `count` executions on one thread, returning each one's latency in nanoseconds.
fn run_batch(
    machine: &Arc<Machine>,
    first: usize,
    count: usize,
    fixed: Option<&Value>,
) -> Result<Vec<u64>, String> {
    let start = Utc::now();
    let mut host = RunHost {
        clock: VirtualClock(start),
        random: SeededRandom::new(first as u64),
    };
    let info = ExecutionInfo::local("bench", "bench", start);
    let mut handler = |_: &asl::TaskCall| TaskOutcome::ok(Value::Null);
    let mut latencies = Vec::with_capacity(count);
    for i in first..first + count {
        let input = input_for(i, fixed);
        let t0 = Instant::now();
        let outcome = runner::run(
            machine.clone(),
            input,
            &mut handler,
            &mut host,
            RunOptions {
                info: Some(info.clone()),
                record_history: false,
            },
        );
        latencies.push(t0.elapsed().as_nanos() as u64);
        if outcome.status == Status::Running {
            return Err(format!("execution {i} did not finish"));
        }
    }
    Ok(latencies)
}

fn bench(
    definition: &Path,
    executions: usize,
    concurrency: usize,
    input: Option<&str>,
) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(definition)
        .map_err(|e| format!("cannot read {}: {e}", definition.display()))?;
    let machine = Arc::new(load_machine(&text).map_err(|r| format!("invalid definition: {r}"))?);
    let fixed: Option<Value> = match input {
        Some(s) => {
            Some(serde_json::from_str(s).map_err(|e| format!("the input is not valid JSON: {e}"))?)
        }
        None => None,
    };
    let concurrency = concurrency.max(1);
    // Warm-up, as the peer harness does, so both sides are measured hot.
    run_batch(&machine, 0, executions.min(500), fixed.as_ref())?;
    let per = executions.div_ceil(concurrency);
    let t0 = Instant::now();
    let mut latencies: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency)
            .map(|w| {
                let first = w * per;
                let count = per.min(executions.saturating_sub(first));
                let machine = &machine;
                let fixed = fixed.as_ref();
                s.spawn(move || run_batch(machine, first, count, fixed))
            })
            .collect();
        let mut all = Vec::with_capacity(executions);
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| "a bench thread panicked".to_string())??,
            );
        }
        Ok::<_, String>(all)
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let q = |p: f64| -> f64 {
        let i = ((p * latencies.len() as f64) as usize).min(latencies.len().saturating_sub(1));
        latencies
            .get(i)
            .map_or(0.0, |ns| (*ns as f64 / 1e6 * 1e4).round() / 1e4)
    };
    println!(
        "{}",
        json!({
            "impl": "oms",
            "executions": executions,
            "concurrency": concurrency,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "exec_per_s": (executions as f64 / seconds).round(),
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// The CPU time this process has used (all threads, user and system), in milliseconds.
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 1000.0 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; `getconf` confirms it
    // without a libc dependency.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `count` executions named `{prefix}-{i}` with `concurrency` in flight; returns
/// each one's latency from submission to completion, in nanoseconds.
async fn run_durable(
    rt: &Arc<saga_core::runtime::Runtime>,
    template: &Arc<(String, String, Arc<Machine>)>,
    prefix: &str,
    count: usize,
    concurrency: usize,
    fixed: Option<&Value>,
) -> Result<Vec<u64>, String> {
    use saga_core::runtime::NewExecution;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count).max(1) {
        let (rt, template, next) = (rt.clone(), template.clone(), next.clone());
        let (prefix, fixed) = (prefix.to_string(), fixed.cloned());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(latencies);
                }
                let input = input_for(i, fixed.as_ref());
                let (machine_arn, definition, machine) = &*template;
                let t0 = Instant::now();
                let (arn, _) = rt
                    .start(NewExecution {
                        state_machine_arn: machine_arn.clone(),
                        name: format!("{prefix}-{i}"),
                        role_arn: "arn:aws:iam::000000000000:role/oms-bench".into(),
                        express: false,
                        definition: definition.clone(),
                        machine: machine.clone(),
                        input_text: input.to_string(),
                        input,
                    })
                    .await
                    .map_err(|e| format!("cannot start execution {prefix}-{i}: {e}"))?;
                rt.wait_finished(&arn).await;
                latencies.push(t0.elapsed().as_nanos() as u64);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(r) = workers.join_next().await {
        all.extend(r.map_err(|e| format!("a bench worker failed: {e}"))??);
    }
    Ok(all)
}

/// `oms bench --durable`: executions through the durable runtime (SQLite, fsync on
/// every commit, group commit across executions), as `oms up` runs them.
fn bench_durable(args: &BenchArgs) -> Result<ExitCode, String> {
    use crate::invoker::{Config, ConfiguredInvoker, TaskRule};
    use saga_core::runtime::Runtime;
    use saga_core::store::Store;

    let text = std::fs::read_to_string(&args.definition)
        .map_err(|e| format!("cannot read {}: {e}", args.definition.display()))?;
    let machine = Arc::new(load_machine(&text).map_err(|r| format!("invalid definition: {r}"))?);
    let fixed: Option<Value> = match args.input.as_deref() {
        Some(s) => {
            Some(serde_json::from_str(s).map_err(|e| format!("the input is not valid JSON: {e}"))?)
        }
        None => None,
    };
    let expect: Option<(String, Option<String>)> =
        args.expect.as_deref().map(|e| match e.split_once(':') {
            Some((s, err)) => (s.to_ascii_uppercase(), Some(err.to_string())),
            None => (e.to_ascii_uppercase(), None),
        });
    // As `oms up` routes tasks: the given oms.toml, or bench-* to the bench handlers.
    let config = match args.config.as_deref() {
        Some(p) => Config::load(p)?,
        None => Config {
            tasks: vec![TaskRule {
                resource: "arn:aws:lambda:*:*:function:bench-*".into(),
                builtin: Some("bench".into()),
                lambda_endpoint: None,
                state_machines: None,
            }],
            ..Config::default()
        },
    };
    let invoker = Arc::new(ConfiguredInvoker::new(&config.tasks)?.in_account(&config.server));
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros() % 1_000_000_000
    );
    let (dir, _cleanup) = match args.data_dir.as_deref() {
        Some(d) => (d.to_path_buf(), None),
        None => {
            let d = std::env::temp_dir().join(format!("oms-bench-{run_id}"));
            (d.clone(), Some(TempDir(d)))
        }
    };
    let machine_name = args
        .definition
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| s.replace('.', "-"))
        .unwrap_or_else(|| "bench".into());
    let machine_arn = format!("arn:aws:states:us-east-1:000000000000:stateMachine:{machine_name}");
    let template = Arc::new((machine_arn.clone(), text, machine));
    let concurrency = args.concurrency.max(1);
    let n = args.executions.unwrap_or(DURABLE_EXECUTIONS);

    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // With OMS_DB_KEY set, the bench measures an encrypted store.
    let store = Store::open_with_key(&dir, dbkey::from_env()?).map_err(|e| e.to_string())?;
    let rt = Runtime::new(store.clone(), invoker);
    let measured = tokio_rt.block_on(async {
        if args.warmup > 0 {
            let warm = format!("warm-{run_id}");
            run_durable(&rt, &template, &warm, args.warmup, 8, fixed.as_ref()).await?;
        }
        let cpu0 = process_cpu_ms();
        let t0 = Instant::now();
        let latencies = run_durable(
            &rt,
            &template,
            &format!("run-{run_id}"),
            n,
            concurrency,
            fixed.as_ref(),
        )
        .await?;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = cpu0.zip(process_cpu_ms()).map(|(a, b)| b - a);
        Ok::<_, String>((latencies, seconds, cpu))
    });
    let (mut latencies, seconds, cpu_ms) = match measured {
        Ok(m) => m,
        Err(e) => {
            store.close();
            return Err(e);
        }
    };
    // How the measured executions ended, as the store has them.
    let prefix = format!("run-{run_id}-%");
    let outcomes: Result<Vec<(String, Option<String>, i64)>, _> = store.read(|c| {
        let mut st = c.prepare(
            "SELECT status, error, count(*) FROM executions \
             WHERE state_machine_arn = ?1 AND name LIKE ?2 GROUP BY status, error",
        )?;
        let rows = st.query_map([machine_arn.as_str(), prefix.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    });
    store.close();
    drop(rt);
    let outcomes = outcomes.map_err(|e| format!("cannot read the executions back: {e}"))?;
    let count = |status: &str| -> i64 {
        outcomes
            .iter()
            .filter(|(s, _, _)| s == status)
            .map(|(_, _, n)| n)
            .sum()
    };
    let total: i64 = outcomes.iter().map(|(_, _, n)| n).sum();
    let mut problems = Vec::new();
    if total != n as i64 || latencies.len() != n {
        problems.push(format!(
            "{n} executions were asked for, {total} are stored and {} finished",
            latencies.len()
        ));
    }
    if count("RUNNING") > 0 {
        problems.push(format!("{} executions are still RUNNING", count("RUNNING")));
    }
    if let Some((status, error)) = &expect {
        for (s, e, k) in &outcomes {
            if s != status || (error.is_some() && e != error) {
                problems.push(format!(
                    "{k} executions ended {s}{} instead of {status}{}",
                    e.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
                    error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    latencies.sort_unstable();
    let q = |p: f64| -> f64 {
        let i = ((p * latencies.len() as f64) as usize).min(latencies.len().saturating_sub(1));
        latencies
            .get(i)
            .map_or(0.0, |ns| (*ns as f64 / 1e6 * 1e3).round() / 1e3)
    };
    let errors: serde_json::Map<String, Value> = outcomes
        .iter()
        .filter_map(|(_, e, k)| e.as_ref().map(|e| (e.clone(), json!(k))))
        .collect();
    println!(
        "{}",
        json!({
            "impl": "oms-durable",
            "executions": n,
            "concurrency": concurrency,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "sagas_per_s": (n as f64 / seconds * 10.0).round() / 10.0,
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
            "cpu_ms_per_saga": cpu_ms.map(|c| (c / n.max(1) as f64 * 1000.0).round() / 1000.0),
            "succeeded": count("SUCCEEDED"),
            "failed": count("FAILED"),
            "other": total - count("SUCCEEDED") - count("FAILED"),
            "errors": errors,
            "warmup": args.warmup,
        })
    );
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(problems.join("; "))
    }
}
