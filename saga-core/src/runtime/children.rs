//! The runtime's side of nested executions (`crate::nested`): performing a
//! start-execution task, finding a parent's child again after a restart, waiting for
//! a child to close, and the `.sync` children to stop with their parent.
//!
//! A succeeded parent deletes its Express children that succeeded without meeting an
//! error, in its closing step. Their input and output are in the parent's history (its
//! task's scheduled and succeeded events), and AWS keeps no Express execution: what it
//! records of one is its log, which the CDK stack keeps at ERROR for the order saga's
//! child. So, as there, only an Express run that met an error (one retried past
//! included) stays to be read, until retention; and every child of a parent that did
//! not succeed stays, for its redrive and its diagnosis. Standard children are kept,
//! and so are a distributed Map's (AWS lists and describes those by their Map Run).

use super::{from_epoch, Runtime};
use crate::api::{ApiError, DescribeExecutionOutput, ExecutionStatus};
use crate::nested::{self, Executions, Wait};
use asl::eval::EffectId;
use asl::{Delivery, Failure, TaskCall};
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use std::sync::Arc;

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
                let closed = self.wait_closed(executions.as_ref(), &child_arn).await;
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
        let parent = parent_arn.to_string();
        self.store()
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT c.child_arn, e.start_date FROM children c \
                     JOIN executions e ON e.arn = c.child_arn \
                     WHERE c.parent_arn = ?1 AND c.effect_id = ?2",
                    rusqlite::params![parent, id as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)),
                )
                .optional()?)
            })
            .ok()
            .flatten()
            .map(|(arn, start)| (arn, from_epoch(start)))
    }

    /// The `.sync` children of an execution that are still running.
    pub(crate) fn running_sync_children(&self, parent_arn: &str) -> Vec<String> {
        let parent = parent_arn.to_string();
        self.store()
            .read(move |c| {
                let mut st = c.prepare(
                    "SELECT c.child_arn FROM children c JOIN executions e ON e.arn = c.child_arn \
                     WHERE c.parent_arn = ?1 AND c.sync = 1 AND e.status = 'RUNNING'",
                )?;
                let rows = st.query_map([&parent], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap_or_default()
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
