//! The proof that nothing was lost, oversold or charged twice: every invariant the
//! order domain promises, checked against what the store holds.

use crate::gateway;
use crate::ledger::*;
use crate::model::{OrderStatus, ShipmentStatus};
use crate::store::{Key, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// Every broken invariant, in words. Empty means all hold.
    pub problems: Vec<String>,
    pub orders: usize,
    pub by_status: BTreeMap<String, usize>,
    pub charged_cents: i64,
    pub refunded_cents: i64,
    pub completed_total_cents: i64,
    pub received_units: i64,
    pub on_hand_units: i64,
    pub reserved_units: i64,
    pub shipped_units: i64,
}

/// Units per (sku, warehouse).
type UnitsAt = BTreeMap<(String, String), i64>;
/// Per order partition: its order record (if any) and its shipments.
type OrdersByPk = BTreeMap<String, (Option<OrderRecord>, Vec<ShipmentRecord>)>;

pub async fn audit(store: &dyn Store) -> Result<Audit, StoreError> {
    let mut a = Audit::default();
    let totals = gateway::totals(store).await?;
    a.charged_cents = totals.charged_cents;
    a.refunded_cents = totals.refunded_cents;
    let gateway_items = store.query(gateway::PARTITION, "").await?;
    // An order's charges and refunds: its first charge's key and every amendment's
    // (`{order_id}/...`; an order id holds no '/').
    let gateway_sum = |of: fn(&str) -> Key, order_id: &str| -> i64 {
        let prefix = of(&format!("{order_id}/")).sk;
        gateway_items
            .iter()
            .filter(|i| i.key.sk.starts_with(&prefix))
            .map(|i| i.i64("amount_cents"))
            .sum()
    };
    let first_charges = gateway_items
        .iter()
        .filter(|i| {
            i.key.sk.starts_with(&gateway::charge_key("").sk) && i.key.sk.ends_with("/charge")
        })
        .count();

    // (sku, warehouse) -> units the shipments say are reserved / shipped
    let mut expected_reserved = UnitsAt::new();
    let mut expected_shipped = UnitsAt::new();
    let mut in_flight = 0;
    let orders = read_orders(store, &mut a.problems).await?;
    for (pk, (order, shipments)) in &orders {
        let Some(order) = order else {
            if !shipments.is_empty() {
                a.problems
                    .push(format!("{pk}: shipments without an order record"));
            }
            continue;
        };
        a.orders += 1;
        let status = serde_json::to_value(order.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *a.by_status.entry(status.clone()).or_default() += 1;
        expect_units(shipments, &mut expected_reserved, &mut expected_shipped);
        let charged = gateway_sum(gateway::charge_key, &order.order_id);
        let refunded = gateway_sum(gateway::refund_key, &order.order_id);
        if !check_order(&mut a, order, shipments, charged, refunded) {
            in_flight += 1;
        }
    }
    if first_charges > a.orders {
        a.problems
            .push(format!("{first_charges} charges for {} orders", a.orders));
    }
    if in_flight == 0 && a.charged_cents - a.refunded_cents != a.completed_total_cents {
        a.problems.push(format!(
            "charged {} - refunded {} != {} the total of completed orders",
            a.charged_cents, a.refunded_cents, a.completed_total_cents
        ));
    }
    for item in store.scan("STOCK#").await? {
        let Ok(s) = <StockRecord as serde::Deserialize>::deserialize(&*item.doc) else {
            a.problems.push(format!("{}: not a stock record", item.key));
            continue;
        };
        check_stock(&mut a, &s, &expected_reserved, &expected_shipped);
    }
    Ok(a)
}

/// Every order partition's order record and shipments; a record that does not parse
/// is noted in `problems`.
async fn read_orders(
    store: &dyn Store,
    problems: &mut Vec<String>,
) -> Result<OrdersByPk, StoreError> {
    let mut orders = OrdersByPk::new();
    for item in scan_orders(store).await? {
        let entry = orders.entry(item.key.pk.clone()).or_default();
        let key = item.key.clone();
        let doc = serde_json::Value::Object(std::sync::Arc::unwrap_or_clone(item.doc));
        // A record that does not parse is exactly what an audit is for: say so.
        let unreadable = |e: serde_json::Error| format!("{key}: the record does not parse: {e}");
        match OrderItem::of(&key) {
            Some(OrderItem::Order) => match serde_json::from_value(doc) {
                Ok(order) => entry.0 = Some(order),
                Err(e) => problems.push(unreadable(e)),
            },
            Some(OrderItem::Shipment) => match serde_json::from_value(doc) {
                Ok(shipment) => entry.1.push(shipment),
                Err(e) => problems.push(unreadable(e)),
            },
            Some(OrderItem::Step) | None => {}
        }
    }
    Ok(orders)
}

/// Adds the units `shipments` hold reserved and shipped, per (sku, warehouse).
fn expect_units(shipments: &[ShipmentRecord], reserved: &mut UnitsAt, shipped: &mut UnitsAt) {
    for s in shipments {
        for l in &s.lines {
            let k = (l.sku.clone(), s.warehouse_id.clone());
            match s.status {
                ShipmentStatus::Reserved | ShipmentStatus::Picked => {
                    *reserved.entry(k).or_default() += l.quantity
                }
                ShipmentStatus::Shipped => *shipped.entry(k).or_default() += l.quantity,
                ShipmentStatus::Released => {}
            }
        }
    }
}

/// Checks one order against its shipments and what the gateway `charged` and
/// `refunded` for it; false when the order is still in flight.
fn check_order(
    a: &mut Audit,
    order: &OrderRecord,
    shipments: &[ShipmentRecord],
    charged: i64,
    refunded: i64,
) -> bool {
    let id = &order.order_id;
    let ended = match order.status {
        OrderStatus::Completed => {
            a.completed_total_cents += order.total_cents;
            check_completed(&mut a.problems, order, shipments, charged, refunded);
            true
        }
        OrderStatus::Cancelled => {
            if charged != refunded {
                a.problems.push(format!(
                    "order {id} CANCELLED: gateway charged {charged} but refunded {refunded}"
                ));
            }
            if let Some(s) = shipments
                .iter()
                .find(|s| s.status != ShipmentStatus::Released)
            {
                a.problems.push(format!(
                    "order {id} CANCELLED: shipment {} is {:?}, not released",
                    s.shipment_id, s.status
                ));
            }
            true
        }
        _ => false,
    };
    if order.status.is_final()
        && (order.charged_cents != charged || order.refunded_cents != refunded)
    {
        a.problems.push(format!(
            "order {id}: its record says charged {} refunded {}, the gateway {charged} and {refunded}",
            order.charged_cents, order.refunded_cents
        ));
    }
    ended
}

fn check_completed(
    problems: &mut Vec<String>,
    order: &OrderRecord,
    shipments: &[ShipmentRecord],
    charged: i64,
    refunded: i64,
) {
    let id = &order.order_id;
    // An amendment that changed the total charged the new one and refunded the old.
    if charged - refunded != order.total_cents {
        problems.push(format!(
            "order {id} COMPLETED: gateway charged {charged} and refunded {refunded}, total is {}",
            order.total_cents
        ));
    }
    if let Some(s) = shipments
        .iter()
        .find(|s| s.status != ShipmentStatus::Shipped)
    {
        problems.push(format!(
            "order {id} COMPLETED: shipment {} is {:?}, not shipped",
            s.shipment_id, s.status
        ));
    }
    if shipments
        .iter()
        .map(|s| s.lines.iter().map(|l| l.quantity).sum::<i64>())
        .sum::<i64>()
        != order.lines.iter().map(|l| l.quantity).sum::<i64>()
    {
        problems.push(format!(
            "order {id} COMPLETED: shipments do not add up to its lines"
        ));
    }
}

/// Adds one stock record to the totals and checks its counts against each other and
/// against what the shipments hold.
fn check_stock(
    a: &mut Audit,
    s: &StockRecord,
    expected_reserved: &UnitsAt,
    expected_shipped: &UnitsAt,
) {
    a.received_units += s.received;
    a.on_hand_units += s.on_hand;
    a.reserved_units += s.reserved;
    a.shipped_units += s.shipped;
    let at = format!("{} at {}", s.sku, s.warehouse_id);
    if s.available != s.on_hand - s.reserved {
        a.problems.push(format!(
            "{at}: available {} != on hand {} - reserved {}",
            s.available, s.on_hand, s.reserved
        ));
    }
    if s.available < 0 || s.reserved < 0 || s.on_hand < 0 || s.shipped < 0 {
        a.problems
            .push(format!("{at}: a negative count (oversold): {s:?}"));
    }
    if s.on_hand + s.shipped != s.received {
        a.problems.push(format!(
            "{at}: on hand {} + shipped {} != received {}",
            s.on_hand, s.shipped, s.received
        ));
    }
    let k = (s.sku.clone(), s.warehouse_id.clone());
    let want_reserved = expected_reserved.get(&k).copied().unwrap_or(0);
    if s.reserved != want_reserved {
        a.problems.push(format!(
            "{at}: reserved {} but the shipments hold {want_reserved}",
            s.reserved
        ));
    }
    let want_shipped = expected_shipped.get(&k).copied().unwrap_or(0);
    if s.shipped != want_shipped {
        a.problems.push(format!(
            "{at}: shipped {} but the shipments say {want_shipped}",
            s.shipped
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{sqlite::SqliteStore, Cond, Write};
    use serde_json::json;

    #[tokio::test]
    async fn a_record_that_does_not_parse_is_a_problem() {
        let store = SqliteStore::in_memory().unwrap();
        let bad = |key: Key| Write::Put {
            key,
            doc: to_doc(&json!({"order_id": 7})),
            cond: Cond::Always,
        };
        store
            .transact(vec![bad(order_key("o1")), bad(shipment_key("o2", "s1"))])
            .await
            .unwrap();
        let a = audit(&store).await.unwrap();
        assert_eq!(a.orders, 0);
        assert_eq!(a.problems.len(), 2, "{:?}", a.problems);
        assert!(
            a.problems.iter().all(|p| p.contains("does not parse")),
            "{:?}",
            a.problems
        );
    }
}
