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
    template: &Arc<(String, Arc<str>, Arc<Machine>)>,
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
                        parent: None,
                        test_case: None,
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
    use crate::invoker::ConfiguredInvoker;
    use saga_core::runtime::Runtime;
    use saga_core::store::ExecutionStore;

    let text = std::fs::read_to_string(&args.definition)
        .map_err(|e| format!("cannot read {}: {e}", args.definition.display()))?;
    let machine = Arc::new(load_machine(&text).map_err(|r| format!("invalid definition: {r}"))?);
    let fixed = fixed_input(args)?;
    let config = bench_config(args)?;
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
    let machine_arn = machine_arn(&args.definition);
    let template = Arc::new((machine_arn.clone(), Arc::from(text), machine));
    let concurrency = args.concurrency.max(1);
    let n = args.executions.unwrap_or(DURABLE_EXECUTIONS);

    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // With OMS_DB_KEY set, the bench measures an encrypted store.
    let store =
        ExecutionStore::open_with_key(&dir, dbkey::from_env()?).map_err(|e| e.to_string())?;
    let rt = Runtime::new(store.clone(), invoker);
    // Every step fsynced, as the benchmark has always measured it beside Restate (fsync
    // on): in-process there is no answer to wait for a sync, so lazy steps would never
    // be made durable and the comparison would not be like for like.
    rt.set_durable_steps(true);
    let measured = tokio_rt.block_on(measure(
        &rt,
        &template,
        &run_id,
        args,
        (n, concurrency),
        fixed.as_ref(),
    ));
    let (mut latencies, seconds, cpu_ms) = match measured {
        Ok(m) => m,
        Err(e) => {
            store.close();
            return Err(e);
        }
    };
    let outcomes = read_outcomes(&store, &machine_arn, &run_id);
    store.close();
    drop(rt);
    let outcomes = outcomes?;
    let problems = outcome_problems(&outcomes, n, latencies.len(), &expect(args));
    latencies.sort_unstable();
    let measured = (latencies, seconds, cpu_ms);
    println!(
        "{}",
        durable_summary(args, n, concurrency, &measured, &outcomes)
    );
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(problems.join("; "))
    }
}

/// How a measured execution ended, as the store has them: status, error, how many.
type Outcome = (String, Option<String>, i64);

/// Runs the warm-up, then `n` measured executions with `concurrency` in flight:
/// their latencies (ns), the wall seconds and the process CPU ms they took.
async fn measure(
    rt: &Arc<saga_core::runtime::Runtime>,
    template: &Arc<(String, Arc<str>, Arc<Machine>)>,
    run_id: &str,
    args: &BenchArgs,
    (n, concurrency): (usize, usize),
    fixed: Option<&Value>,
) -> Result<(Vec<u64>, f64, Option<f64>), String> {
    if args.warmup > 0 {
        let warm = format!("warm-{run_id}");
        run_durable(rt, template, &warm, args.warmup, 8, fixed).await?;
    }
    let cpu0 = process_cpu_ms();
    let t0 = Instant::now();
    let latencies = run_durable(
        rt,
        template,
        &format!("run-{run_id}"),
        n,
        concurrency,
        fixed,
    )
    .await?;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu0.zip(process_cpu_ms()).map(|(a, b)| b - a);
    Ok((latencies, seconds, cpu))
}

/// `--input`, parsed.
fn fixed_input(args: &BenchArgs) -> Result<Option<Value>, String> {
    Ok(match args.input.as_deref() {
        Some(s) => {
            Some(serde_json::from_str(s).map_err(|e| format!("the input is not valid JSON: {e}"))?)
        }
        None => None,
    })
}

/// The benchmarked state machine's ARN, named after its definition's file.
fn machine_arn(definition: &Path) -> String {
    let machine_name = definition
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| s.replace('.', "-"))
        .unwrap_or_else(|| "bench".into());
    format!("arn:aws:states:us-east-1:000000000000:stateMachine:{machine_name}")
}

/// How the measured executions (`run-{run_id}-*`) ended, as the store has them.
fn read_outcomes(
    store: &saga_core::store::ExecutionStore,
    machine_arn: &str,
    run_id: &str,
) -> Result<Vec<Outcome>, String> {
    let prefix = format!("run-{run_id}-%");
    let outcomes: Result<Vec<Outcome>, _> = store.read(|c| {
        let mut st = c.prepare(
            "SELECT status, error, count(*) FROM executions \
             WHERE state_machine_arn = ?1 AND name LIKE ?2 GROUP BY status, error",
        )?;
        let rows = st.query_map([machine_arn, prefix.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    });
    outcomes.map_err(|e| format!("cannot read the executions back: {e}"))
}

/// `--expect STATUS[:ERROR]`, the status upper-cased.
fn expect(args: &BenchArgs) -> Option<(String, Option<String>)> {
    args.expect.as_deref().map(|e| match e.split_once(':') {
        Some((s, err)) => (s.to_ascii_uppercase(), Some(err.to_string())),
        None => (e.to_ascii_uppercase(), None),
    })
}

/// As `oms up` routes tasks: the given oms.toml, or bench-* to the bench handlers.
fn bench_config(args: &BenchArgs) -> Result<crate::invoker::Config, String> {
    use crate::invoker::{Config, TaskRule};
    Ok(match args.config.as_deref() {
        Some(p) => Config::load(p)?,
        None => Config {
            tasks: vec![TaskRule {
                resource: "arn:aws:lambda:*:*:function:bench-*".into(),
                builtin: Some("bench".into()),
                lambda_endpoint: None,
                aws_endpoint: None,
                aws_region: None,
                s3_folder: None,
                state_machines: None,
            }],
            ..Config::default()
        },
    })
}

/// How many of `outcomes` ended with `status`.
fn count(outcomes: &[Outcome], status: &str) -> i64 {
    outcomes
        .iter()
        .filter(|(s, _, _)| s == status)
        .map(|(_, _, n)| n)
        .sum()
}

/// What is wrong with a run of `n` executions, `finished` of which were seen to end:
/// lost or unfinished executions, or ends other than `expect`.
fn outcome_problems(
    outcomes: &[Outcome],
    n: usize,
    finished: usize,
    expect: &Option<(String, Option<String>)>,
) -> Vec<String> {
    let total: i64 = outcomes.iter().map(|(_, _, n)| n).sum();
    let mut problems = Vec::new();
    if total != n as i64 || finished != n {
        problems.push(format!(
            "{n} executions were asked for, {total} are stored and {finished} finished"
        ));
    }
    if count(outcomes, "RUNNING") > 0 {
        problems.push(format!(
            "{} executions are still RUNNING",
            count(outcomes, "RUNNING")
        ));
    }
    if let Some((status, error)) = expect {
        for (s, e, k) in outcomes {
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
    problems
}

/// The one-line JSON report of a durable run: `measured` is the sorted latencies
/// (ns), the wall seconds and the process CPU ms.
fn durable_summary(
    args: &BenchArgs,
    n: usize,
    concurrency: usize,
    measured: &(Vec<u64>, f64, Option<f64>),
    outcomes: &[Outcome],
) -> Value {
    let (latencies, seconds, cpu_ms) = measured;
    let total: i64 = outcomes.iter().map(|(_, _, n)| n).sum();
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
    json!({
        "impl": "oms-durable",
        "executions": n,
        "concurrency": concurrency,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "sagas_per_s": (n as f64 / seconds * 10.0).round() / 10.0,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "cpu_ms_per_saga": cpu_ms.map(|c| (c / n.max(1) as f64 * 1000.0).round() / 1000.0),
        "succeeded": count(outcomes, "SUCCEEDED"),
        "failed": count(outcomes, "FAILED"),
        "other": total - count(outcomes, "SUCCEEDED") - count(outcomes, "FAILED"),
        "errors": errors,
        "warmup": args.warmup,
    })
}
