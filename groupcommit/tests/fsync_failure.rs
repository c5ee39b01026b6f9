//! After a failed fsync the store promises nothing more: the kernel may have dropped
//! the pages it could not write (Linux marks them clean), so a later fsync that
//! succeeds would prove nothing. Every durable write and sync fails from then on,
//! until the database is opened again. (Its own test binary: the power-loss VFS, which
//! fails the syncs here, is installed once per process.)

use groupcommit::{Db, Error, Options};
use rusqlite::Connection;
use std::path::Path;

fn open(path: &Path) -> Db {
    Db::open(path, None, &Options::default(), |c| {
        c.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
            .map_err(Error::from)
    })
    .expect("open")
}

fn insert(id: i64) -> impl FnOnce(&Connection) -> Result<(), Error> {
    move |c| {
        c.execute("INSERT INTO t VALUES (?1)", [id])?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_refuses_every_durable_answer_until_reopened() {
    powerloss::install(powerloss::Plan::default()).expect("install");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite3");
    let db = open(&path);
    db.write(true, insert(1))
        .await
        .expect("a durable write on a good disk");

    powerloss::fail_syncs(true);
    let failed = db
        .write(true, insert(2))
        .await
        .expect_err("the fsync failed");
    assert!(failed.to_string().contains("fsync"), "{failed}");
    powerloss::fail_syncs(false);

    // The disk syncs again, but the store does not believe it.
    assert_eq!(db.write(true, insert(3)).await, Err(failed.clone()));
    db.write(false, insert(4))
        .await
        .expect("a lazy write is committed");
    assert_eq!(
        db.sync().await,
        Err(failed.clone()),
        "and never made durable"
    );
    db.close();

    // Opened again, it starts from what SQLite recovers and promises again.
    let db = open(&path);
    db.write(true, insert(5)).await.expect("durable again");
    db.sync().await.expect("a sync");
    db.close();
}
