//! Distributed Map `ItemReader`: what the reader's `ReaderConfig` says, and how the text
//! a reader fetched becomes the Map's items, as AWS documents them ("ItemReader (Map)",
//! "How Step Functions parses input CSV files"). Pure: the caller fetches (S3 through
//! the configured endpoint, a mapped folder, TestState's `mapItemReaderData`) and
//! decompresses (`.gz`, `.zstd`); this module only turns text into items.
//!
//! Shapes, from AWS's documentation:
//! - `JSON`: the file holds an array (its elements are the items) or an object; a
//!   `ReaderConfig.ItemsPointer` (a JSON Pointer) selects a nested node first. An object
//!   is iterated as key-value pairs, `{"key": k, "value": v}` (oms's choice of pair
//!   shape; AWS documents the pairs, not their field names).
//! - `JSONL`: one JSON value a line; blank lines are skipped.
//! - `CSV`: a record a line, fields always strings; headers from the first row
//!   (`FIRST_ROW`) or `CSVHeaders` (`GIVEN`); a short row gets `""` for the missing
//!   fields, a long row's extra fields are dropped; duplicate headers are refused.
//!   AWS's quoting and backslash rules are not RFC 4180, see [`AwsCsv`].
//! - `MANIFEST` (S3 inventory): `manifest.json` names gzipped CSV files without a
//!   header row and a `fileSchema`; [`inventory_manifest`] lists the files and
//!   [`inventory_items`] turns one file's rows into items keyed by the schema.
//! - `s3:listObjectsV2`: one item per object, `{"Etag", "Key", "LastModified"
//!   (epoch seconds), "Size", "StorageClass"}` ([`list_objects_item`]).

use crate::error::{names, Failure};
use serde_json::{json, Map, Value};

/// AWS's upper bound for `MaxItems` ("up to 100,000,000").
pub const MAX_ITEMS_LIMIT: u64 = 100_000_000;

const GET_OBJECT: &str = "s3:getObject";
const LIST_OBJECTS_V2: &str = "s3:listObjectsV2";

/// Which S3 call the reader makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    GetObject,
    ListObjectsV2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputType {
    Csv,
    Json,
    Jsonl,
    Manifest,
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestType {
    S3Inventory,
    AthenaData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvHeaders {
    FirstRow,
    Given(Vec<String>),
}

/// A `MaxItems` literal or the `MaxItemsPath` the caller evaluates against the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaxItems {
    Unlimited,
    Count(u64),
    Path(String),
}

/// The `ItemReader` field, parsed. `arguments` is `Parameters` (JSONPath) or
/// `Arguments` (JSONata), left for the caller to evaluate against the state input.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderFormat {
    pub source: Source,
    pub input_type: Option<InputType>,
    pub manifest_type: Option<ManifestType>,
    /// `Transformation: LOAD_AND_FLATTEN` on `listObjectsV2`: read each listed object
    /// with `input_type` instead of iterating over the listing.
    pub load_and_flatten: bool,
    pub csv_headers: CsvHeaders,
    /// The field separator as a byte (`CSVDelimiter`, default `COMMA`).
    pub csv_delimiter: u8,
    pub items_pointer: Option<String>,
    pub max_items: MaxItems,
    pub arguments: Option<Value>,
}

fn config_error(field: &str, rule: &str) -> String {
    format!("ItemReader.ReaderConfig.{field}: {rule}")
}

fn source_of(item_reader: &Value) -> Result<Source, String> {
    let resource = item_reader["Resource"]
        .as_str()
        .ok_or("ItemReader.Resource: required, a string")?;
    // AWS also accepts the ARN with a region and account (`arn:aws:states:us-east-1:1:s3:getObject`).
    match resource.rsplit_once(":s3:").map(|(_, action)| action) {
        Some("getObject") if resource.starts_with("arn:") => Ok(Source::GetObject),
        Some("listObjectsV2") if resource.starts_with("arn:") => Ok(Source::ListObjectsV2),
        _ => Err(format!(
            "ItemReader.Resource: '{resource}' is not arn:aws:states:::{GET_OBJECT} or arn:aws:states:::{LIST_OBJECTS_V2}"
        )),
    }
}

fn enum_field<'a>(
    config: &'a Value,
    field: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, String> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(other) => Err(config_error(
            field,
            &format!("{other} is not one of {}", allowed.join(", ")),
        )),
    }
}

fn input_type(config: &Value) -> Result<Option<InputType>, String> {
    let allowed = ["CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"];
    Ok(enum_field(config, "InputType", &allowed)?.map(|s| match s {
        "CSV" => InputType::Csv,
        "JSON" => InputType::Json,
        "JSONL" => InputType::Jsonl,
        "MANIFEST" => InputType::Manifest,
        _ => InputType::Parquet,
    }))
}

fn csv_delimiter(config: &Value) -> Result<u8, String> {
    let allowed = ["COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB"];
    Ok(match enum_field(config, "CSVDelimiter", &allowed)? {
        None | Some("COMMA") => b',',
        Some("PIPE") => b'|',
        Some("SEMICOLON") => b';',
        Some("SPACE") => b' ',
        _ => b'\t',
    })
}

fn csv_headers(config: &Value) -> Result<CsvHeaders, String> {
    match enum_field(config, "CSVHeaderLocation", &["FIRST_ROW", "GIVEN"])? {
        Some("GIVEN") => {
            let headers = config["CSVHeaders"]
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    config_error(
                        "CSVHeaders",
                        "required with CSVHeaderLocation GIVEN, a non-empty array of strings",
                    )
                })?;
            headers
                .iter()
                .map(|h| h.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(CsvHeaders::Given)
                .ok_or_else(|| config_error("CSVHeaders", "every header is a string"))
        }
        _ => Ok(CsvHeaders::FirstRow),
    }
}

fn max_items(config: &Value) -> Result<MaxItems, String> {
    if let Some(path) = config.get("MaxItemsPath") {
        let path = path
            .as_str()
            .ok_or_else(|| config_error("MaxItemsPath", "a reference path string"))?;
        return Ok(MaxItems::Path(path.to_string()));
    }
    match config.get("MaxItems") {
        None | Some(Value::Null) => Ok(MaxItems::Unlimited),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(MaxItems::Unlimited), // 0 means no limit, as on AWS
            Some(n) if n <= MAX_ITEMS_LIMIT => Ok(MaxItems::Count(n)),
            _ => Err(config_error(
                "MaxItems",
                &format!("{v} is not an integer from 0 to {MAX_ITEMS_LIMIT}"),
            )),
        },
    }
}

/// Parses the `ItemReader` field; the error names the field and the rule broken.
pub fn reader_format(item_reader: &Value) -> Result<ReaderFormat, String> {
    if !item_reader.is_object() {
        return Err("ItemReader: must be an object".into());
    }
    let source = source_of(item_reader)?;
    let empty = Value::Object(Map::new());
    let config = item_reader.get("ReaderConfig").unwrap_or(&empty);
    if !config.is_object() {
        return Err("ItemReader.ReaderConfig: must be an object".into());
    }
    let manifest_type =
        enum_field(config, "ManifestType", &["S3_INVENTORY", "ATHENA_DATA"])?.map(|s| {
            if s == "S3_INVENTORY" {
                ManifestType::S3Inventory
            } else {
                ManifestType::AthenaData
            }
        });
    let transformation = enum_field(config, "Transformation", &["NONE", "LOAD_AND_FLATTEN"])?;
    let format = ReaderFormat {
        source,
        input_type: input_type(config)?,
        manifest_type,
        load_and_flatten: transformation == Some("LOAD_AND_FLATTEN"),
        csv_headers: csv_headers(config)?,
        csv_delimiter: csv_delimiter(config)?,
        items_pointer: match config.get("ItemsPointer") {
            None => None,
            Some(Value::String(p)) if p.is_empty() || p.starts_with('/') => Some(p.clone()),
            Some(other) => {
                return Err(config_error(
                    "ItemsPointer",
                    &format!("{other} is not a JSON Pointer (\"/a/b\")"),
                ))
            }
        },
        max_items: max_items(config)?,
        arguments: item_reader
            .get("Arguments")
            .or_else(|| item_reader.get("Parameters"))
            .cloned(),
    };
    check_combination(&format)?;
    Ok(format)
}

/// The combinations AWS documents as required or forbidden.
fn check_combination(f: &ReaderFormat) -> Result<(), String> {
    if f.input_type == Some(InputType::Parquet) {
        return Err(config_error(
            "InputType",
            "PARQUET is not supported by oms (no Parquet reader in the engine)",
        ));
    }
    if f.manifest_type == Some(ManifestType::S3Inventory) && f.input_type.is_some() {
        return Err(config_error(
            "InputType",
            "must not be set with ManifestType S3_INVENTORY (the type is CSV)",
        ));
    }
    if f.load_and_flatten && f.input_type.is_none() {
        return Err(config_error(
            "InputType",
            "required with Transformation LOAD_AND_FLATTEN",
        ));
    }
    if f.load_and_flatten && f.source != Source::ListObjectsV2 {
        return Err(config_error(
            "Transformation",
            "LOAD_AND_FLATTEN applies to s3:listObjectsV2 only",
        ));
    }
    if f.source == Source::GetObject && f.input_type.is_none() && f.manifest_type.is_none() {
        return Err(config_error(
            "InputType",
            "required with s3:getObject (CSV, JSON, JSONL or MANIFEST)",
        ));
    }
    Ok(())
}

pub(crate) fn reader_failed(cause: impl Into<String>) -> Failure {
    Failure::new(names::ITEM_READER_FAILED, cause)
}

/// The limit a `MaxItemsPath` value sets: a non-negative integer, 0 meaning none and
/// anything above [`MAX_ITEMS_LIMIT`] clipped to it; otherwise the reader fails with
/// AWS's causes.
pub fn max_items_from_path(path: &str, value: &Value) -> Result<Option<u64>, Failure> {
    match value {
        Value::Number(n) if n.as_u64().is_some() => {
            let n = n.as_u64().unwrap_or_default();
            Ok((n != 0).then_some(n.min(MAX_ITEMS_LIMIT)))
        }
        Value::Number(n) if n.as_i64().is_some() => {
            Err(reader_failed("field MaxItems must be positive"))
        }
        other => Err(reader_failed(format!(
            "The MaxItemsPath field refers to value '{}' which is not a valid integer: {path}",
            match other {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            }
        ))),
    }
}

/// Turns the text one reader fetched into items, at most `max_items` of them (`None`
/// or 0: no limit). `raw` is the object's content for `s3:getObject` (a data file, or one
/// data file of a manifest or of `LOAD_AND_FLATTEN`), or the ListObjectsV2 listing as
/// JSON (`{"Contents": [...]}` or the array itself) for a plain `s3:listObjectsV2`.
pub fn parse_items(
    reader: &ReaderFormat,
    raw: &str,
    max_items: Option<u64>,
) -> Result<Vec<Value>, Failure> {
    let limit = item_limit(max_items);
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
    if reader.source == Source::ListObjectsV2 && !reader.load_and_flatten {
        return listing_items(raw, limit);
    }
    if reader.manifest_type == Some(ManifestType::S3Inventory)
        || reader.input_type == Some(InputType::Manifest)
    {
        return Err(reader_failed(
            "An S3 inventory manifest lists the files to read: use inventory_manifest, then inventory_items per file",
        ));
    }
    match reader.input_type {
        Some(InputType::Json) => json_items(raw, reader.items_pointer.as_deref(), limit),
        Some(InputType::Jsonl) => jsonl_items(raw, limit),
        Some(InputType::Csv) => csv_items(raw, &reader.csv_headers, reader.csv_delimiter, limit),
        _ => Err(reader_failed(
            "The ItemReader has no InputType this server can read",
        )),
    }
}

fn item_limit(max_items: Option<u64>) -> usize {
    match max_items {
        None | Some(0) => usize::MAX,
        Some(n) => usize::try_from(n.min(MAX_ITEMS_LIMIT)).unwrap_or(usize::MAX),
    }
}

fn json_items(raw: &str, pointer: Option<&str>, limit: usize) -> Result<Vec<Value>, Failure> {
    let doc: Value = serde_json::from_str(raw)
        .map_err(|e| reader_failed(format!("The JSON file could not be parsed: {e}")))?;
    let node = match pointer {
        None => &doc,
        Some(p) => doc.pointer(p).ok_or_else(|| {
            reader_failed(format!(
                "The ItemsPointer '{p}' does not select a node of the JSON file"
            ))
        })?,
    };
    match node {
        Value::Array(items) => Ok(items.iter().take(limit).cloned().collect()),
        Value::Object(pairs) => Ok(pairs
            .iter()
            .take(limit)
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect()),
        _ => Err(reader_failed("Attempting to map over non-iterable node.")),
    }
}

fn jsonl_items(raw: &str, limit: usize) -> Result<Vec<Value>, Failure> {
    let lines = raw
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    lines
        .take(limit)
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                reader_failed(format!("The JSONL file's line {} is not JSON: {e}", i + 1))
            })
        })
        .collect()
}

/// Splits text into records of fields by AWS's documented dialect. Hand-written because
/// it is not RFC 4180 and no CSV crate speaks it: AWS's own example reads the
/// *unquoted* field `{""MyKey"":""MyValue""}` as `{"MyKey":"MyValue"}`, and a backslash
/// escapes a backslash, a quote or the delimiter anywhere (and is dropped before any
/// other character), where the `csv` crate keeps unquoted fields verbatim.
struct AwsCsv<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    delimiter: char,
}

impl AwsCsv<'_> {
    /// The next record, `None` at the end; blank lines are skipped.
    fn record(&mut self) -> Option<Result<Vec<String>, Failure>> {
        loop {
            match self.chars.peek() {
                None => return None,
                Some('\n') => {
                    self.chars.next();
                }
                Some('\r') => {
                    self.chars.next();
                }
                Some(_) => return Some(self.fields()),
            }
        }
    }

    fn fields(&mut self) -> Result<Vec<String>, Failure> {
        let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
        while let Some(c) = self.chars.next() {
            match c {
                '\\' => match self.chars.next() {
                    Some(e) if e == '\\' || e == '"' || e == self.delimiter => field.push(e),
                    Some(other) => field.push(other), // the backslash alone is dropped
                    None => {}
                },
                '"' if self.chars.peek() == Some(&'"') && (quoted || !field.is_empty()) => {
                    self.chars.next();
                    field.push('"');
                }
                '"' => quoted = !quoted,
                c if quoted => field.push(c),
                c if c == self.delimiter => fields.push(std::mem::take(&mut field)),
                '\r' | '\n' => {
                    if c == '\r' && self.chars.peek() == Some(&'\n') {
                        self.chars.next();
                    }
                    break;
                }
                c => field.push(c),
            }
        }
        if quoted {
            return Err(reader_failed("The CSV file ends inside a quoted field"));
        }
        fields.push(field);
        Ok(fields)
    }
}

impl Iterator for AwsCsv<'_> {
    type Item = Result<Vec<String>, Failure>;
    fn next(&mut self) -> Option<Self::Item> {
        self.record()
    }
}

fn csv_items(
    raw: &str,
    headers: &CsvHeaders,
    delimiter: u8,
    limit: usize,
) -> Result<Vec<Value>, Failure> {
    let mut records = AwsCsv {
        chars: raw.chars().peekable(),
        delimiter: char::from(delimiter),
    };
    let headers: Vec<String> = match headers {
        CsvHeaders::Given(h) => h.clone(),
        CsvHeaders::FirstRow => match records.next() {
            None => return Ok(Vec::new()),
            Some(first) => first?,
        },
    };
    let mut seen = std::collections::HashSet::new();
    if !headers.iter().all(|h| seen.insert(h.as_str())) {
        return Err(reader_failed("CSV headers cannot contain duplicates."));
    }
    records
        .take(limit)
        .map(|rec| Ok(row_item(&headers, &rec?)))
        .collect()
}

/// One row as an object keyed by the headers: missing fields are `""`, extra dropped.
fn row_item(headers: &[String], row: &[String]) -> Value {
    let fields = headers.iter().enumerate().map(|(i, h)| {
        (
            h.clone(),
            Value::String(row.get(i).cloned().unwrap_or_default()),
        )
    });
    Value::Object(fields.collect())
}

/// One object of a ListObjectsV2 listing, as the SDKs and the S3 API name its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size_bytes: u64,
    pub etag: String,
    pub last_modified_epoch_s: i64,
    pub storage_class: String,
}

/// The item AWS gives a child execution for one listed object.
pub fn list_objects_item(o: &ListedObject) -> Value {
    json!({
        "Etag": o.etag,
        "Key": o.key,
        "LastModified": o.last_modified_epoch_s,
        "Size": o.size_bytes,
        "StorageClass": o.storage_class,
    })
}

fn listed_object(v: &Value) -> Result<ListedObject, Failure> {
    let key = v["Key"]
        .as_str()
        .ok_or_else(|| reader_failed("A listed object has no Key"))?;
    let last_modified = match &v["LastModified"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp()),
        _ => None,
    }
    .ok_or_else(|| {
        reader_failed(format!(
            "The listed object '{key}' has no LastModified time"
        ))
    })?;
    Ok(ListedObject {
        key: key.to_string(),
        size_bytes: v["Size"].as_u64().unwrap_or(0),
        etag: v
            .get("ETag")
            .or_else(|| v.get("Etag"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        last_modified_epoch_s: last_modified,
        storage_class: v["StorageClass"].as_str().unwrap_or("STANDARD").to_string(),
    })
}

/// A ListObjectsV2 listing as JSON (the response with `Contents`, or its array).
fn listing_items(raw: &str, limit: usize) -> Result<Vec<Value>, Failure> {
    let doc: Value = serde_json::from_str(raw)
        .map_err(|e| reader_failed(format!("The ListObjectsV2 listing is not JSON: {e}")))?;
    let empty = Vec::new();
    let objects = match &doc {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("Contents") {
            Some(Value::Array(a)) => a,
            None => &empty, // S3 leaves out Contents when nothing matched the prefix
            Some(_) => return Err(reader_failed("The listing's Contents is not an array")),
        },
        _ => return Err(reader_failed("Attempting to map over non-iterable node.")),
    };
    objects
        .iter()
        .take(limit)
        .map(|o| listed_object(o).map(|l| list_objects_item(&l)))
        .collect()
}

/// One data file named by an S3 inventory manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryFile {
    pub key: String,
    pub size_bytes: u64,
    pub md5_checksum: Option<String>,
}

/// An S3 inventory `manifest.json`: where its files are and what their columns mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryManifest {
    /// The bucket holding the data files (`destinationBucket`, an ARN in the manifest).
    pub destination_bucket: String,
    pub schema: Vec<String>,
    pub files: Vec<InventoryFile>,
}

/// Reads an S3 inventory manifest; only CSV inventories can be read, as on AWS.
pub fn inventory_manifest(raw: &str) -> Result<InventoryManifest, Failure> {
    let doc: Value = serde_json::from_str(raw.strip_prefix('\u{feff}').unwrap_or(raw))
        .map_err(|e| reader_failed(format!("The S3 inventory manifest is not JSON: {e}")))?;
    let format = doc["fileFormat"].as_str().unwrap_or("");
    if format != "CSV" {
        return Err(reader_failed(format!(
            "The S3 inventory's fileFormat is '{format}': only CSV inventories can be read"
        )));
    }
    let schema = doc["fileSchema"]
        .as_str()
        .ok_or_else(|| reader_failed("The S3 inventory manifest has no fileSchema"))?;
    let files = doc["files"]
        .as_array()
        .ok_or_else(|| reader_failed("The S3 inventory manifest has no files array"))?;
    let files = files
        .iter()
        .map(|f| {
            Ok(InventoryFile {
                key: f["key"]
                    .as_str()
                    .ok_or_else(|| reader_failed("An inventory file has no key"))?
                    .to_string(),
                size_bytes: f["size"].as_u64().unwrap_or(0),
                md5_checksum: f["MD5checksum"].as_str().map(str::to_string),
            })
        })
        .collect::<Result<_, Failure>>()?;
    let bucket = doc["destinationBucket"].as_str().unwrap_or("");
    Ok(InventoryManifest {
        destination_bucket: bucket
            .strip_prefix("arn:aws:s3:::")
            .unwrap_or(bucket)
            .to_string(),
        schema: schema.split(',').map(|c| c.trim().to_string()).collect(),
        files,
    })
}

/// One (decompressed) inventory CSV file's rows as items keyed by the manifest's
/// schema, values as strings (`"Size": "3399671"`), as AWS gives them.
pub fn inventory_items(
    schema: &[String],
    csv_text: &str,
    max_items: Option<u64>,
) -> Result<Vec<Value>, Failure> {
    let headers = CsvHeaders::Given(schema.to_vec());
    let limit = item_limit(max_items);
    csv_items(
        csv_text.strip_prefix('\u{feff}').unwrap_or(csv_text),
        &headers,
        b',',
        limit,
    )
}

/// The data files an Athena `UNLOAD` manifest lists (one `s3://bucket/key` a line),
/// as (bucket, key); each is then read with [`parse_items`] and the reader's InputType.
pub fn athena_manifest_files(raw: &str) -> Result<Vec<(String, String)>, Failure> {
    raw.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            line.strip_prefix("s3://")
                .and_then(|rest| rest.split_once('/'))
                .map(|(b, k)| (b.to_string(), k.to_string()))
                .ok_or_else(|| {
                    reader_failed(format!(
                        "The Athena manifest line '{line}' is not an s3:// URI"
                    ))
                })
        })
        .collect()
}
