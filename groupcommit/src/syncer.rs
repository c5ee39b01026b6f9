//! The syncer: the thread that fsyncs the WAL, so that the writer need not wait for
//! the disk.
//!
//! The writer commits every transaction with `synchronous=NORMAL` (written to the WAL,
//! not fsynced) and hands the replies of the jobs that asked for durability to this
//! thread, then goes on with the next batch. The syncer takes every request waiting,
//! answers those an fsync that ended meanwhile already covered (`Request`), fsyncs
//! the WAL once for the others, and answers them. At concurrency 1 the durable jobs
//! and syncs no longer hold the runtime's lazy steps behind an fsync on the writer
//! (issue 16).
//!
//! Why this promises what `synchronous=FULL` did:
//! - An fsync covers every write to the file made before it began. A request reaches
//!   the syncer only after its commit returned, and a commit returns only after its
//!   frames are written, so the fsync that answers it covers them.
//! - The WAL is one file, so that fsync also covers every earlier commit: a power cut
//!   still keeps a prefix of commits.
//! - A checkpoint fsyncs the WAL before it copies pages back and the database after;
//!   only then may the writer start the WAL over. So frames overwritten by a restarted
//!   WAL were on disk, in the database, first.
//! - The fsync goes through SQLite's VFS, on a handle of the WAL of our own (opened
//!   through the connection's VFS), not on a file of ours: under the power-loss VFS
//!   (the crash campaign) it is what makes unsynced writes land, as SQLite's own
//!   fsync would.
//! - A failed fsync may have dropped the pages it failed to write (Linux marks them
//!   clean), so a later fsync that succeeds proves nothing: after one failure every
//!   sync and durable write answers that error until the database is opened again.

use crate::Error;
use rusqlite::{ffi, Connection};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};

/// A request to the syncer: `answer` once every commit up to number `through` is on
/// disk. A request that arrives while an fsync is under way is often covered by that
/// one (its commits ended before it began), and is then answered without another: at
/// C=1 an event's reader asked while the relay's fsync ran, and waited for a second
/// (issue 16).
pub(crate) struct Request {
    pub(crate) through: u64,
    pub(crate) answer: crate::Reply,
}

/// How far the WAL is known to be on disk, counted in commits. The writer numbers its
/// commits; a reader that saw a commit's data finds `written` at or past its number.
#[derive(Default)]
pub(crate) struct Progress {
    /// The last commit begun: set before its data becomes visible.
    written: AtomicU64,
    /// The last commit ended (committed or rolled back): its frames, if any, are in
    /// the WAL file.
    ended: AtomicU64,
    /// Every commit up to this one is on disk (an fsync begun after it ended).
    synced: AtomicU64,
    /// The fsync that failed, once one has.
    failed: Mutex<Option<Error>>,
    /// Whether the syncer is between taking requests and answering them, and its
    /// signal when it is done.
    fsyncing: Mutex<bool>,
    fsynced: Condvar,
    /// Told of every fsync: how long it took in seconds, whether it succeeded.
    pub(crate) observer: OnceLock<crate::SyncObserver>,
}

impl Progress {
    /// Before commit `seq` makes its data visible.
    pub(crate) fn begin(&self, seq: u64) {
        self.written.store(seq, SeqCst);
    }

    /// After commit `seq` returned, committed or not.
    pub(crate) fn end(&self, seq: u64) {
        self.ended.store(seq, SeqCst);
    }

    /// Whether a commit whose data may have been read is not known to be on disk.
    pub(crate) fn unsynced(&self) -> bool {
        self.written.load(SeqCst) > self.synced.load(SeqCst)
    }

    /// The last commit whose data may have been read: what a sync must cover.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(SeqCst)
    }

    pub(crate) fn failed(&self) -> Option<Error> {
        crate::lock(&self.failed).clone()
    }

    /// Whether an fsync is under way. A durable job committed now would wait for the
    /// one after it anyway, so the writer lets such jobs gather meanwhile
    /// (`wait_for_fsync`): committed one by one they would make many small commits,
    /// each rewriting its pages into the WAL (saga4 at C=128 lost about a sixth of
    /// its throughput that way).
    pub(crate) fn fsyncing(&self) -> bool {
        *crate::lock(&self.fsyncing)
    }

    /// Returns once no fsync is under way.
    pub(crate) fn wait_for_fsync(&self) {
        let mut fsyncing = crate::lock(&self.fsyncing);
        while *fsyncing {
            fsyncing = self
                .fsynced
                .wait(fsyncing)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn set_fsyncing(&self, on: bool) {
        *crate::lock(&self.fsyncing) = on;
        if !on {
            self.fsynced.notify_all();
        }
    }
}

/// The WAL opened a second time through the VFS of the connection that writes it.
struct WalHandle {
    /// SQLite's file object: `szOsFile` bytes, 8-aligned, owned here.
    file: Vec<u64>,
    /// The WAL's name as SQLite gave it, NUL-terminated twice (a VFS may look past the
    /// first NUL for URI parameters); it must outlive the open file.
    name: Vec<u8>,
}

// SAFETY: the handle is used by the syncer thread alone once it is moved there; the
// VFS's file methods may be called from any thread, one call at a time per handle.
unsafe impl Send for WalHandle {}

impl WalHandle {
    /// Opens the WAL of `conn`'s main database through `conn`'s own VFS. The WAL must
    /// exist (it does once a WAL-mode connection has run a statement).
    fn open(conn: &Connection) -> Result<WalHandle, Error> {
        let failed = |what: &str, rc: c_int| Error::Sqlite {
            code: None,
            message: format!("cannot open the WAL for the syncer: {what} (SQLite error {rc})"),
        };
        // SAFETY: the handle is the writer's open connection; the pointers SQLite
        // returns are valid while it is open, and we copy what we keep.
        unsafe {
            let db = conn.handle();
            let mut vfs: *mut ffi::sqlite3_vfs = std::ptr::null_mut();
            let rc = ffi::sqlite3_file_control(
                db,
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_VFS_POINTER,
                (&mut vfs as *mut *mut ffi::sqlite3_vfs).cast::<c_void>(),
            );
            if rc != ffi::SQLITE_OK || vfs.is_null() {
                return Err(failed("no VFS", rc));
            }
            let main = ffi::sqlite3_db_filename(db, c"main".as_ptr());
            let wal = ffi::sqlite3_filename_wal(main);
            if main.is_null() || wal.is_null() {
                return Err(failed("no file name", ffi::SQLITE_MISUSE));
            }
            let mut name = CStr::from_ptr(wal).to_bytes_with_nul().to_vec();
            name.extend_from_slice(&[0; 3]);
            let words = ((*vfs).szOsFile as usize).div_ceil(8);
            let mut handle = WalHandle {
                file: vec![0; words],
                name,
            };
            let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_WAL;
            let mut out_flags: c_int = 0;
            let open = (*vfs)
                .xOpen
                .ok_or_else(|| failed("no xOpen", ffi::SQLITE_MISUSE))?;
            let rc = open(
                vfs,
                handle.name.as_ptr().cast::<c_char>(),
                handle.file_ptr(),
                flags,
                &mut out_flags,
            );
            if rc != ffi::SQLITE_OK {
                // SQLite calls no xClose on a file whose xOpen failed: Drop must not.
                (*handle.file_ptr()).pMethods = std::ptr::null();
                return Err(failed("xOpen failed", rc));
            }
            Ok(handle)
        }
    }

    fn file_ptr(&mut self) -> *mut ffi::sqlite3_file {
        self.file.as_mut_ptr().cast()
    }

    /// fsync (fdatasync where the VFS prefers it, as SQLite's own WAL syncs do).
    fn sync(&mut self) -> Result<(), Error> {
        let file = self.file_ptr();
        // SAFETY: the file was opened by `open` and is closed only by Drop.
        let rc = unsafe {
            match (*(*file).pMethods).xSync {
                Some(sync) => sync(file, ffi::SQLITE_SYNC_NORMAL),
                None => ffi::SQLITE_MISUSE,
            }
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(Error::Sqlite {
                code: Some(rusqlite::ffi::Error::new(rc).code),
                message: format!(
                    "an fsync of the WAL failed (SQLite error {rc}): what was written since \
                     the last one may not be on disk, so the store refuses to promise more \
                     until it is opened again"
                ),
            })
        }
    }
}

impl Drop for WalHandle {
    fn drop(&mut self) {
        let file = self.file_ptr();
        // SAFETY: opened by `open`; pMethods is null if it failed.
        unsafe {
            if let Some(methods) = (*file).pMethods.as_ref() {
                if let Some(close) = methods.xClose {
                    close(file);
                }
            }
        }
    }
}

/// Starts the syncer of `conn`'s WAL: it ends once every sender of its channel is
/// gone, having answered everything sent.
pub(crate) fn spawn(
    conn: &Connection,
    progress: Arc<Progress>,
) -> Result<(mpsc::Sender<Vec<Request>>, std::thread::JoinHandle<()>), Error> {
    let wal = WalHandle::open(conn)?;
    let (tx, rx) = mpsc::channel::<Vec<Request>>();
    let handle = std::thread::Builder::new()
        .name("oms-db-sync".into())
        .spawn(move || run(wal, &rx, &progress))
        .map_err(|e| Error::Sqlite {
            code: None,
            message: format!("cannot start the store's syncer: {e}"),
        })?;
    Ok((tx, handle))
}

/// Takes every request waiting; answers at once those an fsync that ended meanwhile
/// covered, fsyncs once for the others, answers them.
fn run(mut wal: WalHandle, rx: &mpsc::Receiver<Vec<Request>>, progress: &Progress) {
    while let Ok(mut waiting) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            waiting.extend(more);
        }
        // `synced` only counts commits that ended before a successful fsync began.
        let synced = progress.synced.load(SeqCst);
        let (covered, uncovered): (Vec<Request>, Vec<Request>) =
            waiting.into_iter().partition(|r| r.through <= synced);
        let poisoned = progress.failed();
        for r in covered {
            (r.answer)(poisoned.clone().map_or(Ok(()), Err));
        }
        if uncovered.is_empty() {
            continue;
        }
        // Every request here was sent after the data it asks for was written to the
        // WAL (a commit's frames are written before anyone can read it), so an fsync
        // begun now covers it.
        progress.set_fsyncing(true);
        let outcome = sync_once(&mut wal, progress);
        progress.set_fsyncing(false);
        for r in uncovered {
            (r.answer)(outcome.clone());
        }
    }
}

fn sync_once(wal: &mut WalHandle, progress: &Progress) -> Result<(), Error> {
    if let Some(e) = progress.failed() {
        return Err(e);
    }
    // Read before the fsync begins: every commit ended by now is covered by it.
    let covered = progress.ended.load(SeqCst);
    let began = std::time::Instant::now();
    let synced = wal.sync();
    if let Some(o) = progress.observer.get() {
        o(began.elapsed().as_secs_f64(), synced.is_ok());
    }
    match synced {
        Ok(()) => {
            progress.synced.fetch_max(covered, SeqCst);
            Ok(())
        }
        Err(e) => {
            *crate::lock(&progress.failed) = Some(e.clone());
            Err(e)
        }
    }
}
