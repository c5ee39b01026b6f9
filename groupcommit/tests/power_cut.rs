//! Group commit across real power cuts: a child process (this test binary again,
//! running `child`) writes through a `Db` (durable writes, and lazy writes followed by
//! `Db::sync`) and prints each id once it is acknowledged, until the power-loss VFS
//! cuts the power at a planned sync. The parent then reads the file with the plain
//! unix VFS: every acknowledged row must be there, whole.
//!
//! The syncer fsyncs the WAL off the writer thread; this is what shows its fsync goes
//! through SQLite's VFS (a bare fsync of the file would leave the VFS's unsynced
//! writes behind, and acknowledged rows would be lost).

use groupcommit::{Db, Error, Options};
use rusqlite::Connection;
use std::io::Write;
use std::path::Path;

const DB: &str = "GROUPCOMMIT_TEST_DB";
const CUT: &str = "GROUPCOMMIT_TEST_CUT";
/// Rounds a child writes before it cuts the power itself.
const ROUNDS: i64 = 40;

/// Not a test of its own: the child's body, run only when the parent asks for it.
#[test]
fn child() {
    if let Ok(db) = std::env::var(DB) {
        let cut = std::env::var(CUT).ok().map(|c| c.parse().expect(CUT));
        run_child(Path::new(&db), cut);
    }
}

fn run_child(db: &Path, cut: Option<u64>) -> ! {
    powerloss::install(powerloss::Plan {
        cut_at_sync: cut,
        landed_seed: None,
    })
    .expect("install");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // A WAL limit so small that the writer checkpoints and restarts the WAL many
        // times in the run, and later frames overwrite earlier ones.
        let options = Options {
            wal_limit_frames: 8,
            ..Options::default()
        };
        let db = Db::open(db, None, &options, |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)",
            )
            .map_err(Error::from)
        })
        .expect("open");
        let first: i64 = db
            .read(|c| {
                Ok::<_, Error>(c.query_row("SELECT coalesce(max(id), 0) FROM t", [], |r| r.get(0))?)
            })
            .expect("max");
        for round in 0..ROUNDS {
            let id = first + 1 + round * 3;
            // Three writers at once, so that commits and fsyncs overlap: a durable
            // write, a lazy one nobody syncs, and a lazy one its writer then syncs.
            let durable = async { db.write(true, insert(id)).await.map(|_| vec![id]) };
            let lazy = async { db.write(false, insert(id + 1)).await.map(|_| vec![]) };
            let synced = async {
                db.write(false, insert(id + 2)).await?;
                db.sync().await?;
                Ok::<_, Error>(vec![id + 2])
            };
            let (a, b, c) = tokio::join!(durable, lazy, synced);
            for acked in [a, b, c] {
                say_acked(&acked.expect("write"));
            }
        }
    });
    powerloss::power_cut()
}

fn insert(id: i64) -> impl FnOnce(&Connection) -> Result<(), Error> {
    move |c| {
        c.execute(
            "INSERT INTO t VALUES (?1, randomblob(1000 + ?1 % 3000))",
            [id],
        )?;
        Ok(())
    }
}

fn say_acked(ids: &[i64]) {
    let mut out = std::io::stdout().lock();
    for id in ids {
        writeln!(out, "acked {id}").expect("stdout");
    }
    out.flush().expect("stdout");
}

/// Runs a child on `db` that cuts the power at sync `cut`; returns the ids it said
/// were acknowledged.
fn run(db: &Path, cut: u64) -> Vec<i64> {
    let env = [(DB, db.display().to_string()), (CUT, cut.to_string())];
    powerloss::harness::run_child(&env, "acked ")
}

/// The rows a plain connection finds, each checked whole.
fn rows_on_disk(db: &Path) -> Vec<i64> {
    let (_, rows) = powerloss::harness::rows_on_disk(db, |id| 1000 + id % 3000);
    rows.unwrap_or_default()
}

#[test]
fn every_acknowledged_write_survives_a_power_cut_at_any_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked_in_all = 0;
    for cut in (1..=40u64).step_by(3) {
        // Two cuts on the same database: the second starts from what the first left.
        let db = dir.path().join(format!("cut-{cut}.db"));
        let mut acked = run(&db, cut);
        acked.extend(run(&db, cut + 4));
        let found = rows_on_disk(&db);
        for id in &acked {
            assert!(
                found.contains(id),
                "cut at sync {cut} lost acknowledged row {id}; found {found:?}"
            );
        }
        acked_in_all += acked.len();
    }
    assert!(
        acked_in_all > 100,
        "the cuts came after some writes were acknowledged ({acked_in_all})"
    );
}
