//! The conformance harness: runs the AWS-recorded cases of ../shared/asl-conformance
//! through the engine and compares outcomes as that corpus's README says.

use asl::error::Failure;
use asl::eval::ExecutionInfo;
use asl::runner::{self, RunHost, RunOptions, SeededRandom, TaskOutcome, VirtualClock};
use asl::validate::{self, MachineType, Options, Severity};
use asl::{Machine, Status, TaskCall};
use chrono::{DateTime, NaiveDateTime, Utc};
use regex::Regex;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub enum Verdict {
    Pass,
    Fail(String),
    /// A case the harness cannot run yet, reported as such and never as passed. No
    /// case is refused at present; the variant stays so that one never passes silently.
    #[allow(dead_code)]
    NotRun(&'static str),
}

pub struct CaseResult {
    pub name: String,
    pub category: String,
    pub jsonata: bool,
    /// The corpus's `purity` is `pure`: only states the engine runs by itself.
    pub pure: bool,
    pub verdict: Verdict,
    /// For executions with a recorded history: whether the engine's events have the
    /// same types in the same order (a measure, not part of the verdict).
    pub history_match: Option<bool>,
}

thread_local! {
    static HISTORY_MATCH: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

pub fn corpus_path(root: &Path) -> PathBuf {
    match std::env::var_os("OMS_CONFORMANCE_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => root.join("../shared/asl-conformance/aws-recorded.jsonl"),
    }
}

pub fn run_corpus(path: &Path) -> Result<Vec<CaseResult>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut results = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let name = case["name"].as_str().unwrap_or_default().to_string();
        let category = case["category"].as_str().unwrap_or_default().to_string();
        let jsonata = case["features"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "jsonata"));
        let pure = case["purity"] == "pure";
        HISTORY_MATCH.with(|h| h.set(None));
        // A panic in the engine is a failure of that case, not of the harness.
        let verdict = std::panic::catch_unwind(|| run_case(&case))
            .unwrap_or_else(|_| Verdict::Fail("the engine panicked".into()));
        results.push(CaseResult {
            name,
            category,
            jsonata,
            pure,
            verdict,
            history_match: HISTORY_MATCH.with(|h| h.get()),
        });
    }
    Ok(results)
}

fn notes(case: &Value) -> Vec<&str> {
    case["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Values LocalStack's snapshot transformers write in place of run-specific data
/// (times, role ARNs, trace ids), each with the keys it was found at in the corpus. In
/// the cases the corpus flags with `expected_contains_snapshot_placeholders`, such a
/// value at one of its keys stands for any non-empty string, as a `<...>` token does;
/// anywhere else, or against a value of another type, it is compared literally.
const LITERAL_PLACEHOLDERS: &[(&str, &[&str])] = &[
    ("date", &["Date", "EnteredTime", "StartTime"]),
    ("start-time", &["StartTime", "execution_starttime"]),
    ("entered-time", &["EnteredTime", "state_enteredtime"]),
    ("sfn_role_arn", &["RoleArn", "execution_rolearn"]),
    ("snf_role_arn", &["RoleArn", "roleArn", "execution_rolearn"]),
    ("X-Amzn-Trace-Id", &["X-Amzn-Trace-Id"]),
];

/// Whether `expected` at `key` is a placeholder that `got` fills.
fn fills_placeholder(expected: &str, key: Option<&str>, got: &Value) -> bool {
    let at_its_key = LITERAL_PLACEHOLDERS
        .iter()
        .any(|(literal, keys)| *literal == expected && key.is_some_and(|k| keys.contains(&k)));
    at_its_key
        && LITERALS_ARE_PLACEHOLDERS.with(|c| c.get())
        && got.as_str().is_some_and(|s| !s.is_empty())
}

thread_local! {
    static LITERALS_ARE_PLACEHOLDERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn run_case(case: &Value) -> Verdict {
    LITERALS_ARE_PLACEHOLDERS
        .with(|c| c.set(notes(case).contains(&"expected_contains_snapshot_placeholders")));
    let express = notes(case).contains(&"state_machine_type:EXPRESS");
    let opts = Options {
        machine_type: if express {
            MachineType::Express
        } else {
            MachineType::Standard
        },
    };
    // A definition that is not JSON is recorded as {"__raw_definition__": text}.
    let def_text = match &case["definition"] {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("__raw_definition__") => o["__raw_definition__"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        other => other.to_string(),
    };
    let expected = &case["expected"];
    match case["api"].as_str() {
        Some("TestState") => run_test_state(case),
        Some("ValidateStateMachineDefinition") => {
            let diags = validate::validate_str(&def_text, opts);
            let status = if diags.iter().any(|d| d.severity == Severity::Error) {
                "VALIDATION_FAIL"
            } else {
                "VALIDATION_OK"
            };
            let got = json!({"status": status, "diagnostics": diags});
            compare_json(expected, &got).map_or(Verdict::Pass, Verdict::Fail)
        }
        _ => run_execution(case, &def_text, opts, express),
    }
}

fn run_execution(case: &Value, def_text: &str, opts: Options, express: bool) -> Verdict {
    let expected = &case["expected"];
    let want = expected["status"].as_str().unwrap_or_default();
    let diags = validate::validate_str(def_text, opts);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        let got = format!(
            "An error occurred (InvalidDefinition) when calling the CreateStateMachine operation: {}",
            validate::invalid_definition_message(&diags)
        );
        if want != "INVALID_DEFINITION" {
            return Verdict::Fail(format!("rejected a definition AWS accepted: {got}"));
        }
        return match_text(expected["cause"].as_str().unwrap_or_default(), &got)
            .map_or(Verdict::Pass, |e| Verdict::Fail(format!("cause: {e}")));
    }
    if want == "INVALID_DEFINITION" {
        return Verdict::Fail("accepted a definition AWS rejected".into());
    }
    let machine = match Machine::parse(def_text) {
        Ok(m) => Arc::new(m),
        Err(e) => return Verdict::Fail(format!("model: {e}")),
    };
    let input = case_input(case);
    let start = recorded_start(case);
    // The account the cases were recorded in; the rest of each ARN is a placeholder.
    let info = ExecutionInfo::new(
        "arn:aws:states:us-east-1:111111111111:stateMachine:conformance-machine",
        "conformance-execution",
        "arn:aws:iam::111111111111:role/conformance",
        express,
        start,
    );
    let mut lambda = StubLambda {
        stubs: &case["stubs"],
        random: SeededRandom::new(7),
    };
    let mut handler = |call: &TaskCall| lambda.call(call);
    let mut host = RunHost {
        clock: VirtualClock(start),
        random: SeededRandom::new(42),
    };
    let outcome = if want == "ABORTED" {
        // The recorded test called StopExecution while the execution waited; replay that.
        stopped_while_waiting(machine, input, info, &mut host)
    } else {
        runner::run(
            machine,
            input,
            &mut handler,
            &mut host,
            RunOptions {
                info: Some(info),
                record_history: true,
            },
        )
    };
    if let Some(recorded) = case["history"].as_array().filter(|h| !h.is_empty()) {
        let want: Vec<&str> = recorded.iter().filter_map(|e| e["type"].as_str()).collect();
        let got: Vec<&str> = outcome.history.iter().map(|e| e.kind.as_ref()).collect();
        HISTORY_MATCH.with(|h| h.set(Some(want == got)));
        if want != got && std::env::var_os("OMS_HISTORY_DIFFS").is_some() {
            let at = want
                .iter()
                .zip(&got)
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(got.len()));
            eprintln!(
                "HISTORY {}\n  at {at}: want {:?}\n         got  {:?}",
                case["name"].as_str().unwrap_or_default(),
                &want[at.saturating_sub(1)..want.len().min(at + 4)],
                &got[at.saturating_sub(1)..got.len().min(at + 4)]
            );
        }
    }
    if outcome.status.as_str() != want {
        let detail = match outcome.status {
            Status::Succeeded => format!(
                "output {}",
                trunc(&outcome.output.unwrap_or_default().to_string())
            ),
            _ => format!(
                "{:?}: {}",
                outcome.error,
                trunc(outcome.cause.as_deref().unwrap_or(""))
            ),
        };
        return Verdict::Fail(format!(
            "status {} (expected {want}); {detail}",
            outcome.status.as_str()
        ));
    }
    match outcome.status {
        Status::Succeeded => {
            compare_json(&expected["output"], &outcome.output.unwrap_or(Value::Null))
                .map_or(Verdict::Pass, |e| Verdict::Fail(format!("output: {e}")))
        }
        _ => {
            let want_error = expected["error"].as_str();
            if want_error != outcome.error.as_deref().filter(|e| !e.is_empty()) {
                return Verdict::Fail(format!(
                    "error {:?} (expected {:?})",
                    outcome.error, want_error
                ));
            }
            let got_cause = outcome.cause.filter(|c| !c.is_empty());
            match (&expected["cause"], got_cause) {
                (Value::Null, None) => Verdict::Pass,
                (Value::String(w), Some(g)) => match_text(w, &g)
                    .map_or(Verdict::Pass, |e| Verdict::Fail(format!("cause: {e}"))),
                (w @ Value::Object(_), Some(g)) => match serde_json::from_str::<Value>(&g) {
                    Ok(gv) => compare_json(w, &gv)
                        .map_or(Verdict::Pass, |e| Verdict::Fail(format!("cause: {e}"))),
                    Err(_) => Verdict::Fail(format!("cause is not JSON: {}", trunc(&g))),
                },
                (w, g) => {
                    Verdict::Fail(format!("cause {g:?} (expected {})", trunc(&w.to_string())))
                }
            }
        }
    }
}

/// A TestState case: `definition` is the state (or a machine and `stateName`),
/// `test_state_args` the call's other arguments; the whole response is compared.
fn run_test_state(case: &Value) -> Verdict {
    use asl::teststate::{self, InspectionLevel, Mock, Request};
    let args = &case["test_state_args"];
    let json_arg = |v: &Value| -> Result<Option<Value>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| format!("argument is not JSON: {e}")),
            other => Ok(Some(other.clone())),
        }
    };
    let input = case_input(case);
    let start = recorded_start(case);
    let mut req = Request::new(case["definition"].clone(), input, start);
    req.info = ExecutionInfo::new(
        "arn:aws:states:us-east-1:111111111111:stateMachine:conformance-machine",
        "conformance-execution",
        // The corpus records no roleArn for TestState: AWS's context has RoleArn null.
        "",
        true,
        start,
    );
    // LocalStack records the enum as `<stub:...InspectionLevel.TRACE>`.
    let level = args["inspectionLevel"].as_str().unwrap_or("INFO");
    req.inspection_level = if level.contains("TRACE") {
        InspectionLevel::Trace
    } else if level.contains("DEBUG") {
        InspectionLevel::Debug
    } else {
        InspectionLevel::Info
    };
    req.state_name = args["stateName"].as_str().map(str::to_string);
    match json_arg(&args["variables"]) {
        Ok(Some(Value::Object(m))) => req.variables = m,
        Ok(_) => {}
        Err(e) => return Verdict::Fail(format!("variables: {e}")),
    }
    match json_arg(&args["context"]) {
        Ok(c) => req.context = c,
        Err(e) => return Verdict::Fail(format!("context: {e}")),
    }
    let mock = &args["mock"];
    if let Some(r) = mock["result"].as_str() {
        req.mock = Some(Mock::Result(r.to_string()));
    } else if mock["errorOutput"].is_object() {
        let e = &mock["errorOutput"];
        req.mock = Some(Mock::Error(Failure {
            error: e["error"].as_str().unwrap_or_default().to_string(),
            cause: e["cause"].as_str().map(str::to_string),
        }));
    }
    if let Some(n) = args["stateConfiguration"]["retrierRetryCount"].as_u64() {
        req.retrier_retry_count = n as u32;
    }
    let mut lambda = StubLambda {
        stubs: &case["stubs"],
        random: SeededRandom::new(7),
    };
    let mut handler = |call: &TaskCall| lambda.call(call);
    let got = match teststate::test_state(&req, &mut handler) {
        Ok(r) => r.to_json(),
        Err(e) => return Verdict::Fail(format!("request refused: {e}")),
    };
    let expected = &case["expected"];
    if expected["status"] != got["status"] {
        return Verdict::Fail(format!(
            "status {} (expected {}); {}",
            got["status"],
            expected["status"],
            trunc(&got.to_string())
        ));
    }
    compare_json(expected, &got).map_or(Verdict::Pass, Verdict::Fail)
}

fn stopped_while_waiting(
    machine: Arc<Machine>,
    input: Value,
    info: ExecutionInfo,
    host: &mut RunHost<VirtualClock>,
) -> runner::Outcome {
    let mut exec = asl::Execution::start(machine, input, info, false, host);
    if exec
        .pending()
        .any(|(_, e)| matches!(e, asl::Effect::Timer { .. }))
    {
        exec.stop(None, None, host);
    }
    runner::Outcome {
        status: exec.status(),
        output: exec.output().cloned(),
        error: exec.failure().map(|f| f.error.clone()),
        cause: exec.failure().and_then(|f| f.cause.clone()),
        history: Vec::new(),
    }
}

/// The case's execution input (a JSON string in the corpus; none means `{}`).
fn case_input(case: &Value) -> Value {
    match &case["input"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        Value::Null => json!({}),
        other => other.clone(),
    }
}

/// The clock starts when AWS recorded the case, so delays computed from recorded
/// timestamps come out as they did then. A case without a validation date carries the
/// date its snapshot was recorded (`13-12-2023, 07:09:17`); one with neither starts at
/// a fixed moment. Never now: a Wait on a recorded timestamp would change outcome as
/// the calendar moves (test_timestamp_too_far_in_future_boundary did, on 2026-12-02).
fn recorded_start(case: &Value) -> DateTime<Utc> {
    let validated = case["validated_date"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let recorded = || {
        case["source"]["recorded_date"]
            .as_str()
            .and_then(|s| NaiveDateTime::parse_from_str(s, "%d-%m-%Y, %H:%M:%S").ok())
            .map(|t| t.and_utc())
    };
    validated.or_else(recorded).unwrap_or(CORPUS_EPOCH)
}

/// The moment for a case that records no date: the corpus's source commit is of 2024.
const CORPUS_EPOCH: DateTime<Utc> = DateTime::from_timestamp(1_704_067_200, 0).unwrap();

fn trunc(s: &str) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// The corpus's Lambda functions, as in-process handlers behaving as their Python
/// sources do; Lambda's own behaviour (unknown function, error payloads) included.
struct StubLambda<'a> {
    stubs: &'a Value,
    random: SeededRandom,
}

impl StubLambda<'_> {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome {
        let function = call.function.as_deref().unwrap_or(&call.resource);
        let Some(stubs) = self.stubs.as_object() else {
            return TaskOutcome::err(Failure::new(
                "States.TaskFailed",
                format!("no handler for {}", call.resource),
            ));
        };
        let stub = stubs
            .iter()
            .find(|(arn, s)| {
                arn.as_str() == function || s["function_name"].as_str() == Some(function)
            })
            .map(|(_, s)| s);
        let Some(stub) = stub else {
            let arn = if function.starts_with("arn:") {
                function.to_string()
            } else {
                format!("arn:aws:lambda:us-east-1:111111111111:function:{function}")
            };
            return TaskOutcome::err(Failure::new(
                "Lambda.ResourceNotFoundException",
                format!(
                    "Function not found: {arn}:$LATEST (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; Request ID: {}; Proxy: null)",
                    self.random.uuid_v4()
                ),
            ));
        };
        let file = stub["handler_file"].as_str().unwrap_or_default();
        let file = file.rsplit('/').next().unwrap_or(file);
        let event = call.payload.clone();
        match file {
            "id_function.py" => TaskOutcome::ok(event),
            "echo_function.py" => TaskOutcome::ok(json!({"Return": "HelloWorld"})),
            "return_bytes_str.py" => TaskOutcome::ok(json!("HelloWorld!")),
            "return_decorated_input.py" => TaskOutcome::ok(Value::String(format!("input-event-{}", python_repr(&event)))),
            "large_output_string.py" => TaskOutcome::ok(Value::String("a".repeat(257 * 1024))),
            "wait_60_seconds.py" => TaskOutcome { result: Ok(event), took: Some(std::time::Duration::from_secs(60)) },
            "raise_exception.py" => self.error(
                "Exception",
                "Some exception was raised.",
                "  File \"/var/task/handler.py\", line 2, in handler\n    raise Exception(\"Some exception was raised.\")\n",
            ),
            "raise_custom_exception.py" => self.error(
                "CustomException",
                "",
                "  File \"/var/task/handler.py\", line 9, in handler\n    raise CustomException()\n",
            ),
            other => TaskOutcome::err(Failure::new("States.TaskFailed", format!("the harness has no stub for {other}"))),
        }
    }

    /// A Python Lambda's error payload, as the runtime reports it.
    fn error(&mut self, error_type: &str, message: &str, trace: &str) -> TaskOutcome {
        let mut payload = Map::new();
        payload.insert("errorMessage".into(), json!(message));
        payload.insert("errorType".into(), json!(error_type));
        payload.insert("requestId".into(), json!(self.random.uuid_v4()));
        payload.insert("stackTrace".into(), json!([trace]));
        TaskOutcome::err(Failure::new(error_type, Value::Object(payload).to_string()))
    }
}

/// Python's `str()` of a JSON-decoded value, for the f-string stub.
fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{}': {}", k, python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Compares an expected string with `<...>` placeholders to an actual one.
fn match_text(expected: &str, got: &str) -> Option<String> {
    if expected == got {
        return None;
    }
    if !expected.contains('<') {
        return Some(format!(
            "got {:?}, expected {:?}",
            trunc(got),
            trunc(expected)
        ));
    }
    let token = Regex::new(r"<[^<>\s]+>").expect("static regex");
    let mut pattern = String::from("(?s)^");
    let mut last = 0;
    for m in token.find_iter(expected) {
        pattern.push_str(&regex::escape(&expected[last..m.start()]));
        pattern.push_str(".+?");
        last = m.end();
    }
    pattern.push_str(&regex::escape(&expected[last..]));
    pattern.push('$');
    match Regex::new(&pattern) {
        Ok(re) if re.is_match(got) => None,
        _ => Some(format!(
            "got {:?}, expected {:?}",
            trunc(got),
            trunc(expected)
        )),
    }
}

/// JSON comparison: key order free, numbers by value, strings with placeholders.
fn compare_json(expected: &Value, got: &Value) -> Option<String> {
    compare_at(expected, got, "$", None)
}

/// Compares `e` with `g` at path `at`; `key` is the object key the values are under
/// (an array's items are under their array's key).
fn compare_at(e: &Value, g: &Value, at: &str, key: Option<&str>) -> Option<String> {
    match (e, g) {
        (Value::Object(em), Value::Object(gm)) => {
            for k in em.keys() {
                if !gm.contains_key(k) {
                    return Some(format!("{at}: missing key {k:?}"));
                }
            }
            for k in gm.keys() {
                if !em.contains_key(k) {
                    return Some(format!("{at}: unexpected key {k:?}"));
                }
            }
            em.iter()
                .find_map(|(k, ev)| compare_at(ev, &gm[k], &format!("{at}.{k}"), Some(k)))
        }
        (Value::Array(ea), Value::Array(ga)) => {
            if ea.len() != ga.len() {
                return Some(format!("{at}: {} items, expected {}", ga.len(), ea.len()));
            }
            ea.iter()
                .zip(ga)
                .enumerate()
                .find_map(|(i, (ev, gv))| compare_at(ev, gv, &format!("{at}[{i}]"), key))
        }
        (Value::Number(en), Value::Number(gn)) => {
            let same = en == gn || en.as_f64() == gn.as_f64();
            (!same).then(|| format!("{at}: {gn}, expected {en}"))
        }
        (Value::String(es), g) if fills_placeholder(es, key, g) => None,
        (Value::String(es), Value::String(gs)) => match_text(es, gs).map(|m| format!("{at}: {m}")),
        (e, g) if e == g => None,
        (e, g) => Some(format!(
            "{at}: {}, expected {}",
            trunc(&g.to_string()),
            trunc(&e.to_string())
        )),
    }
}

#[derive(Default, Clone, Copy)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub not_run: usize,
}

impl Tally {
    fn add(&mut self, v: &Verdict) {
        match v {
            Verdict::Pass => self.passed += 1,
            Verdict::Fail(_) => self.failed += 1,
            Verdict::NotRun(_) => self.not_run += 1,
        }
    }
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.not_run
    }
}

pub struct Summary {
    pub by_category: BTreeMap<String, Tally>,
    pub all: Tally,
    /// Every case that does not use JSONata.
    pub jsonpath: Tally,
    /// The cases the target is set on (issue 14: 99%): every pure case, JSONata and
    /// JSONPath together.
    pub pure: Tally,
}

pub fn summarize(results: &[CaseResult]) -> Summary {
    let mut by_category: BTreeMap<String, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    let mut jsonpath = Tally::default();
    let mut pure = Tally::default();
    for r in results {
        if r.pure {
            pure.add(&r.verdict);
        }
        by_category
            .entry(r.category.clone())
            .or_default()
            .add(&r.verdict);
        all.add(&r.verdict);
        if !r.jsonata {
            jsonpath.add(&r.verdict);
        }
    }
    Summary {
        by_category,
        all,
        jsonpath,
        pure,
    }
}

fn percent(t: &Tally) -> f64 {
    100.0 * t.passed as f64 / t.total().max(1) as f64
}

pub fn print_summary(s: &Summary) {
    println!(
        "{:<22} {:>7} {:>7} {:>8}",
        "category", "passed", "failed", "not run"
    );
    for (c, t) in &s.by_category {
        println!("{:<22} {:>7} {:>7} {:>8}", c, t.passed, t.failed, t.not_run);
    }
    println!(
        "{:<22} {:>7} {:>7} {:>8}",
        "TOTAL", s.all.passed, s.all.failed, s.all.not_run
    );
    for (label, t) in [("JSONPath", &s.jsonpath), ("pure (target 99%)", &s.pure)] {
        println!(
            "{:<22} {:>7} {:>7} {:>8}   ({:.1}% of {})",
            label,
            t.passed,
            t.failed,
            t.not_run,
            percent(t),
            t.total()
        );
    }
}

/// docs/conformance.md: the figures, and every case that does not pass with its reason.
pub fn report(results: &[CaseResult], s: &Summary, reasons: &[(String, String)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# ASL conformance\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask conformance` from the {} AWS-recorded cases of \
         `../shared/asl-conformance/aws-recorded.jsonl`. A case passes when the engine ends the \
         execution (or judges the definition) as AWS did, compared as that corpus's README says. \
         Not run is never counted as passed. In the cases the corpus flags with \
         `expected_contains_snapshot_placeholders`, LocalStack's literal stand-ins (`date`, \
         `start-time`, `snf_role_arn`, ...) match any non-empty string only at the keys where \
         the corpus has them (`LITERAL_PLACEHOLDERS` in xtask/src/conformance.rs). The suite \
         fails when a case listed in `xtask/conformance-passing` fails.\n",
        results.len()
    );
    let _ = writeln!(
        md,
        "**Pure cases (the target: every case of purity `pure`, JSONata and JSONPath together): {} of {} pass ({:.1}%).** JSONPath cases (every case without JSONata, TestState included): {} of {} ({:.1}%). All cases: {} passed, {} failed, {} not run.\n",
        s.pure.passed,
        s.pure.total(),
        percent(&s.pure),
        s.jsonpath.passed,
        s.jsonpath.total(),
        percent(&s.jsonpath),
        s.all.passed,
        s.all.failed,
        s.all.not_run
    );
    let _ = writeln!(
        md,
        "| category | passed | failed | not run |\n|---|---:|---:|---:|"
    );
    for (c, t) in &s.by_category {
        let _ = writeln!(md, "| {c} | {} | {} | {} |", t.passed, t.failed, t.not_run);
    }
    let _ = writeln!(md, "\n## Cases that fail, and why\n");
    for r in results {
        if let Verdict::Fail(detail) = &r.verdict {
            let why = reasons
                .iter()
                .find(|(k, _)| r.name.contains(k.as_str()))
                .map_or("not yet analysed", |(_, v)| v.as_str());
            let _ = writeln!(
                md,
                "- `{}`\n  - reason: {}\n  - mismatch: {}",
                r.name,
                why,
                detail.replace('\n', " ")
            );
        }
    }
    let with_history: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.history_match.is_some())
        .collect();
    let same = with_history
        .iter()
        .filter(|r| r.history_match == Some(true))
        .count();
    let jp: Vec<&&CaseResult> = with_history.iter().filter(|r| !r.jsonata).collect();
    let jp_same = jp.iter().filter(|r| r.history_match == Some(true)).count();
    let _ = writeln!(
        md,
        "\n## History events\n\nOf the {} executions whose history AWS recorded, {} produce the same \
         event types in the same order (ids follow from that); without JSONata, {} of {}. This is \
         measured, not part of the pass count. Cases that differ:\n",
        with_history.len(),
        same,
        jp_same,
        jp.len()
    );
    for r in with_history
        .iter()
        .filter(|r| r.history_match == Some(false))
    {
        let _ = writeln!(md, "- `{}`", r.name);
    }
    let _ = writeln!(md, "\n## Cases not run\n");
    let mut not_run: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        if let Verdict::NotRun(why) = r.verdict {
            *not_run.entry(why).or_default() += 1;
        }
    }
    if not_run.is_empty() {
        let _ = writeln!(md, "None: every case is run.");
    }
    for (why, n) in not_run {
        let _ = writeln!(md, "- {n} case(s): {why}");
    }
    let jsonata: Vec<&CaseResult> = results.iter().filter(|r| r.jsonata).collect();
    let jsonata_passed = jsonata
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Pass))
        .count();
    let _ = writeln!(
        md,
        "\n## JSONata\n\n{jsonata_passed} of {} JSONata cases pass; the failures are listed with \
         the others above.",
        jsonata.len()
    );
    md
}
