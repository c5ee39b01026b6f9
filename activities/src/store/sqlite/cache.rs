//! The items an order store in the runtime's database last wrote or read, kept decoded
//! so that a `get` of them is a map lookup, not a read transaction, a zstd frame and a
//! JSON parse (issue 16: the activities' `get`s were about 9% of a loaded order's
//! server CPU, each step reading again the order a step before it wrote).
//!
//! Only a store whose database this process alone writes may keep one (`within`: the
//! runtime's database, its data dir locked by the process): another process's commit
//! would not pass through here. What it promises is what the table gives: a `get`
//! answers what the last commit before it left, never a value some later read has
//! already seen replaced.
//!
//! How it stays true, by the two ways in:
//! - Writes: a job that changes items calls [`Cache::changing`] inside its transaction.
//!   That drops the keys and counts the job as in flight; its commit hook
//!   (`groupcommit::on_commit`, run right after the COMMIT, in commit order, before
//!   any caller is answered) puts the new values in, or nothing if it rolled back.
//!   Between the two a `get` of those keys reads the table, which answers the old
//!   value before the COMMIT and the new one after, as it would with no cache.
//!   When several jobs of one transaction change a key, only the last one's hook puts
//!   its value in: the hooks run one after another after the COMMIT, and the table
//!   already answers the last value while the first hooks run; an earlier job's value
//!   put in then would be older than what a read of the table has just seen.
//! - Reads: a `get` that missed reads the table and keeps what it found only if no
//!   change began or ended meanwhile (the generation it noted before reading is still
//!   the current one, and no job is in flight): otherwise what it read may be older
//!   than a value a hook has put in, or than one about to commit.
//!
//! Bounded: the least recently used entries go past [`CAPACITY`].

use super::super::{Item, Key};
use hashlink::LruCache;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Entries kept: about a hundred in-flight orders' worth of items at C=256 is a few
/// thousand, and an entry is a decoded document of a few hundred bytes to a few KB.
pub const CAPACITY: usize = 8_192;

/// What a key holds: a version and a document, or nothing (known absent).
pub type Entry = Option<(u64, Arc<Map<String, Value>>)>;

/// A change a committed job made, for its hook to put in.
pub enum Change {
    /// The key now holds this (a put or an add), or nothing (a delete).
    Set(Key, Entry),
    /// Rows changed in ways not described (an adopted file's items): forget everything.
    Unknown,
}

pub struct Cache {
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct State {
    entries: LruCache<Key, Entry>,
    /// Bumped when a change begins and when it ends: a read that saw it unchanged
    /// overlapped no change.
    generation: u64,
    /// Jobs that called `changing` and whose commit has not ended.
    in_flight: usize,
    /// For each key such a job changes, how many of them change it: only the last
    /// one's end puts a value in.
    pending: HashMap<Key, usize>,
    /// Set when items were written outside a job: nothing is kept from then on.
    disabled: bool,
}

impl State {
    /// One change of `key` ended: whether it was the last one pending.
    fn pending_ended(&mut self, key: &Key) -> bool {
        let Some(count) = self.pending.get_mut(key) else {
            unreachable!("a change of {key} ended that never began");
        };
        assert!(*count > 0, "pending counts are removed at zero");
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.pending.remove(key);
        true
    }
}

/// A miss: the generation to show when keeping what the table answered.
pub struct Ticket(Option<u64>);

impl Cache {
    /// A cache of at most `capacity` entries ([`CAPACITY`] but in tests).
    pub fn new(capacity: usize) -> Arc<Cache> {
        Arc::new(Cache {
            state: Mutex::new(State {
                entries: LruCache::new(capacity),
                generation: 0,
                in_flight: 0,
                pending: HashMap::new(),
                disabled: false,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Each use leaves the state whole; a panic elsewhere does not make it wrong.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The item at `key` if it is kept (Ok(None): known absent), or a ticket to keep
    /// what the table answers.
    pub fn get(&self, key: &Key) -> Result<Option<Item>, Ticket> {
        let mut s = self.state();
        if let Some(entry) = s.entries.get(key) {
            let item = entry.as_ref().map(|(version, doc)| Item {
                key: key.clone(),
                version: *version,
                doc: Arc::clone(doc),
            });
            drop(s);
            self.hits.fetch_add(1, Relaxed);
            return Ok(item);
        }
        let ticket = (s.in_flight == 0 && !s.disabled).then_some(s.generation);
        drop(s);
        self.misses.fetch_add(1, Relaxed);
        Err(Ticket(ticket))
    }

    /// Keeps what the table answered for `key` after `ticket`'s miss, if no change
    /// began or ended since.
    pub fn fill(&self, key: &Key, ticket: Ticket, found: Option<&Item>) {
        let Ticket(Some(generation)) = ticket else {
            return;
        };
        let mut s = self.state();
        if s.generation == generation && s.in_flight == 0 && !s.disabled {
            let entry = found.map(|i| (i.version, Arc::clone(&i.doc)));
            s.entries.insert(key.clone(), entry);
        }
    }

    /// Called by a job, inside its transaction, that changes `changes`: drops their
    /// keys until its commit ends, then puts in what it committed. Outside a job
    /// (nothing would tell the cache when the change commits) it empties the cache
    /// and keeps nothing more: a store written that way cannot trust one.
    pub fn changing(self: &Arc<Self>, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        {
            let mut s = self.state();
            s.generation += 1;
            s.in_flight += 1;
            for change in &changes {
                match change {
                    Change::Set(key, _) => {
                        s.entries.remove(key);
                        *s.pending.entry(key.clone()).or_insert(0) += 1;
                    }
                    Change::Unknown => s.entries.clear(),
                }
            }
        }
        let cache = self.clone();
        let hook = Box::new(move |committed: bool| cache.ended(changes, committed));
        if let Err(hook) = groupcommit::on_commit(hook) {
            let mut s = self.state();
            s.entries.clear();
            s.disabled = true;
            drop(s);
            hook(false);
        }
    }

    /// A change's commit ended: if it committed, what it left goes in, for each key
    /// no later job of the same transaction changes too.
    fn ended(&self, changes: Vec<Change>, committed: bool) {
        let mut s = self.state();
        assert!(s.in_flight > 0, "a change ended that never began");
        s.in_flight -= 1;
        s.generation += 1;
        for change in changes {
            match change {
                Change::Set(key, entry) => {
                    let last = s.pending_ended(&key);
                    if committed && last && !s.disabled {
                        s.entries.insert(key, entry);
                    }
                }
                Change::Unknown if committed => s.entries.clear(),
                Change::Unknown => {}
            }
        }
    }

    /// Gets answered from the cache, and gets that read the table.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}
