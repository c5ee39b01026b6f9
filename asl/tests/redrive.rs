//! RedriveExecution: a failed execution continues from the states that did not
//! succeed, keeping the results it reached.

use asl::eval::{Delivery, Effect, Execution, ExecutionInfo};
use asl::runner::{RunHost, SeededRandom, VirtualClock};
use asl::{Failure, Machine, Status};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

type Host = RunHost<VirtualClock>;

fn host() -> Host {
    RunHost {
        clock: VirtualClock(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
        random: SeededRandom::new(3),
    }
}

/// Answers every pending task with `answer(payload)` until nothing is pending;
/// returns the payloads the tasks were called with.
fn drive(
    exec: &mut Execution,
    host: &mut Host,
    answer: &dyn Fn(&Value) -> Result<Value, Failure>,
) -> Vec<Value> {
    let mut calls = Vec::new();
    while exec.status() == Status::Running {
        let Some((id, effect)) = exec.pending().next().map(|(i, e)| (i, e.clone())) else {
            break;
        };
        let d = match effect {
            Effect::Invoke(call) => {
                calls.push(call.payload.clone());
                match answer(&call.payload) {
                    Ok(v) => Delivery::TaskSucceeded(v),
                    Err(f) => Delivery::TaskFailed(f),
                }
            }
            Effect::Timer { until } => {
                host.clock.0 = until;
                Delivery::TimerFired
            }
            Effect::Iteration(_) | Effect::ReadItems(_) | Effect::WriteResults(_) => {
                panic!("these machines have no distributed Map")
            }
        };
        exec.deliver(id, d, host);
    }
    calls
}

fn start(def: Value, input: Value, host: &mut Host) -> Execution {
    let machine = Arc::new(Machine::from_value(&def).unwrap());
    let info = ExecutionInfo::local("m", "e", host.clock.0);
    Execution::start(machine, input, info, true, host)
}

#[test]
fn a_failed_task_runs_again_and_earlier_results_are_kept() {
    let mut h = host();
    let def = json!({"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:reserve", "ResultPath": "$.reserved", "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:charge",
                   "Parameters": {"attempt.$": "$$.Execution.RedriveCount"}, "ResultPath": "$.charged", "End": true}}});
    let mut exec = start(def, json!({"order": "o-1"}), &mut h);
    let calls = drive(&mut exec, &mut h, &|p| {
        if p.get("attempt").is_some() {
            Err(Failure::new("Payment.GatewayTimeout", "down"))
        } else {
            Ok(json!("r"))
        }
    });
    assert_eq!(calls.len(), 2);
    assert_eq!(exec.status(), Status::Failed);
    assert_eq!(exec.redrive(&mut h), Ok(1));
    let calls = drive(&mut exec, &mut h, &|p| Ok(json!({"attempt": p["attempt"]})));
    // Only Charge runs again, and it sees RedriveCount 1.
    assert_eq!(calls, vec![json!({"attempt": 1})]);
    assert_eq!(exec.status(), Status::Succeeded);
    assert_eq!(
        exec.output(),
        Some(&json!({"order": "o-1", "reserved": "r", "charged": {"attempt": 1}}))
    );
    assert!(exec
        .history()
        .iter()
        .any(|e| e.kind == "ExecutionRedriven" && e.details.value()["redriveCount"] == 1));
    assert!(
        exec.redrive(&mut h).is_err(),
        "a succeeded execution cannot be redriven"
    );
}

#[test]
fn only_the_failed_map_iterations_run_again() {
    let mut h = host();
    let def = json!({"StartAt": "Ship", "States": {"Ship": {"Type": "Map", "ItemsPath": "$.shipments", "MaxConcurrency": 1,
        "ItemProcessor": {"StartAt": "Send", "States": {"Send": {"Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:1:function:ship", "End": true}}}, "End": true}}});
    let mut exec = start(def, json!({"shipments": ["a", "b", "c"]}), &mut h);
    let calls = drive(&mut exec, &mut h, &|p| {
        if p == "b" {
            Err(Failure::new("Ship.AddressRejected", "no such street"))
        } else {
            Ok(json!(format!("sent-{}", p.as_str().unwrap())))
        }
    });
    assert_eq!(
        calls,
        vec![json!("a"), json!("b")],
        "MaxConcurrency 1 stops at the failure"
    );
    assert_eq!(exec.status(), Status::Failed);
    exec.redrive(&mut h).unwrap();
    let calls = drive(&mut exec, &mut h, &|p| {
        Ok(json!(format!("sent-{}", p.as_str().unwrap())))
    });
    assert_eq!(
        calls,
        vec![json!("b"), json!("c")],
        "a is not shipped twice"
    );
    assert_eq!(exec.output(), Some(&json!(["sent-a", "sent-b", "sent-c"])));
}

#[test]
fn an_aborted_execution_redrives_from_the_state_it_was_in() {
    let mut h = host();
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "Next": "Done"},
                     "Done": {"Type": "Pass", "Result": "ok", "End": true}}});
    let mut exec = start(def, json!({}), &mut h);
    exec.stop(Some("Operator".into()), Some("paused".into()), &mut h);
    assert_eq!(exec.status(), Status::Aborted);
    exec.redrive(&mut h).unwrap();
    assert!(matches!(
        exec.pending().next(),
        Some((_, Effect::Timer { .. }))
    ));
    drive(&mut exec, &mut h, &|_| Ok(Value::Null));
    assert_eq!(exec.output(), Some(&json!("ok")));
}

/// The events after the last ExecutionRedriven, as (type, details).
fn after_redrive(exec: &Execution) -> Vec<(String, Value)> {
    let h = exec.history();
    let at = h
        .iter()
        .rposition(|e| e.kind == "ExecutionRedriven")
        .expect("an ExecutionRedriven event");
    h[at + 1..]
        .iter()
        .map(|e| (e.kind.to_string(), e.details.value().into_owned()))
        .collect()
}

#[test]
fn a_redriven_task_is_entered_again_before_it_fails_again() {
    let mut h = host();
    let def = json!({"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:reserve", "ResultPath": "$.reserved", "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:charge", "End": true}}});
    let mut exec = start(def, json!({"order": "o-1"}), &mut h);
    let decline = |p: &Value| {
        if p.get("reserved").is_some() {
            Err(Failure::new("Payment.Declined", "no funds"))
        } else {
            Ok(json!("r"))
        }
    };
    drive(&mut exec, &mut h, &decline);
    assert_eq!(exec.status(), Status::Failed);
    exec.redrive(&mut h).unwrap();
    drive(&mut exec, &mut h, &decline);
    assert_eq!(exec.status(), Status::Failed);
    let after = after_redrive(&exec);
    let kinds: Vec<&str> = after.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "ExecutionFailed"
        ]
    );
    assert_eq!(after[0].1["name"], "Charge");
    assert_eq!(
        after[0].1["input"],
        json!({"order": "o-1", "reserved": "r"})
    );
}

#[test]
fn a_redriven_map_is_entered_again_and_so_are_its_failed_iterations() {
    let mut h = host();
    let def = json!({"StartAt": "Ship", "States": {"Ship": {"Type": "Map", "ItemsPath": "$.shipments",
        "ItemProcessor": {"StartAt": "Send", "States": {"Send": {"Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:1:function:ship", "End": true}}}, "End": true}}});
    let input = json!({"shipments": ["a", "b", "c"]});
    let mut exec = start(def, input.clone(), &mut h);
    drive(&mut exec, &mut h, &|p| {
        if p == "b" {
            Err(Failure::new("Ship.AddressRejected", "no such street"))
        } else {
            Ok(p.clone())
        }
    });
    assert_eq!(exec.status(), Status::Failed);
    exec.redrive(&mut h).unwrap();
    let after = after_redrive(&exec);
    let opened: Vec<(&str, Value)> = after
        .iter()
        .take(5)
        .map(|(k, d)| (k.as_str(), d.clone()))
        .collect();
    let entered = |input: Value, name: &str| json!({"input": input, "inputDetails": {"truncated": false}, "name": name});
    // Iteration 0 succeeded; 1 failed, and 2 was still running, so was aborted. The Map
    // is entered again, then 1 and 2 start again and enter Send, as a Map first starts.
    assert_eq!(
        opened,
        [
            ("MapStateEntered", entered(input, "Ship")),
            ("MapIterationStarted", json!({"index": 1, "name": "Ship"})),
            ("MapIterationStarted", json!({"index": 2, "name": "Ship"})),
            ("TaskStateEntered", entered(json!("b"), "Send")),
            ("TaskStateEntered", entered(json!("c"), "Send")),
        ]
    );
    drive(&mut exec, &mut h, &|p| Ok(p.clone()));
    assert_eq!(exec.output(), Some(&json!(["a", "b", "c"])));
}

#[test]
fn a_wait_stopped_midway_is_entered_again_with_its_input() {
    let mut h = host();
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "Next": "Done"},
                     "Done": {"Type": "Pass", "Result": "ok", "ResultPath": "$.done", "End": true}}});
    let mut exec = start(def, json!({"order": "o-2"}), &mut h);
    exec.stop(None, None, &mut h);
    exec.redrive(&mut h).unwrap();
    let after = after_redrive(&exec);
    assert_eq!(after[0].0, "WaitStateEntered");
    assert_eq!(after[0].1["input"], json!({"order": "o-2"}));
    drive(&mut exec, &mut h, &|_| Ok(Value::Null));
    assert_eq!(exec.output(), Some(&json!({"order": "o-2", "done": "ok"})));
}
