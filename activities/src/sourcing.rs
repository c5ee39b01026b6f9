//! Which warehouses an order ships from. The rule, in order of priority:
//!
//! 1. **Fewest shipments.** The smallest set of warehouses that together have every
//!    line's quantity available. A line is split across warehouses only when no
//!    smaller set can carry it whole.
//! 2. **Nearest.** Among sets of that size, the one with the most warehouses in the
//!    destination country, then the least total great-circle distance from the
//!    warehouses to the destination (its US ZIP zone, or elsewhere its country's
//!    centroid: `model::destination_point`), then the lowest warehouse ids
//!    (so the choice never depends on the order rows were read in).
//!
//! Within the chosen set each line takes from the nearest warehouse first. With more
//! than [`EXHAUSTIVE_LIMIT`] candidate warehouses the set is built greedily (each time
//! the warehouse that covers the most missing units), which may use one shipment more
//! than the minimum.

use crate::model::{destination_point, Address, OrderLine, Shipment, ShipmentLine};
use std::collections::BTreeMap;

pub const EXHAUSTIVE_LIMIT: usize = 12;

#[derive(Debug, Clone)]
pub struct Site {
    pub warehouse_id: String,
    pub country: String,
    pub lat: f64,
    pub lon: f64,
    /// Units available (on hand, not reserved) by SKU.
    pub available: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

fn km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    6371.0 * 2.0 * a.sqrt().asin()
}

/// Plans the shipments of an order: `lines` to `address` from `sites`. Shipment ids
/// are `{order_id}-{n}`, numbered nearest first.
pub fn plan(
    order_id: &str,
    lines: &[OrderLine],
    address: &Address,
    sites: &[Site],
) -> Result<Vec<Shipment>, Shortage> {
    let destination = address.country.as_str();
    check_available(lines, sites)?;
    let dest = destination_point(address);
    let distance = |s: &Site| dest.map_or(0.0, |(lat, lon)| km(s.lat, s.lon, lat, lon));
    // Only warehouses holding something the order needs can be part of the answer.
    let mut candidates: Vec<&Site> = sites
        .iter()
        .filter(|s| {
            lines
                .iter()
                .any(|l| s.available.get(&l.sku).copied().unwrap_or(0) > 0)
        })
        .collect();
    candidates.sort_by(|a, b| {
        distance(a)
            .total_cmp(&distance(b))
            .then_with(|| a.warehouse_id.cmp(&b.warehouse_id))
    });
    let chosen: Vec<&Site> = if candidates.len() <= EXHAUSTIVE_LIMIT {
        exhaustive(&candidates, lines, destination, distance)
    } else {
        greedy(&candidates, lines, distance)
    };
    Ok(allot(order_id, lines, &chosen))
}

/// The first line that all of `sites` together cannot carry.
fn check_available(lines: &[OrderLine], sites: &[Site]) -> Result<(), Shortage> {
    for line in lines {
        let total: i64 = sites
            .iter()
            .map(|s| s.available.get(&line.sku).copied().unwrap_or(0).max(0))
            .sum();
        if total < line.quantity {
            return Err(Shortage {
                sku: line.sku.clone(),
                requested: line.quantity,
                available: total,
            });
        }
    }
    Ok(())
}

/// The best set of `candidates` by the module's rule, trying every subset; it keeps
/// the nearest-first order of `candidates`.
fn exhaustive<'a>(
    candidates: &[&'a Site],
    lines: &[OrderLine],
    destination: &str,
    distance: impl Fn(&Site) -> f64,
) -> Vec<&'a Site> {
    let covers = |set: &[&Site]| {
        lines.iter().all(|l| {
            set.iter()
                .map(|s| s.available.get(&l.sku).copied().unwrap_or(0).max(0))
                .sum::<i64>()
                >= l.quantity
        })
    };
    let n = candidates.len();
    type Rank<'a> = (u32, usize, f64, Vec<&'a str>);
    let better = |a: &Rank, b: &Rank| {
        a.0.cmp(&b.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.total_cmp(&b.2))
            .then_with(|| a.3.cmp(&b.3))
            .is_lt()
    };
    let mut best: Option<(Rank, u32)> = None;
    for mask in 1u32..(1 << n) {
        let size = mask.count_ones();
        if best.as_ref().is_some_and(|(r, _)| size > r.0) {
            continue;
        }
        let set: Vec<&Site> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| candidates[i])
            .collect();
        if !covers(&set) {
            continue;
        }
        let abroad = set.iter().filter(|s| s.country != destination).count();
        let total_km: f64 = set.iter().map(|s| distance(s)).sum();
        let mut ids: Vec<&str> = set.iter().map(|s| s.warehouse_id.as_str()).collect();
        ids.sort();
        let rank = (size, abroad, total_km, ids);
        if best.as_ref().is_none_or(|(b, _)| better(&rank, b)) {
            best = Some((rank, mask));
        }
    }
    let mask = best.map(|(_, m)| m).unwrap_or(0);
    (0..n)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| candidates[i])
        .collect()
}

/// A covering set of `candidates` built greedily: each time the warehouse that covers
/// the most missing units, the nearest on a tie.
fn greedy<'a>(
    candidates: &[&'a Site],
    lines: &[OrderLine],
    distance: impl Fn(&Site) -> f64,
) -> Vec<&'a Site> {
    let mut missing: BTreeMap<&str, i64> =
        lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
    let mut set: Vec<&Site> = Vec::new();
    while missing.values().any(|m| *m > 0) {
        let gain = |s: &Site| -> i64 {
            missing
                .iter()
                .map(|(sku, m)| (*m).min(s.available.get(*sku).copied().unwrap_or(0).max(0)))
                .sum()
        };
        let next = candidates
            .iter()
            .filter(|s| !set.iter().any(|t| t.warehouse_id == s.warehouse_id))
            .max_by(|a, b| {
                gain(a)
                    .cmp(&gain(b))
                    .then_with(|| distance(b).total_cmp(&distance(a)))
            })
            .copied()
            .expect("plan checked the totals first");
        for (sku, m) in missing.iter_mut() {
            *m -= (*m).min(next.available.get(*sku).copied().unwrap_or(0).max(0));
        }
        set.push(next);
    }
    set
}

/// Splits `lines` over `chosen` (nearest first), each line taking from the nearest
/// warehouse first; a warehouse given nothing gets no shipment.
fn allot(order_id: &str, lines: &[OrderLine], chosen: &[&Site]) -> Vec<Shipment> {
    let mut shipments: Vec<Shipment> = Vec::new();
    let mut by_site: Vec<Vec<ShipmentLine>> = vec![Vec::new(); chosen.len()];
    for line in lines {
        let mut left = line.quantity;
        for (i, site) in chosen.iter().enumerate() {
            if left == 0 {
                break;
            }
            let take = left.min(site.available.get(&line.sku).copied().unwrap_or(0).max(0));
            if take > 0 {
                by_site[i].push(ShipmentLine {
                    sku: line.sku.clone(),
                    quantity: take,
                });
                left -= take;
            }
        }
    }
    for (site, lines) in chosen.iter().zip(by_site) {
        if lines.is_empty() {
            continue;
        }
        shipments.push(Shipment {
            shipment_id: format!("{order_id}-{}", shipments.len() + 1),
            warehouse_id: site.warehouse_id.clone(),
            lines,
        });
    }
    shipments
}
