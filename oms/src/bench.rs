//! `oms bench`: in-memory executions per second of one machine, for comparison with a
//! peer measured in the same run (see `cargo xtask bench`).

use crate::exec::load_machine;
use asl::runner::{self, RunHost, RunOptions, SeededRandom, TaskOutcome, VirtualClock};
use asl::{ExecutionInfo, Machine, Status};
use chrono::Utc;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

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

pub fn bench(
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
