//! How a driver performs a distributed Map's ItemReader ([`crate::eval::ReadCall`]):
//! the S3 requests it makes and how their answers become items ([`crate::item_reader`]).
//!
//! The requests are Task calls of `arn:aws:states:::aws-sdk:s3:<action>`, made through
//! the driver's own task path, so an ItemReader reaches S3 exactly as a Task of the
//! same machine would: the endpoint, credentials or local folder that oms.toml's rules
//! give S3. The procedure is synchronous; an async driver runs it on a blocking thread.

use crate::error::Failure;
use crate::eval::{ReadCall, TaskCall};
use crate::item_reader::{self, ManifestType, ReaderFormat, Source};
use crate::resource::Target;
use serde_json::{json, Map, Value};

/// Makes one S3 request; a driver's task path.
pub type Fetch<'a> = dyn FnMut(TaskCall) -> Result<Value, Failure> + 'a;

/// Reads `call`'s items, at most its MaxItems, or fails with States.ItemReaderFailed.
pub fn read(call: &ReadCall, fetch: &mut Fetch) -> Result<Vec<Value>, Failure> {
    let format = item_reader::reader_format(&call.reader).map_err(item_reader::reader_failed)?;
    let mut s3 = S3 {
        state_name: &call.state_name,
        fetch,
    };
    let bucket = member(&call.parameters, "Bucket", true)?.unwrap_or_default();
    match format.source {
        Source::GetObject => {
            let key = member(&call.parameters, "Key", true)?.unwrap_or_default();
            read_object(&mut s3, &format, &bucket, &key, call.max_items)
        }
        Source::ListObjectsV2 => {
            let prefix = member(&call.parameters, "Prefix", false)?;
            let listing = s3.list(&bucket, prefix.as_deref())?;
            if !format.load_and_flatten {
                let raw = json!({ "Contents": listing }).to_string();
                return item_reader::parse_items(&format, &raw, call.max_items);
            }
            let keys: Vec<String> = listing
                .iter()
                .filter_map(|o| o["Key"].as_str().map(str::to_string))
                .collect();
            read_each(&mut s3, &format, &bucket, &keys, call.max_items)
        }
    }
}

/// A getObject reader: one data file, or the files a manifest names.
fn read_object(
    s3: &mut S3,
    format: &ReaderFormat,
    bucket: &str,
    key: &str,
    max_items: Option<u64>,
) -> Result<Vec<Value>, Failure> {
    let text = s3.get(bucket, key)?;
    match format.manifest_type {
        Some(ManifestType::S3Inventory) => {
            let manifest = item_reader::inventory_manifest(&text)?;
            let mut items = Vec::new();
            for file in &manifest.files {
                let left = remaining(max_items, items.len());
                if left == Some(0) {
                    break;
                }
                let csv = s3.get(&manifest.destination_bucket, &file.key)?;
                items.extend(item_reader::inventory_items(&manifest.schema, &csv, left)?);
            }
            Ok(items)
        }
        Some(ManifestType::AthenaData) => {
            let mut items = Vec::new();
            for (file_bucket, file_key) in item_reader::athena_manifest_files(&text)? {
                let left = remaining(max_items, items.len());
                if left == Some(0) {
                    break;
                }
                let data = s3.get(&file_bucket, &file_key)?;
                items.extend(item_reader::parse_items(format, &data, left)?);
            }
            Ok(items)
        }
        None => item_reader::parse_items(format, &text, max_items),
    }
}

/// `LOAD_AND_FLATTEN`: every listed object read with the reader's InputType.
fn read_each(
    s3: &mut S3,
    format: &ReaderFormat,
    bucket: &str,
    keys: &[String],
    max_items: Option<u64>,
) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    for key in keys {
        let left = remaining(max_items, items.len());
        if left == Some(0) {
            break;
        }
        let text = s3.get(bucket, key)?;
        items.extend(item_reader::parse_items(format, &text, left)?);
    }
    Ok(items)
}

/// How many more items may be read, None for no limit.
fn remaining(max_items: Option<u64>, read: usize) -> Option<u64> {
    max_items.map(|m| m.saturating_sub(read as u64))
}

/// A string member of the ItemReader's Parameters.
fn member(parameters: &Value, name: &str, required: bool) -> Result<Option<String>, Failure> {
    match parameters.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None if !required => Ok(None),
        Some(other) => Err(item_reader::reader_failed(format!(
            "The ItemReader's Parameters.{name} must be a string, not {other}"
        ))),
        None => Err(item_reader::reader_failed(format!(
            "The ItemReader's Parameters need {name}"
        ))),
    }
}

/// S3 through the driver's task path.
struct S3<'a, 'f> {
    state_name: &'a str,
    fetch: &'a mut Fetch<'f>,
}

impl S3<'_, '_> {
    fn call(&mut self, action: &str, parameters: Value) -> Result<Value, Failure> {
        let call = s3_call(self.state_name, action, parameters);
        // The reader's own error is what the Map state fails with; S3's is its cause.
        (self.fetch)(call).map_err(|f| {
            item_reader::reader_failed(format!(
                "S3 {action} failed with {}: {}",
                f.error,
                f.cause.unwrap_or_default()
            ))
        })
    }

    /// An object's content as text, as getObject's `Body` carries it.
    fn get(&mut self, bucket: &str, key: &str) -> Result<String, Failure> {
        let answer = self.call("getObject", json!({"Bucket": bucket, "Key": key}))?;
        match answer.get("Body") {
            Some(Value::String(body)) => Ok(body.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(item_reader::reader_failed(format!(
                "S3 getObject of s3://{bucket}/{key} answered without a Body"
            ))),
        }
    }

    /// Every object under `prefix`, page after page.
    fn list(&mut self, bucket: &str, prefix: Option<&str>) -> Result<Vec<Value>, Failure> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = Map::new();
            request.insert("Bucket".into(), json!(bucket));
            if let Some(p) = prefix {
                request.insert("Prefix".into(), json!(p));
            }
            if let Some(t) = &token {
                request.insert("ContinuationToken".into(), json!(t));
            }
            let page = self.call("listObjectsV2", Value::Object(request))?;
            if let Some(Value::Array(contents)) = page.get("Contents") {
                objects.extend(contents.iter().cloned());
            }
            let next = page["NextContinuationToken"].as_str().map(str::to_string);
            match next {
                Some(t) if page["IsTruncated"] == json!(true) && Some(&t) != token.as_ref() => {
                    token = Some(t)
                }
                _ => return Ok(objects),
            }
        }
    }
}

/// An S3 request as a Task call of `arn:aws:states:::aws-sdk:s3:<action>`, which a
/// driver sends the way it sends any S3 Task (the ResultWriter's too).
pub(crate) fn s3_call(state_name: &str, action: &str, parameters: Value) -> TaskCall {
    TaskCall {
        state_name: state_name.to_string(),
        resource: format!("arn:aws:states:::aws-sdk:s3:{action}"),
        target: Target::Service {
            service: "aws-sdk:s3".into(),
            action: action.into(),
            pattern: crate::resource::Pattern::RequestResponse,
        },
        function: None,
        payload: parameters.clone(),
        parameters,
        timeout_seconds: None,
        heartbeat_seconds: None,
        task_token: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(reader: Value, parameters: Value) -> ReadCall {
        ReadCall {
            state_name: "Fan".into(),
            reader,
            parameters,
            max_items: None,
        }
    }

    #[test]
    fn a_listing_is_read_page_after_page_through_the_task_path() {
        let reader = json!({"Resource": "arn:aws:states:::s3:listObjectsV2"});
        let mut asked = Vec::new();
        let mut fetch = |c: TaskCall| {
            asked.push((c.resource.clone(), c.payload.clone()));
            let first = c.payload.get("ContinuationToken").is_none();
            let key = if first { "a.json" } else { "b.json" };
            Ok(json!({
                "Contents": [{"Key": key, "Size": 3, "ETag": "\"e\"", "LastModified": 1700000000, "StorageClass": "STANDARD"}],
                "IsTruncated": first,
                "NextContinuationToken": "t1"
            }))
        };
        let items = read(
            &call(reader, json!({"Bucket": "b", "Prefix": "in/"})),
            &mut fetch,
        )
        .unwrap();
        let keys: Vec<&str> = items.iter().map(|i| i["Key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["a.json", "b.json"]);
        assert_eq!(asked[0].0, "arn:aws:states:::aws-sdk:s3:listObjectsV2");
        assert_eq!(asked[1].1["ContinuationToken"], "t1");
    }

    #[test]
    fn an_s3_call_is_the_task_an_aws_sdk_s3_resource_parses_to() {
        let c = s3_call("Fan", "getObject", json!({}));
        assert_eq!(c.target, Target::parse(&c.resource).unwrap());
    }

    #[test]
    fn an_s3_error_fails_the_reader_naming_it() {
        let reader = json!({"Resource": "arn:aws:states:::s3:getObject",
                            "ReaderConfig": {"InputType": "JSON"}});
        let mut fetch = |_: TaskCall| Err(Failure::new("S3.NoSuchKeyException", "gone"));
        let f = read(
            &call(reader, json!({"Bucket": "b", "Key": "k"})),
            &mut fetch,
        )
        .unwrap_err();
        assert_eq!(f.error, "States.ItemReaderFailed");
        assert!(f.cause.unwrap().contains("S3.NoSuchKeyException: gone"));
    }

    #[test]
    fn a_csv_object_becomes_items_up_to_max_items() {
        let reader = json!({"Resource": "arn:aws:states:::s3:getObject",
                            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}});
        let mut fetch = |_: TaskCall| Ok(json!({"Body": "sku,qty\na,1\nb,2\nc,3\n"}));
        let mut c = call(reader, json!({"Bucket": "b", "Key": "k.csv"}));
        c.max_items = Some(2);
        let items = read(&c, &mut fetch).unwrap();
        assert_eq!(
            items,
            vec![
                json!({"sku": "a", "qty": "1"}),
                json!({"sku": "b", "qty": "2"})
            ]
        );
    }
}
