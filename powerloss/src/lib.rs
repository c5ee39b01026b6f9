//! Power loss for SQLite, in-process: a VFS over the default (unix) one that keeps
//! every write to a database, WAL or journal in memory ([`overlay::Overlay`], one per
//! file, shared by every connection as the kernel's page cache is) until the file is
//! synced. At the sync a [`Plan`] names, the power goes: what was not synced is lost
//! (with a seed, a seeded part of it lands, one write torn at a sector), and the
//! process ends at once with [`EXIT_CODE`], running nothing more.
//!
//! Locks and the WAL index (the `-shm` file) go straight to the unix VFS: the WAL index
//! is not durable, and SQLite rebuilds it from the WAL after a crash. Memory mapping
//! is off (the io methods are version 2), so every read passes through the cache.
//!
//! Why hand-written FFI (over `rusqlite::ffi`) and not a VFS crate: `sqlite-vfs` (last released 2022) and
//! `sqlite-plugin` implement a whole VFS, so they would need their own locking and
//! shared memory (the part that is hard to get right) where this one wraps the unix
//! VFS and changes only what a power cut changes; `sqlite-plugin` also runs bindgen,
//! which needs libclang at build time.
//!
//! For tests only: `oms up --power-loss-at-sync N` installs it before any store opens.

pub mod harness;
pub mod overlay;
mod vfs;

pub use vfs::{fail_syncs, install, power_cut, syncs};

/// The status a process ends with when its power is cut.
pub const EXIT_CODE: i32 = 86;

/// When the power goes, and what of the unsynced writes still lands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan {
    /// Cut the power at this sync (1 = the first one of the process); `None` only
    /// counts syncs.
    pub cut_at_sync: Option<u64>,
    /// Without a seed every unsynced write is lost; with one, a part chosen by the
    /// seed lands, one of them torn.
    pub landed_seed: Option<u64>,
}
