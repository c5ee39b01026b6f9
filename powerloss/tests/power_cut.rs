//! The VFS under SQLite, across real process deaths: a child process (this test binary
//! again, running `child`) commits rows one transaction at a time and prints each id
//! once its commit has returned, until the power is cut at a planned sync. The parent
//! then opens the database with the plain unix VFS.

use rusqlite::Connection;
use std::io::Write;
use std::path::Path;

const DB: &str = "POWERLOSS_TEST_DB";
const CUT: &str = "POWERLOSS_TEST_CUT";
const SEED: &str = "POWERLOSS_TEST_SEED";
const SYNCHRONOUS: &str = "POWERLOSS_TEST_SYNCHRONOUS";
/// Rows a child commits before it cuts the power itself.
const ROWS: i64 = 60;

/// Not a test of its own: the child's body, run only when the parent asks for it.
#[test]
fn child() {
    if let Ok(db) = std::env::var(DB) {
        run_child(Path::new(&db));
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

fn run_child(db: &Path) -> ! {
    powerloss::install(powerloss::Plan {
        cut_at_sync: env_u64(CUT),
        landed_seed: env_u64(SEED),
    })
    .expect("install");
    let synchronous = std::env::var(SYNCHRONOUS).unwrap_or_else(|_| "FULL".into());
    let conn = Connection::open(db).expect("open");
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous}; PRAGMA journal_mode=WAL;
         BEGIN;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS total (k INTEGER PRIMARY KEY, n INTEGER NOT NULL);
         INSERT OR IGNORE INTO total VALUES (0, 0);
         COMMIT;"
    ))
    .expect("schema");
    // A second connection checkpoints, as saga-core's checkpointer thread does.
    let checkpointer = Connection::open(db).expect("open");
    checkpointer
        .execute_batch(&format!("PRAGMA synchronous={synchronous}"))
        .expect("synchronous");
    let first: i64 = conn
        .query_row("SELECT coalesce(max(id), 0) FROM t", [], |r| r.get(0))
        .expect("max");
    let mut out = std::io::stdout().lock();
    for id in first + 1..=first + ROWS {
        let tx = conn.unchecked_transaction().expect("begin");
        tx.execute(
            "INSERT INTO t VALUES (?1, randomblob(3000 + ?1 % 5000))",
            [id],
        )
        .expect("insert");
        tx.execute("UPDATE total SET n = n + 1 WHERE k = 0", [])
            .expect("update");
        tx.commit().expect("commit");
        writeln!(out, "committed {id}").expect("stdout");
        out.flush().expect("stdout");
        if id % 7 == 0 {
            let _ = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
    powerloss::power_cut()
}

/// Runs a child on `db`; returns the ids it said were committed.
fn run(db: &Path, cut: Option<u64>, seed: Option<u64>, synchronous: &str) -> Vec<i64> {
    let mut env = vec![
        (DB, db.display().to_string()),
        (SYNCHRONOUS, synchronous.to_string()),
    ];
    env.extend(cut.map(|c| (CUT, c.to_string())));
    env.extend(seed.map(|s| (SEED, s.to_string())));
    powerloss::harness::run_child(&env, "committed ")
}

/// The rows a plain connection finds (none when the table never reached the disk).
fn rows_on_disk(db: &Path) -> Vec<i64> {
    let (conn, rows) = powerloss::harness::rows_on_disk(db, |id| 3000 + id % 5000);
    let Some(rows) = rows else {
        return Vec::new();
    };
    let total: i64 = conn
        .query_row("SELECT n FROM total", [], |r| r.get(0))
        .expect("total");
    assert_eq!(
        total,
        rows.len() as i64,
        "the counter and the rows committed together"
    );
    rows
}

#[test]
fn every_committed_row_survives_a_power_cut_at_any_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cut_points = 0;
    for cut in 1..=24u64 {
        for seed in [None, Some(cut * 7919)] {
            // Two cuts on the same database: the second starts from what the first left.
            let db = dir.path().join(format!("cut-{cut}-{}.db", seed.is_some()));
            let mut committed = run(&db, Some(cut), seed, "FULL");
            committed.extend(run(&db, Some(cut + 5), seed, "FULL"));
            let found = rows_on_disk(&db);
            for id in &committed {
                assert!(
                    found.contains(id),
                    "cut at sync {cut} (seed {seed:?}) lost committed row {id}; found {found:?}"
                );
            }
            cut_points += 2;
        }
    }
    assert_eq!(cut_points, 96);
}

#[test]
fn a_cut_loses_what_was_committed_but_never_synced() {
    // synchronous=OFF never syncs: process death alone would keep every row (the
    // kernel has them), a power cut keeps none. This is what makes the VFS a power cut.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("unsynced.db");
    let committed = run(&db, None, None, "OFF");
    assert_eq!(committed.len() as i64, ROWS);
    assert!(rows_on_disk(&db).is_empty());
}
