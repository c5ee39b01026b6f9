//! `oms cost`: the monthly AWS bill of running the order saga, computed from the state
//! machine rather than guessed.
//!
//! Each path an order can take (the happy path, each business failure of a forward step
//! and its compensations, an order rejected at PlaceOrder) is simulated once: the saga
//! (`statemachines/order-saga.asl.json`, with the substitutions `oms up` fills) runs on
//! the in-memory runner, its tasks call the real activities, and the activities' store
//! is an in-memory SQLite behind [`MeteredStore`], which bills every call as the
//! DynamoDB store (`activities::store::dynamo`) would make it. From the run come the
//! state transitions (the history's StateEntered events, plus retries), the Lambda
//! invocations, DynamoDB's read and write request units and the size of the history that
//! logging level ALL ships to CloudWatch Logs. The paths are then mixed
//! (`--compensation-rate`, `--rejection-rate`) and priced with [`PRICES`].

use crate::cli::Output;
use activities::activity::{self, Ctx};
use activities::errors::ActivityError;
use activities::model::ShipmentRef;
use activities::store::sqlite::SqliteStore;
use activities::store::{Cond, Item, Key, Store, StoreError, Write};
use asl::history::HistoryEvent;
use asl::runner::{
    self, RunHost, RunOptions, SeededRandom, TaskHandler, TaskOutcome, VirtualClock,
};
use asl::{ExecutionInfo, Failure, TaskCall};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

// ---- Prices -------------------------------------------------------------------------

/// What AWS bills for, one meter per line of the bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    StateTransitions,
    LambdaRequests,
    LambdaGbSeconds,
    DynamoWriteUnits,
    DynamoReadUnits,
    LogsIngestedGb,
    XrayTraces,
    ApiRequests,
    KmsKeyMonths,
    KmsRequests,
}

/// A price: `usd` for every `per` units of `meter`, in us-east-1, without free tiers.
#[derive(Debug, Serialize)]
pub struct Price {
    pub meter: Meter,
    pub service: &'static str,
    pub usd: f64,
    pub per: f64,
    pub unit: &'static str,
    /// Where the figure was found, and when.
    pub source: &'static str,
}

/// Every price the bill uses: us-east-1, list prices, no free tier (see the free tiers
/// in [`ASSUMPTIONS`]). Looked up on 2026-11-26 in stored copies of the pages named
/// (the copies' own dates are not known); where AWS's own copy did not show the figure,
/// the source says which page did.
pub const PRICES: [Price; 10] = [
    Price {
        meter: Meter::StateTransitions,
        service: "Step Functions (Standard)",
        usd: 0.025,
        per: 1_000.0,
        unit: "state transitions",
        source: "checked 2026-11-26 at https://aws.amazon.com/step-functions/pricing/ \
                 (US East (N. Virginia) $0.0250 per 1,000; 4,000 a month free)",
    },
    Price {
        meter: Meter::LambdaRequests,
        service: "Lambda requests",
        usd: 0.20,
        per: 1_000_000.0,
        unit: "requests",
        source: "checked 2026-11-26 at https://docs.aws.amazon.com/whitepapers/latest/\
                 how-aws-pricing-works/lambda.html ($0.20 per 1M; 1M a month free)",
    },
    Price {
        meter: Meter::LambdaGbSeconds,
        service: "Lambda duration (x86)",
        usd: 0.000_016_666_7,
        per: 1.0,
        unit: "GB-second",
        source: "as published for us-east-1 x86, first 6 billion GB-s a month, per \
                 https://cloudchipr.com/blog/aws-lambda-pricing (checked 2026-11-26; AWS's \
                 whitepaper rounds it to $0.00001667; 400,000 GB-s a month free)",
    },
    Price {
        meter: Meter::DynamoWriteUnits,
        service: "DynamoDB on-demand writes",
        usd: 0.625,
        per: 1_000_000.0,
        unit: "write request units",
        source: "after the 50% on-demand cut of 2024-11-01, as published per \
                 https://airbyte.com/data-engineering-resources/dynamodb-pricing (2025-07-21; \
                 checked 2026-11-26); AWS's page https://aws.amazon.com/dynamodb/pricing/on-demand/ \
                 was not readable here. No free request units on demand",
    },
    Price {
        meter: Meter::DynamoReadUnits,
        service: "DynamoDB on-demand reads",
        usd: 0.125,
        per: 1_000_000.0,
        unit: "read request units",
        source: "as for writes: $0.125 per million RRU in us-east-1 per \
                 https://airbyte.com/data-engineering-resources/dynamodb-pricing (checked 2026-11-26)",
    },
    Price {
        meter: Meter::LogsIngestedGb,
        service: "CloudWatch Logs ingestion",
        usd: 0.50,
        per: 1.0,
        unit: "GB ingested (standard class)",
        source: "as published per https://coralogix.com/blog/is-cloudwatch-really-cost-efficient \
                 and https://www.factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards/ \
                 (checked 2026-11-26; AWS's https://aws.amazon.com/cloudwatch/pricing/ copy showed \
                 only the 5 GB free tier)",
    },
    Price {
        meter: Meter::XrayTraces,
        service: "X-Ray traces recorded",
        usd: 5.00,
        per: 1_000_000.0,
        unit: "traces recorded",
        source: "checked 2026-11-26 at https://aws.amazon.com/de/xray/pricing/ \
                 ($5 per million recorded; 100,000 a month free)",
    },
    Price {
        meter: Meter::ApiRequests,
        service: "API Gateway (REST)",
        usd: 3.50,
        per: 1_000_000.0,
        unit: "requests",
        source: "checked 2026-11-26 at https://docs.aws.amazon.com/whitepapers/latest/\
                 best-practices-api-gateway-private-apis-integration/cost-optimization.html \
                 (REST, first 333M requests $3.50 per million; 1M a month free for 12 months)",
    },
    Price {
        meter: Meter::KmsKeyMonths,
        service: "KMS customer managed key",
        usd: 1.00,
        per: 1.0,
        unit: "key-month",
        source: "checked 2026-11-26 at https://aws.amazon.com/kms/pricing/ ($1 a month per key)",
    },
    Price {
        meter: Meter::KmsRequests,
        service: "KMS requests",
        usd: 0.03,
        per: 10_000.0,
        unit: "requests",
        source: "as published per https://www.wring.co/blog/aws-kms-pricing-guide (checked \
                 2026-11-26; 20,000 a month free per https://aws.amazon.com/kms/pricing/)",
    },
];

pub fn price(meter: Meter) -> &'static Price {
    PRICES
        .iter()
        .find(|p| p.meter == meter)
        .expect("every meter has a price")
}

// ---- Assumptions --------------------------------------------------------------------

pub const REGION: &str = "us-east-1";
/// An account id for the ARNs the simulation builds (their length is what matters: they
/// are in the payloads, the history and the order record).
pub const ACCOUNT: &str = "123456789012";
pub const DAYS_PER_MONTH: f64 = 30.0;
/// The activities' Lambda memory, as the CDK stack sets it (infra-cdk/lib/oms-stack.ts:
/// x86_64, 256 MB, active tracing; the stack is still being written).
pub const LAMBDA_MEMORY_MB: f64 = 256.0;
pub const DEFAULT_LAMBDA_MS: u64 = 50;
/// What every Lambda invocation writes to CloudWatch Logs even when the function logs
/// nothing (the activities do not): START (~75 B), END (~55 B) and REPORT with its XRAY
/// line (~220 B) platform lines.
pub const LAMBDA_LOG_BYTES_PER_INVOCATION: u64 = 350;
/// The CDK stack's one customer managed key (table, log groups, alarm topic).
pub const KMS_KEYS: f64 = 1.0;
/// DynamoDB asks KMS for the table key again at most about every 5 minutes per caller
/// principal: one role for each of the 10 activity functions and the warehouse-callback
/// handler, 12 times an hour, 30 days. An upper bound that does not grow with orders.
pub const KMS_REQUESTS_PER_MONTH: f64 = 11.0 * 12.0 * 24.0 * DAYS_PER_MONTH;
const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;
/// DynamoDB stores 100 bytes of index overhead with every item.
const DYNAMO_ITEM_OVERHEAD: i64 = 100;

pub const ASSUMPTIONS: &[&str] = &[
    "Prices are us-east-1 list prices without any free tier (Step Functions 4,000 transitions, \
     Lambda 1M requests and 400,000 GB-s, CloudWatch Logs 5 GB, X-Ray 100,000 traces, KMS 20,000 \
     requests a month; API Gateway 1M requests a month in an account's first 12 months).",
    "A month is 30 days. Tiered prices stay in their first tier at these volumes.",
    "State transitions are the StateEntered events of the simulated history (every state \
     entered, including inside Map iterations) plus one per retry; no transient error occurs.",
    "Lambda: x86, 256 MB, each invocation billed the --lambda-ms duration (an assumption, not \
     a measurement; cold starts not counted). Invocations: every task of the saga (PickShipment \
     included), and one handler per warehouse answer.",
    "The warehouse answers each pick at once through POST /shipments/{id}/picked: one API \
     Gateway request and one Lambda invocation running the real confirm_pick (its DynamoDB \
     units are counted), whose SendTaskSuccess/SendTaskFailure costs no transition.",
    "POST /orders: one API Gateway request starting the execution (a Step Functions service \
     integration, no Lambda in front, as the CDK stack builds it); the order is placed by the \
     saga's PlaceOrder. The stack has no warehouse-callback route yet: the answer's request \
     and handler above are this estimate's model of one.",
    "DynamoDB: every store call is billed as activities/src/store/dynamo.rs makes it: GetItem \
     and Query strongly consistent (1 RRU per started 4 KB, 1 RRU for an item not found), \
     Scan reads the whole table, each batch one TransactWriteItems at 2 WRU per item per \
     started KB of the larger of the item before and after (ConditionCheck items included). \
     Item sizes follow DynamoDB's rules for the attributes dynamo.rs writes. The built-in \
     ledger payment gateway uses the same table and is counted; fault injection is off, as \
     the stack deploys it, so fault plans are not read.",
    "CloudWatch Logs: logging level ALL with execution data; each history event is one log \
     record of about the size of its JSON (an approximation of the shipped format, billed as \
     vended logs, $0.50/GB in their first tier), plus 350 bytes of Lambda platform lines per \
     invocation. Not counted: API Gateway's access and INFO execution logs, and log storage \
     ($0.03 per GB-month, 3 months' retention in the stack).",
    "X-Ray: active tracing, one trace recorded per API request (the execution joins the trace \
     of POST /orders); 100% sampled, an upper bound above ~1 request/s where the default rule \
     samples 5%.",
    "KMS: the stack's one customer managed key ($1/month; its yearly rotation adds $1/month per \
     rotation per https://aws.amazon.com/kms/pricing/, capped after the second since May 2024, \
     not confirmed here; not counted) and at most 11 callers x 12 requests an hour for the \
     table (DynamoDB caches the table key for 5 minutes per principal); CloudWatch Logs' \
     requests for the encrypted log groups are cached too and not counted. With AWS owned \
     keys both lines would be $0.",
    "Task tokens in the simulation are 36-character UUIDs; AWS's are longer (up to 2,048), \
     which can push a shipment item that stores one over 1 KB while the pick waits.",
];

// ---- DynamoDB item sizes and request units ------------------------------------------

/// The size DynamoDB bills for an attribute value (its name counted by the caller).
fn value_size(v: &Value) -> u64 {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::String(s) => s.len() as u64,
        Value::Number(n) => number_size(&n.to_string()),
        Value::Array(a) => 3 + a.iter().map(|e| 1 + value_size(e)).sum::<u64>(),
        Value::Object(o) => {
            3 + o
                .iter()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
    }
}

/// A number: one byte per two significant digits, plus one.
fn number_size(text: &str) -> u64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) as u64 + 1
}

/// The size of an item as `DynamoStore` writes it: `pk`, `sk`, `version` and the
/// document's attributes.
pub fn item_size(key: &Key, version: u64, doc: &Map<String, Value>) -> u64 {
    let attr = |name: &str, v: &Value| name.len() as u64 + value_size(v);
    attr("pk", &json!(key.pk))
        + attr("sk", &json!(key.sk))
        + attr("version", &json!(version))
        + doc.iter().map(|(k, v)| attr(k, v)).sum::<u64>()
}

fn stored_size(item: &Item) -> u64 {
    item_size(&item.key, item.version, &item.doc)
}

/// Strongly consistent read units for `bytes` read in one request (at least one).
fn read_units(bytes: u64) -> u64 {
    bytes.div_ceil(4096).max(1)
}

/// Transactional write units for one item of `bytes`.
fn transact_write_units(bytes: u64) -> u64 {
    2 * bytes.div_ceil(1024).max(1)
}

/// DynamoDB requests and the units they consume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub get_item: u64,
    pub query: u64,
    pub scan: u64,
    pub transact_write_items: u64,
    pub items_written: u64,
    pub transactions_cancelled: u64,
    pub rru: u64,
    pub wru: u64,
}

impl Units {
    fn add(&mut self, o: &Units) {
        self.get_item += o.get_item;
        self.query += o.query;
        self.scan += o.scan;
        self.transact_write_items += o.transact_write_items;
        self.items_written += o.items_written;
        self.transactions_cancelled += o.transactions_cancelled;
        self.rru += o.rru;
        self.wru += o.wru;
    }
}

/// What the store was asked, by caller (the activity running) and by partition.
#[derive(Debug, Default)]
struct Metering {
    caller: String,
    by_caller: BTreeMap<String, Units>,
    by_partition: BTreeMap<&'static str, Units>,
}

fn partition_class(pk: &str) -> &'static str {
    match pk {
        "CATALOG" => "catalog",
        "GATEWAY" => "payment gateway ledger",
        "FAULTS" => "fault plans",
        _ if pk.starts_with("ORDER#") => "order",
        _ if pk.starts_with("STOCK#") => "stock",
        _ if pk.starts_with("INDEX#") => "search index",
        _ => "other",
    }
}

/// A store that meters every call as DynamoDB would bill it, and passes it on.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metering: Arc<Mutex<Metering>>,
}

impl MeteredStore {
    fn charge(&self, partition: &'static str, f: impl Fn(&mut Units)) {
        let mut m = self.metering.lock().expect("metering lock");
        let caller = m.caller.clone();
        f(m.by_caller.entry(caller).or_default());
        f(m.by_partition.entry(partition).or_default());
    }

    /// The size of the item at `key` now, read without being billed.
    async fn size_now(&self, key: &Key) -> Result<u64, StoreError> {
        Ok(self.inner.get(key).await?.map_or(0, |i| stored_size(&i)))
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let item = self.inner.get(key).await?;
        let rru = read_units(item.as_ref().map_or(0, stored_size));
        self.charge(partition_class(&key.pk), |u| {
            u.get_item += 1;
            u.rru += rru;
        });
        Ok(item)
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let items = self.inner.query(pk, sk_prefix).await?;
        // One request while the result is under 1 MB; a Query sums the sizes it returns.
        let rru = read_units(items.iter().map(stored_size).sum());
        self.charge(partition_class(pk), |u| {
            u.query += 1;
            u.rru += rru;
        });
        Ok(items)
    }

    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        // A Query with Limit: billed for the items it returns.
        let items = self.inner.query_back(pk, before, limit).await?;
        let rru = read_units(items.iter().map(stored_size).sum());
        self.charge(partition_class(pk), |u| {
            u.query += 1;
            u.rru += rru;
        });
        Ok(items)
    }

    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        // A Scan reads every item of the table: the filter applies after the read.
        let all: u64 = self.inner.scan("").await?.iter().map(stored_size).sum();
        let rru = read_units(all);
        self.charge("scan (whole table)", |u| {
            u.scan += 1;
            u.rru += rru;
        });
        self.inner.scan(pk_prefix).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut before = Vec::with_capacity(writes.len());
        for w in &writes {
            before.push(self.size_now(w.key()).await?);
        }
        let result = self.inner.transact(writes.clone()).await;
        let applied = match &result {
            Ok(()) => true,
            // TransactionCanceledException: billed as if applied (a conservative guess).
            Err(StoreError::ConditionFailed { .. }) => false,
            // Refused before DynamoDB would have done anything.
            Err(_) => return result,
        };
        let mut per_item = Vec::with_capacity(writes.len());
        for (w, b) in writes.iter().zip(&before) {
            let after = match w {
                Write::Put { key, doc, cond } if !applied => {
                    let version = match cond {
                        Cond::Version(v) => v + 1,
                        _ => 1,
                    };
                    item_size(key, version, doc)
                }
                Write::Put { key, .. } | Write::Add { key, .. } if applied => {
                    self.size_now(key).await?
                }
                _ => 0,
            };
            per_item.push((partition_class(&w.key().pk), (*b).max(after)));
        }
        {
            let mut m = self.metering.lock().expect("metering lock");
            let caller = m.caller.clone();
            let total: u64 = per_item.iter().map(|(_, s)| transact_write_units(*s)).sum();
            let u = m.by_caller.entry(caller).or_default();
            u.transact_write_items += 1;
            u.items_written += writes.len() as u64;
            u.wru += total;
            if !applied {
                u.transactions_cancelled += 1;
            }
            for (class, size) in &per_item {
                let p = m.by_partition.entry(class).or_default();
                p.items_written += 1;
                p.wru += transact_write_units(*size);
            }
        }
        result
    }

    fn backend(&self) -> &'static str {
        "dynamodb (metered)"
    }
}

// ---- The paths ----------------------------------------------------------------------

/// The order id of every simulated order: the shape `POST /orders` gives one.
pub const ORDER_ID: &str = "ord-5f2c9a1e7b3d4c60";
/// A SKU the demo catalog does not sell.
const UNKNOWN_SKU: &str = "TSHIRT-BLK-XXL";
/// Who answers the pick requests, in the DynamoDB breakdown.
const WAREHOUSE_ANSWER: &str = "warehouse answer (confirm_pick)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    Happy,
    Rejected,
    ReserveFails,
    ChargeFails,
    PickFails,
    ShipFails,
}

impl Path {
    pub const ALL: [Path; 6] = [
        Path::Happy,
        Path::Rejected,
        Path::ReserveFails,
        Path::ChargeFails,
        Path::PickFails,
        Path::ShipFails,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Path::Happy => "happy",
            Path::Rejected => "rejected at PlaceOrder",
            Path::ReserveFails => "reserve fails",
            Path::ChargeFails => "charge fails",
            Path::PickFails => "pick fails",
            Path::ShipFails => "ship fails",
        }
    }

    /// How the simulation makes the path happen.
    pub fn trigger(self) -> &'static str {
        match self {
            Path::Happy => "the demo order",
            Path::Rejected => "a SKU the catalog does not sell (Order.Invalid)",
            Path::ReserveFails => "one unit more than all warehouses hold (Inventory.OutOfStock)",
            Path::ChargeFails => "payment token tok_declined (Payment.Declined)",
            Path::PickFails => "the warehouse answers the first pick as damaged (Pick.ItemDamaged)",
            Path::ShipFails => {
                "postal code 00000, which the carrier refuses (Ship.AddressRejected)"
            }
        }
    }

    /// The error the execution ends with.
    pub fn error(self) -> Option<&'static str> {
        match self {
            Path::Happy => None,
            Path::Rejected => Some("Order.Invalid"),
            Path::ReserveFails => Some("Inventory.OutOfStock"),
            Path::ChargeFails => Some("Payment.Declined"),
            Path::PickFails => Some("Pick.ItemDamaged"),
            Path::ShipFails => Some("Ship.AddressRejected"),
        }
    }

    /// The state whose Catch takes the failure.
    pub fn caught_at(self) -> Option<&'static str> {
        match self {
            Path::Happy => None,
            Path::Rejected => Some("PlaceOrder"),
            Path::ReserveFails => Some("ReserveInventory"),
            Path::ChargeFails => Some("ChargePayment"),
            Path::PickFails | Path::ShipFails => Some("FulfilShipments"),
        }
    }

    fn compensates(self) -> bool {
        !matches!(self, Path::Happy | Path::Rejected)
    }
}

/// The demo order of `oms up` (one line), made to take `path` with `shipments`
/// shipments: for more than one, its line asks for one unit more than the
/// `shipments - 1` best-stocked warehouses hold, so the planner must split it.
pub fn order_for(path: Path, shipments: usize) -> Result<Value, String> {
    let mut order: Value = serde_json::from_str(crate::orders::DEMO_ORDER)
        .map_err(|e| format!("the demo order is not JSON: {e}"))?;
    order["order_id"] = json!(ORDER_ID);
    let sku = order["lines"][0]["sku"]
        .as_str()
        .ok_or("the demo order has no line")?
        .to_string();
    let mut stock: Vec<i64> = activities::seed::demo()
        .stock
        .iter()
        .filter(|(s, _, _)| *s == sku)
        .map(|(_, _, n)| *n)
        .collect();
    stock.sort_unstable_by(|a, b| b.cmp(a));
    if shipments == 0 || shipments > stock.len() {
        return Err(format!(
            "--shipments: 1 to {} (the demo order's {sku} is stocked in {} warehouses)",
            stock.len(),
            stock.len()
        ));
    }
    if shipments > 1 {
        order["lines"][0]["quantity"] = json!(stock[..shipments - 1].iter().sum::<i64>() + 1);
    }
    match path {
        Path::Happy | Path::PickFails => {}
        Path::Rejected => order["lines"][0]["sku"] = json!(UNKNOWN_SKU),
        Path::ReserveFails => order["lines"][0]["quantity"] = json!(stock.iter().sum::<i64>() + 1),
        Path::ChargeFails => order["payment"]["token"] = json!("tok_declined"),
        Path::ShipFails => {
            order["ship_to"]["postal_code"] = json!(activity::UNDELIVERABLE_POSTAL_CODE)
        }
    }
    Ok(order)
}

/// Test hooks: fail the first call of an activity with a transient error, to see a retry.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    pub transient_first_call_of: Option<&'static str>,
}

/// The saga's tasks, run by the real activities; pick requests answered at once.
struct Simulation<'a> {
    rt: &'a tokio::runtime::Runtime,
    ctx: Ctx,
    metering: Arc<Mutex<Metering>>,
    damage_first_pick: bool,
    transient: Option<&'static str>,
    calls: Vec<&'static str>,
    callbacks: u64,
}

impl Simulation<'_> {
    fn caller(&self, name: &str) {
        self.metering.lock().expect("metering lock").caller = name.to_string();
    }
}

/// An activity's error as Lambda reports it to Step Functions (as `oms up` does).
fn lambda_failure(e: &ActivityError) -> Failure {
    Failure::new(
        e.name(),
        json!({"errorType": e.name(), "errorMessage": e.message}).to_string(),
    )
}

impl TaskHandler for Simulation<'_> {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome {
        let function = call.function.as_deref().unwrap_or(&call.resource);
        let name = function.rsplit(':').next().unwrap_or(function);
        let Some(def) = name
            .strip_prefix(crate::orders::FUNCTION_PREFIX)
            .and_then(activity::by_function)
        else {
            return TaskOutcome::err(Failure::new(
                "Lambda.ResourceNotFoundException",
                format!("Function not found: {function}"),
            ));
        };
        self.calls.push(def.name);
        self.caller(def.name);
        if self.transient == Some(def.name) {
            self.transient = None;
            return TaskOutcome::err(Failure::new(
                "Activity.Unavailable",
                "transient failure injected by the cost simulation",
            ));
        }
        let out = match self
            .rt
            .block_on(activity::invoke(&self.ctx, def.key, &call.payload))
        {
            Ok(v) => v,
            Err(e) => return TaskOutcome::err(lambda_failure(&e)),
        };
        if call.task_token.is_none() {
            return TaskOutcome::ok(out);
        }
        // `.waitForTaskToken` (PickShipment): the warehouse answers at once, as the
        // handler of POST /shipments/{id}/picked does: it confirms the pick and sends
        // SendTaskSuccess (the shipment) or SendTaskFailure (the error).
        self.callbacks += 1;
        self.caller(WAREHOUSE_ANSWER);
        let target = ShipmentRef::of_payload(&call.payload);
        let damaged = (self.damage_first_pick && target.shipment_id.ends_with("-1"))
            .then_some("the item was damaged when picked");
        match self
            .rt
            .block_on(activity::confirm_pick(&self.ctx, &target, damaged))
        {
            Ok((_, Ok(state))) => TaskOutcome::ok(serde_json::to_value(state).unwrap_or_default()),
            Ok((_, Err(e))) | Err(e) => TaskOutcome::err(Failure::new(e.name(), e.message)),
        }
    }
}

/// What one order on one path cost, in the units AWS bills.
#[derive(Debug, Clone, Serialize)]
pub struct PathRun {
    pub path: Path,
    pub trigger: &'static str,
    pub status: String,
    pub error: Option<String>,
    /// The state whose Catch took the failure.
    pub caught_at: Option<&'static str>,
    /// StateEntered events plus retries: what Standard workflows bill.
    pub transitions: u64,
    pub state_entered: u64,
    pub retries: u64,
    /// The states entered, in order (inside Map iterations too).
    pub states: Vec<String>,
    /// Lambda invocations: the saga's tasks and the warehouse-answer handlers.
    pub lambda_invocations: u64,
    pub task_calls: BTreeMap<String, u64>,
    pub warehouse_answers: u64,
    pub api_requests: u64,
    pub dynamodb: Units,
    pub dynamodb_by_caller: BTreeMap<String, Units>,
    pub dynamodb_by_partition: BTreeMap<String, Units>,
    /// The history as CloudWatch Logs log records (level ALL, execution data included).
    pub history_log_bytes: u64,
    pub lambda_log_bytes: u64,
    /// What the order leaves in the table (items, with DynamoDB's 100-byte overhead).
    pub stored_bytes: i64,
    /// The saga's Lambda functions in the order they were invoked.
    pub calls: Vec<&'static str>,
}

impl PathRun {
    pub fn gb_seconds(&self, lambda_ms: u64) -> f64 {
        self.lambda_invocations as f64 * lambda_ms as f64 / 1000.0 * LAMBDA_MEMORY_MB / 1024.0
    }
    pub fn log_bytes(&self) -> u64 {
        self.history_log_bytes + self.lambda_log_bytes
    }
    pub fn calls_of(&self, name: &str) -> u64 {
        self.task_calls.get(name).copied().unwrap_or(0)
    }
}

/// The saga as `oms up` registers it, with functions named as this account's would be.
pub fn saga_definition() -> Result<String, String> {
    crate::orders::local_definition(REGION, ACCOUNT)
}

async fn table_bytes(store: &dyn Store) -> Result<i64, String> {
    Ok(store
        .scan("")
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|i| stored_size(i) as i64 + DYNAMO_ITEM_OVERHEAD)
        .sum())
}

/// The counts one history gives: transitions, StateEntered events, retries, the states
/// entered, and the bytes of its log records.
fn read_history(history: &[HistoryEvent], execution_arn: &str) -> (u64, u64, Vec<String>, u64) {
    let mut entered = 0;
    let mut task_entered: u64 = 0;
    let mut scheduled: u64 = 0;
    let mut states = Vec::new();
    let mut bytes = 0;
    for e in history {
        let kind: &str = &e.kind;
        if kind.ends_with("StateEntered") {
            entered += 1;
            states.push(e.details["name"].as_str().unwrap_or_default().to_string());
        }
        if kind == "TaskStateEntered" {
            task_entered += 1;
        }
        if matches!(
            kind,
            "TaskScheduled" | "LambdaFunctionScheduled" | "ActivityScheduled"
        ) {
            scheduled += 1;
        }
        // The record a log group receives for the event (level ALL, execution data).
        let record = json!({
            "id": e.id.to_string(),
            "type": kind,
            "details": e.details,
            "previous_event_id": e.previous_event_id.to_string(),
            "event_timestamp": e.timestamp.timestamp_millis().to_string(),
            "execution_arn": execution_arn,
            "redrive_count": "0",
        });
        bytes += record.to_string().len() as u64 + 1;
    }
    // A retry schedules the task again without entering the state again.
    let retries: u64 = scheduled.saturating_sub(task_entered);
    (entered, retries, states, bytes)
}

/// Runs one order down `path` on `definition` and meters it.
pub fn simulate(
    definition: &str,
    path: Path,
    shipments: usize,
    opts: &SimOptions,
) -> Result<PathRun, String> {
    let machine = crate::exec::load_machine(definition)
        .map_err(|v| format!("the saga's definition is invalid: {v}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let inner: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().map_err(|e| e.to_string())?);
    rt.block_on(activities::seed::seed(&*inner, &activities::seed::demo()))
        .map_err(|e| format!("cannot seed the demo catalog: {e}"))?;
    let stored_before = rt.block_on(table_bytes(&*inner))?;
    let metering = Arc::new(Mutex::new(Metering::default()));
    let store = Arc::new(MeteredStore {
        inner: inner.clone(),
        metering: metering.clone(),
    });
    let input = order_for(path, shipments)?;
    let start: DateTime<Utc> = "2026-11-26T12:00:00Z".parse().expect("a fixed time");
    let info = ExecutionInfo::new(
        &format!(
            "arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{}",
            crate::orders::MACHINE_NAME
        ),
        ORDER_ID,
        &format!("arn:aws:iam::{ACCOUNT}:role/oms-order-saga"),
        false,
        start,
    );
    let execution_arn = info.execution_arn.clone();
    let mut sim = Simulation {
        rt: &rt,
        // As deployed: fault injection off, so no fault-plan reads.
        ctx: Ctx {
            faults: activities::faults::Faults::disabled(store.clone()),
            ..Ctx::new(store)
        },
        metering: metering.clone(),
        damage_first_pick: path == Path::PickFails,
        transient: opts.transient_first_call_of,
        calls: Vec::new(),
        callbacks: 0,
    };
    let mut host = RunHost {
        clock: VirtualClock(start),
        random: SeededRandom::new(11),
    };
    let outcome = runner::run(
        Arc::new(machine),
        input,
        &mut sim,
        &mut host,
        RunOptions {
            info: Some(info),
            record_history: true,
        },
    );
    let stored_after = rt.block_on(table_bytes(&*inner))?;
    let (state_entered, retries, states, history_log_bytes) =
        read_history(&outcome.history, &execution_arn);
    let mut task_calls: BTreeMap<String, u64> = BTreeMap::new();
    for c in &sim.calls {
        *task_calls.entry(c.to_string()).or_default() += 1;
    }
    let lambda_invocations = sim.calls.len() as u64 + sim.callbacks;
    let m = metering.lock().expect("metering lock");
    let mut total = Units::default();
    for u in m.by_caller.values() {
        total.add(u);
    }
    Ok(PathRun {
        path,
        trigger: path.trigger(),
        status: outcome.status.as_str().to_string(),
        error: outcome.error,
        caught_at: path.caught_at(),
        transitions: state_entered + retries,
        state_entered,
        retries,
        states,
        lambda_invocations,
        task_calls,
        warehouse_answers: sim.callbacks,
        api_requests: 1 + sim.callbacks,
        dynamodb: total,
        dynamodb_by_caller: m.by_caller.clone(),
        dynamodb_by_partition: m
            .by_partition
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        history_log_bytes,
        lambda_log_bytes: lambda_invocations * LAMBDA_LOG_BYTES_PER_INVOCATION,
        stored_bytes: stored_after - stored_before,
        calls: sim.calls.clone(),
    })
}

/// Every path, checked to end as it should (a path that did not fail where it was
/// meant to would price the wrong thing).
pub fn simulate_all(definition: &str, shipments: usize) -> Result<Vec<PathRun>, String> {
    let mut runs = Vec::new();
    for path in Path::ALL {
        let run = simulate(definition, path, shipments, &SimOptions::default())?;
        let expected = if path == Path::Happy {
            "SUCCEEDED"
        } else {
            "FAILED"
        };
        if run.status != expected || run.error.as_deref() != path.error() {
            return Err(format!(
                "the {} path ended {} {} instead of {expected} {}",
                path.label(),
                run.status,
                run.error.as_deref().unwrap_or(""),
                path.error().unwrap_or("")
            ));
        }
        if path == Path::Happy && run.calls_of("ShipShipment") != shipments as u64 {
            return Err(format!(
                "the happy path made {} shipments, not {shipments}",
                run.calls_of("ShipShipment")
            ));
        }
        runs.push(run);
    }
    Ok(runs)
}

// ---- The bill -----------------------------------------------------------------------

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
fn mean(runs: &[PathRun], shares: &[(Path, f64)], f: impl Fn(&PathRun) -> f64) -> f64 {
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

// ---- The command --------------------------------------------------------------------

pub struct CostArgs {
    pub orders_per_day: u64,
    pub compensation_rate: f64,
    pub rejection_rate: f64,
    pub lambda_ms: u64,
    pub shipments: usize,
    pub output: Output,
}

pub fn cost(args: CostArgs) -> Result<ExitCode, String> {
    let shares = mix(args.compensation_rate, args.rejection_rate)?;
    let definition = saga_definition()?;
    let runs = simulate_all(&definition, args.shipments)?;
    let bill = bill(&runs, &shares, args.orders_per_day, args.lambda_ms);
    match args.output {
        Output::Json => println!("{}", report_json(&args, &shares, &runs, &bill)),
        Output::Table => print!("{}", report_table(&args, &shares, &runs, &bill)),
    }
    Ok(ExitCode::SUCCESS)
}

fn report_json(args: &CostArgs, shares: &[(Path, f64)], runs: &[PathRun], bill: &Bill) -> Value {
    let paths: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["label"] = json!(r.path.label());
            v["share"] = json!(shares.iter().find(|(p, _)| *p == r.path).map(|s| s.1));
            v["gb_seconds"] = json!(r.gb_seconds(args.lambda_ms));
            v
        })
        .collect();
    json!({
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

/// "$0.025 per 1,000 state transitions", "$0.50 per GB ingested".
fn price_text(p: &Price) -> String {
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

fn report_table(args: &CostArgs, shares: &[(Path, f64)], runs: &[PathRun], bill: &Bill) -> String {
    use std::fmt::Write as _;
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
        "\nPer order, by path (the saga simulated with the real activities; log KB approximate):"
    );
    let _ = writeln!(
        o,
        "{:<24} {:>7}  {:<31} {:>11} {:>6} {:>6} {:>5} {:>5} {:>4} {:>7}",
        "path", "share", "ends", "transitions", "Lambda", "GB-s", "RRU", "WRU", "API", "log KB"
    );
    let row = |o: &mut String, label: &str, share: f64, ends: &str, v: [f64; 7]| {
        let _ = writeln!(
            o,
            "{:<24} {:>6.2}%  {:<31} {:>11} {:>6} {:>6.3} {:>5} {:>5} {:>4} {:>7.1}",
            label,
            share * 100.0,
            ends,
            fmt_count(v[0]),
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
        ]
    };
    for r in runs {
        let share = shares
            .iter()
            .find(|(p, _)| *p == r.path)
            .map_or(0.0, |s| s.1);
        let ends = format!("{} {}", r.status, r.error.as_deref().unwrap_or(""));
        row(&mut o, r.path.label(), share, ends.trim(), values(r));
    }
    let mut weighted = [0.0; 7];
    for (i, w) in weighted.iter_mut().enumerate() {
        *w = mean(runs, shares, |r| values(r)[i]);
    }
    row(&mut o, "mean order", 1.0, "", weighted);
    let _ = writeln!(
        o,
        "\nMonthly bill ({} orders; list prices, no free tier):",
        quantity(bill.orders_per_month)
    );
    let _ = writeln!(
        o,
        "{:<28} {:>16}  {:<52} {:>11}",
        "service", "quantity", "price", "USD/month"
    );
    for l in &bill.lines {
        let _ = writeln!(
            o,
            "{:<28} {:>16}  {:<52} {:>11}",
            l.service,
            quantity(l.quantity),
            l.price,
            money(l.usd)
        );
    }
    let _ = writeln!(
        o,
        "{:<28} {:>16}  {:<52} {:>11}",
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
    o
}

/// A per-order count, shown whole when it is (a weighted mean may not be).
fn fmt_count(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: Path, shipments: usize) -> PathRun {
        simulate(
            &saga_definition().unwrap(),
            path,
            shipments,
            &SimOptions::default(),
        )
        .unwrap()
    }

    fn definition() -> Value {
        serde_json::from_str(&saga_definition().unwrap()).unwrap()
    }

    /// The states a Catch of `state` leads through, by the definition: its target and
    /// every `Next` after it, with the states of any Map's iterations.
    fn compensation_chain(def: &Value, state: &str) -> Vec<String> {
        fn walk(states: &Value, start: &str, out: &mut Vec<String>) {
            let mut at = Some(start.to_string());
            while let Some(name) = at {
                let s = &states[&name];
                out.push(name.clone());
                if let Some(inner) = s.get("ItemProcessor") {
                    walk(&inner["States"], inner["StartAt"].as_str().unwrap(), out);
                }
                at = s["Next"].as_str().map(str::to_string);
            }
        }
        let states = &def["States"];
        let target = states[state]["Catch"][0]["Next"].as_str().unwrap();
        let mut out = Vec::new();
        walk(states, target, &mut out);
        out
    }

    fn is_subsequence(needle: &[String], hay: &[String]) -> bool {
        let mut it = hay.iter();
        needle.iter().all(|n| it.any(|h| h == n))
    }

    #[test]
    fn cost_every_path_ends_with_its_error() {
        let runs = simulate_all(&saga_definition().unwrap(), 1).unwrap();
        assert_eq!(runs.len(), Path::ALL.len());
    }

    #[test]
    fn cost_compensation_paths_visit_the_states_the_saga_defines_for_the_failed_step() {
        let def = definition();
        for path in Path::ALL.into_iter().filter(|p| *p != Path::Happy) {
            let r = run(path, 2);
            let caught_at = path.caught_at().unwrap();
            let chain = compensation_chain(&def, caught_at);
            assert!(
                is_subsequence(&chain, &r.states),
                "{}: expected {chain:?} in {:?}",
                path.label(),
                r.states
            );
            // Every forward step that ran (or failed) has its compensation called, and
            // the compensations of steps that never ran are not called, except inside
            // the shipments' Map, which compensates every shipment.
            let forward: Vec<&str> = r
                .calls
                .iter()
                .filter_map(|c| activity::by_name(c))
                .filter(|d| d.compensates.is_none())
                .map(|d| d.key)
                .collect();
            for def in activities::ACTIVITIES {
                let Some(undoes) = def.compensates else {
                    continue;
                };
                let called = r.calls_of(def.name) > 0;
                if forward.contains(&undoes) {
                    assert!(called, "{}: {} not called", path.label(), def.name);
                } else if !matches!(path, Path::PickFails | Path::ShipFails) {
                    assert!(!called, "{}: {} called", path.label(), def.name);
                }
            }
            if matches!(path, Path::PickFails | Path::ShipFails) {
                assert_eq!(r.calls_of("CancelShipment"), 2, "{}", path.label());
                assert_eq!(r.calls_of("RestockShipment"), 2, "{}", path.label());
            }
        }
    }

    #[test]
    fn cost_happy_path_calls_each_forward_activity_once_per_shipment_and_no_compensation() {
        for shipments in 1..=2 {
            let r = run(Path::Happy, shipments);
            let n = shipments as u64;
            assert_eq!(r.calls_of("PlaceOrder"), 1);
            assert_eq!(r.calls_of("ReserveInventory"), 1);
            assert_eq!(r.calls_of("ChargePayment"), 1);
            assert_eq!(r.calls_of("PickShipment"), n);
            assert_eq!(r.calls_of("ShipShipment"), n);
            assert_eq!(r.warehouse_answers, n);
            for def in activities::ACTIVITIES
                .iter()
                .filter(|d| d.compensates.is_some())
            {
                assert_eq!(r.calls_of(def.name), 0, "{} called", def.name);
            }
            assert_eq!(
                r.lambda_invocations,
                r.calls.len() as u64 + n,
                "one invocation per task and per warehouse answer"
            );
        }
    }

    #[test]
    fn cost_transitions_are_the_state_entered_events() {
        let r = run(Path::Happy, 1);
        assert_eq!(r.retries, 0);
        assert_eq!(r.transitions, r.state_entered);
        assert_eq!(r.transitions, r.states.len() as u64);
        // Each more shipment runs the Map's iteration once more.
        let def = definition();
        let per_shipment = def["States"]["FulfilShipments"]["ItemProcessor"]["States"]
            .as_object()
            .unwrap()
            .len() as u64;
        assert_eq!(
            run(Path::Happy, 2).transitions,
            r.transitions + per_shipment
        );
    }

    #[test]
    fn cost_a_retry_is_one_more_transition_and_one_more_invocation() {
        let def = saga_definition().unwrap();
        let base = run(Path::Happy, 1);
        let opts = SimOptions {
            transient_first_call_of: Some("ChargePayment"),
        };
        let r = simulate(&def, Path::Happy, 1, &opts).unwrap();
        assert_eq!(r.status, "SUCCEEDED");
        assert_eq!(r.retries, 1);
        assert_eq!(r.state_entered, base.state_entered);
        assert_eq!(r.transitions, base.transitions + 1);
        assert_eq!(r.lambda_invocations, base.lambda_invocations + 1);
    }

    #[test]
    fn cost_a_pass_state_adds_one_transition_per_order() {
        let mut def = definition();
        let states = def["States"].as_object_mut().unwrap();
        let after = states["ApplyDefaults"]["Next"].clone();
        states.insert("Audit".into(), json!({"Type": "Pass", "Next": after}));
        states["ApplyDefaults"]["Next"] = json!("Audit");
        let text = def.to_string();
        for path in [Path::Happy, Path::ChargeFails, Path::PickFails] {
            let before = run(path, 1);
            let after = simulate(&text, path, 1, &SimOptions::default()).unwrap();
            assert_eq!(
                after.transitions,
                before.transitions + 1,
                "{}",
                path.label()
            );
            assert_eq!(after.lambda_invocations, before.lambda_invocations);
            assert_eq!(after.dynamodb.wru, before.dynamodb.wru);
        }
    }

    #[test]
    fn cost_every_activity_that_writes_consumes_write_units() {
        for path in Path::ALL {
            let r = run(path, 1);
            for name in r.task_calls.keys() {
                let u = r.dynamodb_by_caller.get(name).copied().unwrap_or_default();
                assert!(u.rru > 0, "{}: {name} read nothing", path.label());
                if path == Path::Rejected {
                    // An invalid order is refused before anything is written.
                    assert_eq!(u.wru, 0, "{name}");
                } else {
                    assert!(u.wru > 0, "{}: {name} wrote nothing", path.label());
                    assert!(u.items_written > 0);
                }
            }
            assert_eq!(r.dynamodb.transactions_cancelled, 0, "{}", path.label());
            assert_eq!(
                r.dynamodb.scan,
                0,
                "{}: a Scan on the hot path",
                path.label()
            );
        }
    }

    #[test]
    fn cost_monthly_cost_is_linear_in_orders_per_day() {
        let runs = simulate_all(&saga_definition().unwrap(), 1).unwrap();
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

    #[test]
    fn cost_item_sizes_follow_dynamodb_rules() {
        // Strings: name + UTF-8 bytes; numbers: name + 1 byte per 2 significant digits + 1.
        assert_eq!(value_size(&json!("Ada")), 3);
        assert_eq!(value_size(&json!("é")), 2);
        assert_eq!(number_size("1999"), 3);
        assert_eq!(number_size("100"), 2);
        assert_eq!(number_size("-74.17"), 3);
        assert_eq!(value_size(&json!(true)), 1);
        // Maps and lists: 3 bytes, and 1 byte per element.
        assert_eq!(value_size(&json!({})), 3);
        assert_eq!(value_size(&json!({"a": "xy"})), 3 + 1 + 1 + 2);
        assert_eq!(value_size(&json!(["x", 1])), 3 + (1 + 1) + (1 + 2));
        let key = Key::new("ORDER#o", "ORDER");
        let doc: Map<String, Value> = serde_json::from_value(json!({"status": "PENDING"})).unwrap();
        // pk(2)+7, sk(2)+5, version(7)+2, status(6)+7
        assert_eq!(item_size(&key, 1, &doc), 9 + 7 + 9 + 13);
    }

    #[test]
    fn cost_request_units_follow_dynamodb_billing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let metering = Arc::new(Mutex::new(Metering::default()));
        let store = MeteredStore {
            inner: Arc::new(SqliteStore::in_memory().unwrap()),
            metering: metering.clone(),
        };
        let key = Key::new("ORDER#o", "ORDER");
        let big: Map<String, Value> =
            serde_json::from_value(json!({"blob": "x".repeat(1500)})).unwrap();
        rt.block_on(async {
            // Not found: still 1 RRU (strongly consistent).
            assert!(store.get(&key).await.unwrap().is_none());
            // A 1.5 KB item in a transaction: 2 started KB x 2.
            store
                .transact(vec![Write::Put {
                    key: key.clone(),
                    doc: big.clone(),
                    cond: Cond::NotExists,
                }])
                .await
                .unwrap();
            // A ConditionCheck on it: 2 x 2; a Put of a small item over it: the larger
            // of before and after, 2 x 2.
            store
                .transact(vec![Write::Check {
                    key: key.clone(),
                    cond: Cond::Version(1),
                }])
                .await
                .unwrap();
            store
                .transact(vec![Write::Put {
                    key: key.clone(),
                    doc: Map::new(),
                    cond: Cond::Version(1),
                }])
                .await
                .unwrap();
            // Reading it now: a small item, 1 RRU.
            assert!(store.get(&key).await.unwrap().is_some());
        });
        let m = metering.lock().unwrap();
        let u = m.by_caller[""];
        assert_eq!(u.get_item, 2);
        assert_eq!(u.rru, 2);
        assert_eq!(u.transact_write_items, 3);
        assert_eq!(u.wru, 4 + 4 + 4);
    }
}
