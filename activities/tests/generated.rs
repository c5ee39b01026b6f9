//! Files generated from the code, checked here so they cannot go stale: each activity's
//! input and output JSON Schema (statemachines/schemas/), the activity and error table
//! the state machine checks read, and docs/errors.md. Run with OMS_BLESS=1 to rewrite.

use activities::amend::AMEND_ACTIVITIES;
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
    // Every Lambda function's activity, with the state machine that calls it (the CDK
    // app deploys each machine with the functions of its own activities only).
    let machines = [
        ("order-saga", ACTIVITIES),
        ("order-amend", AMEND_ACTIVITIES),
    ];
    let table = json!({
        "activities": machines.iter().flat_map(|(machine, defs)| defs.iter().map(move |a| json!({
            "name": a.name,
            "machine": machine,
            "key": a.key,
            "compensates": a.compensates,
            "errors": a.errors.iter().map(|e| e.name()).collect::<Vec<_>>(),
        }))).collect::<Vec<_>>(),
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

/// What an activity's decoder and its published input schema must agree on: every
/// variant of a valid sample (tests/input_samples.json) that one accepts, the other
/// accepts too.
#[test]
fn decoders_and_published_schemas_accept_the_same_inputs() {
    let samples: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("activities/tests/input_samples.json")).unwrap(),
    )
    .unwrap();
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for a in ACTIVITIES {
        let sample = &samples[a.name];
        assert!(
            sample.is_object(),
            "tests/input_samples.json has no {}",
            a.name
        );
        let schema = serde_json::to_value((a.input_schema)()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(
            (a.accepts)(sample).is_ok(),
            "{}'s sample is refused",
            a.name
        );
        for (what, input) in variants(sample) {
            checked += 1;
            let decoder = (a.accepts)(&input).is_ok();
            let published = validator.is_valid(&input);
            if decoder != published {
                disagreements.push(format!(
                    "{} {what}: decoder {}, schema {}: {input}",
                    a.name,
                    verdict(decoder),
                    verdict(published)
                ));
            }
        }
    }
    assert!(checked > 500, "only {checked} variants");
    assert!(
        disagreements.is_empty(),
        "{} of {checked} inputs are judged differently:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

fn verdict(accepts: bool) -> &'static str {
    if accepts {
        "accepts"
    } else {
        "refuses"
    }
}

/// Values that break a field in the ways clients do.
fn replacements() -> Vec<(&'static str, Value)> {
    vec![
        ("null", Value::Null),
        ("true", json!(true)),
        ("0", json!(0)),
        ("-1", json!(-1)),
        ("1.5", json!(1.5)),
        ("1e30", json!(1e30)),
        ("1001", json!(1001)),
        ("an empty string", json!("")),
        ("a blank string", json!("   ")),
        ("a short string", json!("x")),
        ("a 65-character id", json!("a".repeat(65))),
        ("a 300-character string", json!("b".repeat(300))),
        ("a newline", json!("two\nlines")),
        ("a status name", json!("COMPLETED")),
        ("an empty array", json!([])),
        ("an empty object", json!({})),
    ]
}

/// The sample itself, then, at every path in it: the field removed, replaced by each
/// of `replacements`, and (for objects) an unknown field added.
fn variants(sample: &Value) -> Vec<(String, Value)> {
    let mut out = vec![("as given".to_string(), sample.clone())];
    let mut paths = Vec::new();
    collect_paths(sample, &mut Vec::new(), &mut paths);
    for path in paths {
        let at = path.join(".");
        if !path.is_empty() {
            out.push((format!("without {at}"), edit(sample, &path, None)));
        }
        for (name, v) in replacements() {
            if !path.is_empty() {
                out.push((format!("{at} = {name}"), edit(sample, &path, Some(v))));
            }
        }
        if sample
            .pointer(&pointer(&path))
            .is_some_and(Value::is_object)
        {
            let mut extra = path.clone();
            extra.push("unexpected".into());
            out.push((
                format!("{at} with an unknown field"),
                edit(sample, &extra, Some(json!(1))),
            ));
        }
    }
    out
}

fn collect_paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (k, child) in children {
        at.push(k);
        collect_paths(child, at, out);
        at.pop();
    }
}

/// The JSON pointer of `path` ("" for the root).
fn pointer(path: &[String]) -> String {
    path.iter().map(|p| format!("/{p}")).collect()
}

/// `sample` with the value at `path` replaced (or removed when `with` is None).
fn edit(sample: &Value, path: &[String], with: Option<Value>) -> Value {
    let mut out = sample.clone();
    let (last, parent) = path.split_last().expect("a path below the root");
    match (out.pointer_mut(&pointer(parent)), with) {
        (Some(Value::Object(m)), Some(v)) => {
            m.insert(last.clone(), v);
        }
        (Some(Value::Object(m)), None) => {
            m.remove(last);
        }
        (Some(Value::Array(a)), Some(v)) => a[last.parse::<usize>().unwrap()] = v,
        (Some(Value::Array(a)), None) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        _ => unreachable!("a path's parent is an object or an array"),
    }
    out
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
    for a in ACTIVITIES.iter().chain(AMEND_ACTIVITIES) {
        let bin = root().join(format!("activities/src/bin/{}.rs", a.function()));
        let text = std::fs::read_to_string(&bin)
            .unwrap_or_else(|_| panic!("{} has no Lambda binary at {}", a.name, bin.display()));
        assert!(
            text.contains(&format!("main(\"{}\")", a.name)),
            "{} serves another activity",
            bin.display()
        );
        let amendment = AMEND_ACTIVITIES.iter().any(|b| b.name == a.name);
        assert_eq!(
            activities::lambda::is_amendment(a.name),
            Ok(amendment),
            "{}",
            a.name
        );
    }
}
