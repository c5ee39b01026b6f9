//! The embedded backend: one SQLite table of items, written through the group-commit
//! writer of the `groupcommit` crate.
//!
//! The writer runs every batch waiting at that moment inside one IMMEDIATE
//! transaction, each in its own savepoint (a batch whose condition fails is rolled back
//! alone), commits once and only then answers each caller: concurrent orders' steps
//! share one commit (issue 16).
//!
//! Where the table lives:
//! - In a file of its own (`open`, `--store sqlite:PATH`, a Lambda under `cargo lambda
//!   watch`): each commit is fsynced before it is answered.
//! - In the runtime's database (`within`, what `oms up` does by default): commits are
//!   lazy, and one WAL orders them with the runtime's steps. A power cut keeps a prefix
//!   of that WAL, so a step that recorded an activity's result never survives without
//!   the activity's writes; whoever tells the outside world calls `sync` first (the
//!   HTTP answers, the event relay). An order at concurrency 1 then waits for no
//!   fsync of its own between its POST and its end (issue 16: about twelve before).
//!
//! The write lock is taken before any condition is read, so a condition checked is a
//! condition that holds when the batch commits, across processes too. Reads run on the
//! caller's thread on pooled read-only connections, beside the writer (WAL): a point
//! read is a few microseconds, less than a hand-off to a blocking pool would cost.

mod cache;

use super::{check_batch, Cond, Item, Key, Store, StoreError, Write};
use cache::{Cache, Change};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

/// The items table: one fact, one place, whichever database it is in.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- JSON text, or a BLOB of it compressed (doc_codec)
    doc NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;";

/// Where an oms before the one-WAL change kept the order store, in its data dir
/// (`SqliteStore::adopt` moves it in).
pub const OLDER_DATA_DIR_FILE: &str = "orders.db";

pub struct SqliteStore {
    db: groupcommit::Db,
    /// Whether a commit is fsynced before it is answered: in a file of its own, yes;
    /// in the runtime's database, lazily (see the module's doc).
    durable: bool,
    /// Whether `close` closes the database too (the runtime closes its own).
    owns_db: bool,
    /// Set by `close`: a write then fails as Unavailable instead of queueing.
    closed: AtomicBool,
    /// The items last written or read, decoded (`cache`): only where this process
    /// alone writes the database (`within`).
    cache: Option<Arc<Cache>>,
    /// Items under this partition prefix are stored as plain text (`transient`).
    transient: Option<&'static str>,
}

impl From<groupcommit::Error> for StoreError {
    fn from(e: groupcommit::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with_key(path, None)
    }

    /// `open`, the database encrypted with `key` (SQLCipher; see the dbkey crate).
    pub fn open_with_key(
        path: &Path,
        key: Option<&dbkey::DbKey>,
    ) -> Result<SqliteStore, StoreError> {
        let db = groupcommit::Db::open(path, key, &options(), create_table)?;
        Ok(SqliteStore::new(db, true, true))
    }

    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let db = groupcommit::Db::in_memory(&options(), create_table)?;
        Ok(SqliteStore::new(db, true, true))
    }

    /// The store in `db`, another store's database (the runtime's), its writes lazy:
    /// `db`'s owner makes them durable with its own, and closes it. That owner holds
    /// the data dir for this process alone, so every write to the items passes through
    /// here, and the store keeps the items it last wrote or read decoded (`cache`).
    pub async fn within(db: groupcommit::Db) -> Result<SqliteStore, StoreError> {
        db.write(true, create_table).await?;
        let mut store = SqliteStore::new(db, false, false);
        store.cache = Some(Cache::new(cache::CAPACITY));
        Ok(store)
    }

    /// A file of its own may be shared with other processes (Lambdas under `cargo
    /// lambda watch` share one), whose commits no cache here would see: none is kept.
    fn new(db: groupcommit::Db, durable: bool, owns_db: bool) -> SqliteStore {
        SqliteStore {
            db,
            durable,
            owns_db,
            closed: AtomicBool::new(false),
            cache: None,
            transient: None,
        }
    }

    /// Stores the items under `pk_prefix` uncompressed: they live for moments (an
    /// outbox, whose relay deletes each item as it publishes it), so compressing them
    /// on the way in and out was work for nothing (issue 16). They read the same.
    pub fn transient(mut self, pk_prefix: &'static str) -> SqliteStore {
        self.transient = Some(pk_prefix);
        self
    }

    /// How many `get`s the cache answered and how many read the table (None without
    /// a cache).
    pub fn cache_counts(&self) -> Option<(u64, u64)> {
        self.cache.as_ref().map(|c| c.counts())
    }

    /// The item at `key` as the table holds it.
    fn read_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let found = self.db.read(|conn| read(conn, key))?;
        Ok(found.map(|(version, doc)| Item {
            key: key.clone(),
            version,
            doc: Arc::new(doc),
        }))
    }

    /// Applies `writes` as one batch, all or nothing and under the same rules as
    /// `transact`, inside a job its caller runs on this store's database: for a store
    /// `within` another's whose owner must commit the batch atomically with writes of
    /// its own (the event relay: appending an outbox item's events and deleting it).
    /// `conn` must be a write job's connection of that database.
    pub fn apply_in(&self, conn: &Connection, mut writes: Vec<Write>) -> Result<(), StoreError> {
        check_batch(&writes)?;
        let encoded = encode_docs(&writes, self.transient)?;
        let cached = self.cached(&mut writes);
        groupcommit::savepoint(conn, |c| apply_batch(c, &writes, &encoded, cached))
    }

    /// The cache, if any, and each put's document taken out of `writes` for it (a
    /// put's document is stored from its encoding; the cache keeps it decoded).
    fn cached(&self, writes: &mut [Write]) -> Option<(Arc<Cache>, PutDocs)> {
        let cache = self.cache.clone()?;
        let docs = writes
            .iter_mut()
            .map(|w| match w {
                Write::Put { doc, .. } => Some(Arc::new(std::mem::take(doc))),
                _ => None,
            })
            .collect();
        Some((cache, docs))
    }

    /// Copies the items of an older oms's `orders.db` at `old` (the order store had a
    /// file of its own) into this store, durably, then removes that file and its WAL.
    /// An item already here is kept, so a copy cut short by a crash is simply done
    /// again at the next start. Answers how many items the file had (0 without one).
    pub async fn adopt(&self, old: &Path, key: Option<&dbkey::DbKey>) -> Result<usize, StoreError> {
        if !old.exists() {
            return Ok(0);
        }
        let rows = read_all_rows(old, key)?;
        let copied = rows.len();
        for chunk in rows.chunks(ADOPT_CHUNK) {
            let chunk = chunk.to_vec();
            let cache = self.cache.clone();
            self.db
                .write(true, move |conn| {
                    insert_missing(conn, &chunk)?;
                    if let Some(cache) = cache {
                        cache.changing(vec![Change::Unknown]);
                    }
                    Ok::<_, StoreError>(())
                })
                .await?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", old.display()));
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Unavailable(format!(
                        "copied {copied} items from {}, but cannot remove {}: {e}",
                        old.display(),
                        file.display()
                    )))
                }
                _ => {}
            }
        }
        Ok(copied)
    }

    /// Stops taking writes. A store in a file of its own also stops its writer once the
    /// batches already queued are committed, gives the free pages back and checkpoints
    /// the WAL into the database: a clean stop leaves one file, no larger than its
    /// data (outbox items deleted by the relay free pages that later writes reuse while
    /// the server runs; only a stop returns them). Reads still work.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        if self.owns_db {
            self.db.close();
        }
    }
}

/// The order store's own file: a smaller writer cache than the runtime's, and room
/// for every statement it runs.
fn options() -> groupcommit::Options {
    groupcommit::Options {
        writer_thread: "oms-orders-writer",
        writer_cache_kib: 16 * 1024,
        statement_cache: 64,
        max_batch: 512,
        ..groupcommit::Options::default()
    }
}

fn create_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA).map_err(unavailable)
}

/// Items copied in one transaction when adopting an older `orders.db`.
const ADOPT_CHUNK: usize = 5_000;

/// A stored row as it is: key, version and the doc as stored (compressed or not).
type RawRow = (String, String, i64, rusqlite::types::Value);

fn read_all_rows(path: &Path, key: Option<&dbkey::DbKey>) -> Result<Vec<RawRow>, StoreError> {
    let cannot = |e: String| StoreError::Unavailable(format!("{}: {e}", path.display()));
    // Read-write: opening replays the file's WAL, if a crash left one.
    let conn = Connection::open(path).map_err(|e| cannot(e.to_string()))?;
    dbkey::unlock(&conn, path, key).map_err(cannot)?;
    let mut stmt = conn
        .prepare("SELECT pk, sk, version, doc FROM items")
        .map_err(|e| cannot(e.to_string()))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(|e| cannot(e.to_string()))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| cannot(e.to_string()))
}

fn insert_missing(conn: &Connection, rows: &[RawRow]) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO items (pk, sk, version, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pk, sk) DO NOTHING",
        )
        .map_err(unavailable)?;
    for (pk, sk, version, doc) in rows {
        stmt.execute(params![pk, sk, version, doc])
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Each put's document as stored, in the order of `writes`: compressed, but under the
/// `transient` prefix.
fn encode_docs(
    writes: &[Write],
    transient: Option<&str>,
) -> Result<Vec<Option<rusqlite::types::Value>>, StoreError> {
    writes
        .iter()
        .map(|w| match w {
            Write::Put { key, doc, .. } => {
                let text = serde_json::to_string(doc)
                    .map_err(|e| StoreError::Unavailable(format!("cannot encode {key}: {e}")))?;
                if transient.is_some_and(|p| key.pk.starts_with(p)) {
                    return Ok(Some(rusqlite::types::Value::Text(text)));
                }
                doc_codec::encode(text).map(Some)
            }
            _ => Ok(None),
        })
        .collect()
}

/// Each put's document, decoded, in the order of its writes (None for the others).
type PutDocs = Vec<Option<Arc<Map<String, Value>>>>;

/// A batch, all or nothing (the writer runs it in a savepoint of its own). With a
/// cache (and each put's document, decoded), the cache is told what the batch changed,
/// to be put in when its commit ends.
fn apply_batch(
    conn: &Connection,
    writes: &[Write],
    encoded: &[Option<rusqlite::types::Value>],
    cached: Option<(Arc<Cache>, PutDocs)>,
) -> Result<(), StoreError> {
    assert_eq!(writes.len(), encoded.len(), "a document for every write");
    let mut left = Vec::with_capacity(writes.len());
    for (i, (w, encoded)) in writes.iter().zip(encoded).enumerate() {
        left.push(apply(conn, i, w, encoded.as_ref())?);
    }
    let Some((cache, docs)) = cached else {
        return Ok(());
    };
    assert_eq!(writes.len(), docs.len(), "a decoded document for every put");
    let changes = writes
        .iter()
        .zip(left)
        .zip(docs)
        .filter_map(|((w, left), doc)| {
            let entry = match (left?, doc) {
                (Left::Stored(version), Some(doc)) => Some((version, doc)),
                // Never so (the documents come from these writes); if it were, the
                // cache forgets everything rather than keep what this put replaced.
                (Left::Stored(_), None) => return Some(Change::Unknown),
                (Left::Added(version, doc), _) => Some((version, Arc::new(doc))),
                (Left::Deleted, _) => None,
            };
            Some(Change::Set(w.key().clone(), entry))
        })
        .collect();
    cache.changing(changes);
    Ok(())
}

/// What a write left at its key (None: it changed nothing, a check).
enum Left {
    /// A put: this version, and the put's document.
    Stored(u64),
    /// An add: this version and document.
    Added(u64, Map<String, Value>),
    Deleted,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Documents are stored compressed: zstd against a dictionary of typical items
/// (`sqlite-dict-v1.zdict`, samples of the orders, ledger records, shipments, index
/// entries and gateway records the saga writes), so even a 60-byte index entry shrinks,
/// where zstd alone gains little on one small document. A stored BLOB starts with the
/// dictionary's number; a TEXT doc is plain JSON (what stores before this wrote, and
/// what a doc is kept as when compression would not make it smaller). The dictionary
/// is part of the format: a new one gets a new number, and 1 stays readable forever.
mod doc_codec {
    use super::StoreError;
    use rusqlite::types::{Value as SqlValue, ValueRef};
    use std::sync::OnceLock;

    const DICT_V1: &[u8] = include_bytes!("sqlite-dict-v1.zdict");
    const V1: u8 = 1;
    /// zstd's level: 1. Higher levels gained nothing on documents this small; against 3
    /// (zstd's default), 1 left the data dir the same at rest (3,952-3,983 bytes an
    /// order against 3,956-3,989, `cargo xtask bench orders`) for 0.8% fewer of an
    /// order's instructions (callgrind): with the dictionary, the matches are found
    /// either way.
    const LEVEL: i32 = 1;

    fn encoder() -> &'static zstd::dict::EncoderDictionary<'static> {
        static D: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
        D.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICT_V1, LEVEL))
    }

    fn decoder() -> &'static zstd::dict::DecoderDictionary<'static> {
        static D: OnceLock<zstd::dict::DecoderDictionary<'static>> = OnceLock::new();
        D.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICT_V1))
    }

    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }

    /// What to store for the JSON text `doc`: compressed, unless that is no smaller.
    pub fn encode(doc: String) -> Result<SqlValue, StoreError> {
        let compressed = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(zstd::bulk::Compressor::with_prepared_dictionary(encoder())?);
            }
            let c = c.as_mut().expect("set above");
            let mut out = vec![V1];
            out.extend(c.compress(doc.as_bytes())?);
            Ok::<_, std::io::Error>(out)
        });
        match compressed {
            Ok(blob) if blob.len() < doc.len() => Ok(SqlValue::Blob(blob)),
            Ok(_) => Ok(SqlValue::Text(doc)),
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot compress an item: {e}"
            ))),
        }
    }

    /// The JSON text of a stored doc.
    pub fn decode(stored: ValueRef<'_>) -> Result<String, String> {
        match stored {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            ValueRef::Blob(b) => match b.split_first() {
                Some((&V1, frame)) => {
                    let raw = DECOMPRESSOR.with(|d| {
                        let mut d = d.borrow_mut();
                        if d.is_none() {
                            *d = Some(zstd::bulk::Decompressor::with_prepared_dictionary(
                                decoder(),
                            )?);
                        }
                        let d = d.as_mut().expect("set above");
                        let size = zstd::zstd_safe::get_frame_content_size(frame)
                            .ok()
                            .flatten()
                            .unwrap_or(1 << 20) as usize;
                        d.decompress(frame, size)
                    });
                    let raw = raw.map_err(|e| format!("compressed document unreadable: {e}"))?;
                    String::from_utf8(raw).map_err(|e| e.to_string())
                }
                Some((other, _)) => Err(format!(
                    "compressed with dictionary {other}, which this oms does not have \
                     (a newer oms wrote it)"
                )),
                None => Err("an empty document".into()),
            },
            other => Err(format!("a document of type {:?}", other.data_type())),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn documents_round_trip_exactly_and_small_ones_shrink() {
            let docs = [
                r#"{"order_id":"6f1c2a9e-0b7d-4c55-9e1f-2d3a4b5c6d7e"}"#.to_string(),
                r#"{"status":"DONE","result":{"charge_id":"ch_1","amount_cents":4200}}"#.into(),
                "{}".into(),
                format!("{{\"note\":\"{}\"}}", "é".repeat(3000)),
            ];
            for doc in docs {
                let stored = encode(doc.clone()).unwrap();
                let back = match &stored {
                    SqlValue::Blob(b) => decode(ValueRef::Blob(b)).unwrap(),
                    SqlValue::Text(t) => decode(ValueRef::Text(t.as_bytes())).unwrap(),
                    _ => unreachable!(),
                };
                assert_eq!(back, doc);
            }
            let index = r#"{"order_id":"6f1c2a9e-0b7d-4c55-9e1f-2d3a4b5c6d7e"}"#.to_string();
            match encode(index.clone()).unwrap() {
                SqlValue::Blob(b) => assert!(b.len() < index.len(), "{} bytes", b.len()),
                other => panic!("not compressed: {other:?}"),
            }
        }

        #[test]
        fn an_unknown_dictionary_is_an_error_not_a_guess() {
            let err = decode(ValueRef::Blob(&[7, 1, 2, 3])).unwrap_err();
            assert!(err.contains("dictionary 7"), "{err}");
        }
    }
}

fn row_to_item(pk: String, sk: String, version: i64, doc: String) -> Result<Item, StoreError> {
    let doc: Map<String, Value> = serde_json::from_str(&doc)
        .map_err(|e| StoreError::Unavailable(format!("stored item {pk}/{sk} is not JSON: {e}")))?;
    Ok(Item {
        key: Key { pk, sk },
        version: version as u64,
        doc: Arc::new(doc),
    })
}

/// A stored item's version and document.
type Stored = (u64, Map<String, Value>);

/// The items a `SELECT pk, sk, version, doc` returns.
fn select(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Item>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, stored_doc(r, 3)?))
        })
        .map_err(unavailable)?;
    rows.map(|r| {
        let (pk, sk, v, d) = r.map_err(unavailable)?;
        row_to_item(pk, sk, v, d)
    })
    .collect()
}

/// The version of the item at `key`, if there is one (its document not read).
fn read_version(conn: &Connection, key: &Key) -> Result<Option<u64>, StoreError> {
    conn.prepare_cached("SELECT version FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut s| {
            s.query_row(params![key.pk, key.sk], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|v| v.map(|v| v as u64))
        .map_err(unavailable)
}

fn read(conn: &Connection, key: &Key) -> Result<Option<Stored>, StoreError> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT version, doc FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut s| {
            s.query_row(params![key.pk, key.sk], |r| {
                Ok((r.get(0)?, stored_doc(r, 1)?))
            })
            .optional()
        })
        .map_err(unavailable)?;
    row.map(|(v, d)| {
        serde_json::from_str(&d)
            .map(|doc| (v as u64, doc))
            .map_err(|e| StoreError::Unavailable(format!("stored item {key} is not JSON: {e}")))
    })
    .transpose()
}

/// Column `i`'s doc as JSON text, whichever way it was stored (`doc_codec`).
fn stored_doc(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    doc_codec::decode(r.get_ref(i)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, e.into())
    })
}

fn holds(cond: Cond, current: Option<u64>) -> bool {
    match cond {
        Cond::Always => true,
        Cond::NotExists => current.is_none(),
        Cond::Exists => current.is_some(),
        Cond::Version(v) => current == Some(v),
    }
}

/// Applies one write; a Put's document comes `encoded` already.
fn apply(
    conn: &Connection,
    index: usize,
    w: &Write,
    encoded: Option<&rusqlite::types::Value>,
) -> Result<Option<Left>, StoreError> {
    let failed = || StoreError::ConditionFailed {
        index,
        key: w.key().clone(),
    };
    let key = w.key();
    let put = |version: u64, stored: &rusqlite::types::Value| {
        conn.prepare_cached(
            "INSERT INTO items (pk, sk, version, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pk, sk) DO UPDATE SET version = excluded.version, doc = excluded.doc",
        )
        .and_then(|mut s| s.execute(params![key.pk, key.sk, version as i64, stored]))
        .map_err(unavailable)
    };
    // Only an Add needs the document stored; the others, its version.
    let version = match w {
        Write::Add { .. } => None,
        _ => read_version(conn, key)?,
    };
    match w {
        Write::Put { cond, .. } => {
            if !holds(*cond, version) {
                return Err(failed());
            }
            let next = match cond {
                Cond::Version(v) => v + 1,
                _ => 1,
            };
            let stored = encoded.ok_or_else(|| {
                StoreError::Unavailable(format!("the write of {key} came without its document"))
            })?;
            put(next, stored)?;
            Ok(Some(Left::Stored(next)))
        }
        Write::Add {
            deltas, min_after, ..
        } => {
            let Some((v, mut doc)) = read(conn, key)? else {
                return Err(failed());
            };
            for (field, delta) in deltas {
                let now = doc.get(field).and_then(Value::as_i64).unwrap_or(0);
                // A number past i64 is refused as a failed condition, never wrapped.
                let Some(after) = now.checked_add(*delta) else {
                    return Err(failed());
                };
                doc.insert(field.clone(), Value::from(after));
            }
            for (field, min) in min_after {
                if doc.get(field).and_then(Value::as_i64).unwrap_or(0) < *min {
                    return Err(failed());
                }
            }
            let text = serde_json::to_string(&doc)
                .map_err(|e| StoreError::Unavailable(format!("cannot encode {key}: {e}")))?;
            put(v + 1, &doc_codec::encode(text)?)?;
            Ok(Some(Left::Added(v + 1, doc)))
        }
        Write::Check { cond, .. } => {
            if !holds(*cond, version) {
                return Err(failed());
            }
            Ok(None)
        }
        Write::Delete { cond, .. } => {
            if !holds(*cond, version) {
                return Err(failed());
            }
            conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
                .and_then(|mut s| s.execute(params![key.pk, key.sk]))
                .map_err(unavailable)?;
            Ok(Some(Left::Deleted))
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let Some(cache) = &self.cache else {
            return self.read_item(key);
        };
        match cache.get(key) {
            Ok(kept) => Ok(kept),
            Err(ticket) => {
                let found = self.read_item(key)?;
                cache.fill(key, ticket, found.as_ref());
                Ok(found)
            }
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.db.read(|conn| match prefix_end(sk_prefix) {
            Some(end) => select(conn, range_sql::QUERY_RANGE, params![pk, sk_prefix, end]),
            None => select(conn, range_sql::QUERY_FROM, params![pk, sk_prefix]),
        })
    }

    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.read(|conn| match before {
            Some(before) => select(conn, range_sql::BACK_BEFORE, params![pk, before, limit]),
            None => select(conn, range_sql::BACK_LAST, params![pk, limit]),
        })
    }

    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        // A range of the primary key, not a filter over every row: the event relay
        // scans its (usually empty) outbox prefix several times a second.
        self.db.read(|conn| match prefix_end(pk_prefix) {
            Some(end) => select(conn, range_sql::SCAN_RANGE, params![pk_prefix, end]),
            None => select(conn, range_sql::SCAN_FROM, params![pk_prefix]),
        })
    }

    async fn transact(&self, mut writes: Vec<Write>) -> Result<(), StoreError> {
        check_batch(&writes)?;
        let encoded = encode_docs(&writes, self.transient)?;
        if self.closed.load(SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        // Taken on the caller's thread, not the writer's: the writer is the one
        // thread every order's commits share.
        let cached = self.cached(&mut writes);
        self.db
            .write(self.durable, move |conn| {
                apply_batch(conn, &writes, &encoded, cached)
            })
            .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.sync().await?)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

/// The range reads, one statement for each shape of bound. SQLite bounds a range only
/// by plain comparisons: `(?2 IS NULL OR pk < ?2)` read from the lower bound to the end
/// of the table, so the relay's every `scan` of `OUTBOX#` read every stock row after it
/// (issue 16: about 200 preads an order with a catalog of 1,000 SKUs), and a `query` by
/// prefix read its whole partition (every SKU of the catalog, for its warehouses).
/// `range_reads_are_bounded` checks each plan. Each keeps its prefix filter, as
/// `prefix_end`'s range may be wider than the prefix.
mod range_sql {
    pub const SCAN_RANGE: &str = "SELECT pk, sk, version, doc FROM items WHERE pk >= ?1 AND pk < ?2 AND substr(pk, 1, length(?1)) = ?1 ORDER BY pk, sk";
    pub const SCAN_FROM: &str = "SELECT pk, sk, version, doc FROM items WHERE pk >= ?1 AND substr(pk, 1, length(?1)) = ?1 ORDER BY pk, sk";
    pub const QUERY_RANGE: &str = "SELECT pk, sk, version, doc FROM items WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk";
    pub const QUERY_FROM: &str = "SELECT pk, sk, version, doc FROM items WHERE pk = ?1 AND sk >= ?2 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk";
    pub const BACK_BEFORE: &str = "SELECT pk, sk, version, doc FROM items WHERE pk = ?1 AND sk < ?2 ORDER BY sk DESC LIMIT ?3";
    pub const BACK_LAST: &str =
        "SELECT pk, sk, version, doc FROM items WHERE pk = ?1 ORDER BY sk DESC LIMIT ?2";

    /// Each statement and the bound its plan must show.
    #[cfg(test)]
    pub const PLANS: [(&str, &str); 6] = [
        (SCAN_RANGE, "pk>? AND pk<?"),
        (SCAN_FROM, "pk>?"),
        (QUERY_RANGE, "pk=? AND sk>? AND sk<?"),
        (QUERY_FROM, "pk=? AND sk>?"),
        (BACK_BEFORE, "pk=? AND sk<?"),
        (BACK_LAST, "pk=?"),
    ];
}

/// The least string above every string that starts with `prefix` (its last character
/// made the next one), or None when there is none (an empty prefix).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_reads_are_bounded() {
        let conn = Connection::open_in_memory().unwrap();
        create_table(&conn).unwrap();
        for (sql, bound) in range_sql::PLANS {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // Unbound parameters are NULL, which the plan does not depend on.
            let mut rows = stmt.raw_query();
            let mut plan: Vec<String> = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                plan.push(row.get(3).unwrap());
            }
            let want = format!("SEARCH items USING PRIMARY KEY ({bound})");
            assert_eq!(plan, [want], "{sql}");
        }
    }

    fn fresh_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("oms-orders-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A database standing in for the runtime's, in `dir`.
    fn runtime_db(dir: &Path, key: Option<&dbkey::DbKey>) -> groupcommit::Db {
        let options = groupcommit::Options::default();
        groupcommit::Db::open(&dir.join("oms.sqlite3"), key, &options, |_| {
            Ok::<_, groupcommit::Error>(())
        })
        .unwrap()
    }

    fn counter(n: i64) -> Map<String, Value> {
        Map::from_iter([("n".to_string(), Value::from(n))])
    }

    /// Writers bump counters on a few keys (a put under the version read, or an add)
    /// while readers read them: no read may answer a version older than one already
    /// acknowledged, nor older than one the same reader saw, nor a document from
    /// another version (each write adds one to both). At the end the cache answers
    /// what the table holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_cache_never_answers_what_a_commit_replaced() {
        use std::sync::atomic::AtomicU64;
        let dir = fresh_dir("cache-race");
        let mut store = SqliteStore::within(runtime_db(&dir, None)).await.unwrap();
        // Fewer entries than keys: reads miss, and what they read races the writes.
        store.cache = Some(Cache::new(2));
        let store = Arc::new(store);
        const KEYS: usize = 4;
        let key = |k: usize| Key::new("COUNTER", format!("{k}"));
        for k in 0..KEYS {
            let put = Write::Put {
                key: key(k),
                doc: counter(0),
                cond: Cond::NotExists,
            };
            store.transact(vec![put]).await.unwrap();
        }
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(1)).collect());
        let mut tasks = Vec::new();
        for w in 0..6u64 {
            let (store, acked) = (store.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(w);
                for _ in 0..300 {
                    let k = rng.usize(..KEYS);
                    let write = if rng.bool() {
                        let item = store.get(&key(k)).await.unwrap().unwrap();
                        Write::Put {
                            key: key(k),
                            doc: counter(item.i64("n") + 1),
                            cond: Cond::Version(item.version),
                        }
                    } else {
                        Write::Add {
                            key: key(k),
                            deltas: vec![("n".into(), 1)],
                            min_after: vec![],
                        }
                    };
                    match store.transact(vec![write]).await {
                        Ok(()) => {
                            // This writer's ack: the version is at least one more than
                            // any it saw acknowledged before.
                            let now = store.read_item(&key(k)).unwrap().unwrap().version;
                            acked[k].fetch_max(now, SeqCst);
                        }
                        Err(StoreError::ConditionFailed { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for r in 0..3u64 {
            let (store, acked) = (store.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(100 + r);
                let mut seen = [0u64; KEYS];
                for _ in 0..3000 {
                    let k = rng.usize(..KEYS);
                    let floor = acked[k].load(SeqCst).max(seen[k]);
                    let item = store.get(&key(k)).await.unwrap().unwrap();
                    assert!(
                        item.version >= floor,
                        "read version {} after {floor}",
                        item.version
                    );
                    assert_eq!(item.i64("n") as u64, item.version - 1, "{item:?}");
                    seen[k] = item.version;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for k in 0..KEYS {
            assert_eq!(
                store.get(&key(k)).await.unwrap(),
                store.read_item(&key(k)).unwrap()
            );
        }
        let (hits, misses) = store.cache_counts().unwrap();
        assert!(hits > 1000 && misses > 1000, "{hits} hits, {misses} misses");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What a batch that failed, a delete and an adopted file leave is what `get`
    /// answers, from the cache as from the table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cache_follows_rollbacks_deletes_and_adoption() {
        let dir = fresh_dir("cache-follows");
        let store = SqliteStore::within(runtime_db(&dir, None)).await.unwrap();
        let (a, b) = (Key::new("A", "1"), Key::new("B", "1"));
        let put = |key: &Key, n: i64, cond| Write::Put {
            key: key.clone(),
            doc: counter(n),
            cond,
        };
        store
            .transact(vec![put(&a, 1, Cond::NotExists)])
            .await
            .unwrap();
        assert_eq!(store.get(&a).await.unwrap().unwrap().version, 1);
        let failed = store
            .transact(vec![
                put(&a, 2, Cond::Version(1)),
                Write::Check {
                    key: b.clone(),
                    cond: Cond::Exists,
                },
            ])
            .await;
        assert!(
            matches!(failed, Err(StoreError::ConditionFailed { index: 1, .. })),
            "{failed:?}"
        );
        let kept = store.get(&a).await.unwrap().unwrap();
        assert_eq!(
            (kept.version, kept.i64("n")),
            (1, 1),
            "the rolled-back put is not kept"
        );
        assert_eq!(store.get(&b).await.unwrap(), None);
        store
            .transact(vec![Write::Delete {
                key: a.clone(),
                cond: Cond::Exists,
            }])
            .await
            .unwrap();
        assert_eq!(store.get(&a).await.unwrap(), None, "deleted");
        // An older file's items, adopted, replace the absence the cache knew of `b`.
        let old_path = dir.join("orders.db");
        let old = SqliteStore::open(&old_path).unwrap();
        old.transact(vec![put(&b, 7, Cond::NotExists)])
            .await
            .unwrap();
        old.close();
        assert_eq!(store.adopt(&old_path, None).await.unwrap(), 1);
        assert_eq!(store.get(&b).await.unwrap().unwrap().i64("n"), 7);
        let (hits, _) = store.cache_counts().unwrap();
        assert!(hits >= 3, "{hits} hits");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two jobs of one transaction change a key: between their hooks (after the
    /// COMMIT, where the table already answers the second's value) the cache must not
    /// answer the first's. A hook of the test's own, registered between the two,
    /// looks; a rolled-back second job leaves the first's value, put in at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_transactions_jobs_leave_the_cache_the_last_value() {
        let dir = fresh_dir("cache-one-transaction");
        let db = runtime_db(&dir, None);
        let store = Arc::new(SqliteStore::within(db.clone()).await.unwrap());
        let k = Key::new("COUNTER", "1");
        let put = |n: i64, cond| Write::Put {
            key: k.clone(),
            doc: counter(n),
            cond,
        };
        store.transact(vec![put(0, Cond::NotExists)]).await.unwrap();
        // (between the hooks, at the end) for each transaction: the version `get`
        // answered from the cache, or None when it read the table.
        let seen: Arc<std::sync::Mutex<Vec<Option<u64>>>> = Arc::default();
        let cached_version = |store: &SqliteStore, k: &Key| {
            let cache = store.cache.as_ref().expect("a store within has a cache");
            cache
                .get(k)
                .ok()
                .map(|item| item.expect("the key exists").version)
        };
        for (second_fails, version) in [(false, 1), (true, 3)] {
            let (s, seen_in_job, k2) = (store.clone(), seen.clone(), k.clone());
            let first = put(1, Cond::Version(version));
            let second = put(2, Cond::Version(version + 1));
            let failing = Write::Check {
                key: Key::new("ABSENT", "1"),
                cond: Cond::Exists,
            };
            db.write(false, move |conn| {
                s.apply_in(conn, vec![first])?;
                let (s2, seen2) = (s.clone(), seen_in_job.clone());
                let hook: groupcommit::CommitHook = Box::new(move |_| {
                    seen2.lock().unwrap().push(cached_version(&s2, &k2));
                });
                assert!(groupcommit::on_commit(hook).is_ok());
                let second = if second_fails {
                    vec![second, failing]
                } else {
                    vec![second]
                };
                let _ = s.apply_in(conn, second);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
            let end = cached_version(&store, &k);
            seen.lock().unwrap().push(end);
        }
        let table = store.read_item(&k).unwrap().unwrap().version;
        assert_eq!(
            table, 4,
            "the put, both jobs of the first, the first job of the second"
        );
        // The first transaction: its first job's version 2 is not put in (a miss between
        // the hooks), its second job's 3 is. The second: its second job rolled back, so
        // its first job's 4 is put in, by the hook before the test's.
        assert_eq!(*seen.lock().unwrap(), [None, Some(3), Some(4), Some(4)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_closed_store_gives_its_free_pages_back_and_refuses_writes() {
        let dir = fresh_dir("close");
        let path = dir.join("orders.db");
        let store = SqliteStore::open(&path).unwrap();
        // Random text does not compress: each item takes its 3 KB, as outbox items
        // the relay deletes leave their pages free.
        let noise = |i: u64| -> String {
            let mut rng = fastrand::Rng::with_seed(i);
            (0..3000).map(|_| rng.alphanumeric()).collect()
        };
        let key = |i: u64| Key::new("OUTBOX", format!("{i:04}"));
        for i in 0..300 {
            let mut doc = Map::new();
            doc.insert("event".into(), Value::String(noise(i)));
            let put = Write::Put {
                key: key(i),
                doc,
                cond: Cond::NotExists,
            };
            store.transact(vec![put]).await.unwrap();
        }
        for i in 0..300 {
            let delete = Write::Delete {
                key: key(i),
                cond: Cond::Exists,
            };
            store.transact(vec![delete]).await.unwrap();
        }
        store.close();
        let after = store
            .transact(vec![Write::Delete {
                key: key(0),
                cond: Cond::Always,
            }])
            .await;
        assert!(
            matches!(&after, Err(StoreError::Unavailable(m)) if m.contains("closed")),
            "{after:?}"
        );
        let c = Connection::open(&path).unwrap();
        let (mode, free, pages): (i64, i64, i64) = c
            .query_row(
                "SELECT (SELECT auto_vacuum FROM pragma_auto_vacuum), \
                 (SELECT freelist_count FROM pragma_freelist_count), \
                 (SELECT page_count FROM pragma_page_count)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((mode, free), (2, 0), "INCREMENTAL, and nothing left free");
        assert!(pages < 10, "{pages} pages for an empty table");
        let wal = std::fs::metadata(dir.join("orders.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the WAL was checkpointed and truncated");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transient_items_are_stored_as_text_and_read_the_same() {
        let dir = fresh_dir("transient");
        let db = runtime_db(&dir, None);
        let store = SqliteStore::within(db.clone())
            .await
            .unwrap()
            .transient("OUTBOX#");
        // Long and repetitive enough that compression would shrink it.
        let text = "an order placed, ".repeat(20);
        let doc = Map::from_iter([("events".to_string(), Value::from(text))]);
        let put = |pk: &str| Write::Put {
            key: Key::new(pk, "000000000001"),
            doc: doc.clone(),
            cond: Cond::Always,
        };
        store
            .transact(vec![put("OUTBOX#o-1"), put("ORDER#o-1")])
            .await
            .unwrap();
        let kinds = db
            .read(|c| {
                let mut stmt = c.prepare("SELECT pk, typeof(doc) FROM items ORDER BY pk")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok::<Vec<(String, String)>, groupcommit::Error>(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(
            kinds,
            [
                ("ORDER#o-1".to_string(), "blob".to_string()),
                ("OUTBOX#o-1".to_string(), "text".to_string())
            ]
        );
        // Read from the table, not the cache, which keeps documents decoded.
        let scanned = store.scan("OUTBOX#").await.unwrap();
        assert_eq!(*scanned[0].doc, doc);
        assert_eq!(*store.query("ORDER#o-1", "").await.unwrap()[0].doc, doc);
        db.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_within_another_database_adopts_an_older_file_and_writes_lazily() {
        let dir = fresh_dir("within");
        let old_path = dir.join("orders.db");
        let old = SqliteStore::open(&old_path).unwrap();
        let put = |i: u64| Write::Put {
            key: Key::new("ORDER#1", format!("{i:02}")),
            doc: Map::from_iter([("n".to_string(), Value::from(i))]),
            cond: Cond::Always,
        };
        for i in 0..3 {
            old.transact(vec![put(i)]).await.unwrap();
        }
        old.close();
        let db = runtime_db(&dir, None);
        let store = SqliteStore::within(db.clone()).await.unwrap();
        store.transact(vec![put(0)]).await.unwrap();
        assert_eq!(store.adopt(&old_path, None).await.unwrap(), 3);
        assert!(
            !old_path.exists(),
            "the older file is removed once its items are copied"
        );
        let items = store.query("ORDER#1", "").await.unwrap();
        let versions: Vec<u64> = items.iter().map(|i| i.version).collect();
        assert_eq!(
            versions,
            [1, 1, 1],
            "an item already here is kept, not overwritten"
        );
        assert_eq!(items[2].doc["n"], 2);
        assert_eq!(
            store.adopt(&old_path, None).await.unwrap(),
            0,
            "nothing left to adopt"
        );
        store.transact(vec![put(5)]).await.unwrap();
        assert!(db.unsynced(), "a write in another store's database is lazy");
        store.sync().await.unwrap();
        assert!(!db.unsynced(), "and durable once synced");
        store.close();
        let closed = store.transact(vec![put(6)]).await;
        assert!(
            matches!(&closed, Err(StoreError::Unavailable(m)) if m.contains("closed")),
            "{closed:?}"
        );
        assert_eq!(
            db.read(|c| Ok::<i64, groupcommit::Error>(c.query_row(
                "SELECT count(*) FROM items",
                [],
                |r| r.get(0)
            )?))
            .unwrap(),
            4,
            "the owner's database stays open"
        );
        db.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_encrypted_older_file_is_adopted_with_its_key() {
        let dir = fresh_dir("keyed");
        let key = dbkey::DbKey::parse(&"5a".repeat(32), "test").unwrap();
        let old_path = dir.join("orders.db");
        let old = SqliteStore::open_with_key(&old_path, Some(&key)).unwrap();
        let put = Write::Put {
            key: Key::new("ORDER#k", "ORDER"),
            doc: Map::from_iter([("secret".to_string(), Value::from("Zenobia"))]),
            cond: Cond::NotExists,
        };
        old.transact(vec![put]).await.unwrap();
        old.close();
        let db = runtime_db(&dir, Some(&key));
        let store = SqliteStore::within(db.clone()).await.unwrap();
        let refused = store.adopt(&old_path, None).await;
        assert!(
            refused.is_err(),
            "without its key the file is refused: {refused:?}"
        );
        assert!(old_path.exists(), "and kept");
        assert_eq!(store.adopt(&old_path, Some(&key)).await.unwrap(), 1);
        let item = store
            .get(&Key::new("ORDER#k", "ORDER"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.doc["secret"], "Zenobia");
        db.close();
        let bytes = std::fs::read(dir.join("oms.sqlite3")).unwrap();
        assert!(
            !bytes.starts_with(b"SQLite format 3"),
            "the database it moved into is encrypted"
        );
    }
}
