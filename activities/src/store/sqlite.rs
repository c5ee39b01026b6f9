//! The embedded backend: one SQLite table of items, each batch one IMMEDIATE
//! transaction. The write lock is taken before any condition is read, so a condition
//! checked is a condition that holds when the batch commits, across processes too (a
//! Lambda under `cargo lambda watch` and `oms up` may share the file).

use super::{check_batch, Cond, Item, Key, Store, StoreError, Write};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
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
        Self::init(conn)
    }

    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(unavailable)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
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
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task: {e}")))?
    }
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

fn read(conn: &Connection, key: &Key) -> Result<Option<Stored>, StoreError> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT version, doc FROM items WHERE pk = ?1 AND sk = ?2",
            params![key.pk, key.sk],
            |r| Ok((r.get(0)?, stored_doc(r, 1)?)),
        )
        .optional()
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

fn apply(conn: &Connection, index: usize, w: &Write) -> Result<(), StoreError> {
    let failed = || StoreError::ConditionFailed {
        index,
        key: w.key().clone(),
    };
    let key = w.key();
    let current = read(conn, key)?;
    let version = current.as_ref().map(|(v, _)| *v);
    let put = |version: u64, doc: &Map<String, Value>| {
        conn.execute(
            "INSERT INTO items (pk, sk, version, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pk, sk) DO UPDATE SET version = excluded.version, doc = excluded.doc",
            params![
                key.pk,
                key.sk,
                version as i64,
                doc_codec::encode(Value::Object(doc.clone()).to_string())?
            ],
        )
        .map_err(unavailable)
    };
    match w {
        Write::Put { doc, cond, .. } => {
            if !holds(*cond, version) {
                return Err(failed());
            }
            let next = match cond {
                Cond::Version(v) => v + 1,
                _ => 1,
            };
            put(next, doc)?;
        }
        Write::Add {
            deltas, min_after, ..
        } => {
            let Some((v, mut doc)) = current else {
                return Err(failed());
            };
            for (field, delta) in deltas {
                let now = doc.get(field).and_then(Value::as_i64).unwrap_or(0);
                doc.insert(field.clone(), Value::from(now + delta));
            }
            for (field, min) in min_after {
                if doc.get(field).and_then(Value::as_i64).unwrap_or(0) < *min {
                    return Err(failed());
                }
            }
            put(v + 1, &doc)?;
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
            conn.execute(
                "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                params![key.pk, key.sk],
            )
            .map_err(unavailable)?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.with_conn(move |conn| {
            Ok(read(conn, &key)?.map(|(version, doc)| Item { key, version, doc }))
        })
        .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let (pk, prefix) = (pk.to_string(), sk_prefix.to_string());
        self.with_conn(move |conn| {
            select(
                conn,
                "SELECT pk, sk, version, doc FROM items
                 WHERE pk = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk",
                params![pk, prefix],
            )
        })
        .await
    }

    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let (pk, before) = (pk.to_string(), before.map(str::to_string));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            select(
                conn,
                "SELECT pk, sk, version, doc FROM items
                 WHERE pk = ?1 AND (?2 IS NULL OR sk < ?2) ORDER BY sk DESC LIMIT ?3",
                params![pk, before, limit],
            )
        })
        .await
    }

    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let prefix = pk_prefix.to_string();
        // A range of the primary key, not a filter over every row: the event relay
        // scans its (usually empty) outbox prefix several times a second.
        let end = prefix_end(&prefix);
        self.with_conn(move |conn| {
            select(
                conn,
                "SELECT pk, sk, version, doc FROM items
                 WHERE pk >= ?1 AND (?2 IS NULL OR pk < ?2)
                   AND substr(pk, 1, length(?1)) = ?1 ORDER BY pk, sk",
                params![prefix, end],
            )
        })
        .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        check_batch(&writes)?;
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            for (i, w) in writes.iter().enumerate() {
                apply(&tx, i, w)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
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
