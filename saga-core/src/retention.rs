//! Retention: closed executions older than the retention period are deleted with their
//! history, as AWS forgets an execution 90 days after it closes. Afterwards the
//! execution answers ExecutionDoesNotExist, as an expired one does on AWS.
//!
//! What is kept whatever the period: RUNNING executions, and FAILED, ABORTED or
//! TIMED_OUT Standard executions still inside the redrive window
//! ([`crate::runtime::REDRIVE_WINDOW_DAYS`]), since RedriveExecution needs them.
//!
//! A prune deletes in batches, each its own job in the store's group commit, so the
//! writer is never held for more than one batch and other executions' steps commit
//! between batches. Freed pages go to SQLite's freelist and are reused by later
//! writes: the database stops growing once pruning keeps pace with new orders.

use crate::runtime::{epoch, redrive_window, Runtime};
use crate::store::StoreError;
use chrono::{DateTime, Duration, Utc};
use rusqlite::params;

/// AWS keeps a closed execution for 90 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// Executions deleted per store job: a few thousand history rows, a few milliseconds of
/// the writer's time.
pub const DEFAULT_BATCH: usize = 100;

/// What one prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub executions: u64,
    pub batches: u64,
}

impl Runtime {
    /// Deletes every execution that closed before `now - retention` (and, if it could
    /// still be redriven, before `now - 14 days`), `batch` executions per commit. `now`
    /// is the caller's clock, so tests choose it.
    pub async fn prune(
        &self,
        now: DateTime<Utc>,
        retention: Duration,
        batch: usize,
    ) -> Result<Pruned, StoreError> {
        let retained_after_s = epoch(now - retention);
        let redrivable_after_s = epoch(now - redrive_window()).min(retained_after_s);
        let limit = batch.max(1);
        let mut done = Pruned::default();
        loop {
            // A redrive brings a closed execution back to RUNNING: holding its lock over
            // the select and the delete means a prune never deletes one being redriven.
            let _no_redrive = self.redriving.lock().await;
            let ids = self
                .store()
                .read(move |c| expired(c, retained_after_s, redrivable_after_s, limit))?;
            if ids.is_empty() {
                return Ok(done);
            }
            let deleted = self.store().write(move |c| delete(c, &ids)).await?;
            done.executions += deleted;
            done.batches += 1;
            drop(_no_redrive);
            tokio::task::yield_now().await;
        }
    }
}

/// Up to `limit` closed executions past retention: (rowid, arn), oldest first.
fn expired(
    c: &rusqlite::Connection,
    retained_after_s: f64,
    redrivable_after_s: f64,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut q = c.prepare_cached(
        "SELECT rowid, arn FROM executions \
         WHERE stop_date IS NOT NULL AND stop_date < ?1 AND status <> 'RUNNING' \
           AND (status = 'SUCCEEDED' OR machine_type = 'EXPRESS' OR stop_date < ?2) \
         ORDER BY stop_date LIMIT ?3",
    )?;
    let rows = q.query_map(
        params![retained_after_s, redrivable_after_s, limit as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes the executions, their history, snapshots, task tokens and nested links; one still closed
/// only (the status is read again inside the writer's transaction).
pub(crate) fn delete(c: &rusqlite::Connection, ids: &[(i64, String)]) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for (rowid, arn) in ids {
        let gone = c
            .prepare_cached("DELETE FROM executions WHERE rowid = ?1 AND status <> 'RUNNING'")?
            .execute([rowid])?;
        if gone == 0 {
            continue;
        }
        c.prepare_cached("DELETE FROM events WHERE execution_id = ?1")?
            .execute([rowid])?;
        c.prepare_cached("DELETE FROM step_events WHERE execution_id = ?1")?
            .execute([rowid])?;
        c.prepare_cached("DELETE FROM histories WHERE execution_id = ?1")?
            .execute([rowid])?;
        c.prepare_cached("DELETE FROM snapshots WHERE arn = ?1")?
            .execute([arn])?;
        c.prepare_cached("DELETE FROM tasks WHERE execution_arn = ?1")?
            .execute([arn])?;
        // Its own link to its parent; the links to its children, which are closed or
        // will not be waited for by a closed parent.
        c.prepare_cached("DELETE FROM children WHERE child_arn = ?1 OR parent_arn = ?1")?
            .execute([arn])?;
        // Its Map Runs and their links to their children, and its own link to a Map Run.
        c.prepare_cached(
            "DELETE FROM map_run_children WHERE child_arn = ?1 \
             OR map_run_arn IN (SELECT arn FROM map_runs WHERE execution_arn = ?1)",
        )?
        .execute([arn])?;
        c.prepare_cached("DELETE FROM map_runs WHERE execution_arn = ?1")?
            .execute([arn])?;
        c.prepare_cached("DELETE FROM mocked_executions WHERE arn = ?1")?
            .execute([arn])?;
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{default_route, Invoker, NewExecution, Route};
    use crate::store::ExecutionStore;
    use asl::{Failure, Machine, TaskCall};
    use serde_json::{json, Value};
    use std::sync::Arc;

    /// Succeeds, or fails when the input has `fail`.
    struct Echo;

    #[async_trait::async_trait]
    impl Invoker for Echo {
        fn route(&self, call: &TaskCall) -> Route {
            default_route(call)
        }
        async fn invoke(&self, _: &str, call: &TaskCall) -> Result<Value, Failure> {
            match call.payload.get("fail") {
                Some(_) => Err(Failure::new("Boom", "failed on purpose")),
                None => Ok(json!({"ok": true})),
            }
        }
    }

    const TASK: &str = r#"{"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:0:function:f","End":true}}}"#;
    const WAITS: &str =
        r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":86400,"End":true}}}"#;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("oms-ret-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn execution(definition: &str, name: &str, input: Value) -> NewExecution {
        NewExecution {
            state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m".into(),
            name: name.into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            express: false,
            definition: definition.into(),
            machine: Arc::new(Machine::parse(definition).unwrap()),
            input_text: input.to_string(),
            parent: None,
            test_case: None,
            input,
        }
    }

    async fn run(rt: &Arc<Runtime>, name: &str, input: Value) -> String {
        let (arn, _) = rt.start(execution(TASK, name, input)).await.unwrap();
        rt.wait_finished(&arn).await;
        arn
    }

    /// (status, history events) of every execution left, by name.
    fn left(store: &ExecutionStore) -> Vec<(String, String, i64)> {
        store
            .read(|c| {
                let mut q =
                    c.prepare("SELECT name, status, rowid FROM executions ORDER BY name")?;
                let rows = q.query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })?;
                let rows: Vec<(String, String, i64)> = rows.collect::<Result<_, _>>()?;
                rows.into_iter()
                    .map(|(n, s, id)| Ok((n, s, crate::history::read(c, id)?.len() as i64)))
                    .collect()
            })
            .unwrap()
    }

    fn count(store: &ExecutionStore, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        store
            .read(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prunes_closed_executions_past_retention_and_keeps_the_rest() {
        let store = ExecutionStore::open(&temp_dir("rules")).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        run(&rt, "ok", json!({})).await;
        let failed = run(&rt, "failed", json!({"fail": 1})).await;
        let (running, _) = rt
            .start(execution(WAITS, "running", json!({})))
            .await
            .unwrap();
        let now = Utc::now();

        // Inside retention: nothing goes.
        let none = rt.prune(now, Duration::days(1), 10).await.unwrap();
        assert_eq!(none, Pruned::default());
        assert_eq!(left(&store).len(), 3);

        // Two days on with a one-day retention: the succeeded one goes with its
        // history; the failed one may still be redriven; the running one stays.
        let later = now + Duration::days(2);
        let pruned = rt.prune(later, Duration::days(1), 10).await.unwrap();
        assert_eq!(pruned.executions, 1);
        let names: Vec<String> = left(&store).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, ["failed", "running"]);
        assert_eq!(
            store
                .read(|c| Ok(c.query_row(
                    "SELECT (SELECT count(*) FROM events WHERE execution_id NOT IN (SELECT rowid FROM executions)) \
                     + (SELECT count(*) FROM step_events WHERE execution_id NOT IN (SELECT rowid FROM executions)) \
                     + (SELECT count(*) FROM histories WHERE execution_id NOT IN (SELECT rowid FROM executions))",
                    [],
                    |r| r.get::<_, i64>(0)
                )?))
                .unwrap(),
            0,
            "the pruned execution's history is gone"
        );

        // Past the redrive window the failed one goes too, snapshot and all; the
        // running one never does.
        let past_redrive = now + redrive_window() + Duration::hours(1);
        let pruned = rt.prune(past_redrive, Duration::days(1), 10).await.unwrap();
        assert_eq!(pruned.executions, 1);
        let after = left(&store);
        assert_eq!(after.len(), 1);
        assert_eq!(
            (after[0].0.as_str(), after[0].1.as_str()),
            ("running", "RUNNING")
        );
        assert!(after[0].2 > 0, "the running execution keeps its history");
        let far = now + Duration::days(10_000);
        rt.prune(far, Duration::seconds(0), 10).await.unwrap();
        assert_eq!(left(&store).len(), 1);
        assert!(matches!(
            rt.redrive(&failed).await,
            Err(crate::runtime::RuntimeError::NoSuchExecution(_))
        ));
        let snapshots: Vec<String> = store
            .read(|c| {
                let mut q = c.prepare("SELECT arn FROM snapshots")?;
                let rows = q.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(snapshots, [running]);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_retention_keeps_a_failed_execution_past_the_redrive_window() {
        let store = ExecutionStore::open(&temp_dir("long")).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        run(&rt, "failed", json!({"fail": 1})).await;
        let later = Utc::now() + Duration::days(30);
        let pruned = rt.prune(later, Duration::days(90), 10).await.unwrap();
        assert_eq!(pruned.executions, 0);
        let pruned = rt
            .prune(later + Duration::days(61), Duration::days(90), 10)
            .await
            .unwrap();
        assert_eq!(pruned.executions, 1);
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prunes_in_batches_of_the_size_asked() {
        let store = ExecutionStore::open(&temp_dir("batches")).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        for i in 0..7 {
            run(&rt, &format!("e{i}"), json!({})).await;
        }
        assert!(count(&store, "histories") > 0);
        let pruned = rt
            .prune(Utc::now() + Duration::seconds(1), Duration::seconds(0), 3)
            .await
            .unwrap();
        assert_eq!(
            pruned,
            Pruned {
                executions: 7,
                batches: 3
            }
        );
        assert_eq!(count(&store, "executions"), 0);
        assert_eq!(count(&store, "events") + count(&store, "histories"), 0);
        // A name is free again once its execution is gone, as on AWS after 90 days.
        run(&rt, "e0", json!({})).await;
        assert_eq!(count(&store, "executions"), 1);
        store.close();
    }
}
