//! The `oms` binary as users run it: exit codes and the JSON it prints.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn oms(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(args)
        .output()
        .expect("oms runs")
}

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("oms-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn exec_runs_the_sample_to_success() {
    let def = repo("statemachines/examples/order-pipeline.asl.json");
    let out = oms(&[
        "exec",
        "--definition",
        &def,
        "--clock",
        "virtual",
        "--input",
        r#"{"orderId":"o-7","amount":20,"lines":[{"sku":"A","quantity":3}]}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["output"]["tier"], "standard");
    assert_eq!(v["output"]["labels"][0], "3 x A");
}

#[test]
fn exec_reports_a_failed_execution_with_exit_zero() {
    let def = temp_file(
        "fail.json",
        r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"Order.Cancelled","Cause":"customer asked"}}}"#,
    );
    let out = oms(&["exec", "--definition", &def]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error"], "Order.Cancelled");
    assert_eq!(v["cause"], "customer asked");
}

#[test]
fn exec_rejects_an_invalid_definition_with_exit_two() {
    let def = temp_file(
        "bad.json",
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"Nowhere"}}}"#,
    );
    let out = oms(&["exec", "--definition", &def]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["status"], "INVALID_DEFINITION");
    assert_eq!(v["error"], "InvalidDefinition");
    assert!(
        v["cause"].as_str().unwrap().contains("/States/A/Next"),
        "{v}"
    );
}

#[test]
fn exec_history_lists_events_in_order() {
    let def = temp_file(
        "pass.json",
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#,
    );
    let out = oms(&[
        "exec",
        "--definition",
        &def,
        "--history",
        "--input",
        "{\"a\":1}",
    ]);
    let v = json(&out);
    let kinds: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(v["history"][3]["id"], 4);
    assert_eq!(v["history"][3]["previousEventId"], 3);
}

/// `$$.Execution.Id` split at its colons, as machines that read its shape split it.
fn execution_id_parts(definition: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["exec", "--definition", definition, "--clock", "virtual"];
    args.extend_from_slice(extra);
    let out = oms(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_eq!(v["status"], "SUCCEEDED", "{v}");
    v["output"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .split(':')
        .map(str::to_string)
        .collect()
}

#[test]
fn exec_express_gives_an_express_execution_arn() {
    let def = temp_file(
        "express_id.json",
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"id.$":"$$.Execution.Id"},"End":true}}}"#,
    );
    // arn:aws:states:REGION:ACCOUNT:express:MACHINE:NAME:ID
    let express = execution_id_parts(&def, &["--express"]);
    assert_eq!(express.len(), 9, "{express:?}");
    assert_eq!(express[5], "express");
    assert_eq!(express[6], "express_id");
    assert!(express[7].starts_with("exec-"), "{express:?}");
    assert!(!express[8].is_empty(), "{express:?}");
    // arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME
    let standard = execution_id_parts(&def, &[]);
    assert_eq!(standard.len(), 8, "{standard:?}");
    assert_eq!(standard[5], "execution");
}

#[test]
fn exec_express_applies_the_express_rules() {
    let def = temp_file(
        "express_sync.json",
        r#"{"StartAt":"Child","States":{"Child":{"Type":"Task",
            "Resource":"arn:aws:states:::states:startExecution.sync:2",
            "Parameters":{"StateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:c"},
            "End":true}}}"#,
    );
    let out = oms(&["exec", "--definition", &def, "--express"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["status"], "INVALID_DEFINITION");
    assert!(v["cause"].as_str().unwrap().contains("'.sync:2'"), "{v}");
    // A Standard machine may use .sync:2: it runs (and fails at the task, which has no
    // handler in oms exec).
    let out = oms(&["exec", "--definition", &def]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["status"], "FAILED");
}

#[test]
fn exec_runs_a_jsonata_machine() {
    let def = temp_file(
        "jsonata_choice.json",
        r#"{"QueryLanguage":"JSONata","StartAt":"C","States":{
            "C":{"Type":"Choice","Default":"N",
                 "Choices":[{"Condition":"{% $states.input.a = 1 %}","Next":"Y",
                             "Assign":{"seen":"{% $states.input.a %}"}}]},
            "Y":{"Type":"Pass","Output":{"doubled":"{% $seen * 2 %}"},"End":true},
            "N":{"Type":"Fail","Error":"NotOne","Cause":"{% 'a was ' & $string($states.input.a) %}"}}}"#,
    );
    let validated = oms(&["validate", &def]);
    assert_eq!(validated.status.code(), Some(0));
    let out = oms(&["exec", "--definition", &def, "--input", "{\"a\":1}"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["status"], "SUCCEEDED", "{v}");
    assert_eq!(v["output"], serde_json::json!({"doubled": 2}));
    let out = oms(&["exec", "--definition", &def, "--input", "{\"a\":5}"]);
    let v = json(&out);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error"], "NotOne");
    assert_eq!(v["cause"], "a was 5");
}

#[test]
fn exec_rejects_malformed_input_without_panicking() {
    let def = repo("statemachines/examples/order-pipeline.asl.json");
    let out = oms(&["exec", "--definition", &def, "--input", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
}

#[test]
fn validate_exit_codes_follow_errors() {
    let good = repo("statemachines/examples/order-pipeline.asl.json");
    let bad = temp_file("bad2.json", r#"{"States":{}}"#);
    assert_eq!(oms(&["validate", &good]).status.code(), Some(0));
    let out = oms(&["validate", "--json", &good, &bad]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v[0]["diagnostics"].as_array().unwrap().len(), 0);
    assert_eq!(v[1]["diagnostics"][0]["code"], "SCHEMA_VALIDATION_FAILED");
}

#[test]
fn bench_prints_the_figures_it_promises() {
    let def = repo("statemachines/examples/order-pipeline.asl.json");
    let input = r#"{"orderId":"o-1","amount":5,"lines":[]}"#;
    let out = oms(&[
        "bench",
        "--definition",
        &def,
        "--executions",
        "50",
        "--concurrency",
        "2",
        "--input",
        input,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    for k in [
        "executions",
        "concurrency",
        "seconds",
        "exec_per_s",
        "p50_ms",
        "p99_ms",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["executions"], 50);
}

#[test]
fn jsonata_prints_a_result_undefined_or_a_coded_error() {
    let data = temp_file("order.json", r#"{"lines":[{"qty":2},{"qty":3}]}"#);
    let out = oms(&[
        "jsonata",
        "$sum(lines.qty) * $k",
        "--data",
        &format!("@{data}"),
        "--bindings",
        r#"{"k":2}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out), serde_json::json!({"result": 10}));

    let out = oms(&["jsonata", "nothing"]);
    assert!(out.status.success());
    assert_eq!(json(&out), serde_json::json!({"undefined": true}));

    let out = oms(&["jsonata", "'a' + 1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "T2001");
}

#[test]
fn jsonata_names_the_flag_that_is_wrong() {
    let out = oms(&["jsonata", "a", "--bindings", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bindings must be a JSON object"));
}

#[test]
fn jsonata_cases_answers_each_line_with_its_id() {
    let cases = temp_file(
        "cases.jsonl",
        concat!(
            r#"{"id":"a","expr":"x + 1","data":{"x":1}}"#,
            "\n\n",
            r#"{"id":"b","expr":"$","data":null,"data_undefined":true}"#,
            "\n",
            r#"{"id":"c","expr":"a b","data":null}"#,
            "\nnot json\n",
        ),
    );
    let out = oms(&["jsonata", "--cases", &cases]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each answer is JSON"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], serde_json::json!({"id": "a", "result": 2}));
    assert_eq!(lines[1], serde_json::json!({"id": "b", "undefined": true}));
    assert_eq!(
        (&lines[2]["id"], &lines[2]["code"]),
        (&"c".into(), &"S0201".into())
    );
    assert_eq!(
        (&lines[3]["id"], &lines[3]["code"]),
        (&"line 5".into(), &"CASE".into())
    );
}

/// `oms ... | head`: the reader goes away mid-output and oms ends quietly, killed by
/// SIGPIPE as Unix tools are, never with a panic.
#[test]
fn a_closed_output_pipe_ends_oms_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    // About 600 KB of output, far more than a pipe holds, so oms is still writing.
    let mut child = Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(["jsonata", "[1..100000]"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("oms starts");
    let mut first = [0u8; 16];
    let mut stdout = child.stdout.take().expect("stdout");
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let out = child.wait_with_output().expect("oms ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    const SIGPIPE: i32 = 13; // on Linux
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
