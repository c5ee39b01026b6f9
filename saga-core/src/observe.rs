//! What the runtime and the store tell an observer as they work: the hook `oms` hangs
//! its Prometheus metrics on (`oms/src/metrics.rs`). saga-core knows neither HTTP nor a
//! metrics library; it calls these methods on the paths where the facts are at hand,
//! after the commit that made them true, and an observer that wants none of them
//! costs one virtual call per fact. Every method has an empty default.

use asl::history::HistoryEvent;
use std::sync::{Arc, OnceLock};

/// A Task state's call answered (a result, an error, a timeout), delivered to a live
/// execution and committed.
pub struct TaskFinished<'a> {
    pub state_machine_arn: &'a str,
    pub state_name: &'a str,
    /// From the call's dispatch to its answer; `None` for a call dispatched before this
    /// process started (its start is not known here).
    pub seconds: Option<f64>,
    /// The error name, when it failed (`States.Timeout` for a timeout).
    pub error: Option<&'a str>,
}

/// A RedriveExecution committed.
pub struct Redriven<'a> {
    pub state_machine_arn: &'a str,
    /// The last state the failed run entered (where the redrive resumes), if its
    /// history still has it.
    pub state_name: Option<&'a str>,
    /// The error the execution had failed with.
    pub error: Option<&'a str>,
}

pub trait Observer: Send + Sync {
    /// A step committed with these new history events (in order).
    fn step_committed(&self, _state_machine_arn: &str, _events: &[HistoryEvent]) {}
    fn task_finished(&self, _task: &TaskFinished<'_>) {}
    fn redriven(&self, _redrive: &Redriven<'_>) {}
    /// The store's writer committed one transaction of `jobs` writes in `seconds`
    /// (BEGIN to COMMIT; the fsync is the syncer's, after), or failed to.
    fn store_committed(&self, _jobs: usize, _seconds: f64, _ok: bool) {}
    /// The store's syncer fsynced the WAL in `seconds`, or failed to.
    fn store_synced(&self, _seconds: f64, _ok: bool) {}
}

/// An observer set once, after the thing observed exists (the store's writer thread
/// starts at open; `oms up` builds its metrics later). Unset, every call is a no-op:
/// reading it is one atomic load.
#[derive(Clone, Default)]
pub struct ObserverSlot(Arc<OnceLock<Arc<dyn Observer>>>);

impl ObserverSlot {
    /// Sets the observer; a second call is ignored (the first one stays).
    pub fn set(&self, observer: Arc<dyn Observer>) {
        let _ = self.0.set(observer);
    }

    pub fn get(&self) -> Option<&Arc<dyn Observer>> {
        self.0.get()
    }
}
