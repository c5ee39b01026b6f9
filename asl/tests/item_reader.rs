//! Data-driven Distributed Map ItemReader cases: each `item_reader/*.json` file holds an
//! `itemReader` field (or an `op` naming another reader function), the data read
//! (`data` inline or `dataFile` beside it) and the `expected` items, error, or
//! `readerError` (the ItemReader field itself refused). Most data are AWS's own
//! documented examples.

use asl::error::Failure;
use asl::item_reader::{self, ReaderFormat};
use serde_json::{json, Value};
use std::path::Path;

fn failure_json(f: Failure) -> Value {
    json!({"error": f.error, "cause": f.cause})
}

fn items_or_failure(r: Result<Vec<Value>, Failure>) -> Value {
    r.map_or_else(failure_json, |items| json!({ "items": items }))
}

fn parse_items(case: &Value, data: &str) -> Value {
    let format: ReaderFormat = match item_reader::reader_format(&case["itemReader"]) {
        Ok(f) => f,
        Err(e) => return json!({ "readerError": e }),
    };
    let max = match (&format.max_items, case["maxItems"].as_u64()) {
        (_, Some(n)) => Some(n),
        (item_reader::MaxItems::Count(n), None) => Some(*n),
        _ => None,
    };
    items_or_failure(item_reader::parse_items(&format, data, max))
}

fn run(case: &Value, data: &str) -> Value {
    match case["op"].as_str() {
        None => parse_items(case, data),
        Some("inventory_manifest") => match item_reader::inventory_manifest(data) {
            Err(f) => failure_json(f),
            Ok(m) => json!({
                "destinationBucket": m.destination_bucket,
                "schema": m.schema,
                "files": m.files.iter().map(|f| json!({"key": f.key, "sizeBytes": f.size_bytes})).collect::<Vec<_>>(),
            }),
        },
        Some("inventory_items") => {
            let schema: Vec<String> =
                serde_json::from_value(case["schema"].clone()).expect("schema");
            items_or_failure(item_reader::inventory_items(&schema, data, None))
        }
        Some("athena_manifest_files") => match item_reader::athena_manifest_files(data) {
            Ok(files) => json!({ "files": files }),
            Err(f) => failure_json(f),
        },
        Some(other) => panic!("unknown op {other}"),
    }
}

#[test]
fn item_reader_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/item_reader");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/item_reader exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let case: Value = serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
            case.get("expected").is_some().then_some((p, case))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        cases.len() >= 25,
        "expected at least 25 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for (path, case) in &cases {
        let data = match (case["data"].as_str(), case["dataFile"].as_str()) {
            (Some(d), _) => d.to_string(),
            (None, Some(f)) => {
                std::fs::read_to_string(dir.join(f)).expect("data file beside the case")
            }
            (None, None) => panic!("{}: neither data nor dataFile", path.display()),
        };
        let got = run(case, &data);
        if got != case["expected"] {
            let name = path.file_name().unwrap().to_string_lossy();
            failures.push(format!(
                "{name}:\n  got      {got}\n  expected {}",
                case["expected"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
