//! Where the domain keeps things in the store (the table design of docs/store.md), and
//! the records it keeps there: orders, their saga ledger (one record per step), their
//! shipments, the catalog and the stock.

use crate::errors::{ActivityError, ErrorKind};
use crate::model::{
    Address, Failure, Order, OrderLine, OrderStatus, Payment, PricedLine, ShipmentLine,
    ShipmentStatus,
};
use crate::store::{Cond, Item, Key, Store, Write};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub const CATALOG: &str = "CATALOG";

// An order's partition: `ORDER#<id>`, holding its record (sort key `ORDER`), one record
// per saga step (`STEP#<step>[#<shipment>]`) and one per shipment (`SHIPMENT#<id>`).
// These prefixes are spelled here only; other code builds keys with the functions below
// and tells records apart with `OrderItem::of`.
const ORDER_PK_PREFIX: &str = "ORDER#";
const ORDER_SK: &str = "ORDER";
const STEP_SK_PREFIX: &str = "STEP#";
const SHIPMENT_SK_PREFIX: &str = "SHIPMENT#";

pub fn order_pk(order_id: &str) -> String {
    format!("{ORDER_PK_PREFIX}{order_id}")
}
pub fn order_key(order_id: &str) -> Key {
    Key::new(order_pk(order_id), ORDER_SK)
}
pub fn step_key(order_id: &str, step: &str, shipment_id: Option<&str>) -> Key {
    match shipment_id {
        Some(s) => Key::new(order_pk(order_id), format!("{STEP_SK_PREFIX}{step}#{s}")),
        None => Key::new(order_pk(order_id), format!("{STEP_SK_PREFIX}{step}")),
    }
}
pub fn shipment_key(order_id: &str, shipment_id: &str) -> Key {
    Key::new(
        order_pk(order_id),
        format!("{SHIPMENT_SK_PREFIX}{shipment_id}"),
    )
}

/// Which record of an order's partition a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderItem {
    Order,
    Step,
    Shipment,
}

impl OrderItem {
    /// The kind of `key`, or None for a key outside every order's partition.
    pub fn of(key: &Key) -> Option<OrderItem> {
        order_id_of(&key.pk)?;
        if key.sk == ORDER_SK {
            Some(OrderItem::Order)
        } else if key.sk.starts_with(STEP_SK_PREFIX) {
            Some(OrderItem::Step)
        } else if key.sk.starts_with(SHIPMENT_SK_PREFIX) {
            Some(OrderItem::Shipment)
        } else {
            None
        }
    }
}

/// The order whose partition `pk` is, if it is an order's.
pub fn order_id_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(ORDER_PK_PREFIX)
}

/// The saga's forward steps in the order it runs them (the activities' keys): how an
/// order's step records are listed.
const STEP_ORDER: [&str; 4] = ["reserve", "charge", "pick", "ship"];

/// Where `step` comes in the saga (steps it does not know come last).
pub fn step_rank(step: &str) -> usize {
    STEP_ORDER
        .iter()
        .position(|s| *s == step)
        .unwrap_or(STEP_ORDER.len())
}

/// Every item of every order's partition (a full scan: audits and one-off migrations).
pub async fn scan_orders(store: &dyn Store) -> Result<Vec<Item>, crate::store::StoreError> {
    store.scan(ORDER_PK_PREFIX).await
}
pub fn stock_pk(sku: &str) -> String {
    format!("STOCK#{sku}")
}
pub fn stock_key(sku: &str, warehouse_id: &str) -> Key {
    Key::new(stock_pk(sku), warehouse_id)
}
pub fn sku_key(sku: &str) -> Key {
    Key::new(CATALOG, format!("SKU#{sku}"))
}
pub fn warehouse_key(id: &str) -> Key {
    Key::new(CATALOG, format!("WH#{id}"))
}

/// The search index: for each business key an order can be found by (its customer,
/// each SKU it orders, the month it was placed), a partition of small items pointing at
/// the order, written in the batch that places it. Their sort key starts with the
/// order's creation time, so one Query reads a partition newest first: search costs
/// reads proportional to the page, not to the table, on DynamoDB as on SQLite, with no
/// secondary index to keep in step.
pub fn index_pk(by: IndexBy, value: &str) -> String {
    format!("INDEX#{}#{value}", by.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexBy {
    Customer,
    Sku,
    /// `YYYY-MM` of the order's creation: the partitions of the unfiltered listing.
    Month,
}

impl IndexBy {
    fn as_str(self) -> &'static str {
        match self {
            IndexBy::Customer => "customer",
            IndexBy::Sku => "sku",
            IndexBy::Month => "month",
        }
    }
}

/// `created_at#order_id`: newest first when read backwards, unique per order.
pub fn index_sk(created_at: &str, order_id: &str) -> String {
    format!("{created_at}#{order_id}")
}

/// The order an index item points at.
pub fn indexed_order_id(item: &Item) -> Option<&str> {
    item.doc.get("order_id").and_then(Value::as_str)
}

/// The index items of an order (to write with it).
pub fn index_writes(order: &OrderRecord) -> Vec<Write> {
    let sk = index_sk(&order.created_at, &order.order_id);
    let mut pks = vec![
        index_pk(IndexBy::Customer, &order.customer_id),
        index_pk(
            IndexBy::Month,
            order.created_at.get(..7).unwrap_or_default(),
        ),
    ];
    for line in &order.lines {
        let pk = index_pk(IndexBy::Sku, &line.sku);
        if !pks.contains(&pk) {
            pks.push(pk);
        }
    }
    pks.into_iter()
        .map(|pk| Write::Put {
            key: Key::new(pk, sk.clone()),
            doc: to_doc(&json!({"order_id": order.order_id})),
            cond: Cond::NotExists,
        })
        .collect()
}

/// Writes the index items of orders placed before the index existed (a data dir of an
/// earlier oms). Returns how many orders it indexed.
pub async fn backfill_index(store: &dyn Store) -> Result<usize, ActivityError> {
    // Done once per store: every order placed since is indexed as it is placed.
    let done = Key::new(CATALOG, "INDEXED#1");
    if store.get(&done).await?.is_some() {
        return Ok(0);
    }
    let mut n = 0;
    for item in scan_orders(store).await? {
        if OrderItem::of(&item.key) != Some(OrderItem::Order) {
            continue;
        }
        let order: OrderRecord = from_item(&item)?;
        let writes = index_writes(&order);
        let probe = writes[0].key().clone();
        if store.get(&probe).await?.is_some() {
            continue;
        }
        match store.transact(writes).await {
            Ok(()) => n += 1,
            // Another writer indexed it first.
            Err(crate::store::StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mark = Write::Put {
        key: done,
        doc: Map::new(),
        cond: Cond::Always,
    };
    store.transact(vec![mark]).await?;
    Ok(n)
}

pub fn to_doc<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value).expect("domain records serialize") {
        Value::Object(m) => m,
        other => Map::from_iter([("value".to_string(), other)]),
    }
}

pub fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T, ActivityError> {
    // Read in place: cloning the document first copied each value twice.
    T::deserialize(&*item.doc).map_err(|e| {
        ActivityError::new(
            ErrorKind::StoreUnavailable,
            format!("stored record {} does not decode: {e}", item.key),
        )
    })
}

/// The write of a record read at `version` (None: it did not exist).
pub fn put(key: Key, doc: Map<String, Value>, version: Option<u64>) -> Write {
    Write::Put {
        key,
        doc,
        cond: version.map_or(Cond::NotExists, Cond::Version),
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<PricedLine>,
    pub total_cents: i64,
    pub currency: String,
    /// The payment-method reference the gateway gave for the order's token (never the
    /// token). Records written before the vault call it `payment_token` and hold the
    /// token itself, which the activities exchange when they read it.
    #[serde(alias = "payment_token")]
    pub payment_method: String,
    pub ship_to: Address,
    pub status: OrderStatus,
    pub charged_cents: i64,
    pub refunded_cents: i64,
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub created_at: String,
    pub updated_at: String,
    /// The sequence number of the order's last event (`crate::events`): each batch that
    /// emits events bumps it, under the version it read. Records written before events
    /// existed have none and count from 0.
    #[serde(default)]
    pub event_seq: u64,
    /// The order's amendments, oldest first (`crate::amend`): its history of changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amendments: Vec<AmendmentRecord>,
    /// The amendment that holds the order now: taken and released by conditional
    /// writes of this record, so the saga's steps that would change the order wait
    /// (`wait_for_amendment`) while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amending: Option<String>,
    /// The gateway key of the order's live charge once an amendment charged it anew
    /// (None: the first charge, `order_charge_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_key: Option<String>,
}

/// The gateway key of an order's first charge (ChargePayment's).
pub fn order_charge_key(order_id: &str) -> String {
    format!("{order_id}/charge")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AmendmentStatus {
    Running,
    Applied,
    Failed,
}

/// One amendment of an order: who asked, when, what it changes, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmendmentRecord {
    pub amendment_id: String,
    pub at: String,
    pub by: String,
    /// `{"ship_to": {"from", "to"}, "lines": [{"sku", "from", "to"}], "total_cents":
    /// {"from", "to"}}`, each only when it changes.
    pub changes: Value,
    pub status: AmendmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The order as the amendment leaves it (what its steps work towards).
    pub target: AmendTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmendTarget {
    pub lines: Vec<PricedLine>,
    pub total_cents: i64,
    pub ship_to: Address,
}

impl OrderRecord {
    /// The gateway key of the charge the order holds now.
    pub fn live_charge_key(&self) -> String {
        self.charge_key
            .clone()
            .unwrap_or_else(|| order_charge_key(&self.order_id))
    }

    /// Store.Contention (retried by the saga, and by a warehouse answering a pick)
    /// while an amendment holds the order: the saga's steps that would change the
    /// order or its shipments wait for the amendment to end.
    pub fn wait_for_amendment(&self) -> Result<(), ActivityError> {
        match &self.amending {
            None => Ok(()),
            Some(a) => Err(ActivityError::new(
                ErrorKind::StoreContention,
                format!(
                    "order '{}' is being amended ({a}): try again once the amendment ends",
                    self.order_id
                ),
            )),
        }
    }

    /// The amendment `amendment_id` of this order.
    pub fn amendment(&self, amendment_id: &str) -> Result<&AmendmentRecord, ActivityError> {
        self.amendments
            .iter()
            .find(|a| a.amendment_id == amendment_id)
            .ok_or_else(|| {
                ActivityError::new(
                    ErrorKind::OrderNotFound,
                    format!(
                        "amendment_id: order '{}' has no amendment '{amendment_id}'",
                        self.order_id
                    ),
                )
            })
    }

    /// The order as it was placed, paying with the gateway's reference `method`: what
    /// its saga starts from.
    pub fn as_order(&self, method: &str) -> Order {
        Order {
            order_id: self.order_id.clone(),
            customer_id: self.customer_id.clone(),
            lines: self
                .lines
                .iter()
                .map(|l| OrderLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            payment: Payment::method(method),
            ship_to: self.ship_to.clone(),
        }
    }
}

pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

pub async fn load_order(
    store: &dyn Store,
    order_id: &str,
) -> Result<Versioned<OrderRecord>, ActivityError> {
    let item = store.get(&order_key(order_id)).await?.ok_or_else(|| {
        ActivityError::new(
            ErrorKind::OrderNotFound,
            format!("order_id: no order '{order_id}'"),
        )
    })?;
    Ok(Versioned {
        value: from_item(&item)?,
        version: item.version,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Pending,
    Done,
    Failed,
    Compensated,
    CompensationFailed,
}

/// One step of an order's saga ledger, as last read.
pub struct Step {
    pub key: Key,
    pub step: String,
    pub shipment_id: Option<String>,
    pub item: Option<Item>,
}

impl Step {
    pub async fn load(
        store: &dyn Store,
        order_id: &str,
        step: &str,
        shipment_id: Option<&str>,
    ) -> Result<Step, ActivityError> {
        let key = step_key(order_id, step, shipment_id);
        let item = store.get(&key).await?;
        Ok(Step {
            key,
            step: step.to_string(),
            shipment_id: shipment_id.map(str::to_string),
            item,
        })
    }

    pub fn status(&self) -> Option<StepStatus> {
        self.item
            .as_ref()
            .and_then(|i| i.doc.get("status"))
            .and_then(|s| StepStatus::deserialize(s).ok())
    }

    fn field<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.item
            .as_ref()
            .and_then(|i| i.doc.get(name))
            .and_then(|v| T::deserialize(v).ok())
    }

    /// The forward step's result, stored when it was done.
    pub fn result<T: DeserializeOwned>(&self) -> Option<T> {
        self.field("result")
    }

    /// The compensation's result, if the step was compensated: a compensation run
    /// again returns it and does nothing else.
    pub fn compensated<T: DeserializeOwned>(&self) -> Option<T> {
        if self.status() != Some(StepStatus::Compensated) {
            return None;
        }
        self.field("compensation")
    }

    /// The write that moves this step to `status`, keeping what it recorded before.
    pub fn write(
        &self,
        status: StepStatus,
        result: Option<Value>,
        compensation: Option<Value>,
        error: Option<&ActivityError>,
    ) -> Write {
        let mut doc = self
            .item
            .as_ref()
            .map(|i| Map::clone(&i.doc))
            .unwrap_or_else(|| {
                to_doc(&json!({"step": self.step, "shipment_id": self.shipment_id}))
            });
        doc.insert("status".into(), json!(status));
        doc.insert("updated_at".into(), json!(now()));
        if let Some(r) = result {
            doc.insert("result".into(), r);
        }
        if let Some(c) = compensation {
            doc.insert("compensation".into(), c);
        }
        match error {
            Some(e) => {
                doc.insert(
                    "error".into(),
                    json!({"name": e.name(), "message": e.message}),
                );
            }
            // A step that failed going forward and is then compensated keeps the error
            // that failed it: the ledger says why the order stopped there (a declined
            // charge shows Payment.Declined beside its COMPENSATED charge).
            None if status == StepStatus::Compensated
                && self.status() == Some(StepStatus::Failed) => {}
            None => {
                doc.remove("error");
            }
        }
        put(self.key.clone(), doc, self.item.as_ref().map(|i| i.version))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentRecord {
    pub shipment_id: String,
    pub warehouse_id: String,
    pub lines: Vec<ShipmentLine>,
    pub status: ShipmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// The task token of the warehouse's pending pick request, if one is waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick_token: Option<String>,
    pub updated_at: String,
}

pub async fn load_shipment(
    store: &dyn Store,
    order_id: &str,
    shipment_id: &str,
) -> Result<Versioned<ShipmentRecord>, ActivityError> {
    let item = store
        .get(&shipment_key(order_id, shipment_id))
        .await?
        .ok_or_else(|| {
            ActivityError::new(
                ErrorKind::ShipmentNotFound,
                format!("shipment_id: order '{order_id}' has no shipment '{shipment_id}'"),
            )
        })?;
    Ok(Versioned {
        value: from_item(&item)?,
        version: item.version,
    })
}

pub async fn load_shipments(
    store: &dyn Store,
    order_id: &str,
) -> Result<Vec<Versioned<ShipmentRecord>>, ActivityError> {
    store
        .query(&order_pk(order_id), SHIPMENT_SK_PREFIX)
        .await?
        .iter()
        .map(|i| {
            Ok(Versioned {
                value: from_item(i)?,
                version: i.version,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuRecord {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarehouseRecord {
    pub warehouse_id: String,
    pub name: String,
    pub country: String,
    pub lat: f64,
    pub lon: f64,
}

/// A SKU's stock at one warehouse. `available` is kept equal to `on_hand - reserved`
/// because DynamoDB conditions cannot subtract; `received` is every unit ever put in,
/// so `on_hand + shipped == received` can be audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockRecord {
    pub sku: String,
    pub warehouse_id: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub shipped: i64,
    pub received: i64,
}

/// Stock moves as signed deltas of the counters, guarded so none goes negative.
pub fn stock_move(sku: &str, warehouse_id: &str, deltas: &[(&str, i64)]) -> Write {
    Write::Add {
        key: stock_key(sku, warehouse_id),
        deltas: deltas.iter().map(|(f, d)| (f.to_string(), *d)).collect(),
        min_after: deltas.iter().map(|(f, _)| (f.to_string(), 0)).collect(),
    }
}
