//! The embedded backend: one SQLite table of items, written with group commit.
//!
//! One writer thread owns the write connection. Each `transact` is a job; the writer
//! runs every job waiting at that moment inside one IMMEDIATE transaction, each in its
//! own savepoint (a batch whose condition fails is rolled back alone), commits once
//! with `synchronous=FULL` and only then answers each caller. Concurrent orders' steps
//! therefore share one fsync, where each used to pay its own (issue 16: the order
//! ledger's fsyncs, not CPU, capped `oms up` near 100 orders/s).
//!
//! The write lock is taken before any condition is read, so a condition checked is a
//! condition that holds when the batch commits, across processes too (a Lambda under
//! `cargo lambda watch` and `oms up` may share the file). Reads run on the caller's
//! thread on pooled read-only connections, beside the writer (WAL): a point read is a
//! few microseconds, less than a hand-off to a blocking pool would cost.

use super::{check_batch, Cond, Item, Key, Store, StoreError, Write};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

/// Most batches one transaction takes: bounds the latency a large backlog adds.
const MAX_GROUP: usize = 512;

pub struct SqliteStore {
    /// None once closed: a write then fails as Unavailable instead of queueing.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reads: Reads,
}

/// Where reads run: a file has its own read connections; an in-memory database has
/// only the writer's, shared under a lock.
enum Reads {
    File {
        path: PathBuf,
        key: Option<dbkey::DbKey>,
        pool: Mutex<Vec<Connection>>,
    },
    Shared(Arc<Mutex<Connection>>),
}

/// A batch for the writer, and where its outcome goes once committed (or not).
struct Job {
    writes: Vec<Write>,
    /// Each Put's document as stored (`doc_codec`), encoded by the caller: the writer's
    /// time is every caller's, and a Put's document does not depend on what is stored.
    encoded: Vec<Option<rusqlite::types::Value>>,
    reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
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
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("open {}: {e}", path.display())))?;
        dbkey::unlock(&conn, path, key).map_err(StoreError::Unavailable)?;
        let reads = Reads::File {
            path: path.to_path_buf(),
            key: key.cloned(),
            pool: Mutex::new(Vec::new()),
        };
        Self::init(conn, |_| reads)
    }

    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(unavailable)?;
        Self::init(conn, |shared| Reads::Shared(shared.clone()))
    }

    fn init(
        conn: Connection,
        reads: impl FnOnce(&Arc<Mutex<Connection>>) -> Reads,
    ) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(unavailable)?;
        tune(&conn)?;
        conn.execute_batch(
            // auto_vacuum first: SQLite takes it only before WAL mode and the table
            // (an older orders.db keeps its mode). See `close`.
            "PRAGMA auto_vacuum=INCREMENTAL;
             PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA temp_store=MEMORY;
             CREATE TABLE IF NOT EXISTS items (
                 pk TEXT NOT NULL,
                 sk TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 -- JSON text, or a BLOB of it compressed (doc_codec)
                 doc NOT NULL,
                 PRIMARY KEY (pk, sk)
             ) WITHOUT ROWID;",
        )
        .map_err(unavailable)?;
        let conn = Arc::new(Mutex::new(conn));
        let reads = reads(&conn);
        let (tx, rx) = mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("oms-orders-writer".into())
            .spawn(move || {
                writer_loop(&conn, &rx);
                if let Ok(conn) = lock(&conn) {
                    finish(&conn);
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store writer: {e}")))?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reads,
        })
    }

    /// Stops the writer once the batches already queued are committed, gives the free
    /// pages back and checkpoints the WAL into the database: a clean stop leaves one
    /// file, no larger than its data. Outbox items deleted by the relay free pages that
    /// later writes reuse while the server runs; only a stop returns them. Later writes
    /// fail (Unavailable); reads still work.
    pub fn close(&self) {
        if let Ok(mut jobs) = lock(&self.jobs) {
            jobs.take();
        }
        let writer = lock(&self.writer).ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Runs `f` on a read connection: a pooled one of the file's, or the in-memory
    /// database's only one.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.reads {
            Reads::Shared(conn) => f(&*lock(conn)?),
            Reads::File { path, key, pool } => {
                let pooled = lock(pool)?.pop();
                let conn = match pooled {
                    Some(c) => c,
                    None => open_reader(path, key.as_ref())?,
                };
                let result = f(&conn);
                lock(pool)?.push(conn);
                result
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::Unavailable("store lock poisoned".into()))
}

fn open_reader(path: &Path, key: Option<&dbkey::DbKey>) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(unavailable)?;
    dbkey::unlock(&conn, path, key).map_err(StoreError::Unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The writer's page cache bigger than SQLite's 2 MB (its own writes do not empty it,
/// as another connection's empty a reader's), and room for every statement it runs.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "cache_size", -16 * 1024)
        .map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The writer: takes every job waiting, applies each in its own savepoint inside one
/// transaction, commits once, then answers each. Ends when the store is dropped.
fn writer_loop(conn: &Mutex<Connection>, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcomes = match lock(conn) {
            Ok(conn) => commit_group(&conn, &group),
            Err(e) => vec![Err(e); group.len()],
        };
        for (job, outcome) in group.into_iter().zip(outcomes) {
            // A caller that stopped waiting (its task was dropped) needs no answer.
            let _ = job.reply.send(outcome);
        }
    }
}

/// After the last job: the free pages returned (each step of the pragma frees some;
/// stepped to its end it frees them all), then the WAL copied in and truncated.
fn finish(conn: &Connection) {
    if let Ok(mut st) = conn.prepare("PRAGMA incremental_vacuum") {
        if let Ok(mut rows) = st.query([]) {
            while let Ok(Some(_)) = rows.next() {}
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// One transaction for the group: each job's outcome, all failed if the commit fails.
fn commit_group(conn: &Connection, group: &[Job]) -> Vec<Result<(), StoreError>> {
    if let Err(e) = execute(conn, "BEGIN IMMEDIATE") {
        return vec![Err(e); group.len()];
    }
    let applied: Vec<Result<(), StoreError>> = group
        .iter()
        .map(|job| apply_in_savepoint(conn, job))
        .collect();
    match execute(conn, "COMMIT") {
        Ok(()) => applied,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            vec![Err(e); group.len()]
        }
    }
}

fn execute(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(unavailable)
}

/// A batch all or nothing within the group's transaction.
fn apply_in_savepoint(conn: &Connection, job: &Job) -> Result<(), StoreError> {
    debug_assert_eq!(job.writes.len(), job.encoded.len());
    execute(conn, "SAVEPOINT batch")?;
    let result = job
        .writes
        .iter()
        .zip(&job.encoded)
        .enumerate()
        .try_for_each(|(i, (w, encoded))| apply(conn, i, w, encoded.as_ref()));
    if result.is_err() {
        execute(conn, "ROLLBACK TO batch")?;
    }
    execute(conn, "RELEASE batch")?;
    result
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
    /// zstd's level: 3 (its default); higher levels gained nothing on documents this small.
    const LEVEL: i32 = 3;

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
        doc,
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
) -> Result<(), StoreError> {
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
            put(v + 1, &doc_codec::encode(Value::Object(doc).to_string())?)?;
        }
        Write::Check { cond, .. } => {
            if !holds(*cond, version) {
                return Err(failed());
            }
        }
        Write::Delete { cond, .. } => {
            if !holds(*cond, version) {
                return Err(failed());
            }
            conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
                .and_then(|mut s| s.execute(params![key.pk, key.sk]))
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let found = self.read(|conn| read(conn, key))?;
        Ok(found.map(|(version, doc)| Item {
            key: key.clone(),
            version,
            doc,
        }))
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.read(|conn| {
            select(
                conn,
                "SELECT pk, sk, version, doc FROM items
                 WHERE pk = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk",
                params![pk, sk_prefix],
            )
        })
    }

    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            select(
                conn,
                "SELECT pk, sk, version, doc FROM items
                 WHERE pk = ?1 AND (?2 IS NULL OR sk < ?2) ORDER BY sk DESC LIMIT ?3",
                params![pk, before, limit],
            )
        })
    }

    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        // A range of the primary key, not a filter over every row: the event relay
        // scans its (usually empty) outbox prefix several times a second.
        let end = prefix_end(pk_prefix);
        self.read(|conn| {
            select(
                conn,
                "SELECT pk, sk, version, doc FROM items
                 WHERE pk >= ?1 AND (?2 IS NULL OR pk < ?2)
                   AND substr(pk, 1, length(?1)) = ?1 ORDER BY pk, sk",
                params![pk_prefix, end],
            )
        })
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        check_batch(&writes)?;
        let encoded = writes
            .iter()
            .map(|w| match w {
                Write::Put { doc, .. } => {
                    doc_codec::encode(serde_json::to_string(doc).map_err(|e| {
                        StoreError::Unavailable(format!("cannot encode {}: {e}", w.key()))
                    })?)
                    .map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        lock(&self.jobs)?
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?
            .send(Job {
                writes,
                encoded,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
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

    #[tokio::test]
    async fn a_closed_store_gives_its_free_pages_back_and_refuses_writes() {
        let dir = std::env::temp_dir().join(format!("oms-orders-close-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
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
}
