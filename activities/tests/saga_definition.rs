//! Static checks of statemachines/order-saga.asl.json against the activities it calls:
//! it is a valid Standard workflow; every Task calls an activity that exists, with a
//! Payload whose fields are exactly what the activity's input schema allows and
//! requires; every retryable error an activity raises is retried; every business
//! error of a forward step is caught (and routed to compensation), while a
//! compensation is never caught, so that a failing one stops the execution where a
//! redrive resumes it.

use activities::errors::ERRORS;
use activities::ACTIVITIES;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn definition() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../statemachines/order-saga.asl.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every Task of the machine, with the Catch lists that cover it (its own and those of
/// the Map states around it), by state name.
fn tasks(states: &Value, enclosing: &[Value], out: &mut Vec<(String, Value, Vec<Value>)>) {
    for (name, state) in states.as_object().unwrap() {
        let mut catches = enclosing.to_vec();
        if let Some(c) = state.get("Catch").and_then(Value::as_array) {
            catches.extend(c.iter().cloned());
        }
        match state["Type"].as_str() {
            Some("Task") => out.push((name.clone(), state.clone(), catches)),
            Some("Map") => tasks(&state["ItemProcessor"]["States"], &catches, out),
            _ => {}
        }
    }
}

fn matches(list: &[Value], error: &str, key: &str) -> bool {
    list.iter().any(|r| {
        r[key].as_array().unwrap().iter().any(|e| {
            let e = e.as_str().unwrap();
            e == error || e == "States.ALL"
        })
    })
}

#[test]
fn the_saga_is_a_valid_standard_workflow() {
    let text = serde_json::to_string(&definition()).unwrap();
    let problems = asl::validate::validate_str(&text, Default::default());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_task_calls_an_activity_with_the_input_it_takes() {
    let mut all = Vec::new();
    tasks(&definition()["States"], &[], &mut all);
    assert!(all.len() >= 10, "{} tasks", all.len());
    let mut called = BTreeSet::new();
    for (name, task, _) in &all {
        let function = task["Parameters"]["FunctionName"].as_str().unwrap();
        let activity = function
            .strip_prefix("${")
            .and_then(|f| f.strip_suffix("FunctionArn}"))
            .unwrap_or_else(|| panic!("{name}: FunctionName {function} is not a ${{<Activity>FunctionArn}} substitution"));
        let def = activities::activity::by_name(activity)
            .unwrap_or_else(|| panic!("{name} calls {activity}, which is not an activity"));
        called.insert(def.name);
        let schema = serde_json::to_value((def.input_schema)()).unwrap();
        let allowed: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let given: BTreeSet<String> = task["Parameters"]["Payload"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: Payload is not an object"))
            .keys()
            .map(|k| k.trim_end_matches(".$").to_string())
            .collect();
        for g in &given {
            assert!(
                allowed.contains(g.as_str()),
                "{name}: {activity} takes no field {g}"
            );
        }
        for r in &required {
            assert!(given.contains(*r), "{name}: {activity} requires {r}");
        }
        if task.get("ResultSelector").is_some() {
            let output = serde_json::to_value((def.output_schema)()).unwrap();
            for (_, path) in task["ResultSelector"].as_object().unwrap() {
                let field = path.as_str().unwrap().trim_start_matches("$.Payload.");
                assert!(
                    output["properties"].get(field).is_some(),
                    "{name}: ResultSelector reads {field}, which {activity} does not return"
                );
            }
        }
    }
    let every: BTreeSet<&str> = ACTIVITIES.iter().map(|a| a.name).collect();
    assert_eq!(called, every, "the saga calls every activity");
}

#[test]
fn every_error_is_retried_caught_or_deliberately_fatal() {
    let mut all = Vec::new();
    tasks(&definition()["States"], &[], &mut all);
    let always = [
        "Activity.Unavailable",
        "Store.Unavailable",
        "Store.Contention",
    ];
    for (name, task, catches) in &all {
        let activity = task["Parameters"]["FunctionName"]
            .as_str()
            .unwrap()
            .trim_start_matches("${")
            .trim_end_matches("FunctionArn}");
        let def = activities::activity::by_name(activity).unwrap();
        let retry = task["Retry"].as_array().cloned().unwrap_or_default();
        let raised = def.errors.iter().map(|k| k.name()).chain(always);
        for error in raised {
            let spec = ERRORS.iter().find(|e| e.name == error).unwrap();
            if spec.retryable {
                assert!(
                    matches(&retry, error, "ErrorEquals"),
                    "{name}: {error} is retryable and not retried"
                );
                continue;
            }
            let caught = matches(catches, error, "ErrorEquals");
            if def.compensates.is_some() || def.key == "record_status" || def.key == "place" {
                // Compensations and status records are not caught: a failure stops the
                // execution at that state, which is where a redrive resumes. PlaceOrder's
                // only errors mean the order was never placed.
                assert!(
                    def.key == "place" || !caught,
                    "{name}: {error} is caught, so a redrive could not resume this compensation"
                );
            } else {
                assert!(
                    caught,
                    "{name}: {error} is a business error and is not caught"
                );
            }
        }
        assert!(
            !matches(&retry, "States.ALL", "ErrorEquals"),
            "{name}: retrying States.ALL would retry business errors too"
        );
    }
}
