//! A distributed Map's ResultWriter ([`crate::eval::WriteCall`]): the Map's results,
//! formatted as `WriterConfig` says, returned as the state's result or exported to
//! S3, as AWS documents it ("ResultWriter (Map)").
//!
//! - `Transformation`: `NONE` gives each child execution's record (ARN, input,
//!   output, status, dates; its error and cause if it failed), `COMPACT` the children's
//!   outputs, `FLATTEN` the outputs with array outputs flattened one level. A failed
//!   child is always given as its record. The default is `NONE` when exporting, and
//!   `COMPACT` otherwise.
//! - Exporting (`Resource` `arn:aws:states:::s3:putObject` with `Parameters` Bucket and
//!   Prefix): `<Prefix>/<Map Run id>/SUCCEEDED_0.json`, `FAILED_0.json` (each written
//!   only when it has records) and `manifest.json` naming them, written through the
//!   driver's task path as `aws-sdk:s3:putObject` calls. The state's result is then
//!   `{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}`, the Key the manifest's.
//!   With `OutputType: JSONL` the files hold JSON Lines (`.jsonl`).

use crate::error::{names, Failure};
use crate::eval::WriteCall;
use crate::map_reader::Fetch;
use serde_json::{json, Map, Value};

/// One child execution of a Map Run as the results describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRecord {
    pub index: usize,
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    /// The API's status: SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// Input and output as JSON text, as DescribeExecution gives them.
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// ISO 8601 instants.
    pub start_date: String,
    pub stop_date: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transformation {
    None,
    Compact,
    Flatten,
}

/// The ResultWriter field, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterConfig {
    pub transformation: Transformation,
    pub jsonl: bool,
    /// Whether the results go to S3 (`Resource` and `Parameters` given).
    pub export: bool,
}

/// Parses the ResultWriter field; the error names the field and the rule broken.
pub fn writer_config(writer: &Value) -> Result<WriterConfig, String> {
    let w = writer
        .as_object()
        .ok_or("ResultWriter: must be an object")?;
    let export = match w.get("Resource").map(|r| r.as_str()) {
        None => false,
        Some(Some(r)) if r.starts_with("arn:") && r.ends_with(":s3:putObject") => true,
        Some(_) => {
            return Err("ResultWriter.Resource: must be arn:aws:states:::s3:putObject".into())
        }
    };
    let config = w.get("WriterConfig");
    if !export && config.is_none() {
        return Err(
            "ResultWriter: give Resource and Parameters, WriterConfig, or all three".into(),
        );
    }
    let field = |name: &str| config.and_then(|c| c.get(name)).and_then(Value::as_str);
    let transformation = match field("Transformation") {
        None if export => Transformation::None,
        None => Transformation::Compact,
        Some("NONE") => Transformation::None,
        Some("COMPACT") => Transformation::Compact,
        Some("FLATTEN") => Transformation::Flatten,
        Some(other) => {
            return Err(format!(
            "ResultWriter.WriterConfig.Transformation: '{other}' is not NONE, COMPACT or FLATTEN"
        ))
        }
    };
    let jsonl = match field("OutputType") {
        None | Some("JSON") => false,
        Some("JSONL") => true,
        Some(other) => {
            return Err(format!(
                "ResultWriter.WriterConfig.OutputType: '{other}' is not JSON or JSONL"
            ))
        }
    };
    Ok(WriterConfig {
        transformation,
        jsonl,
        export,
    })
}

/// The ResultWriter's outcome: the formatted results, or (exporting) the details of
/// what was written. `records` are the Map Run's children in item order.
pub fn write(
    call: &WriteCall,
    records: &[ChildRecord],
    fetch: &mut Fetch,
) -> Result<Value, Failure> {
    let config = writer_config(&call.writer).map_err(writer_failed)?;
    if !config.export {
        return Ok(Value::Array(format_results(
            config.transformation,
            &call.results,
            records,
        )));
    }
    let bucket = member(&call.parameters, "Bucket")?;
    let prefix = call
        .parameters
        .get("Prefix")
        .and_then(Value::as_str)
        .unwrap_or("");
    let run_id = call.map_run_arn.rsplit(':').next().unwrap_or_default();
    let dir = if prefix.is_empty() {
        run_id.to_string()
    } else {
        format!("{}/{run_id}", prefix.trim_end_matches('/'))
    };
    let (succeeded, failed): (Vec<&ChildRecord>, Vec<&ChildRecord>) =
        records.iter().partition(|r| r.status == "SUCCEEDED");
    let mut files = Map::new();
    for (group, members) in [("SUCCEEDED", succeeded), ("FAILED", failed)] {
        let mut written = Vec::new();
        if !members.is_empty() {
            let key = format!(
                "{dir}/{group}_0.{}",
                if config.jsonl { "jsonl" } else { "json" }
            );
            let body = file_body(&config, &members);
            put(fetch, &call.state_name, bucket, &key, &body)?;
            written.push(json!({"Key": key, "Size": body.len()}));
        }
        files.insert(group.into(), Value::Array(written));
    }
    files.insert("PENDING".into(), json!([]));
    let manifest_key = format!("{dir}/manifest.json");
    let manifest = json!({
        "DestinationBucket": bucket,
        "MapRunArn": call.map_run_arn,
        "ResultFiles": files,
    });
    put(
        fetch,
        &call.state_name,
        bucket,
        &manifest_key,
        &manifest.to_string(),
    )?;
    Ok(json!({
        "MapRunArn": call.map_run_arn,
        "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key},
    }))
}

/// The state's result without export: the engine's results (outputs, and the error
/// objects of tolerated failures) transformed, or the children's records.
fn format_results(t: Transformation, results: &[Value], records: &[ChildRecord]) -> Vec<Value> {
    match t {
        Transformation::None => records.iter().map(record_json).collect(),
        Transformation::Compact => results.to_vec(),
        Transformation::Flatten => flatten(results.iter().cloned()),
    }
}

/// One results file's text: records, or outputs (a failed child stays a record).
fn file_body(config: &WriterConfig, members: &[&ChildRecord]) -> String {
    let entries: Vec<Value> = match config.transformation {
        Transformation::None => members.iter().map(|r| record_json(r)).collect(),
        t => {
            let outputs = members
                .iter()
                .map(|r| match (&r.output, r.status.as_str()) {
                    (Some(o), "SUCCEEDED") => serde_json::from_str(o).unwrap_or(Value::Null),
                    _ => record_json(r),
                });
            if t == Transformation::Flatten {
                flatten(outputs)
            } else {
                outputs.collect()
            }
        }
    };
    if config.jsonl {
        entries.iter().map(|e| format!("{e}\n")).collect()
    } else {
        Value::Array(entries).to_string()
    }
}

fn flatten(values: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::Array(items) => out.extend(items),
            other => out.push(other),
        }
    }
    out
}

/// A child's record as AWS writes it (DescribeExecution's fields, capitalised).
fn record_json(r: &ChildRecord) -> Value {
    let mut o = json!({
        "ExecutionArn": r.execution_arn,
        "Input": r.input,
        "InputDetails": {"Included": true},
        "Name": r.name,
        "RedriveCount": 0,
        "StartDate": r.start_date,
        "StateMachineArn": r.state_machine_arn,
        "Status": r.status,
    });
    let fields = [
        ("Output", &r.output),
        ("Error", &r.error),
        ("Cause", &r.cause),
        ("StopDate", &r.stop_date),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            o[name] = json!(v);
        }
    }
    if r.output.is_some() {
        o["OutputDetails"] = json!({"Included": true});
    }
    o
}

fn member<'a>(parameters: &'a Value, name: &str) -> Result<&'a str, Failure> {
    parameters.get(name).and_then(Value::as_str).ok_or_else(|| {
        writer_failed(format!(
            "The ResultWriter's Parameters need {name} (a string)"
        ))
    })
}

fn put(fetch: &mut Fetch, state: &str, bucket: &str, key: &str, body: &str) -> Result<(), Failure> {
    let parameters = json!({"Bucket": bucket, "Key": key, "Body": body});
    let call = crate::map_reader::s3_call(state, "putObject", parameters);
    fetch(call).map(|_| ()).map_err(|f| {
        writer_failed(format!(
            "S3 putObject of s3://{bucket}/{key} failed with {}: {}",
            f.error,
            f.cause.unwrap_or_default()
        ))
    })
}

fn writer_failed(cause: impl Into<String>) -> Failure {
    Failure::new(names::RESULT_WRITER_FAILED, cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::TaskCall;

    fn record(index: usize, status: &str, output: Option<&str>) -> ChildRecord {
        ChildRecord {
            index,
            execution_arn: format!("arn:aws:states:us-east-1:1:execution:m/L:{index}"),
            name: index.to_string(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:m/L".into(),
            status: status.into(),
            input: "{}".into(),
            output: output.map(str::to_string),
            error: (status == "FAILED").then(|| "E".to_string()),
            cause: None,
            start_date: "2026-01-01T00:00:00Z".into(),
            stop_date: Some("2026-01-01T00:00:01Z".into()),
        }
    }

    fn call(writer: Value) -> WriteCall {
        WriteCall {
            state_name: "Fan".into(),
            map_run_arn: "arn:aws:states:us-east-1:1:mapRun:m/L:run-1".into(),
            writer,
            parameters: json!({"Bucket": "out", "Prefix": "jobs"}),
            results: vec![json!([1, 2]), json!({"Error": "E", "Cause": ""})],
        }
    }

    #[test]
    fn exporting_writes_the_files_then_the_manifest_naming_them() {
        let writer = json!({"Resource": "arn:aws:states:::s3:putObject",
                            "Parameters": {"Bucket": "out", "Prefix": "jobs"},
                            "WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSONL"}});
        let records = [
            record(0, "SUCCEEDED", Some("[1,2]")),
            record(1, "FAILED", None),
        ];
        let mut puts = Vec::new();
        let mut fetch = |c: TaskCall| {
            puts.push((
                c.payload["Key"].as_str().unwrap().to_string(),
                c.payload["Body"].as_str().unwrap().to_string(),
            ));
            Ok(json!({"ETag": "\"x\""}))
        };
        let out = write(&call(writer), &records, &mut fetch).unwrap();
        assert_eq!(
            out["ResultWriterDetails"],
            json!({"Bucket": "out", "Key": "jobs/run-1/manifest.json"})
        );
        assert_eq!(
            puts[0],
            (
                "jobs/run-1/SUCCEEDED_0.jsonl".to_string(),
                "1\n2\n".to_string()
            )
        );
        assert!(puts[1].1.contains("\"Status\":\"FAILED\""), "{}", puts[1].1);
        let manifest: Value = serde_json::from_str(&puts[2].1).unwrap();
        assert_eq!(manifest["ResultFiles"]["SUCCEEDED"][0]["Size"], 4);
        assert_eq!(
            manifest["MapRunArn"],
            "arn:aws:states:us-east-1:1:mapRun:m/L:run-1"
        );
    }

    #[test]
    fn without_export_the_results_are_transformed_in_place() {
        let records = [record(0, "SUCCEEDED", Some("[1,2]"))];
        let mut fetch = |_: TaskCall| -> Result<Value, Failure> { panic!("nothing is written") };
        let flat = write(
            &call(json!({"WriterConfig": {"Transformation": "FLATTEN"}})),
            &records,
            &mut fetch,
        )
        .unwrap();
        assert_eq!(flat, json!([1, 2, {"Error": "E", "Cause": ""}]));
        let none = write(
            &call(json!({"WriterConfig": {"Transformation": "NONE"}})),
            &records,
            &mut fetch,
        )
        .unwrap();
        assert_eq!(none[0]["Status"], "SUCCEEDED");
    }

    #[test]
    fn a_bad_writer_names_the_field() {
        assert!(writer_config(&json!({}))
            .unwrap_err()
            .contains("ResultWriter"));
        let e = writer_config(&json!({"WriterConfig": {"OutputType": "CSV"}})).unwrap_err();
        assert!(e.contains("OutputType"), "{e}");
    }
}
