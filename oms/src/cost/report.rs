//! The report of `oms cost`: a table for people, or one JSON object.

use super::bill::{mean, Bill};
use super::prices::{
    price, Meter, Price, ASSUMPTIONS, BYTES_PER_GB, DAYS_PER_MONTH, LAMBDA_MEMORY_MB, PRICES,
    REGION,
};
use super::simulate::{Path, PathRun};
use super::CostArgs;
use super::Costed;
use serde_json::{json, Value};
use std::fmt::Write as _;

pub(super) fn report_json(
    args: &CostArgs,
    shares: &[(Path, f64)],
    deployed: &Costed,
    baseline: &Costed,
) -> Value {
    let (runs, bill) = (&deployed.runs, &deployed.bill);
    let paths: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut v = activities::model::to_json(r);
            v["label"] = json!(r.path.label());
            v["share"] = json!(shares.iter().find(|(p, _)| *p == r.path).map(|s| s.1));
            v["gb_seconds"] = json!(r.gb_seconds(args.lambda_ms));
            v["express_gb_seconds"] = json!(r.express_gb_seconds(args.lambda_ms));
            v
        })
        .collect();
    let baseline_paths: Vec<Value> = baseline
        .runs
        .iter()
        .map(|r| json!({"path": r.path, "transitions": r.transitions, "log_bytes": r.log_bytes()}))
        .collect();
    json!({
        "design": design_json(deployed),
        "baseline": {
            "design": design_json(baseline),
            "paths": baseline_paths,
            "bill": baseline.bill,
        },
        "saving_usd": baseline.bill.total_usd - bill.total_usd,
        "region": REGION,
        "orders_per_day": args.orders_per_day,
        "days_per_month": DAYS_PER_MONTH,
        "compensation_rate": args.compensation_rate,
        "rejection_rate": args.rejection_rate,
        "lambda_ms": args.lambda_ms,
        "lambda_memory_mb": LAMBDA_MEMORY_MB,
        "shipments_per_order": args.shipments,
        "paths": paths,
        "bill": bill,
        "prices": PRICES,
        "assumptions": ASSUMPTIONS,
    })
}

fn design_json(c: &Costed) -> Value {
    json!({
        "name": c.design.name,
        "files": c.design.files,
        "saga_log_level": c.design.saga_logs,
        "child_log_level": c.design.prepare.as_ref().map(|_| c.design.prepare_logs),
    })
}

/// "$0.025 per 1,000 state transitions", "$0.50 per GB ingested".
pub(super) fn price_text(p: &Price) -> String {
    let mut usd = format!("{}", p.usd);
    match usd.find('.') {
        None => usd.push_str(".00"),
        Some(dot) if usd.len() - dot == 2 => usd.push('0'),
        _ => {}
    }
    if p.per == 1.0 {
        format!("${usd} per {}", p.unit)
    } else {
        format!("${usd} per {} {}", thousands(p.per as u64), p.unit)
    }
}

/// 1234567 -> "1,234,567".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn quantity(q: f64) -> String {
    if q >= 100.0 {
        thousands(q.round() as u64)
    } else {
        format!("{q:.2}")
    }
}

fn money(usd: f64) -> String {
    let cents = (usd * 100.0).round() as u64;
    format!("${}.{:02}", thousands(cents / 100), cents % 100)
}

/// The report for people: the header, then each part in turn.
pub(super) fn report_table(
    args: &CostArgs,
    shares: &[(Path, f64)],
    deployed: &Costed,
    baseline: &Costed,
) -> String {
    let (runs, bill) = (&deployed.runs, &deployed.bill);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "oms cost: {} orders a day ({} a month of {DAYS_PER_MONTH} days), {} shipment(s) an order, {REGION}",
        thousands(args.orders_per_day),
        quantity(bill.orders_per_month),
        args.shipments,
    );
    let _ = writeln!(
        o,
        "Design: {} ({}); logs: saga {}, child {}",
        deployed.design.name,
        deployed.design.files,
        deployed.design.saga_logs.name(),
        deployed.design.prepare_logs.name()
    );
    paths_table(&mut o, args, shares, runs);
    bill_table(&mut o, bill);
    comparison_table(&mut o, shares, deployed, baseline);
    dynamodb_table(&mut o, runs);
    notes(&mut o, args, runs);
    o
}

/// Per order, by path, and the mean order.
fn paths_table(o: &mut String, args: &CostArgs, shares: &[(Path, f64)], runs: &[PathRun]) {
    let _ = writeln!(
        o,
        "\nPer order, by path (the saga simulated with the real activities; log KB approximate):"
    );
    let _ = writeln!(
        o,
        "{:<24} {:>7}  {:<31} {:>11} {:>7} {:>6} {:>6} {:>5} {:>5} {:>4} {:>7}",
        "path",
        "share",
        "ends",
        "transitions",
        "Express",
        "Lambda",
        "GB-s",
        "RRU",
        "WRU",
        "API",
        "log KB"
    );
    let row = |o: &mut String, label: &str, share: f64, ends: &str, v: [f64; 8]| {
        let _ = writeln!(
            o,
            "{:<24} {:>6.2}%  {:<31} {:>11} {:>7} {:>6} {:>6.3} {:>5} {:>5} {:>4} {:>7.1}",
            label,
            share * 100.0,
            ends,
            fmt_count(v[0]),
            fmt_count(v[7]),
            fmt_count(v[1]),
            v[2],
            fmt_count(v[3]),
            fmt_count(v[4]),
            fmt_count(v[5]),
            v[6] / 1024.0
        );
    };
    let values = |r: &PathRun| {
        [
            r.transitions as f64,
            r.lambda_invocations as f64,
            r.gb_seconds(args.lambda_ms),
            r.dynamodb.rru as f64,
            r.dynamodb.wru as f64,
            r.api_requests as f64,
            r.log_bytes() as f64,
            r.express_requests() as f64,
        ]
    };
    for r in runs {
        let share = shares
            .iter()
            .find(|(p, _)| *p == r.path)
            .map_or(0.0, |s| s.1);
        let ends = format!("{} {}", r.status, r.error.as_deref().unwrap_or(""));
        row(o, r.path.label(), share, ends.trim(), values(r));
    }
    let mut weighted = [0.0; 8];
    for (i, w) in weighted.iter_mut().enumerate() {
        *w = mean(runs, shares, |r| values(r)[i]);
    }
    row(o, "mean order", 1.0, "", weighted);
}

/// The monthly bill, line by line.
fn bill_table(o: &mut String, bill: &Bill) {
    let _ = writeln!(
        o,
        "\nMonthly bill ({} orders; list prices, no free tier):",
        quantity(bill.orders_per_month)
    );
    let _ = writeln!(
        o,
        "{:<34} {:>12}  {:<52} {:>11}",
        "service", "quantity", "price", "USD/month"
    );
    for l in &bill.lines {
        let _ = writeln!(
            o,
            "{:<34} {:>12}  {:<52} {:>11}",
            l.service,
            quantity(l.quantity),
            l.price,
            money(l.usd)
        );
    }
    let _ = writeln!(
        o,
        "{:<34} {:>12}  {:<52} {:>11}",
        "total",
        "",
        "",
        money(bill.total_usd)
    );
    let _ = writeln!(
        o,
        "\nNot in the total: the table grows by {:.2} GB a month of orders kept (DynamoDB \
         storage, $0.25 per GB-month after 25 GB free).",
        bill.storage_growth_gb_per_month
    );
}

/// The bill of the design replaced, line by line beside this one's, and the transitions
/// of a happy order in each.
fn comparison_table(o: &mut String, shares: &[(Path, f64)], deployed: &Costed, baseline: &Costed) {
    let _ = writeln!(
        o,
        "\nCompared with {} ({}; logs {}):",
        baseline.design.name,
        baseline.design.files,
        baseline.design.saga_logs.name()
    );
    let _ = writeln!(
        o,
        "{:<36} {:>12} {:>12} {:>12}",
        "service", "that design", "this design", "difference"
    );
    let signed = |usd: f64| {
        if usd < -0.005 {
            format!("-{}", money(-usd))
        } else {
            money(usd)
        }
    };
    for (new, old) in deployed.bill.lines.iter().zip(&baseline.bill.lines) {
        let _ = writeln!(
            o,
            "{:<36} {:>12} {:>12} {:>12}",
            new.service,
            money(old.usd),
            money(new.usd),
            signed(new.usd - old.usd)
        );
    }
    let (new, old) = (deployed.bill.total_usd, baseline.bill.total_usd);
    let _ = writeln!(
        o,
        "{:<36} {:>12} {:>12} {:>12}  ({:.0}% of that design's)",
        "total",
        money(old),
        money(new),
        signed(new - old),
        new / old * 100.0
    );
    let happy = |c: &Costed| {
        c.runs
            .iter()
            .find(|r| r.path == Path::Happy)
            .map_or(0, |r| r.transitions)
    };
    let _ = writeln!(
        o,
        "State transitions of a happy order: {} in that design, {} in this one.",
        happy(baseline),
        happy(deployed)
    );
    // What the log levels chosen save: the same histories logged at ALL.
    let orders = deployed.bill.orders_per_month;
    let logs = price(Meter::LogsIngestedGb);
    let at_all = |f: &dyn Fn(&PathRun) -> f64| {
        orders * mean(&deployed.runs, shares, f) / BYTES_PER_GB * logs.usd / logs.per
    };
    let _ = writeln!(
        o,
        "Logging level ALL instead of ERROR would add {} a month for the saga and {} for the child.",
        money(at_all(&|r| (r.history_log_bytes_all - r.history_log_bytes) as f64)),
        money(at_all(&|r| {
            r.express_runs
                .iter()
                .map(|x| (x.log_bytes_all - x.log_bytes) as f64)
                .sum()
        }))
    );
}

/// DynamoDB per happy order, by caller and by partition.
fn dynamodb_table(o: &mut String, runs: &[PathRun]) {
    let happy = runs.iter().find(|r| r.path == Path::Happy);
    if let Some(h) = happy {
        let _ = writeln!(
            o,
            "\nDynamoDB per happy order, by caller (requests; RRU/WRU):"
        );
        for (caller, u) in &h.dynamodb_by_caller {
            let _ = writeln!(
                o,
                "  {:<34} {} GetItem, {} Query, {} TransactWriteItems ({} items): {} RRU, {} WRU",
                caller, u.get_item, u.query, u.transact_write_items, u.items_written, u.rru, u.wru
            );
        }
        let _ = writeln!(o, "  by partition:");
        for (class, u) in &h.dynamodb_by_partition {
            let _ = writeln!(o, "  {:<34} {} RRU, {} WRU", class, u.rru, u.wru);
        }
    }
}

/// How each failure is made, the assumptions and the prices with their sources.
fn notes(o: &mut String, args: &CostArgs, runs: &[PathRun]) {
    let _ = writeln!(o, "\nHow each failure is made to happen:");
    for r in runs {
        let _ = writeln!(o, "  {:<24} {}", r.path.label(), r.trigger);
    }
    let _ = writeln!(o, "\nAssumptions:");
    let _ = writeln!(
        o,
        "  - Lambda duration: {} ms per invocation (--lambda-ms), {LAMBDA_MEMORY_MB} MB.",
        args.lambda_ms
    );
    for a in ASSUMPTIONS {
        let _ = writeln!(o, "  - {a}");
    }
    let _ = writeln!(o, "\nPrices:");
    for p in &PRICES {
        let _ = writeln!(o, "  - {}: {}; {}", p.service, price_text(p), p.source);
    }
}

/// A per-order count, shown whole when it is (a weighted mean may not be).
fn fmt_count(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}
