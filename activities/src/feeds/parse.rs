//! A feed file read one row at a time: CSV (the `csv` crate, a header row naming the
//! columns) or NDJSON (one JSON object a line), each row checked field by field against
//! the rules of its kind. Nothing here touches the store, so the rules are tested on
//! files alone (cases in `activities/tests/feeds/`).

use super::{Count, Kind, Row, RowError, StockRow};
use crate::ledger::{SkuRecord, WarehouseRecord};
use crate::model::{id_ok, text_rule};
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};

/// The largest stock count or delta a row may carry: far from i64's limits, so sums
/// of many feeds stay exact, and far above any real warehouse's count of one SKU.
pub const MAX_UNITS: i64 = 1_000_000_000;
/// The largest price, in cents (ten million in the currency).
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// The format a file's name says (`.csv`, `.ndjson` or `.jsonl`).
    pub fn of_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
            Some(Format::Ndjson)
        } else {
            None
        }
    }
}

/// The columns (fields) of each kind: required ones, and for stock the two counts of
/// which a row carries exactly one.
fn columns(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::Catalog => (&["sku", "name", "price_cents"], &[]),
        Kind::Warehouses => (&["warehouse_id", "name", "country", "lat", "lon"], &[]),
        Kind::Stock => (&["warehouse_id", "sku"], &["on_hand", "delta"]),
    }
}

/// One row's fields by name, as text (CSV) or JSON values (NDJSON).
struct Fields {
    values: Map<String, Value>,
    line: u64,
    errors: Vec<RowError>,
    /// CSV fields are all text (numbers are parsed from it); NDJSON keeps JSON's types.
    csv: bool,
}

impl Fields {
    fn bad(&mut self, field: &str, rule: impl Into<String>) {
        self.errors.push(RowError {
            line: self.line,
            field: field.to_string(),
            rule: rule.into(),
        });
    }

    fn id(&mut self, field: &str) -> String {
        match self.values.get(field) {
            Some(Value::String(s)) if id_ok(s) => s.clone(),
            Some(Value::String(_)) => {
                self.bad(field, "1 to 64 letters, digits, '-' or '_'");
                String::new()
            }
            Some(_) => {
                self.bad(field, "a string");
                String::new()
            }
            None => {
                self.bad(field, "required: a string");
                String::new()
            }
        }
    }

    fn text(&mut self, field: &str, max: usize) -> String {
        match self.values.get(field) {
            Some(Value::String(s)) => match text_rule(s, max) {
                None => s.clone(),
                Some(rule) => {
                    self.bad(field, rule);
                    String::new()
                }
            },
            Some(_) => {
                self.bad(field, "a string");
                String::new()
            }
            None => {
                self.bad(field, "required: a string");
                String::new()
            }
        }
    }

    /// An integer in `min..=max`: a JSON integer, or in CSV its decimal digits.
    fn int(&mut self, field: &str, min: i64, max: i64) -> i64 {
        let parsed = match self.values.get(field) {
            None => None,
            Some(Value::Number(n)) => Some(n.as_i64()),
            Some(Value::String(s)) if self.csv => Some(s.trim().parse::<i64>().ok()),
            Some(_) => Some(None),
        };
        match parsed {
            Some(Some(n)) if (min..=max).contains(&n) => n,
            None => {
                self.bad(field, "required: an integer");
                0
            }
            // Digits beyond i64 are out of range too, not "not an integer".
            Some(_) if self.is_digits(field) || matches!(parsed, Some(Some(_))) => {
                self.bad(field, format!("an integer from {min} to {max}"));
                0
            }
            Some(_) => {
                self.bad(field, "an integer");
                0
            }
        }
    }

    fn is_digits(&self, field: &str) -> bool {
        let text = match self.values.get(field) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return false,
        };
        let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }

    fn float(&mut self, field: &str, min: f64, max: f64) -> f64 {
        let parsed = match self.values.get(field) {
            None => {
                self.bad(field, "required: a number");
                return 0.0;
            }
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if self.csv => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(x) if x.is_finite() && (min..=max).contains(&x) => x,
            _ => {
                self.bad(field, format!("a number from {min} to {max}"));
                0.0
            }
        }
    }
}

/// The row `f` holds, or every rule it breaks.
fn row_of(kind: Kind, mut f: Fields) -> Result<Row, Vec<RowError>> {
    let row = match kind {
        Kind::Catalog => Row::Sku(SkuRecord {
            sku: f.id("sku"),
            name: f.text("name", 200),
            price_cents: f.int("price_cents", 0, MAX_PRICE_CENTS),
        }),
        Kind::Warehouses => {
            let warehouse_id = f.id("warehouse_id");
            let name = f.text("name", 200);
            let country = match f.values.get("country") {
                Some(Value::String(c))
                    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) =>
                {
                    c.clone()
                }
                _ => {
                    f.bad(
                        "country",
                        "required: an ISO 3166 alpha-2 code (two capitals)",
                    );
                    String::new()
                }
            };
            Row::Warehouse(WarehouseRecord {
                warehouse_id,
                name,
                country,
                lat: f.float("lat", -90.0, 90.0),
                lon: f.float("lon", -180.0, 180.0),
            })
        }
        Kind::Stock => {
            let warehouse_id = f.id("warehouse_id");
            let sku = f.id("sku");
            let has = |k: &str| f.values.get(k).is_some_and(|v| !v.is_null());
            let count = match (has("on_hand"), has("delta")) {
                (true, false) => Count::OnHand(f.int("on_hand", 0, MAX_UNITS)),
                (false, true) => Count::Delta(f.int("delta", -MAX_UNITS, MAX_UNITS)),
                _ => {
                    f.bad("on_hand", "exactly one of on_hand (absolute) or delta");
                    Count::Delta(0)
                }
            };
            Row::Stock(StockRow {
                warehouse_id,
                sku,
                count,
            })
        }
    };
    if f.errors.is_empty() {
        Ok(row)
    } else {
        Err(f.errors)
    }
}

/// The rows of a feed file, in order, each with the line it starts on.
pub struct Rows<R: Read> {
    kind: Kind,
    inner: Inner<R>,
    /// A fault of the file as a whole (its header): then it has no rows.
    header_errors: Option<Vec<RowError>>,
}

enum Inner<R: Read> {
    Csv {
        reader: csv::Reader<R>,
        headers: Vec<String>,
        record: csv::StringRecord,
    },
    Ndjson {
        reader: BufReader<R>,
        line: u64,
        text: String,
    },
    Done,
}

pub type Item = Result<(u64, Row), Vec<RowError>>;

impl<R: Read> Rows<R> {
    pub fn new(kind: Kind, format: Format, input: R) -> Rows<R> {
        match format {
            Format::Ndjson => Rows {
                kind,
                inner: Inner::Ndjson {
                    reader: BufReader::with_capacity(64 * 1024, input),
                    line: 0,
                    text: String::new(),
                },
                header_errors: None,
            },
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
                let (headers, header_errors) = match reader.headers() {
                    Ok(h) => {
                        let headers: Vec<String> = h.iter().map(|s| s.trim().to_string()).collect();
                        let errors = header_rule(kind, &headers);
                        (headers, errors)
                    }
                    Err(e) => {
                        let rule = format!("unreadable CSV: {e}");
                        (vec![], vec![RowError::new(1, "header", rule)])
                    }
                };
                Rows {
                    kind,
                    inner: Inner::Csv {
                        reader,
                        headers,
                        record: csv::StringRecord::new(),
                    },
                    header_errors: (!header_errors.is_empty()).then_some(header_errors),
                }
            }
        }
    }

    fn next_csv(&mut self) -> Option<Item> {
        let Inner::Csv {
            reader,
            headers,
            record,
        } = &mut self.inner
        else {
            return None;
        };
        let line = reader.position().line();
        match reader.read_record(record) {
            Ok(false) => None,
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                self.inner = Inner::Done;
                Some(Err(vec![RowError::new(
                    line,
                    "row",
                    format!("unreadable CSV: {e}"),
                )]))
            }
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                if record.len() != headers.len() {
                    let rule = format!("{} fields, as the header has", headers.len());
                    return Some(Err(vec![RowError::new(line, "row", rule)]));
                }
                let values: Map<String, Value> = headers
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, v)| !v.trim().is_empty())
                    .map(|(h, v)| (h.clone(), Value::String(v.to_string())))
                    .collect();
                Some(self.checked(line, values, true))
            }
        }
    }

    fn next_ndjson(&mut self) -> Option<Item> {
        let Inner::Ndjson { reader, line, text } = &mut self.inner else {
            return None;
        };
        loop {
            text.clear();
            *line += 1;
            let at = *line;
            match reader.read_line(text) {
                Ok(0) => return None,
                Err(e) => {
                    self.inner = Inner::Done;
                    return Some(Err(vec![RowError::new(
                        at,
                        "row",
                        format!("unreadable: {e}"),
                    )]));
                }
                Ok(_) if text.trim().is_empty() => continue,
                Ok(_) => {
                    return Some(match serde_json::from_str::<Map<String, Value>>(text) {
                        Ok(values) => self.checked(at, values, false),
                        Err(e) => Err(vec![RowError::new(
                            at,
                            "row",
                            format!("a JSON object: {e}"),
                        )]),
                    });
                }
            }
        }
    }

    fn checked(&self, line: u64, values: Map<String, Value>, csv: bool) -> Item {
        let (required, counts) = columns(self.kind);
        let unknown: Vec<RowError> = values
            .keys()
            .filter(|k| !required.contains(&k.as_str()) && !counts.contains(&k.as_str()))
            .map(|k| RowError::new(line, k, "not a field of this feed"))
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let fields = Fields {
            values,
            line,
            errors: Vec::new(),
            csv,
        };
        row_of(self.kind, fields).map(|row| (line, row))
    }
}

/// What is wrong with a CSV header, if anything: a required column missing, an unknown
/// one, or (stock) not exactly one of on_hand and delta.
fn header_rule(kind: Kind, headers: &[String]) -> Vec<RowError> {
    let (required, counts) = columns(kind);
    let mut errors: Vec<RowError> = required
        .iter()
        .filter(|c| !headers.iter().any(|h| h == *c))
        .map(|c| RowError::new(1, c, "a required column is missing from the header"))
        .collect();
    errors.extend(
        headers
            .iter()
            .filter(|h| !required.contains(&h.as_str()) && !counts.contains(&h.as_str()))
            .map(|h| RowError::new(1, h, "not a column of this feed")),
    );
    if !counts.is_empty()
        && counts
            .iter()
            .filter(|c| headers.contains(&c.to_string()))
            .count()
            != 1
    {
        errors.push(RowError::new(
            1,
            "header",
            "exactly one of the columns on_hand (absolute counts) or delta",
        ));
    }
    errors
}

impl<R: Read> Rows<R> {
    /// What is wrong with the file as a whole (a CSV header), if anything; such a file
    /// has no rows.
    pub fn header_errors(&self) -> Option<&[RowError]> {
        self.header_errors.as_deref()
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.header_errors.is_some() {
            return None;
        }
        match self.inner {
            Inner::Csv { .. } => self.next_csv(),
            Inner::Ndjson { .. } => self.next_ndjson(),
            Inner::Done => None,
        }
    }
}
