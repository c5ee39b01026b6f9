//! Data-driven TestState cases: each file of `teststate_cases/` holds a state's
//! `definition`, its `input`, the call's other arguments (`args`, named as the API
//! names them) and the `expected` response (values in place of JSON text) or refusal
//! (`{"refused": "Validation" | "InvalidDefinition", "message": ...}`). Tasks without a
//! mock are answered by an in-test handler that echoes its payload.

use asl::error::Failure;
use asl::runner::TaskOutcome;
use asl::teststate::{self, FieldValidationMode, InspectionLevel, Mock, Request, RequestError};
use asl::TaskCall;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use std::path::Path;

fn request(case: &Value) -> Request {
    let args = &case["args"];
    let start = Utc.with_ymd_and_hms(2025, 1, 15, 10, 30, 0).unwrap();
    let mut req = Request::new(case["definition"].clone(), case["input"].clone(), start);
    req.inspection_level = match args["inspectionLevel"].as_str() {
        Some("DEBUG") => InspectionLevel::Debug,
        Some("TRACE") => InspectionLevel::Trace,
        _ => InspectionLevel::Info,
    };
    req.state_name = args["stateName"].as_str().map(str::to_string);
    if let Some(v) = args["variables"].as_str() {
        req.variables = serde_json::from_str(v).expect("variables are a JSON object");
    }
    if let Some(c) = args["context"].as_str() {
        req.context = Some(serde_json::from_str(c).expect("context is JSON"));
    }
    let mock = &args["mock"];
    if let Some(r) = mock["result"].as_str() {
        req.mock = Some(Mock::Result(r.to_string()));
    } else if let Some(e) = mock.get("errorOutput") {
        req.mock = Some(Mock::Error(Failure {
            error: e["error"].as_str().unwrap_or_default().to_string(),
            cause: e["cause"].as_str().map(str::to_string),
        }));
    }
    req.field_validation_mode = match mock["fieldValidationMode"].as_str() {
        Some("PRESENT") => FieldValidationMode::Present,
        Some("NONE") => FieldValidationMode::None,
        _ => FieldValidationMode::Strict,
    };
    let config = &args["stateConfiguration"];
    let count = |k: &str| config[k].as_u64().map(|n| u32::try_from(n).expect("a u32"));
    req.retrier_retry_count = count("retrierRetryCount").unwrap_or(0);
    req.map_iteration_failure_count = count("mapIterationFailureCount");
    req.error_caused_by_state = config["errorCausedByState"].as_str().map(str::to_string);
    req.map_item_reader_data = config["mapItemReaderData"].as_str().map(str::to_string);
    req
}

fn refusal(e: RequestError) -> Value {
    let (kind, message) = match e {
        RequestError::Validation(m) => ("Validation", m),
        RequestError::InvalidDefinition(m) => ("InvalidDefinition", m),
    };
    serde_json::json!({"refused": kind, "message": message})
}

#[test]
fn teststate_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/teststate_cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("teststate_cases exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected at least 10 cases, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable case");
        let case: Value = serde_json::from_str(&text).expect("case is JSON");
        let req = request(&case);
        let mut echo = |call: &TaskCall| TaskOutcome::ok(call.payload.clone());
        let got = match teststate::test_state(&req, &mut echo) {
            Ok(r) => r.to_json(),
            Err(e) => refusal(e),
        };
        if got != case["expected"] {
            failures.push(format!(
                "{}:\n  got      {got}\n  expected {}",
                path.file_name().unwrap().to_string_lossy(),
                case["expected"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_state_is_an_invalid_definition() {
    let req = Request::new(
        serde_json::json!({"Type": "Pass", "Next": "A", "End": true}),
        serde_json::json!({}),
        Utc::now(),
    );
    let mut never = |_: &TaskCall| -> TaskOutcome { unreachable!("no task to call") };
    assert!(matches!(
        teststate::test_state(&req, &mut never),
        Err(teststate::RequestError::InvalidDefinition(_))
    ));
}
