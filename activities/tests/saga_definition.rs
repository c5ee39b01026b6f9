//! Static checks of the order saga's two definitions (statemachines/order-saga.asl.json
//! and its JSONata twin, order-saga.jsonata.asl.json), each with its Express child
//! (order-prepare.asl.json and its twin), against the activities they call: each saga
//! is a valid Standard workflow and each child a valid Express one; the saga's Prepare
//! states start the child; every Task of either calls an activity that exists,
//! with a Payload whose fields are exactly what the activity's input schema allows and
//! requires; every retryable error an activity raises is retried; every business
//! error of a forward step is caught (and routed to compensation), while a
//! compensation is never caught, so that a failing one stops the execution where a
//! redrive resumes it. And the twin is the JSONPath saga's shape: the same states,
//! transitions, resources, retries and catchers.

use activities::errors::ERRORS;
use activities::ACTIVITIES;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The saga's definitions, by file name: JSONPath first, then its JSONata twin.
const FILES: [&str; 2] = ["order-saga.asl.json", "order-saga.jsonata.asl.json"];
/// Their Express children, in the same order.
const CHILDREN: [&str; 2] = ["order-prepare.asl.json", "order-prepare.jsonata.asl.json"];
/// The resource of the saga's Prepare states.
const START_CHILD: &str = "arn:aws:states:::states:startExecution.sync:2";

fn read(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../statemachines")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each definition with its name, sagas and children, for the checks that hold for all.
fn definitions() -> Vec<(&'static str, Value)> {
    FILES
        .iter()
        .chain(&CHILDREN)
        .map(|f| (*f, read(f)))
        .collect()
}

/// The Tasks of a definition that call an activity (not the child).
fn activity_tasks(definition: &Value) -> Vec<(String, Value, Vec<Value>)> {
    let mut all = Vec::new();
    tasks(&definition["States"], &[], &mut all);
    all.retain(|(_, task, _)| task["Resource"] != START_CHILD);
    all
}

/// A Task's Parameters (JSONPath) or Arguments (JSONata).
fn arguments(task: &Value) -> &Value {
    task.get("Parameters")
        .or_else(|| task.get("Arguments"))
        .unwrap_or(&Value::Null)
}

/// The fields of the activity's answer a Task keeps: its ResultSelector's
/// `$.Payload.X` (JSONPath), or the `$states.result.Payload.X` its Output reads
/// (JSONata).
fn result_fields(task: &Value) -> Vec<String> {
    if let Some(sel) = task.get("ResultSelector").and_then(Value::as_object) {
        return sel
            .values()
            .map(|p| {
                p.as_str()
                    .unwrap()
                    .trim_start_matches("$.Payload.")
                    .to_string()
            })
            .collect();
    }
    let output = task
        .get("Output")
        .and_then(Value::as_str)
        .unwrap_or_default();
    output
        .split("$states.result.Payload.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
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
fn the_saga_is_a_valid_standard_workflow_and_its_child_an_express_one() {
    use asl::validate::{MachineType, Options};
    for (file, definition) in definitions() {
        let text = serde_json::to_string(&definition).unwrap();
        let machine_type = if CHILDREN.contains(&file) {
            MachineType::Express
        } else {
            MachineType::Standard
        };
        let problems = asl::validate::validate_str(&text, Options { machine_type });
        assert!(problems.is_empty(), "{file}: {problems:#?}");
    }
}

/// Prepare starts the child and catches only its failure (States.TaskFailed), to run
/// it again reporting business errors; PrepareReporting catches nothing, so a child
/// that fails for a transient error stops the saga there, where a redrive reruns it.
#[test]
fn the_saga_starts_its_child_and_stops_at_it_on_a_transient_error() {
    for file in FILES {
        let saga = read(file);
        let states = &saga["States"];
        assert_eq!(saga["StartAt"], "Prepare", "{file}");
        for name in ["Prepare", "PrepareReporting"] {
            let state = &states[name];
            assert_eq!(state["Resource"], START_CHILD, "{file} {name}");
            assert_eq!(
                arguments(state)["StateMachineArn"],
                "${OrderPrepareStateMachineArn}",
                "{file} {name}"
            );
            let report = &arguments(state)["Input"]["report_business_errors"];
            assert_eq!(
                report,
                &Value::Bool(name == "PrepareReporting"),
                "{file} {name}"
            );
        }
        let catch = states["Prepare"]["Catch"].as_array().unwrap();
        assert_eq!(catch.len(), 1, "{file}");
        assert_eq!(
            catch[0]["ErrorEquals"],
            serde_json::json!(["States.TaskFailed"])
        );
        assert_eq!(catch[0]["Next"], "PrepareReporting");
        assert!(states["PrepareReporting"].get("Catch").is_none(), "{file}");
        assert_eq!(states["PrepareReporting"]["Next"], "PrepareOutcome");
    }
}

#[test]
fn every_task_calls_an_activity_with_the_input_it_takes() {
    for (saga, child) in FILES.iter().zip(&CHILDREN) {
        let mut called = tasks_call_activities(saga, &read(saga));
        called.extend(tasks_call_activities(child, &read(child)));
        let every: BTreeSet<&str> = ACTIVITIES.iter().map(|a| a.name).collect();
        assert_eq!(called, every, "{saga} and {child} call every activity");
    }
}

/// Checks each Task's call; answers the activities called.
fn tasks_call_activities(file: &str, definition: &Value) -> BTreeSet<&'static str> {
    let all = activity_tasks(definition);
    assert!(all.len() >= 5, "{file}: {} tasks", all.len());
    let mut called = BTreeSet::new();
    for (name, task, _) in &all {
        let name = &format!("{file} {name}");
        let function = arguments(task)["FunctionName"].as_str().unwrap();
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
        let given: BTreeSet<String> = arguments(task)["Payload"]
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
        let output = serde_json::to_value((def.output_schema)()).unwrap();
        for field in result_fields(task) {
            assert!(
                output["properties"].get(&field).is_some(),
                "{name}: keeps {field} of the answer, which {activity} does not return"
            );
        }
    }
    called
}

#[test]
fn every_error_is_retried_caught_or_deliberately_fatal() {
    for (file, definition) in definitions() {
        errors_retried_or_caught(file, &definition);
    }
}

fn errors_retried_or_caught(file: &str, definition: &Value) {
    let all = activity_tasks(definition);
    let always = [
        "Activity.Unavailable",
        "Store.Unavailable",
        "Store.Contention",
    ];
    for (name, task, catches) in &all {
        let name = &format!("{file} {name}");
        let activity = arguments(task)["FunctionName"]
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

/// A Payload's fields by name (JSONPath's `.$` dropped), with the values written as
/// they are (literals) and None for those a path or an expression gives.
fn payload_shape(payload: &Value) -> Vec<(String, Option<Value>)> {
    let Some(fields) = payload.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .map(|(k, v)| {
            let dynamic = k.ends_with(".$") || v.as_str().is_some_and(|s| s.starts_with("{%"));
            let literal = match v {
                Value::Object(_) => Some(Value::Array(
                    payload_shape(v)
                        .into_iter()
                        .map(|(k, v)| serde_json::json!([k, v]))
                        .collect(),
                )),
                _ if dynamic => None,
                _ => Some(v.clone()),
            };
            (k.trim_end_matches(".$").to_string(), literal)
        })
        .collect()
}

/// What a state is, whatever its query language: type, transitions, resource, the
/// function and Payload it calls, retries, catchers (errors and targets) and, for a
/// Map, its processor's states.
fn shape(state: &Value) -> Value {
    let catchers: Vec<Value> = state["Catch"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| serde_json::json!([c["ErrorEquals"], c["Next"]]))
                .collect()
        })
        .unwrap_or_default();
    let args = arguments(state);
    let payload: Vec<Value> = payload_shape(&args["Payload"])
        .into_iter()
        .map(|(k, v)| serde_json::json!([k, v]))
        .collect();
    let processor = &state["ItemProcessor"];
    serde_json::json!({
        "type": state["Type"], "next": state["Next"], "end": state["End"],
        "resource": state["Resource"], "function": args["FunctionName"], "payload": payload,
        "retry": state["Retry"], "catch": catchers,
        "timeout": state.get("TimeoutSeconds").or(state.get("TimeoutSecondsPath")).is_some(),
        "heartbeat": state.get("HeartbeatSeconds").or(state.get("HeartbeatSecondsPath")).is_some(),
        "processor": processor.get("ProcessorConfig"),
        "processor_start": processor.get("StartAt"),
        "processor_states": processor.get("States").map(shapes),
    })
}

fn shapes(states: &Value) -> Value {
    states
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, s)| (name.clone(), shape(s)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[test]
fn the_jsonata_twin_has_the_jsonpath_sagas_shape() {
    twins_have_one_shape(FILES[0], FILES[1]);
    twins_have_one_shape(CHILDREN[0], CHILDREN[1]);
}

fn twins_have_one_shape(jsonpath_file: &str, jsonata_file: &str) {
    let (path, ata) = (read(jsonpath_file), read(jsonata_file));
    assert_eq!(ata["QueryLanguage"], "JSONata");
    assert_eq!(path["StartAt"], ata["StartAt"]);
    let (a, b) = (shapes(&path["States"]), shapes(&ata["States"]));
    let names = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "the same states, in the same order");
    for name in names(&a) {
        assert_eq!(a[&name], b[&name], "{name} differs between the twins");
    }
    // No JSONPath field or path is left in the twin (JSONata states refuse them on
    // AWS): every key is a JSONata state's, every string not a comment holds no path.
    let mut fields = Vec::new();
    walk(&ata, &mut fields);
    let jsonpath = |f: &str| {
        f.ends_with("Path")
            || f.ends_with(".$")
            || ["Parameters", "ResultSelector"].contains(&f)
            || f.starts_with("$.")
            || f.starts_with("$$.")
    };
    for f in fields {
        assert!(!jsonpath(&f), "the JSONata twin has {f}");
    }
}

/// Every key and every string value of `v` but comments.
fn walk(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter().filter(|(k, _)| *k != "Comment") {
                out.push(k.clone());
                walk(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        Value::String(s) => out.push(s.clone()),
        _ => {}
    }
}
