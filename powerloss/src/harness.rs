//! What a crash test built on this crate needs on both sides of the cut: the test
//! binary runs itself again as a child (its test named `child`), which writes and prints
//! what it was told is written until the power is cut; the parent then reads the file
//! with the plain unix VFS.

use rusqlite::Connection;
use std::path::Path;
use std::process::Command;

/// Runs this test binary's `child` test with `env`; the child must end by its power
/// cut. Returns the ids it printed on lines `{prefix}{id}`, in order (the test
/// harness's own "test child ... " may precede the first).
pub fn run_child(env: &[(&str, String)], prefix: &str) -> Vec<i64> {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["child", "--exact", "--nocapture", "--test-threads=1"]);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(crate::EXIT_CODE),
        "the child ends by its power cut; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("powerloss: the power is cut at sync"),
        "{stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(prefix).map(|(_, id)| id))
        .map(|id| id.parse().expect("id"))
        .collect()
}

/// The ids of table `t (id, payload)` a plain connection finds in `db`, after an
/// integrity check, each row checked whole (`payload_bytes(id)` long); None when the
/// table never reached the disk. The connection is handed back for further checks.
pub fn rows_on_disk(
    db: &Path,
    payload_bytes: impl Fn(i64) -> i64,
) -> (Connection, Option<Vec<i64>>) {
    let conn = Connection::open(db).expect("reopen");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok", "{}", db.display());
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 't'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    if !exists {
        return (conn, None);
    }
    let rows: Vec<(i64, i64)> = {
        let mut stmt = conn
            .prepare("SELECT id, length(payload) FROM t ORDER BY id")
            .expect("select");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        rows
    };
    for (id, len) in &rows {
        assert_eq!(*len, payload_bytes(*id), "row {id} whole");
    }
    (conn, Some(rows.into_iter().map(|(id, _)| id).collect()))
}
