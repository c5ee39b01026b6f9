//! Applying a checked feed: batches of rows read from the file as they go, each batch
//! one store transaction together with the feed's progress record.

use super::{
    check, feed_id_rule, Checked, Count, FeedError, Format, Kind, Known, Progress, Report, Row,
    RowError, Rows, StockRow,
};
use crate::ledger::{to_doc, StockRecord};
use crate::store::{Cond, Item, Key, Store, StoreError, Write, MAX_BATCH};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Rows per store batch: the batch's last write is the feed's progress record.
const ROWS_PER_BATCH: usize = MAX_BATCH - 1;
/// How often a batch is read and tried again when orders moved its stock meanwhile.
const MAX_ATTEMPTS: usize = 20;
/// How many refused rows the feed's record lists (it counts them all): the record is
/// rewritten with every batch, and a DynamoDB item holds at most 400 KB.
const MAX_REFUSALS_LISTED: usize = 100;

/// The feed's record in the store: its report so far and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FeedRecord {
    #[serde(flatten)]
    report: Report,
    /// The file's rows up to this line are applied (a resumed feed skips them).
    lines_done: u64,
    started_at: String,
    finished_at: Option<String>,
}

fn feed_key(feed_id: &str) -> Key {
    Key::new(format!("FEED#{feed_id}"), "FEED")
}

/// Checks the feed file at `path`, then applies it unless it is bad or was applied
/// before (see the module's doc for the rules). `path` is read twice, so it must not
/// change meanwhile (the server spools a request's body to a file of its own).
pub async fn import(
    store: Arc<dyn Store>,
    kind: Kind,
    format: Format,
    path: &Path,
    feed_id: Option<&str>,
    progress: Arc<Progress>,
) -> Result<Report, FeedError> {
    if let Some(rule) = feed_id.and_then(feed_id_rule) {
        return Err(FeedError::Invalid(format!("feed_id: {rule}")));
    }
    let known = match kind {
        Kind::Stock => Known::load(&*store).await?,
        _ => Known::default(),
    };
    let checked = check_file(kind, format, path.to_path_buf(), known, progress.clone()).await?;
    progress.checked.store(true, Ordering::Relaxed);
    let feed_id = feed_id.map_or_else(
        || format!("{}-{}", kind.name(), checked.sha256),
        str::to_string,
    );
    let key = feed_key(&feed_id);
    let (mut record, version) = match store.get(&key).await? {
        Some(item) => match resume(item, kind, &checked)? {
            Resume::Done(report) => return Ok(report),
            Resume::From(record, version) => (record, version),
        },
        None if checked.error_count > 0 => return Ok(invalid(feed_id, kind, checked)),
        None => {
            let record = FeedRecord {
                report: report_of(feed_id.clone(), kind, &checked, "applying"),
                lines_done: 0,
                started_at: crate::ledger::now(),
                finished_at: None,
            };
            let create = Write::Put {
                key: key.clone(),
                doc: to_doc(&record),
                cond: Cond::NotExists,
            };
            match store.transact(vec![create]).await {
                Ok(()) => (record, 1),
                Err(StoreError::ConditionFailed { .. }) => return Err(busy(&feed_id)),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let mut feed = Feed { key, version };
    let (tx, mut rx) = mpsc::channel(2);
    let reader = spawn_reader(kind, format, path.to_path_buf(), record.lines_done, tx);
    while let Some(batch) = rx.recv().await {
        let batch = batch.map_err(FeedError::Invalid)?;
        apply_batch(&*store, &mut feed, &mut record, &batch).await?;
        progress
            .rows_applied
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    reader
        .await
        .map_err(|e| FeedError::Invalid(format!("feed reader: {e}")))?;
    record.report.status = "applied".into();
    record.finished_at = Some(crate::ledger::now());
    let done = Write::Put {
        key: feed.key.clone(),
        doc: to_doc(&record),
        cond: Cond::Version(feed.version),
    };
    match store.transact(vec![done]).await {
        Ok(()) => Ok(record.report),
        Err(StoreError::ConditionFailed { .. }) => Err(busy(&feed_id)),
        Err(e) => Err(e.into()),
    }
}

/// Reads and checks the whole file off the async threads.
async fn check_file(
    kind: Kind,
    format: Format,
    path: PathBuf,
    known: Known,
    progress: Arc<Progress>,
) -> Result<Checked, FeedError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| FeedError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(check(kind, format, file, &known, &progress))
    })
    .await
    .map_err(|e| FeedError::Invalid(format!("feed check: {e}")))?
}

enum Resume {
    Done(Report),
    From(FeedRecord, u64),
}

/// What to do with a feed whose id is in the store already.
fn resume(item: Item, kind: Kind, checked: &Checked) -> Result<Resume, FeedError> {
    let record: FeedRecord = FeedRecord::deserialize(&*item.doc)
        .map_err(|e| StoreError::Unavailable(format!("feed record {}: {e}", item.key)))?;
    let r = &record.report;
    if r.sha256 != checked.sha256 || r.kind != kind.name() {
        return Err(FeedError::Conflict(format!(
            "feed_id: {} already names another {} file (sha256 {}); a new file needs a new feed id",
            r.feed_id, r.kind, r.sha256
        )));
    }
    if r.status == "applied" {
        let mut report = record.report;
        report.status = "already_applied".into();
        return Ok(Resume::Done(report));
    }
    Ok(Resume::From(record, item.version))
}

fn report_of(feed_id: String, kind: Kind, checked: &Checked, status: &str) -> Report {
    Report {
        feed_id,
        kind: kind.name().into(),
        status: status.into(),
        rows: checked.rows,
        applied: 0,
        unchanged: 0,
        refused: 0,
        refusals: vec![],
        errors: vec![],
        error_count: 0,
        sha256: checked.sha256.clone(),
    }
}

fn invalid(feed_id: String, kind: Kind, checked: Checked) -> Report {
    let mut report = report_of(feed_id, kind, &checked, "invalid");
    report.error_count = checked.error_count;
    report.errors = checked.errors;
    report
}

fn busy(feed_id: &str) -> FeedError {
    FeedError::Conflict(format!(
        "feed_id: {feed_id} is being applied by another request now; send it again once that one ends"
    ))
}

struct Feed {
    key: Key,
    version: u64,
}

type Batch = Vec<(u64, Row)>;

/// Reads the file again on a blocking thread and sends its rows past line `skip_to` in
/// batches of distinct items (a store batch writes each item once). The channel is
/// short, so the reader is never far ahead of the store.
fn spawn_reader(
    kind: Kind,
    format: Format,
    path: PathBuf,
    skip_to: u64,
    tx: mpsc::Sender<Result<Batch, String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("{}: {e}", path.display())));
                return;
            }
        };
        let mut batch: Batch = Vec::with_capacity(ROWS_PER_BATCH);
        let mut keys = HashSet::new();
        for item in Rows::new(kind, format, file) {
            let Ok((line, row)) = item else {
                let _ = tx.blocking_send(Err("the file changed after it was checked".into()));
                return;
            };
            if line <= skip_to {
                continue;
            }
            let key = row.key();
            if batch.len() == ROWS_PER_BATCH || keys.contains(&key) {
                keys.clear();
                if tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return; // the applier stopped (an error): nothing more to do
                }
            }
            keys.insert(key);
            batch.push((line, row));
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    })
}

/// What one row does to its item, given what the store holds now.
enum Plan {
    Write(Write),
    Unchanged,
    Refuse(RowError),
}

/// Applies `rows` and the feed's progress in one transaction. Each row is planned from
/// a fresh read; a reservation that moves the stock between the read and the commit
/// fails the batch's condition (a version, or the `available >= 0` guard), and the
/// batch is read and planned again, so no row acts on a stale count.
async fn apply_batch(
    store: &dyn Store,
    feed: &mut Feed,
    record: &mut FeedRecord,
    rows: &[(u64, Row)],
) -> Result<(), FeedError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            // Orders moved this batch's stock: let them pass before reading again, as
            // the activities' own retries do, or a busy SKU wins every race.
            let spread_ms = 2 * attempt as u64;
            tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(
                0..=spread_ms,
            )))
            .await;
        }
        let mut next = record.clone();
        let mut writes = Vec::with_capacity(rows.len() + 1);
        for (line, row) in rows {
            let current = store.get(&row.key()).await?;
            match plan(*line, row, current.as_ref())? {
                Plan::Write(w) => {
                    writes.push(w);
                    next.report.applied += 1;
                }
                Plan::Unchanged => next.report.unchanged += 1,
                Plan::Refuse(e) => {
                    next.report.refused += 1;
                    if next.report.refusals.len() < MAX_REFUSALS_LISTED {
                        next.report.refusals.push(e);
                    }
                }
            }
        }
        next.lines_done = rows.last().map_or(next.lines_done, |(line, _)| *line);
        let progress_at = writes.len();
        writes.push(Write::Put {
            key: feed.key.clone(),
            doc: to_doc(&next),
            cond: Cond::Version(feed.version),
        });
        match store.transact(writes).await {
            Ok(()) => {
                *record = next;
                feed.version += 1;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { index, .. }) if index == progress_at => {
                return Err(busy(&record.report.feed_id));
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FeedError::Store(StoreError::Unavailable(format!(
        "the stock of lines {}..{} kept changing under {MAX_ATTEMPTS} attempts; send the \
         feed again to resume from there",
        rows.first().map_or(0, |r| r.0),
        rows.last().map_or(0, |r| r.0)
    ))))
}

fn plan(line: u64, row: &Row, current: Option<&Item>) -> Result<Plan, FeedError> {
    let (key, doc) = match row {
        Row::Sku(s) => (row.key(), to_doc(s)),
        Row::Warehouse(w) => (row.key(), to_doc(w)),
        Row::Stock(s) => return plan_stock(line, s, current),
    };
    Ok(match current {
        None => Plan::Write(Write::Put {
            key,
            doc,
            cond: Cond::NotExists,
        }),
        Some(item) if *item.doc == doc => Plan::Unchanged,
        Some(item) => Plan::Write(Write::Put {
            key,
            doc,
            cond: Cond::Version(item.version),
        }),
    })
}

/// A stock row's write. An absolute count replaces the item under its version (so a
/// reservation meanwhile is seen); a delta is an `Add` guarded by `available >= 0`.
/// Either way `received` moves with `on_hand`, keeping `on_hand + shipped == received`
/// (the audit's invariant: a count that finds fewer units is a negative receipt).
fn plan_stock(line: u64, row: &StockRow, current: Option<&Item>) -> Result<Plan, FeedError> {
    let key = crate::ledger::stock_key(&row.sku, &row.warehouse_id);
    let Some(item) = current else {
        let units = match row.count {
            Count::OnHand(n) => n,
            Count::Delta(d) if d >= 0 => d,
            Count::Delta(_) => {
                let rule = "no stock of this SKU at this warehouse to take units from";
                return Ok(Plan::Refuse(RowError::new(line, "delta", rule)));
            }
        };
        let record = StockRecord {
            sku: row.sku.clone(),
            warehouse_id: row.warehouse_id.clone(),
            on_hand: units,
            reserved: 0,
            available: units,
            shipped: 0,
            received: units,
        };
        return Ok(Plan::Write(Write::Put {
            key,
            doc: to_doc(&record),
            cond: Cond::NotExists,
        }));
    };
    let stock: StockRecord = StockRecord::deserialize(&*item.doc)
        .map_err(|e| StoreError::Unavailable(format!("stock record {key}: {e}")))?;
    let (field, change) = match row.count {
        Count::OnHand(n) => ("on_hand", n.checked_sub(stock.on_hand)),
        Count::Delta(d) => ("delta", Some(d)),
    };
    let after = change.and_then(|c| {
        Some((
            c,
            stock.on_hand.checked_add(c)?,
            stock.available.checked_add(c)?,
        ))
    });
    let Some((change, on_hand, available)) = after else {
        return Ok(Plan::Refuse(RowError::new(
            line,
            field,
            "the count would overflow",
        )));
    };
    if change == 0 {
        return Ok(Plan::Unchanged);
    }
    if available < 0 {
        let rule = if on_hand < 0 {
            format!(
                "would leave {on_hand} units on hand; there are {}",
                stock.on_hand
            )
        } else {
            format!(
                "would leave {on_hand} on hand, below the {} units orders hold reserved: \
                 refused (a stock change never breaks a reservation)",
                stock.reserved
            )
        };
        return Ok(Plan::Refuse(RowError::new(line, field, rule)));
    }
    let Some(received) = stock.received.checked_add(change) else {
        return Ok(Plan::Refuse(RowError::new(
            line,
            field,
            "the count would overflow",
        )));
    };
    Ok(Plan::Write(match row.count {
        Count::OnHand(_) => {
            let record = StockRecord {
                on_hand,
                available,
                received,
                ..stock
            };
            Write::Put {
                key,
                doc: to_doc(&record),
                cond: Cond::Version(item.version),
            }
        }
        Count::Delta(_) => Write::Add {
            key,
            deltas: vec![
                ("on_hand".into(), change),
                ("available".into(), change),
                ("received".into(), change),
            ],
            min_after: vec![("on_hand".into(), 0), ("available".into(), 0)],
        },
    }))
}
