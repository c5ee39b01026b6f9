//! `GET /metrics` of `oms up`: Prometheus's text exposition format (0.0.4).
//!
//! The numbers come from saga-core's observer hook (`saga_core::observe`): task
//! answers (step latency, errors), committed steps' history events (executions started
//! and closed, Catches taken: the saga's compensations), redrives and the store's group
//! commits. Orders by status are counted from the order store when scraped, at most
//! once per [`ORDERS_REFRESH`] (longer for a large store: a count takes at most a
//! twentieth of the time), and executions running are the runtime's live count.
//!
//! Why the `prometheus` crate (TiKV's) and not `prometheus-client` or `metrics`: its
//! counters and histograms are plain atomics (an observation is an atomic add per
//! bucket, no lock), a labelled child is found under a read lock that writers never
//! take once the label set exists, and without its default `protobuf` feature it
//! adds six small crates. `prometheus-client`'s histograms take a lock per observation
//! and it writes OpenMetrics; `metrics` adds a global recorder and a second crate for
//! the exporter.

use activities::store::Store;
use asl::history::{HistoryEvent, HistoryEventKind};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use saga_core::observe::{Observer, Redriven, TaskFinished};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How stale the orders-by-status gauge may be at least: counting reads every order's
/// records (a Scan on DynamoDB), so a scrape every second costs one count per period.
pub const ORDERS_REFRESH: Duration = Duration::from_secs(5);
/// ... and at most this share of the time goes to counting: a count that took 2 s
/// waits 40 s for the next (the count grows with the store; 1,500 orders took 0.7 s
/// in a debug build).
const ORDERS_REFRESH_PER_COUNT: u32 = 20;

/// Seconds; a step of the saga runs from a millisecond (a local activity) to minutes
/// (a warehouse picking), a group commit from 100 µs to a slow disk's 100 ms.
const STEP_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];
const COMMIT_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Every series `oms up` exports (docs/ARCHITECTURE.md lists them with their labels).
pub struct Metrics {
    registry: Registry,
    step_seconds: HistogramVec,
    task_errors: IntCounterVec,
    compensations: IntCounterVec,
    redrives: IntCounterVec,
    executions_started: IntCounterVec,
    executions_closed: IntCounterVec,
    commit_seconds: HistogramVec,
    commit_jobs: IntCounterVec,
    fsync_seconds: HistogramVec,
    order_gets: IntCounterVec,
    executions_running: IntGauge,
    orders: IntGaugeVec,
    orders_count_seconds: prometheus::Gauge,
    /// When the orders gauge was last counted and how long until the next count
    /// (None: never counted).
    orders_counted: tokio::sync::Mutex<Option<(Instant, Duration)>>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    r.register(Box::new(m.clone()))
        .expect("metric names are unique and valid");
    m
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], b: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(b.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let m = Metrics {
            step_seconds: histogram(&r, "oms_saga_step_seconds",
                "Time from a Task state's call to its answer, by state machine and state",
                &["machine", "state"], &STEP_BUCKETS_S),
            task_errors: counter(&r, "oms_activity_errors_total",
                "Task calls answered with an error, by state machine, state (the activity) and error name",
                &["machine", "state", "error"]),
            compensations: counter(&r, "oms_saga_compensations_total",
                "Errors caught by a Catch that leads on to other states (the saga's compensations), by the state that failed and the error",
                &["machine", "step", "error"]),
            redrives: counter(&r, "oms_redrives_total",
                "Executions redriven, by the state the failed run last entered and the error it failed with",
                &["machine", "step", "error"]),
            executions_started: counter(&r, "oms_executions_started_total",
                "Executions started", &["machine"]),
            executions_closed: counter(&r, "oms_executions_closed_total",
                "Executions that ended, by status", &["machine", "status"]),
            commit_seconds: histogram(&r, "oms_store_commit_seconds",
                "The execution store's group commits, BEGIN to COMMIT (the fsync is the syncer's), by outcome",
                &["outcome"], &COMMIT_BUCKETS_S),
            fsync_seconds: histogram(&r, "oms_store_fsync_seconds",
                "The execution store's fsyncs of its WAL (one answers every durable write and sync waiting), by outcome",
                &["outcome"], &COMMIT_BUCKETS_S),
            commit_jobs: counter(&r, "oms_store_commit_writes_total",
                "Writes (steps, starts, task rows...) committed by the group commits",
                &["outcome"]),
            order_gets: counter(&r, "oms_order_store_gets_total",
                "The order store's point reads, by what answered them: its cache of decoded items, or the table",
                &["answered"]),
            executions_running: register(&r, IntGauge::new("oms_executions_running",
                "Executions running in this process").expect("valid metric")),
            orders: register(&r, IntGaugeVec::new(Opts::new("oms_orders",
                "Orders in the order store by status, counted at scrape time at most every 5 s (or 20 times oms_orders_count_seconds)"),
                &["status"]).expect("valid metric")),
            orders_count_seconds: register(&r, prometheus::Gauge::new("oms_orders_count_seconds",
                "How long the last count of oms_orders took (it is refreshed at most every 5 s, or 20 times this)")
                .expect("valid metric")),
            orders_counted: tokio::sync::Mutex::new(None),
            registry: r,
        };
        Arc::new(m)
    }

    /// The exposition text, after refreshing what is counted at scrape time.
    pub async fn render(&self, s: &Scrape) -> Result<String, String> {
        let running = s.runtime.running();
        self.executions_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
        if let Some((hits, misses)) = s.order_cache.as_ref().and_then(|o| o.cache_counts()) {
            // The store counts; the counters catch up to it.
            for (answered, now) in [("cache", hits), ("table", misses)] {
                let c = self.order_gets.with_label_values(&[answered]);
                c.inc_by(now.saturating_sub(c.get()));
            }
        }
        let store = &*s.store;
        self.count_orders(store).await?;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| format!("cannot encode the metrics: {e}"))?;
        String::from_utf8(out).map_err(|e| format!("metrics are not UTF-8: {e}"))
    }

    /// Counts orders by status unless the last count is fresh enough (ORDERS_REFRESH,
    /// or longer after a slow count). Scrapes that come while one counts wait for it
    /// rather than count again.
    async fn count_orders(&self, store: &dyn Store) -> Result<(), String> {
        let mut counted = self.orders_counted.lock().await;
        if counted.is_some_and(|(at, fresh_for)| at.elapsed() < fresh_for) {
            return Ok(());
        }
        let started = Instant::now();
        let by_status = orders_by_status(store).await?;
        let took = started.elapsed();
        self.orders_count_seconds.set(took.as_secs_f64());
        self.orders.reset();
        for (status, n) in by_status {
            self.orders
                .with_label_values(&[&status])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        *counted = Some((
            Instant::now(),
            ORDERS_REFRESH.max(took * ORDERS_REFRESH_PER_COUNT),
        ));
        Ok(())
    }
}

/// The console's dashboard: one page that polls /metrics (docs/ARCHITECTURE.md).
pub const DASHBOARD: &str = include_str!("dashboard.html");
/// uPlot (MIT, its LICENSE beside it in vendor/), served to the dashboard: the console
/// works offline, so nothing is fetched from a CDN.
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// What `/metrics` reads at scrape time besides the metrics themselves.
#[derive(Clone)]
pub struct Scrape {
    pub metrics: Arc<Metrics>,
    pub runtime: Arc<saga_core::runtime::Runtime>,
    pub store: Arc<dyn Store>,
    /// The order store when it is SQLite within the runtime's database, for its
    /// cache's counts.
    pub order_cache: Option<Arc<activities::store::sqlite::SqliteStore>>,
}

/// `GET /metrics` and the dashboard page with its chart library.
pub fn routes(scrape: Scrape) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let asset = |kind: &'static str, body: &'static str| {
        get(move || async move { ([(CONTENT_TYPE, kind)], body) })
    };
    axum::Router::new()
        .route("/metrics", get(scrape_metrics))
        .route(
            "/console/dashboard",
            get(|| async { axum::response::Html(DASHBOARD) }),
        )
        .route(
            "/console/vendor/uPlot.iife.min.js",
            asset("text/javascript", UPLOT_JS),
        )
        .route(
            "/console/vendor/uPlot.min.css",
            asset("text/css", UPLOT_CSS),
        )
        .with_state(scrape)
}

async fn scrape_metrics(
    axum::extract::State(s): axum::extract::State<Scrape>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match s.metrics.render(&s).await {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        )
            .into_response(),
        Err(e) => crate::respond::problem_response(&oms_orders::Problem::from(
            activities::errors::ActivityError::new(
                activities::errors::ErrorKind::StoreUnavailable,
                e,
            ),
        )),
    }
}

/// Orders by their status, through the store contract (one scan of the orders).
pub async fn orders_by_status(
    store: &dyn Store,
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let items = activities::ledger::scan_orders(store)
        .await
        .map_err(|e| format!("cannot count the orders: {e}"))?;
    let mut by_status = std::collections::BTreeMap::new();
    for item in items.iter().filter(|i| i.key.sk == "ORDER") {
        let status = item.str("status").unwrap_or("UNKNOWN").to_string();
        *by_status.entry(status).or_insert(0u64) += 1;
    }
    Ok(by_status)
}

/// A state machine's name from its ARN (a label of bounded cardinality; the ARN's
/// region and account say nothing on one server).
fn machine_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

impl Observer for Metrics {
    fn task_finished(&self, t: &TaskFinished<'_>) {
        let machine = machine_name(t.state_machine_arn);
        if let Some(s) = t.seconds {
            self.step_seconds
                .with_label_values(&[machine, t.state_name])
                .observe(s);
        }
        if let Some(error) = t.error {
            self.task_errors
                .with_label_values(&[machine, t.state_name, error])
                .inc();
        }
    }

    fn step_committed(&self, state_machine_arn: &str, events: &[HistoryEvent]) {
        let machine = machine_name(state_machine_arn);
        for e in events {
            let status = match e.kind.as_ref() {
                "ExecutionStarted" => {
                    self.executions_started.with_label_values(&[machine]).inc();
                    continue;
                }
                "ExecutionSucceeded" => "SUCCEEDED",
                "ExecutionFailed" => "FAILED",
                "ExecutionAborted" => "ABORTED",
                "ExecutionTimedOut" => "TIMED_OUT",
                _ => continue,
            };
            self.executions_closed
                .with_label_values(&[machine, status])
                .inc();
        }
        for (step, error) in caught_errors(events) {
            self.compensations
                .with_label_values(&[machine, &step, &error])
                .inc();
        }
    }

    fn redriven(&self, r: &Redriven<'_>) {
        let labels = [
            machine_name(r.state_machine_arn),
            r.state_name.unwrap_or(""),
            r.error.unwrap_or(""),
        ];
        self.redrives.with_label_values(&labels).inc();
    }

    fn store_committed(&self, jobs: usize, seconds: f64, ok: bool) {
        let outcome = if ok { "committed" } else { "failed" };
        self.commit_seconds
            .with_label_values(&[outcome])
            .observe(seconds);
        self.commit_jobs
            .with_label_values(&[outcome])
            .inc_by(jobs as u64);
    }

    fn store_synced(&self, seconds: f64, ok: bool) {
        let outcome = if ok { "synced" } else { "failed" };
        self.fsync_seconds
            .with_label_values(&[outcome])
            .observe(seconds);
    }
}

/// The Catches a step took that lead on to work (a compensation), as (the state that
/// failed, the error). In history a caught error is a failure event, then the failed
/// state's `...StateExited` (an uncaught one ends its frame without it: the enclosing
/// Map or Parallel fails, or the execution), then the Catch's next state entered; a
/// Catch straight into a Fail state (the saga's OrderRejected) is a rejection, not a
/// compensation. The error is the first failure's: a Map that fails because an
/// iteration's PickShipment did is caught with PickShipment's error.
fn caught_errors(events: &[HistoryEvent]) -> Vec<(String, String)> {
    let mut caught = Vec::new();
    // Most steps fail nothing: one pass over the names, no allocation.
    if !events.iter().any(|e| is_failure(&e.kind)) {
        return caught;
    }
    let mut error: Option<String> = None;
    let mut exited: Option<(String, String)> = None;
    for e in events {
        let kind = e.kind.as_ref();
        if let Some((step, err)) = exited.take() {
            if kind.ends_with("StateEntered") && kind != "FailStateEntered" {
                caught.push((step, err));
            }
        }
        // Parsed only here, where a step failed (the hot events keep their details as
        // text).
        let details = |field: &str| e.details.value().get(field)?.as_str().map(String::from);
        if is_failure(kind) {
            error = error.or(details("error"));
        } else if kind.ends_with("StateExited") {
            if let (Some(err), Some(step)) = (error.take(), details("name")) {
                exited = Some((step, err));
            }
        } else if kind.ends_with("StateEntered") || kind.starts_with("Execution") {
            error = None;
        }
    }
    caught
}

fn is_failure(kind: &str) -> bool {
    // The suffix first: parsing compares the name with every kind's.
    (kind.ends_with("Failed") || kind.ends_with("TimedOut"))
        && HistoryEventKind::parse(kind).is_some_and(HistoryEventKind::is_task_failure)
        || matches!(
            kind,
            "MapStateFailed" | "ParallelStateFailed" | "MapIterationFailed" | "MapRunFailed"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &'static str, details: serde_json::Value) -> HistoryEvent {
        HistoryEvent {
            id: 0,
            previous_event_id: 0,
            timestamp: chrono::DateTime::UNIX_EPOCH,
            kind: kind.into(),
            details: details.into(),
        }
    }

    #[test]
    fn a_catch_into_compensation_counts_and_one_into_a_fail_state_does_not() {
        // A state's exit is recorded with its details as text (the engine's hot events).
        let mut exited = event("TaskStateExited", serde_json::Value::Null);
        exited.details = asl::history::details_text(&[("name", &json!("ChargePayment"))]);
        let into_compensation = [
            event("TaskFailed", json!({"error": "Payment.Declined"})),
            exited,
            event("TaskStateEntered", json!({"name": "CompensatePayment"})),
        ];
        assert_eq!(
            caught_errors(&into_compensation),
            [("ChargePayment".to_string(), "Payment.Declined".to_string())]
        );
        let rejected = [
            event("TaskFailed", json!({"error": "Order.Invalid"})),
            event("TaskStateExited", json!({"name": "PlaceOrder"})),
            event("FailStateEntered", json!({"name": "OrderRejected"})),
        ];
        assert!(caught_errors(&rejected).is_empty());
        // A retry: the failure, then nothing but a timer.
        assert!(caught_errors(&[event("TaskFailed", json!({"error": "E"}))]).is_empty());
    }

    #[test]
    fn a_map_caught_after_an_iteration_failed_names_the_map_and_the_first_error() {
        let events = [
            event("TaskFailed", json!({"error": "Pick.ItemDamaged"})),
            event("MapIterationFailed", json!({"index": 0})),
            event("MapStateFailed", json!({})),
            event("MapStateExited", json!({"name": "FulfilShipments"})),
            event("TaskStateEntered", json!({"name": "CompensateShipments"})),
        ];
        assert_eq!(
            caught_errors(&events),
            [(
                "FulfilShipments".to_string(),
                "Pick.ItemDamaged".to_string()
            )]
        );
    }
}
