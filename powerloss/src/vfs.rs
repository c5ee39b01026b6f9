//! The FFI: a `sqlite3_vfs` whose files put an [`Overlay`] in front of the unix VFS's.

use crate::overlay::{Backing, Overlay};
use crate::{Plan, EXIT_CODE};
use rusqlite::ffi;
use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};

/// The VFS's name (it is also made the default, so nobody needs to name it).
const NAME: &CStr = c"powerloss";

/// Our file: SQLite allocates `szOsFile` bytes, this header then the unix VFS's file.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// `Arc::into_raw` of the file's cache; null for a temporary file, passed through.
    cache: *const Cache,
}

/// Where the unix VFS's file starts inside ours (a multiple of 8, SQLite's alignment).
const HEADER_BYTES: usize = std::mem::size_of::<File>().next_multiple_of(8);

/// One path's unsynced writes, shared by every handle on it, kept after they close.
struct Cache {
    overlay: Mutex<Overlay>,
}

struct Installed {
    base: *mut ffi::sqlite3_vfs,
    plan: Plan,
}
// The unix VFS is static and thread-safe; the pointer is only ever read.
unsafe impl Send for Installed {}
unsafe impl Sync for Installed {}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
static CACHES: LazyLock<Mutex<HashMap<PathBuf, Arc<Cache>>>> = LazyLock::new(Default::default);
static SYNCS: AtomicU64 = AtomicU64::new(0);
static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// While on, every sync of a database, WAL or journal fails (SQLITE_IOERR_FSYNC) and
/// lands nothing: a disk that refuses, for tests of what a store does after a failed
/// fsync. Its writes stay unsynced, as the kernel's pages may after such a failure.
pub fn fail_syncs(on: bool) {
    FAILING.store(on, Ordering::SeqCst);
}

/// Makes the power-loss VFS SQLite's default. Call it before any connection opens:
/// connections opened before keep the unix VFS.
pub fn install(plan: Plan) -> Result<(), String> {
    if plan.cut_at_sync == Some(0) {
        return Err("the power cut's sync must be 1 or more (1 = the first sync)".into());
    }
    // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe; the VFS we
    // register is leaked, so it outlives every connection.
    unsafe {
        let base = ffi::sqlite3_vfs_find(std::ptr::null());
        if base.is_null() {
            return Err("SQLite has no default VFS to wrap".into());
        }
        INSTALLED
            .set(Installed { base, plan })
            .map_err(|_| "the power-loss VFS is installed already".to_string())?;
        let mut vfs: ffi::sqlite3_vfs = *base;
        vfs.szOsFile = (HEADER_BYTES + (*base).szOsFile as usize) as c_int;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 1);
        if rc != ffi::SQLITE_OK {
            return Err(format!(
                "cannot register the power-loss VFS: SQLite error {rc}"
            ));
        }
    }
    Ok(())
}

/// The syncs of databases, WALs and journals since the process started.
pub fn syncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

/// The power goes now: what was not synced is lost (a seeded part lands, one write
/// torn, when the plan has a seed) and the process ends with [`EXIT_CODE`].
pub fn power_cut() -> ! {
    // Held to the end: no handle writes to its cache while the disk is being settled,
    // and a second thread reaching its cut waits here for the exit.
    let caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(seed) = INSTALLED.get().and_then(|i| i.plan.landed_seed) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut paths: Vec<_> = caches.keys().collect();
        paths.sort();
        for path in paths {
            let overlay = caches[path]
                .overlay
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            land(path, &overlay.landed(&mut rng));
        }
    }
    let msg = format!("powerloss: the power is cut at sync {}\n", syncs());
    // SAFETY: write(2) and _exit(2) are async-signal-safe and need no state of ours;
    // _exit runs no destructor and flushes nothing, as a power cut would not.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(EXIT_CODE)
    }
}

/// Writes what landed straight to the file: the disk's last act.
fn land(path: &std::path::Path, landed: &[crate::overlay::Landed]) {
    if landed.is_empty() {
        return;
    }
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        for l in landed {
            let _ = f.write_at(&l.data, l.offset);
        }
    }
}

/// Counts a sync and cuts the power at the planned one (or after, should another
/// thread have passed it first).
fn count_sync() {
    let n = SYNCS.fetch_add(1, Ordering::SeqCst) + 1;
    let cut = INSTALLED.get().and_then(|i| i.plan.cut_at_sync);
    if cut.is_some_and(|at| n >= at) {
        power_cut();
    }
}

// ---- the unix VFS's file, as the overlay's disk ----------------------------------------

struct Real(*mut ffi::sqlite3_file);

impl Real {
    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: set by the unix VFS's xOpen, which succeeded, and kept until xClose.
        unsafe { &*(*self.0).pMethods }
    }
}

fn check(rc: c_int) -> Result<(), c_int> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

impl Backing for Real {
    type Error = c_int;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), c_int> {
        let read = self.methods().xRead.expect("xRead");
        // SAFETY: buf is valid for buf.len() bytes; the unix xRead zero-fills a short read.
        let rc = unsafe {
            read(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len() as c_int,
                offset as i64,
            )
        };
        match rc {
            ffi::SQLITE_IOERR_SHORT_READ => Ok(()),
            rc => check(rc),
        }
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), c_int> {
        let write = self.methods().xWrite.expect("xWrite");
        // SAFETY: data is valid for data.len() bytes.
        check(unsafe {
            write(
                self.0,
                data.as_ptr().cast(),
                data.len() as c_int,
                offset as i64,
            )
        })
    }
    fn size_bytes(&mut self) -> Result<u64, c_int> {
        let size = self.methods().xFileSize.expect("xFileSize");
        let mut n: ffi::sqlite3_int64 = 0;
        // SAFETY: n is a valid out-pointer.
        check(unsafe { size(self.0, &mut n) })?;
        Ok(n as u64)
    }
    fn set_size(&mut self, len: u64) -> Result<(), c_int> {
        let truncate = self.methods().xTruncate.expect("xTruncate");
        // SAFETY: a plain call on an open file.
        check(unsafe { truncate(self.0, len as i64) })
    }
}

// ---- the VFS ---------------------------------------------------------------------------

fn base() -> *mut ffi::sqlite3_vfs {
    INSTALLED.get().expect("registered only by install").base
}

fn path_of(name: *const c_char) -> PathBuf {
    // SAFETY: SQLite passes a NUL-terminated full path.
    PathBuf::from(OsStr::from_bytes(
        unsafe { CStr::from_ptr(name) }.to_bytes(),
    ))
}

/// The files whose loss a power cut decides: databases, WALs, rollback journals.
const DURABLE: c_int =
    ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_JOURNAL;

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base();
    let real = file
        .cast::<u8>()
        .add(HEADER_BYTES)
        .cast::<ffi::sqlite3_file>();
    let ours = file.cast::<File>();
    ours.write(File {
        base: ffi::sqlite3_file {
            pMethods: std::ptr::null(),
        },
        real,
        cache: std::ptr::null(),
    });
    let rc = ((*base).xOpen.expect("xOpen"))(base, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite calls no xClose on a file whose xOpen failed: close the unix one here.
        if !(*real).pMethods.is_null() {
            ((*(*real).pMethods).xClose.expect("xClose"))(real);
        }
        return rc;
    }
    if !name.is_null() && flags & DURABLE != 0 {
        let path = path_of(name);
        let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
        let cache = match caches.get(&path) {
            Some(c) => c.clone(),
            None => match Real(real).size_bytes() {
                Ok(len) => {
                    let c = Arc::new(Cache {
                        overlay: Mutex::new(Overlay::new(len)),
                    });
                    caches.insert(path, c.clone());
                    c
                }
                Err(rc) => {
                    ((*(*real).pMethods).xClose.expect("xClose"))(real);
                    return rc;
                }
            },
        };
        (*ours).cache = Arc::into_raw(cache);
    }
    (*ours).base.pMethods = &IO_METHODS;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    // A deleted file's cache goes with it (SQLite deletes a WAL only once it is
    // checkpointed and synced; the deletion itself is taken as durable).
    if !name.is_null() {
        CACHES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&path_of(name));
    }
    let base = base();
    ((*base).xDelete.expect("xDelete"))(base, name, sync_dir)
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // 2: shared memory (WAL) but no memory mapping, which would bypass the cache.
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

/// Our file, its unix file, and its cache if it has one.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (Real, Option<MutexGuard<'a, Overlay>>) {
    let ours = &*file.cast::<File>();
    let overlay = ours
        .cache
        .as_ref()
        .map(|c| c.overlay.lock().unwrap_or_else(|e| e.into_inner()));
    (Real(ours.real), overlay)
}

/// The unix file's io methods, for the calls passed straight through.
unsafe fn real_methods(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let real = (*file.cast::<File>()).real;
    (real, &*(*real).pMethods)
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let ours = &mut *file.cast::<File>();
    if !ours.cache.is_null() {
        // The cache stays in CACHES: unsynced writes outlive the handle, as in a kernel.
        drop(Arc::from_raw(ours.cache));
        ours.cache = std::ptr::null();
    }
    let (real, m) = real_methods(file);
    (m.xClose.expect("xClose"))(real)
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    let (mut real, overlay) = parts(file);
    let Some(overlay) = overlay else {
        let (real, m) = real_methods(file);
        return (m.xRead.expect("xRead"))(real, buf, amt, offset);
    };
    let (Ok(amt), Ok(offset)) = (usize::try_from(amt), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_READ;
    };
    let buf = std::slice::from_raw_parts_mut(buf.cast::<u8>(), amt);
    match overlay.read(&mut real, offset, buf) {
        Ok(false) => ffi::SQLITE_OK,
        Ok(true) => ffi::SQLITE_IOERR_SHORT_READ,
        Err(rc) => rc,
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    let (mut real, overlay) = parts(file);
    let Some(mut overlay) = overlay else {
        let (real, m) = real_methods(file);
        return (m.xWrite.expect("xWrite"))(real, buf, amt, offset);
    };
    let (Ok(amt), Ok(offset)) = (usize::try_from(amt), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let data = std::slice::from_raw_parts(buf.cast::<u8>(), amt);
    match overlay.write(&mut real, offset, data) {
        Ok(()) => ffi::SQLITE_OK,
        Err(rc) => rc,
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let (_, overlay) = parts(file);
    let Some(mut overlay) = overlay else {
        let (real, m) = real_methods(file);
        return (m.xTruncate.expect("xTruncate"))(real, size);
    };
    let Ok(size) = u64::try_from(size) else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    overlay.truncate(size);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    if !(*file.cast::<File>()).cache.is_null() {
        if FAILING.load(Ordering::SeqCst) {
            return ffi::SQLITE_IOERR_FSYNC;
        }
        // Counted (and the power cut) before anything reaches the disk: the commit
        // this sync would make durable is lost.
        count_sync();
        if let (mut real, Some(mut overlay)) = parts(file) {
            if let Err(rc) = overlay.flush(&mut real) {
                return rc;
            }
        }
    }
    let (real, m) = real_methods(file);
    (m.xSync.expect("xSync"))(real, flags)
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let (_, overlay) = parts(file);
    let Some(overlay) = overlay else {
        let (real, m) = real_methods(file);
        return (m.xFileSize.expect("xFileSize"))(real, size);
    };
    *size = overlay.len() as i64;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, m) = real_methods(file);
    (m.xLock.expect("xLock"))(real, level)
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, m) = real_methods(file);
    (m.xUnlock.expect("xUnlock"))(real, level)
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (real, m) = real_methods(file);
    (m.xCheckReservedLock.expect("xCheckReservedLock"))(real, out)
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // A size hint would let the unix VFS grow the real file behind the cache's back.
    if op == ffi::SQLITE_FCNTL_SIZE_HINT && !(*file.cast::<File>()).cache.is_null() {
        return ffi::SQLITE_OK;
    }
    let (real, m) = real_methods(file);
    (m.xFileControl.expect("xFileControl"))(real, op, arg)
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, m) = real_methods(file);
    (m.xSectorSize.expect("xSectorSize"))(real)
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, m) = real_methods(file);
    (m.xDeviceCharacteristics.expect("xDeviceCharacteristics"))(real)
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let (real, m) = real_methods(file);
    (m.xShmMap.expect("xShmMap"))(real, region, size, extend, out)
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let (real, m) = real_methods(file);
    (m.xShmLock.expect("xShmLock"))(real, offset, n, flags)
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (real, m) = real_methods(file);
    (m.xShmBarrier.expect("xShmBarrier"))(real)
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let (real, m) = real_methods(file);
    (m.xShmUnmap.expect("xShmUnmap"))(real, delete)
}
