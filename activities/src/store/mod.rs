//! The one storage contract the domain is written against: items under a partition and
//! sort key, read whole, changed only by conditional writes applied all-or-nothing.
//!
//! Why a key-value contract and not one method per domain operation: every
//! consistency rule of the domain (idempotency records, tombstones, stock guards,
//! version checks) is then written once, in `crate::domain`, and each backend only has
//! to apply a batch of conditional writes atomically, which SQLite (a transaction) and
//! DynamoDB (TransactWriteItems) both do natively. The contract suite in
//! `tests/store_contract.rs` runs the same cases against both backends.

pub mod dynamo;
pub mod sqlite;

use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Names the store reserves for itself; a document may not use them.
pub const RESERVED_FIELDS: [&str; 3] = ["pk", "sk", "version"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Key {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// An item as stored: its version starts at 1 and grows by one with every write.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    pub version: u64,
    /// Shared, not copied: the embedded store's cache hands the document it keeps to
    /// every `get` that finds it (an order is read five or six times in its saga).
    pub doc: Arc<Map<String, Value>>,
}

impl Item {
    pub fn i64(&self, field: &str) -> i64 {
        self.doc.get(field).and_then(Value::as_i64).unwrap_or(0)
    }
    pub fn str(&self, field: &str) -> Option<&str> {
        self.doc.get(field).and_then(Value::as_str)
    }
}

/// What must hold of an item for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Applies whatever is stored (seeding only: it cannot detect a lost update, and a
    /// Put under it starts the version again at 1).
    Always,
    NotExists,
    Exists,
    /// The stored item has exactly this version (optimistic concurrency).
    Version(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Replaces the whole item: under `Version(v)` its version becomes v + 1,
    /// otherwise 1. `Exists` is refused: DynamoDB cannot compute a version inside a
    /// transaction without knowing the old one.
    Put {
        key: Key,
        doc: Map<String, Value>,
        cond: Cond,
    },
    /// Adds to integer fields of an existing item, provided every guarded field is at
    /// least its minimum afterwards. This is how stock moves without a read-then-write
    /// race: `available -= q` guarded by `available >= 0` cannot oversell.
    Add {
        key: Key,
        deltas: Vec<(String, i64)>,
        min_after: Vec<(String, i64)>,
    },
    /// Writes nothing; fails the batch unless the condition holds.
    Check {
        key: Key,
        cond: Cond,
    },
    Delete {
        key: Key,
        cond: Cond,
    },
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { key, .. }
            | Write::Add { key, .. }
            | Write::Check { key, .. }
            | Write::Delete { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The batch applied nothing because the condition of write `index` did not hold.
    #[error("condition failed on write {index} ({key})")]
    ConditionFailed { index: usize, key: Key },
    /// The store could not be reached or was busy; nothing is known to have applied
    /// partially, and the same batch may be sent again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (a programming error, not a data condition).
    #[error("invalid store request: {0}")]
    Invalid(String),
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;
    /// The items of partition `pk` whose sort key starts with `sk_prefix`, by sort key.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError>;
    /// At most `limit` items of partition `pk` whose sort key is below `before` (the
    /// whole partition when None), greatest sort key first: a page of a partition read
    /// backwards, costing reads for the page only. (The default reads the partition;
    /// both backends override it.)
    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = self.query(pk, "").await?;
        items.retain(|i| before.is_none_or(|b| i.key.sk.as_str() < b));
        items.reverse();
        items.truncate(limit);
        Ok(items)
    }
    /// Every item whose partition key starts with `pk_prefix` (reports and invariant
    /// checks; on DynamoDB this is a Scan, so keep it off hot paths).
    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError>;
    /// Applies all writes or none. At most [`MAX_BATCH`] writes, each to a distinct item.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError>;
    /// A short name for messages: "sqlite" or "dynamodb".
    fn backend(&self) -> &'static str;
    /// Returns once every write acknowledged so far is durable. A store whose writes
    /// are durable when acknowledged (DynamoDB, a SQLite file of its own) has nothing to
    /// do; a wrapper passes it on; one that shares the runtime's database writes lazily (sqlite.rs), and whoever
    /// tells the outside world of what it read (the event relay) calls this first.
    async fn sync(&self) -> Result<(), StoreError>;
}

/// DynamoDB's TransactWriteItems limit, applied to both backends so that what passes
/// on one passes on the other.
pub const MAX_BATCH: usize = 100;

/// The checks both backends make before touching anything.
pub fn check_batch(writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Err(StoreError::Invalid(
            "a batch needs at least one write".into(),
        ));
    }
    if writes.len() > MAX_BATCH {
        return Err(StoreError::Invalid(format!(
            "a batch may hold at most {MAX_BATCH} writes, not {}",
            writes.len()
        )));
    }
    let mut keys: Vec<&Key> = writes.iter().map(Write::key).collect();
    keys.sort();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(StoreError::Invalid(format!(
            "a batch may write {} only once",
            w[0]
        )));
    }
    for w in writes {
        if let Write::Put {
            cond: Cond::Exists,
            key,
            ..
        } = w
        {
            return Err(StoreError::Invalid(format!(
                "Put of {key} under Exists: use Version(v) so the new version is known"
            )));
        }
        let fields: Vec<&str> = match w {
            Write::Put { doc, .. } => doc.keys().map(String::as_str).collect(),
            Write::Add {
                deltas, min_after, ..
            } => deltas
                .iter()
                .chain(min_after)
                .map(|(f, _)| f.as_str())
                .collect(),
            _ => vec![],
        };
        for f in fields {
            if RESERVED_FIELDS.contains(&f) {
                return Err(StoreError::Invalid(format!(
                    "field '{f}' of {} is reserved by the store",
                    w.key()
                )));
            }
            if !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || f.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "field '{f}' of {}: names are letters, digits and _",
                    w.key()
                )));
            }
        }
    }
    Ok(())
}
