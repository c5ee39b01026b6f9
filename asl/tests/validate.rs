//! Data-driven validator tests: every `validate_cases/*.json` holds a definition (or
//! raw `definition_text`), an optional `machine_type`, and the diagnostics expected,
//! compared as an unordered list of {code, message, location}. Cases marked `needs`
//! depend on the real JSONPath / intrinsic parsers. Every case that validates must also
//! load with `Machine::parse`, which execution uses.

use asl::validate::{validate, validate_str, MachineType, Options, Severity};
use asl::Machine;
use serde_json::{json, Value};
use std::path::Path;

fn key(v: &Value) -> String {
    v.to_string()
}

#[test]
fn validate_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("cases folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 50, "only {} cases", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).expect("readable case");
        let case: Value = serde_json::from_str(&text).expect("case is JSON");
        let opts = Options {
            machine_type: match case["machine_type"].as_str() {
                Some("EXPRESS") => MachineType::Express,
                _ => MachineType::Standard,
            },
        };
        let got = match case.get("definition_text").and_then(Value::as_str) {
            Some(t) => validate_str(t, opts),
            None => validate(&case["definition"], opts),
        };
        let mut got: Vec<String> = got
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| {
                let mut v = json!({"code": d.code, "message": d.message});
                if let Some(l) = &d.location {
                    v["location"] = json!(l);
                }
                key(&v)
            })
            .collect();
        let mut want: Vec<String> = case["expect"]
            .as_array()
            .expect("expect list")
            .iter()
            .map(key)
            .collect();
        // Validation and execution read one model: what validates must load.
        if got.is_empty() {
            let loaded = match case.get("definition_text").and_then(Value::as_str) {
                Some(t) => Machine::parse(t),
                None => Machine::from_value(&case["definition"]),
            };
            if let Err(e) = loaded {
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                failures.push(format!(
                    "{name}: validates but Machine::parse refuses it: {e}"
                ));
            }
        }
        got.sort();
        want.sort();
        if got != want {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let needs = case
                .get("needs")
                .map(|n| format!(" (needs {n})"))
                .unwrap_or_default();
            failures.push(format!("{name}{needs}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            // Field names and values that steer into the validator's branches.
            prop::sample::select(vec![
                "StartAt",
                "States",
                "Type",
                "Pass",
                "Task",
                "Choice",
                "Map",
                "Parallel",
                "Wait",
                "Fail",
                "Succeed",
                "Next",
                "End",
                "$",
                "$.a",
                "$$",
                "States.ALL",
                "States.Format('{}', $.a)",
                "{% 1 %}",
                "JSONata",
                "JSONPath",
                "2016-03-14T01:59:00Z",
                "arn:aws:states:::lambda:invoke",
            ])
            .prop_map(|s| json!(s)),
            ".*".prop_map(Value::String),
        ];
        let keys = prop::sample::select(vec![
            "StartAt",
            "States",
            "Type",
            "Next",
            "End",
            "Choices",
            "Default",
            "Branches",
            "ItemProcessor",
            "Iterator",
            "ProcessorConfig",
            "Mode",
            "Variable",
            "And",
            "Not",
            "StringEquals",
            "Parameters",
            "x.$",
            "Assign",
            "Retry",
            "Catch",
            "ErrorEquals",
            "Resource",
            "QueryLanguage",
            "Seconds",
            "Timestamp",
            "ResultPath",
            "A",
            "B",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "Condition",
        ]);
        leaf.prop_recursive(6, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn validate_is_total(v in any_json(), express in any::<bool>()) {
            let opts = Options { machine_type: if express { MachineType::Express } else { MachineType::Standard } };
            let _ = validate(&v, opts);
            let _ = validate_str(&v.to_string(), opts);
        }

        #[test]
        fn validate_str_is_total(s in ".*") {
            let _ = validate_str(&s, Options::default());
        }
    }
}

/// Found by fuzzing (fuzz/, the definition target): validation reads the first JSON value
/// and ignores what follows, as AWS does, but loading refused the trailing text, so
/// ValidateStateMachineDefinition said OK to a definition CreateStateMachine rejected.
#[test]
fn a_definition_that_validates_loads_even_with_trailing_text() {
    let text = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}{"StartAt":"#;
    let diags = validate_str(text, Options::default());
    assert!(
        !diags.iter().any(|d| d.severity == Severity::Error),
        "{diags:?}"
    );
    asl::Machine::parse(text).expect("what validates, loads");
    assert!(asl::Machine::parse("").is_err());
    assert!(asl::Machine::parse("{").is_err());
}

/// Found by fuzzing (fuzz/, the definition target): missing targets were reported in a
/// HashMap's order, so the same definition gave its diagnostics (and CreateStateMachine
/// its message) in a different order from one call to the next.
#[test]
fn missing_targets_are_reported_in_the_order_the_states_are_written() {
    let names = ["S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7"];
    let mut states = serde_json::Map::new();
    for n in names {
        states.insert(
            n.into(),
            json!({"Type": "Pass", "Next": format!("Gone{n}")}),
        );
    }
    states.insert("End".into(), json!({"Type": "Succeed"}));
    let def = json!({"StartAt": "S0", "States": states});
    let missing: Vec<String> = validate(&def, Options::default())
        .into_iter()
        .filter(|d| d.message.starts_with("Missing 'Next' target"))
        .filter_map(|d| d.location)
        .collect();
    let expected: Vec<String> = names.iter().map(|n| format!("/States/{n}/Next")).collect();
    assert_eq!(missing, expected);
}
