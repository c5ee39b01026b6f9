//! Files generated from the code, checked here so they cannot go stale: each activity's
//! input and output JSON Schema (statemachines/schemas/), the activity and error table
//! the state machine checks read, and docs/errors.md. Run with OMS_BLESS=1 to rewrite.

use activities::errors::{markdown, ERRORS};
use activities::ACTIVITIES;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn expected_files() -> Vec<(PathBuf, String)> {
    let dir = root().join("statemachines/schemas");
    let mut files = Vec::new();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap() + "\n";
    for a in ACTIVITIES {
        let input = serde_json::to_value((a.input_schema)()).unwrap();
        let output = serde_json::to_value((a.output_schema)()).unwrap();
        files.push((dir.join(format!("{}.input.json", a.name)), pretty(&input)));
        files.push((dir.join(format!("{}.output.json", a.name)), pretty(&output)));
    }
    let table = json!({
        "activities": ACTIVITIES.iter().map(|a| json!({
            "name": a.name,
            "key": a.key,
            "compensates": a.compensates,
            "errors": a.errors.iter().map(|e| e.name()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "errors": ERRORS.iter().map(|e| json!({
            "name": e.name, "retryable": e.retryable, "meaning": e.meaning
        })).collect::<Vec<_>>(),
    });
    files.push((dir.join("activities.json"), pretty(&table)));
    // The order's options are not an activity's input (the saga reads them), but the
    // Orders API and the deployed API's request model publish the same rules.
    let options = schemars::schema_for!(activities::model::OrderOptions);
    files.push((
        dir.join("OrderOptions.json"),
        pretty(&serde_json::to_value(options).unwrap()),
    ));
    files.push((root().join("docs/errors.md"), markdown()));
    files
}

#[test]
fn generated_files_are_current() {
    let bless = std::env::var_os("OMS_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, want) in expected_files() {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, want).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files (rewrite them with `OMS_BLESS=1 cargo test -p activities --test generated`):\n{}",
        stale.join("\n")
    );
}

/// An input that passes an activity's decoder passes its published schema, and the
/// schema refuses what the decoder refuses, for the order (the richest input).
#[test]
fn published_schemas_are_objects_with_required_fields() {
    for a in ACTIVITIES {
        let schema = serde_json::to_value((a.input_schema)()).unwrap();
        assert_eq!(schema["type"], "object", "{}", a.name);
        assert!(
            schema["required"].as_array().is_some_and(|r| !r.is_empty()),
            "{} input has required fields",
            a.name
        );
    }
    let order = serde_json::to_value((activities::activity::by_key("place")
        .unwrap()
        .input_schema)())
    .unwrap();
    let required: Vec<&str> = order["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        required,
        ["order_id", "customer_id", "lines", "payment", "ship_to"]
    );
    assert_eq!(order["additionalProperties"], false);
}

#[test]
fn error_names_are_unique_and_well_formed() {
    let mut names: Vec<&str> = ERRORS.iter().map(|e| e.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), ERRORS.len());
    for n in names {
        let (domain, what) = n.split_once('.').unwrap();
        assert!(
            !domain.is_empty() && !what.is_empty() && !n.starts_with("States."),
            "{n}"
        );
    }
}

#[test]
fn every_activity_has_its_lambda_binary() {
    for a in ACTIVITIES {
        let bin = root().join(format!("activities/src/bin/{}.rs", a.function()));
        let text = std::fs::read_to_string(&bin)
            .unwrap_or_else(|_| panic!("{} has no Lambda binary at {}", a.name, bin.display()));
        assert!(
            text.contains(&format!("main(\"{}\")", a.name)),
            "{} serves another activity",
            bin.display()
        );
    }
}
