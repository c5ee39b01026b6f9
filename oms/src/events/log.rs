//! The relay's durable log (`events.db` in the data dir): every published event under
//! its global sequence number (what `GET /events` streams), the webhook subscriptions
//! with how far each was delivered, and their dead letters.
//!
//! Recent events are rows of `events`. Older ones are sealed: once more than
//! `KEEP_ROWS + BLOCK` rows are waiting, the oldest `BLOCK` become one row of
//! `event_blocks`, one zstd frame (the events of many orders repeat each other's
//! structure, and a frame over hundreds of them stores each repeated part about once).
//! Reads look in the blocks for what is older than the rows. An event id is checked
//! for duplicates against the rows only: a relay's re-append after a crash repeats its
//! last batch, far fewer than `KEEP_ROWS` events.
//!
//! A SQLite file of its own, not store items: the global sequence is one counter that
//! every event bumps, which only the single relay writes, so it belongs beside the
//! relay and not in the order store (where it would be a write hot spot on DynamoDB).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

pub struct EventLog {
    conn: Mutex<Connection>,
}

/// An event as published: its global sequence, its id and type, its CloudEvent text.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub types: Vec<String>,
    #[serde(skip_serializing)]
    pub secret: String,
    /// The global sequence of the last event delivered or dead-lettered.
    pub delivered_through: u64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub seq: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub attempts: u32,
    pub last_error: String,
    pub at: String,
    /// Asked to be delivered again (POST .../dead-letters/replay) and not yet tried.
    pub replaying: bool,
}

fn err(e: rusqlite::Error) -> String {
    format!("events.db: {e}")
}

impl EventLog {
    pub fn open(path: &Path, key: Option<&dbkey::DbKey>) -> Result<EventLog, String> {
        let conn = Connection::open(path).map_err(err)?;
        dbkey::unlock(&conn, path, key)?;
        Self::init(conn)
    }

    #[cfg(test)]
    pub fn in_memory() -> Result<EventLog, String> {
        Self::init(Connection::open_in_memory().map_err(err)?)
    }

    fn init(conn: Connection) -> Result<EventLog, String> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 type TEXT NOT NULL,
                 body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS event_blocks (
                 first_seq INTEGER PRIMARY KEY,
                 last_seq INTEGER NOT NULL,
                 data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS subscriptions (
                 id TEXT PRIMARY KEY,
                 url TEXT NOT NULL,
                 types TEXT NOT NULL,
                 secret TEXT NOT NULL,
                 delivered_through INTEGER NOT NULL,
                 created_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS dead_letters (
                 subscription TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 attempts INTEGER NOT NULL,
                 last_error TEXT NOT NULL,
                 at TEXT NOT NULL,
                 replaying INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (subscription, seq));",
        )
        .map_err(err)?;
        Ok(EventLog {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is one
        // statement or transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `events` (CloudEvents) in order, in one transaction; an event whose id
    /// is already logged (the relay died between logging and deleting its outbox item)
    /// is skipped, so the log holds each event once. Answers how many were new.
    pub fn append(&self, events: &[Value]) -> Result<usize, String> {
        let conn = self.conn();
        // Cached statements, not rusqlite's `transaction()`: it parses BEGIN and COMMIT
        // anew each time, and the relay appends several times an order.
        execute_cached(&conn, "BEGIN IMMEDIATE")?;
        let result = insert_new(&conn, events).and_then(|added| {
            if added > 0 {
                seal(&conn)?;
            }
            execute_cached(&conn, "COMMIT")?;
            Ok(added)
        });
        if result.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// At most `limit` events after global sequence `after`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Logged>, String> {
        let conn = self.conn();
        if let Some(block) = block_after(&conn, after)? {
            let page: Vec<Logged> = block
                .into_iter()
                .filter(|e| e.seq > after)
                .take(limit)
                .collect();
            if !page.is_empty() {
                return Ok(page);
            }
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, id, type, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![after as i64, limit as i64], logged)
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    pub fn get(&self, seq: u64) -> Result<Option<Logged>, String> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT seq, id, type, body FROM events WHERE seq = ?1",
                params![seq as i64],
                logged,
            )
            .optional()
            .map_err(err)?;
        if row.is_some() {
            return Ok(row);
        }
        let block = block_after(&conn, seq.saturating_sub(1))?;
        Ok(block.into_iter().flatten().find(|e| e.seq == seq))
    }

    /// The last global sequence handed out (0 before the first event): AUTOINCREMENT's
    /// counter, which sealing (rows deleted into blocks) leaves as it is.
    pub fn last_seq(&self) -> Result<u64, String> {
        self.conn()
            .prepare_cached(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
            )
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(err)
    }

    /// A new subscription, delivered events from the next one published on.
    pub fn subscribe(&self, url: &str, types: &[String]) -> Result<Subscription, String> {
        let sub = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            url: url.to_string(),
            types: types.to_vec(),
            secret: secret(),
            delivered_through: self.last_seq()?,
            created_at: activities::ledger::now(),
        };
        self.conn()
            .execute(
                "INSERT INTO subscriptions VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    sub.id,
                    sub.url,
                    serde_json::to_string(&sub.types).unwrap_or_default(),
                    sub.secret,
                    sub.delivered_through as i64,
                    sub.created_at
                ],
            )
            .map_err(err)?;
        Ok(sub)
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT * FROM subscriptions ORDER BY created_at, id")
            .map_err(err)?;
        let rows = stmt.query_map([], subscription).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>, String> {
        self.conn()
            .query_row(
                "SELECT * FROM subscriptions WHERE id = ?1",
                params![id],
                subscription,
            )
            .optional()
            .map_err(err)
    }

    /// Removes a subscription and its dead letters; false if there was none.
    pub fn unsubscribe(&self, id: &str) -> Result<bool, String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err)?;
        let n = tx
            .execute("DELETE FROM subscriptions WHERE id = ?1", params![id])
            .map_err(err)?;
        tx.execute(
            "DELETE FROM dead_letters WHERE subscription = ?1",
            params![id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n > 0)
    }

    /// Records that the subscription is done with every event through `seq`.
    pub fn delivered_through(&self, id: &str, seq: u64) -> Result<(), String> {
        self.conn()
            .execute(
                "UPDATE subscriptions SET delivered_through = ?2
                 WHERE id = ?1 AND delivered_through < ?2",
                params![id, seq as i64],
            )
            .map(|_| ())
            .map_err(err)
    }

    /// Gives up on event `seq` for the subscription (kept to inspect and replay).
    pub fn dead_letter(
        &self,
        id: &str,
        seq: u64,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), String> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![
                    id,
                    seq as i64,
                    attempts,
                    last_error,
                    activities::ledger::now()
                ],
            )
            .map(|_| ())
            .map_err(err)
    }

    pub fn dead_letters(&self, id: &str) -> Result<Vec<DeadLetter>, String> {
        let letters: Vec<DeadLetter> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, attempts, last_error, at, replaying FROM dead_letters
                     WHERE subscription = ?1 ORDER BY seq",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok(DeadLetter {
                        seq: r.get::<_, i64>(0)? as u64,
                        event_id: String::new(),
                        kind: String::new(),
                        attempts: r.get(1)?,
                        last_error: r.get(2)?,
                        at: r.get(3)?,
                        replaying: r.get(4)?,
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        // The event's id and type, from its row or its sealed block.
        letters
            .into_iter()
            .filter_map(|mut d| match self.get(d.seq) {
                Ok(Some(e)) => {
                    d.event_id = e.id;
                    d.kind = e.kind;
                    Some(Ok(d))
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    /// Marks every dead letter of the subscription to be delivered again; answers how
    /// many.
    pub fn replay(&self, id: &str) -> Result<usize, String> {
        self.conn()
            .execute(
                "UPDATE dead_letters SET replaying = 1 WHERE subscription = ?1",
                params![id],
            )
            .map_err(err)
    }

    /// The dead letters waiting to be replayed, oldest first.
    pub fn replaying(&self, id: &str) -> Result<Vec<u64>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq FROM dead_letters WHERE subscription = ?1 AND replaying = 1
                 ORDER BY seq",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![id], |r| r.get::<_, i64>(0).map(|n| n as u64))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// A replayed dead letter was delivered: it is no longer dead.
    pub fn revived(&self, id: &str, seq: u64) -> Result<(), String> {
        self.conn()
            .execute(
                "DELETE FROM dead_letters WHERE subscription = ?1 AND seq = ?2",
                params![id, seq as i64],
            )
            .map(|_| ())
            .map_err(err)
    }
}

/// Rows kept unsealed: the newest events, read most, and where duplicates are caught.
const KEEP_ROWS: i64 = 1024;
/// Events per sealed block: a few hundred orders' events, about 100 KB before
/// compression; reading one event of a block decompresses the block.
const BLOCK: i64 = 512;
/// The first byte of a block: its encoding (below). Another is refused, never guessed.
const BLOCK_FORMAT: u8 = 1;

fn execute_cached(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(err)
}

/// Inserts the events not logged yet; answers how many were new.
fn insert_new(conn: &Connection, events: &[Value]) -> Result<usize, String> {
    let mut added = 0;
    for e in events {
        let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
        let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() || kind.is_empty() {
            return Err(format!("an outbox event without id or type: {e}"));
        }
        added += conn
            .prepare_cached(
                // Not INSERT OR IGNORE: an ignored row would still use up a
                // sequence number, and the stream's numbers have no gaps.
                "INSERT INTO events (id, type, body) SELECT ?1, ?2, ?3
                 WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = ?1)",
            )
            .and_then(|mut st| st.execute(params![id, kind, e.to_string()]))
            .map_err(err)?;
    }
    Ok(added)
}

/// Seals the oldest `BLOCK` rows into a block while more than `KEEP_ROWS + BLOCK` wait.
/// Rows are a run of sequences without gaps (sealing takes the oldest), so their count
/// is max - min + 1 and costs two index lookups.
fn seal(conn: &Connection) -> Result<(), String> {
    loop {
        // Two subqueries, not `SELECT MIN(seq), MAX(seq)`: SQLite answers a lone MIN or
        // MAX from the key's end, but both in one SELECT scan the table (which made
        // sealing 6% of an order's CPU at concurrency 1, every append scanning up to
        // 1,536 rows).
        let (min, max): (Option<i64>, Option<i64>) = conn
            .prepare_cached("SELECT (SELECT MIN(seq) FROM events), (SELECT MAX(seq) FROM events)")
            .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(err)?;
        let (Some(min), Some(max)) = (min, max) else {
            return Ok(());
        };
        if max - min + 1 < KEEP_ROWS + BLOCK {
            return Ok(());
        }
        let last = min + BLOCK - 1;
        let events: Vec<Logged> = {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, id, type, body FROM events WHERE seq <= ?1 ORDER BY seq",
                )
                .map_err(err)?;
            let rows = stmt.query_map([last], logged).map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        let first = events.first().map_or(min, |e| e.seq as i64);
        conn.execute(
            "INSERT INTO event_blocks (first_seq, last_seq, data) VALUES (?1, ?2, ?3)",
            params![first, last, encode_block(&events)?],
        )
        .map_err(err)?;
        conn.execute("DELETE FROM events WHERE seq <= ?1", [last])
            .map_err(err)?;
    }
}

/// The sealed block holding the first event after `after`, decoded; None if that event
/// is not sealed.
fn block_after(conn: &Connection, after: u64) -> Result<Option<Vec<Logged>>, String> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM event_blocks WHERE last_seq > ?1 AND first_seq <= ?1 + 1")
        .map_err(err)?
        .query_row([after as i64], |r| r.get(0))
        .optional()
        .map_err(err)?;
    data.map(|d| decode_block(&d)).transpose()
}

/// Per event: seq, then id, type and body each as length and UTF-8 (lengths and seq as
/// LEB128 varints); the whole compressed as one zstd frame after `BLOCK_FORMAT`.
fn encode_block(events: &[Logged]) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    for e in events {
        saga_core::varint::put(&mut raw, e.seq);
        for text in [&e.id, &e.kind, &e.body] {
            saga_core::varint::put(&mut raw, text.len() as u64);
            raw.extend_from_slice(text.as_bytes());
        }
    }
    let mut out = vec![BLOCK_FORMAT];
    out.extend(zstd::bulk::compress(&raw, 3).map_err(|e| format!("events.db: {e}"))?);
    Ok(out)
}

fn decode_block(data: &[u8]) -> Result<Vec<Logged>, String> {
    let bad = |why: &str| format!("events.db: a sealed block is unreadable: {why}");
    match data.split_first() {
        Some((&BLOCK_FORMAT, frame)) => {
            let raw = zstd::decode_all(frame).map_err(|e| bad(&e.to_string()))?;
            let mut at = 0;
            let mut events = Vec::new();
            while at < raw.len() {
                let seq = saga_core::varint::read(&raw, &mut at).ok_or_else(|| bad("truncated"))?;
                let mut text = || -> Result<String, String> {
                    let n = saga_core::varint::read(&raw, &mut at)
                        .ok_or_else(|| bad("truncated"))? as usize;
                    let end = at.checked_add(n).ok_or_else(|| bad("truncated"))?;
                    let bytes = raw.get(at..end).ok_or_else(|| bad("truncated"))?;
                    at = end;
                    String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8"))
                };
                let (id, kind, body) = (text()?, text()?, text()?);
                events.push(Logged {
                    seq,
                    id,
                    kind,
                    body,
                });
            }
            Ok(events)
        }
        Some((format, _)) => Err(bad(&format!(
            "format {format} (this oms reads {BLOCK_FORMAT}: a newer oms wrote it?)"
        ))),
        None => Err(bad("empty")),
    }
}

fn logged(r: &rusqlite::Row<'_>) -> rusqlite::Result<Logged> {
    Ok(Logged {
        seq: r.get::<_, i64>(0)? as u64,
        id: r.get(1)?,
        kind: r.get(2)?,
        body: r.get(3)?,
    })
}

fn subscription(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    let types: String = r.get(2)?;
    Ok(Subscription {
        id: r.get(0)?,
        url: r.get(1)?,
        types: serde_json::from_str(&types).unwrap_or_default(),
        secret: r.get(3)?,
        delivered_through: r.get::<_, i64>(4)? as u64,
        created_at: r.get(5)?,
    })
}

/// A signing secret: 244 random bits from the OS (two v4 UUIDs), in hex.
fn secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(i: u64) -> Value {
        json!({"id": format!("ev-{i}"), "type": "order.placed",
               "data": {"order_id": format!("o-{i}"), "lines": [{"sku": "A", "qty": i % 7}]}})
    }

    #[test]
    fn sealed_events_read_back_exactly_as_logged() {
        let log = EventLog::in_memory().unwrap();
        let total = (KEEP_ROWS + 3 * BLOCK + 17) as u64;
        for batch in (1..=total).collect::<Vec<_>>().chunks(100) {
            let events: Vec<Value> = batch.iter().map(|i| event(*i)).collect();
            assert_eq!(log.append(&events).unwrap(), batch.len());
        }
        let blocks: i64 = log
            .conn()
            .query_row("SELECT count(*) FROM event_blocks", [], |r| r.get(0))
            .unwrap();
        assert!(blocks >= 3, "{blocks} blocks");
        assert_eq!(log.last_seq().unwrap(), total);
        // Page through from every kind of start: before, inside and across blocks.
        for start in [0, 1, BLOCK as u64 - 1, BLOCK as u64, total - 5, total] {
            let mut seen = Vec::new();
            let mut after = start;
            loop {
                let page = log.after(after, 300).unwrap();
                let Some(last) = page.last() else { break };
                after = last.seq;
                seen.extend(page);
            }
            let want: Vec<u64> = (start + 1..=total).collect();
            assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
            for e in &seen {
                assert_eq!(e.body, event(e.seq).to_string());
                assert_eq!(
                    (e.id.as_str(), e.kind.as_str()),
                    (&*format!("ev-{}", e.seq), "order.placed")
                );
            }
        }
        assert_eq!(log.get(3).unwrap().unwrap().body, event(3).to_string());
        assert_eq!(log.get(total).unwrap().unwrap().id, format!("ev-{total}"));
        assert_eq!(log.get(total + 1).unwrap(), None);
        // A recent event logged again (a relay's retry) is still skipped.
        assert_eq!(log.append(&[event(total)]).unwrap(), 0);
        assert_eq!(log.last_seq().unwrap(), total);
    }

    #[test]
    fn a_batch_with_a_bad_event_adds_nothing_and_the_log_goes_on() {
        let log = EventLog::in_memory().unwrap();
        assert_eq!(log.append(&[event(1)]).unwrap(), 1);
        let err = log
            .append(&[event(2), json!({"type": "order.placed"})])
            .unwrap_err();
        assert!(err.contains("without id"), "{err}");
        assert_eq!(
            log.last_seq().unwrap(),
            1,
            "the good event of that batch was rolled back with it"
        );
        assert_eq!(
            log.append(&[event(2), event(1)]).unwrap(),
            1,
            "a logged id is skipped"
        );
        assert_eq!(log.last_seq().unwrap(), 2);
    }

    #[test]
    fn a_block_of_an_unknown_format_is_an_error() {
        let block = encode_block(&[Logged {
            seq: 1,
            id: "a".into(),
            kind: "t".into(),
            body: "{}".into(),
        }])
        .unwrap();
        assert_eq!(decode_block(&block).unwrap()[0].body, "{}");
        let mut newer = block;
        newer[0] = 9;
        assert!(decode_block(&newer).unwrap_err().contains("format 9"));
    }
}
