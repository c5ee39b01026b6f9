//! `oms export orders`: the orders placed in a time window, with their lines,
//! shipments and saga ledger, as four columnar tables (Parquet or CSV), the shape an
//! analytics warehouse loads (Athena, Redshift Spectrum, DuckDB: docs/deploy.md).
//!
//! Orders are read through the store contract (`activities::store::Store`), so the
//! same code exports from SQLite and from DynamoDB: the month partitions of the order
//! index, newest first, a page of [`ExportArgs::batch`] index entries at a time, then
//! each order's partition with one Query. A page is written before the next is read,
//! so memory holds one page whatever the window holds. Each order is as one Query read
//! it (an order that changes during the export is exported as it was then).
//!
//! The tables leave out the personal data the ledger holds for fulfilment (the
//! recipient's name and street, the payment-method reference): analytics needs the
//! country and city, not the address.

use activities::ledger::{self, IndexBy, OrderItem, OrderRecord, ShipmentRecord};
use activities::store::{Item, Store};
use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: Export,
}

#[derive(clap::Subcommand)]
enum Export {
    /// Orders placed in [--since, --until), with their lines, shipments and saga
    /// ledger: DIR/orders/, DIR/lines/, DIR/shipments/, DIR/ledger/, one file each.
    Orders(OrdersExport),
}

#[derive(clap::Args)]
pub struct OrdersExport {
    /// Orders placed at or after this instant: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long)]
    since: String,
    /// Orders placed before this instant [default: now].
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// The directory to write the tables into (created; existing files are replaced).
    /// (Not `--output`: that is every command's table-or-JSON flag.)
    #[arg(long)]
    output_dir: PathBuf,
    /// The data dir of the `oms up` whose orders to export (its oms.sqlite3).
    #[arg(long, env = "OMS_DATA_DIR", default_value = ".oms")]
    data_dir: PathBuf,
    /// The order store instead: sqlite:PATH or dynamodb:TABLE (the deployed stack's).
    #[arg(long, env = "OMS_STORE")]
    store: Option<String>,
    /// The key of an encrypted data dir (docs/security.md), as for `oms up`.
    #[arg(long, env = "OMS_DB_KEY_FILE")]
    db_key_file: Option<PathBuf>,
    /// Orders read and written per batch (bounds memory).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Apache Parquet, Snappy-compressed.
    Parquet,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// What an export wrote: rows per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exported {
    pub orders: u64,
    pub lines: u64,
    pub shipments: u64,
    pub ledger: u64,
}

pub fn export(args: ExportArgs, dynamodb_endpoint: Option<String>) -> Result<ExitCode, String> {
    let Export::Orders(args) = args.what;
    let window = Window::parse(&args.since, args.until.as_deref(), Utc::now())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let store = open(&args, dynamodb_endpoint.as_deref()).await?;
        let started = std::time::Instant::now();
        let n = export_orders(&*store, &window, args.format, &args.output_dir, args.batch).await?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "oms: exported {} orders, {} lines, {} shipments, {} ledger rows to {} in {seconds:.2} s ({:.0} orders/s)",
            n.orders,
            n.lines,
            n.shipments,
            n.ledger,
            args.output_dir.display(),
            n.orders as f64 / seconds.max(1e-9)
        );
        Ok(ExitCode::SUCCESS)
    })
}

async fn open(
    args: &OrdersExport,
    dynamodb_endpoint: Option<&str>,
) -> Result<Arc<dyn Store>, String> {
    let key = dbkey::configured(args.db_key_file.as_deref())?;
    let spec = match &args.store {
        Some(spec) => spec.clone(),
        None => {
            // Where `oms up` keeps the order store: in its database (one WAL with the
            // runtime's), or in orders.db in a data dir no oms since has opened.
            // Opening would create an empty store: a mistyped data dir must say so.
            let database = saga_core::store::DATABASE_FILE;
            let older = activities::store::sqlite::OLDER_DATA_DIR_FILE;
            let path = [database, older]
                .iter()
                .map(|file| args.data_dir.join(file))
                .find(|path| path.exists())
                .ok_or_else(|| {
                    format!(
                        "--data-dir {}: no {database} there (the data dir of `oms up`, or --store)",
                        args.data_dir.display()
                    )
                })?;
            format!("sqlite:{}", path.display())
        }
    };
    activities::lambda::open_store(&spec, dynamodb_endpoint, key.as_ref()).await
}

/// The orders' creation times exported: `[since, until)`, as the index sorts them
/// (RFC 3339, milliseconds, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl Window {
    pub fn parse(since: &str, until: Option<&str>, now: DateTime<Utc>) -> Result<Window, String> {
        let since = instant("--since", since)?;
        let until = match until {
            Some(u) => instant("--until", u)?,
            None => now,
        };
        if until <= since {
            return Err(format!(
                "--until: must be after --since ({} is not after {})",
                index_time(until),
                index_time(since)
            ));
        }
        Ok(Window { since, until })
    }

    /// The month partitions of the index that can hold the window, newest first.
    fn months(&self) -> Vec<String> {
        let mut months = Vec::new();
        let (mut y, mut m) = (self.until.year(), self.until.month());
        loop {
            months.push(format!("{y:04}-{m:02}"));
            if (y, m) <= (self.since.year(), self.since.month()) {
                return months;
            }
            (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        }
    }
}

fn instant(flag: &str, text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{flag}: '{text}' is neither YYYY-MM-DD nor an RFC 3339 time"))
}

/// A time as the index's sort keys spell it, so that strings compare as times.
fn index_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A window's bound as the index compares it: the first millisecond at or after `t`.
/// The index keeps an order's creation to the millisecond, so an order created in
/// `t`'s millisecond but before `t` (one placed just before a default `--until`, now)
/// has that millisecond's time; a bound truncated to it would leave the order out.
/// Rounding both bounds up keeps adjacent windows from overlapping or leaving a gap.
fn index_bound(t: DateTime<Utc>) -> String {
    let past_the_millisecond = t.timestamp_subsec_nanos() % 1_000_000;
    if past_the_millisecond == 0 {
        return index_time(t);
    }
    index_time(t + chrono::Duration::nanoseconds(i64::from(1_000_000 - past_the_millisecond)))
}

/// Exports the window's orders into `dir` (one file per table), reading `batch`
/// orders at a time.
pub async fn export_orders(
    store: &dyn Store,
    window: &Window,
    format: Format,
    dir: &Path,
    batch: u32,
) -> Result<Exported, String> {
    let mut tables = Tables::create(dir, format)?;
    let (since, until) = (index_bound(window.since), index_bound(window.until));
    let mut exported = Exported::default();
    for month in window.months() {
        let pk = ledger::index_pk(IndexBy::Month, &month);
        let mut before: Option<String> = Some(until.clone());
        while let Some(from) = before.take() {
            let page = store
                .query_back(&pk, Some(&from), batch as usize)
                .await
                .map_err(|e| format!("cannot read the order index ({pk}): {e}"))?;
            let full = page.len() == batch as usize;
            let ids: Vec<String> = page
                .iter()
                .take_while(|i| i.key.sk >= since)
                .filter_map(|i| ledger::indexed_order_id(i).map(str::to_string))
                .collect();
            // Past `since` (or the partition's end): this month is done.
            if full && ids.len() == page.len() {
                before = page.last().map(|i| i.key.sk.clone());
            }
            let rows = read_orders(store, &ids).await?;
            tables.write(&rows, &mut exported)?;
        }
    }
    tables.close()?;
    Ok(exported)
}

/// One order's partition, decoded.
struct OrderRows {
    order: OrderRecord,
    shipments: Vec<ShipmentRecord>,
    steps: Vec<Item>,
}

async fn read_orders(store: &dyn Store, ids: &[String]) -> Result<Vec<OrderRows>, String> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let items = store
            .query(&ledger::order_pk(id), "")
            .await
            .map_err(|e| format!("cannot read order {id}: {e}"))?;
        let mut order = None;
        let (mut shipments, mut steps) = (Vec::new(), Vec::new());
        for item in items {
            match OrderItem::of(&item.key) {
                Some(OrderItem::Order) => order = Some(decode(&item)?),
                Some(OrderItem::Shipment) => shipments.push(decode(&item)?),
                Some(OrderItem::Step) => steps.push(item),
                None => {}
            }
        }
        // An index entry whose order is gone (never the case today) is skipped.
        if let Some(order) = order {
            rows.push(OrderRows {
                order,
                shipments,
                steps,
            });
        }
    }
    Ok(rows)
}

fn decode<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, String> {
    ledger::from_item(item).map_err(|e| e.message)
}

/// The four tables' files, open for writing.
struct Tables {
    orders: Sink,
    lines: Sink,
    shipments: Sink,
    ledger: Sink,
}

impl Tables {
    fn create(dir: &Path, format: Format) -> Result<Tables, String> {
        let sink = |name: &str, empty: RecordBatch| Sink::create(dir, name, format, &empty);
        Ok(Tables {
            orders: sink("orders", orders_batch(&[])?)?,
            lines: sink("lines", lines_batch(&[])?)?,
            shipments: sink("shipments", shipments_batch(&[])?)?,
            ledger: sink("ledger", ledger_batch(&[])?)?,
        })
    }

    fn write(&mut self, rows: &[OrderRows], n: &mut Exported) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        n.orders += self.orders.write(orders_batch(rows)?)?;
        n.lines += self.lines.write(lines_batch(rows)?)?;
        n.shipments += self.shipments.write(shipments_batch(rows)?)?;
        n.ledger += self.ledger.write(ledger_batch(rows)?)?;
        Ok(())
    }

    fn close(self) -> Result<(), String> {
        for sink in [self.orders, self.lines, self.shipments, self.ledger] {
            sink.close()?;
        }
        Ok(())
    }
}

/// One table's file: DIR/NAME/NAME.EXT (a folder per table, as Athena and Redshift
/// Spectrum read a table from a prefix).
enum Sink {
    Parquet(parquet::arrow::ArrowWriter<std::fs::File>, PathBuf),
    Csv(
        arrow_csv::Writer<std::io::BufWriter<std::fs::File>>,
        PathBuf,
    ),
}

/// Rows per Parquet row group: the writer buffers one group, so this bounds memory.
const ROW_GROUP_ROWS: usize = 64 * 1024;

impl Sink {
    fn create(dir: &Path, name: &str, format: Format, empty: &RecordBatch) -> Result<Sink, String> {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder)
            .map_err(|e| format!("--output-dir: cannot create {}: {e}", folder.display()))?;
        let path = folder.join(format!("{name}.{}", format.extension()));
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("--output-dir: cannot write {}: {e}", path.display()))?;
        Ok(match format {
            Format::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let w = parquet::arrow::ArrowWriter::try_new(file, empty.schema(), Some(props))
                    .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
                Sink::Parquet(w, path)
            }
            Format::Csv => {
                let mut w = arrow_csv::Writer::new(std::io::BufWriter::new(file));
                // The header goes with the first batch: an empty one writes it, so a
                // table with no rows still names its columns.
                w.write(empty)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Sink::Csv(w, path)
            }
        })
    }

    fn write(&mut self, batch: RecordBatch) -> Result<u64, String> {
        let rows = batch.num_rows() as u64;
        let (result, path) = match self {
            Sink::Parquet(w, path) => (w.write(&batch).map_err(|e| e.to_string()), path),
            Sink::Csv(w, path) => (w.write(&batch).map_err(|e| e.to_string()), path),
        };
        result.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(rows)
    }

    fn close(self) -> Result<(), String> {
        match self {
            Sink::Parquet(w, path) => w
                .close()
                .map(|_| ())
                .map_err(|e| format!("cannot finish {}: {e}", path.display())),
            Sink::Csv(w, path) => {
                use std::io::Write;
                w.into_inner()
                    .flush()
                    .map_err(|e| format!("cannot finish {}: {e}", path.display()))
            }
        }
    }
}

/// A timestamp column (UTC milliseconds) from the records' RFC 3339 times.
fn times<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let millis: Vec<Option<i64>> = values
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.timestamp_millis())
        })
        .collect();
    Arc::new(TimestampMillisecondArray::from(millis).with_timezone("+00:00"))
}

fn strs<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

/// Every column nullable: the schema is fixed from the first (empty) batch, and a
/// later batch may hold nulls where it had none (an order's failure, a tracking number).
fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, String> {
    let columns = columns.into_iter().map(|(name, array)| (name, array, true));
    RecordBatch::try_from_iter_with_nullable(columns)
        .map_err(|e| format!("cannot build a batch: {e}"))
}

/// A status as the API spells it (`COMPENSATION_FAILED`).
fn spelled<T: serde::Serialize>(status: &T) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn orders_batch(rows: &[OrderRows]) -> Result<RecordBatch, String> {
    let o = || rows.iter().map(|r| &r.order);
    let statuses: Vec<String> = o().map(|o| spelled(&o.status)).collect();
    batch(vec![
        ("order_id", strs(o().map(|o| Some(o.order_id.as_str())))),
        (
            "customer_id",
            strs(o().map(|o| Some(o.customer_id.as_str()))),
        ),
        ("status", strs(statuses.iter().map(|s| Some(s.as_str())))),
        ("currency", strs(o().map(|o| Some(o.currency.as_str())))),
        ("total_cents", ints(o().map(|o| o.total_cents))),
        ("charged_cents", ints(o().map(|o| o.charged_cents))),
        ("refunded_cents", ints(o().map(|o| o.refunded_cents))),
        ("line_count", ints(o().map(|o| o.lines.len() as i64))),
        (
            "cancel_requested",
            Arc::new(
                o().map(|o| Some(o.cancel_requested))
                    .collect::<BooleanArray>(),
            ),
        ),
        (
            "ship_to_country",
            strs(o().map(|o| Some(o.ship_to.country.as_str()))),
        ),
        (
            "ship_to_city",
            strs(o().map(|o| Some(o.ship_to.city.as_str()))),
        ),
        (
            "failed_step",
            strs(o().map(|o| o.failure.as_ref().and_then(|f| f.step.as_deref()))),
        ),
        (
            "failure_error",
            strs(o().map(|o| o.failure.as_ref().map(|f| f.error.as_str()))),
        ),
        (
            "execution_arn",
            strs(o().map(|o| o.execution_arn.as_deref())),
        ),
        ("created_at", times(o().map(|o| o.created_at.as_str()))),
        ("updated_at", times(o().map(|o| o.updated_at.as_str()))),
    ])
}

fn lines_batch(rows: &[OrderRows]) -> Result<RecordBatch, String> {
    let lines: Vec<(&OrderRecord, usize, &activities::model::PricedLine)> = rows
        .iter()
        .flat_map(|r| {
            r.order
                .lines
                .iter()
                .enumerate()
                .map(move |(i, l)| (&r.order, i, l))
        })
        .collect();
    let l = || lines.iter();
    batch(vec![
        (
            "order_id",
            strs(l().map(|(o, _, _)| Some(o.order_id.as_str()))),
        ),
        ("line_number", ints(l().map(|(_, i, _)| *i as i64 + 1))),
        ("sku", strs(l().map(|(_, _, l)| Some(l.sku.as_str())))),
        ("quantity", ints(l().map(|(_, _, l)| l.quantity))),
        (
            "unit_price_cents",
            ints(l().map(|(_, _, l)| l.unit_price_cents)),
        ),
        (
            "line_total_cents",
            ints(l().map(|(_, _, l)| l.line_total_cents)),
        ),
        (
            "order_created_at",
            times(l().map(|(o, _, _)| o.created_at.as_str())),
        ),
    ])
}

fn shipments_batch(rows: &[OrderRows]) -> Result<RecordBatch, String> {
    let shipments: Vec<(&str, &ShipmentRecord)> = rows
        .iter()
        .flat_map(|r| {
            r.shipments
                .iter()
                .map(move |s| (r.order.order_id.as_str(), s))
        })
        .collect();
    let s = || shipments.iter();
    let statuses: Vec<String> = s().map(|(_, s)| spelled(&s.status)).collect();
    batch(vec![
        ("order_id", strs(s().map(|(o, _)| Some(*o)))),
        (
            "shipment_id",
            strs(s().map(|(_, s)| Some(s.shipment_id.as_str()))),
        ),
        (
            "warehouse_id",
            strs(s().map(|(_, s)| Some(s.warehouse_id.as_str()))),
        ),
        ("status", strs(statuses.iter().map(|s| Some(s.as_str())))),
        (
            "units",
            ints(s().map(|(_, s)| s.lines.iter().map(|l| l.quantity).sum())),
        ),
        (
            "tracking_number",
            strs(s().map(|(_, s)| s.tracking_number.as_deref())),
        ),
        ("updated_at", times(s().map(|(_, s)| s.updated_at.as_str()))),
    ])
}

/// The saga ledger: one row per step record (a forward step and its compensation).
fn ledger_batch(rows: &[OrderRows]) -> Result<RecordBatch, String> {
    let steps: Vec<(&str, &Item)> = rows
        .iter()
        .flat_map(|r| r.steps.iter().map(move |s| (r.order.order_id.as_str(), s)))
        .collect();
    let s = || steps.iter();
    let error = |i: &Item| -> Option<String> {
        i.doc
            .get("error")?
            .get("name")?
            .as_str()
            .map(str::to_string)
    };
    let errors: Vec<Option<String>> = s().map(|(_, i)| error(i)).collect();
    batch(vec![
        ("order_id", strs(s().map(|(o, _)| Some(*o)))),
        ("step", strs(s().map(|(_, i)| i.str("step")))),
        ("shipment_id", strs(s().map(|(_, i)| i.str("shipment_id")))),
        ("status", strs(s().map(|(_, i)| i.str("status")))),
        ("error", strs(errors.iter().map(Option::as_deref))),
        (
            "updated_at",
            times(s().map(|(_, i)| i.str("updated_at").unwrap_or(""))),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use activities::activity::{self, Ctx};
    use arrow_array::Array;
    use serde_json::json;

    /// A store with `n` demo orders (order i buys i+1 T-shirts), every other one
    /// reserved (so it has shipments and more ledger rows).
    async fn store_with_orders(dir: &Path, n: usize) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(
            activities::store::sqlite::SqliteStore::open(
                &dir.join(saga_core::store::DATABASE_FILE),
            )
            .unwrap(),
        );
        activities::seed::seed_once(&*store, "demo", &activities::seed::demo())
            .await
            .unwrap();
        let ctx = Ctx::new(store.clone());
        for i in 0..n {
            let mut order: serde_json::Value =
                serde_json::from_str(oms_orders::DEMO_ORDER).unwrap();
            order["order_id"] = json!(format!("x{i}"));
            order["lines"][0]["quantity"] = json!(i + 1);
            activity::invoke(&ctx, "PlaceOrder", &order).await.unwrap();
            if i % 2 == 0 {
                let r = json!({"order_id": format!("x{i}")});
                activity::invoke(&ctx, "ReserveInventory", &r)
                    .await
                    .unwrap();
            }
        }
        store
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oms-export-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn parquet_column_sum(path: &Path, column: &str) -> (i64, usize) {
        let file = std::fs::File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let (mut sum, mut rows) = (0, 0);
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch.column_by_name(column).unwrap();
            let ints = col.as_any().downcast_ref::<Int64Array>().unwrap();
            sum += ints.iter().flatten().sum::<i64>();
            rows += batch.num_rows();
        }
        (sum, rows)
    }

    fn csv_column_sum(path: &Path, column: &str) -> (i64, usize) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == column).unwrap();
        let values: Vec<i64> = lines
            .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
            .collect();
        (values.iter().sum(), values.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tables_read_back_hold_the_orders_totals_and_quantities() {
        let dir = temp_dir("totals");
        let store = store_with_orders(&dir, 7).await;
        // What the Orders API shows of each order: its stored record.
        let (mut total_cents, mut units) = (0, 0);
        for i in 0..7 {
            let o = ledger::load_order(&*store, &format!("x{i}"))
                .await
                .unwrap()
                .value;
            total_cents += o.total_cents;
            units += o.lines.iter().map(|l| l.quantity).sum::<i64>();
        }
        assert_eq!(units, 28);
        let items = ledger::scan_orders(&*store).await.unwrap();
        let steps = items
            .iter()
            .filter(|i| i.key.sk.starts_with("STEP#"))
            .count() as u64;
        assert!(steps >= 4, "the reserved orders have step records: {steps}");
        let window = Window::parse("2000-01-01", None, Utc::now()).unwrap();
        for format in [Format::Parquet, Format::Csv] {
            let out = dir.join(format.extension());
            // Pages of 3: the export reads the index in three pages.
            let n = export_orders(&*store, &window, format, &out, 3)
                .await
                .unwrap();
            assert_eq!((n.orders, n.lines, n.shipments), (7, 7, 4));
            let sum = match format {
                Format::Parquet => parquet_column_sum,
                Format::Csv => csv_column_sum,
            };
            let file = |t: &str| out.join(t).join(format!("{t}.{}", format.extension()));
            assert_eq!(sum(&file("orders"), "total_cents"), (total_cents, 7));
            assert_eq!(sum(&file("lines"), "quantity"), (units, 7));
            assert_eq!(sum(&file("shipments"), "units").0, 1 + 3 + 5 + 7);
            assert_eq!(n.ledger, steps);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_window_with_no_orders_writes_empty_tables_with_their_columns() {
        let dir = temp_dir("empty");
        let store = store_with_orders(&dir, 2).await;
        let now = Utc::now();
        let later = now + chrono::Duration::days(40);
        let window =
            Window::parse(&index_time(later), None, later + chrono::Duration::hours(1)).unwrap();
        let out = dir.join("csv");
        let n = export_orders(&*store, &window, Format::Csv, &out, 10)
            .await
            .unwrap();
        assert_eq!(n, Exported::default());
        let text = std::fs::read_to_string(out.join("orders/orders.csv")).unwrap();
        assert!(text.starts_with("order_id,customer_id,status,"), "{text}");
    }

    #[test]
    fn a_bound_is_the_first_millisecond_at_or_after_it() {
        // (the bound, its index form): an order created at 10:00:00.123 sorts as
        // "...00.123Z#id", before the bound only if the bound is past its millisecond.
        let cases = [
            ("2026-12-05T10:00:00.123Z", "2026-12-05T10:00:00.123Z"),
            ("2026-12-05T10:00:00.1231Z", "2026-12-05T10:00:00.124Z"),
            ("2026-12-05T10:00:00.123999999Z", "2026-12-05T10:00:00.124Z"),
            ("2026-12-05T23:59:59.9995Z", "2026-12-06T00:00:00.000Z"),
            ("2026-12-05T10:00:00Z", "2026-12-05T10:00:00.000Z"),
        ];
        for (bound, index) in cases {
            let t = DateTime::parse_from_rfc3339(bound)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(index_bound(t), index, "{bound}");
        }
        let created = ledger::index_sk("2026-12-05T10:00:00.123Z", "o1");
        let until = DateTime::parse_from_rfc3339("2026-12-05T10:00:00.1234Z").unwrap();
        assert!(created < index_bound(until.with_timezone(&Utc)));
    }

    #[test]
    fn bad_windows_name_the_flag_and_the_rule() {
        let now = Utc::now();
        let err = Window::parse("yesterday", None, now).unwrap_err();
        assert!(err.starts_with("--since: 'yesterday' is neither"), "{err}");
        let err = Window::parse("2026-02-01", Some("2026-01-01"), now).unwrap_err();
        assert!(err.starts_with("--until: must be after --since"), "{err}");
    }

    #[test]
    fn the_months_of_a_window_run_newest_first_across_a_year() {
        let w = Window::parse("2025-11-15", Some("2026-02-01T00:00:01Z"), Utc::now()).unwrap();
        assert_eq!(w.months(), ["2026-02", "2026-01", "2025-12", "2025-11"]);
    }
}
