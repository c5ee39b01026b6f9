//! S3 `getObject`, `putObject` and `listObjectsV2` (`aws-sdk:s3:...`), the S3 actions
//! oms sends (the last for a distributed Map's ItemReader): S3 speaks REST-XML (the
//! bucket and key in the URL, the object as the body, fields in headers), so these
//! three are mapped by hand. The object travels as text, as Step Functions passes it;
//! other S3 actions are refused, naming this limit.

use super::errors::{self, ServiceError};
use super::{signed, xml, Call};
use asl::Failure;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

/// SigV4's URI encoding: everything but the unreserved characters.
const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const GET_MEMBERS: &[&str] = &["Bucket", "Key", "VersionId", "Range"];
const PUT_MEMBERS: &[&str] = &["Bucket", "Key", "Body", "ContentType", "Metadata"];
const LIST_MEMBERS: &[&str] = &[
    "Bucket",
    "Prefix",
    "ContinuationToken",
    "MaxKeys",
    "StartAfter",
];

pub async fn call(client: &signed::Client, c: &Call<'_>, params: &Value) -> Result<Value, Failure> {
    let obj = params
        .as_object()
        .ok_or_else(|| c.bad_parameters("Parameters must be an object with Bucket and Key"))?;
    let request = match c.action {
        "getObject" => get_request(c, obj),
        "putObject" => put_request(c, obj),
        "listObjectsV2" => list_request(c, obj),
        _ => Err(format!(
            "oms sends only S3 getObject, putObject and listObjectsV2 (S3 speaks REST-XML, \
             which oms maps for these alone: docs/integrations.md); {} is not one",
            c.action
        )),
    }
    .map_err(|m| c.bad_parameters(m))?;
    let response = client.send(request).await.map_err(|e| c.send_failure(e))?;
    if !(200..300).contains(&response.status) {
        return Err(errors::failure(c.service, c.kind, &xml_error(&response)));
    }
    match c.action {
        "getObject" => get_result(&response).map_err(|m| c.bad_parameters(m)),
        "listObjectsV2" => list_result(&response).map_err(|m| c.bad_parameters(m)),
        _ => Ok(put_result(&response)),
    }
}

/// A string member, required or not; anything but a string is an error naming it.
fn string<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None if required => Err(format!("Parameters need {key} (a string)")),
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("{key} must be a string")),
    }
}

fn only_members(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "oms does not send the member {k} (it sends {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// The object's URL: path-style on a configured endpoint (S3-compatible servers),
/// the bucket as host name on AWS's.
fn object_url(c: &Call<'_>, bucket: &str, key: &str) -> String {
    let key: Vec<String> = key
        .split('/')
        .map(|seg| utf8_percent_encode(seg, URI_ENCODE).to_string())
        .collect();
    let key = key.join("/");
    if c.aws_endpoint {
        let host = c.base.trim_start_matches("https://");
        format!("https://{bucket}.{host}/{key}")
    } else {
        let bucket = utf8_percent_encode(bucket, URI_ENCODE);
        format!("{}/{bucket}/{key}", c.base)
    }
}

fn base_request(c: &Call<'_>, method: &'static str, url: String) -> signed::Request {
    signed::Request {
        method,
        url,
        headers: vec![],
        body: vec![],
        signing_name: c.service.signing_name,
        region: c.region.to_string(),
        s3: true,
    }
}

fn get_request(c: &Call<'_>, obj: &Map<String, Value>) -> Result<signed::Request, String> {
    only_members(obj, GET_MEMBERS)?;
    let bucket = string(obj, "Bucket", true)?.unwrap_or_default();
    let key = string(obj, "Key", true)?.unwrap_or_default();
    let mut url = object_url(c, bucket, key);
    if let Some(v) = string(obj, "VersionId", false)? {
        url.push_str(&format!(
            "?versionId={}",
            utf8_percent_encode(v, URI_ENCODE)
        ));
    }
    let mut request = base_request(c, "GET", url);
    if let Some(range) = string(obj, "Range", false)? {
        request.headers.push(("range".into(), range.to_string()));
    }
    Ok(request)
}

fn put_request(c: &Call<'_>, obj: &Map<String, Value>) -> Result<signed::Request, String> {
    only_members(obj, PUT_MEMBERS)?;
    let bucket = string(obj, "Bucket", true)?.unwrap_or_default();
    let key = string(obj, "Key", true)?.unwrap_or_default();
    let mut request = base_request(c, "PUT", object_url(c, bucket, key));
    // A JSON Body is stored serialized, as Step Functions stores it.
    request.body = match obj.get("Body") {
        None => vec![],
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    if let Some(t) = string(obj, "ContentType", false)? {
        request.headers.push(("content-type".into(), t.to_string()));
    }
    if let Some(meta) = obj.get("Metadata") {
        let meta = meta
            .as_object()
            .ok_or("Metadata must be an object of string values")?;
        for (name, v) in meta {
            let v = v
                .as_str()
                .ok_or_else(|| format!("Metadata.{name} must be a string"))?;
            let header = format!("x-amz-meta-{}", name.to_ascii_lowercase());
            request.headers.push((header, v.to_string()));
        }
    }
    Ok(request)
}

/// ListObjectsV2: `GET /BUCKET?list-type=2&...` (the bucket as host name on AWS's).
fn list_request(c: &Call<'_>, obj: &Map<String, Value>) -> Result<signed::Request, String> {
    only_members(obj, LIST_MEMBERS)?;
    let bucket = string(obj, "Bucket", true)?.unwrap_or_default();
    let mut url = object_url(c, bucket, "");
    url.push_str("?list-type=2");
    let query = [
        ("prefix", "Prefix"),
        ("continuation-token", "ContinuationToken"),
        ("start-after", "StartAfter"),
    ];
    for (name, member) in query {
        if let Some(v) = string(obj, member, false)? {
            url.push_str(&format!("&{name}={}", utf8_percent_encode(v, URI_ENCODE)));
        }
    }
    match obj.get("MaxKeys") {
        None => {}
        Some(n) if n.as_u64().is_some_and(|n| n <= 1000) => url.push_str(&format!("&max-keys={n}")),
        Some(n) => {
            return Err(format!(
                "MaxKeys must be an integer from 0 to 1000, not {n}"
            ))
        }
    }
    Ok(base_request(c, "GET", url))
}

/// ListObjectsV2's result as the SDK names it: `Contents` (Key, Size, ETag,
/// LastModified, StorageClass), `IsTruncated`, `KeyCount`, `NextContinuationToken`.
fn list_result(r: &signed::Response) -> Result<Value, String> {
    let contents = xml::records(&r.body, "Contents")
        .ok_or("S3 answered ListObjectsV2 with a body that is not XML")?;
    let objects: Vec<Value> = contents.into_iter().map(listed_object).collect();
    let mut out = json!({
        "Contents": objects,
        "IsTruncated": xml::first_text(&r.body, "IsTruncated").as_deref() == Some("true"),
    });
    for field in [
        "Name",
        "Prefix",
        "NextContinuationToken",
        "ContinuationToken",
    ] {
        if let Some(v) = xml::first_text(&r.body, field) {
            out[field] = Value::String(v);
        }
    }
    for field in ["KeyCount", "MaxKeys"] {
        if let Some(n) = xml::first_text(&r.body, field).and_then(|v| v.parse::<u64>().ok()) {
            out[field] = json!(n);
        }
    }
    Ok(out)
}

/// One `Contents` element, its numbers as numbers.
fn listed_object(fields: Vec<(String, String)>) -> Value {
    let mut o = Map::new();
    for (name, text) in fields {
        let v = match name.as_str() {
            "Size" => text
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or(Value::String(text)),
            _ => Value::String(text),
        };
        o.insert(name, v);
    }
    Value::Object(o)
}

/// GetObject's result: the object as text with its headers' fields.
fn get_result(r: &signed::Response) -> Result<Value, String> {
    let body = String::from_utf8(r.body.clone()).map_err(|_| {
        "the object is not UTF-8 text, which is all a Task result can carry".to_string()
    })?;
    let mut out = json!({ "Body": body, "ContentLength": r.body.len() });
    let fields = [
        ("ContentType", "content-type"),
        ("ETag", "etag"),
        ("VersionId", "x-amz-version-id"),
        ("AcceptRanges", "accept-ranges"),
        ("ContentRange", "content-range"),
    ];
    for (field, header) in fields {
        if let Some(v) = r.header(header) {
            out[field] = Value::String(v.to_string());
        }
    }
    if let Some(v) = r.header("last-modified") {
        out["LastModified"] = Value::String(
            chrono::DateTime::parse_from_rfc2822(v)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|_| v.to_string()),
        );
    }
    let metadata: Map<String, Value> = r
        .headers
        .iter()
        .filter_map(|(n, v)| {
            let name = n.to_ascii_lowercase();
            name.strip_prefix("x-amz-meta-")
                .map(|m| (m.to_string(), Value::String(v.clone())))
        })
        .collect();
    out["Metadata"] = Value::Object(metadata);
    Ok(out)
}

/// PutObject's result: the ETag (and version, encryption when S3 says them).
fn put_result(r: &signed::Response) -> Value {
    let mut out = json!({});
    let fields = [
        ("ETag", "etag"),
        ("VersionId", "x-amz-version-id"),
        ("ServerSideEncryption", "x-amz-server-side-encryption"),
    ];
    for (field, header) in fields {
        if let Some(v) = r.header(header) {
            out[field] = Value::String(v.to_string());
        }
    }
    out
}

/// S3's error answer: `<Error><Code>NoSuchKey</Code><Message>..</Message>..</Error>`.
fn xml_error(r: &signed::Response) -> ServiceError {
    let fallback_code = match r.status {
        404 => Some("NotFound".to_string()),
        _ => None,
    };
    ServiceError {
        code: xml::first_text(&r.body, "Code").or(fallback_code),
        message: xml::first_text(&r.body, "Message")
            .unwrap_or_else(|| format!("S3 answered {}", r.status)),
        status: r.status,
        request_id: xml::first_text(&r.body, "RequestId").unwrap_or_else(|| r.request_id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::services;

    fn call(base: &str, aws_endpoint: bool, action: &'static str) -> Call<'static> {
        Call {
            service: services::sdk("s3").unwrap(),
            kind: errors::Kind::Sdk,
            action,
            base: base.to_string(),
            region: "us-east-1",
            aws_endpoint,
        }
    }

    #[test]
    fn objects_are_path_style_on_endpoints_and_hosts_on_aws() {
        let local = call("http://127.0.0.1:5000", false, "getObject");
        assert_eq!(
            object_url(&local, "b", "dir/a b+c.txt"),
            "http://127.0.0.1:5000/b/dir/a%20b%2Bc.txt"
        );
        let aws = call("https://s3.eu-west-1.amazonaws.com", true, "getObject");
        assert_eq!(
            object_url(&aws, "b", "k"),
            "https://b.s3.eu-west-1.amazonaws.com/k"
        );
    }

    #[test]
    fn requests_name_missing_and_unknown_members() {
        let c = call("http://h", false, "getObject");
        let obj = json!({"Bucket": "b"});
        let e = get_request(&c, obj.as_object().unwrap()).err().unwrap();
        assert_eq!(e, "Parameters need Key (a string)");
        let obj = json!({"Bucket": "b", "Key": "k", "IfMatch": "x"});
        let e = get_request(&c, obj.as_object().unwrap()).err().unwrap();
        assert!(e.contains("does not send the member IfMatch"), "{e}");
    }

    #[test]
    fn a_json_body_is_stored_serialized_with_its_metadata() {
        let c = call("http://h", false, "putObject");
        let obj = json!({"Bucket": "b", "Key": "k", "Body": {"a": 1}, "Metadata": {"Who": "me"}});
        let r = put_request(&c, obj.as_object().unwrap()).unwrap();
        assert_eq!(r.body, br#"{"a":1}"#);
        assert!(r
            .headers
            .contains(&("x-amz-meta-who".to_string(), "me".to_string())));
    }
}
