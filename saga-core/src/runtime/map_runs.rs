//! Distributed Map: each iteration (or batch) the evaluator asks for
//! ([`asl::Effect::Iteration`]) runs as a child execution of the Map's ItemProcessor,
//! `stateMachine:<parent>/<label>`, as Step Functions runs it.
//!
//! - The child is linked to the parent's effect like a `.sync` nested execution
//!   (`children`), so a parent resumed after a crash finds it again, and stopping the
//!   parent stops it; and to its Map Run (`map_run_children`), so ListExecutions by
//!   `mapRunArn` lists it. The Map Run's row (`map_runs`) is written with its first
//!   child, in the same commit.
//! - The evaluator decides the Map Run's outcome (tolerated failures, concurrency);
//!   the step that ends it writes its status ([`record_ends`]), and a failed Map Run's
//!   children still running are stopped.

use super::{epoch, NewExecution, Runtime, RuntimeError, SystemHost};
use crate::api::ExecutionStatus;
use crate::history::Payload;
use crate::nested::Parent;
use asl::error::names;
use asl::eval::{EffectId, IterationCall, MapRunEnd, MapRunUpdate, ReadCall, WriteCall};
use asl::map_writer::ChildRecord;
use asl::model::ChildMachine;
use asl::{Delivery, Failure};
use rusqlite::params;
use std::sync::Arc;

/// Map Run statuses as the API spells them.
pub(crate) const RUNNING: &str = "RUNNING";
const SUCCEEDED: &str = "SUCCEEDED";
const FAILED: &str = "FAILED";
const ABORTED: &str = "ABORTED";

impl Runtime {
    /// Runs one iteration as a child execution (or finds the one started before a
    /// restart) and delivers its outcome. Returns the handle of the task waiting for
    /// it, so that the parent's end stops the wait.
    pub(crate) fn perform_iteration(
        self: &Arc<Self>,
        parent_arn: String,
        role_arn: String,
        id: EffectId,
        call: IterationCall,
        child: Option<Arc<ChildMachine>>,
    ) -> tokio::task::AbortHandle {
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let delivery = match child {
                Some(child) => {
                    rt.run_iteration(&parent_arn, &role_arn, id, call, child)
                        .await
                }
                None => Delivery::TaskFailed(Failure::runtime(format!(
                    "the Map state '{}' has no ItemProcessor to run",
                    call.state_name
                ))),
            };
            // Detached: the delivery ends this task's effect, which aborts this task.
            tokio::spawn(async move { rt.deliver(&parent_arn, id, delivery).await });
        });
        task.abort_handle()
    }

    /// Reads a distributed Map's items (its ItemReader) and delivers them. The S3
    /// requests go through the invoker, as the machine's own S3 Tasks do; the reading
    /// procedure is synchronous, so it runs on a blocking thread.
    pub(crate) fn perform_read(
        self: &Arc<Self>,
        arn: String,
        id: EffectId,
        call: ReadCall,
    ) -> tokio::task::AbortHandle {
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let invoker = rt.invoker.clone();
            let reader_arn = arn.clone();
            let read = tokio::task::spawn_blocking(move || {
                let handle = tokio::runtime::Handle::current();
                asl::map_reader::read(&call, &mut |c| {
                    handle.block_on(invoker.invoke(&reader_arn, &c))
                })
            })
            .await;
            let delivery = match read {
                Ok(Ok(items)) => Delivery::TaskSucceeded(serde_json::Value::Array(items)),
                Ok(Err(f)) => Delivery::TaskFailed(f),
                Err(e) => {
                    Delivery::TaskFailed(Failure::runtime(format!("the ItemReader stopped: {e}")))
                }
            };
            // Detached: the delivery ends this task's effect, which aborts this task.
            tokio::spawn(async move { rt.deliver(&arn, id, delivery).await });
        });
        task.abort_handle()
    }

    /// Formats or exports a Map Run's results (its ResultWriter) and delivers the
    /// state's result. The children's records come from the store; the S3 writes go
    /// through the invoker on a blocking thread, as the ItemReader's reads do.
    pub(crate) fn perform_write(
        self: &Arc<Self>,
        arn: String,
        id: EffectId,
        call: WriteCall,
    ) -> tokio::task::AbortHandle {
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let records = rt.child_records(&call.map_run_arn);
            let invoker = rt.invoker.clone();
            let writer_arn = arn.clone();
            let written = tokio::task::spawn_blocking(move || {
                let handle = tokio::runtime::Handle::current();
                asl::map_writer::write(&call, &records?, &mut |c| {
                    handle.block_on(invoker.invoke(&writer_arn, &c))
                })
            })
            .await;
            let delivery = match written {
                Ok(Ok(result)) => Delivery::TaskSucceeded(result),
                Ok(Err(f)) => Delivery::TaskFailed(f),
                Err(e) => {
                    Delivery::TaskFailed(Failure::runtime(format!("the ResultWriter stopped: {e}")))
                }
            };
            // Detached: the delivery ends this task's effect, which aborts this task.
            tokio::spawn(async move { rt.deliver(&arn, id, delivery).await });
        });
        task.abort_handle()
    }

    /// A Map Run's children in item order, as its ResultWriter describes them.
    fn child_records(&self, map_run_arn: &str) -> Result<Vec<ChildRecord>, Failure> {
        let run = map_run_arn.to_string();
        self.store()
            .read(move |c| {
                let mut st = c.prepare(
                    "SELECT m.item_index, e.arn, e.name, e.state_machine_arn, e.status, e.input, \
                     e.output, e.error, e.cause, e.start_date, e.stop_date \
                     FROM map_run_children m JOIN executions e ON e.arn = m.child_arn \
                     WHERE m.map_run_arn = ?1 ORDER BY m.item_index",
                )?;
                let rows = st.query_map([&run], |r| {
                    Ok(ChildRecord {
                        index: r.get::<_, i64>(0)? as usize,
                        execution_arn: r.get(1)?,
                        name: r.get(2)?,
                        state_machine_arn: r.get(3)?,
                        status: r.get(4)?,
                        input: r.get::<_, Payload>(5)?.0,
                        output: r.get::<_, Option<Payload>>(6)?.map(|p| p.0),
                        error: r.get(7)?,
                        cause: r.get(8)?,
                        start_date: instant(r.get(9)?),
                        stop_date: r.get::<_, Option<f64>>(10)?.map(instant),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .map_err(|e| {
                Failure::new(
                    names::RESULT_WRITER_FAILED,
                    format!("the Map Run's children could not be read: {e}"),
                )
            })
    }

    async fn run_iteration(
        self: &Arc<Self>,
        parent_arn: &str,
        role_arn: &str,
        id: EffectId,
        call: IterationCall,
        child: Arc<ChildMachine>,
    ) -> Delivery {
        let Some(executions) = self.executions() else {
            return Delivery::TaskFailed(Failure::runtime(
                "this runtime runs no child executions: it has no service attached",
            ));
        };
        let child_arn = match self.child_of(parent_arn, id) {
            Some((arn, _)) => arn,
            None => match self
                .start_iteration(parent_arn, role_arn, id, call, child)
                .await
            {
                Ok(arn) => arn,
                Err(f) => return Delivery::TaskFailed(f),
            },
        };
        match self.wait_closed(executions.as_ref(), &child_arn).await {
            Ok(d) => iteration_delivery(d.status, d.output, d.error, d.cause),
            Err(e) => Delivery::TaskFailed(crate::nested::api_failure(&e)),
        }
    }

    async fn start_iteration(
        self: &Arc<Self>,
        parent_arn: &str,
        role_arn: &str,
        id: EffectId,
        mut call: IterationCall,
        child: Arc<ChildMachine>,
    ) -> Result<String, Failure> {
        let input = std::mem::take(&mut call.input);
        let input_text = input.to_string();
        let new = NewExecution {
            state_machine_arn: call.child_machine_arn(),
            name: uuid::Uuid::new_v4().to_string(),
            role_arn: role_arn.to_string(),
            express: child.express,
            definition: child.definition.to_string().into(),
            machine: child.machine.clone(),
            input,
            input_text,
            parent: Some(Parent {
                execution_arn: parent_arn.to_string(),
                effect_id: id,
                sync: true,
                map_run: Some(Box::new(call)),
            }),
            // A child runs its parent's test case: the mock file names the processor's
            // states under the parent machine, as Step Functions Local's did.
            test_case: self.test_case_of(parent_arn),
        };
        self.start(new).await.map(|(arn, _)| arn).map_err(|e| {
            Failure::runtime(format!(
                "the Map Run could not start a child execution: {e}"
            ))
        })
    }

    /// UpdateMapRun: applies new limits to a running Map Run of a live execution (the
    /// step it makes is committed like any other), then records them on its row.
    /// False when the execution has no such running Map Run.
    pub async fn update_map_run(
        self: &Arc<Self>,
        execution_arn: &str,
        map_run_arn: &str,
        update: MapRunUpdate,
    ) -> Result<bool, RuntimeError> {
        let Some(cell) = self.live(execution_arn) else {
            return Ok(false);
        };
        let mut live = cell.lock().await;
        if !live
            .exec
            .update_map_run(map_run_arn, &update, &mut SystemHost)
        {
            return Ok(false);
        }
        self.commit_step(execution_arn, &mut live).await?;
        self.after_step(execution_arn, &mut live);
        drop(live);
        let run = map_run_arn.to_string();
        self.store()
            .write(move |c| {
                c.execute(
                    "UPDATE map_runs SET max_concurrency = COALESCE(?2, max_concurrency), \
                     tolerated_failure_count = COALESCE(?3, tolerated_failure_count), \
                     tolerated_failure_percentage = COALESCE(?4, tolerated_failure_percentage) \
                     WHERE arn = ?1",
                    params![
                        run,
                        update.max_concurrency.map(|m| m as i64),
                        update.tolerated_failure_count,
                        update.tolerated_failure_percentage
                    ],
                )?;
                Ok(())
            })
            .await?;
        Ok(true)
    }

    /// Stops the children of a Map Run that are still running: it failed, or its
    /// execution ended, and nothing waits for them any more.
    pub(crate) fn stop_map_run_children(self: &Arc<Self>, map_run_arn: &str) {
        let run = map_run_arn.to_string();
        let running: Vec<String> = self
            .store()
            .read(move |c| {
                let mut st = c.prepare(
                    "SELECT m.child_arn FROM map_run_children m JOIN executions e ON e.arn = m.child_arn \
                     WHERE m.map_run_arn = ?1 AND e.status = 'RUNNING'",
                )?;
                let rows = st.query_map([&run], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap_or_default();
        for child in running {
            let rt = self.clone();
            let cause = format!("its Map Run {map_run_arn} ended");
            tokio::spawn(async move { rt.stop(&child, None, Some(cause)).await });
        }
    }
}

/// What a closed child execution delivers to its iteration: its output, or its error
/// and cause (a child that ended without an error is named by how it ended).
fn iteration_delivery(
    status: ExecutionStatus,
    output: Option<String>,
    error: Option<String>,
    cause: Option<String>,
) -> Delivery {
    if status == ExecutionStatus::Succeeded {
        let output = output.as_deref().unwrap_or("null");
        return match serde_json::from_str(output) {
            Ok(v) => Delivery::TaskSucceeded(v),
            Err(e) => Delivery::TaskFailed(Failure::runtime(format!(
                "a child execution's output is not JSON: {e}"
            ))),
        };
    }
    let error = error.unwrap_or_else(|| match status {
        ExecutionStatus::TimedOut => names::TIMEOUT.to_string(),
        _ => format!("States.{}", status.as_str()),
    });
    Delivery::TaskFailed(Failure { error, cause })
}

/// Links a distributed Map's child to its Map Run, writing the Map Run's row with its
/// first child. Part of the child's first commit.
pub(crate) fn insert_link(
    c: &rusqlite::Connection,
    child_arn: &str,
    parent_arn: &str,
    call: &IterationCall,
    start_date: f64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO map_runs (arn, execution_arn, state_machine_arn, status, start_date, \
         max_concurrency, tolerated_failure_count, tolerated_failure_percentage, child_count, \
         total_items) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        call.map_run_arn,
        parent_arn,
        call.child_machine_arn(),
        RUNNING,
        start_date,
        call.max_concurrency as i64,
        call.tolerated_failure_count,
        call.tolerated_failure_percentage,
        call.child_count as i64,
        call.total_items as i64
    ])?;
    c.prepare_cached(
        "INSERT INTO map_run_children (child_arn, map_run_arn, item_index, items) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        child_arn,
        call.map_run_arn,
        call.index as i64,
        call.items as i64
    ])?;
    Ok(())
}

/// Writes how the Map Runs that ended in a step ended, and, when the step ended the
/// execution, marks its Map Runs still running as aborted. Returns the Map Runs whose
/// running children must be stopped. Part of the step's commit.
pub(crate) fn record_ends(
    c: &rusqlite::Connection,
    execution_arn: &str,
    ends: &[MapRunEnd],
    execution_ended: bool,
    now_s: f64,
) -> rusqlite::Result<Vec<String>> {
    let mut to_stop = Vec::new();
    for end in ends {
        let status = if end.failure.is_some() {
            FAILED
        } else {
            SUCCEEDED
        };
        c.prepare_cached("UPDATE map_runs SET status = ?2, stop_date = ?3 WHERE arn = ?1")?
            .execute(params![end.map_run_arn, status, now_s])?;
        if end.failure.is_some() {
            to_stop.push(end.map_run_arn.clone());
        }
    }
    if execution_ended {
        let mut st = c.prepare_cached(
            "UPDATE map_runs SET status = ?2, stop_date = ?3 WHERE execution_arn = ?1 AND status = ?4 RETURNING arn",
        )?;
        let rows = st.query_map(params![execution_arn, ABORTED, now_s, RUNNING], |r| {
            r.get(0)
        })?;
        for arn in rows {
            to_stop.push(arn?);
        }
    }
    Ok(to_stop)
}

/// A stored date as the results files write it.
fn instant(epoch_s: f64) -> String {
    asl::time::timestamp(super::from_epoch(epoch_s))
}

/// Now, as the store writes dates.
pub(crate) fn now_s() -> f64 {
    epoch(chrono::Utc::now())
}
