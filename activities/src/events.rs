//! Order events, written through an outbox: an activity that changes an order's status,
//! a shipment's status or compensates a step adds, to the very batch that makes the
//! change, one outbox item holding the CloudEvents it causes. The batch applies whole
//! or not at all, so no event is lost and none describes a change that did not happen;
//! an activity replayed after it was done writes nothing, so it emits nothing again.
//!
//! Each event carries a per-order `sequence` (1, 2, 3...), counted by the order
//! record's `event_seq`, which the same batch writes under the version it read: two
//! batches cannot take the same numbers. Outbox items live in their own partition per
//! order (`OUTBOX#<order>`), so writing them is no hot spot on DynamoDB; a relay
//! (`oms up`'s, or the DynamoDB stream's Lambda on AWS) publishes and then deletes them.
//! The shape is `schemas/order-event.schema.json`, the one schema file (tests validate
//! every event against it; infra-cdk registers it with EventBridge).

use crate::ledger::{now, OrderRecord, ShipmentRecord};
use crate::model::{OrderStatus, ShipmentStatus};
use crate::store::{Cond, Item, Key, Write};
use serde_json::{json, Map, Value};

/// The event schema (JSON Schema 2020-12), the single definition of an event's shape.
pub const SCHEMA: &str = include_str!("../schemas/order-event.schema.json");

/// CloudEvents `source` of every oms event.
pub const SOURCE: &str = "oms";

const OUTBOX_PK_PREFIX: &str = "OUTBOX#";

/// The partition prefix of every outbox item (what a relay scans).
pub fn outbox_prefix() -> &'static str {
    OUTBOX_PK_PREFIX
}

/// The outbox item of `order_id` whose first event has sequence `first`: sort keys are
/// zero-padded so a partition reads in sequence order.
pub fn outbox_key(order_id: &str, first: u64) -> Key {
    Key::new(
        format!("{OUTBOX_PK_PREFIX}{order_id}"),
        format!("{first:012}"),
    )
}

/// An event an activity causes, before it has a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub kind: String,
    pub data: Map<String, Value>,
}

/// `oms.order.<status>`: the order moved to `status`.
pub fn order_status(record: &OrderRecord) -> Pending {
    let mut data = Map::new();
    data.insert("status".into(), json!(record.status));
    if let Some(f) = &record.failure {
        data.insert("failure".into(), json!(f));
    }
    Pending {
        kind: format!("oms.order.{}", lower(&json!(record.status))),
        data,
    }
}

/// `oms.shipment.<status>`: a shipment moved to its record's status.
pub fn shipment_status(record: &ShipmentRecord) -> Pending {
    let mut data = Map::new();
    data.insert("status".into(), json!(record.status));
    data.insert("shipment_id".into(), json!(record.shipment_id));
    data.insert("warehouse_id".into(), json!(record.warehouse_id));
    if let Some(t) = &record.tracking_number {
        data.insert("tracking_number".into(), json!(t));
    }
    Pending {
        kind: format!("oms.shipment.{}", lower(&json!(record.status))),
        data,
    }
}

/// `oms.compensation.<activity in snake case>`: the compensating activity `name` (e.g.
/// RefundPayment) did its work, recording `result`.
pub fn compensation(name: &str, shipment_id: Option<&str>, result: Value) -> Pending {
    let mut data = Map::new();
    data.insert("activity".into(), json!(name));
    if let Some(s) = shipment_id {
        data.insert("shipment_id".into(), json!(s));
    }
    data.insert("result".into(), result);
    Pending {
        kind: format!("oms.compensation.{}", snake(name)),
        data,
    }
}

/// `oms.order.amended`: an amendment was accepted; `amendment` is what the order view
/// lists for it (amendment_id, by, changes...). For the amendments' batch to add with
/// [`outbox_write`] like any other change.
pub fn amended(amendment: Map<String, Value>) -> Pending {
    Pending {
        kind: "oms.order.amended".into(),
        data: amendment,
    }
}

/// Numbers `events` after the order's last event, counting them on `record` (which the
/// caller writes in the same batch, under the version it read), and answers the one
/// outbox item that holds them; None when there are none.
pub fn outbox_write(record: &mut OrderRecord, events: Vec<Pending>) -> Option<Write> {
    if events.is_empty() {
        return None;
    }
    let first = record.event_seq + 1;
    let time = now();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        record.event_seq += 1;
        out.push(cloud_event(&record.order_id, record.event_seq, &time, e));
    }
    let mut doc = Map::new();
    doc.insert("events".into(), Value::Array(out));
    Some(Write::Put {
        key: outbox_key(&record.order_id, first),
        doc,
        cond: Cond::NotExists,
    })
}

fn cloud_event(order_id: &str, sequence: u64, time: &str, e: Pending) -> Value {
    let mut data = Map::new();
    data.insert("order_id".into(), json!(order_id));
    data.insert("sequence".into(), json!(sequence));
    data.extend(e.data);
    // Built field by field: json! would serialise a copy of `data` (to_value).
    let fields: [(&str, Value); 8] = [
        ("specversion", "1.0".into()),
        ("id", event_id().into()),
        ("source", SOURCE.into()),
        ("type", e.kind.into()),
        ("time", time.into()),
        ("subject", order_id.into()),
        ("datacontenttype", "application/json".into()),
        ("data", Value::Object(data)),
    ];
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A UUIDv7 (RFC 9562): the millisecond it was drawn, then 74 random bits. Drawn once
/// when the event is written and stored with it, so every redelivery carries the same
/// id. Not derived from order id and sequence: an id must stay unique even if an order
/// id is ever used again. Time first: ids drawn near each other share their leading
/// bytes, so the event log's sealed blocks (`oms`'s events/log.rs) compress them.
fn event_id() -> String {
    let ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    uuid_v7(ms, fastrand::u128(..))
}

/// The UUIDv7 of millisecond `ms` (its low 48 bits) with the random bits of `random`.
fn uuid_v7(ms: u64, random: u128) -> String {
    let n = (u128::from(ms) & ((1 << 48) - 1)) << 80
        | (0x7 << 76)
        | (random & (0xfff << 64))
        | (0b10 << 62)
        | (random & ((1 << 62) - 1));
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The events an outbox item holds, oldest first.
pub fn events_of(item: &Item) -> Vec<Value> {
    events_in(item).to_vec()
}

/// `events_of`, borrowed.
pub fn events_in(item: &Item) -> &[Value] {
    item.doc
        .get("events")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `events_of`, taken out of the item: the relay publishes an item's events once and
/// deletes it, and cloning them was about 1% of an order's instructions (callgrind).
pub fn into_events(item: Item) -> Vec<Value> {
    match std::sync::Arc::unwrap_or_clone(item.doc).remove("events") {
        Some(Value::Array(events)) => events,
        _ => Vec::new(),
    }
}

/// Every event type oms can emit but `oms.order.amended` (written by amendments).
pub fn status_types() -> Vec<String> {
    // The statuses as the enums' own schemas list them, so a new status is a new type.
    let orders = variants::<OrderStatus>().map(|s| format!("oms.order.{}", s.to_ascii_lowercase()));
    let shipments =
        variants::<ShipmentStatus>().map(|s| format!("oms.shipment.{}", s.to_ascii_lowercase()));
    let compensations = crate::ACTIVITIES
        .iter()
        .filter(|a| a.compensates.is_some())
        .map(|a| format!("oms.compensation.{}", snake(a.name)));
    orders
        .into_iter()
        .chain(shipments)
        .chain(compensations)
        .collect()
}

/// The names a unit-only enum serialises to, from its JSON Schema's `enum`.
fn variants<T: schemars::JsonSchema>() -> impl Iterator<Item = String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let names: Vec<String> = schema["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.into_iter()
}

fn lower(status: &Value) -> String {
    status.as_str().unwrap_or_default().to_ascii_lowercase()
}

/// `RefundPayment` -> `refund_payment`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uuid_v7;

    #[test]
    fn event_ids_are_uuid_v7_in_the_order_of_their_milliseconds() {
        // 0x01a2450f781d
        let ms = 1_796_454_971_421;
        // (random bits, the id): the version (7) and variant (8 to b) bits are set
        // whatever the random bits are.
        let cases = [
            (0, "01a2450f-781d-7000-8000-000000000000"),
            (u128::MAX, "01a2450f-781d-7fff-bfff-ffffffffffff"),
        ];
        for (random, id) in cases {
            assert_eq!(uuid_v7(ms, random), id);
        }
        // A later millisecond sorts after, whatever the random bits.
        assert!(uuid_v7(ms, u128::MAX) < uuid_v7(ms + 1, 0));
    }
}
