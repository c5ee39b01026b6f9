//! The Map Run API (ListMapRuns, DescribeMapRun, UpdateMapRun) over the rows the
//! runtime writes for a distributed Map (`runtime/map_runs.rs`).

use super::{from_epoch, next_page, page, runtime_error, LocalStepFunctions};
use crate::api::*;
use asl::eval::MapRunUpdate;
use rusqlite::{params, OptionalExtension};

/// ListExecutions' filter for the children of the Map Run `?1`.
pub(crate) const CHILDREN_FILTER: &str =
    "e.arn IN (SELECT child_arn FROM map_run_children WHERE map_run_arn = ?1)";

/// A Map Run as its row holds it.
pub(super) struct MapRunRow {
    arn: String,
    execution_arn: String,
    state_machine_arn: String,
    status: String,
    start_date: f64,
    stop_date: Option<f64>,
    max_concurrency: i64,
    tolerated_failure_count: Option<f64>,
    tolerated_failure_percentage: Option<f64>,
    child_count: i64,
    total_items: i64,
}

impl MapRunRow {
    const SELECT: &'static str = "SELECT arn, execution_arn, state_machine_arn, status, start_date, \
         stop_date, max_concurrency, tolerated_failure_count, tolerated_failure_percentage, child_count, total_items \
         FROM map_runs";

    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<MapRunRow> {
        Ok(MapRunRow {
            arn: r.get(0)?,
            execution_arn: r.get(1)?,
            state_machine_arn: r.get(2)?,
            status: r.get(3)?,
            start_date: r.get(4)?,
            stop_date: r.get(5)?,
            max_concurrency: r.get(6)?,
            tolerated_failure_count: r.get(7)?,
            tolerated_failure_percentage: r.get(8)?,
            child_count: r.get(9)?,
            total_items: r.get(10)?,
        })
    }
}

/// The Map Run `arn`, or AWS's errors for a malformed or unknown one.
pub(super) fn row(api: &LocalStepFunctions, arn: &str) -> Result<MapRunRow, ApiError> {
    if !arn.starts_with("arn:") || !arn.contains(":mapRun:") {
        return Err(ApiError::invalid_arn(format!(
            "Invalid Arn: 'Resource type not valid in this context: {arn}'"
        )));
    }
    api.read(|c| {
        Ok(c.query_row(
            &format!("{} WHERE arn = ?1", MapRunRow::SELECT),
            [arn],
            MapRunRow::from_row,
        )
        .optional()?)
    })?
    .ok_or_else(|| ApiError::resource_not_found(format!("Map Run Does Not Exist: '{arn}'")))
}

/// The items each child of the Map Run `arn` runs, by the child's ARN.
pub(super) fn items_by_child(
    api: &LocalStepFunctions,
    arn: &str,
) -> Result<std::collections::HashMap<String, i64>, ApiError> {
    api.read(|c| {
        let mut st =
            c.prepare("SELECT child_arn, items FROM map_run_children WHERE map_run_arn = ?1")?;
        let rows = st.query_map([arn], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    })
}

/// The Map Run that started the execution `child_arn`, if one did.
pub(super) fn of_child(
    api: &LocalStepFunctions,
    child_arn: &str,
) -> Result<Option<String>, ApiError> {
    api.read(|c| {
        Ok(c.query_row(
            "SELECT map_run_arn FROM map_run_children WHERE child_arn = ?1",
            [child_arn],
            |r| r.get(0),
        )
        .optional()?)
    })
}

pub(super) fn list(
    api: &LocalStepFunctions,
    input: ListMapRunsInput,
) -> Result<ListMapRunsOutput, ApiError> {
    api.execution_row(&input.execution_arn)?;
    let (offset, limit) = page(&input.next_token, input.max_results, 100)?;
    let arn = input.execution_arn.clone();
    let rows: Vec<MapRunRow> = api.read(|c| {
        let mut st = c.prepare(&format!(
            "{} WHERE execution_arn = ?1 ORDER BY start_date DESC, arn LIMIT ?2 OFFSET ?3",
            MapRunRow::SELECT
        ))?;
        let rows = st.query_map(params![arn, limit + 1, offset], MapRunRow::from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })?;
    let next_token = next_page(offset, limit, rows.len());
    Ok(ListMapRunsOutput {
        map_runs: rows
            .into_iter()
            .take(limit as usize)
            .map(|r| MapRunListItem {
                execution_arn: r.execution_arn,
                map_run_arn: r.arn,
                state_machine_arn: r.state_machine_arn,
                start_date: from_epoch(r.start_date),
                stop_date: r.stop_date.map(from_epoch),
            })
            .collect(),
        next_token,
    })
}

pub(super) fn describe(
    api: &LocalStepFunctions,
    arn: &str,
) -> Result<DescribeMapRunOutput, ApiError> {
    let r = row(api, arn)?;
    let counts = counts(api, &r)?;
    let status = MapRunStatus::parse(&r.status).ok_or_else(|| {
        runtime_error(crate::runtime::RuntimeError::Invalid(format!(
            "the Map Run {arn} has an unknown status '{}'",
            r.status
        )))
    })?;
    Ok(DescribeMapRunOutput {
        map_run_arn: r.arn,
        execution_arn: r.execution_arn,
        status,
        start_date: from_epoch(r.start_date),
        stop_date: r.stop_date.map(from_epoch),
        max_concurrency: r.max_concurrency,
        tolerated_failure_percentage: r.tolerated_failure_percentage.unwrap_or(0.0),
        tolerated_failure_count: r.tolerated_failure_count.unwrap_or(0.0) as i64,
        // Without an ItemBatcher each child runs one item; with one, a batch.
        item_counts: counts.items,
        execution_counts: counts.executions,
        redrive_count: 0,
        redrive_date: None,
    })
}

/// DescribeMapRun's two counts: of children, and of the items they run.
struct Counts {
    executions: MapRunCounts,
    items: MapRunCounts,
}

/// The children (and their items) by status; those not started yet are pending.
fn counts(api: &LocalStepFunctions, r: &MapRunRow) -> Result<Counts, ApiError> {
    let arn = r.arn.clone();
    let by_status: Vec<(String, i64, i64)> = api.read(|c| {
        let mut st = c.prepare(
            "SELECT e.status, COUNT(*), SUM(m.items) FROM map_run_children m \
             JOIN executions e ON e.arn = m.child_arn WHERE m.map_run_arn = ?1 GROUP BY e.status",
        )?;
        let rows = st.query_map([&arn], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })?;
    let tally = |pick: fn(&(String, i64, i64)) -> i64, total: i64| {
        let of = |s: ExecutionStatus| {
            by_status
                .iter()
                .filter(|row| row.0 == s.as_str())
                .map(pick)
                .sum::<i64>()
        };
        let started: i64 = by_status.iter().map(pick).sum();
        MapRunCounts {
            pending: total.saturating_sub(started).max(0),
            running: of(ExecutionStatus::Running),
            succeeded: of(ExecutionStatus::Succeeded),
            failed: of(ExecutionStatus::Failed),
            timed_out: of(ExecutionStatus::TimedOut),
            aborted: of(ExecutionStatus::Aborted),
            total,
            ..Default::default()
        }
    };
    Ok(Counts {
        executions: tally(|row| row.1, r.child_count),
        items: tally(|row| row.2, r.total_items),
    })
}

pub(super) async fn update(
    api: &LocalStepFunctions,
    input: UpdateMapRunInput,
) -> Result<UpdateMapRunOutput, ApiError> {
    let update = checked_update(&input)?;
    let r = row(api, &input.map_run_arn)?;
    let applied = api
        .runtime
        .update_map_run(&r.execution_arn, &r.arn, update)
        .await
        .map_err(runtime_error)?;
    if !applied {
        return Err(ApiError::validation(format!(
            "Map Run '{}' is not running: only a running Map Run can be updated",
            r.arn
        )));
    }
    Ok(UpdateMapRunOutput {})
}

/// UpdateMapRun's arguments within AWS's bounds, with AWS's messages.
fn checked_update(input: &UpdateMapRunInput) -> Result<MapRunUpdate, ApiError> {
    let bound = |field: &str, value: String, rule: &str| {
        ApiError::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have value {rule}"
        ))
    };
    let max_concurrency = match input.max_concurrency {
        Some(n) if n < 0 => {
            return Err(bound(
                "maxConcurrency",
                n.to_string(),
                "greater than or equal to 0",
            ))
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    let tolerated_failure_count = match input.tolerated_failure_count {
        Some(n) if n < 0 => {
            return Err(bound(
                "toleratedFailureCount",
                n.to_string(),
                "greater than or equal to 0",
            ))
        }
        n => n.map(|n| n as f64),
    };
    let tolerated_failure_percentage = match input.tolerated_failure_percentage {
        Some(p) if !(0.0..=100.0).contains(&p) => {
            return Err(bound(
                "toleratedFailurePercentage",
                p.to_string(),
                "between 0 and 100",
            ))
        }
        p => p,
    };
    if max_concurrency.is_none()
        && tolerated_failure_count.is_none()
        && tolerated_failure_percentage.is_none()
    {
        return Err(ApiError::validation(
            "At least one of maxConcurrency, toleratedFailureCount or toleratedFailurePercentage must be given",
        ));
    }
    Ok(MapRunUpdate {
        max_concurrency,
        tolerated_failure_count,
        tolerated_failure_percentage,
    })
}
