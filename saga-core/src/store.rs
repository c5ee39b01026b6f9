//! The runtime's SQLite database: its schema, and its writes through the group-commit
//! writer of the `groupcommit` crate (one writer thread; every closure waiting runs in
//! one transaction, each in its own savepoint; one commit answers them all).
//!
//! Durable or lazy: a [`ExecutionStore::write`] is fsynced before it is answered
//! (`synchronous=FULL`); a [`ExecutionStore::write_lazy`] is committed and visible but
//! fsynced only with the next durable commit or [`ExecutionStore::sync`] (one WAL, so a
//! power cut loses at most a suffix of commits, never one without those before it).
//! The order activities' items live in the same database (`ExecutionStore::db`), so the
//! same holds across the two stores. The runtime writes its steps lazily and whoever
//! acknowledges anything to the outside (an HTTP answer) calls `sync` first: nothing
//! acknowledged is lost, and a step that nobody has seen need not cost an fsync (issue
//! 16: one per step capped latency).

use dbkey::DbKey;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (the caller maps it to AlreadyExists).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage failed: {0}")]
    Failed(String),
    /// The disk is full (or the database busy past its timeout): nothing was written,
    /// and the same write can succeed later. The API answers 503, not 500.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation {
                return StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()));
            }
        }
        StoreError::from(groupcommit::Error::from(e))
    }
}

#[derive(Clone)]
pub struct ExecutionStore {
    db: groupcommit::Db,
}

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS state_machines (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    definition TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    description TEXT,
    revision_id TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL,
    logging TEXT,
    tracing TEXT
);
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    state_machine_arn TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    start_date REAL NOT NULL,
    stop_date REAL,
    redrive_count INTEGER NOT NULL DEFAULT 0,
    redrive_date REAL,
    definition_id TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    machine_type TEXT NOT NULL
);
-- Apart from the execution row: SQLite rewrites a whole row on UPDATE, and these
-- are the large parts. A definition is stored once however many executions use it;
-- the snapshot changes at every step.
CREATE TABLE IF NOT EXISTS definitions (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
-- A snapshot's data: TEXT, or a BLOB packed as history.rs packs payloads.
CREATE TABLE IF NOT EXISTS snapshots (
    arn TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
-- No UNIQUE (state_machine_arn, name): a Standard execution's ARN is its machine's and
-- its name's, so the ARN's key holds it; Express executions may share a name, as on AWS
-- (their ARNs differ by start time).
CREATE INDEX IF NOT EXISTS executions_by_machine ON executions (state_machine_arn, start_date);
-- The executions not succeeded, by status and machine: the runtime's RUNNING ones at
-- start, and ListExecutions' statusFilter (the console's failed sagas among a hundred
-- thousand that succeeded). Succeeded ones, most of the table, are left out: an order at
-- rest costs no entry here. A query uses it only if it says `status <> 'SUCCEEDED'`
-- itself (SQLite does not infer it from `status = 'RUNNING'`); `OPEN_PLANS` checks.
CREATE INDEX IF NOT EXISTS executions_open ON executions (status, state_machine_arn, start_date)
    WHERE status <> 'SUCCEEDED';
-- Retention prunes the oldest closed executions first (retention.rs).
CREATE INDEX IF NOT EXISTS executions_by_stop ON executions (stop_date) WHERE stop_date IS NOT NULL;
-- Keyed by the execution's rowid, not its ARN: history is most of what is written,
-- and a long text key in every row made each insert costlier.
CREATE TABLE IF NOT EXISTS events (
    execution_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    previous_id INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    type TEXT NOT NULL,
    details TEXT,
    PRIMARY KEY (execution_id, id)
) WITHOUT ROWID;
-- A running execution's history: one row a step, its events as one frame (history.rs).
-- One insert a step rather than one an event, of fewer bytes: the rows of `events`
-- were most of the writer's time (issue 16). `events` holds an older oms's rows.
CREATE TABLE IF NOT EXISTS step_events (
    execution_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (execution_id, first_id)
) WITHOUT ROWID;
-- A closed execution's history as one compressed frame (history.rs), in place of its
-- step rows: each payload its events repeat is stored once.
CREATE TABLE IF NOT EXISTS histories (
    execution_id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
-- Executions started by a Task of another execution (nested.rs), written with the
-- child's first step: a restarted parent finds its child again by (parent, effect)
-- instead of starting a second one, and a parent stopped stops its .sync children.
CREATE TABLE IF NOT EXISTS children (
    child_arn TEXT PRIMARY KEY,
    parent_arn TEXT NOT NULL,
    effect_id INTEGER NOT NULL,
    sync INTEGER NOT NULL,
    -- 1: an Express child that succeeded without meeting an error, which its parent's
    -- success deletes (runtime/children.rs).
    clean INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS children_by_parent ON children (parent_arn, effect_id);
-- A distributed Map's Map Run (runtime/map_runs.rs), written with its first child
-- execution; its status changes in the step of the parent that ends it.
CREATE TABLE IF NOT EXISTS map_runs (
    arn TEXT PRIMARY KEY,
    execution_arn TEXT NOT NULL,
    state_machine_arn TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date REAL NOT NULL,
    stop_date REAL,
    max_concurrency INTEGER NOT NULL,
    tolerated_failure_count REAL,
    tolerated_failure_percentage REAL,
    -- Children it starts (batches, with an ItemBatcher), and the items they run.
    child_count INTEGER NOT NULL,
    total_items INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS map_runs_by_execution ON map_runs (execution_arn, start_date);
CREATE TABLE IF NOT EXISTS map_run_children (
    child_arn TEXT PRIMARY KEY,
    map_run_arn TEXT NOT NULL,
    item_index INTEGER NOT NULL,
    -- The items this child runs: 1, or its batch's.
    items INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS map_run_children_by_run ON map_run_children (map_run_arn, item_index);
-- Executions started as a test case of the mock configuration (mock.rs): `ARN#Case`.
CREATE TABLE IF NOT EXISTS mocked_executions (
    arn TEXT PRIMARY KEY,
    test_case TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activities (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    token TEXT PRIMARY KEY,
    execution_arn TEXT NOT NULL,
    effect_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    activity_arn TEXT,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    created REAL NOT NULL,
    timeout_deadline REAL,
    heartbeat_seconds REAL,
    heartbeat_deadline REAL
);
CREATE INDEX IF NOT EXISTS tasks_by_activity ON tasks (activity_arn, state, created);
CREATE INDEX IF NOT EXISTS tasks_by_execution ON tasks (execution_arn);
"#;

impl From<groupcommit::Error> for StoreError {
    fn from(e: groupcommit::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DiskFull};
        match e {
            groupcommit::Error::Sqlite {
                code: Some(DiskFull | DatabaseBusy),
                message,
            } => StoreError::Unavailable(message),
            other => StoreError::Failed(other.to_string()),
        }
    }
}

impl ExecutionStore {
    /// Opens (creating if needed) the database in `dir`. A directory that cannot be
    /// written, a file that is not a database, or a database another process holds
    /// open for writing is reported here, clearly, rather than at the first request.
    pub fn open(dir: &Path) -> Result<ExecutionStore, StoreError> {
        ExecutionStore::open_with_key(dir, None)
    }

    /// `open`, the database encrypted with `key` (SQLCipher; see the dbkey crate).
    pub fn open_with_key(dir: &Path, key: Option<DbKey>) -> Result<ExecutionStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Failed(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join(DATABASE_FILE);
        let options = groupcommit::Options {
            writer_thread: "oms-store-writer",
            ..groupcommit::Options::default()
        };
        let db = groupcommit::Db::open(&path, key.as_ref(), &options, |conn| {
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.execute_batch(SCHEMA).map_err(|e| {
                StoreError::Failed(format!("cannot initialise {}: {e}", path.display()))
            })?;
            check_schema_version(conn, &path)?;
            // Two servers writing the same data dir would each believe they own its
            // executions: hold the write lock for as long as this process runs.
            lock_data_dir(dir)
        })?;
        Ok(ExecutionStore { db })
    }

    /// The database itself, for another store to keep its tables in (the order
    /// activities' items): one WAL then orders both stores' writes (groupcommit).
    pub fn db(&self) -> groupcommit::Db {
        self.db.clone()
    }

    /// Tells `observer` of every commit from now on (the first observer set stays).
    pub fn observe(&self, observer: std::sync::Arc<dyn crate::observe::Observer>) {
        let syncs = observer.clone();
        self.db
            .observe(std::sync::Arc::new(move |jobs, seconds, ok| {
                observer.store_committed(jobs, seconds, ok)
            }));
        self.db
            .observe_syncs(Box::new(move |seconds, ok| syncs.store_synced(seconds, ok)));
    }

    /// Runs `f` in the next group commit and returns its result once committed and
    /// fsynced.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.db.write(true, f).await
    }

    /// Runs `f` in the next group commit and returns its result once committed: visible
    /// to every reader, on disk with the next durable commit or [`Self::sync`].
    pub async fn write_lazy<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.db.write(false, f).await
    }

    /// Returns once everything committed before the call is on disk: at once when no
    /// lazy commit is waiting, else after one fsync shared with whoever else asks.
    pub async fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.sync().await?)
    }

    /// Runs a read on a pooled read-only connection (WAL lets reads run beside the writer).
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.db.read(f)
    }

    /// Stops the writer after the jobs already queued are committed.
    pub fn close(&self) {
        self.db.close()
    }
}

/// The runtime's database in a data dir.
pub const DATABASE_FILE: &str = "oms.sqlite3";

/// The schema this oms writes, in `PRAGMA user_version`. 0: histories as rows only
/// (before compressed histories); 1: a closed execution's history may be a frame in
/// `histories` (history.rs); 2: `children.clean`, and `executions` without its
/// UNIQUE (state_machine_arn, name); 3: `executions_open` for `executions_by_status`.
/// An older data dir is upgraded in place (its rows are still read as they are); a newer
/// one is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 3;

fn check_schema_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Failed(format!(
            "{} has schema version {found}, newer than this oms's {SCHEMA_VERSION}: \
             it was written by a newer oms; run that one (or a fresh --data-dir)",
            path.display()
        )));
    }
    if found < SCHEMA_VERSION {
        add_missing_columns(conn)?;
        drop_execution_name_key(conn)?;
        // Every execution had an entry, succeeded or not; `executions_open` replaces it.
        conn.execute_batch("DROP INDEX IF EXISTS executions_by_status")?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    Ok(())
}

/// Columns added to a table after a data dir could have been made: `CREATE TABLE IF NOT
/// EXISTS` leaves an older table as it was.
fn add_missing_columns(conn: &Connection) -> Result<(), StoreError> {
    if !any_row(
        conn,
        "SELECT 1 FROM pragma_table_info('children') WHERE name = 'clean'",
    )? {
        conn.execute_batch("ALTER TABLE children ADD COLUMN clean INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

/// Whether `sql` finds a row.
fn any_row(conn: &Connection, sql: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(sql, [], |_| Ok(())).optional()?.is_some())
}

/// Rebuilds an `executions` table made before schema version 2, whose UNIQUE
/// (state_machine_arn, name) refused a second Express execution of the same name (SQLite
/// drops a table constraint only with the table). Rowids are kept: history rows and
/// frames are keyed by them. One transaction: a crash leaves the old table.
fn drop_execution_name_key(conn: &Connection) -> Result<(), StoreError> {
    if !any_row(
        conn,
        "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_autoindex_executions_2'",
    )? {
        return Ok(());
    }
    // The old table's columns, which the schema's table has too (only the key went).
    let columns: String = conn.query_row(
        "SELECT group_concat(name, ', ') FROM pragma_table_info('executions')",
        [],
        |r| r.get(0),
    )?;
    let table = SCHEMA
        .split_once("CREATE TABLE IF NOT EXISTS executions (")
        .and_then(|(_, rest)| rest.split_once(");"))
        .map(|(body, _)| body)
        .ok_or_else(|| StoreError::Failed("the schema has no executions table".into()))?;
    conn.execute_batch(&format!(
        "BEGIN; \
         CREATE TABLE executions_v2 ({table}); \
         INSERT INTO executions_v2 (rowid, {columns}) SELECT rowid, {columns} FROM executions; \
         DROP TABLE executions; \
         ALTER TABLE executions_v2 RENAME TO executions; \
         {SCHEMA} \
         COMMIT;"
    ))?;
    Ok(())
}

/// An advisory lock file beside the database, held for the process's life.
fn lock_data_dir(dir: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    let path = dir.join("oms.lock");
    let pid = std::process::id();
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(other) = text.trim().parse::<u32>() {
            if other != pid && Path::new(&format!("/proc/{other}")).exists() {
                return Err(StoreError::Failed(format!(
                    "the data dir {} is in use by another oms process (pid {other}); stop it or choose another --data-dir",
                    dir.display()
                )));
            }
        }
    }
    let mut f = std::fs::File::create(&path)
        .map_err(|e| StoreError::Failed(format!("cannot write {}: {e}", path.display())))?;
    let _ = write!(f, "{pid}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite makes for `sql` on the schema, one line a step.
    fn plan(c: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Unbound parameters are NULL, which the plan does not depend on.
        let mut rows = stmt.raw_query();
        let mut plan = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            plan.push(row.get(3).unwrap());
        }
        plan
    }

    /// Each list of executions reads only its page: by the index of its filter, from
    /// its cursor on. Each statement and the search its plan must show.
    #[test]
    fn status_lists_are_searched() {
        use crate::service::{list_executions_sql, map_runs::CHILDREN_FILTER};
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        let machine = "e.state_machine_arn = ?1";
        let recover_one = format!("{} AND e.arn = ?1", crate::runtime::RECOVER_SELECT);
        let cases = [
            (
                crate::runtime::RECOVER_SELECT.to_string(),
                "executions_open (status=?)",
            ),
            (recover_one, "sqlite_autoindex_executions_1 (arn=?)"),
            (
                list_executions_sql(machine, false, Some("FAILED"), false),
                "executions_open (status=? AND state_machine_arn=?)",
            ),
            (
                list_executions_sql(machine, false, Some("RUNNING"), true),
                "executions_open (status=? AND state_machine_arn=? AND start_date<?)",
            ),
            (
                list_executions_sql(machine, false, Some("SUCCEEDED"), false),
                "executions_by_machine (state_machine_arn=?)",
            ),
            (
                list_executions_sql(machine, false, Some("SUCCEEDED"), true),
                "executions_by_machine (state_machine_arn=? AND start_date<?)",
            ),
            (
                list_executions_sql(machine, false, None, false),
                "executions_by_machine (state_machine_arn=?)",
            ),
            (
                list_executions_sql(machine, false, None, true),
                "executions_by_machine (state_machine_arn=? AND start_date<?)",
            ),
            (
                list_executions_sql(CHILDREN_FILTER, true, Some("FAILED"), true),
                "sqlite_autoindex_executions_1 (arn=?)",
            ),
        ];
        for (sql, index) in cases {
            let plan = plan(&c, &sql);
            let want = format!("SEARCH e USING INDEX {index}");
            assert!(
                plan.iter().any(|step| step == &want),
                "{sql}\nwanted {want}, planned {plan:?}"
            );
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("oms-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_and_one_failure_spares_the_rest() {
        let store = ExecutionStore::open(&temp_dir("group")).unwrap();
        let mut handles = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |c| {
                    c.execute(
                        "INSERT INTO activities (arn, name, created) VALUES (?1, ?2, 0)",
                        (format!("arn:a:{}", i % 150), format!("n{}", i % 150)),
                    )?;
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Conflict(_)) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, conflicts), (150, 50));
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM activities", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 150);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_encrypted_store_keeps_no_plaintext_and_refuses_another_key() {
        let dir = temp_dir("keyed");
        let key = |hex: &str| Some(DbKey::parse(&hex.repeat(64), "OMS_DB_KEY").unwrap());
        let store = ExecutionStore::open_with_key(&dir, key("a")).unwrap();
        store
            .write(|c| {
                c.execute(
                    "INSERT INTO activities (arn, name, created) VALUES ('arn:x', 'Ada Lovelace', 0)",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
        for file in ["oms.sqlite3", "oms.sqlite3-wal"] {
            let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
            assert!(!bytes.windows(12).any(|w| w == b"Ada Lovelace"), "{file}");
        }
        let err = ExecutionStore::open_with_key(&dir, key("b"))
            .err()
            .expect("a wrong key must fail");
        assert!(
            err.to_string()
                .contains("the key from OMS_DB_KEY does not open it"),
            "{err}"
        );
        let store = ExecutionStore::open_with_key(&dir, key("a")).unwrap();
        let name: String = store
            .read(|c| Ok(c.query_row("SELECT name FROM activities", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(name, "Ada Lovelace");
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lazy_write_is_read_at_once_and_waits_for_a_sync_to_be_durable() {
        let store = ExecutionStore::open(&temp_dir("lazy")).unwrap();
        let insert = |name: &'static str| {
            move |c: &Connection| {
                c.execute(
                    "INSERT INTO activities (arn, name, created) VALUES (?1, ?1, 0)",
                    [name],
                )?;
                Ok(())
            }
        };
        store.write_lazy(insert("lazy")).await.unwrap();
        let count = || -> i64 {
            store
                .read(|c| Ok(c.query_row("SELECT count(*) FROM activities", [], |r| r.get(0))?))
                .unwrap()
        };
        assert_eq!(count(), 1, "a lazy write is visible once answered");
        assert!(store.db.unsynced(), "and not yet known durable");
        store.sync().await.unwrap();
        assert!(!store.db.unsynced(), "a sync makes it durable");
        store.write_lazy(insert("lazy2")).await.unwrap();
        store.write(insert("durable")).await.unwrap();
        assert!(
            !store.db.unsynced(),
            "a durable commit takes the lazy ones before it"
        );
        assert_eq!(count(), 3);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_stop_gives_the_free_pages_back() {
        let dir = temp_dir("vacuum");
        let store = ExecutionStore::open(&dir).unwrap();
        let blob = "x".repeat(3000);
        store
            .write(move |c| {
                for i in 0..500 {
                    c.execute(
                        "INSERT INTO definitions (id, text) VALUES (?1, ?2)",
                        (i.to_string(), &blob),
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        store
            .write(|c| Ok(c.execute("DELETE FROM definitions", []).map(|_| ())?))
            .await
            .unwrap();
        let free: i64 = store
            .read(|c| Ok(c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?))
            .unwrap();
        assert!(free >= 300, "the deleted rows left {free} free pages");
        store.close();
        let c = Connection::open(dir.join("oms.sqlite3")).unwrap();
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
        let bytes = std::fs::metadata(dir.join("oms.sqlite3")).unwrap().len();
        assert_eq!(
            bytes,
            pages as u64 * 4096,
            "the file was truncated to its pages"
        );
        assert!(pages < 100, "{pages} pages after the stop");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_at_open() {
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("oms.sqlite3"),
            b"this is not a database, just text that is long enough",
        )
        .unwrap();
        let err = ExecutionStore::open(&dir).err().expect("open must fail");
        assert!(err.to_string().contains("oms.sqlite3"), "{err}");
    }

    /// The indexes of `executions` the current schema has, by name.
    const CURRENT_EXECUTION_INDEXES: [&str; 3] = [
        "executions_by_machine",
        "executions_by_stop",
        "executions_open",
    ];

    /// The named indexes of `executions` (not its primary key's), by name.
    fn execution_indexes(c: &Connection) -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'executions' \
             AND type = 'index' AND sql IS NOT NULL ORDER BY name",
        )?;
        let names = st.query_map([], |r| r.get(0))?;
        names.collect()
    }

    #[test]
    fn a_version_2_data_dir_loses_its_status_index() {
        let dir = temp_dir("upgrade2");
        std::fs::create_dir_all(&dir).unwrap();
        {
            let c = Connection::open(dir.join(DATABASE_FILE)).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute_batch(
                "DROP INDEX executions_open; \
                 CREATE INDEX executions_by_status ON executions (status); \
                 INSERT INTO executions (arn, state_machine_arn, name, status, input, \
                 start_date, definition_id, role_arn, machine_type) \
                 VALUES ('x:e:1', 'x:m', 'e', 'FAILED', '{}', 1.5, 'd', 'r', 'STANDARD'); \
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let store = ExecutionStore::open(&dir).unwrap();
        let (indexes, failed): (Vec<String>, String) = store
            .read(|c| {
                let names = execution_indexes(c)?;
                // Made over the rows already there.
                let failed = c.query_row(
                    "SELECT arn FROM executions INDEXED BY executions_open \
                     WHERE status = 'FAILED' AND status <> 'SUCCEEDED'",
                    [],
                    |r| r.get(0),
                )?;
                Ok((names, failed))
            })
            .unwrap();
        assert_eq!(indexes, CURRENT_EXECUTION_INDEXES);
        assert_eq!(failed, "x:e:1");
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_data_dir_gains_the_new_columns_and_keeps_its_rows() {
        let dir = temp_dir("upgrade");
        std::fs::create_dir_all(&dir).unwrap();
        {
            // `children` and `executions` as schema version 1 made them, one row each;
            // the execution's rowid is not 1, as a history's key would hold it.
            let c = Connection::open(dir.join("oms.sqlite3")).unwrap();
            c.execute_batch(
                "CREATE TABLE children (child_arn TEXT PRIMARY KEY, parent_arn TEXT NOT NULL, \
                 effect_id INTEGER NOT NULL, sync INTEGER NOT NULL); \
                 INSERT INTO children VALUES ('c', 'p', 3, 1); \
                 CREATE TABLE executions (arn TEXT PRIMARY KEY, state_machine_arn TEXT NOT NULL, \
                 name TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, \
                 error TEXT, cause TEXT, start_date REAL NOT NULL, stop_date REAL, \
                 redrive_count INTEGER NOT NULL DEFAULT 0, redrive_date REAL, \
                 definition_id TEXT NOT NULL, role_arn TEXT NOT NULL, machine_type TEXT NOT NULL, \
                 UNIQUE (state_machine_arn, name)); \
                 CREATE INDEX executions_by_status ON executions (status); \
                 INSERT INTO executions (rowid, arn, state_machine_arn, name, status, input, \
                 start_date, definition_id, role_arn, machine_type) \
                 VALUES (7, 'x:e:1', 'x:m', 'e', 'SUCCEEDED', '{}', 1.5, 'd', 'r', 'EXPRESS'); \
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = ExecutionStore::open(&dir).unwrap();
        let (link, version): ((String, i64, i64), i64) = store
            .read(|c| {
                let link = c.query_row(
                    "SELECT parent_arn, effect_id, clean FROM children WHERE child_arn = 'c'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                Ok((link, c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            })
            .unwrap();
        assert_eq!(link, ("p".to_string(), 3, 0), "the link, not clean");
        assert_eq!(version, SCHEMA_VERSION);
        // The execution kept its rowid and its row, and a second Express execution of
        // the same name (another ARN) is taken, as on AWS.
        let kept: (i64, String, f64) = store
            .write(|c| {
                c.execute(
                    "INSERT INTO executions (arn, state_machine_arn, name, status, input, \
                     start_date, definition_id, role_arn, machine_type) \
                     VALUES ('x:e:2', 'x:m', 'e', 'RUNNING', '{}', 2.5, 'd', 'r', 'EXPRESS')",
                    [],
                )?;
                Ok(c.query_row(
                    "SELECT rowid, status, start_date FROM executions WHERE arn = 'x:e:1'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(kept, (7, "SUCCEEDED".to_string(), 1.5));
        // Every execution's status index gave way to the one of those not succeeded.
        let indexes = store.read(|c| Ok(execution_indexes(c)?)).unwrap();
        assert_eq!(indexes, CURRENT_EXECUTION_INDEXES);
        store.close();
        // Opened again at the current version: nothing to add, nothing refused.
        ExecutionStore::open(&dir).unwrap().close();
    }
}
