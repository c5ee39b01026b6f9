//! An execution stored between any two steps and restored continues as if it never
//! stopped: the basis of the durable runtime's recovery.

use asl::eval::{Delivery, Effect, Execution, ExecutionInfo, Snapshot};
use asl::runner::{RunHost, SeededRandom, VirtualClock};
use asl::{Failure, Machine};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

const DEFINITION: &str = r#"{
  "StartAt": "Items",
  "States": {
    "Items": {
      "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.charged",
      "ItemProcessor": {"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:charge",
                   "Retry": [{"ErrorEquals": ["Payment.GatewayTimeout"], "MaxAttempts": 2}],
                   "End": true}}},
      "Next": "Cool"
    },
    "Cool": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
    "Done": {"Type": "Pass", "Parameters": {"n.$": "States.ArrayLength($.charged)"}, "End": true}
  }
}"#;

/// Runs to the end, answering tasks by their payload; when `roundtrip` is set the
/// execution is stored and restored (through JSON) before every delivery.
fn run(roundtrip: bool) -> (Value, Vec<String>) {
    let machine = Arc::new(Machine::parse(DEFINITION).unwrap());
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let mut host = RunHost {
        clock: VirtualClock(start),
        random: SeededRandom::new(1),
    };
    let info = ExecutionInfo::local("m", "e", start);
    let input = json!({"items": [1, 2, 3]});
    let mut exec = Execution::start(machine.clone(), input, info, true, &mut host);
    let mut events: Vec<String> = exec
        .take_new_events()
        .iter()
        .map(|e| e.kind.to_string())
        .collect();
    let mut calls = 0;
    while exec.status() == asl::Status::Running {
        if roundtrip {
            let text = serde_json::to_string(&exec.snapshot()).unwrap();
            let snap: Snapshot = serde_json::from_str(&text).unwrap();
            exec = Execution::restore(machine.clone(), snap, true);
        }
        let (id, effect) = exec
            .pending()
            .next()
            .map(|(i, e)| (i, e.clone()))
            .expect("work pending");
        let delivery = match effect {
            Effect::Invoke(call) => {
                calls += 1;
                // Every second call fails transiently, so retries are exercised too.
                if calls % 2 == 0 {
                    Delivery::TaskFailed(Failure::new("Payment.GatewayTimeout", "try again"))
                } else {
                    Delivery::TaskSucceeded(json!({"charged": call.payload}))
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
        exec.deliver(id, delivery, &mut host);
        events.extend(exec.take_new_events().iter().map(|e| e.kind.to_string()));
    }
    assert_eq!(exec.status(), asl::Status::Succeeded);
    (exec.output().cloned().unwrap(), events)
}

#[test]
fn restored_execution_matches_an_uninterrupted_one() {
    let (out_plain, events_plain) = run(false);
    let (out_restored, events_restored) = run(true);
    assert_eq!(out_plain, json!({"n": 3}));
    assert_eq!(out_plain, out_restored);
    assert_eq!(events_plain, events_restored);
    assert!(
        events_plain
            .iter()
            .filter(|k| k.as_str() == "LambdaFunctionFailed")
            .count()
            >= 1
    );
}
