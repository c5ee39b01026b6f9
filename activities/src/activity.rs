//! The activities: each takes typed input to typed output or a typed error, is
//! idempotent by (order, step, shipment), and knows nothing of the orchestrator. The
//! same functions run in-process under `oms up` and as Lambda functions.
//!
//! Every handler follows one pattern: read the step's ledger record and everything the
//! decision needs, decide, then apply all its writes in one conditional batch whose
//! conditions are exactly what was read (versions, stock guards). If anything changed
//! in between the batch fails whole and the handler reads and decides again, so a
//! duplicate call racing the first one returns the first one's result.

use crate::errors::{ActivityError, ErrorKind};
use crate::events::{self, outbox_write, Pending};
use crate::faults::{Faults, Point};
use crate::gateway::{GatewayError, GatewayRefund, LedgerGateway, PaymentGateway};
use crate::ledger::*;
use crate::model::*;
use crate::sourcing::{self, Site};
use crate::store::{Cond, Item, Key, Store, StoreError, Write};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub faults: Faults,
}

impl Ctx {
    /// Activities over `store`, paying through the built-in ledger gateway.
    pub fn new(store: Arc<dyn Store>) -> Ctx {
        Ctx {
            gateway: Arc::new(LedgerGateway::new(store.clone())),
            faults: Faults::new(store.clone(), KEYS),
            store,
        }
    }

    /// As `new`, with fault injection only if `OMS_FAULT_INJECTION` turns it on: for
    /// the processes that run activities in production (Lambda, `oms worker`).
    pub fn for_production(store: Arc<dyn Store>) -> Ctx {
        Ctx {
            faults: Faults::from_env(store.clone(), KEYS),
            ..Ctx::new(store)
        }
    }
}

/// How often a handler reads and decides again when its batch lost a race.
const MAX_ATTEMPTS: u32 = 25;

pub(crate) enum Attempt<T> {
    Done(T),
    /// A race lost (a condition failed): read and decide again after a short, random
    /// pause, so that racers spread out.
    Again,
    /// This attempt wrote what the next one reads (a step recorded as pending before an
    /// outside call): read and decide again at once. No race was lost, so no pause:
    /// one cost ChargePayment a millisecond or two of every order (a tokio sleep).
    Now,
}

pub(crate) async fn contended<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, ActivityError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, ActivityError>>,
{
    for n in 1..=MAX_ATTEMPTS {
        match attempt().await? {
            Attempt::Done(v) => return Ok(v),
            Attempt::Now => {}
            Attempt::Again => {
                let spread = 2 * u64::from(n.min(10));
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..=spread)))
                    .await;
            }
        }
    }
    Err(ActivityError::new(
        ErrorKind::StoreContention,
        format!("{what}: lost {MAX_ATTEMPTS} races in a row for the same items"),
    ))
}

/// Applies a batch: a failed condition means "read again", anything else is an error.
pub(crate) async fn commit(store: &dyn Store, writes: Vec<Write>) -> Result<bool, ActivityError> {
    let Some(writes) = fold_checks(writes) else {
        return Ok(false);
    };
    match store.transact(writes).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A batch may write an item once, but two concerns can each guard the order record:
/// an amendment's lock (a `Check` of the version read) and an event's sequence (a `Put`
/// under the version read). A `Check` of an item the batch also puts or deletes under
/// the same condition is that write's condition already, so it is dropped. Under
/// another condition the two cannot both hold (the item changed between the two
/// reads): None, and the caller reads and decides again, as after any lost race.
fn fold_checks(writes: Vec<Write>) -> Option<Vec<Write>> {
    let cond_written = |key: &Key| {
        writes.iter().find_map(|w| match w {
            Write::Put { key: k, cond, .. } | Write::Delete { key: k, cond } if k == key => {
                Some(*cond)
            }
            _ => None,
        })
    };
    // Which writes stay, decided before any moves: the writes keep their documents,
    // which are not copied (a clone per write was a visible share of allocation).
    let mut stays = Vec::with_capacity(writes.len());
    for w in &writes {
        let redundant = match w {
            Write::Check { key, cond } => match cond_written(key) {
                Some(c) if c == *cond => true,
                Some(_) => return None,
                None => false,
            },
            _ => false,
        };
        stays.push(!redundant);
    }
    let folded = writes
        .into_iter()
        .zip(stays)
        .filter_map(|(w, stays)| stays.then_some(w));
    Some(folded.collect())
}

/// Records a business error: applies `writes` (the step marked with `err`, and the
/// guards of what was read) and answers `err`, or "read and decide again" if a
/// condition failed.
pub(crate) async fn fail_step<T>(
    store: &dyn Store,
    writes: Vec<Write>,
    err: ActivityError,
) -> Result<Attempt<T>, ActivityError> {
    if commit(store, writes).await? {
        Err(err)
    } else {
        Ok(Attempt::Again)
    }
}

/// Applies a batch and answers with `done` if it applied, or "read and decide again"
/// if a condition failed.
pub(crate) async fn done_or_again<T>(
    store: &dyn Store,
    writes: Vec<Write>,
    done: T,
) -> Result<Attempt<T>, ActivityError> {
    Ok(if commit(store, writes).await? {
        Attempt::Done(done)
    } else {
        Attempt::Again
    })
}

pub(crate) fn cancelled(order_id: &str, why: &str) -> ActivityError {
    ActivityError::new(
        ErrorKind::OrderCancelled,
        format!("order '{order_id}' {why}"),
    )
}

/// A forward step already settled: its stored result if it is done, Order.Cancelled
/// (saying `undone`) if it was compensated, nothing if it is still to be done.
pub(crate) fn settled<T: serde::de::DeserializeOwned>(
    step: &Step,
    order_id: &str,
    undone: &str,
) -> Result<Option<T>, ActivityError> {
    match step.status() {
        Some(StepStatus::Done) => Ok(step.result()),
        Some(StepStatus::Compensated | StepStatus::CompensationFailed) => {
            Err(cancelled(order_id, undone))
        }
        _ => Ok(None),
    }
}

/// The check that makes a forward step and a cancellation request exclusive: the batch
/// only applies if the order is as read (not cancelled since).
pub(crate) fn order_unchanged(order_id: &str, version: u64) -> Write {
    Write::Check {
        key: order_key(order_id),
        cond: Cond::Version(version),
    }
}

/// The writes that emit `emitted` for order `id` when the caller does not write the
/// order record itself: the record, its event count bumped under the version read
/// now (so the batch fails and is decided again if the order changed meanwhile), and
/// the outbox item. Nothing for an order that does not exist (a compensation called
/// for an order never placed has no subject to report on).
async fn emit(
    store: &dyn Store,
    id: &str,
    emitted: Vec<Pending>,
) -> Result<Vec<Write>, ActivityError> {
    let Some(item) = store.get(&order_key(id)).await? else {
        return Ok(Vec::new());
    };
    let mut record: OrderRecord = from_item(&item)?;
    let Some(outbox) = outbox_write(&mut record, emitted) else {
        return Ok(Vec::new());
    };
    Ok(vec![
        outbox,
        put(order_key(id), to_doc(&record), Some(item.version)),
    ])
}

// ---- PlaceOrder ------------------------------------------------------------------

/// Every rule the order breaks, with its SKUs checked against the catalog, and its
/// lines priced when it breaks none. Writes nothing.
pub async fn check_order(
    ctx: &Ctx,
    order: &Order,
) -> Result<Result<Vec<PricedLine>, Vec<FieldError>>, ActivityError> {
    let mut errors = order.check();
    let mut lines = Vec::new();
    for (i, line) in order.lines.iter().enumerate() {
        if errors.iter().any(|e| e.field == format!("lines[{i}].sku")) {
            continue;
        }
        match ctx.store.get(&sku_key(&line.sku)).await? {
            None => errors.push(FieldError {
                field: format!("lines[{i}].sku"),
                rule: format!("a SKU in the catalog ('{}' is not)", line.sku),
            }),
            Some(item) => {
                let sku: SkuRecord = from_item(&item)?;
                lines.push(PricedLine {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    unit_price_cents: sku.price_cents,
                    line_total_cents: line_total_cents(sku.price_cents, line.quantity, i)?,
                });
            }
        }
    }
    Ok(if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    })
}

/// A line's price times its quantity, checked: the quantity is a client's number.
fn line_total_cents(unit_cents: i64, quantity: i64, line: usize) -> Result<i64, ActivityError> {
    unit_cents.checked_mul(quantity).ok_or_else(|| {
        invalid(&[FieldError {
            field: format!("lines[{line}].quantity"),
            rule: "a quantity whose total fits in 64-bit cents".into(),
        }])
    })
}

/// The payment-method reference an order pays with. A token is vaulted at the gateway,
/// which keeps it; a reference must be one the gateway gave for this very order, or a
/// reference seen in one order's history could pay for another.
pub async fn payment_method(ctx: &Ctx, order: &Order) -> Result<String, ActivityError> {
    let id = &order.order_id;
    match (&order.payment.token, &order.payment.method) {
        (Some(token), None) => vault(ctx, id, token).await,
        (None, Some(method)) => {
            let owner = ctx
                .gateway
                .vaulted_for(method)
                .await
                .map_err(|e| gateway_error(e, id))?;
            if owner.as_deref() != Some(id.as_str()) {
                return Err(invalid(&[FieldError {
                    field: "payment.method".into(),
                    rule: format!("a payment method the gateway gave for order '{id}'"),
                }]));
            }
            Ok(method.clone())
        }
        _ => Err(invalid(&order.check())),
    }
}

async fn vault(ctx: &Ctx, order_id: &str, token: &str) -> Result<String, ActivityError> {
    ctx.gateway
        .vault(order_id, token)
        .await
        .map_err(|e| gateway_error(e, order_id))
}

/// The reference an order record pays with. Records written before the gateway kept
/// tokens hold the token itself: it is vaulted now, so old data dirs keep working.
pub async fn recorded_method(ctx: &Ctx, record: &OrderRecord) -> Result<String, ActivityError> {
    if is_token(&record.payment_method) {
        return vault(ctx, &record.order_id, &record.payment_method).await;
    }
    Ok(record.payment_method.clone())
}

/// PlaceOrder, the saga's first step. An order the Orders API placed (with
/// [`place_checked`]) is only read and compared here; an order whose saga was started
/// directly (StartExecution with an order as input) is checked, priced and written.
pub async fn place_order(ctx: &Ctx, order: Order) -> Result<PlacedOrder, ActivityError> {
    let placed = match ctx.store.get(&order_key(&order.order_id)).await? {
        Some(item) => {
            ctx.faults.inject("place", Point::Before).await?;
            let existing: OrderRecord = from_item(&item)?;
            let method = payment_method(ctx, &order).await?;
            same_order(ctx, &existing, &order, &method).await?
        }
        None => {
            let lines = check_order(ctx, &order).await?.map_err(|e| invalid(&e))?;
            ctx.faults.inject("place", Point::Before).await?;
            let method = payment_method(ctx, &order).await?;
            place_checked(ctx, &order, lines, &method).await?.order
        }
    };
    ctx.faults.inject("place", Point::After).await?;
    Ok(placed)
}

/// Writes an order that [`check_order`] passed, priced as it said, paying with the
/// gateway's reference `method`; an order already placed with the same contents is
/// found instead (placing is idempotent by order id), one with other contents is an
/// Order.Conflict.
pub async fn place_checked(
    ctx: &Ctx,
    order: &Order,
    lines: Vec<PricedLine>,
    method: &str,
) -> Result<Placed, ActivityError> {
    let total_cents = order_total_cents(&lines)?;
    contended("PlaceOrder", || async {
        if let Some(item) = ctx.store.get(&order_key(&order.order_id)).await? {
            let existing: OrderRecord = from_item(&item)?;
            return same_order(ctx, &existing, order, method)
                .await
                .map(|order| Attempt::Done(Placed { order, new: false }));
        }
        let now = now();
        let record = OrderRecord {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            lines: lines.clone(),
            total_cents,
            currency: "USD".into(),
            payment_method: method.to_string(),
            ship_to: order.ship_to.clone(),
            status: OrderStatus::Pending,
            charged_cents: 0,
            refunded_cents: 0,
            cancel_requested: false,
            execution_arn: None,
            failure: None,
            created_at: now.clone(),
            updated_at: now,
            event_seq: 0,
            amendments: Vec::new(),
            amending: None,
            charge_key: None,
        };
        let mut record = record;
        let placed = events::order_status(&record);
        let mut writes: Vec<Write> = outbox_write(&mut record, vec![placed])
            .into_iter()
            .collect();
        writes.push(put(order_key(&order.order_id), to_doc(&record), None));
        writes.extend(index_writes(&record));
        let placed = Placed {
            order: placed_from(&record),
            new: true,
        };
        done_or_again(&*ctx.store, writes, placed).await
    })
    .await
}

/// What [`place_checked`] did: the order as placed, and whether this call wrote it
/// (then it is PENDING, with no saga yet) or found it placed before.
#[derive(Debug)]
pub struct Placed {
    pub order: PlacedOrder,
    pub new: bool,
}

/// The order placed under this id, if it is this order (same customer, lines, address
/// and payment method); Order.Conflict if the id was placed with other contents.
async fn same_order(
    ctx: &Ctx,
    existing: &OrderRecord,
    order: &Order,
    method: &str,
) -> Result<PlacedOrder, ActivityError> {
    let same = existing.customer_id == order.customer_id
        && recorded_method(ctx, existing).await? == method
        && existing.ship_to == order.ship_to
        && existing.lines.len() == order.lines.len()
        && existing
            .lines
            .iter()
            .zip(&order.lines)
            .all(|(a, b)| a.sku == b.sku && a.quantity == b.quantity);
    if !same {
        return Err(ActivityError::new(
            ErrorKind::OrderConflict,
            format!(
                "order_id: '{}' is already an order with other contents",
                order.order_id
            ),
        ));
    }
    Ok(placed_from(existing))
}

/// The sum of an order's line totals. The checker bounds quantities and the catalog
/// prices, so this cannot overflow; checked all the same, since quantities come from
/// clients.
fn order_total_cents(lines: &[PricedLine]) -> Result<i64, ActivityError> {
    lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.line_total_cents))
        .ok_or_else(|| {
            invalid(&[FieldError {
                field: "lines".into(),
                rule: "a total that fits in 64-bit cents".into(),
            }])
        })
}

fn placed_from(r: &OrderRecord) -> PlacedOrder {
    PlacedOrder {
        order_id: r.order_id.clone(),
        customer_id: r.customer_id.clone(),
        lines: r.lines.clone(),
        total_cents: r.total_cents,
        currency: r.currency.clone(),
    }
}

// ---- ReserveInventory / ReleaseInventory -----------------------------------------

async fn sites(store: &dyn Store, skus: &[&str]) -> Result<Vec<Site>, ActivityError> {
    let mut sites: BTreeMap<String, Site> = BTreeMap::new();
    for item in store.query(CATALOG, "WH#").await? {
        let w: WarehouseRecord = from_item(&item)?;
        sites.insert(
            w.warehouse_id.clone(),
            Site {
                warehouse_id: w.warehouse_id,
                country: w.country,
                lat: w.lat,
                lon: w.lon,
                available: BTreeMap::new(),
            },
        );
    }
    for sku in skus {
        for item in store.query(&stock_pk(sku), "").await? {
            let s: StockRecord = from_item(&item)?;
            if let Some(site) = sites.get_mut(&s.warehouse_id) {
                site.available.insert(s.sku, s.available);
            }
        }
    }
    Ok(sites.into_values().collect())
}

pub async fn reserve_inventory(ctx: &Ctx, input: OrderRef) -> Result<Reservation, ActivityError> {
    ctx.faults.inject("reserve", Point::Before).await?;
    let id = input.order_id.as_str();
    let out = contended("ReserveInventory", || async {
        let order = load_order(&*ctx.store, id).await?;
        let step = Step::load(&*ctx.store, id, "reserve", None).await?;
        if let Some(r) = settled(&step, id, "had its reservation released")? {
            return Ok(Attempt::Done(r));
        }
        if order.value.cancel_requested {
            return Err(cancelled(id, "was cancelled"));
        }
        let lines: Vec<OrderLine> = order
            .value
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect();
        let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
        let sites = sites(&*ctx.store, &skus).await?;
        let shipments = match sourcing::plan(id, &lines, &order.value.ship_to, &sites) {
            Ok(s) => s,
            Err(short) => {
                let err = ActivityError::new(
                    ErrorKind::InventoryOutOfStock,
                    format!(
                        "{}: {} requested, {} available in all warehouses",
                        short.sku, short.requested, short.available
                    ),
                );
                let write = step.write(StepStatus::Failed, None, None, Some(&err));
                let writes = vec![write, order_unchanged(id, order.version)];
                return fail_step(&*ctx.store, writes, err).await;
            }
        };
        let reservation = Reservation {
            order_id: id.to_string(),
            shipments: shipments.clone(),
        };
        let (mut writes, mut emitted) = reserve_writes(id, &shipments);
        writes.push(step.write(StepStatus::Done, Some(to_json(&reservation)), None, None));
        let mut record = order.value.clone();
        if record.status == OrderStatus::Pending {
            record.status = OrderStatus::Reserved;
            record.updated_at = now();
            emitted.push(events::order_status(&record));
        }
        writes.extend(outbox_write(&mut record, emitted));
        writes.push(put(order_key(id), to_doc(&record), Some(order.version)));
        done_or_again(&*ctx.store, writes, reservation).await
    })
    .await?;
    ctx.faults.inject("reserve", Point::After).await?;
    Ok(out)
}

/// The writes that reserve `shipments` of order `id`: each line's units moved from
/// available to reserved, and each shipment's record, Reserved; with their events.
fn reserve_writes(id: &str, shipments: &[Shipment]) -> (Vec<Write>, Vec<Pending>) {
    let mut writes = Vec::new();
    let mut emitted = Vec::new();
    for s in shipments {
        for l in &s.lines {
            writes.push(stock_move(
                &l.sku,
                &s.warehouse_id,
                &[("available", -l.quantity), ("reserved", l.quantity)],
            ));
        }
        let record = ShipmentRecord {
            shipment_id: s.shipment_id.clone(),
            warehouse_id: s.warehouse_id.clone(),
            lines: s.lines.clone(),
            status: ShipmentStatus::Reserved,
            tracking_number: None,
            pick_token: None,
            updated_at: now(),
        };
        emitted.push(events::shipment_status(&record));
        writes.push(put(shipment_key(id, &s.shipment_id), to_doc(&record), None));
    }
    (writes, emitted)
}

pub async fn release_inventory(ctx: &Ctx, input: OrderRef) -> Result<Release, ActivityError> {
    ctx.faults.inject("release", Point::Before).await?;
    let id = input.order_id.as_str();
    let out = contended("ReleaseInventory", || async {
        let step = Step::load(&*ctx.store, id, "reserve", None).await?;
        if let Some(r) = step.compensated() {
            return Ok(Attempt::Done(r));
        }
        let order = ctx.store.get(&order_key(id)).await?;
        let mut writes = Vec::new();
        if let Some(item) = &order {
            from_item::<OrderRecord>(item)?.wait_for_amendment()?;
            // An amendment locking the order after this read fails this batch.
            writes.push(order_unchanged(id, item.version));
        }
        let mut release = Release {
            order_id: id.to_string(),
            released_shipments: Vec::new(),
        };
        let mut emitted = Vec::new();
        if step.status() == Some(StepStatus::Done) {
            for s in load_shipments(&*ctx.store, id).await? {
                if !matches!(
                    s.value.status,
                    ShipmentStatus::Reserved | ShipmentStatus::Picked
                ) {
                    continue;
                }
                for l in &s.value.lines {
                    writes.push(stock_move(
                        &l.sku,
                        &s.value.warehouse_id,
                        &[("available", l.quantity), ("reserved", -l.quantity)],
                    ));
                }
                let mut record = s.value.clone();
                record.status = ShipmentStatus::Released;
                record.updated_at = now();
                emitted.push(events::shipment_status(&record));
                writes.push(put(
                    shipment_key(id, &record.shipment_id),
                    to_doc(&record),
                    Some(s.version),
                ));
                release.released_shipments.push(record.shipment_id);
            }
        }
        // A release with nothing reserved still records itself, so that a reservation
        // arriving late (a duplicate Lambda call) finds the step compensated and stops.
        writes.push(step.write(StepStatus::Compensated, None, Some(to_json(&release)), None));
        emitted.push(events::compensation(
            "ReleaseInventory",
            None,
            to_json(&release),
        ));
        writes.extend(emit(&*ctx.store, id, emitted).await?);
        done_or_again(&*ctx.store, writes, release).await
    })
    .await?;
    ctx.faults.inject("release", Point::After).await?;
    Ok(out)
}

// ---- ChargePayment / RefundPayment -----------------------------------------------

pub fn charge_key(order_id: &str) -> String {
    order_charge_key(order_id)
}

pub(crate) fn gateway_error(e: GatewayError, order_id: &str) -> ActivityError {
    match e {
        GatewayError::Declined(m) => ActivityError::new(ErrorKind::PaymentDeclined, m),
        GatewayError::Timeout(m) => ActivityError::new(ErrorKind::PaymentGatewayTimeout, m),
        GatewayError::RefundRejected(m) => ActivityError::new(ErrorKind::PaymentRefundRejected, m),
        GatewayError::Voided => cancelled(order_id, "had its payment voided"),
        // The gateway's own records could not be read or written (the built-in gateway
        // keeps them in the store): a full disk is Store.Unavailable, not a timeout.
        GatewayError::Unavailable(m) => ActivityError::new(ErrorKind::StoreUnavailable, m),
    }
}

pub async fn charge_payment(ctx: &Ctx, input: OrderRef) -> Result<Charge, ActivityError> {
    ctx.faults.inject("charge", Point::Before).await?;
    let id = input.order_id.as_str();
    let out = contended("ChargePayment", || async {
        let order = load_order(&*ctx.store, id).await?;
        let step = Step::load(&*ctx.store, id, "charge", None).await?;
        if let Some(r) = settled(&step, id, "had its payment refunded or voided")? {
            return Ok(Attempt::Done(r));
        }
        if step.status().is_none() {
            // Recorded before the gateway is called, so the ledger shows a charge may
            // exist even if this call dies before it learns the outcome.
            let pending = step.write(StepStatus::Pending, None, None, None);
            return Ok(if commit(&*ctx.store, vec![pending]).await? {
                Attempt::Now
            } else {
                Attempt::Again
            });
        }
        if order.value.cancel_requested {
            return Err(cancelled(id, "was cancelled"));
        }
        let total = order.value.total_cents;
        let method = recorded_method(ctx, &order.value).await?;
        let charged = match ctx.gateway.charge(&charge_key(id), &method, total).await {
            Ok(c) => c,
            Err(e) => {
                let err = gateway_error(e, id);
                if err.kind == ErrorKind::PaymentDeclined {
                    let write = step.write(StepStatus::Failed, None, None, Some(&err));
                    return fail_step(&*ctx.store, vec![write], err).await;
                }
                return Err(err);
            }
        };
        let charge = Charge {
            order_id: id.to_string(),
            charge_id: charged.charge_id,
            amount_cents: charged.amount_cents,
        };
        let mut record = order.value.clone();
        // An old record's token goes: the gateway has it now.
        record.payment_method = method;
        record.charged_cents = charge.amount_cents;
        let mut emitted = Vec::new();
        if matches!(record.status, OrderStatus::Pending | OrderStatus::Reserved) {
            record.status = OrderStatus::Charged;
            emitted.push(events::order_status(&record));
        }
        record.updated_at = now();
        let mut writes = vec![step.write(StepStatus::Done, Some(to_json(&charge)), None, None)];
        writes.extend(outbox_write(&mut record, emitted));
        writes.push(put(order_key(id), to_doc(&record), Some(order.version)));
        if commit(&*ctx.store, writes).await? {
            return Ok(Attempt::Done(charge));
        }
        // A refund that came first wins: give the money back and stop.
        let now_step = Step::load(&*ctx.store, id, "charge", None).await?;
        if now_step.status() == Some(StepStatus::Compensated) {
            ctx.gateway
                .refund(&charge_key(id))
                .await
                .map_err(|e| gateway_error(e, id))?;
            return Err(cancelled(id, "had its payment refunded"));
        }
        Ok(Attempt::Again)
    })
    .await?;
    ctx.faults.inject("charge", Point::After).await?;
    Ok(out)
}

pub async fn refund_payment(ctx: &Ctx, input: OrderRef) -> Result<Refund, ActivityError> {
    ctx.faults.inject("refund", Point::Before).await?;
    let id = input.order_id.as_str();
    let out = contended("RefundPayment", || async {
        let step = Step::load(&*ctx.store, id, "charge", None).await?;
        if let Some(r) = step.compensated() {
            return Ok(Attempt::Done(r));
        }
        let order = ctx.store.get(&order_key(id)).await?;
        refuse_if_completed(order.as_ref(), id)?;
        // The live charge: an amendment may have charged the order anew.
        let key = match &order {
            Some(item) => {
                let record: OrderRecord = from_item(item)?;
                record.wait_for_amendment()?;
                record.live_charge_key()
            }
            None => charge_key(id),
        };
        // The gateway is asked even when the ledger shows no charge: a charge call may
        // have gone through and died before recording it.
        let refund = match ctx.gateway.refund(&key).await {
            Ok(GatewayRefund::Refunded {
                refund_id,
                amount_cents,
            }) => Refund {
                order_id: id.to_string(),
                refund_id: Some(refund_id),
                amount_cents,
            },
            Ok(GatewayRefund::Voided) => Refund {
                order_id: id.to_string(),
                refund_id: None,
                amount_cents: 0,
            },
            Err(e) => {
                let err = gateway_error(e, id);
                if err.kind == ErrorKind::PaymentRefundRejected {
                    let write = step.write(StepStatus::CompensationFailed, None, None, Some(&err));
                    return fail_step(&*ctx.store, vec![write], err).await;
                }
                return Err(err);
            }
        };
        let mut writes =
            vec![step.write(StepStatus::Compensated, None, Some(to_json(&refund)), None)];
        // Written against the version read before the refund: an order that completed
        // in between loses the batch and is read again.
        if let Some(item) = order {
            let mut record: OrderRecord = from_item(&item)?;
            // Added: an amendment's re-charge refunded the order's first charge.
            record.refunded_cents = record
                .refunded_cents
                .checked_add(refund.amount_cents)
                .ok_or_else(|| {
                    ActivityError::new(ErrorKind::OrderInvalid, "refunded_cents overflows")
                })?;
            record.updated_at = now();
            let done = events::compensation("RefundPayment", None, to_json(&refund));
            writes.extend(outbox_write(&mut record, vec![done]));
            writes.push(put(order_key(id), to_doc(&record), Some(item.version)));
        }
        done_or_again(&*ctx.store, writes, refund).await
    })
    .await?;
    ctx.faults.inject("refund", Point::After).await?;
    Ok(out)
}

/// A compensation never undoes a completed order: a state machine that calls one (oms
/// allows only the saga to, but a deployed function has other callers) changes nothing.
fn refuse_if_completed(order: Option<&Item>, id: &str) -> Result<(), ActivityError> {
    let Some(item) = order else { return Ok(()) };
    let record: OrderRecord = from_item(item)?;
    if record.status == OrderStatus::Completed {
        return Err(ActivityError::new(
            ErrorKind::OrderCompleted,
            format!("order '{id}' is COMPLETED: its payment is not refunded"),
        ));
    }
    Ok(())
}

// ---- PickShipment / RestockShipment ----------------------------------------------

pub fn shipment_state(r: &ShipmentRecord, order_id: &str) -> ShipmentState {
    ShipmentState {
        order_id: order_id.to_string(),
        shipment_id: r.shipment_id.clone(),
        status: r.status,
        tracking_number: r.tracking_number.clone(),
    }
}

/// The forward per-shipment steps share their shape: check the ledger and the order,
/// then move the shipment (and stock) in one batch with the step record.
async fn forward_shipment_step(
    ctx: &Ctx,
    input: &ShipmentRef,
    step_name: &str,
    decide: impl Fn(
        &OrderRecord,
        &ShipmentRecord,
    ) -> Result<(ShipmentRecord, Vec<Write>), ActivityError>,
) -> Result<ShipmentState, ActivityError> {
    let (id, sid) = (input.order_id.as_str(), input.shipment_id.as_str());
    contended(step_name, || async {
        let order = load_order(&*ctx.store, id).await?;
        let step = Step::load(&*ctx.store, id, step_name, Some(sid)).await?;
        let undone = format!("had {step_name} of {sid} compensated");
        if let Some(r) = settled(&step, id, &undone)? {
            return Ok(Attempt::Done(r));
        }
        if order.value.cancel_requested {
            return Err(cancelled(id, "was cancelled"));
        }
        // A pick or ship would change shipments an amendment is changing; the
        // amendment's lock bumps the order's version, so this batch's check below
        // also catches a lock taken after this read.
        order.value.wait_for_amendment()?;
        let shipment = load_shipment(&*ctx.store, id, sid).await?;
        let (record, mut writes) = match decide(&order.value, &shipment.value) {
            Ok(next) => next,
            Err(err) => {
                if err.kind.retryable() {
                    return Err(err);
                }
                let write = step.write(StepStatus::Failed, None, None, Some(&err));
                let writes = vec![write, order_unchanged(id, order.version)];
                return fail_step(&*ctx.store, writes, err).await;
            }
        };
        let state = shipment_state(&record, id);
        let moved = record.status != shipment.value.status;
        writes.push(put(
            shipment_key(id, sid),
            to_doc(&record),
            Some(shipment.version),
        ));
        writes.push(step.write(StepStatus::Done, Some(to_json(&state)), None, None));
        if moved {
            // The order record is written (not only checked) to count the event.
            let mut order_record = order.value.clone();
            let mut emitted = vec![events::shipment_status(&record)];
            let fulfilling = order_record.status == OrderStatus::Fulfilling;
            if step_name == "ship" && fulfilling && last_to_ship(ctx, id, sid).await? {
                // The order's last shipment leaves: the order is COMPLETED in the same
                // batch (the saga has no MarkCompleted state, docs/saga.md). Two ships
                // of one order both write the order record at the version they read,
                // so the second fails, reads again and sees the first SHIPPED. Only a
                // FULFILLING order completes: the saga ships after MarkFulfilling.
                order_record.status = OrderStatus::Completed;
                order_record.updated_at = now();
                emitted.push(events::order_status(&order_record));
            }
            writes.extend(outbox_write(&mut order_record, emitted));
            writes.push(put(
                order_key(id),
                to_doc(&order_record),
                Some(order.version),
            ));
        } else {
            writes.push(order_unchanged(id, order.version));
        }
        done_or_again(&*ctx.store, writes, state).await
    })
    .await
}

/// Whether every shipment of the order but `sid` has shipped: shipping `sid` then
/// completes the order.
async fn last_to_ship(ctx: &Ctx, id: &str, sid: &str) -> Result<bool, ActivityError> {
    Ok(load_shipments(&*ctx.store, id)
        .await?
        .iter()
        .all(|s| s.value.shipment_id == sid || s.value.status == ShipmentStatus::Shipped))
}

/// The compensating per-shipment steps: a step that never happened is recorded as
/// compensated and nothing moves; a step already compensated returns what it did.
async fn compensate_shipment_step(
    ctx: &Ctx,
    input: &ShipmentRef,
    (step_name, activity): (&str, &str),
    undo: impl Fn(&ShipmentRecord) -> Result<Option<(ShipmentRecord, Vec<Write>)>, ActivityError>,
) -> Result<ShipmentState, ActivityError> {
    let (id, sid) = (input.order_id.as_str(), input.shipment_id.as_str());
    contended(step_name, || async {
        let step = Step::load(&*ctx.store, id, step_name, Some(sid)).await?;
        if let Some(r) = step.compensated() {
            return Ok(Attempt::Done(r));
        }
        let shipment = match ctx.store.get(&shipment_key(id, sid)).await? {
            Some(item) => Some((from_item::<ShipmentRecord>(&item)?, item.version)),
            None => None,
        };
        let mut writes = Vec::new();
        let mut emitted = Vec::new();
        let state = match (&shipment, step.status()) {
            (Some((current, version)), Some(StepStatus::Done)) => match undo(current)? {
                Some((record, moves)) => {
                    writes.extend(moves);
                    emitted.push(events::shipment_status(&record));
                    writes.push(put(shipment_key(id, sid), to_doc(&record), Some(*version)));
                    shipment_state(&record, id)
                }
                None => shipment_state(current, id),
            },
            (Some((current, _)), _) => shipment_state(current, id),
            (None, _) => ShipmentState {
                order_id: id.to_string(),
                shipment_id: sid.to_string(),
                status: ShipmentStatus::Released,
                tracking_number: None,
            },
        };
        writes.push(step.write(StepStatus::Compensated, None, Some(to_json(&state)), None));
        emitted.push(events::compensation(activity, Some(sid), to_json(&state)));
        writes.extend(emit(&*ctx.store, id, emitted).await?);
        done_or_again(&*ctx.store, writes, state).await
    })
    .await
}

pub async fn pick_shipment(ctx: &Ctx, input: PickRequest) -> Result<ShipmentState, ActivityError> {
    ctx.faults.inject("pick", Point::Before).await?;
    let target = ShipmentRef {
        order_id: input.order_id.clone(),
        shipment_id: input.shipment_id.clone(),
    };
    let out = match &input.task_token {
        None => pick_now(ctx, &target, None).await?,
        Some(token) => request_pick(ctx, &target, token).await?,
    };
    ctx.faults.inject("pick", Point::After).await?;
    Ok(out)
}

async fn pick_now(
    ctx: &Ctx,
    target: &ShipmentRef,
    damaged: Option<&str>,
) -> Result<ShipmentState, ActivityError> {
    forward_shipment_step(ctx, target, "pick", |_, s| {
        if let Some(why) = damaged {
            return Err(ActivityError::new(
                ErrorKind::PickItemDamaged,
                format!("shipment {}: {why}", s.shipment_id),
            ));
        }
        match s.status {
            ShipmentStatus::Reserved => {
                let mut next = s.clone();
                next.status = ShipmentStatus::Picked;
                next.pick_token = None;
                next.updated_at = now();
                Ok((next, vec![]))
            }
            ShipmentStatus::Picked | ShipmentStatus::Shipped => Ok((s.clone(), vec![])),
            ShipmentStatus::Released => Err(cancelled(&target.order_id, "had its stock released")),
        }
    })
    .await
}

/// Records that the warehouse was asked to pick, with the token its answer must carry.
/// A repeat (a retried or redriven request) replaces the token with the newest one.
async fn request_pick(
    ctx: &Ctx,
    target: &ShipmentRef,
    token: &str,
) -> Result<ShipmentState, ActivityError> {
    let (id, sid) = (target.order_id.as_str(), target.shipment_id.as_str());
    contended("PickShipment", || async {
        let order = load_order(&*ctx.store, id).await?;
        let step = Step::load(&*ctx.store, id, "pick", Some(sid)).await?;
        if matches!(
            step.status(),
            Some(StepStatus::Compensated | StepStatus::CompensationFailed)
        ) {
            return Err(cancelled(id, &format!("had pick of {sid} compensated")));
        }
        if order.value.cancel_requested {
            return Err(cancelled(id, "was cancelled"));
        }
        let shipment = load_shipment(&*ctx.store, id, sid).await?;
        if shipment.value.status == ShipmentStatus::Released {
            return Err(cancelled(id, "had its stock released"));
        }
        let mut record = shipment.value.clone();
        record.pick_token = Some(token.to_string());
        record.updated_at = now();
        let writes = vec![
            put(
                shipment_key(id, sid),
                to_doc(&record),
                Some(shipment.version),
            ),
            order_unchanged(id, order.version),
        ];
        Ok(if commit(&*ctx.store, writes).await? {
            Attempt::Done(shipment_state(&record, id))
        } else {
            Attempt::Again
        })
    })
    .await
}

/// The warehouse's answer to a pick request: the shipment is picked (or, if `damaged`
/// says why, the pick fails with Pick.ItemDamaged). Returns the task token the waiting
/// state machine is to be answered with (None if no request was waiting) and the
/// outcome to answer with. A repeated "picked" answers the shipment as it is; any
/// answer once the shipment is past picking is an Order.Conflict naming its status.
pub async fn confirm_pick(
    ctx: &Ctx,
    target: &ShipmentRef,
    damaged: Option<&str>,
) -> Result<(Option<String>, Result<ShipmentState, ActivityError>), ActivityError> {
    let shipment = load_shipment(&*ctx.store, &target.order_id, &target.shipment_id).await?;
    let token = shipment.value.pick_token.clone();
    match (shipment.value.status, &token, damaged) {
        (ShipmentStatus::Reserved, Some(_), _) => {}
        // An answer to no request would pick the shipment with no one to tell: the
        // saga's request, arriving after, would find the step done and wait for an
        // answer that already came.
        (ShipmentStatus::Reserved, None, _) => {
            return Err(ActivityError::new(
                ErrorKind::OrderConflict,
                format!(
                    "shipment {}: no pick was requested yet; answer the warehouse's request",
                    target.shipment_id
                ),
            ))
        }
        // A repeated answer changes nothing and tells how the shipment is now. (The
        // token, if a redriven pick asked again, is answered with it.)
        (ShipmentStatus::Picked, _, None) => {
            return Ok((token, Ok(shipment_state(&shipment.value, &target.order_id))))
        }
        // Past picking (or damaged after the pick was confirmed): the answer comes too
        // late to change anything, and the step's old result would not be the truth.
        (status, _, _) => return Err(too_late_to_pick(&target.shipment_id, status)),
    }
    let outcome = pick_now(ctx, target, damaged).await;
    if let Err(e) = &outcome {
        if e.retryable() {
            return Err(e.clone());
        }
    }
    Ok((token, outcome))
}

fn too_late_to_pick(shipment_id: &str, status: ShipmentStatus) -> ActivityError {
    let status = serde_json::to_value(status).unwrap_or_default();
    ActivityError::new(
        ErrorKind::OrderConflict,
        format!(
            "shipment {shipment_id} is {}: a pick answer changes only a RESERVED shipment \
             whose pick was requested",
            status.as_str().unwrap_or_default()
        ),
    )
}

pub async fn restock_shipment(
    ctx: &Ctx,
    input: ShipmentRef,
) -> Result<ShipmentState, ActivityError> {
    ctx.faults.inject("restock", Point::Before).await?;
    let out = compensate_shipment_step(ctx, &input, ("pick", "RestockShipment"), |s| {
        match s.status {
            ShipmentStatus::Picked => {
                let mut next = s.clone();
                next.status = ShipmentStatus::Reserved;
                next.updated_at = now();
                Ok(Some((next, vec![])))
            }
            ShipmentStatus::Shipped => Err(ActivityError::new(
                ErrorKind::ShipmentInTransit,
                format!("shipment {} has shipped: cancel it first", s.shipment_id),
            )),
            ShipmentStatus::Reserved | ShipmentStatus::Released => Ok(None),
        }
    })
    .await?;
    ctx.faults.inject("restock", Point::After).await?;
    Ok(out)
}

// ---- ShipShipment / CancelShipment -----------------------------------------------

/// The postal code carriers refuse, so a test can make shipping fail without faults.
pub const UNDELIVERABLE_POSTAL_CODE: &str = "00000";

fn tracking_number(shipment_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(shipment_id.as_bytes());
    let digits: String = d[..6].iter().map(|b| format!("{b:02X}")).collect();
    format!("1Z{digits}")
}

pub async fn ship_shipment(ctx: &Ctx, input: ShipmentRef) -> Result<ShipmentState, ActivityError> {
    ctx.faults.inject("ship", Point::Before).await?;
    let out = forward_shipment_step(ctx, &input, "ship", |order, s| match s.status {
        ShipmentStatus::Picked => {
            if order.ship_to.postal_code.trim() == UNDELIVERABLE_POSTAL_CODE {
                return Err(ActivityError::new(
                    ErrorKind::ShipAddressRejected,
                    format!(
                        "ship_to.postal_code: the carrier does not deliver to {}",
                        order.ship_to.postal_code
                    ),
                ));
            }
            let mut next = s.clone();
            next.status = ShipmentStatus::Shipped;
            next.tracking_number = Some(tracking_number(&s.shipment_id));
            next.updated_at = now();
            let moves = s
                .lines
                .iter()
                .map(|l| {
                    stock_move(
                        &l.sku,
                        &s.warehouse_id,
                        &[
                            ("on_hand", -l.quantity),
                            ("reserved", -l.quantity),
                            ("shipped", l.quantity),
                        ],
                    )
                })
                .collect();
            Ok((next, moves))
        }
        ShipmentStatus::Shipped => Ok((s.clone(), vec![])),
        ShipmentStatus::Reserved => Err(ActivityError::new(
            ErrorKind::ShipmentNotPicked,
            format!("shipment {} is not picked yet", s.shipment_id),
        )),
        ShipmentStatus::Released => Err(cancelled(&input.order_id, "had its stock released")),
    })
    .await?;
    ctx.faults.inject("ship", Point::After).await?;
    Ok(out)
}

pub async fn cancel_shipment(
    ctx: &Ctx,
    input: ShipmentRef,
) -> Result<ShipmentState, ActivityError> {
    ctx.faults.inject("cancel_shipment", Point::Before).await?;
    let out = compensate_shipment_step(ctx, &input, ("ship", "CancelShipment"), |s| {
        match s.status {
            ShipmentStatus::Shipped => {
                // The parcel comes back to the warehouse, packed and still the order's.
                let mut next = s.clone();
                next.status = ShipmentStatus::Picked;
                next.tracking_number = None;
                next.updated_at = now();
                let moves = s
                    .lines
                    .iter()
                    .map(|l| {
                        stock_move(
                            &l.sku,
                            &s.warehouse_id,
                            &[
                                ("on_hand", l.quantity),
                                ("reserved", l.quantity),
                                ("shipped", -l.quantity),
                            ],
                        )
                    })
                    .collect();
                Ok(Some((next, moves)))
            }
            _ => Ok(None),
        }
    })
    .await?;
    ctx.faults.inject("cancel_shipment", Point::After).await?;
    Ok(out)
}

// ---- RecordOrderStatus and cancellation ------------------------------------------

pub async fn record_order_status(
    ctx: &Ctx,
    update: StatusUpdate,
) -> Result<StatusRecorded, ActivityError> {
    ctx.faults.inject("record_status", Point::Before).await?;
    let id = update.order_id.as_str();
    let out = contended("RecordOrderStatus", || async {
        let order = load_order(&*ctx.store, id).await?;
        let mut record = order.value.clone();
        let from = record.status;
        if update.status.is_forward() && from.rank() > update.status.rank() {
            // The order saga's Express child is at-least-once: a late run of its
            // RecordExecution or MarkFulfilling must not take the order back.
            return Ok(Attempt::Done(StatusRecorded {
                order_id: id.to_string(),
                status: from,
            }));
        }
        if from != update.status {
            // COMPENSATING (a pick that timed out) waits for a running amendment.
            record.wait_for_amendment()?;
        }
        if from.is_final() && from != update.status {
            return Err(ActivityError::new(
                ErrorKind::OrderConflict,
                format!(
                    "status: order '{id}' is {} and cannot become {}",
                    json!(from).as_str().unwrap_or_default(),
                    json!(update.status).as_str().unwrap_or_default()
                ),
            ));
        }
        record.status = update.status;
        if update.failure.is_some() {
            record.failure = update.failure.clone();
        }
        if update.execution_arn.is_some() {
            record.execution_arn = update.execution_arn.clone();
        }
        let done = StatusRecorded {
            order_id: id.to_string(),
            status: record.status,
        };
        if record == order.value {
            return Ok(Attempt::Done(done));
        }
        record.updated_at = now();
        let mut writes = Vec::new();
        if record.status != from {
            let moved = events::order_status(&record);
            writes.extend(outbox_write(&mut record, vec![moved]));
        }
        writes.push(put(order_key(id), to_doc(&record), Some(order.version)));
        done_or_again(&*ctx.store, writes, done).await
    })
    .await?;
    ctx.faults.inject("record_status", Point::After).await?;
    Ok(out)
}

/// Asks a running order to stop: its next forward step fails with Order.Cancelled, so
/// the saga compensates what was done. A finished order is returned unchanged.
pub async fn request_cancel(
    store: &dyn Store,
    order_id: &str,
) -> Result<OrderRecord, ActivityError> {
    contended("CancelOrder", || async {
        let order = load_order(store, order_id).await?;
        if order.value.status.is_final() || order.value.cancel_requested {
            return Ok(Attempt::Done(order.value));
        }
        let mut record = order.value.clone();
        record.cancel_requested = true;
        record.updated_at = now();
        let write = put(order_key(order_id), to_doc(&record), Some(order.version));
        done_or_again(store, vec![write], record).await
    })
    .await
}

// ---- The registry ----------------------------------------------------------------

/// An activity as the outside sees it: its name (the Lambda function's), its key (in
/// fault plans and the ledger), what it compensates, and the errors it raises (beyond
/// the retryable Activity.Unavailable, Store.Unavailable and Store.Contention that any
/// activity may raise).
pub struct ActivityDef {
    pub name: &'static str,
    pub key: &'static str,
    pub compensates: Option<&'static str>,
    pub errors: &'static [ErrorKind],
    pub input_schema: fn() -> schemars::Schema,
    pub output_schema: fn() -> schemars::Schema,
    /// Whether an input passes the activity's decoder and the rules it checks before it
    /// touches the store (the published input schema must say the same).
    pub accepts: fn(&Value) -> Result<(), ActivityError>,
}

/// An activity's input type: the rules it must pass beyond its shape (only an order
/// has any; its SKUs are checked against the catalog later, by `check_order`).
pub trait Input: serde::de::DeserializeOwned {
    fn rules(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

impl Input for Order {
    fn rules(&self) -> Vec<FieldError> {
        self.check()
    }
}
impl Input for OrderRef {}
impl Input for ShipmentRef {}
impl Input for PickRequest {}
impl Input for StatusUpdate {}

pub(crate) fn accepts<T: Input>(input: &Value) -> Result<(), ActivityError> {
    let broken = decode::<T>(input)?.rules();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(invalid(&broken))
    }
}

macro_rules! activities {
    ($( $name:literal, $key:literal, $comp:expr, $f:ident, $in:ty => $out:ty, [$($err:ident),*] );* $(;)?) => {
        pub const ACTIVITIES: &[ActivityDef] = &[
            $( ActivityDef {
                name: $name,
                key: $key,
                compensates: $comp,
                errors: &[$(ErrorKind::$err),*],
                input_schema: || schemars::schema_for!($in),
                output_schema: || schemars::schema_for!($out),
                accepts: accepts::<$in>,
            } ),*
        ];

        /// Every activity's key, in the table's order.
        pub const KEYS: &[&str] = &[$($key),*];

        /// Runs the activity named `name` (its name or its key) on JSON input.
        pub async fn invoke(ctx: &Ctx, name: &str, input: &Value) -> Result<Value, ActivityError> {
            let def = by_key(name).or_else(|| by_name(name)).ok_or_else(|| {
                ActivityError::new(ErrorKind::OrderInvalid, format!("no activity named '{name}'"))
            })?;
            match def.key {
                $( $key => {
                    let input: $in = decode(input)?;
                    $f(ctx, input).await.map(|o| to_json(&o))
                } )*
                _ => unreachable!("every key has a handler"),
            }
        }
    };
}

activities! {
    "PlaceOrder", "place", None, place_order, Order => PlacedOrder,
        [OrderInvalid, OrderConflict, PaymentGatewayTimeout];
    "ReserveInventory", "reserve", None, reserve_inventory, OrderRef => Reservation,
        [OrderInvalid, OrderNotFound, OrderCancelled, InventoryOutOfStock];
    "ChargePayment", "charge", None, charge_payment, OrderRef => Charge,
        [OrderInvalid, OrderNotFound, OrderCancelled, PaymentDeclined, PaymentGatewayTimeout];
    "PickShipment", "pick", None, pick_shipment, PickRequest => ShipmentState,
        [OrderInvalid, OrderNotFound, OrderCancelled, ShipmentNotFound, PickItemDamaged];
    "ShipShipment", "ship", None, ship_shipment, ShipmentRef => ShipmentState,
        [OrderInvalid, OrderNotFound, OrderCancelled, ShipmentNotFound, ShipmentNotPicked, ShipAddressRejected];
    "CancelShipment", "cancel_shipment", Some("ship"), cancel_shipment, ShipmentRef => ShipmentState,
        [OrderInvalid];
    "RestockShipment", "restock", Some("pick"), restock_shipment, ShipmentRef => ShipmentState,
        [OrderInvalid, ShipmentInTransit];
    "RefundPayment", "refund", Some("charge"), refund_payment, OrderRef => Refund,
        [OrderInvalid, OrderCompleted, PaymentRefundRejected, PaymentGatewayTimeout];
    "ReleaseInventory", "release", Some("reserve"), release_inventory, OrderRef => Release,
        [OrderInvalid];
    "RecordOrderStatus", "record_status", None, record_order_status, StatusUpdate => StatusRecorded,
        [OrderInvalid, OrderNotFound, OrderConflict];
}

impl ActivityDef {
    /// The Lambda function's (and binary's) name: the activity's name in kebab case,
    /// `ReserveInventory` -> `reserve-inventory`.
    pub fn function(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('-');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

pub fn by_function(function: &str) -> Option<&'static ActivityDef> {
    ACTIVITIES.iter().find(|a| a.function() == function)
}

pub fn by_key(key: &str) -> Option<&'static ActivityDef> {
    ACTIVITIES.iter().find(|a| a.key == key)
}

pub fn by_name(name: &str) -> Option<&'static ActivityDef> {
    ACTIVITIES.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::fold_checks;
    use crate::store::{Cond, Key, Write};

    #[test]
    fn a_check_folds_into_a_write_of_its_item_under_the_same_condition_only() {
        let order = || Key::new("ORDER#1", "ORDER");
        let other = || Key::new("SKU#1", "W1");
        let put = |cond| Write::Put {
            key: order(),
            doc: serde_json::Map::new(),
            cond,
        };
        let check = |key, cond| Write::Check { key, cond };
        // (case, batch, what stays of it; None: the batch cannot hold)
        let cases = [
            (
                "same condition: the check goes",
                vec![check(order(), Cond::Version(3)), put(Cond::Version(3))],
                Some(vec![put(Cond::Version(3))]),
            ),
            (
                "another item's check stays",
                vec![check(other(), Cond::Version(3)), put(Cond::Version(3))],
                Some(vec![
                    check(other(), Cond::Version(3)),
                    put(Cond::Version(3)),
                ]),
            ),
            (
                "another condition on the same item cannot hold",
                vec![put(Cond::Version(3)), check(order(), Cond::Version(4))],
                None,
            ),
            (
                "a check alone stays",
                vec![check(order(), Cond::Exists)],
                Some(vec![check(order(), Cond::Exists)]),
            ),
        ];
        for (case, batch, stays) in cases {
            assert_eq!(fold_checks(batch), stays, "{case}");
        }
    }
}
