//! One SQLite database, written through one connection with group commit.
//!
//! A writer thread serves the write connection. Callers hand it closures; it runs every
//! closure waiting at that moment inside one transaction (each in its own savepoint, so
//! one failing write does not undo the others), commits once, and only then answers
//! each caller. Many callers' writes therefore share one commit and one fsync. A caller
//! that finds the writer idle (nothing queued, the connection free) commits its closure
//! on its own thread instead, the same way: at low concurrency the hand-off to the
//! writer thread and back cost more than the commit.
//!
//! Durable or lazy: a durable write is fsynced before it is answered; a lazy one is
//! committed and visible at once but fsynced only with the next durable commit or
//! [`Db::sync`]. The fsync is not the writer's: a thread of its own (`syncer`) fsyncs
//! the WAL while the writer commits the next batch. One database has one WAL, and a power
//! cut keeps a prefix of a WAL: it loses at most a suffix of commits, never one without
//! those before it. So every store whose writes must agree after a crash (the runtime's
//! steps and the order activities' items, issue 16) lives in one `Db` and may write
//! lazily; whoever tells the outside world of what was written calls `sync` first.
//!
//! Both `saga-core` (the runtime) and `activities` (the order store) build on this
//! crate: activities know nothing of the orchestrator, so the writer they share sits
//! below both.

use dbkey::DbKey;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use syncer::{Progress, Request};

mod syncer;

/// Why a write or read could not be done. Clone: one commit's failure is every job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// SQLite refused; `code` says why when SQLite gave one (a full disk, a busy lock).
    Sqlite {
        code: Option<rusqlite::ErrorCode>,
        message: String,
    },
    /// The database was closed: nothing was written.
    Closed,
    /// The writer thread ended before answering (it panicked, or the process is ending).
    Stopped,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sqlite { message, .. } => f.write_str(message),
            Error::Closed => f.write_str("the store is closed"),
            Error::Stopped => f.write_str("the store writer stopped"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        let code = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
            _ => None,
        };
        Error::Sqlite {
            code,
            message: e.to_string(),
        }
    }
}

/// How a database is opened: names and sizes that differ between its users.
#[derive(Debug, Clone)]
pub struct Options {
    /// The writer thread's name (what `top -H` and `perf` show).
    pub writer_thread: &'static str,
    /// The writer's page cache, in KiB (SQLite's default is 2,000 KiB; a writer's own
    /// writes do not empty its cache, as another connection's empty a reader's).
    pub writer_cache_kib: i64,
    /// Prepared statements each connection keeps (rusqlite's 16 were fewer than the
    /// runtime and the API use).
    pub statement_cache: usize,
    /// Most jobs one transaction takes; bounds the latency a large backlog adds.
    pub max_batch: usize,
    /// Frames the WAL may hold before the writer checkpoints it all and restarts it
    /// (`Committer::restart_large_wal`).
    pub wal_limit_frames: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            writer_thread: "oms-db-writer",
            writer_cache_kib: 32 * 1024,
            statement_cache: 128,
            max_batch: 1024,
            // 64 MiB of 4 KiB pages.
            wal_limit_frames: 16_384,
        }
    }
}

/// Told of every commit: how many jobs it took, how long it took in seconds (BEGIN to
/// COMMIT; the fsync is the syncer's), whether it committed.
pub type CommitObserver = Arc<dyn Fn(usize, f64, bool) + Send + Sync>;

/// Told of every fsync of the WAL: how long it took in seconds, whether it succeeded.
pub type SyncObserver = Box<dyn Fn(f64, bool) + Send + Sync>;

/// Told whether the transaction it was registered in committed (`on_commit`).
pub type CommitHook = Box<dyn FnOnce(bool)>;

thread_local! {
    /// The hooks registered by the jobs of the commit this thread is running; None
    /// while it runs none (`Committer::commit` sets it around its jobs and COMMIT).
    static HOOKS: std::cell::RefCell<Option<Vec<CommitHook>>> =
        const { std::cell::RefCell::new(None) };
}

/// Has `hook` told, on this thread, how the transaction of the job calling it ended:
/// `true` right after its COMMIT succeeded, before any later commit begins and before
/// any of its jobs is answered; `false` if the job's savepoint, or the whole commit,
/// was rolled back. What a job changed becomes visible to readers at the COMMIT, so a
/// cache of what readers would read (activities' `SqliteStore`) is kept in step by
/// hooks, in commit order. Outside a job (no commit running on this thread) the hook is
/// handed back, not run.
pub fn on_commit(hook: CommitHook) -> Result<(), CommitHook> {
    HOOKS.with(|h| match h.borrow_mut().as_mut() {
        Some(hooks) => {
            hooks.push(hook);
            Ok(())
        }
        None => Err(hook),
    })
}

/// How many hooks this thread's commit has so far (a savepoint's mark).
fn hooks_registered() -> usize {
    HOOKS.with(|h| h.borrow().as_ref().map_or(0, Vec::len))
}

/// Runs, with `committed`, the hooks registered since `mark` (all of them from 0), and
/// forgets them.
fn run_hooks_from(mark: usize, committed: bool) {
    let hooks = HOOKS.with(|h| match h.borrow_mut().as_mut() {
        Some(hooks) if hooks.len() > mark => hooks.split_off(mark),
        _ => Vec::new(),
    });
    for hook in hooks {
        hook(committed);
    }
}

/// What a job's caller, or a sync's, is answered with once committed (or on disk).
type Reply = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// Runs a job's closure on the connection, or with None answers without running it.
type Run = Box<dyn FnOnce(Option<(&Connection, Isolation)>) -> Ran + Send>;

/// How a job is kept apart from the others of its transaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isolation {
    /// In a savepoint of its own, rolled back alone if the job fails.
    Savepoint,
    /// Bare: the job is the transaction's first, so if it fails the committer rolls
    /// the whole transaction back and begins another. Every page a job changes inside
    /// a savepoint is first copied to the savepoint's journal; at about two jobs a
    /// commit under load, the first job's copies were half of them.
    First,
}

/// A job's answer to come, and whether it failed (then its changes must not commit).
struct Ran {
    reply: Reply,
    failed: bool,
}

/// A closure for the writer, and whether its commit must be fsynced before it is
/// answered.
struct Job {
    /// Runs the closure on the connection, or with None answers without running it
    /// (the transaction could not begin).
    run: Run,
    durable: bool,
}

/// A job for the committer that runs `f`, and where its result will come once its
/// commit ends.
fn job<R, E>(
    durable: bool,
    f: impl FnOnce(&Connection) -> Result<R, E> + Send + 'static,
) -> (Job, tokio::sync::oneshot::Receiver<Result<R, E>>)
where
    R: Send + 'static,
    E: From<Error> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let run = Box::new(move |conn: Option<(&Connection, Isolation)>| {
        let result = conn.map(|(c, isolation)| match isolation {
            Isolation::Savepoint => savepoint(c, f),
            Isolation::First => f(c),
        });
        let failed = matches!(result, Some(Err(_)));
        let reply = Box::new(move |commit: Result<(), Error>| {
            let _ = tx.send(match (commit, result) {
                (Ok(()), Some(result)) => result,
                (Err(e), _) => Err(E::from(e)),
                (Ok(()), None) => Err(E::from(Error::Stopped)),
            });
        }) as Reply;
        Ran { reply, failed }
    });
    (Job { run, durable }, rx)
}

/// A database and its writer. Clones share both.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Jobs sent to the writer thread and not yet taken by it.
    queued: Arc<AtomicUsize>,
    /// The write connection, for the writer thread or a caller that finds it idle.
    committer: Arc<Mutex<Committer>>,
    reads: Reads,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tells the checkpointer thread to stop.
    stop_checkpoints: Arc<AtomicBool>,
    /// The checkpointer thread, joined at close (its connection closed before the
    /// writer's); None in memory.
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    observer: Arc<OnceLock<CommitObserver>>,
    /// How far the WAL is on disk; None in memory, where nothing is.
    progress: Option<Arc<Progress>>,
    /// The syncer's requests (`Db::sync`), for a database on disk.
    syncs: Mutex<Option<mpsc::Sender<Vec<Request>>>>,
}

impl Drop for Inner {
    /// The last clone gone: the writer ends as its channel closes; the checkpointer is
    /// told here.
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, SeqCst);
    }
}

/// Where reads run: a file has its own read connections; an in-memory database has
/// only the writer's, shared under a lock.
enum Reads {
    File {
        path: PathBuf,
        key: Option<DbKey>,
        statement_cache: usize,
        pool: Mutex<Vec<Connection>>,
    },
    Shared(Arc<Mutex<Committer>>),
}

impl Db {
    /// Opens (creating if needed) the database at `path` in WAL mode, runs `setup` on
    /// the write connection (its schema), then starts the writer and the checkpointer.
    /// A file that is not a database, or not with this key, is reported here.
    pub fn open<E: From<Error>>(
        path: &Path,
        key: Option<&DbKey>,
        options: &Options,
        setup: impl FnOnce(&Connection) -> Result<(), E>,
    ) -> Result<Db, E> {
        let conn = open_connection(path, false, key, options.statement_cache)?;
        conn.pragma_update(None, "cache_size", -options.writer_cache_kib)
            .map_err(Error::from)?;
        // Before WAL mode (which writes the header) and the schema: SQLite takes it only
        // on a database without tables (an older file keeps its mode). See `finish`.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(Error::from)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| Error::Sqlite {
                code: None,
                message: format!("{} is not a usable SQLite database: {e}", path.display()),
            })?;
        // Checkpoints copy the WAL into the database and fsync it. Left to the writer,
        // they stall every commit queued behind them; a thread of their own runs them
        // (PASSIVE: never blocking the writer) while the writer keeps committing.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(Error::from)?;
        common_pragmas(&conn)?;
        setup(&conn)?;
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        let checkpoints = open_connection(path, false, key, 4)?;
        let checkpointer = spawn_checkpointer(checkpoints, stop_checkpoints.clone())?;
        let reads = Reads::File {
            path: path.to_path_buf(),
            key: key.cloned(),
            statement_cache: options.statement_cache,
            pool: Mutex::new(Vec::new()),
        };
        let progress = Arc::new(Progress::default());
        let (syncs, syncer) = syncer::spawn(&conn, progress.clone())?;
        // From here on SQLite does not fsync the commits: the syncer does. (The schema,
        // above, was committed with synchronous=FULL.)
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(Error::from)?;
        let disk = Disk { progress, syncs };
        let committer = Arc::new(Mutex::new(Committer::new(
            conn,
            Some(disk),
            options.wal_limit_frames,
        )));
        Ok(Db::start(
            committer,
            reads,
            Some(syncer),
            (stop_checkpoints, Some(checkpointer)),
            options,
        )?)
    }

    /// A database in memory, for tests: reads share the writer's connection.
    pub fn in_memory<E: From<Error>>(
        options: &Options,
        setup: impl FnOnce(&Connection) -> Result<(), E>,
    ) -> Result<Db, E> {
        let conn = Connection::open_in_memory().map_err(Error::from)?;
        conn.set_prepared_statement_cache_capacity(options.statement_cache);
        common_pragmas(&conn)?;
        setup(&conn)?;
        let committer = Arc::new(Mutex::new(Committer::new(
            conn,
            None,
            options.wal_limit_frames,
        )));
        let reads = Reads::Shared(committer.clone());
        let stop = Arc::new(AtomicBool::new(true));
        Ok(Db::start(committer, reads, None, (stop, None), options)?)
    }

    fn start(
        committer: Arc<Mutex<Committer>>,
        reads: Reads,
        syncer: Option<std::thread::JoinHandle<()>>,
        (stop_checkpoints, checkpointer): (Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>),
        options: &Options,
    ) -> Result<Db, Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (observer, progress, syncs) = {
            let c = lock(&committer);
            let disk = c.disk.as_ref();
            (
                c.observer.clone(),
                disk.map(|d| d.progress.clone()),
                disk.map(|d| d.syncs.clone()),
            )
        };
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            rx,
            queued: queued.clone(),
            committer: committer.clone(),
            syncer,
            progress: progress.clone(),
            max_batch: options.max_batch,
        };
        let handle = std::thread::Builder::new()
            .name(options.writer_thread.into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Sqlite {
                code: None,
                message: format!("cannot start the store writer: {e}"),
            })?;
        Ok(Db {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                queued,
                committer,
                reads,
                writer: Mutex::new(Some(handle)),
                stop_checkpoints,
                checkpointer: Mutex::new(checkpointer),
                observer,
                progress,
                syncs: Mutex::new(syncs),
            }),
        })
    }

    /// Tells `observer` of every commit from now on (the first observer set stays).
    pub fn observe(&self, observer: CommitObserver) {
        let _ = self.inner.observer.set(observer);
    }

    /// Tells `observer` of every fsync of the WAL from now on (the first observer set
    /// stays; a database in memory makes none).
    pub fn observe_syncs(&self, observer: SyncObserver) {
        if let Some(progress) = &self.inner.progress {
            let _ = progress.observer.set(observer);
        }
    }

    /// Runs `f` in the next group commit, rolled back alone if it fails (in a savepoint
    /// of its own, or with the transaction when it is the first: [`Isolation`]), and
    /// returns its result once committed: and fsynced if `durable`, else
    /// visible to every reader and on disk with the next durable commit or [`Db::sync`].
    pub async fn write<R, E>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (job, rx) = job(durable, f);
        let sender = lock(&self.inner.jobs).clone().ok_or(Error::Closed)?;
        if let Some(job) = self.commit_here(job) {
            self.inner.queued.fetch_add(1, SeqCst);
            if sender.send(job).is_err() {
                self.inner.queued.fetch_sub(1, SeqCst);
                return Err(E::from(Error::Closed));
            }
        }
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Commits `job` on the caller's thread if the writer is idle (nothing queued, the
    /// connection free), else hands it back for the writer's queue. At low concurrency
    /// a job then costs no hand-off to the writer thread and back, two thread switches
    /// that were most of a small commit's time (issue 16); under load the queue is
    /// rarely empty, and jobs still share the writer's group commits.
    fn commit_here(&self, job: Job) -> Option<Job> {
        let fsyncing = self.inner.progress.as_ref().is_some_and(|p| p.fsyncing());
        if self.inner.queued.load(SeqCst) != 0 || (job.durable && fsyncing) {
            return Some(job);
        }
        let mut committer = match self.inner.committer.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Some(job),
        };
        // A WAL past its limit is restarted by the writer thread, after its next commit:
        // the restart waits for readers, which a caller's (async) thread must not.
        if committer.finished || committer.wal_past_limit() {
            return Some(job);
        }
        committer.commit(vec![job]);
        None
    }

    /// Returns once everything committed before the call is on disk: at once when no
    /// commit is waiting for an fsync; when the fsync under way ends, if it covers
    /// them; else after one fsync shared with whoever else asks. It goes to the syncer
    /// directly, not behind the writer's queue: what the caller saw committed is in
    /// the WAL file already.
    pub async fn sync(&self) -> Result<(), Error> {
        let Some(progress) = &self.inner.progress else {
            return Ok(());
        };
        if let Some(e) = progress.failed() {
            return Err(e);
        }
        if !progress.unsynced() {
            return Ok(());
        }
        self.sync_through(progress.written()).await
    }

    /// Asks the syncer to answer once every commit up to number `through` is on disk.
    async fn sync_through(&self, through: u64) -> Result<(), Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = Request {
            through,
            answer: Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        };
        let sender = lock(&self.inner.syncs).clone().ok_or(Error::Closed)?;
        sender.send(vec![request]).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Whether a commit may not be on disk yet (what [`Db::sync`] would wait for).
    pub fn unsynced(&self) -> bool {
        self.inner.progress.as_ref().is_some_and(|p| p.unsynced())
    }

    /// Runs a read: on a pooled read-only connection for a file (WAL lets reads run
    /// beside the writer), on the one connection in memory.
    pub fn read<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.inner.reads {
            Reads::Shared(committer) => f(&lock(committer).conn),
            Reads::File {
                path,
                key,
                statement_cache,
                pool,
            } => {
                let pooled = lock(pool).pop();
                let conn = match pooled {
                    Some(c) => c,
                    None => open_connection(path, true, key.as_ref(), *statement_cache)?,
                };
                let result = f(&conn);
                lock(pool).push(conn);
                result
            }
        }
    }

    /// Stops the writer once the jobs already queued are committed; it then gives the
    /// free pages back, checkpoints the WAL into the database (`finish`) and closes its
    /// connection. Later writes fail (`Error::Closed`); reads still work. The
    /// checkpointer's connection and the idle readers' are closed first, so that the
    /// writer's is the last one open and SQLite removes the `-wal` and `-shm` files
    /// as it closes: a clean stop leaves the database file alone (a read still running
    /// keeps them, harmlessly).
    pub fn close(&self) {
        self.inner.stop_checkpoints.store(true, SeqCst);
        if let Some(checkpointer) = lock(&self.inner.checkpointer).take() {
            checkpointer.thread().unpark();
            let _ = checkpointer.join();
        }
        if let Reads::File { pool, .. } = &self.inner.reads {
            lock(pool).clear();
        }
        lock(&self.inner.jobs).take();
        lock(&self.inner.syncs).take();
        let writer = lock(&self.inner.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// A lock whose holder panicked is still usable: each use is one statement or one
/// transaction, which SQLite leaves consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_connection(
    path: &Path,
    read_only: bool,
    key: Option<&DbKey>,
    statement_cache: usize,
) -> Result<Connection, Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let failed = |e: rusqlite::Error| Error::Sqlite {
        code: None,
        message: format!("cannot open {}: {e}", path.display()),
    };
    let conn = Connection::open_with_flags(path, flags).map_err(failed)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    dbkey::unlock(&conn, path, key).map_err(|message| Error::Sqlite {
        code: None,
        message,
    })?;
    conn.set_prepared_statement_cache_capacity(statement_cache);
    // Not mapped (`mmap_size` stays 0): a read transaction that finds the database
    // changed unmaps the whole file as it empties its cache, and at a commit's pace that
    // munmap, with its TLB shootdown on the other core, cost more than the preads it
    // saved (issue 16: mapped, 379-419 orders/s at C=64; not, 452-545, alternated).
    Ok(conn)
}

/// Settings and the one table every database of this crate has.
fn common_pragmas(conn: &Connection) -> Result<(), Error> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Each job runs in a savepoint; its sub-journal need not touch the disk.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Checkpoints the WAL every quarter second while there is any: often enough that
/// the WAL stays small, on its own connection so the writer never waits for it.
fn spawn_checkpointer(
    conn: Connection,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name("oms-db-checkpoint".into())
        .spawn(move || loop {
            // Parked, not asleep: `Db::close` unparks it to stop without waiting.
            std::thread::park_timeout(std::time::Duration::from_millis(250));
            if stop.load(SeqCst) {
                break;
            }
            // A busy database answers SQLITE_BUSY; the next round tries again.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        })
        .map_err(|e| Error::Sqlite {
            code: None,
            message: format!("cannot start the checkpointer: {e}"),
        })
}

/// Has SQLite store in `frames` how many frames the WAL holds after each commit on
/// `conn` (`sqlite3_wal_hook`, the hook SQLite's own auto-checkpoint uses; this
/// database turns that off with `wal_autocheckpoint=0`, which must come first, as it
/// clears the hook). rusqlite does not wrap the hook. `frames` must outlive `conn`.
fn count_wal_frames(conn: &Connection, frames: &Arc<AtomicU32>) {
    unsafe extern "C" fn on_commit(
        frames: *mut std::ffi::c_void,
        _db: *mut rusqlite::ffi::sqlite3,
        _schema: *const std::ffi::c_char,
        count: std::ffi::c_int,
    ) -> std::ffi::c_int {
        // SAFETY: `frames` is the AtomicU32 the Committer keeps alive past its
        // connection, given below; SQLite calls this only while that connection is open.
        let frames = unsafe { &*(frames as *const AtomicU32) };
        frames.store(u32::try_from(count).unwrap_or(0), Relaxed);
        rusqlite::ffi::SQLITE_OK
    }
    // SAFETY: the handle is the open connection's; the pointer is valid while it is
    // open (see `Committer::wal_frames`), and `on_commit` only reads through it.
    unsafe {
        rusqlite::ffi::sqlite3_wal_hook(
            conn.handle(),
            Some(on_commit),
            Arc::as_ptr(frames) as *mut std::ffi::c_void,
        );
    }
}

/// Runs `f` in a savepoint of its own: rolled back alone if `f` fails. Every job but a
/// transaction's first runs in one; a job that applies several batches, each all or
/// nothing, nests one per batch.
pub fn savepoint<R, E: From<Error>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, E>,
) -> Result<R, E> {
    // Cached statements: parsing these anew for every job showed in profiles.
    let execute = |sql: &str| -> Result<(), Error> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    let mark = hooks_registered();
    execute("SAVEPOINT job")?;
    let result = f(conn);
    if result.is_err() {
        // What it registered will not commit, even if the transaction does.
        run_hooks_from(mark, false);
        execute("ROLLBACK TO job")?;
    }
    execute("RELEASE job")?;
    result
}

/// What a database on disk has that one in memory has not: a WAL, and its syncer.
struct Disk {
    progress: Arc<Progress>,
    /// The syncer's requests.
    syncs: mpsc::Sender<Vec<Request>>,
}

/// The write connection and what committing on it needs. Whoever holds its lock
/// commits: the writer thread, or a caller that found the writer idle
/// (`Db::commit_here`).
struct Committer {
    conn: Connection,
    /// None in memory.
    disk: Option<Disk>,
    observer: Arc<OnceLock<CommitObserver>>,
    /// Commits begun, numbering them for `Progress`.
    commits: u64,
    /// Set once the writer has given the free pages back and checkpointed, at close:
    /// nothing commits after.
    finished: bool,
    /// Frames in the WAL after the last commit, as SQLite's WAL hook tells them. It
    /// holds the pointer the hook is given, so it comes after `conn`: fields drop in
    /// order, and the connection is closed before it goes.
    wal_frames: Arc<AtomicU32>,
    wal_limit_frames: u32,
    /// No restart is tried before this commit: one that found the WAL busy is tried
    /// again 64 commits later, not waited for again by every commit.
    restart_from_commit: u64,
}

/// The writer thread's side: its queue, and the syncer it stops at the end.
struct Writer {
    rx: mpsc::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    committer: Arc<Mutex<Committer>>,
    syncer: Option<std::thread::JoinHandle<()>>,
    /// The syncer's progress, to let durable jobs gather while it fsyncs.
    progress: Option<Arc<Progress>>,
    max_batch: usize,
}

impl Writer {
    /// Takes every job waiting, runs them in one transaction, commits once, answers
    /// each (a durable job once the syncer has fsynced the WAL). A durable job at the
    /// head of the queue first waits out an fsync under way, so that the jobs behind it
    /// gather into one commit (`Progress::fsyncing`); a lazy one is committed at once.
    /// Ends when every sender is gone (the `Db` closed or dropped).
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            if first.durable {
                if let Some(progress) = &self.progress {
                    progress.wait_for_fsync();
                }
            }
            let mut c = lock(&self.committer);
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(batch.len(), SeqCst);
            c.commit(batch);
            c.restart_large_wal();
        }
        let mut c = lock(&self.committer);
        c.finished = true;
        // Every durable job answered before the connection checkpoints and closes.
        c.disk.take();
        if let Some(syncer) = self.syncer {
            let _ = syncer.join();
        }
        finish(&c.conn);
        if self.progress.is_some() {
            // On disk (in memory, reads still use this connection): closed now, the
            // last one open if `Db::close` closed the others, so SQLite removes the
            // -wal and -shm files. Nothing commits after `finished`.
            if let Ok(placeholder) = Connection::open_in_memory() {
                let _ = std::mem::replace(&mut c.conn, placeholder).close();
            }
        }
    }
}

impl Committer {
    fn new(conn: Connection, disk: Option<Disk>, wal_limit_frames: u32) -> Committer {
        let wal_frames = Arc::new(AtomicU32::new(0));
        count_wal_frames(&conn, &wal_frames);
        Committer {
            conn,
            disk,
            observer: Arc::default(),
            commits: 0,
            finished: false,
            wal_frames,
            wal_limit_frames,
            restart_from_commit: 0,
        }
    }

    /// Whether the WAL on disk holds more frames than its limit.
    fn wal_past_limit(&self) -> bool {
        self.disk.is_some() && self.wal_frames.load(Relaxed) > self.wal_limit_frames
    }

    /// Under constant load the checkpointer's PASSIVE checkpoints never catch the
    /// writer up (a reader is always in the WAL), so SQLite never starts it over, and it
    /// would only grow. Past the limit the writer checkpoints it all and restarts it,
    /// waiting for the readers in it: quick, as the checkpointer has copied almost
    /// every frame. RESTART, not TRUNCATE: the next commits overwrite the file's
    /// pages, cached and allocated already, rather than extend an emptied file, where
    /// every frame written took a new page-cache page, zeroed, and a block reserved,
    /// and every fsync allocated them (the truncation itself was 1% of the server's
    /// CPU at C=64). The file stays at about the limit while the database is open;
    /// a close removes it. Only the writer thread restarts (`Db::commit_here` leaves
    /// the jobs to it meanwhile): the wait for readers must not block a caller's
    /// async thread.
    fn restart_large_wal(&mut self) {
        if !self.wal_past_limit() || self.commits < self.restart_from_commit {
            return;
        }
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        if !matches!(busy, Ok(0)) {
            self.restart_from_commit = self.commits + 64;
        }
    }

    /// Commits `batch` and answers its jobs: the lazy ones at once, the durable ones
    /// through the syncer.
    fn commit(&mut self, batch: Vec<Job>) {
        let began = std::time::Instant::now();
        let jobs = batch.len();
        // Hooks left by a commit that panicked were never told: dropped here, which
        // leaves a cache they kept waiting (see `on_commit`'s users), never misled.
        HOOKS.with(|h| *h.borrow_mut() = Some(Vec::new()));
        let Some(replies) = self.run_jobs(batch) else {
            HOOKS.with(|h| *h.borrow_mut() = None);
            return;
        };
        let conn = &self.conn;
        self.commits += 1;
        let progress = self.disk.as_ref().map(|d| &d.progress);
        if let Some(p) = progress {
            // Before the commit makes the data visible: whoever reads it finds it unsynced.
            p.begin(self.commits);
        }
        let committed = conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(Error::from);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        run_hooks_from(0, committed.is_ok());
        HOOKS.with(|h| *h.borrow_mut() = None);
        if let Some(p) = progress {
            p.end(self.commits);
        }
        if let Some(o) = self.observer.get() {
            o(jobs, began.elapsed().as_secs_f64(), committed.is_ok());
        }
        self.answer(replies, committed);
    }

    /// Begins a transaction and runs `batch`'s jobs in it, the first bare and the others
    /// each in a savepoint ([`Isolation`]); a bare job that fails is rolled back with
    /// the transaction, which begins again for the jobs after it. Answers each job's
    /// reply and whether it wants an fsync, or None when a transaction could not begin
    /// (every job not yet run has then been answered with the error).
    fn run_jobs(&mut self, batch: Vec<Job>) -> Option<Vec<(Reply, bool)>> {
        let conn = &self.conn;
        let mut replies: Vec<(Reply, bool)> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        'transaction: loop {
            if let Err(e) = conn
                .prepare_cached("BEGIN IMMEDIATE")
                .and_then(|mut s| s.execute([]))
            {
                let e = Error::from(e);
                // The jobs that ran failed and are answered with their own errors; the
                // rest do not run: each caller gets the error instead.
                for (reply, _) in replies {
                    reply(Ok(()));
                }
                for job in jobs {
                    ((job.run)(None).reply)(Err(e.clone()));
                }
                return None;
            }
            let mut isolation = Isolation::First;
            for job in jobs.by_ref() {
                let ran = (job.run)(Some((conn, isolation)));
                replies.push((ran.reply, job.durable));
                if ran.failed && isolation == Isolation::First {
                    // Nothing else is in the transaction: it all goes.
                    run_hooks_from(0, false);
                    let _ = conn.execute_batch("ROLLBACK");
                    continue 'transaction;
                }
                isolation = Isolation::Savepoint;
            }
            return Some(replies);
        }
    }

    /// Answers a commit's jobs: each with the commit's error if it failed; else a lazy
    /// one at once and a durable one once the syncer has fsynced (in memory, at once).
    fn answer(&self, replies: Vec<(Reply, bool)>, committed: Result<(), Error>) {
        let syncer = match (&committed, &self.disk) {
            (Ok(()), Some(disk)) => &disk.syncs,
            _ => {
                for (reply, _) in replies {
                    reply(committed.clone());
                }
                return;
            }
        };
        let mut durable: Vec<Request> = Vec::new();
        for (reply, wants_fsync) in replies {
            if wants_fsync {
                durable.push(Request {
                    through: self.commits,
                    answer: reply,
                });
            } else {
                reply(Ok(()));
            }
        }
        if durable.is_empty() {
            return;
        }
        if let Err(mpsc::SendError(durable)) = syncer.send(durable) {
            for r in durable {
                (r.answer)(Err(Error::Stopped));
            }
        }
    }
}

/// After the last job: the free pages returned, then the WAL copied in and truncated,
/// so a clean stop leaves one file, no larger than its data. Pages are freed as data is
/// deleted; while the server runs they are reused, so only a stop returns them. A
/// database created before `auto_vacuum=INCREMENTAL` keeps them (SQLite changes the
/// mode only by a VACUUM, which rewrites the whole file): this is then a no-op.
fn finish(conn: &Connection) {
    // Each step of the pragma frees pages: stepped to its end, it frees them all.
    if let Ok(mut st) = conn.prepare("PRAGMA incremental_vacuum") {
        if let Ok(mut rows) = st.query([]) {
            while let Ok(Some(_)) = rows.next() {}
        }
    }
    // Said when it cannot: the data dir is then left with its WAL (replayed at the next
    // open, nothing lost), and whoever measures the data dir at rest should know.
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    if !matches!(busy, Ok(0)) {
        let why = busy.map_or_else(|e| e.to_string(), |_| "busy".to_string());
        let path = conn.path().unwrap_or("the database");
        eprintln!("groupcommit: the WAL of {path} was left at close ({why}): it is replayed at the next open");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("groupcommit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("db.sqlite3")
    }

    fn open(path: &Path) -> Db {
        Db::open(path, None, &Options::default(), |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS a (k TEXT PRIMARY KEY);
                 CREATE TABLE IF NOT EXISTS b (k TEXT PRIMARY KEY);",
            )
            .map_err(Error::from)
        })
        .unwrap()
    }

    fn insert(table: &'static str, k: &str) -> impl FnOnce(&Connection) -> Result<(), Error> {
        let k = k.to_string();
        move |c| {
            c.execute(&format!("INSERT INTO {table} (k) VALUES (?1)"), [k])?;
            Ok(())
        }
    }

    fn count(db: &Db, table: &str) -> i64 {
        db.read(|c| {
            Ok::<_, Error>(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
        })
        .unwrap()
    }

    /// Commits `n` jobs of a 4 KiB row each while a thread reads without pause (as the
    /// server's readers do under load), and answers the largest the WAL file was seen.
    async fn wal_peak_bytes(path: &Path, options: &Options, n: usize) -> u64 {
        let db = Db::open(path, None, options, |c| {
            c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
                .map_err(Error::from)
        })
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let _ = count(&db, "t");
                }
            })
        };
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let mut peak = 0;
        for k in 0..n {
            db.write(false, move |c| {
                c.execute("INSERT INTO t VALUES (?1, zeroblob(4096))", [k as i64])?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
            peak = peak.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        stop.store(true, SeqCst);
        reader.join().unwrap();
        assert_eq!(count(&db, "t"), n as i64, "every row kept");
        db.close();
        peak
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_started_over_past_its_limit_while_readers_keep_reading() {
        let options = Options {
            wal_limit_frames: 256,
            ..Options::default()
        };
        let peak = wal_peak_bytes(&temp_db("wal-limit"), &options, 2000).await;
        // The limit (1 MiB), plus a commit past it, or 64 commits (about 1.1 MB here)
        // for each restart that found the checkpointer at work, which answers busy at
        // once; without the restart the WAL takes every commit (34 MB). A bound well
        // between the two, as a loaded machine makes a few restarts busy in a row.
        assert!(peak < 8_000_000, "the WAL grew to {peak} bytes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_close_leaves_the_database_file_alone() {
        let path = temp_db("clean-close");
        let db = open(&path);
        db.write(false, insert("a", "1")).await.unwrap();
        assert_eq!(count(&db, "a"), 1, "a reader was opened, and pooled");
        db.close();
        let mut files: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["db.sqlite3"], "no -wal or -shm left");
        assert_eq!(
            count(&db, "a"),
            1,
            "reads still work after close, and see the row"
        );
        let plain = Connection::open(&path).unwrap();
        let rows: i64 = plain
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the row is in the database file itself");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lazy_writes_of_two_tables_are_made_durable_by_one_sync() {
        let db = open(&temp_db("sync"));
        db.write(false, insert("a", "1")).await.unwrap();
        db.write(false, insert("b", "1")).await.unwrap();
        assert_eq!(
            (count(&db, "a"), count(&db, "b")),
            (1, 1),
            "visible once answered"
        );
        assert!(db.unsynced(), "and not yet known durable");
        db.sync().await.unwrap();
        assert!(!db.unsynced(), "one sync takes both");
        db.sync().await.unwrap();
        db.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_rolled_back_alone_and_a_closed_db_refuses_writes() {
        let db = open(&temp_db("close"));
        let writes: Vec<_> = ["x", "x", "y"]
            .into_iter()
            .map(|k| {
                let db = db.clone();
                tokio::spawn(async move { db.write(true, insert("a", k)).await })
            })
            .collect();
        let mut failed = 0;
        for w in writes {
            if let Err(e) = w.await.unwrap() {
                assert!(e.to_string().contains("UNIQUE"), "{e}");
                failed += 1;
            }
        }
        assert_eq!((failed, count(&db, "a")), (1, 2));
        db.close();
        assert_eq!(db.write(true, insert("a", "z")).await, Err(Error::Closed));
        assert_eq!(count(&db, "a"), 2, "reads still work");
    }

    /// A job's hook is told after its COMMIT (a reader then sees the row), a failed
    /// job's and a nested savepoint's rolled back with it are told false, and a hook
    /// registered outside a job is handed back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commit_hooks_are_told_how_their_transaction_ended() {
        let db = open(&temp_db("hooks"));
        let told: Arc<Mutex<Vec<(String, bool, i64)>>> = Arc::default();
        let job = |k: &'static str, fail_outer: bool, fail_inner: bool| {
            let told = told.clone();
            let reader = db.clone();
            move |c: &Connection| -> Result<(), Error> {
                savepoint(c, |c| {
                    insert("a", k)(c)?;
                    let hook: CommitHook = Box::new(move |ok| {
                        let seen = count(&reader, "a");
                        lock(&told).push((k.to_string(), ok, seen));
                    });
                    assert!(on_commit(hook).is_ok(), "inside a job");
                    if fail_inner {
                        return Err(Error::Closed);
                    }
                    Ok(())
                })?;
                if fail_outer {
                    return Err(Error::Stopped);
                }
                Ok(())
            }
        };
        db.write(false, job("x", false, false)).await.unwrap();
        assert!(db.write(false, job("y", true, false)).await.is_err());
        assert!(db.write(false, job("z", false, true)).await.is_err());
        let told = lock(&told).clone();
        let told: Vec<(&str, bool, i64)> = told
            .iter()
            .map(|(k, ok, n)| (k.as_str(), *ok, *n))
            .collect();
        // A failed job's hook runs at its rollback, before the commit: the count is
        // what was committed before it.
        assert_eq!(told, [("x", true, 1), ("y", false, 1), ("z", false, 1)]);
        assert!(on_commit(Box::new(|_| {})).is_err(), "outside a job");
        db.close();
    }

    /// One batch's jobs, some failing after they wrote: the first runs bare, so its
    /// failure takes the transaction back and a new one begins for the rest; a later
    /// one's failure takes back its savepoint. What commits is exactly the jobs that
    /// did not fail, and each hook is told so, the failed ones at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batchs_failed_jobs_leave_nothing_and_the_others_commit() {
        let db = open(&temp_db("first-fails"));
        let told: Arc<Mutex<Vec<(&'static str, bool)>>> = Arc::default();
        let batches: [&[(&'static str, bool)]; 2] = [
            &[("1", true), ("2", false), ("3", true), ("4", false)],
            &[("5", true), ("6", true)],
        ];
        for batch in batches {
            let mut answers = Vec::new();
            let jobs = batch
                .iter()
                .map(|&(k, fails)| {
                    let told = told.clone();
                    let (job, answer) = job(false, move |c: &Connection| {
                        insert("a", k)(c)?;
                        let hook: CommitHook = Box::new(move |ok| lock(&told).push((k, ok)));
                        assert!(on_commit(hook).is_ok(), "inside a job");
                        if fails {
                            return Err(Error::Stopped);
                        }
                        Ok(())
                    });
                    answers.push((answer, fails));
                    job
                })
                .collect();
            lock(&db.inner.committer).commit(jobs);
            for (answer, fails) in answers {
                let want = if fails { Err(Error::Stopped) } else { Ok(()) };
                assert_eq!(answer.await.unwrap(), want);
            }
        }
        let rows: Vec<String> = db
            .read(|c| {
                let mut stmt = c.prepare("SELECT * FROM a ORDER BY 1")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok::<_, Error>(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(rows, ["2", "4"]);
        assert_eq!(
            *lock(&told),
            [
                ("1", false),
                ("3", false),
                ("2", true),
                ("4", true),
                ("5", false),
                ("6", false)
            ]
        );
        db.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_lets_the_caller_commit_and_a_busy_one_queues() {
        let db = open(&temp_db("inline"));
        let threads: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = threads.clone();
        db.observe(Arc::new(move |_, _, _| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            lock(&seen).push(name);
        }));
        // Nothing queued: the caller commits its job itself.
        db.write(false, insert("a", "1")).await.unwrap();
        // A job that holds the connection while another arrives: that one queues, and
        // the writer thread commits it.
        let slow = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(false, |c| {
                    std::thread::sleep(std::time::Duration::from_millis(150));
                    insert("a", "2")(c)
                })
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        db.write(true, insert("a", "3")).await.unwrap();
        slow.await.unwrap().unwrap();
        let writer = Options::default().writer_thread;
        let on_writer: Vec<bool> = lock(&threads).iter().map(|t| t == writer).collect();
        assert_eq!(on_writer, [false, false, true], "{:?}", lock(&threads));
        assert_eq!(count(&db, "a"), 3);
        db.close();
    }

    /// A sync request the last fsync covered (its commits ended before that fsync
    /// began, as for a request sent while it ran) is answered without another fsync;
    /// one it did not cover gets one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_an_earlier_fsync_covered_needs_no_other() {
        let db = open(&temp_db("covered"));
        let fsyncs = Arc::new(AtomicUsize::new(0));
        let counted = fsyncs.clone();
        db.observe_syncs(Box::new(move |_, _| {
            counted.fetch_add(1, SeqCst);
        }));
        db.write(false, insert("a", "1")).await.unwrap();
        db.sync().await.unwrap();
        assert_eq!(fsyncs.load(SeqCst), 1);
        let progress = db.inner.progress.clone().unwrap();
        let covered = progress.written();
        db.sync_through(covered).await.unwrap();
        assert_eq!(
            fsyncs.load(SeqCst),
            1,
            "the first fsync covered commit {covered}"
        );
        db.write(false, insert("a", "2")).await.unwrap();
        db.sync_through(progress.written()).await.unwrap();
        assert_eq!(fsyncs.load(SeqCst), 2, "a commit after it needs one more");
        db.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_in_memory_db_reads_what_its_writer_wrote() {
        let db = Db::in_memory(&Options::default(), |c| {
            c.execute_batch("CREATE TABLE a (k TEXT PRIMARY KEY)")
                .map_err(Error::from)
        })
        .unwrap();
        db.write(false, insert("a", "1")).await.unwrap();
        assert_eq!(count(&db, "a"), 1);
        db.close();
    }
}
