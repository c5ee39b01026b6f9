//! The engine's own data-driven cases (`engine_cases/*.json`): whole executions run by
//! the in-memory runner under a virtual clock, with scripted task handlers, checked
//! against what AWS Step Functions does. They need nothing outside this repository.
//!
//! A case is
//! `{"description", "definition", "input", "tasks"?, "expected"}` where `expected` is
//! `{"status": "SUCCEEDED", "output": ..}`, `{"status": "FAILED", "error": .., "cause"?: ..}`
//! (a `cause` of `null` means the execution must have none; an absent one is not
//! checked) or `{"status": "TIMED_OUT"}`, and `tasks` maps a Lambda function ARN (or,
//! for other integrations, the Resource) to a behaviour:
//!
//! - `{"return": V}`: returns V;
//! - `{"echo": true}`: returns its payload;
//! - `{"fail": {"error": E, "cause"?: C}}`: fails every time;
//! - `{"fail_times": N, "error": E, "cause"?: C, "then": V}`: fails the first N calls;
//! - `{"sleep_seconds": S, "return": V}`: takes S seconds (for TimeoutSeconds);
//! - `{"return_string_bytes": N}`: returns a string of N ASCII characters (payload limit).
//!
//! `expected` may also hold `task_resources`: the `[resourceType, resource]` of every
//! TaskScheduled event of the history, in order.

use asl::runner::{run, RunHost, RunOptions, SeededRandom, TaskOutcome, VirtualClock};
use asl::{Failure, Machine, TaskCall};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MIN_CASES: usize = 50;

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engine_cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn start_time() -> DateTime<Utc> {
    "2024-01-01T00:00:00Z".parse().expect("fixed start time")
}

/// Scripted task handlers, with a call count per key for `fail_times`.
struct Tasks {
    behaviours: serde_json::Map<String, Value>,
    calls: HashMap<String, u64>,
}

impl Tasks {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome {
        let key = call
            .function
            .clone()
            .unwrap_or_else(|| call.resource.clone());
        let n = self.calls.entry(key.clone()).or_insert(0);
        *n += 1;
        let n = *n;
        let Some(b) = self.behaviours.get(&key) else {
            return TaskOutcome::err(Failure::new(
                "Test.NoHandler",
                format!("the case gives no behaviour for '{key}'"),
            ));
        };
        let failure = |error: &Value, cause: Option<&Value>| Failure {
            error: error.as_str().unwrap_or_default().to_string(),
            cause: cause.and_then(Value::as_str).map(str::to_string),
        };
        if let Some(f) = b.get("fail") {
            return TaskOutcome::err(failure(&f["error"], f.get("cause")));
        }
        if let Some(times) = b.get("fail_times").and_then(Value::as_u64) {
            if n <= times {
                return TaskOutcome::err(failure(&b["error"], b.get("cause")));
            }
            return TaskOutcome::ok(b.get("then").cloned().unwrap_or(Value::Null));
        }
        if b.get("echo").and_then(Value::as_bool) == Some(true) {
            return TaskOutcome::ok(call.payload.clone());
        }
        if let Some(len) = b.get("return_string_bytes").and_then(Value::as_u64) {
            return TaskOutcome::ok(Value::String("x".repeat(len as usize)));
        }
        let result = b.get("return").cloned().unwrap_or(Value::Null);
        match b.get("sleep_seconds").and_then(Value::as_f64) {
            Some(s) => TaskOutcome {
                result: Ok(result),
                took: Some(std::time::Duration::from_secs_f64(s)),
            },
            None => TaskOutcome::ok(result),
        }
    }
}

/// Runs one case; returns the mismatches found.
fn check(case: &Value) -> Result<(), String> {
    let machine = Machine::from_value(&case["definition"])
        .map_err(|e| format!("the definition does not parse: {e}"))?;
    let mut tasks = Tasks {
        behaviours: case
            .get("tasks")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        calls: HashMap::new(),
    };
    let mut handler = |call: &TaskCall| tasks.call(call);
    let mut host = RunHost {
        clock: VirtualClock(start_time()),
        random: SeededRandom::new(7),
    };
    let outcome = run(
        Arc::new(machine),
        case["input"].clone(),
        &mut handler,
        &mut host,
        RunOptions {
            info: None,
            record_history: case["expected"].get("task_resources").is_some(),
        },
    );
    let expected = &case["expected"];
    let want_status = expected["status"].as_str().unwrap_or("?");
    let got = format!(
        "status {}, output {}, error {:?}, cause {:?}",
        outcome.status.as_str(),
        outcome
            .output
            .as_ref()
            .map_or("none".to_string(), |o| abbreviate(&o.to_string())),
        outcome.error,
        outcome.cause.as_deref().map(abbreviate),
    );
    let mut problems = Vec::new();
    if outcome.status.as_str() != want_status {
        problems.push(format!("expected status {want_status}"));
    }
    match want_status {
        "SUCCEEDED" if outcome.output.as_ref() != Some(&expected["output"]) => {
            problems.push(format!(
                "expected output {}",
                abbreviate(&expected["output"].to_string())
            ));
        }
        "FAILED" => {
            let want_error = expected.get("error").and_then(Value::as_str);
            if outcome.error.as_deref() != want_error {
                problems.push(format!("expected error {want_error:?}"));
            }
            if let Some(c) = expected.get("cause") {
                let want_cause = c.as_str();
                if outcome.cause.as_deref() != want_cause {
                    problems.push(format!("expected cause {want_cause:?}"));
                }
            }
        }
        _ => {}
    }
    if let Some(want) = expected.get("task_resources") {
        let got = task_resources(&outcome);
        if &got != want {
            problems.push(format!("expected task_resources {want}, got {got}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; got {got}", problems.join("; ")))
    }
}

/// `[resourceType, resource]` of every TaskScheduled event, in order.
fn task_resources(outcome: &asl::runner::Outcome) -> Value {
    outcome
        .history
        .iter()
        .filter(|e| serde_json::to_value(&e.kind).ok() == Some(Value::from("TaskScheduled")))
        .map(|e| {
            serde_json::json!([
                e.details.value()["resourceType"],
                e.details.value()["resource"]
            ])
        })
        .collect()
}

fn abbreviate(s: &str) -> String {
    if s.len() <= 400 {
        s.to_string()
    } else {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

#[test]
fn engine_cases() {
    let files = case_files();
    assert!(
        files.len() >= MIN_CASES,
        "expected at least {MIN_CASES} cases in tests/engine_cases, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(path).expect("readable case file");
        let case: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: not valid JSON: {e}"));
                continue;
            }
        };
        for field in ["description", "definition", "input", "expected"] {
            if case.get(field).is_none() {
                failures.push(format!("{name}: the case has no '{field}'"));
            }
        }
        if let Err(e) = check(&case) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} engine cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Runs a definition as given, without the validator (as the in-memory runner allows),
/// with tasks that return at once.
fn run_unvalidated(definition: Value) -> asl::runner::Outcome {
    let machine = Machine::from_value(&definition).expect("the definition parses");
    let mut handler = |_: &TaskCall| TaskOutcome::ok(Value::Null);
    let mut host = RunHost {
        clock: VirtualClock(start_time()),
        random: SeededRandom::new(7),
    };
    let opts = RunOptions {
        info: None,
        record_history: false,
    };
    run(
        Arc::new(machine),
        Value::Null,
        &mut handler,
        &mut host,
        opts,
    )
}

#[test]
fn a_wait_past_the_end_of_time_is_too_long_not_a_panic() {
    let out = run_unvalidated(serde_json::json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 1e300, "End": true}}}));
    assert_eq!(out.status.as_str(), "FAILED");
    assert_eq!(out.error.as_deref(), Some("States.Runtime"));
    assert!(
        out.cause
            .as_deref()
            .is_some_and(|c| c.ends_with("Wait state delay is too long.")),
        "{:?}",
        out.cause
    );
}

#[test]
fn a_machine_timeout_past_the_end_of_time_never_fires() {
    let out = run_unvalidated(
        serde_json::json!({"TimeoutSeconds": 1_000_000_000_000_000_000u64,
        "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": true}}}),
    );
    assert_eq!(out.status.as_str(), "SUCCEEDED", "{:?}", out.cause);
}

#[test]
fn a_task_timeout_literal_out_of_range_is_a_runtime_error() {
    let out = run_unvalidated(serde_json::json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
              "TimeoutSeconds": 1e30, "End": true}}}));
    assert_eq!(out.status.as_str(), "FAILED");
    assert_eq!(
        out.cause.as_deref(),
        Some("An error occurred while executing the state 'T' (entered at the event id #2). The value for the field 'TimeoutSeconds' must be between 1 and 99999999")
    );
}
