//! The relay's durable log (`events.db` in the data dir): every published event under
//! its global sequence number (what `GET /events` streams), the webhook subscriptions
//! with how far each was delivered, and their dead letters.
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
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err)?;
        let mut added = 0;
        for e in events {
            let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
            let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
            if id.is_empty() || kind.is_empty() {
                return Err(format!("an outbox event without id or type: {e}"));
            }
            added += tx
                .prepare_cached(
                    // Not INSERT OR IGNORE: an ignored row would still use up a
                    // sequence number, and the stream's numbers have no gaps.
                    "INSERT INTO events (id, type, body) SELECT ?1, ?2, ?3
                     WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = ?1)",
                )
                .and_then(|mut st| st.execute(params![id, kind, e.to_string()]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(added)
    }

    /// At most `limit` events after global sequence `after`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Logged>, String> {
        let conn = self.conn();
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
        self.conn()
            .query_row(
                "SELECT seq, id, type, body FROM events WHERE seq = ?1",
                params![seq as i64],
                logged,
            )
            .optional()
            .map_err(err)
    }

    /// The last global sequence handed out (0 before the first event).
    pub fn last_seq(&self) -> Result<u64, String> {
        self.conn()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
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
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT d.seq, e.id, e.type, d.attempts, d.last_error, d.at, d.replaying
                 FROM dead_letters d JOIN events e ON e.seq = d.seq
                 WHERE d.subscription = ?1 ORDER BY d.seq",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok(DeadLetter {
                    seq: r.get::<_, i64>(0)? as u64,
                    event_id: r.get(1)?,
                    kind: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                    at: r.get(5)?,
                    replaying: r.get(6)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
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
