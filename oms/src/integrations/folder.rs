//! S3 buckets kept in a local folder (`s3_folder` on an oms.toml rule): bucket `B`
//! is the folder `<s3_folder>/B`, and object `K` the file at the relative path `K`.
//! `aws-sdk:s3` `getObject`, `putObject` and `listObjectsV2` answer as S3 does (the
//! shapes of s3.rs, S3's error names), so a distributed Map's ItemReader, and Tasks
//! that read or write objects, run against files on disk with no S3 server at all.
//!
//! Keys that would leave the bucket's folder (`..`, an absolute path, an empty
//! segment) are refused. A put writes a temporary file and renames it into place, so
//! a reader sees the old object or the new one, never half of one. ContentType and
//! Metadata are not kept: a get answers without them.

use super::errors::{self, Kind, ServiceError};
use super::services;
use asl::resource::Target;
use asl::{Failure, TaskCall};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// S3's page size for ListObjectsV2, and its most.
const MAX_KEYS: usize = 1000;
/// Temporary files of puts in progress, left out of listings.
const TMP_PREFIX: &str = ".oms-put-";

/// Performs an `aws-sdk:s3` Task on the buckets under `root`.
pub fn call(root: &Path, call: &TaskCall) -> Result<Value, Failure> {
    let action = match &call.target {
        Target::Service {
            service, action, ..
        } if service == "aws-sdk:s3" => action.as_str(),
        _ => {
            return Err(Failure::new(
                asl::error::names::TASK_FAILED,
                format!(
                    "{}: an s3_folder rule serves aws-sdk:s3 Tasks only",
                    call.resource
                ),
            ))
        }
    };
    let p = call
        .payload
        .as_object()
        .ok_or_else(|| bad("Parameters must be an object"))?;
    let bucket = bucket_dir(root, string(p, "Bucket")?.unwrap_or_default())?;
    match action {
        "getObject" => get(&bucket, required(p, "Key")?),
        "putObject" => put(&bucket, required(p, "Key")?, p.get("Body")),
        "listObjectsV2" => list(&bucket, p),
        other => Err(bad(format!(
            "an s3_folder bucket answers getObject, putObject and listObjectsV2, not {other}"
        ))),
    }
}

fn get(bucket: &Path, key: &str) -> Result<Value, Failure> {
    let path = object_path(bucket, key)?;
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(s3_error(
                "NoSuchKey",
                "The specified key does not exist.",
                404,
            ))
        }
        Err(e) => return Err(io_failure(&path, e)),
    };
    let modified = modified_rfc3339(&path);
    let body = String::from_utf8(bytes).map_err(|_| {
        bad(format!(
            "the object {key} is not UTF-8 text, which is all a Task result can carry"
        ))
    })?;
    Ok(json!({
        "Body": body,
        "ContentLength": body.len(),
        "ETag": etag(body.as_bytes()),
        "LastModified": modified,
        "Metadata": {},
    }))
}

fn put(bucket: &Path, key: &str, body: Option<&Value>) -> Result<Value, Failure> {
    let path = object_path(bucket, key)?;
    // A JSON Body is stored serialized, as Step Functions stores it.
    let bytes = match body {
        None => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let dir = path.parent().unwrap_or(bucket);
    std::fs::create_dir_all(dir).map_err(|e| io_failure(dir, e))?;
    let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, &bytes).map_err(|e| io_failure(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_failure(&path, e)
    })?;
    Ok(json!({ "ETag": etag(&bytes) }))
}

fn list(bucket: &Path, p: &Map<String, Value>) -> Result<Value, Failure> {
    let prefix = string(p, "Prefix")?.unwrap_or_default();
    // The continuation token is the last key of the previous page.
    let after = string(p, "ContinuationToken")?.or(string(p, "StartAfter")?);
    let max_keys = match p.get("MaxKeys") {
        None => MAX_KEYS,
        Some(n) => n
            .as_u64()
            .filter(|n| *n <= MAX_KEYS as u64)
            .ok_or_else(|| {
                bad(format!(
                    "MaxKeys must be an integer from 0 to 1000, not {n}"
                ))
            })? as usize,
    };
    let mut keys = Vec::new();
    walk(bucket, bucket, &mut keys)?;
    keys.retain(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a));
    keys.sort();
    let truncated = keys.len() > max_keys;
    keys.truncate(max_keys);
    let contents: Vec<Value> = keys.iter().map(|k| listed(bucket, k)).collect();
    let mut out = json!({
        "Contents": contents,
        "IsTruncated": truncated,
        "KeyCount": keys.len(),
        "MaxKeys": max_keys,
        "Name": bucket.file_name().map(|n| n.to_string_lossy().into_owned()),
        "Prefix": prefix,
    });
    if let (true, Some(last)) = (truncated, keys.last()) {
        out["NextContinuationToken"] = json!(last);
    }
    Ok(out)
}

/// One listed object as ListObjectsV2 gives it.
fn listed(bucket: &Path, key: &str) -> Value {
    let path = bucket.join(key);
    let bytes = std::fs::read(&path).unwrap_or_default();
    json!({
        "Key": key,
        "Size": bytes.len(),
        "ETag": etag(&bytes),
        "LastModified": modified_rfc3339(&path),
        "StorageClass": "STANDARD",
    })
}

/// Every file below `dir` as a key relative to `bucket`, with `/` between segments.
fn walk(bucket: &Path, dir: &Path, keys: &mut Vec<String>) -> Result<(), Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == bucket => {
            return Err(s3_error(
                "NoSuchBucket",
                "The specified bucket does not exist",
                404,
            ))
        }
        Err(e) => return Err(io_failure(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_failure(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        if path.is_dir() {
            walk(bucket, &path, keys)?;
        } else if let Ok(rel) = path.strip_prefix(bucket) {
            let segments: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            keys.push(segments.join("/"));
        }
    }
    Ok(())
}

/// The bucket's folder; its name must be an S3 bucket name, so it is one folder.
fn bucket_dir(root: &Path, bucket: &str) -> Result<PathBuf, Failure> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.contains("..");
    if !valid {
        return Err(bad(format!(
            "Bucket '{bucket}' is not a bucket name (3 to 63 of a-z, 0-9, '.', '-')"
        )));
    }
    Ok(root.join(bucket))
}

/// The file of `key` in `bucket`; a key that would leave the bucket is refused.
fn object_path(bucket: &Path, key: &str) -> Result<PathBuf, Failure> {
    let escapes = key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
        || key.contains('\0');
    if escapes {
        return Err(bad(format!(
            "Key '{key}' cannot be kept in a folder: an empty, '.' or '..' segment, a \
             backslash or a NUL"
        )));
    }
    Ok(bucket.join(key))
}

fn string<'a>(p: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Failure> {
    match p.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(format!("{name} must be a string, not {other}"))),
    }
}

fn required<'a>(p: &'a Map<String, Value>, name: &str) -> Result<&'a str, Failure> {
    string(p, name)?.ok_or_else(|| bad(format!("Parameters need {name} (a string)")))
}

/// S3's ETag of a single-part object: its MD5, quoted.
fn etag(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn modified_rfc3339(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(
        chrono::DateTime::<chrono::Utc>::from(modified)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// S3's error for `code`, named as the aws-sdk:s3 integration names it.
fn s3_error(code: &str, message: &str, status: u16) -> Failure {
    let s3 = services::sdk("s3").expect("the service table has s3");
    let e = ServiceError {
        code: Some(code.to_string()),
        message: message.to_string(),
        status,
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    errors::failure(s3, Kind::Sdk, &e)
}

fn bad(message: impl Into<String>) -> Failure {
    Failure::new(asl::error::names::TASK_FAILED, message.into())
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        asl::error::names::TASK_FAILED,
        format!(
            "the s3_folder file {} could not be used: {e}",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(action: &str, payload: Value) -> TaskCall {
        let resource = format!("arn:aws:states:::aws-sdk:s3:{action}");
        TaskCall {
            state_name: "S".into(),
            target: Target::parse(&resource).unwrap(),
            resource,
            function: None,
            parameters: payload.clone(),
            payload,
            timeout_seconds: None,
            heartbeat_seconds: None,
            task_token: None,
        }
    }

    fn root() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oms-s3-folder-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("orders")).unwrap();
        dir
    }

    #[test]
    fn objects_put_are_got_and_listed_page_by_page() {
        let root = root();
        for key in ["in/a.json", "in/b.json", "in/c.json", "other.txt"] {
            let put = call(
                &root,
                &task(
                    "putObject",
                    json!({"Bucket": "orders", "Key": key, "Body": {"k": key}}),
                ),
            )
            .unwrap();
            assert!(put["ETag"].as_str().unwrap().starts_with('"'));
        }
        let got = call(
            &root,
            &task("getObject", json!({"Bucket": "orders", "Key": "in/b.json"})),
        )
        .unwrap();
        assert_eq!(got["Body"], r#"{"k":"in/b.json"}"#);
        let page = call(
            &root,
            &task(
                "listObjectsV2",
                json!({"Bucket": "orders", "Prefix": "in/", "MaxKeys": 2}),
            ),
        )
        .unwrap();
        let keys: Vec<&str> = page["Contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["Key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["in/a.json", "in/b.json"]);
        assert_eq!(page["IsTruncated"], true);
        let token = page["NextContinuationToken"].as_str().unwrap();
        let rest = call(
            &root,
            &task(
                "listObjectsV2",
                json!({"Bucket": "orders", "Prefix": "in/", "ContinuationToken": token}),
            ),
        )
        .unwrap();
        assert_eq!(rest["Contents"][0]["Key"], "in/c.json");
        assert_eq!(rest["IsTruncated"], false);
    }

    #[test]
    fn missing_objects_and_escaping_keys_fail_with_s3s_names_or_a_rule() {
        let root = root();
        let missing = call(
            &root,
            &task("getObject", json!({"Bucket": "orders", "Key": "nope"})),
        )
        .unwrap_err();
        assert_eq!(missing.error, "S3.NoSuchKeyException");
        let no_bucket =
            call(&root, &task("listObjectsV2", json!({"Bucket": "absent"}))).unwrap_err();
        assert_eq!(no_bucket.error, "S3.NoSuchBucketException");
        let escape = call(
            &root,
            &task(
                "getObject",
                json!({"Bucket": "orders", "Key": "../../etc/passwd"}),
            ),
        )
        .unwrap_err();
        assert!(escape.cause.unwrap().contains("'..'"));
        let bucket = call(
            &root,
            &task("getObject", json!({"Bucket": "../x", "Key": "k"})),
        )
        .unwrap_err();
        assert!(bucket.cause.unwrap().contains("not a bucket name"));
    }
}
