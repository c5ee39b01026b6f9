//! The relay's durable log: every published event under its global sequence number
//! (what `GET /events` streams), the webhook subscriptions with how far each was
//! delivered, and their dead letters.
//!
//! Tables of the runtime's database (`oms.sqlite3`), written through its group commit
//! (issue 16): an append is then a job in the commit the runtime's steps share, not a
//! commit and an fsync of a file of its own. When the outbox the relay reads is in the
//! same database, an append need not be fsynced at all: one WAL keeps a prefix of its
//! commits, so an append that survives a crash survives with the outbox items it came
//! from. Whoever tells the world of a logged event (the `/events` stream, a webhook)
//! calls [`EventLog::sync`] first, as every answer of the API does. An outbox in
//! another store (DynamoDB) is emptied only after a durable append.
//!
//! Recent events are rows of `event_log`. Older ones are sealed: once more than
//! `KEEP_ROWS + BLOCK` rows are waiting, the oldest `BLOCK` become one row of
//! `event_log_blocks`, one zstd frame (the events of many orders repeat each other's
//! structure, and a frame over hundreds of them stores each repeated part about once).
//! Reads look in the blocks for what is older than the rows. An event id is checked
//! for duplicates against the rows only: a relay's re-append after a crash repeats its
//! last batch, far fewer than `KEEP_ROWS` events.
//!
//! Not order store items: the global sequence is one counter that every event bumps,
//! which only the single relay writes, so it belongs beside the relay and not in the
//! order store (where it would be a write hot spot on DynamoDB).

use groupcommit::Db;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// The file an older oms kept the log in; `oms up` moves it into the runtime's database.
pub const OLDER_DATA_DIR_FILE: &str = "events.db";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS event_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS event_log_blocks (
        first_seq INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        data BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS event_subscriptions (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        types TEXT NOT NULL,
        secret TEXT NOT NULL,
        delivered_through INTEGER NOT NULL,
        created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS event_dead_letters (
        subscription TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        at TEXT NOT NULL,
        replaying INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (subscription, seq));";

/// The tables of an older `events.db`, each with the table it moves into.
const OLDER_TABLES: [(&str, &str); 4] = [
    ("events", "event_log"),
    ("event_blocks", "event_log_blocks"),
    ("subscriptions", "event_subscriptions"),
    ("dead_letters", "event_dead_letters"),
];

pub struct EventLog {
    db: Db,
    /// The last sequence known to be on disk: what [`EventLog::sync_through`] need not
    /// wait for.
    durable_through: AtomicU64,
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

/// What an append did: how many events were new, and the log's last sequence after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub added: usize,
    pub last_seq: u64,
}

/// Why the log could not be read or written, in words for an operator.
#[derive(Debug)]
struct Failed(String);

impl From<groupcommit::Error> for Failed {
    fn from(e: groupcommit::Error) -> Self {
        Failed(format!("event log: {e}"))
    }
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        Failed(format!("event log: {e}"))
    }
}

fn text(e: Failed) -> String {
    e.0
}

impl EventLog {
    /// The log in `db` (the runtime's database), its tables created if need be.
    pub async fn within(db: Db) -> Result<EventLog, String> {
        // Durable: everything logged before this start is on disk once it answers.
        let last = db
            .write(true, |c| {
                c.execute_batch(SCHEMA)?;
                last_seq(c)
            })
            .await
            .map_err(text)?;
        Ok(EventLog {
            db,
            durable_through: AtomicU64::new(last),
        })
    }

    #[cfg(test)]
    pub async fn in_memory() -> Result<EventLog, String> {
        let db = Db::in_memory(&groupcommit::Options::default(), |c| {
            c.execute_batch(SCHEMA).map_err(Failed::from)
        })
        .map_err(text)?;
        Ok(EventLog {
            db,
            durable_through: AtomicU64::new(0),
        })
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Failed>) -> Result<R, String> {
        self.db.read(f).map_err(text)
    }

    async fn write<R: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> Result<R, Failed> + Send + 'static,
    ) -> Result<R, String> {
        self.db.write(durable, f).await.map_err(text)
    }

    /// Returns once the events through sequence `seq` are on disk: before an event
    /// read from the log is told to anyone. At once when they are known to be (an
    /// append made durable, or an earlier sync), else with one fsync shared with
    /// whoever else asks.
    pub async fn sync_through(&self, seq: u64) -> Result<(), String> {
        if self.durable_through.load(SeqCst) >= seq {
            return Ok(());
        }
        self.db
            .sync()
            .await
            .map_err(|e| format!("event log: {e}"))?;
        self.durable_through.fetch_max(seq, SeqCst);
        Ok(())
    }

    /// [`EventLog::append_with`] with nothing after it; answers how many were new.
    #[cfg(test)]
    pub async fn append(&self, events: Vec<Value>, durable: bool) -> Result<usize, String> {
        let appended = self.append_with(events, durable, |_| Ok(())).await?;
        Ok(appended.added)
    }

    /// Appends `events` (CloudEvents) in order, in one transaction; an event whose id
    /// is already logged (the relay died between logging and deleting its outbox item)
    /// is skipped, so the log holds each event once. Then runs `then` in the same
    /// transaction (all or nothing): for a relay whose outbox is in this database, its
    /// deletes. Fsynced before it answers if `durable` (see the module's comment for
    /// when it need not be). Answers how many were new and the last sequence, read in
    /// the write: the relay tells the streams it without a read of its own.
    pub async fn append_with(
        &self,
        events: Vec<Value>,
        durable: bool,
        then: impl FnOnce(&Connection) -> Result<(), String> + Send + 'static,
    ) -> Result<Appended, String> {
        // Serialised here, not in the job: the writer thread is shared by every store
        // of the database, and is what limits a loaded server.
        let events = to_rows(&events)?;
        let (added, last) = self
            .write(durable, move |c| {
                let added = insert_new(c, &events)?;
                if added > 0 {
                    seal(c)?;
                }
                then(c).map_err(Failed)?;
                Ok((added, last_seq(c)?))
            })
            .await?;
        if durable {
            self.durable_through.fetch_max(last, SeqCst);
        }
        Ok(Appended {
            added,
            last_seq: last,
        })
    }

    /// At most `limit` events after global sequence `after`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Logged>, String> {
        self.read(|c| {
            if let Some(block) = block_after(c, after)? {
                let page: Vec<Logged> = block
                    .into_iter()
                    .filter(|e| e.seq > after)
                    .take(limit)
                    .collect();
                if !page.is_empty() {
                    return Ok(page);
                }
            }
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, type, body FROM event_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after as i64, limit as i64], logged)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub fn get(&self, seq: u64) -> Result<Option<Logged>, String> {
        self.read(|c| {
            let row = c
                .prepare_cached("SELECT seq, id, type, body FROM event_log WHERE seq = ?1")?
                .query_row(params![seq as i64], logged)
                .optional()?;
            if row.is_some() {
                return Ok(row);
            }
            let block = block_after(c, seq.saturating_sub(1))?;
            Ok(block.into_iter().flatten().find(|e| e.seq == seq))
        })
    }

    /// The last global sequence handed out (0 before the first event): AUTOINCREMENT's
    /// counter, which sealing (rows deleted into blocks) leaves as it is.
    pub fn last_seq(&self) -> Result<u64, String> {
        self.read(last_seq)
    }

    /// A new subscription, delivered events from the next one published on.
    pub async fn subscribe(&self, url: &str, types: &[String]) -> Result<Subscription, String> {
        let (url, types) = (url.to_string(), types.to_vec());
        self.write(false, move |c| {
            let sub = Subscription {
                id: uuid::Uuid::new_v4().to_string(),
                url,
                types,
                secret: secret(),
                // Read in the write, so no event logged meanwhile is skipped.
                delivered_through: last_seq(c)?,
                created_at: activities::ledger::now(),
            };
            c.prepare_cached("INSERT INTO event_subscriptions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                .execute(params![
                    sub.id,
                    sub.url,
                    serde_json::to_string(&sub.types).unwrap_or_default(),
                    sub.secret,
                    sub.delivered_through as i64,
                    sub.created_at
                ])?;
            Ok(sub)
        })
        .await
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, String> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT * FROM event_subscriptions ORDER BY created_at, id")?;
            let rows = stmt.query_map([], subscription)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>, String> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT * FROM event_subscriptions WHERE id = ?1")?
                    .query_row(params![id], subscription)
                    .optional()?,
            )
        })
    }

    /// Removes a subscription and its dead letters; false if there was none.
    pub async fn unsubscribe(&self, id: &str) -> Result<bool, String> {
        let id = id.to_string();
        self.write(false, move |c| {
            let n = c
                .prepare_cached("DELETE FROM event_subscriptions WHERE id = ?1")?
                .execute(params![id])?;
            c.prepare_cached("DELETE FROM event_dead_letters WHERE subscription = ?1")?
                .execute(params![id])?;
            Ok(n > 0)
        })
        .await
    }

    /// Records that the subscription is done with every event through `seq`. Lazy: a
    /// crash that loses it delivers those events again (webhooks are at least once).
    pub async fn delivered_through(&self, id: &str, seq: u64) -> Result<(), String> {
        let id = id.to_string();
        self.write(false, move |c| {
            c.prepare_cached(
                "UPDATE event_subscriptions SET delivered_through = ?2
                 WHERE id = ?1 AND delivered_through < ?2",
            )?
            .execute(params![id, seq as i64])?;
            Ok(())
        })
        .await
    }

    /// Gives up on event `seq` for the subscription (kept to inspect and replay).
    pub async fn dead_letter(
        &self,
        id: &str,
        seq: u64,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), String> {
        let (id, last_error) = (id.to_string(), last_error.to_string());
        self.write(false, move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO event_dead_letters VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )?
            .execute(params![
                id,
                seq as i64,
                attempts,
                last_error,
                activities::ledger::now()
            ])?;
            Ok(())
        })
        .await
    }

    pub fn dead_letters(&self, id: &str) -> Result<Vec<DeadLetter>, String> {
        let letters: Vec<DeadLetter> = self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, attempts, last_error, at, replaying FROM event_dead_letters
                 WHERE subscription = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok(DeadLetter {
                    seq: r.get::<_, i64>(0)? as u64,
                    event_id: String::new(),
                    kind: String::new(),
                    attempts: r.get(1)?,
                    last_error: r.get(2)?,
                    at: r.get(3)?,
                    replaying: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
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
    pub async fn replay(&self, id: &str) -> Result<usize, String> {
        let id = id.to_string();
        self.write(false, move |c| {
            Ok(c.prepare_cached(
                "UPDATE event_dead_letters SET replaying = 1 WHERE subscription = ?1",
            )?
            .execute(params![id])?)
        })
        .await
    }

    /// The dead letters waiting to be replayed, oldest first.
    pub fn replaying(&self, id: &str) -> Result<Vec<u64>, String> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq FROM event_dead_letters WHERE subscription = ?1 AND replaying = 1
                 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id], |r| r.get::<_, i64>(0).map(|n| n as u64))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// A replayed dead letter was delivered: it is no longer dead.
    pub async fn revived(&self, id: &str, seq: u64) -> Result<(), String> {
        let id = id.to_string();
        self.write(false, move |c| {
            c.prepare_cached(
                "DELETE FROM event_dead_letters WHERE subscription = ?1 AND seq = ?2",
            )?
            .execute(params![id, seq as i64])?;
            Ok(())
        })
        .await
    }

    /// Moves the log an older oms kept in a file of its own (`events.db`, encrypted
    /// with `key` if the data dir is) into this one, then removes the file; answers how
    /// many events it held (0 when there is no such file). One durable transaction, and
    /// rows already here are kept: a crash before the file is removed adopts it again
    /// at the next start, adding nothing twice.
    pub async fn adopt(&self, old: &Path, key: Option<&dbkey::DbKey>) -> Result<u64, String> {
        if !old.exists() {
            return Ok(0);
        }
        let conn = Connection::open_with_flags(old, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| format!("cannot open {}: {e}", old.display()))?;
        dbkey::unlock(&conn, old, key)?;
        let older = OlderLog::read(&conn).map_err(text)?;
        drop(conn);
        let events = older.last_seq;
        self.write(true, move |c| older.insert(c)).await?;
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", old.display());
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("cannot remove {file} once moved: {e}"))
                }
                _ => {}
            }
        }
        Ok(events)
    }
}

/// Every row of an older `events.db`, read to be moved in.
struct OlderLog {
    /// Per table of [`OLDER_TABLES`], its rows as SQL values in column order.
    tables: Vec<Vec<Vec<rusqlite::types::Value>>>,
    last_seq: u64,
}

impl OlderLog {
    fn read(conn: &Connection) -> Result<OlderLog, Failed> {
        let mut tables = Vec::new();
        for (from, _) in OLDER_TABLES {
            let exists: bool = conn.query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [from],
                |r| r.get(0),
            )?;
            if !exists {
                tables.push(Vec::new());
                continue;
            }
            let mut stmt = conn.prepare(&format!("SELECT * FROM {from}"))?;
            let columns = stmt.column_count();
            let rows = stmt.query_map([], |r| {
                (0..columns)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            tables.push(rows.collect::<Result<_, _>>()?);
        }
        let last_seq: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None)
            .unwrap_or(0);
        Ok(OlderLog {
            tables,
            last_seq: last_seq as u64,
        })
    }

    /// Inserts the rows not here yet, and carries the sequence on from the older log's.
    fn insert(&self, c: &Connection) -> Result<(), Failed> {
        for ((_, into), rows) in OLDER_TABLES.iter().zip(&self.tables) {
            for row in rows {
                let marks = vec!["?"; row.len()].join(", ");
                c.prepare_cached(&format!("INSERT OR IGNORE INTO {into} VALUES ({marks})"))?
                    .execute(rusqlite::params_from_iter(row))?;
            }
        }
        let seq = self.last_seq as i64;
        let updated = c.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'event_log'",
            [seq],
        )?;
        if updated == 0 && seq > 0 {
            c.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('event_log', ?1)",
                [seq],
            )?;
        }
        Ok(())
    }
}

fn last_seq(c: &Connection) -> Result<u64, Failed> {
    Ok(c.prepare_cached(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'event_log'), 0)",
    )?
    .query_row([], |r| r.get::<_, i64>(0))? as u64)
}

/// Rows kept unsealed: the newest events, read most, and where duplicates are caught.
const KEEP_ROWS: i64 = 1024;
/// Events per sealed block: a few hundred orders' events, about 100 KB before
/// compression; reading one event of a block decompresses the block.
const BLOCK: i64 = 512;
/// The first byte of a block: its encoding (below). Another is refused, never guessed.
const BLOCK_FORMAT: u8 = 1;

/// An event as a row: its id, its type and its text.
type Row = (String, String, String);

/// An event's id and type, if it has both: what the log needs to take it.
pub fn id_and_type(event: &Value) -> Option<(&str, &str)> {
    let field = |name| {
        event
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    Some((field("id")?, field("type")?))
}

/// The events as rows; an event without an id or a type is refused.
fn to_rows(events: &[Value]) -> Result<Vec<Row>, String> {
    events
        .iter()
        .map(|e| match id_and_type(e) {
            Some((id, kind)) => Ok((id.to_string(), kind.to_string(), e.to_string())),
            None => Err(format!("an outbox event without id or type: {e}")),
        })
        .collect()
}

/// Inserts the events not logged yet; answers how many were new.
fn insert_new(conn: &Connection, events: &[Row]) -> Result<usize, Failed> {
    let mut added = 0;
    for (id, kind, body) in events {
        added += conn
            .prepare_cached(
                // Not INSERT OR IGNORE: an ignored row would still use up a
                // sequence number, and the stream's numbers have no gaps.
                "INSERT INTO event_log (id, type, body) SELECT ?1, ?2, ?3
                 WHERE NOT EXISTS (SELECT 1 FROM event_log WHERE id = ?1)",
            )?
            .execute(params![id, kind, body])?;
    }
    Ok(added)
}

/// Seals the oldest `BLOCK` rows into a block while more than `KEEP_ROWS + BLOCK` wait.
/// Rows are a run of sequences without gaps (sealing takes the oldest), so their count
/// is max - min + 1 and costs two index lookups.
fn seal(conn: &Connection) -> Result<(), Failed> {
    loop {
        // Two subqueries, not `SELECT MIN(seq), MAX(seq)`: SQLite answers a lone MIN or
        // MAX from the key's end, but both in one SELECT scan the table (which made
        // sealing 6% of an order's CPU at concurrency 1, every append scanning up to
        // 1,536 rows).
        let (min, max): (Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT (SELECT MIN(seq) FROM event_log), (SELECT MAX(seq) FROM event_log)",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let (Some(min), Some(max)) = (min, max) else {
            return Ok(());
        };
        if max - min + 1 < KEEP_ROWS + BLOCK {
            return Ok(());
        }
        let last = min + BLOCK - 1;
        let events: Vec<Logged> = {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, id, type, body FROM event_log WHERE seq <= ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([last], logged)?;
            rows.collect::<Result<_, _>>()?
        };
        let first = events.first().map_or(min, |e| e.seq as i64);
        conn.prepare_cached(
            "INSERT INTO event_log_blocks (first_seq, last_seq, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![first, last, encode_block(&events)?])?;
        conn.prepare_cached("DELETE FROM event_log WHERE seq <= ?1")?
            .execute([last])?;
    }
}

/// The sealed block holding the first event after `after`, decoded; None if that event
/// is not sealed.
fn block_after(conn: &Connection, after: u64) -> Result<Option<Vec<Logged>>, Failed> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT data FROM event_log_blocks WHERE last_seq > ?1 AND first_seq <= ?1 + 1",
        )?
        .query_row([after as i64], |r| r.get(0))
        .optional()?;
    data.map(|d| decode_block(&d)).transpose()
}

/// Per event: seq, then id, type and body each as length and UTF-8 (lengths and seq as
/// LEB128 varints); the whole compressed as one zstd frame after `BLOCK_FORMAT`.
fn encode_block(events: &[Logged]) -> Result<Vec<u8>, Failed> {
    let mut raw = Vec::new();
    for e in events {
        saga_core::varint::put(&mut raw, e.seq);
        for text in [&e.id, &e.kind, &e.body] {
            saga_core::varint::put(&mut raw, text.len() as u64);
            raw.extend_from_slice(text.as_bytes());
        }
    }
    let mut out = vec![BLOCK_FORMAT];
    out.extend(zstd::bulk::compress(&raw, 3).map_err(|e| Failed(format!("event log: {e}")))?);
    Ok(out)
}

fn decode_block(data: &[u8]) -> Result<Vec<Logged>, Failed> {
    let bad = |why: &str| Failed(format!("event log: a sealed block is unreadable: {why}"));
    match data.split_first() {
        Some((&BLOCK_FORMAT, frame)) => {
            let raw = zstd::decode_all(frame).map_err(|e| bad(&e.to_string()))?;
            let mut at = 0;
            let mut events = Vec::new();
            while at < raw.len() {
                let seq = saga_core::varint::read(&raw, &mut at).ok_or_else(|| bad("truncated"))?;
                let mut text = || -> Result<String, Failed> {
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

    #[tokio::test]
    async fn sealed_events_read_back_exactly_as_logged() {
        let log = EventLog::in_memory().await.unwrap();
        let total = (KEEP_ROWS + 3 * BLOCK + 17) as u64;
        for batch in (1..=total).collect::<Vec<_>>().chunks(100) {
            let events: Vec<Value> = batch.iter().map(|i| event(*i)).collect();
            assert_eq!(log.append(events, false).await.unwrap(), batch.len());
        }
        let blocks: i64 = log
            .read(|c| Ok(c.query_row("SELECT count(*) FROM event_log_blocks", [], |r| r.get(0))?))
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
        assert_eq!(log.append(vec![event(total)], true).await.unwrap(), 0);
        assert_eq!(log.last_seq().unwrap(), total);
    }

    #[tokio::test]
    async fn a_batch_with_a_bad_event_adds_nothing_and_the_log_goes_on() {
        let log = EventLog::in_memory().await.unwrap();
        assert_eq!(log.append(vec![event(1)], false).await.unwrap(), 1);
        let err = log
            .append(vec![event(2), json!({"type": "order.placed"})], false)
            .await
            .unwrap_err();
        assert!(err.contains("without id"), "{err}");
        assert_eq!(
            log.last_seq().unwrap(),
            1,
            "the good event of that batch was rolled back with it"
        );
        assert_eq!(
            log.append(vec![event(2), event(1)], false).await.unwrap(),
            1,
            "a logged id is skipped"
        );
        assert_eq!(log.last_seq().unwrap(), 2);
    }

    /// An `events.db` as an oms before issue 16's one database wrote it: `n` events,
    /// the oldest sealed, one subscription with one dead letter.
    fn older_events_db(path: &Path, n: u64) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 type TEXT NOT NULL, body TEXT NOT NULL);
             CREATE TABLE event_blocks (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,
                 data BLOB NOT NULL);
             CREATE TABLE subscriptions (id TEXT PRIMARY KEY, url TEXT NOT NULL, types TEXT NOT NULL,
                 secret TEXT NOT NULL, delivered_through INTEGER NOT NULL, created_at TEXT NOT NULL);
             CREATE TABLE dead_letters (subscription TEXT NOT NULL, seq INTEGER NOT NULL,
                 attempts INTEGER NOT NULL, last_error TEXT NOT NULL, at TEXT NOT NULL,
                 replaying INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (subscription, seq));
             INSERT INTO subscriptions VALUES ('s1', 'http://127.0.0.1:9/h', '[\"order.*\"]',
                 'whsec_x', 3, '2026-01-01T00:00:00.000Z');
             INSERT INTO dead_letters VALUES ('s1', 2, 5, 'refused', '2026-01-01T00:00:00.000Z', 0);",
        )
        .unwrap();
        for i in 1..=n {
            c.execute(
                "INSERT INTO events (id, type, body) VALUES (?1, 'order.placed', ?2)",
                params![format!("ev-{i}"), event(i).to_string()],
            )
            .unwrap();
        }
        // The first two sealed into a block, as the older log did.
        let sealed: Vec<Logged> = (1..=2)
            .map(|i| Logged {
                seq: i,
                id: format!("ev-{i}"),
                kind: "order.placed".into(),
                body: event(i).to_string(),
            })
            .collect();
        c.execute(
            "INSERT INTO event_blocks VALUES (1, 2, ?1)",
            [encode_block(&sealed).unwrap()],
        )
        .unwrap();
        c.execute("DELETE FROM events WHERE seq <= 2", []).unwrap();
    }

    /// A log in a fresh data dir's `oms.sqlite3` (named for the test), with the path an
    /// older `events.db` would have there.
    async fn log_in_data_dir(name: &str) -> (Db, EventLog, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("oms-eventlog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(
            &dir.join("oms.sqlite3"),
            None,
            &groupcommit::Options::default(),
            |_| Ok::<_, groupcommit::Error>(()),
        )
        .unwrap();
        let log = EventLog::within(db.clone()).await.unwrap();
        (db, log, dir.join(OLDER_DATA_DIR_FILE))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_events_db_is_moved_in_once_and_its_sequence_goes_on() {
        let (db, log, old) = log_in_data_dir("adopt").await;
        older_events_db(&old, 5);
        assert_eq!(log.adopt(&old, None).await.unwrap(), 5);
        assert!(!old.exists(), "the older file is removed once moved");
        // A crash after the move and before the removal: the file is moved again.
        older_events_db(&old, 5);
        assert_eq!(log.adopt(&old, None).await.unwrap(), 5);
        assert_eq!(
            log.adopt(&old, None).await.unwrap(),
            0,
            "nothing left to move"
        );
        // A page ends where a block does: page on.
        let mut seqs: Vec<u64> = Vec::new();
        loop {
            let page = log.after(seqs.last().copied().unwrap_or(0), 100).unwrap();
            if page.is_empty() {
                break;
            }
            seqs.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5], "each event once, sealed ones too");
        assert_eq!(log.get(1).unwrap().unwrap().body, event(1).to_string());
        let subs = log.subscriptions().unwrap();
        assert_eq!(
            (subs.len(), subs[0].delivered_through, &*subs[0].secret),
            (1, 3, "whsec_x")
        );
        let dead = log.dead_letters("s1").unwrap();
        assert_eq!((dead.len(), &*dead[0].event_id), (1, "ev-2"));
        assert_eq!(log.append(vec![event(6)], true).await.unwrap(), 1);
        assert_eq!(
            log.last_seq().unwrap(),
            6,
            "the sequence goes on from the older log's"
        );
        db.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_events_db_whose_rows_were_all_sealed_keeps_its_sequence() {
        let (db, log, old) = log_in_data_dir("sealed").await;
        older_events_db(&old, 2);
        assert_eq!(log.adopt(&old, None).await.unwrap(), 2);
        assert_eq!(log.last_seq().unwrap(), 2);
        assert_eq!(log.append(vec![event(3)], false).await.unwrap(), 1);
        assert_eq!(log.after(2, 10).unwrap()[0].seq, 3);
        db.close();
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
        assert!(decode_block(&newer).unwrap_err().0.contains("format 9"));
    }
}
