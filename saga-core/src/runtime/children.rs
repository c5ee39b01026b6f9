//! The runtime's side of nested executions (`crate::nested`): performing a
//! start-execution task, finding a parent's child again after a restart, waiting for
//! a child to close, and the `.sync` children to stop with their parent.
//!
//! An Express child that succeeded without meeting an error is not kept. Its input
//! and output are in the parent's history (its task's scheduled and succeeded
//! events), and AWS keeps no Express execution: what it records of one is its log,
//! which the CDK stack keeps at ERROR for the order saga's child. So, as there, only
//! an Express run that met an error (one retried past included) stays to be read,
//! until retention. Standard children are kept, and so are a distributed Map's (AWS
//! lists and describes those by their Map Run).
//!
//! An Express child its parent waits for (`.sync`, `.sync:2`) runs in memory when
//! nothing in its machine needs it stored while it runs ([`runs_in_memory`]): no step
//! of it is written, and at its end it is written whole only if it met an error. Its
//! parent's task is in flight until the child ends, and a crash invokes that task
//! again, which runs the child again (its activities are idempotent, as an Express
//! run's must be: AWS runs them at least once). Until it ends, its parent finds it
//! through [`InMemoryChildren`], not the `children` table; DescribeExecution does not
//! (nor does AWS's, for any Express execution).
//!
//! Any other Express child (one its parent does not wait for, or run with every step
//! made durable) is stored as it runs. Its parent, once it has succeeded, deletes it
//! in its closing step if it succeeded without meeting an error; the child of a parent
//! that did not succeed stays.

use super::{
    api_status, epoch, from_epoch, stored_events, ExecutionRecord, HistoryWrite, Insert, Live,
    NewExecution, Packed, Runtime, RuntimeError,
};
use crate::api::{ApiError, DescribeExecutionOutput, ExecutionStatus};
use crate::nested::{self, Executions, Parent, Wait};
use asl::eval::EffectId;
use asl::history::HistoryEvent;
use asl::model::Kind;
use asl::resource::{Pattern, Target};
use asl::{Delivery, Failure, TaskCall};
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Whether a new execution runs in memory: an Express child its parent waits for to
/// end, of a machine in which nothing must be found in the store while it runs. A
/// task that hands out a token (an activity, a callback) must be stored before anyone
/// holds the token; a heartbeat is answered by a token; a nested or Map Run child
/// finds its parent by its stored link. With every step to be made durable
/// (`--fsync-every-step`), every execution is stored.
pub(super) fn runs_in_memory(new: &NewExecution, durable_steps: bool) -> bool {
    let waited_for = new
        .parent
        .as_ref()
        .is_some_and(|p| p.sync && p.map_run.is_none());
    new.express && waited_for && !durable_steps && !needs_the_store(&new.machine)
}

fn needs_the_store(machine: &asl::Machine) -> bool {
    machine
        .lists
        .iter()
        .flat_map(|l| &l.states)
        .any(|state| match &state.kind {
            Kind::Task(task) => {
                matches!(task.target, Target::Activity { .. })
                    || task.target.pattern() == Pattern::WaitForTaskToken
                    || task.heartbeat.is_some()
                    || nested::starts_an_execution(&task.target)
            }
            Kind::Map(map) => map.distributed.is_some(),
            _ => false,
        })
}

/// What a parent's task holds of its child run in memory: the child's ARN and start,
/// and its description once it has ended.
pub(crate) struct ChildInMemory {
    arn: String,
    started: DateTime<Utc>,
    ended: OnceLock<DescribeExecutionOutput>,
}

/// The children run in memory, by their parent's ARN and task: the link the
/// `children` table holds for a stored child. A link goes when the parent's task has
/// read the child's end, or when the parent ends.
pub(crate) type InMemoryChildren = BTreeMap<(String, EffectId), Arc<ChildInMemory>>;

/// The links of `parent_arn`'s children run in memory.
fn of_parent<'a>(
    children: &'a InMemoryChildren,
    parent_arn: &'a str,
) -> impl Iterator<Item = (&'a (String, EffectId), &'a Arc<ChildInMemory>)> {
    children
        .range((parent_arn.to_string(), EffectId::MIN)..)
        .take_while(move |((parent, _), _)| parent == parent_arn)
}

/// An Express child run in memory: its row and its history so far, written only if
/// it ends having met an error.
pub(super) struct InMemory {
    row: ExecutionRecord,
    parent: Parent,
    test_case: Option<String>,
    events: Vec<HistoryEvent>,
    met_an_error: bool,
    link: Arc<ChildInMemory>,
}

impl InMemory {
    pub(super) fn new(row: ExecutionRecord, parent: Parent, test_case: Option<String>) -> Self {
        let link = Arc::new(ChildInMemory {
            arn: row.arn.clone(),
            started: from_epoch(row.start_date),
            ended: OnceLock::new(),
        });
        InMemory {
            row,
            parent,
            test_case,
            events: Vec::new(),
            met_an_error: false,
            link,
        }
    }
}

/// Marks an execution, closing in this transaction as an Express success that met no
/// error, for its parent's close to delete. Nothing to mark if it has no parent.
pub(super) fn mark_clean(
    c: &rusqlite::Connection,
    arn: &str,
) -> Result<(), crate::store::StoreError> {
    c.prepare_cached("UPDATE children SET clean = 1 WHERE child_arn = ?1")?
        .execute([arn])?;
    Ok(())
}

/// Deletes, in the closing step of `parent_arn` as a success, its children marked
/// clean, with their history, but a Map Run's. Returns how many.
pub(super) fn delete_clean_express(
    c: &rusqlite::Connection,
    parent_arn: &str,
) -> Result<u64, crate::store::StoreError> {
    let clean = {
        let mut q = c.prepare_cached(
            "SELECT e.rowid, e.arn FROM children c JOIN executions e ON e.arn = c.child_arn \
             WHERE c.parent_arn = ?1 AND c.clean = 1 \
             AND NOT EXISTS (SELECT 1 FROM map_run_children m WHERE m.child_arn = c.child_arn)",
        )?;
        let rows = q.query_map([parent_arn], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<(i64, String)>, _>>()?
    };
    crate::retention::delete(c, &clean)
}

impl Runtime {
    /// Whether an execution of this ARN is stored (its name is taken).
    pub(super) fn is_stored(&self, arn: &str) -> Result<bool, RuntimeError> {
        let arn = arn.to_string();
        Ok(self.store().read(move |c| {
            Ok(c.prepare_cached("SELECT 1 FROM executions WHERE arn = ?1")?
                .exists([&arn])?)
        })?)
    }

    /// Links a child just started in memory to its parent's task.
    pub(super) fn remember_in_memory(&self, live: &Live) {
        let Some(child) = &live.in_memory else { return };
        let key = (child.parent.execution_arn.clone(), child.parent.effect_id);
        self.children_in_memory
            .lock()
            .expect("children lock")
            .insert(key, child.link.clone());
    }

    /// Forgets the links of a parent that has ended to its children run in memory.
    pub(super) fn forget_children_in_memory(&self, parent_arn: &str) {
        let mut children = self.children_in_memory.lock().expect("children lock");
        let theirs: Vec<_> = of_parent(&children, parent_arn)
            .map(|(key, _)| key.clone())
            .collect();
        for key in theirs {
            children.remove(&key);
        }
    }

    fn child_in_memory(&self, parent_arn: &str, id: EffectId) -> Option<Arc<ChildInMemory>> {
        let children = self.children_in_memory.lock().expect("children lock");
        children.get(&(parent_arn.to_string(), id)).cloned()
    }

    /// Takes a step of a child run in memory: keeps its events, and at its end hands
    /// its description to its parent's task and writes it if it met an error. Nothing
    /// is written while it runs, so nothing can fail to be.
    pub(super) async fn take_in_memory_step(
        &self,
        arn: &str,
        live: &mut Live,
        new_events: Vec<HistoryEvent>,
    ) {
        let pending: std::collections::HashSet<EffectId> =
            live.exec.pending().map(|(i, _)| i).collect();
        live.watchers.keep_only(&pending);
        if let Some(o) = self.observer.get() {
            o.step_committed(&live.exec.info().state_machine_arn, &new_events);
        }
        let status = api_status(&live.exec);
        let Some(child) = live.in_memory.as_mut() else {
            return;
        };
        child.met_an_error |= new_events
            .iter()
            .any(|e| crate::history::is_an_error(&e.kind));
        child.events.extend(new_events);
        if status == ExecutionStatus::Running {
            return;
        }
        let stop_date = epoch(Utc::now());
        live.stop_date = Some(stop_date);
        let row = child.row.clone().with_outcome(&live.exec, Some(stop_date));
        let _ = child.link.ended.set(row.clone().describe(true, None));
        if status == ExecutionStatus::Succeeded && !child.met_an_error {
            return;
        }
        if let Err(e) = self.keep_in_memory_child(row, child).await {
            // Its parent has its outcome; only the record of a run that met an error
            // is lost, as a write that fails loses it for a stored child.
            eprintln!("oms: could not keep the Express execution {arn}, which met an error: {e}");
        }
    }

    /// Writes a child run in memory that ended having met an error, whole: its row, its
    /// history as one frame and its link to its parent.
    async fn keep_in_memory_child(
        &self,
        row: ExecutionRecord,
        child: &InMemory,
    ) -> Result<(), crate::store::StoreError> {
        let stored = stored_events(&child.events);
        let frame = crate::history::encode(&stored)?;
        let insert = Insert {
            definition_id: super::definition_id(&row.definition).into(),
            packed: Packed::of(&row),
            row,
            snapshot_packed: None,
            history: Some(HistoryWrite::Whole(frame)),
            tasks: Vec::new(),
            parent: Some(child.parent.clone()),
            test_case: child.test_case.clone(),
            clean_express: false,
        };
        self.store().write_lazy(move |c| insert.store(c)).await
    }

    /// Performs a start-execution task: starts (or finds again) the child, and delivers
    /// what the task's wait asks for. Returns the handle of the task doing it, so that
    /// the parent's end stops it waiting.
    pub(crate) fn perform_child(
        self: &Arc<Self>,
        parent_arn: String,
        id: EffectId,
        call: TaskCall,
    ) -> tokio::task::AbortHandle {
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let delivery = rt.run_child(&parent_arn, id, &call).await;
            if let Some(delivery) = delivery {
                // Detached: the delivery ends this task's effect, which aborts this task.
                tokio::spawn(async move { rt.deliver(&parent_arn, id, delivery).await });
            }
        });
        task.abort_handle()
    }

    /// What a start-execution task delivers; None while it waits for a token.
    async fn run_child(
        self: &Arc<Self>,
        parent_arn: &str,
        id: EffectId,
        call: &TaskCall,
    ) -> Option<Delivery> {
        let Some(executions) = self.executions() else {
            return Some(Delivery::TaskFailed(Failure::new(
                asl::error::names::TASK_FAILED,
                "this runtime runs no nested executions: it has no service attached",
            )));
        };
        let wait = nested::wait_of(call.target.pattern());
        let child = match self.child_of(parent_arn, id) {
            Some(found) => Ok(found),
            None => nested::start(executions.as_ref(), parent_arn, id, call, wait).await,
        };
        let (child_arn, started) = match child {
            Ok(c) => c,
            Err(f) => return Some(Delivery::TaskFailed(f)),
        };
        match wait {
            Wait::Token => None,
            Wait::Started => Some(Delivery::TaskSucceeded(nested::start_response(
                &child_arn, started,
            ))),
            Wait::Closed { json } => {
                let closed = match self.child_in_memory(parent_arn, id) {
                    Some(child) => {
                        let ended = self.wait_in_memory(executions.as_ref(), &child).await;
                        let key = (parent_arn.to_string(), id);
                        self.children_in_memory
                            .lock()
                            .expect("children lock")
                            .remove(&key);
                        ended
                    }
                    None => self.wait_closed(executions.as_ref(), &child_arn).await,
                };
                Some(match closed {
                    Ok(d) => nested::closed_delivery(&d, json),
                    Err(e) => Delivery::TaskFailed(nested::api_failure(&e)),
                })
            }
        }
    }

    /// The child a parent's task started before (found again after a restart), with
    /// its start date.
    pub(super) fn child_of(
        &self,
        parent_arn: &str,
        id: EffectId,
    ) -> Option<(String, DateTime<Utc>)> {
        if let Some(child) = self.child_in_memory(parent_arn, id) {
            return Some((child.arn.clone(), child.started));
        }
        let parent = parent_arn.to_string();
        self.store()
            .read(move |c| {
                // Cached: every start-execution task asks, and parsing it anew each
                // time was 1.4% of the loaded order profile.
                Ok(c.prepare_cached(
                    "SELECT c.child_arn, e.start_date FROM children c \
                     JOIN executions e ON e.arn = c.child_arn \
                     WHERE c.parent_arn = ?1 AND c.effect_id = ?2",
                )?
                .query_row(rusqlite::params![parent, id as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
                })
                .optional()?)
            })
            .ok()
            .flatten()
            .map(|(arn, start)| (arn, from_epoch(start)))
    }

    /// The `.sync` children of an execution that are still running.
    pub(crate) fn running_sync_children(&self, parent_arn: &str) -> Vec<String> {
        let in_memory: Vec<String> = {
            let children = self.children_in_memory.lock().expect("children lock");
            of_parent(&children, parent_arn)
                .filter(|(_, child)| child.ended.get().is_none())
                .map(|(_, child)| child.arn.clone())
                .collect()
        };
        let parent = parent_arn.to_string();
        let stored = self
            .store()
            .read(move |c| {
                let mut st = c.prepare(
                    "SELECT c.child_arn FROM children c JOIN executions e ON e.arn = c.child_arn \
                     WHERE c.parent_arn = ?1 AND c.sync = 1 AND e.status = 'RUNNING'",
                )?;
                let rows = st.query_map([&parent], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap_or_default();
        in_memory.into_iter().chain(stored).collect()
    }

    /// Waits until a child run in memory has ended and returns its description.
    async fn wait_in_memory(
        &self,
        executions: &dyn Executions,
        child: &ChildInMemory,
    ) -> Result<DescribeExecutionOutput, ApiError> {
        self.wait_finished(&child.arn).await;
        match child.ended.get() {
            Some(ended) => Ok(ended.clone()),
            // Not live and not ended: it cannot be, as its steps are never written,
            // but the store is the one other place to look.
            None => self.wait_closed(executions, &child.arn).await,
        }
    }

    /// Waits until an execution has closed and returns its description. Polls the
    /// store as well as waiting for the end signal: a child resumed after a restart
    /// may not be live yet when its parent starts waiting.
    pub(super) async fn wait_closed(
        &self,
        executions: &dyn Executions,
        child_arn: &str,
    ) -> Result<DescribeExecutionOutput, ApiError> {
        let mut pause_ms = 20u64;
        loop {
            self.wait_finished(child_arn).await;
            let described = executions.describe(child_arn).await?;
            if described.status != ExecutionStatus::Running {
                return Ok(described);
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
            pause_ms = (pause_ms * 2).min(1000);
        }
    }
}
