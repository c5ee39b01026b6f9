//! The bill: the paths mixed by their shares and priced per month.

use super::prices::{price, Meter, BYTES_PER_GB, DAYS_PER_MONTH, KMS_KEYS, KMS_REQUESTS_PER_MONTH};
use super::report::price_text;
use super::simulate::{Path, PathRun};
use serde::Serialize;

/// The share of orders that takes each path.
pub fn mix(compensation_rate: f64, rejection_rate: f64) -> Result<Vec<(Path, f64)>, String> {
    let ok = |r: f64| (0.0..=1.0).contains(&r);
    if !ok(compensation_rate) || !ok(rejection_rate) || compensation_rate + rejection_rate > 1.0 {
        return Err(
            "--compensation-rate and --rejection-rate: from 0 to 1, together at most 1".into(),
        );
    }
    let compensating = Path::ALL.iter().filter(|p| p.compensates()).count() as f64;
    Ok(Path::ALL
        .iter()
        .map(|&p| {
            let share = match p {
                Path::Happy => 1.0 - compensation_rate - rejection_rate,
                Path::Rejected => rejection_rate,
                _ => compensation_rate / compensating,
            };
            (p, share)
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct BillLine {
    pub meter: Meter,
    pub service: &'static str,
    pub quantity: f64,
    pub unit: &'static str,
    pub price: String,
    pub usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    pub orders_per_day: u64,
    pub orders_per_month: f64,
    pub lines: Vec<BillLine>,
    pub total_usd: f64,
    /// What the monthly orders add to the table (not billed above: it depends on how
    /// long orders are kept).
    pub storage_growth_gb_per_month: f64,
}

/// The mean of `f` over the paths, weighted by their shares.
pub(super) fn mean(runs: &[PathRun], shares: &[(Path, f64)], f: impl Fn(&PathRun) -> f64) -> f64 {
    runs.iter()
        .map(|r| {
            let share = shares
                .iter()
                .find(|(p, _)| *p == r.path)
                .map_or(0.0, |(_, s)| *s);
            share * f(r)
        })
        .sum()
}

pub fn bill(runs: &[PathRun], shares: &[(Path, f64)], orders_per_day: u64, lambda_ms: u64) -> Bill {
    let orders = orders_per_day as f64 * DAYS_PER_MONTH;
    let per_order = |f: &dyn Fn(&PathRun) -> f64| orders * mean(runs, shares, f);
    let quantities = [
        (
            Meter::StateTransitions,
            per_order(&|r| r.transitions as f64),
        ),
        (
            Meter::ExpressRequests,
            per_order(&|r| r.express_requests() as f64),
        ),
        (
            Meter::ExpressGbSeconds,
            per_order(&|r| r.express_gb_seconds(lambda_ms)),
        ),
        (
            Meter::LambdaRequests,
            per_order(&|r| r.lambda_invocations as f64),
        ),
        (
            Meter::LambdaGbSeconds,
            per_order(&|r| r.gb_seconds(lambda_ms)),
        ),
        (
            Meter::DynamoWriteUnits,
            per_order(&|r| r.dynamodb.wru as f64),
        ),
        (
            Meter::DynamoReadUnits,
            per_order(&|r| r.dynamodb.rru as f64),
        ),
        (
            Meter::LogsIngestedGb,
            per_order(&|r| r.log_bytes() as f64) / BYTES_PER_GB,
        ),
        (Meter::XrayTraces, per_order(&|r| r.api_requests as f64)),
        (Meter::ApiRequests, per_order(&|r| r.api_requests as f64)),
        (Meter::KmsKeyMonths, KMS_KEYS),
        (Meter::KmsRequests, KMS_REQUESTS_PER_MONTH),
    ];
    let lines: Vec<BillLine> = quantities
        .iter()
        .map(|&(meter, quantity)| {
            let p = price(meter);
            BillLine {
                meter,
                service: p.service,
                quantity,
                unit: p.unit,
                price: price_text(p),
                usd: quantity / p.per * p.usd,
            }
        })
        .collect();
    Bill {
        orders_per_day,
        orders_per_month: orders,
        total_usd: lines.iter().map(|l| l.usd).sum(),
        lines,
        storage_growth_gb_per_month: per_order(&|r| r.stored_bytes as f64) / BYTES_PER_GB,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::simulate::{deployed, simulate_all, Design};

    #[test]
    fn cost_monthly_cost_is_linear_in_orders_per_day() {
        let runs = simulate_all(&deployed(), 1).unwrap();
        let shares = mix(0.02, 0.01).unwrap();
        let total = |n| bill(&runs, &shares, n, 50).total_usd;
        let fixed = total(0);
        assert!(fixed > 0.0, "the KMS key costs something with no orders");
        let (one, three) = (total(1_000) - fixed, total(3_000) - fixed);
        assert!(one > 0.0);
        assert!((three - 3.0 * one).abs() < 1e-9 * three, "{one} {three}");
        // And more compensations cost more per order than the happy path.
        let more = mix(0.5, 0.0).unwrap();
        assert!(bill(&runs, &more, 1_000, 50).total_usd > total(1_000));
    }

    /// The split design bills Express requests and duration, the single one none; and
    /// at 10,000 orders a day the split one costs at most half (issue 16).
    #[test]
    fn cost_the_split_design_costs_at_most_half_of_the_single_one() {
        let shares = mix(0.02, 0.0).unwrap();
        let split = bill(&simulate_all(&deployed(), 1).unwrap(), &shares, 10_000, 50);
        let single = bill(
            &simulate_all(&Design::single().unwrap(), 1).unwrap(),
            &shares,
            10_000,
            50,
        );
        let usd = |b: &Bill, m: Meter| b.lines.iter().find(|l| l.meter == m).unwrap().usd;
        assert!(usd(&split, Meter::ExpressRequests) > 0.0);
        assert!(usd(&split, Meter::ExpressGbSeconds) > 0.0);
        assert_eq!(usd(&single, Meter::ExpressRequests), 0.0);
        assert!(
            split.total_usd <= single.total_usd / 2.0,
            "{} against {}",
            split.total_usd,
            single.total_usd
        );
    }

    #[test]
    fn cost_mix_spreads_compensations_evenly_and_sums_to_one() {
        let m = mix(0.02, 0.0).unwrap();
        assert!((m.iter().map(|(_, s)| s).sum::<f64>() - 1.0).abs() < 1e-12);
        let comp: Vec<f64> = m
            .iter()
            .filter(|(p, _)| p.compensates())
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(comp.len(), 4);
        assert!(comp.iter().all(|s| (s - 0.005).abs() < 1e-12));
        assert!(mix(0.8, 0.3).is_err());
        assert!(mix(-0.1, 0.0).is_err());
    }
}
