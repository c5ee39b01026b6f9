//! Feeds in: the catalog, the warehouses and the stock loaded from a CSV or NDJSON file
//! (`oms import`, `POST /imports`; both call [`import`]). docs/feeds.md is the user's
//! side; the rules in short:
//!
//! - The whole file is checked first, row by row, every bad row reported (line, field,
//!   rule). A file with one bad row applies nothing.
//! - A feed has an id (the client's, or `<kind>-<sha256 of the file>`). The same feed
//!   again applies nothing and says so; a feed interrupted half-way (a crash, a store
//!   outage) resumes where it stopped when sent again, because its progress is written
//!   in the same store batch as the rows it covers.
//! - A stock row never breaks a reservation. Whether it would can only be known when it
//!   applies (orders reserve meanwhile), so such a row is *refused* and reported, and
//!   the rest of the file applies: an absolute `on_hand` below what orders hold
//!   reserved, or a `delta` that would take `available` below zero.
//! - Rows are applied in store batches of at most [`MAX_BATCH`], read from the file as
//!   they go: memory is bounded by the batch and the catalog's size, not the file's.

mod apply;
pub mod parse;

pub use apply::import;
pub use parse::{Format, Rows, MAX_PRICE_CENTS, MAX_UNITS};

use crate::ledger::{sku_key, stock_key, warehouse_key, SkuRecord, WarehouseRecord, CATALOG};
use crate::store::{Key, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What a feed loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Catalog,
    Warehouses,
    Stock,
}

impl Kind {
    pub const NAMES: [&'static str; 3] = ["catalog", "warehouses", "stock"];

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "catalog" => Some(Kind::Catalog),
            "warehouses" => Some(Kind::Warehouses),
            "stock" => Some(Kind::Stock),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Kind::NAMES[self as usize]
    }
}

/// A stock row's count: what the warehouse counted (absolute) or a change to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    OnHand(i64),
    Delta(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StockRow {
    pub warehouse_id: String,
    pub sku: String,
    pub count: Count,
}

/// One good row of a feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Sku(SkuRecord),
    Warehouse(WarehouseRecord),
    Stock(StockRow),
}

impl Row {
    /// The item the row writes.
    pub fn key(&self) -> Key {
        match self {
            Row::Sku(s) => sku_key(&s.sku),
            Row::Warehouse(w) => warehouse_key(&w.warehouse_id),
            Row::Stock(s) => stock_key(&s.sku, &s.warehouse_id),
        }
    }
}

/// A row that breaks a rule, or that was refused when it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub rule: String,
}

impl RowError {
    pub fn new(line: u64, field: &str, rule: impl Into<String>) -> RowError {
        RowError {
            line,
            field: field.to_string(),
            rule: rule.into(),
        }
    }
}

/// How many bad or refused rows a report lists (it counts them all): a file of a
/// million bad rows must not make a report of a million lines.
pub const MAX_LISTED: usize = 1000;

/// The warehouses and SKUs a stock row may name: those in the store when the feed
/// starts. (Load the catalog and the warehouses before the stock that names them.)
#[derive(Debug, Default)]
pub struct Known {
    pub skus: HashSet<String>,
    pub warehouses: HashSet<String>,
}

impl Known {
    pub async fn load(store: &dyn Store) -> Result<Known, StoreError> {
        let ids = |items: Vec<crate::store::Item>, prefix: &str| -> HashSet<String> {
            items
                .into_iter()
                .filter_map(|i| i.key.sk.strip_prefix(prefix).map(str::to_string))
                .collect()
        };
        Ok(Known {
            skus: ids(store.query(CATALOG, "SKU#").await?, "SKU#"),
            warehouses: ids(store.query(CATALOG, "WH#").await?, "WH#"),
        })
    }

    /// The references of a good row that name nothing in the store.
    fn unknown(&self, line: u64, row: &Row) -> Vec<RowError> {
        let Row::Stock(s) = row else { return vec![] };
        let mut errors = Vec::new();
        if !self.warehouses.contains(&s.warehouse_id) {
            errors.push(RowError::new(
                line,
                "warehouse_id",
                "no such warehouse (import warehouses first)",
            ));
        }
        if !self.skus.contains(&s.sku) {
            errors.push(RowError::new(
                line,
                "sku",
                "no such SKU in the catalog (import the catalog first)",
            ));
        }
        errors
    }
}

/// Counters a caller may watch while a feed is checked and applied (the CLI's
/// progress bar, through the server's progress stream).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub rows_checked: AtomicU64,
    pub rows_applied: AtomicU64,
    /// The whole file is checked: `rows_checked` is its row count.
    pub checked: AtomicBool,
}

/// What checking a whole file found.
#[derive(Debug, Default)]
pub struct Checked {
    pub rows: u64,
    pub errors: Vec<RowError>,
    /// Every bad row's errors, listed or not.
    pub error_count: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
}

/// A reader that hashes what it reads and counts the bytes in `progress`.
struct Hashing<'a, R> {
    inner: R,
    hasher: Sha256,
    progress: &'a Progress,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads the whole of `input` and checks every row (blocking: run it off the async
/// threads). Holds one row at a time, and at most [`MAX_LISTED`] errors.
pub fn check(
    kind: Kind,
    format: Format,
    input: impl Read,
    known: &Known,
    progress: &Progress,
) -> Checked {
    let mut hashing = Hashing {
        inner: input,
        hasher: Sha256::new(),
        progress,
    };
    let mut out = Checked::default();
    let mut rows = Rows::new(kind, format, &mut hashing);
    if let Some(errors) = rows.header_errors() {
        out.error_count = 1;
        out.errors = errors.to_vec();
    }
    for item in &mut rows {
        let errors = match item {
            Ok((line, row)) => {
                out.rows += 1;
                known.unknown(line, &row)
            }
            Err(errors) => {
                out.rows += 1;
                errors
            }
        };
        progress.rows_checked.fetch_add(1, Ordering::Relaxed);
        if !errors.is_empty() {
            out.error_count += 1;
            let room = MAX_LISTED.saturating_sub(out.errors.len());
            out.errors.extend(errors.into_iter().take(room));
        }
    }
    drop(rows);
    // The reader may stop before the end (an unreadable CSV): hash the rest too.
    let _ = std::io::copy(&mut hashing, &mut std::io::sink());
    out.sha256 = hex(&hashing.hasher.finalize());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A feed's result, as `POST /imports` and `oms import` answer it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Report {
    pub feed_id: String,
    pub kind: String,
    /// `applied`, `already_applied` (nothing done: the feed was applied before) or
    /// `invalid` (nothing done: `errors` says why).
    pub status: String,
    pub rows: u64,
    /// Rows that changed an item; `unchanged` ones already held what they say.
    pub applied: u64,
    pub unchanged: u64,
    /// Stock rows refused because they would break a reservation (`refusals`).
    pub refused: u64,
    pub refusals: Vec<RowError>,
    /// Bad rows (status `invalid`): `error_count` of them, the first listed.
    pub errors: Vec<RowError>,
    pub error_count: u64,
    pub sha256: String,
}

/// Why a feed could not be taken at all (its rows' faults are a [`Report`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The feed id names a feed with other contents, or one being applied now.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The rule of a client's feed id: like an order id, up to 128 characters.
pub fn feed_id_rule(id: &str) -> Option<&'static str> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    (!ok).then_some("1 to 128 letters, digits, '-', '_', '.' or ':'")
}
