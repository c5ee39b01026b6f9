//! Amending an order while it waits for picking: its address, a quantity, a line added
//! or removed. An amendment is a small saga of its own (statemachines/order-amend.asl.json)
//! over the activities here, each idempotent by (order, step, amendment) through its
//! step record, as the order saga's are.
//!
//! The rule that keeps the two sagas apart: an amendment is accepted ([`begin`]) only
//! while the order is FULFILLING, not cancelled, and no shipment is picked; accepting
//! it writes the order record with the amendment as its lock (`OrderRecord::amending`)
//! in one batch that also checks every shipment's version, so a pick landing at the
//! same moment makes one of the two batches fail. While the lock is held the order
//! saga's steps that would change the order (a pick answer, a status change, a
//! compensation) answer Store.Contention, which the saga and the warehouse retry. The
//! amendment's last step (applied or abandoned) releases the lock.
//!
//! The steps: ReserveAmendment (units added, at the warehouses of the order's shipments:
//! the running saga's Map iterates over those shipments, so none is added), then
//! ChargeAmendment (the new total charged under a key of its own), then ApplyAmendment,
//! the pivot: the carrier's check of the new address, the refund of the charge the order
//! held, then one batch that releases units removed and writes the new order. A failure
//! before the pivot compensates in reverse (RefundAmendment, ReleaseAmendment) and
//! AbandonAmendment records why.

use crate::activity::{
    cancelled, commit, contended, done_or_again, fail_step, gateway_error, settled,
};
use crate::activity::{recorded_method, ActivityDef, Attempt, Ctx, Input};
use crate::errors::{ActivityError, ErrorKind};
use crate::gateway::GatewayRefund;
use crate::ledger::*;
use crate::model::*;
use crate::store::{Store, Write};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// An order keeps at most this many amendments (its record holds them).
pub const MAX_AMENDMENTS: usize = 50;

/// The input of an amendment's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmendRef {
    pub order_id: String,
    pub amendment_id: String,
}

/// AbandonAmendment's input: the amendment and the error that stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmendFailed {
    pub order_id: String,
    pub amendment_id: String,
    pub error: String,
    /// The Lambda error payload (`{"errorType","errorMessage"}`) or plain text.
    pub cause: String,
}

impl Input for AmendRef {}
impl Input for AmendFailed {}

/// Units placed in (or taken from) one shipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    pub shipment_id: String,
    pub warehouse_id: String,
    pub sku: String,
    pub quantity: i64,
}

/// What an amendment's step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AmendStep {
    pub order_id: String,
    pub amendment_id: String,
    /// Units reserved (ReserveAmendment), released (ApplyAmendment, ReleaseAmendment).
    #[serde(default)]
    pub units: Vec<Placement>,
    /// The gateway key charged (ChargeAmendment) or refunded, and the amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_key: Option<String>,
    #[serde(default)]
    pub amount_cents: i64,
}

impl AmendStep {
    fn of(r: &AmendRef) -> AmendStep {
        AmendStep {
            order_id: r.order_id.clone(),
            amendment_id: r.amendment_id.clone(),
            units: Vec::new(),
            charge_key: None,
            amount_cents: 0,
        }
    }
}

/// The forward steps' keys (their activities' keys and step records' names), in the
/// order they run.
const RESERVE: &str = "amend_reserve";
const CHARGE: &str = "amend_charge";
const APPLY: &str = "amend_apply";

/// Where an amendment's step record comes among its steps (None: not an amendment's).
pub fn step_rank(step: &str) -> Option<usize> {
    [RESERVE, CHARGE, APPLY].iter().position(|s| *s == step)
}

/// The gateway key an amendment charges the order's new total under.
pub fn amend_charge_key(order_id: &str, amendment_id: &str) -> String {
    format!("{order_id}/amend/{amendment_id}")
}

// ---- Accepting an amendment ------------------------------------------------------

/// What an associate asks to change; `lines` is the complete new list, priced.
pub struct AmendRequest {
    pub version: u64,
    pub by: String,
    pub ship_to: Option<Address>,
    pub lines: Option<Vec<PricedLine>>,
}

/// Why an amendment is refused before it starts.
#[derive(Debug)]
pub enum Refusal {
    /// The order changed since the client read it (its version is now `current`).
    Stale {
        current: u64,
    },
    /// The order is not at a point where it can be amended (the text says why).
    NotAmendable(String),
    /// Nothing would change.
    NoChange,
    Error(ActivityError),
}

impl From<ActivityError> for Refusal {
    fn from(e: ActivityError) -> Refusal {
        Refusal::Error(e)
    }
}

/// Why an order cannot be amended now; None when it can.
pub fn not_amendable(order: &OrderRecord, shipments: &[ShipmentRecord]) -> Option<String> {
    let status = json!(order.status);
    let status = status.as_str().unwrap_or_default();
    if order.status != OrderStatus::Fulfilling {
        return Some(format!(
            "the order is {status}: an order is amended while it waits for picking \
             (FULFILLING), before any shipment is picked"
        ));
    }
    if order.cancel_requested {
        return Some("the order is being cancelled".into());
    }
    if let Some(s) = shipments
        .iter()
        .find(|s| s.status != ShipmentStatus::Reserved)
    {
        let st = json!(s.status);
        return Some(format!(
            "shipment {} is {}: an order is amended only before any shipment is picked",
            s.shipment_id,
            st.as_str().unwrap_or_default()
        ));
    }
    if let Some(a) = &order.amending {
        return Some(format!(
            "amendment {a} is still running: wait for it to end"
        ));
    }
    if order.amendments.len() >= MAX_AMENDMENTS {
        return Some(format!(
            "an order is amended at most {MAX_AMENDMENTS} times"
        ));
    }
    None
}

/// Accepts an amendment: checks the version and the rule above, records the amendment
/// (RUNNING) and takes the order's lock, in one batch conditional on the order's version
/// and every shipment's. Returns the amendment.
pub async fn begin(
    store: &dyn Store,
    order_id: &str,
    req: &AmendRequest,
) -> Result<AmendmentRecord, Refusal> {
    for _ in 0..25 {
        let order = load_order(store, order_id).await?;
        let shipments = load_shipments(store, order_id).await?;
        let records: Vec<ShipmentRecord> = shipments.iter().map(|s| s.value.clone()).collect();
        // The rule first: an order that cannot be amended says why, whatever version
        // was sent (a pick also moves the version, as every change with an event does).
        if let Some(why) = not_amendable(&order.value, &records) {
            return Err(Refusal::NotAmendable(why));
        }
        if order.version != req.version {
            return Err(Refusal::Stale {
                current: order.version,
            });
        }
        let record = &order.value;
        let target = AmendTarget {
            total_cents: match &req.lines {
                Some(lines) => total_of(lines)?,
                None => record.total_cents,
            },
            lines: req.lines.clone().unwrap_or_else(|| record.lines.clone()),
            ship_to: req
                .ship_to
                .clone()
                .unwrap_or_else(|| record.ship_to.clone()),
        };
        let changes = changes(record, &target);
        if changes.as_object().is_none_or(|c| c.is_empty()) {
            return Err(Refusal::NoChange);
        }
        let amendment = AmendmentRecord {
            amendment_id: format!("amd-{}", record.amendments.len() + 1),
            at: now(),
            by: req.by.clone(),
            changes,
            status: AmendmentStatus::Running,
            reason: None,
            target,
        };
        let mut next = record.clone();
        next.amending = Some(amendment.amendment_id.clone());
        next.amendments.push(amendment.clone());
        next.updated_at = now();
        let mut writes = vec![put(order_key(order_id), to_doc(&next), Some(order.version))];
        // A pick racing this batch changes its shipment's version: one of the two fails.
        writes.extend(shipments.iter().map(|s| Write::Check {
            key: shipment_key(order_id, &s.value.shipment_id),
            cond: crate::store::Cond::Version(s.version),
        }));
        if commit(store, writes).await? {
            return Ok(amendment);
        }
    }
    Err(Refusal::Error(ActivityError::new(
        ErrorKind::StoreContention,
        format!("amending order '{order_id}': lost 25 races in a row"),
    )))
}

fn total_of(lines: &[PricedLine]) -> Result<i64, ActivityError> {
    lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.line_total_cents))
        .ok_or_else(|| invalid_field("lines", "a total that fits in 64-bit cents"))
}

fn invalid_field(field: &str, rule: &str) -> ActivityError {
    invalid(&[FieldError {
        field: field.into(),
        rule: rule.into(),
    }])
}

/// What an amendment changes: the address, each SKU's quantity, the total.
pub fn changes(order: &OrderRecord, target: &AmendTarget) -> Value {
    let mut c = serde_json::Map::new();
    if target.ship_to != order.ship_to {
        c.insert(
            "ship_to".into(),
            json!({"from": order.ship_to, "to": target.ship_to}),
        );
    }
    let (from, to) = (units_of_lines(&order.lines), units_of_lines(&target.lines));
    let lines: Vec<Value> = from
        .keys()
        .chain(to.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|sku| from.get(*sku) != to.get(*sku))
        .map(|sku| {
            json!({"sku": sku, "from": from.get(sku).copied().unwrap_or(0),
                   "to": to.get(sku).copied().unwrap_or(0)})
        })
        .collect();
    if !lines.is_empty() {
        c.insert("lines".into(), Value::Array(lines));
    }
    if target.total_cents != order.total_cents {
        c.insert(
            "total_cents".into(),
            json!({"from": order.total_cents, "to": target.total_cents}),
        );
    }
    Value::Object(c)
}

fn units_of_lines(lines: &[PricedLine]) -> BTreeMap<String, i64> {
    lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect()
}

// ---- The steps ---------------------------------------------------------------------

/// The order and its amendment, for a forward step: the order must still be held by
/// this amendment.
async fn held(
    store: &dyn Store,
    r: &AmendRef,
) -> Result<(Versioned<OrderRecord>, AmendmentRecord), ActivityError> {
    let order = load_order(store, &r.order_id).await?;
    let amendment = order.value.amendment(&r.amendment_id)?.clone();
    if order.value.amending.as_deref() != Some(r.amendment_id.as_str()) {
        return Err(ActivityError::new(
            ErrorKind::OrderConflict,
            format!(
                "amendment {} of order '{}' has ended: it no longer holds the order",
                r.amendment_id, r.order_id
            ),
        ));
    }
    Ok((order, amendment))
}

fn step_of(r: &AmendRef, step: &str) -> (String, String) {
    (step.to_string(), r.amendment_id.clone())
}

async fn load_step(store: &dyn Store, r: &AmendRef, step: &str) -> Result<Step, ActivityError> {
    let (name, aid) = step_of(r, step);
    Step::load(store, &r.order_id, &name, Some(&aid)).await
}

/// Units per SKU the shipments hold.
fn units_of(shipments: &[Versioned<ShipmentRecord>]) -> BTreeMap<String, i64> {
    let mut units = BTreeMap::new();
    for s in shipments {
        for l in &s.value.lines {
            *units.entry(l.sku.clone()).or_insert(0) += l.quantity;
        }
    }
    units
}

/// ReserveAmendment: reserves the units the amendment adds, at the warehouses of the
/// order's shipments (those holding the SKU first).
pub async fn reserve_amendment(ctx: &Ctx, r: AmendRef) -> Result<AmendStep, ActivityError> {
    let id = r.order_id.as_str();
    contended("ReserveAmendment", || async {
        let step = load_step(&*ctx.store, &r, RESERVE).await?;
        if let Some(done) = settled(&step, id, "had its amendment's reservation released")? {
            return Ok(Attempt::Done(done));
        }
        let (order, amendment) = held(&*ctx.store, &r).await?;
        let shipments = load_shipments(&*ctx.store, id).await?;
        let have = units_of(&shipments);
        let mut out = AmendStep::of(&r);
        for (sku, want) in units_of_lines(&amendment.target.lines) {
            let more = want - have.get(&sku).copied().unwrap_or(0);
            if more > 0 {
                match place(&*ctx.store, &shipments, &sku, more).await? {
                    Ok(placed) => out.units.extend(placed),
                    Err(err) => {
                        let write = step.write(StepStatus::Failed, None, None, Some(&err));
                        let check = crate::activity::order_unchanged(id, order.version);
                        return fail_step(&*ctx.store, vec![write, check], err).await;
                    }
                }
            }
        }
        let mut writes = move_units(id, &shipments, &out.units, 1)?;
        writes.push(step.write(StepStatus::Done, Some(to_json(&out)), None, None));
        writes.push(crate::activity::order_unchanged(id, order.version));
        done_or_again(&*ctx.store, writes, out).await
    })
    .await
}

/// Where `more` units of `sku` can be reserved among the order's shipments, or
/// Inventory.OutOfStock.
async fn place(
    store: &dyn Store,
    shipments: &[Versioned<ShipmentRecord>],
    sku: &str,
    more: i64,
) -> Result<Result<Vec<Placement>, ActivityError>, ActivityError> {
    let mut order: Vec<&ShipmentRecord> = shipments.iter().map(|s| &s.value).collect();
    order.sort_by_key(|s| !s.lines.iter().any(|l| l.sku == sku));
    let (mut left, mut placed, mut seen) = (more, Vec::new(), 0);
    for s in order {
        let Some(item) = store.get(&stock_key(sku, &s.warehouse_id)).await? else {
            continue;
        };
        let stock: StockRecord = from_item(&item)?;
        seen += stock.available.max(0);
        let take = left.min(stock.available.max(0));
        if take > 0 {
            placed.push(Placement {
                shipment_id: s.shipment_id.clone(),
                warehouse_id: s.warehouse_id.clone(),
                sku: sku.to_string(),
                quantity: take,
            });
            left -= take;
        }
        if left == 0 {
            return Ok(Ok(placed));
        }
    }
    Ok(Err(ActivityError::new(
        ErrorKind::InventoryOutOfStock,
        format!(
            "{sku}: {more} more requested, {seen} available at the warehouses already \
             fulfilling this order (an amendment adds no warehouse)"
        ),
    )))
}

/// The writes that move `units` into (`sign` 1) or out of (-1) the shipments: stock
/// between available and reserved, and each shipment's lines; a shipment no longer
/// Reserved or Picked (released by a compensation) moves no stock.
fn move_units(
    order_id: &str,
    shipments: &[Versioned<ShipmentRecord>],
    units: &[Placement],
    sign: i64,
) -> Result<Vec<Write>, ActivityError> {
    let mut stock: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut writes = Vec::new();
    for s in shipments {
        let mine: Vec<&Placement> = units
            .iter()
            .filter(|p| p.shipment_id == s.value.shipment_id)
            .collect();
        let live = matches!(
            s.value.status,
            ShipmentStatus::Reserved | ShipmentStatus::Picked
        );
        if mine.is_empty() || !live {
            continue;
        }
        let mut next = s.value.clone();
        for p in mine {
            add_line(&mut next.lines, &p.sku, sign * p.quantity)?;
            *stock
                .entry((p.sku.clone(), p.warehouse_id.clone()))
                .or_insert(0) += sign * p.quantity;
        }
        next.updated_at = now();
        writes.push(put(
            shipment_key(order_id, &next.shipment_id),
            to_doc(&next),
            Some(s.version),
        ));
    }
    for ((sku, wh), q) in stock {
        writes.push(stock_move(&sku, &wh, &[("available", -q), ("reserved", q)]));
    }
    Ok(writes)
}

fn add_line(lines: &mut Vec<ShipmentLine>, sku: &str, delta: i64) -> Result<(), ActivityError> {
    match lines.iter_mut().find(|l| l.sku == sku) {
        Some(l) => l.quantity += delta,
        None => lines.push(ShipmentLine {
            sku: sku.to_string(),
            quantity: delta,
        }),
    }
    if lines.iter().any(|l| l.quantity < 0) {
        return Err(ActivityError::new(
            ErrorKind::OrderConflict,
            format!("{sku}: a shipment would hold fewer than 0 units"),
        ));
    }
    lines.retain(|l| l.quantity != 0);
    Ok(())
}

/// ReleaseAmendment (compensates ReserveAmendment): the units it reserved go back.
pub async fn release_amendment(ctx: &Ctx, r: AmendRef) -> Result<AmendStep, ActivityError> {
    contended("ReleaseAmendment", || async {
        let step = load_step(&*ctx.store, &r, RESERVE).await?;
        if let Some(done) = step.compensated() {
            return Ok(Attempt::Done(done));
        }
        let mut out = AmendStep::of(&r);
        let mut writes = Vec::new();
        if step.status() == Some(StepStatus::Done) {
            let reserved: AmendStep = step.result().unwrap_or_else(|| AmendStep::of(&r));
            let shipments = load_shipments(&*ctx.store, &r.order_id).await?;
            writes = move_units(&r.order_id, &shipments, &reserved.units, -1)?;
            out.units = reserved.units;
        }
        writes.push(step.write(StepStatus::Compensated, None, Some(to_json(&out)), None));
        done_or_again(&*ctx.store, writes, out).await
    })
    .await
}

/// ChargeAmendment: charges the new total under the amendment's own key (nothing when
/// the total does not change). The charge the order held is refunded by the pivot.
pub async fn charge_amendment(ctx: &Ctx, r: AmendRef) -> Result<AmendStep, ActivityError> {
    let id = r.order_id.as_str();
    contended("ChargeAmendment", || async {
        let step = load_step(&*ctx.store, &r, CHARGE).await?;
        if let Some(done) = settled(&step, id, "had its amendment's charge refunded")? {
            return Ok(Attempt::Done(done));
        }
        let (order, amendment) = held(&*ctx.store, &r).await?;
        let mut out = AmendStep::of(&r);
        if amendment.target.total_cents != order.value.total_cents {
            let key = amend_charge_key(id, &r.amendment_id);
            let method = recorded_method(ctx, &order.value).await?;
            let charged = ctx
                .gateway
                .charge(&key, &method, amendment.target.total_cents)
                .await
                .map_err(|e| gateway_error(e, id));
            match charged {
                Ok(c) => {
                    out.charge_key = Some(key);
                    out.amount_cents = c.amount_cents;
                }
                Err(err) if !err.retryable() => {
                    let write = step.write(StepStatus::Failed, None, None, Some(&err));
                    return fail_step(&*ctx.store, vec![write], err).await;
                }
                Err(err) => return Err(err),
            }
        }
        let write = step.write(StepStatus::Done, Some(to_json(&out)), None, None);
        done_or_again(&*ctx.store, vec![write], out).await
    })
    .await
}

/// RefundAmendment (compensates ChargeAmendment): refunds the amendment's charge (or
/// voids its key, so a charge arriving late is refused).
pub async fn refund_amendment(ctx: &Ctx, r: AmendRef) -> Result<AmendStep, ActivityError> {
    let id = r.order_id.as_str();
    contended("RefundAmendment", || async {
        let step = load_step(&*ctx.store, &r, CHARGE).await?;
        if let Some(done) = step.compensated() {
            return Ok(Attempt::Done(done));
        }
        let key = amend_charge_key(id, &r.amendment_id);
        let mut out = AmendStep::of(&r);
        match ctx.gateway.refund(&key).await {
            Ok(GatewayRefund::Refunded { amount_cents, .. }) => {
                out.charge_key = Some(key);
                out.amount_cents = amount_cents;
            }
            Ok(GatewayRefund::Voided) => {}
            Err(e) => {
                let err = gateway_error(e, id);
                if err.kind == ErrorKind::PaymentRefundRejected {
                    let write = step.write(StepStatus::CompensationFailed, None, None, Some(&err));
                    return fail_step(&*ctx.store, vec![write], err).await;
                }
                return Err(err);
            }
        }
        let write = step.write(StepStatus::Compensated, None, Some(to_json(&out)), None);
        done_or_again(&*ctx.store, vec![write], out).await
    })
    .await
}

/// ApplyAmendment, the pivot: the carrier's check of the new address, the refund of
/// the charge the order held (when the total changed), then one batch that releases
/// the units taken off, writes the new order and releases the lock. After the refund
/// nothing but a retryable error can stop it.
pub async fn apply_amendment(ctx: &Ctx, r: AmendRef) -> Result<AmendStep, ActivityError> {
    let id = r.order_id.as_str();
    contended("ApplyAmendment", || async {
        let step = load_step(&*ctx.store, &r, APPLY).await?;
        if let Some(done) = settled(&step, id, "was abandoned")? {
            return Ok(Attempt::Done(done));
        }
        let (order, amendment) = held(&*ctx.store, &r).await?;
        let target = &amendment.target;
        if let Err(err) = deliverable(&target.ship_to) {
            let write = step.write(StepStatus::Failed, None, None, Some(&err));
            return fail_step(&*ctx.store, vec![write], err).await;
        }
        let charge: AmendStep = load_step(&*ctx.store, &r, CHARGE)
            .await?
            .result()
            .ok_or_else(|| cancelled(id, "has no charge step for this amendment"))?;
        let mut record = order.value.clone();
        if let Some(key) = &charge.charge_key {
            let refunded = refund_held(ctx, &order.value, &step).await?;
            let Some(refunded) = refunded else {
                return Ok(Attempt::Again);
            };
            record.charged_cents = checked(record.charged_cents, charge.amount_cents)?;
            record.refunded_cents = checked(record.refunded_cents, refunded)?;
            record.charge_key = Some(key.clone());
        }
        let shipments = load_shipments(&*ctx.store, id).await?;
        let out = AmendStep {
            units: taken_off(&shipments, &target.lines),
            ..AmendStep::of(&r)
        };
        let mut writes = move_units(id, &shipments, &out.units, -1)?;
        record.lines = target.lines.clone();
        record.total_cents = target.total_cents;
        record.ship_to = target.ship_to.clone();
        record.amending = None;
        set_status(&mut record, &r.amendment_id, AmendmentStatus::Applied, None);
        record.updated_at = now();
        // The one place an accepted amendment becomes true, so its event is written
        // here, in this same batch.
        let amended = crate::events::amended(amended_data(&record, &r.amendment_id));
        writes.extend(crate::events::outbox_write(&mut record, vec![amended]));
        writes.push(put(order_key(id), to_doc(&record), Some(order.version)));
        writes.push(step.write(StepStatus::Done, Some(to_json(&out)), None, None));
        done_or_again(&*ctx.store, writes, out).await
    })
    .await
}

/// `oms.order.amended`'s data: the order's status and the amendment as the order view
/// lists it (who, when, what changed), without the target it worked towards.
fn amended_data(record: &OrderRecord, amendment_id: &str) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    data.insert("status".into(), to_json(&record.status));
    if let Some(a) = record
        .amendments
        .iter()
        .find(|a| a.amendment_id == amendment_id)
    {
        data.insert("amendment_id".into(), Value::from(a.amendment_id.clone()));
        data.insert("by".into(), Value::from(a.by.clone()));
        data.insert("at".into(), Value::from(a.at.clone()));
        data.insert("changes".into(), a.changes.clone());
    }
    data
}

fn checked(a: i64, b: i64) -> Result<i64, ActivityError> {
    a.checked_add(b)
        .ok_or_else(|| invalid_field("total_cents", "amounts that fit in 64-bit cents"))
}

/// The carrier's check of an address (the one ShipShipment makes later).
fn deliverable(to: &Address) -> Result<(), ActivityError> {
    if to.postal_code.trim() == crate::activity::UNDELIVERABLE_POSTAL_CODE {
        return Err(ActivityError::new(
            ErrorKind::ShipAddressRejected,
            format!(
                "ship_to.postal_code: the carrier does not deliver to {}",
                to.postal_code
            ),
        ));
    }
    Ok(())
}

/// Refunds the charge the order holds; Some(amount), or None when the step record
/// changed under us (read again). A refused refund fails the step (compensated).
async fn refund_held(
    ctx: &Ctx,
    order: &OrderRecord,
    step: &Step,
) -> Result<Option<i64>, ActivityError> {
    let id = &order.order_id;
    match ctx.gateway.refund(&order.live_charge_key()).await {
        Ok(GatewayRefund::Refunded { amount_cents, .. }) => Ok(Some(amount_cents)),
        Ok(GatewayRefund::Voided) => Ok(Some(0)),
        Err(e) => {
            let err = gateway_error(e, id);
            if err.kind == ErrorKind::PaymentRefundRejected {
                let write = step.write(StepStatus::Failed, None, None, Some(&err));
                if !commit(&*ctx.store, vec![write]).await? {
                    return Ok(None);
                }
            }
            Err(err)
        }
    }
}

/// The units to take off the shipments so they hold `lines`: from the last shipment
/// holding a SKU first.
fn taken_off(shipments: &[Versioned<ShipmentRecord>], lines: &[PricedLine]) -> Vec<Placement> {
    let want = units_of_lines(lines);
    let mut over: BTreeMap<String, i64> = units_of(shipments)
        .into_iter()
        .map(|(sku, have)| {
            let extra = have - want.get(&sku).copied().unwrap_or(0);
            (sku, extra)
        })
        .filter(|(_, extra)| *extra > 0)
        .collect();
    let mut out = Vec::new();
    for s in shipments.iter().rev() {
        for l in &s.value.lines {
            let Some(extra) = over.get_mut(&l.sku) else {
                continue;
            };
            let take = (*extra).min(l.quantity);
            if take > 0 {
                out.push(Placement {
                    shipment_id: s.value.shipment_id.clone(),
                    warehouse_id: s.value.warehouse_id.clone(),
                    sku: l.sku.clone(),
                    quantity: take,
                });
                *extra -= take;
            }
        }
    }
    out
}

fn set_status(
    record: &mut OrderRecord,
    amendment_id: &str,
    status: AmendmentStatus,
    reason: Option<String>,
) {
    if let Some(a) = record
        .amendments
        .iter_mut()
        .find(|a| a.amendment_id == amendment_id)
    {
        a.status = status;
        a.reason = reason;
    }
}

/// AbandonAmendment: after the compensations, records why the amendment failed and
/// releases the order's lock. The order is as it was before the amendment.
pub async fn abandon_amendment(ctx: &Ctx, f: AmendFailed) -> Result<AmendStep, ActivityError> {
    let r = AmendRef {
        order_id: f.order_id.clone(),
        amendment_id: f.amendment_id.clone(),
    };
    let message = serde_json::from_str::<Value>(&f.cause)
        .ok()
        .and_then(|c| c["errorMessage"].as_str().map(str::to_string))
        .unwrap_or_else(|| f.cause.clone());
    let reason = format!("{}: {message}", f.error);
    contended("AbandonAmendment", || async {
        let order = load_order(&*ctx.store, &r.order_id).await?;
        let amendment = order.value.amendment(&r.amendment_id)?;
        if amendment.status != AmendmentStatus::Running {
            return Ok(Attempt::Done(AmendStep::of(&r)));
        }
        let mut record = order.value.clone();
        if record.amending.as_deref() == Some(r.amendment_id.as_str()) {
            record.amending = None;
        }
        set_status(
            &mut record,
            &r.amendment_id,
            AmendmentStatus::Failed,
            Some(reason.clone()),
        );
        record.updated_at = now();
        let write = put(order_key(&r.order_id), to_doc(&record), Some(order.version));
        done_or_again(&*ctx.store, vec![write], AmendStep::of(&r)).await
    })
    .await
}

// ---- The registry ------------------------------------------------------------------

/// The amendment's activities, as `activity::ACTIVITIES` lists the order saga's: a
/// table of their own, since the order saga calls none of them.
pub const AMEND_ACTIVITIES: &[ActivityDef] = &[
    def::<AmendRef>(
        "ReserveAmendment",
        RESERVE,
        None,
        &[ErrorKind::OrderConflict, ErrorKind::InventoryOutOfStock],
    ),
    def::<AmendRef>(
        "ChargeAmendment",
        CHARGE,
        None,
        &[
            ErrorKind::OrderConflict,
            ErrorKind::PaymentDeclined,
            ErrorKind::PaymentGatewayTimeout,
        ],
    ),
    def::<AmendRef>(
        "ApplyAmendment",
        APPLY,
        None,
        &[
            ErrorKind::OrderConflict,
            ErrorKind::ShipAddressRejected,
            ErrorKind::PaymentRefundRejected,
        ],
    ),
    def::<AmendRef>(
        "RefundAmendment",
        "amend_refund",
        Some(CHARGE),
        &[ErrorKind::PaymentRefundRejected],
    ),
    def::<AmendRef>("ReleaseAmendment", "amend_release", Some(RESERVE), &[]),
    def::<AmendFailed>(
        "AbandonAmendment",
        "amend_abandon",
        None,
        &[ErrorKind::OrderNotFound],
    ),
];

const fn def<T: Input + JsonSchema>(
    name: &'static str,
    key: &'static str,
    compensates: Option<&'static str>,
    errors: &'static [ErrorKind],
) -> ActivityDef {
    ActivityDef {
        name,
        key,
        compensates,
        errors,
        input_schema: || schemars::schema_for!(T),
        output_schema: || schemars::schema_for!(AmendStep),
        accepts: crate::activity::accepts::<T>,
    }
}

/// The amendment activity keyed (or named) `name`.
pub fn by_key(name: &str) -> Option<&'static ActivityDef> {
    AMEND_ACTIVITIES
        .iter()
        .find(|a| a.key == name || a.name == name)
}

pub fn by_function(function: &str) -> Option<&'static ActivityDef> {
    AMEND_ACTIVITIES.iter().find(|a| a.function() == function)
}

/// Runs the amendment activity keyed (or named) `name` on JSON input.
pub async fn invoke(ctx: &Ctx, name: &str, input: &Value) -> Result<Value, ActivityError> {
    let def = by_key(name).ok_or_else(|| {
        ActivityError::new(
            ErrorKind::OrderInvalid,
            format!("no activity named '{name}'"),
        )
    })?;
    let out = match def.key {
        RESERVE => reserve_amendment(ctx, decode(input)?).await,
        CHARGE => charge_amendment(ctx, decode(input)?).await,
        APPLY => apply_amendment(ctx, decode(input)?).await,
        "amend_refund" => refund_amendment(ctx, decode(input)?).await,
        "amend_release" => release_amendment(ctx, decode(input)?).await,
        _ => abandon_amendment(ctx, decode(input)?).await,
    }?;
    Ok(to_json(&out))
}
