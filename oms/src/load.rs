//! `oms load`: submits N orders, C at a time, follows each to its end and summarises
//! how they ended and how long they took, overall and per time window. With `--check`
//! it then audits the books through the Orders API alone, as the chaos campaign does
//! (tests/api/chaos.py): orders a transient fault left COMPENSATION_FAILED are retried
//! once the faults are cleared, then every order must be COMPLETED or CANCELLED, paid
//! for exactly, and the stock must balance. `cargo xtask bench soak` runs it.
//!
//! An order's end is learnt from the order events (`GET /events?after=latest`): its
//! latency is from submission to the event that says it ended, not quantised by a poll.
//! Where the server has no event stream (`--backend aws`) each order's view is polled.

use crate::client::{text, with_client, Client, Output, Target};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The flags of `oms load` (its help is the `Load` subcommand's doc comment).
#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(long, default_value_t = 100)]
    pub orders: usize,
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Fail this fraction of every activity's calls transiently while loading.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Then audit the books through the Orders API: every order COMPLETED or
    /// CANCELLED (those left COMPENSATION_FAILED retried once faults are cleared),
    /// paid for exactly, stock balanced. The server must have no other orders in
    /// flight.
    #[arg(long)]
    pub check: bool,
    /// Also report latency for this many equal slices of the run.
    #[arg(long, default_value_t = 1)]
    pub windows: usize,
}

/// The activities and compensations `--fault-rate` fails transiently.
const FAULTED: [&str; 8] = [
    "reserve",
    "charge",
    "pick",
    "ship",
    "release",
    "refund",
    "restock",
    "cancel_shipment",
];
const FINAL: [&str; 2] = ["COMPLETED", "CANCELLED"];
/// How often an order's view is read while its saga runs (without an event stream).
const POLL: Duration = Duration::from_millis(50);
/// The events that end an order for the saga: it will not move it again unless retried.
const ENDING_EVENTS: [&str; 3] = [
    "oms.order.completed",
    "oms.order.cancelled",
    "oms.order.compensation_failed",
];
/// How long an order may run before its end is looked for by polling instead: an event
/// the stream lost (a reconnect) must not hang the run.
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

/// The orders waiting for their ending event, by order id: the stream's reader tells
/// each its status.
type Waiters = Arc<std::sync::Mutex<std::collections::HashMap<String, Waiter>>>;
type Waiter = tokio::sync::oneshot::Sender<String>;

/// One order's end: its last view (or why there is none), when it ended (since the run
/// started) and how long it took from submission.
struct Ended {
    order_id: String,
    outcome: String,
    view: Option<Value>,
    ended_at: Duration,
    latency: Duration,
}

/// `oms load`, through the same client as the order commands.
pub fn run(target: Target, output: Output, args: LoadArgs) -> Result<ExitCode, String> {
    with_client(target, |client| load(client, args, output))
}

pub async fn load(client: Client, args: LoadArgs, output: Output) -> Result<ExitCode, String> {
    validate(&args)?;
    let client = Arc::new(client);
    let skus = skus(&client).await?;
    let stock_before = stock(&client).await?;
    set_faults(&client, args.fault_rate).await?;
    let ends = watch_ends(&client).await?;
    let started = Instant::now();
    let mut ended = submit_all(&client, &args, &skus, started, ends).await?;
    let elapsed = started.elapsed();
    if args.fault_rate > 0.0 {
        client.ok("DELETE", "/admin/faults", None).await?;
    }
    let mut violations = Vec::new();
    let mut retried = 0;
    if args.check {
        read_views(&client, &mut ended).await;
        retried = retry_unfinished(&client, &mut ended).await;
        violations = audit(&ended, &stock_before, &stock(&client).await?);
    }
    let summary = summarise(&args, &ended, elapsed, retried, &violations);
    print_summary(&summary, output);
    let failed = ended
        .iter()
        .any(|e| e.outcome.starts_with("REFUSED") || e.outcome.starts_with("ERROR"));
    Ok(if failed || !violations.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn validate(args: &LoadArgs) -> Result<(), String> {
    if args.concurrency == 0 || args.orders == 0 {
        return Err("--orders and --concurrency must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err("--fault-rate: a fraction from 0 to 1".into());
    }
    if args.windows == 0 {
        return Err("--windows must be at least 1".into());
    }
    Ok(())
}

/// The SKUs some warehouse has available: a SKU a feed stocked at zero would only
/// make the load's orders fail for want of stock.
async fn skus(client: &Client) -> Result<Vec<String>, String> {
    let inventory = client.ok("GET", "/inventory", None).await?;
    let mut s: Vec<String> = inventory["inventory"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["available"].as_i64().is_some_and(|n| n > 0))
        .filter_map(|r| r["sku"].as_str().map(str::to_string))
        .collect();
    s.sort();
    s.dedup();
    if s.is_empty() {
        return Err("the server has no SKU in stock to order (oms import stock)".into());
    }
    Ok(s)
}

/// Stock rows by (sku, warehouse).
async fn stock(client: &Client) -> Result<BTreeMap<(String, String), Value>, String> {
    let inventory = client.ok("GET", "/inventory", None).await?;
    Ok(inventory["inventory"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| ((text(&r["sku"]), text(&r["warehouse_id"])), r.clone()))
        .collect())
}

async fn set_faults(client: &Client, rate: f64) -> Result<(), String> {
    if rate == 0.0 {
        return Ok(());
    }
    let plans: serde_json::Map<String, Value> = FAULTED
        .iter()
        .map(|k| (k.to_string(), json!({"transient_rate": rate})))
        .collect();
    client
        .ok(
            "PUT",
            "/admin/faults",
            Some(Value::Object(plans).to_string()),
        )
        .await
        .map(|_| ())
}

async fn submit_all(
    client: &Arc<Client>,
    args: &LoadArgs,
    skus: &[String],
    started: Instant,
    ends: Option<Waiters>,
) -> Result<Vec<Ended>, String> {
    let bar = indicatif::ProgressBar::new(args.orders as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} orders {msg}")
            .map_err(|e| e.to_string())?,
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = Vec::with_capacity(args.orders);
    for i in 0..args.orders {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (client, bar, ends) = (client.clone(), bar.clone(), ends.clone());
        let body = order(&format!("load-{run_id}-{i}"), i, &skus[i % skus.len()]);
        tasks.push(tokio::spawn(async move {
            let end = follow(&client, body, started, ends.as_ref()).await;
            drop(permit);
            bar.inc(1);
            end
        }));
    }
    let mut ended = Vec::with_capacity(tasks.len());
    for t in tasks {
        ended.push(t.await.map_err(|e| e.to_string())?);
    }
    bar.finish_and_clear();
    Ok(ended)
}

fn order(id: &str, i: usize, sku: &str) -> Value {
    json!({
        "order_id": id, "customer_id": format!("load-{}", i % 10),
        "lines": [{"sku": sku, "quantity": 1}],
        "payment": {"token": "tok_visa"},
        "ship_to": {"name": "Load", "line1": "1 Main St", "city": "Boston", "postal_code": "02101", "country": "US"},
    })
}

/// Submits one order and waits for its end: its ending event, or without an event
/// stream its view, polled until its execution has ended.
async fn follow(client: &Client, body: Value, started: Instant, ends: Option<&Waiters>) -> Ended {
    let t = Instant::now();
    let order_id = text(&body["order_id"]);
    // Registered before the order exists, so an event that beats the answer is caught.
    let event = ends.map(|w| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(w).insert(order_id.clone(), tx);
        rx
    });
    let (outcome, view) = match client.ok("POST", "/orders", Some(body.to_string())).await {
        Err(e) => (
            format!("REFUSED: {}", e.lines().next().unwrap_or_default()),
            None,
        ),
        Ok(_) => match event {
            Some(rx) => match tokio::time::timeout(EVENT_PATIENCE, rx).await {
                Ok(Ok(status)) => (status, None),
                _ => polled(client, &order_id).await,
            },
            None => polled(client, &order_id).await,
        },
    };
    if let Some(w) = ends {
        lock(w).remove(&order_id);
    }
    Ended {
        order_id,
        outcome,
        view,
        ended_at: started.elapsed(),
        latency: t.elapsed(),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An order's status and view once its execution has ended.
async fn polled(client: &Client, order_id: &str) -> (String, Option<Value>) {
    match wait_ended(client, order_id).await {
        Ok(v) => (text(&v["status"]), Some(v)),
        Err(e) => (format!("ERROR: {e}"), None),
    }
}

/// Opens the event stream at its end and, from a task of its own, tells each waiting
/// order its ending status. None when the server has no event stream.
async fn watch_ends(client: &Client) -> Result<Option<Waiters>, String> {
    use futures_util::StreamExt;
    let (status, mut chunks) = client.stream("/events?after=latest").await?;
    if status != 200 {
        return Ok(None);
    }
    let waiters = Waiters::default();
    let told = waiters.clone();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = chunks.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = buf.drain(..end + 2).collect();
                let Some((order, status)) = ending(&String::from_utf8_lossy(&message)) else {
                    continue;
                };
                if let Some(tx) = lock(&told).remove(&order) {
                    let _ = tx.send(status);
                }
            }
        }
    });
    Ok(Some(waiters))
}

/// The order and status of one SSE message, when it is an order's ending event.
fn ending(message: &str) -> Option<(String, String)> {
    let data = message.lines().find_map(|l| l.strip_prefix("data:"))?;
    let event: Value = serde_json::from_str(data.trim()).ok()?;
    ENDING_EVENTS
        .contains(&event["type"].as_str()?)
        .then(|| (text(&event["subject"]), text(&event["data"]["status"])))
}

/// The last view of every order whose end came from an event (the audit reads views),
/// once its execution has ended too.
async fn read_views(client: &Client, ended: &mut [Ended]) {
    for e in ended.iter_mut().filter(|e| e.view.is_none()) {
        if e.outcome.starts_with("REFUSED") || e.outcome.starts_with("ERROR") {
            continue;
        }
        (e.outcome, e.view) = polled(client, &e.order_id).await;
    }
}

async fn wait_ended(client: &Client, order_id: &str) -> Result<Value, String> {
    loop {
        tokio::time::sleep(POLL).await;
        let v = client
            .ok("GET", &format!("/orders/{order_id}"), None)
            .await?;
        if v["execution_status"] != "RUNNING" && !v["execution_status"].is_null() {
            return Ok(v);
        }
    }
}

/// Redrives every order that ended neither COMPLETED nor CANCELLED (a compensation
/// whose transient faults outlasted its retries), now that faults are cleared, and
/// waits for it. Returns how many were retried.
async fn retry_unfinished(client: &Client, ended: &mut [Ended]) -> usize {
    let mut retried = 0;
    for e in ended.iter_mut() {
        let Some(view) = &e.view else { continue };
        if FINAL.contains(&view["status"].as_str().unwrap_or_default()) {
            continue;
        }
        let path = format!("/orders/{}/retry", e.order_id);
        retried += 1;
        let again = match client.ok("POST", &path, None).await {
            Ok(_) => wait_ended(client, &e.order_id).await,
            Err(err) => Err(err),
        };
        (e.outcome, e.view) = match again {
            Ok(v) => (text(&v["status"]), Some(v)),
            Err(err) => (format!("RETRY FAILED: {err}"), None),
        };
    }
    retried
}

/// The invariants of the chaos campaign, over every order's last view and the stock
/// before and after.
fn audit(
    ended: &[Ended],
    before: &BTreeMap<(String, String), Value>,
    after: &BTreeMap<(String, String), Value>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for e in ended {
        let Some(v) = &e.view else {
            bad.push(format!("{}: {}", e.order_id, e.outcome));
            continue;
        };
        bad.extend(money_violation(&e.order_id, v));
    }
    for (key, row) in after {
        if row["reserved"].as_i64() != Some(0) {
            bad.push(format!("{key:?} has {} reserved", row["reserved"]));
        }
        let held = |r: &Value| r["on_hand"].as_i64().zip(r["shipped"].as_i64());
        if let Some(was) = before.get(key) {
            let (now_sum, was_sum) = (held(row).map(|(a, b)| a + b), held(was).map(|(a, b)| a + b));
            if now_sum != was_sum {
                bad.push(format!(
                    "{key:?}: on hand + shipped {now_sum:?}, was {was_sum:?}"
                ));
            }
        }
    }
    bad
}

/// An order's money against its status: a COMPLETED order paid its total and was
/// refunded nothing, a CANCELLED one was refunded what it paid, none paid more than
/// its total.
fn money_violation(order_id: &str, v: &Value) -> Option<String> {
    let status = v["status"].as_str().unwrap_or_default();
    let cents = |k: &str| v[k].as_i64().unwrap_or(-1);
    let (total, charged, refunded) = (
        cents("total_cents"),
        cents("charged_cents"),
        cents("refunded_cents"),
    );
    let ok = match status {
        "COMPLETED" => charged == total && refunded == 0,
        "CANCELLED" => refunded == charged && charged <= total,
        _ => false,
    };
    (!ok).then(|| {
        format!("{order_id}: {status}, total {total}, charged {charged}, refunded {refunded}")
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th latency (0 to 1) of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// p50 and p99 of the orders that ended in each of `n` equal slices of the run.
fn windows(ended: &[Ended], elapsed: Duration, n: usize) -> Vec<Value> {
    let width = elapsed.as_secs_f64() / n as f64;
    let mut slices: Vec<Vec<Duration>> = vec![Vec::new(); n];
    for e in ended {
        let at = (e.ended_at.as_secs_f64() / width) as usize;
        slices[at.min(n - 1)].push(e.latency);
    }
    slices
        .into_iter()
        .enumerate()
        .map(|(i, mut l)| {
            l.sort();
            let (p50, p99) = match l.is_empty() {
                true => (Value::Null, Value::Null),
                false => (
                    json!(ms(percentile(&l, 0.5))),
                    json!(ms(percentile(&l, 0.99))),
                ),
            };
            json!({"until_s": width * (i + 1) as f64, "orders": l.len(), "p50_ms": p50, "p99_ms": p99})
        })
        .collect()
}

fn summarise(
    args: &LoadArgs,
    ended: &[Ended],
    elapsed: Duration,
    retried: usize,
    violations: &[String],
) -> Value {
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for e in ended {
        *outcomes.entry(e.outcome.as_str()).or_default() += 1;
    }
    let mut latencies: Vec<Duration> = ended.iter().map(|e| e.latency).collect();
    latencies.sort();
    json!({
        "orders": args.orders,
        "concurrency": args.concurrency,
        "fault_rate": args.fault_rate,
        "outcomes": outcomes,
        "seconds": elapsed.as_secs_f64(),
        "orders_per_second": args.orders as f64 / elapsed.as_secs_f64(),
        "latency_ms": {
            "p50": ms(percentile(&latencies, 0.5)),
            "p99": ms(percentile(&latencies, 0.99)),
            "max": ms(percentile(&latencies, 1.0)),
        },
        "windows": windows(ended, elapsed, args.windows),
        "checked": args.check,
        "retried": retried,
        "violations": violations,
    })
}

fn print_summary(summary: &Value, output: Output) {
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).expect("JSON values serialize")
        );
        return;
    }
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "{} orders in {:.1} s ({:.1} orders/s), {} at a time, fault rate {}",
        summary["orders"],
        f(&summary["seconds"]),
        f(&summary["orders_per_second"]),
        summary["concurrency"],
        summary["fault_rate"]
    );
    for (outcome, n) in summary["outcomes"].as_object().into_iter().flatten() {
        println!("  {outcome:<24} {n}");
    }
    let l = &summary["latency_ms"];
    println!(
        "  submit-to-end latency: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        f(&l["p50"]),
        f(&l["p99"]),
        f(&l["max"])
    );
    let windows = summary["windows"].as_array().map_or(&[][..], |w| &w[..]);
    if windows.len() > 1 {
        for w in windows {
            println!(
                "  until {:>7.1} s: {:>6} orders, p50 {:>6.0} ms, p99 {:>6.0} ms",
                f(&w["until_s"]),
                w["orders"],
                f(&w["p50_ms"]),
                f(&w["p99_ms"])
            );
        }
    }
    if summary["checked"] == true {
        println!(
            "  books checked: {} retried after the faults were cleared, {} violation(s)",
            summary["retried"],
            summary["violations"].as_array().map_or(0, Vec::len)
        );
        for v in summary["violations"].as_array().into_iter().flatten() {
            println!("    {}", text(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(at_ms: u64, latency_ms: u64) -> Ended {
        Ended {
            order_id: "o".into(),
            outcome: "COMPLETED".into(),
            view: None,
            ended_at: Duration::from_millis(at_ms),
            latency: Duration::from_millis(latency_ms),
        }
    }

    #[test]
    fn an_ending_event_names_its_order_and_status() {
        let data = |kind: &str| {
            json!({"type": kind, "subject": "o-1", "data": {"status": "COMPLETED"}}).to_string()
        };
        let msg = format!("id: 7\nevent: x\ndata: {}\n\n", data("oms.order.completed"));
        assert_eq!(ending(&msg), Some(("o-1".into(), "COMPLETED".into())));
        let msg = format!("id: 8\ndata: {}\n\n", data("oms.shipment.picked"));
        assert_eq!(ending(&msg), None);
        assert_eq!(ending(": keep-alive\n\n"), None);
    }

    #[test]
    fn windows_group_orders_by_when_they_ended() {
        let e = [
            ended(100, 10),
            ended(900, 30),
            ended(1100, 50),
            ended(2000, 70),
        ];
        let w = windows(&e, Duration::from_secs(2), 2);
        assert_eq!(w[0]["orders"], 2);
        assert_eq!(w[0]["p50_ms"], 30.0);
        // The last order ends at the very end: it belongs to the last window.
        assert_eq!(w[1]["orders"], 2);
        assert_eq!(w[1]["p99_ms"], 70.0);
    }

    #[test]
    fn money_is_checked_against_the_status() {
        let v = |status: &str, charged: i64, refunded: i64| json!({"status": status, "total_cents": 100, "charged_cents": charged, "refunded_cents": refunded});
        assert!(money_violation("o", &v("COMPLETED", 100, 0)).is_none());
        assert!(money_violation("o", &v("COMPLETED", 100, 100)).is_some());
        assert!(money_violation("o", &v("CANCELLED", 100, 100)).is_none());
        assert!(money_violation("o", &v("CANCELLED", 0, 0)).is_none());
        assert!(money_violation("o", &v("CANCELLED", 100, 0)).is_some());
        assert!(money_violation("o", &v("COMPENSATION_FAILED", 0, 0)).is_some());
    }

    #[test]
    fn stock_must_balance_and_nothing_stay_reserved() {
        let key = ("SKU".to_string(), "WH".to_string());
        let row = |on_hand: i64, reserved: i64, shipped: i64| json!({"on_hand": on_hand, "reserved": reserved, "shipped": shipped});
        let before = BTreeMap::from([(key.clone(), row(10, 0, 0))]);
        let good = BTreeMap::from([(key.clone(), row(7, 0, 3))]);
        assert!(audit(&[], &before, &good).is_empty());
        let lost = BTreeMap::from([(key.clone(), row(6, 0, 3))]);
        assert_eq!(audit(&[], &before, &lost).len(), 1);
        let held = BTreeMap::from([(key, row(7, 1, 3))]);
        assert_eq!(audit(&[], &before, &held).len(), 1);
    }
}
