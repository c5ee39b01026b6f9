//! Property tests of the evaluator: random small state machines (every state type,
//! random paths, Parameters, Choice rules, Retry/Catch and loops) run on random inputs
//! with a handler that randomly succeeds or fails, under a virtual clock. Whatever the
//! machine does, the runner must not panic and must end (not RUNNING).
//!
//! Machines are built from a stream of numbers that proptest generates and shrinks
//! (shorter streams and smaller numbers give simpler machines: choice 0 is always
//! the simplest option).

use asl::runner::{run, RunHost, RunOptions, SeededRandom, TaskOutcome, VirtualClock};
use asl::{Failure, Machine, Status, TaskCall};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:f";
const INVOKE: &str = "arn:aws:states:::lambda:invoke";
const SERVICE: &str = "arn:aws:states:::dynamodb:getItem";

/// Choices drawn from a proptest-generated stream; 0 once it runs out.
struct Src<'a> {
    data: &'a [u32],
    pos: usize,
}

impl Src<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        if n == 0 {
            0
        } else {
            v as usize % n
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.pick(one_in) == 1
    }
    fn of<T: Clone>(&mut self, options: &[T]) -> T {
        options[self.pick(options.len())].clone()
    }
}

const PATHS: &[&str] = &[
    "$",
    "$.a",
    "$.b",
    "$.a.b",
    "$.arr",
    "$.arr[0]",
    "$.arr[*]",
    "$.n",
    "$.missing",
    "$$.State.Name",
    "$$.Execution.Input",
    "$$.State.EnteredTime",
    "$v1",
    "$v2.a",
];

const REF_PATHS: &[&str] = &["$", "$.r", "$.a", "$.a.b", "$.arr", "$.n.x"];

const INTRINSICS: &[&str] = &[
    "States.Format('{} and {}', $.a, $.n)",
    "States.Array($.a, 1, $.n)",
    "States.MathAdd($.n, 1)",
    "States.JsonToString($)",
    "States.StringToJson($.a)",
    "States.ArrayLength($.arr)",
    "States.UUID()",
    "States.MathRandom(1, 10)",
    "States.ArrayGetItem($.arr, 0)",
];

fn literal(src: &mut Src) -> Value {
    match src.pick(7) {
        0 => json!(1),
        1 => json!("x"),
        2 => json!(null),
        3 => json!(true),
        4 => json!([1, "two", {"k": 3}]),
        5 => json!({"a": {"b": 2}}),
        _ => json!(2.5),
    }
}

fn template(src: &mut Src, depth: usize) -> Value {
    let mut m = Map::new();
    let n = 1 + src.pick(3);
    for i in 0..n {
        match src.pick(if depth < 2 { 5 } else { 3 }) {
            0 => {
                m.insert(format!("k{i}"), literal(src));
            }
            1 => {
                m.insert(format!("k{i}.$"), json!(src.of(PATHS)));
            }
            2 => {
                m.insert(format!("k{i}.$"), json!(src.of(INTRINSICS)));
            }
            3 => {
                m.insert(format!("k{i}"), template(src, depth + 1));
            }
            _ => {
                m.insert(
                    format!("k{i}"),
                    json!([template(src, depth + 1), literal(src)]),
                );
            }
        }
    }
    Value::Object(m)
}

fn opt_path(src: &mut Src, paths: &[&str]) -> Option<Value> {
    match src.pick(5) {
        0 | 1 => None,
        2 => Some(Value::Null),
        _ => Some(json!(src.of(paths))),
    }
}

fn condition(src: &mut Src, depth: usize) -> Value {
    let kind = if depth >= 2 { 3 } else { src.pick(6) };
    match kind {
        0 => json!({"And": [condition(src, depth + 1), condition(src, depth + 1)]}),
        1 => json!({"Or": [condition(src, depth + 1), condition(src, depth + 1)]}),
        2 => json!({"Not": condition(src, depth + 1)}),
        _ => {
            let var = src.of(PATHS);
            let (op, operand): (&str, Value) = match src.pick(12) {
                0 => ("StringEquals", json!("x")),
                1 => ("StringLessThan", json!("m")),
                2 => ("StringMatches", json!("*x*")),
                3 => ("NumericEquals", json!(1)),
                4 => ("NumericGreaterThanEquals", json!(0.5)),
                5 => ("BooleanEquals", json!(true)),
                6 => ("TimestampLessThan", json!("2030-01-01T00:00:00Z")),
                7 => ("IsPresent", json!(src.chance(2))),
                8 => ("IsNull", json!(src.chance(2))),
                9 => ("IsNumeric", json!(true)),
                10 => ("StringEqualsPath", json!(src.of(PATHS))),
                _ => ("NumericLessThanPath", json!(src.of(PATHS))),
            };
            let mut m = Map::new();
            m.insert("Variable".into(), json!(var));
            m.insert(op.into(), operand);
            Value::Object(m)
        }
    }
}

/// Builds one list of states. With `terminating`, a transition may go backwards only
/// from a Task, so every loop passes through a task (whose handler ends the run);
/// without it, any state may loop.
struct Builder {
    terminating: bool,
}

impl Builder {
    fn list(&self, src: &mut Src, depth: usize, prefix: &str) -> Value {
        let n = 1 + src.pick(if depth == 0 { 6 } else { 3 });
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        let mut states = Map::new();
        for i in 0..n {
            states.insert(names[i].clone(), self.state(src, depth, &names, i));
        }
        json!({"StartAt": names[0], "States": states})
    }

    /// A target for a transition out of state `i`, or None for End.
    fn target(&self, src: &mut Src, names: &[String], i: usize, may_loop: bool) -> Option<String> {
        let forward: Vec<usize> = (i + 1..names.len()).collect();
        let any_loop = may_loop || !self.terminating;
        if any_loop && src.chance(3) {
            return Some(names[src.pick(names.len())].clone());
        }
        if forward.is_empty() || src.chance(4) {
            None
        } else {
            Some(names[forward[src.pick(forward.len())]].clone())
        }
    }

    fn state(&self, src: &mut Src, depth: usize, names: &[String], i: usize) -> Value {
        let mut kinds = vec!["Pass", "Task", "Choice", "Wait", "Succeed", "Fail"];
        if depth < 2 {
            kinds.extend(["Parallel", "Map"]);
        }
        let kind = kinds[src.pick(kinds.len())];
        let mut s = Map::new();
        s.insert("Type".into(), json!(kind));
        let is_task = kind == "Task";
        match kind {
            "Choice" => {
                let mut rules = Vec::new();
                for _ in 0..1 + src.pick(3) {
                    let Some(next) = self.target(src, names, i, false) else {
                        continue;
                    };
                    let mut r = condition(src, 0);
                    r["Next"] = json!(next);
                    if src.chance(4) {
                        r["Assign"] = json!({"v1.$": src.of(PATHS)});
                    }
                    rules.push(r);
                }
                if rules.is_empty() {
                    // Nowhere to branch to: end here instead.
                    return json!({"Type": "Succeed"});
                }
                s.insert("Choices".into(), json!(rules));
                if let Some(d) = self.target(src, names, i, false) {
                    s.insert("Default".into(), json!(d));
                }
                if let Some(p) = opt_path(src, PATHS) {
                    s.insert("InputPath".into(), p);
                }
                return Value::Object(s);
            }
            "Succeed" => {
                if let Some(p) = opt_path(src, PATHS) {
                    s.insert("OutputPath".into(), p);
                }
                return Value::Object(s);
            }
            "Fail" => {
                match src.pick(3) {
                    0 => {
                        s.insert("Error".into(), json!("E1"));
                        s.insert("Cause".into(), json!("boom"));
                    }
                    1 => {
                        s.insert("ErrorPath".into(), json!(src.of(PATHS)));
                    }
                    _ => {}
                }
                return Value::Object(s);
            }
            "Pass" => match src.pick(3) {
                0 => {
                    s.insert("Result".into(), literal(src));
                }
                1 => {
                    s.insert("Parameters".into(), template(src, 0));
                }
                _ => {}
            },
            "Wait" => match src.pick(4) {
                0 => {
                    s.insert("Seconds".into(), json!(src.pick(5)));
                }
                1 => {
                    s.insert("SecondsPath".into(), json!(src.of(PATHS)));
                }
                2 => {
                    s.insert("Timestamp".into(), json!("2024-01-01T00:00:30Z"));
                }
                _ => {
                    s.insert("TimestampPath".into(), json!(src.of(PATHS)));
                }
            },
            "Task" => {
                match src.pick(3) {
                    0 => {
                        s.insert("Resource".into(), json!(LAMBDA));
                        if src.chance(2) {
                            s.insert("Parameters".into(), template(src, 0));
                        }
                    }
                    1 => {
                        s.insert("Resource".into(), json!(INVOKE));
                        let payload = if src.chance(2) {
                            template(src, 0)
                        } else {
                            json!("$")
                        };
                        let key = if payload.is_string() {
                            "Payload.$"
                        } else {
                            "Payload"
                        };
                        s.insert(
                            "Parameters".into(),
                            json!({"FunctionName": LAMBDA, key: payload}),
                        );
                    }
                    _ => {
                        s.insert("Resource".into(), json!(SERVICE));
                        s.insert("Parameters".into(), template(src, 0));
                    }
                }
                if src.chance(3) {
                    s.insert("TimeoutSeconds".into(), json!(1 + src.pick(60)));
                }
            }
            "Parallel" => {
                let branches: Vec<Value> = (0..1 + src.pick(2))
                    .map(|b| self.list(src, depth + 1, &format!("{}P{b}_", names[i])))
                    .collect();
                s.insert("Branches".into(), json!(branches));
                if src.chance(3) {
                    s.insert("Parameters".into(), template(src, 0));
                }
            }
            _ => {
                // Map
                s.insert(
                    "ItemProcessor".into(),
                    self.list(src, depth + 1, &format!("{}M_", names[i])),
                );
                if let Some(p) = opt_path(src, &["$.arr", "$", "$.a", "$.missing", "$v1"]) {
                    s.insert("ItemsPath".into(), p);
                }
                s.insert("MaxConcurrency".into(), json!(src.pick(3)));
                if src.chance(3) {
                    let mut sel = template(src, 1);
                    sel["idx.$"] = json!("$$.Map.Item.Index");
                    sel["val.$"] = json!("$$.Map.Item.Value");
                    s.insert("ItemSelector".into(), sel);
                }
            }
        }
        // Fields shared by Pass, Task, Wait, Parallel and Map.
        if let Some(p) = opt_path(src, PATHS) {
            s.insert("InputPath".into(), p);
        }
        if let Some(p) = opt_path(src, PATHS) {
            s.insert("OutputPath".into(), p);
        }
        if kind != "Wait" {
            if let Some(p) = opt_path(src, REF_PATHS) {
                s.insert("ResultPath".into(), p);
            }
        }
        if matches!(kind, "Task" | "Parallel" | "Map") {
            if src.chance(4) {
                s.insert("ResultSelector".into(), template(src, 0));
            }
            let retriers: Vec<Value> = (0..src.pick(3))
                .map(|_| {
                    json!({
                        "ErrorEquals": [src.of(&["States.ALL", "E1", "States.TaskFailed", "States.Timeout", "E2"])],
                        "MaxAttempts": src.pick(4),
                        "IntervalSeconds": 1 + src.pick(3),
                        "BackoffRate": 1.0 + src.pick(3) as f64 * 0.5,
                    })
                })
                .collect();
            if !retriers.is_empty() {
                s.insert("Retry".into(), json!(retriers));
            }
            let mut catchers = Vec::new();
            for _ in 0..src.pick(3) {
                if let Some(next) = self.target(src, names, i, is_task) {
                    let mut c = json!({
                        "ErrorEquals": [src.of(&["States.ALL", "E1", "States.TaskFailed", "States.Timeout"])],
                        "Next": next,
                    });
                    if let Some(p) = opt_path(src, REF_PATHS) {
                        c["ResultPath"] = p;
                    }
                    catchers.push(c);
                }
            }
            if !catchers.is_empty() {
                s.insert("Catch".into(), json!(catchers));
            }
        }
        if src.chance(4) {
            s.insert(
                "Assign".into(),
                json!({"v1.$": src.of(PATHS), "v2": {"a": src.pick(3)}}),
            );
        }
        match self.target(src, names, i, is_task) {
            Some(next) => s.insert("Next".into(), json!(next)),
            None => s.insert("End".into(), json!(true)),
        };
        Value::Object(s)
    }
}

fn input(src: &mut Src) -> Value {
    let mut m = Map::new();
    let values = [
        json!("x"),
        json!("{\"j\":1}"),
        json!(3),
        json!(-2),
        json!(1.5),
        json!(true),
        json!(null),
        json!([1, 2, 3]),
        json!([]),
        json!({"b": "y"}),
        json!("2024-01-01T00:00:10Z"),
        json!(70),
    ];
    for key in ["a", "b", "arr", "n"] {
        if src.pick(4) != 0 {
            m.insert(key.into(), src.of(&values));
        }
    }
    Value::Object(m)
}

/// Tasks: after this many calls, every call takes far longer than the machine's
/// TimeoutSeconds, so a machine that keeps calling tasks times out.
const CALL_BUDGET: usize = 40;
const MACHINE_TIMEOUT: u64 = 3600;

fn outcome_for(call: &TaskCall, n: usize, script: &[u8]) -> TaskOutcome {
    if n >= CALL_BUDGET {
        return TaskOutcome {
            result: Ok(json!("late")),
            took: Some(Duration::from_secs(10 * MACHINE_TIMEOUT)),
        };
    }
    let b = script.get(n % script.len().max(1)).copied().unwrap_or(0);
    match b % 6 {
        0 => TaskOutcome::ok(call.payload.clone()),
        1 => TaskOutcome::ok(json!({"r": n, "a": {"b": "x"}})),
        2 => TaskOutcome::err(Failure::new("E1", "task failed")),
        3 => TaskOutcome::err(Failure {
            error: "E2".into(),
            cause: None,
        }),
        4 => TaskOutcome {
            result: Ok(json!("slow")),
            took: Some(Duration::from_secs(30)),
        },
        _ => TaskOutcome::err(Failure::new("Lambda.Unknown", "{\"errorMessage\": \"x\"}")),
    }
}

/// Parses and runs a machine on a worker thread; `None` if it did not finish in time.
fn run_bounded(def: Value, input: Value, script: Vec<u8>, limit: Duration) -> Option<RunEnd> {
    run_bounded_with_stack(def, input, script, limit, WORKER_STACK)
}

/// The property tests run machines on a large stack: a loop can legitimately nest a
/// value thousands deep before the history cap, and whether the engine survives that
/// on an ordinary thread stack is checked on its own (`deep_nesting_*` below).
const WORKER_STACK: usize = 256 << 20;

fn run_bounded_with_stack(
    def: Value,
    input: Value,
    script: Vec<u8>,
    limit: Duration,
    stack: usize,
) -> Option<RunEnd> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let end = match Machine::from_value(&def) {
                Err(e) => RunEnd::Unparsed(e),
                Ok(m) => {
                    let mut calls = 0usize;
                    let mut handler = |call: &TaskCall| {
                        let o = outcome_for(call, calls, &script);
                        calls += 1;
                        o
                    };
                    let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().expect("time");
                    let mut host = RunHost {
                        clock: VirtualClock(start),
                        random: SeededRandom::new(11),
                    };
                    let outcome = run(
                        Arc::new(m),
                        input,
                        &mut handler,
                        &mut host,
                        RunOptions {
                            info: None,
                            record_history: true,
                        },
                    );
                    RunEnd::Ran(outcome.status, outcome.error)
                }
            };
            let _ = tx.send(end);
        });
    spawned.expect("spawn a worker thread");
    match rx.recv_timeout(limit) {
        Ok(end) => Some(end),
        // A panic drops the sender without a message: report it as a panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => Some(RunEnd::Panicked),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
    }
}

#[derive(Debug)]
enum RunEnd {
    Unparsed(String),
    Ran(Status, Option<String>),
    Panicked,
}

fn machine(src: &mut Src, terminating: bool) -> Value {
    let mut def = Builder { terminating }.list(src, 0, "S");
    def["TimeoutSeconds"] = json!(MACHINE_TIMEOUT);
    def
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Machines whose loops all pass through a task: the run ends, without a panic,
    /// SUCCEEDED, FAILED or TIMED_OUT.
    #[test]
    fn random_machines_end_without_panicking(
        data in prop::collection::vec(any::<u32>(), 0..400),
        script in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut src = Src { data: &data, pos: 0 };
        let def = machine(&mut src, true);
        let inp = input(&mut src);
        let shown = def.to_string();
        let end = run_bounded(def, inp.clone(), script, Duration::from_secs(20));
        match end {
            None => prop_assert!(false, "did not finish in 20 s: {shown} on {inp}"),
            Some(RunEnd::Panicked) => prop_assert!(false, "panicked: {shown} on {inp}"),
            Some(RunEnd::Unparsed(e)) => prop_assert!(false, "generated definition does not parse ({e}): {shown}"),
            Some(RunEnd::Ran(status, _)) => prop_assert!(
                matches!(status, Status::Succeeded | Status::Failed | Status::TimedOut),
                "ended {}: {shown} on {inp}", status.as_str()
            ),
        }
    }
}

/// AWS ends an execution whose history passes 25,000 events, so even a loop of Pass
/// states terminates (FAILED). The engine must too rather than spin forever.
fn assert_loop_ends(def: Value) {
    let shown = def.to_string();
    match run_bounded(def, json!({}), vec![0], Duration::from_secs(10)) {
        None => panic!("the execution never ended (no event cap): {shown}"),
        Some(RunEnd::Ran(Status::Failed, _)) => {}
        Some(other) => panic!("expected FAILED at the history cap, got {other:?}: {shown}"),
    }
}

#[test]
fn pass_loop_ends_at_the_history_limit() {
    assert_loop_ends(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Pass", "Next": "A"}}}));
}

#[test]
fn choice_loop_ends_at_the_history_limit() {
    assert_loop_ends(json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": false, "Next": "P"}]},
        "P": {"Type": "Pass", "Next": "C"}}}));
}

#[test]
fn zero_second_wait_loop_ends_at_the_history_limit() {
    assert_loop_ends(json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 0, "Next": "W"}}}));
}

/// Unrestricted loops, including effect-free Pass/Choice/Wait-0 cycles: with the
/// history cap every run still ends.
#[test]
fn random_machines_with_any_loops_end() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        max_shrink_iters: 50,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(any::<u32>(), 0..400),
        prop::collection::vec(any::<u8>(), 1..16),
    );
    runner
        .run(&strategy, |(data, script)| {
            let mut src = Src {
                data: &data,
                pos: 0,
            };
            let def = machine(&mut src, false);
            let inp = input(&mut src);
            let shown = def.to_string();
            match run_bounded(def, inp, script, Duration::from_secs(20)) {
                Some(RunEnd::Ran(Status::Succeeded | Status::Failed | Status::TimedOut, _)) => {
                    Ok(())
                }
                Some(RunEnd::Ran(s, _)) => Err(TestCaseError::fail(format!(
                    "ended {}: {shown}",
                    s.as_str()
                ))),
                Some(RunEnd::Unparsed(e)) => Err(TestCaseError::fail(format!(
                    "does not parse ({e}): {shown}"
                ))),
                Some(RunEnd::Panicked) => Err(TestCaseError::fail(format!("panicked: {shown}"))),
                None => Err(TestCaseError::fail(format!("never ended: {shown}"))),
            }
        })
        .unwrap();
}

/// The generator is not degenerate: over a fixed set of streams, runs succeed, fail
/// in several ways, time out, and hit the history cap.
#[test]
fn generator_reaches_every_outcome() {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..400 {
        let data: Vec<u32> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 16) as u32
            })
            .collect();
        let mut src = Src {
            data: &data,
            pos: 0,
        };
        let def = machine(&mut src, i % 2 == 0);
        let inp = input(&mut src);
        let script = vec![(x % 251) as u8, (x % 241) as u8, (x % 239) as u8];
        let key = match run_bounded(def, inp, script, Duration::from_secs(20)) {
            Some(RunEnd::Ran(s, e)) => match (s, e.as_deref()) {
                (Status::Failed, Some("States.Runtime")) => "FAILED States.Runtime".to_string(),
                (Status::Failed, _) => "FAILED other".to_string(),
                (s, _) => s.as_str().to_string(),
            },
            other => format!("{other:?}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    for want in [
        "SUCCEEDED",
        "FAILED States.Runtime",
        "FAILED other",
        "TIMED_OUT",
    ] {
        assert!(seen.contains_key(want), "no run ended {want}: {seen:?}");
    }
    assert_eq!(seen.len(), 4, "unexpected outcomes: {seen:?}");
}

/// A Pass that loops onto itself with `ResultPath: $.r` nests its output one level
/// deeper each time: about 12,500 levels by the 25,000-event history cap. A stack
/// overflow aborts the whole process (a server with it), so this runs in a child
/// process, on a thread with Rust's default 2 MiB stack, as server threads have.
#[test]
fn deep_nesting_loop_does_not_crash_the_process() {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "deep_nesting_child", "--nocapture"])
        .env("ASL_DEEP_NESTING_CHILD", "1")
        .output()
        .expect("run the child test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the run crashed or failed ({}):\n{}\n{}",
        out.status,
        stdout.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
        stderr.lines().take(5).collect::<Vec<_>>().join("\n"),
    );
}

#[test]
#[ignore = "run by deep_nesting_loop_does_not_crash_the_process in a child process"]
fn deep_nesting_child() {
    if std::env::var_os("ASL_DEEP_NESTING_CHILD").is_none() {
        return;
    }
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "ResultPath": "$.r", "Next": "A"}}});
    match run_bounded_with_stack(def, json!({}), vec![0], Duration::from_secs(60), 2 << 20) {
        Some(RunEnd::Ran(Status::Failed, _)) => {}
        other => panic!("expected FAILED at the history cap, got {other:?}"),
    }
}
