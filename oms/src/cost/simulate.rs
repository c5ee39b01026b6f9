//! The simulation: one order down each path the saga can take, on the in-memory runner
//! with the real activities over the metering store, counted in the units AWS bills.

use super::metering::{stored_size, MeteredStore, Metering, Units, DYNAMO_ITEM_OVERHEAD};
use super::prices::{
    ACCOUNT, EXPRESS_BILLED_MEMORY_MB, EXPRESS_DURATION_STEP_MS, LAMBDA_LOG_BYTES_PER_INVOCATION,
    LAMBDA_MEMORY_MB, REGION,
};
use activities::activity::{self, Ctx};
use activities::errors::ErrorKind;
use activities::model::ShipmentRef;
use activities::store::sqlite::SqliteStore;
use activities::store::Store;
use asl::history::{HistoryEvent, HistoryEventKind};
use asl::resource::Target;
use asl::runner::{
    self, RunHost, RunOptions, SeededRandom, TaskHandler, TaskOutcome, VirtualClock,
};
use asl::{ExecutionInfo, Failure, Machine, Status, TaskCall};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
            Path::Rejected => Some(ErrorKind::OrderInvalid.name()),
            Path::ReserveFails => Some(ErrorKind::InventoryOutOfStock.name()),
            Path::ChargeFails => Some(ErrorKind::PaymentDeclined.name()),
            Path::PickFails => Some(ErrorKind::PickItemDamaged.name()),
            Path::ShipFails => Some(ErrorKind::ShipAddressRejected.name()),
        }
    }

    /// The step that fails: the state whose Catch takes the failure (in the Express
    /// child for PlaceOrder, ReserveInventory and ChargePayment).
    pub fn caught_at(self) -> Option<&'static str> {
        match self {
            Path::Happy => None,
            Path::Rejected => Some("PlaceOrder"),
            Path::ReserveFails => Some("ReserveInventory"),
            Path::ChargeFails => Some("ChargePayment"),
            Path::PickFails | Path::ShipFails => Some("FulfilShipments"),
        }
    }

    pub(super) fn compensates(self) -> bool {
        !matches!(self, Path::Happy | Path::Rejected)
    }
}

/// The demo order of `oms up` (one line), made to take `path` with `shipments`
/// shipments: for more than one, its line asks for one unit more than the
/// `shipments - 1` best-stocked warehouses hold, so the planner must split it.
pub fn order_for(path: Path, shipments: usize) -> Result<Value, String> {
    let mut order: Value = serde_json::from_str(oms_orders::DEMO_ORDER)
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

/// The level a state machine's executions log at (its `LoggingConfiguration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// Every history event.
    All,
    /// Only the events that are errors (a task, a state or the execution failing,
    /// timing out or aborting).
    Error,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::All => "ALL",
            LogLevel::Error => "ERROR",
        }
    }
}

/// One way of deploying the saga: its Standard state machine, the Express child its
/// Prepare state runs (if it has one), and the level each logs at.
#[derive(Debug, Clone)]
pub struct Design {
    pub name: &'static str,
    /// Where its definitions are kept.
    pub files: &'static str,
    pub saga: String,
    pub prepare: Option<String>,
    pub saga_logs: LogLevel,
    pub prepare_logs: LogLevel,
}

/// The baseline: the whole saga as one Standard workflow, logging ALL.
const SINGLE_DEFINITION: &str =
    include_str!("../../../statemachines/designs/order-saga-single.asl.json");

impl Design {
    /// The saga as `oms up` registers it and the CDK app deploys it: a Standard
    /// workflow whose Prepare state runs the forward steps that do not wait as an Express
    /// child. The Standard one logs ERROR (its history is GetExecutionHistory's, kept
    /// 90 days); the Express child logs ERROR too: what it returned is in the parent's
    /// history (Prepare's TaskSucceeded), why it failed in Prepare's TaskFailed and in
    /// the child's own error events.
    pub fn split(language: oms_orders::SagaLanguage) -> Result<Design, String> {
        Ok(Design {
            name: "Standard saga + Express child",
            files: match language {
                oms_orders::SagaLanguage::JsonPath => {
                    "statemachines/order-saga.asl.json + order-prepare.asl.json"
                }
                oms_orders::SagaLanguage::Jsonata => {
                    "statemachines/order-saga.jsonata.asl.json + order-prepare.jsonata.asl.json"
                }
            },
            saga: oms_orders::local_definition(REGION, ACCOUNT, language)?,
            prepare: Some(oms_orders::local_prepare_definition(
                REGION, ACCOUNT, language,
            )?),
            saga_logs: LogLevel::Error,
            prepare_logs: LogLevel::Error,
        })
    }

    /// The design this one replaced, kept to compare with: every state in one Standard
    /// workflow (statemachines/designs/order-saga-single.asl.json), logging ALL.
    pub fn single() -> Result<Design, String> {
        Ok(Design {
            name: "one Standard workflow",
            files: "statemachines/designs/order-saga-single.asl.json",
            saga: oms_orders::with_local_substitutions(SINGLE_DEFINITION, REGION, ACCOUNT)
                .map_err(|name| {
                    format!("statemachines/designs/order-saga-single.asl.json: no value for {name}")
                })?,
            prepare: None,
            saga_logs: LogLevel::All,
            prepare_logs: LogLevel::All,
        })
    }
}

/// One run of the Express child: what its duration is made of.
#[derive(Debug, Clone, Serialize)]
pub struct ExpressRun {
    pub status: String,
    pub lambda_invocations: u64,
    /// Time spent waiting between retries.
    pub waited_ms: u64,
    pub states: Vec<String>,
    /// Its history as log records at its design's level.
    pub log_bytes: u64,
    /// The same at level ALL, for comparison.
    pub log_bytes_all: u64,
}

impl ExpressRun {
    /// The duration billed: the Lambda invocations and the waits, rounded up to the
    /// next 100 ms (the orchestration's own few milliseconds a state are not counted).
    pub fn billed_ms(&self, lambda_ms: u64) -> u64 {
        let ms = self.lambda_invocations * lambda_ms + self.waited_ms;
        ms.div_ceil(EXPRESS_DURATION_STEP_MS).max(1) * EXPRESS_DURATION_STEP_MS
    }
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
    /// The Express child Prepare starts, if the design has one.
    prepare: Option<Arc<Machine>>,
    prepare_logs: LogLevel,
    express: Vec<ExpressRun>,
}

impl Simulation<'_> {
    fn caller(&self, name: &str) {
        self.metering.lock().expect("metering lock").caller = name.to_string();
    }

    /// `states:startExecution.sync:2` of the Express child: runs it here, on the same
    /// activities, and answers as Step Functions does: its description, or
    /// States.TaskFailed with the description as the cause.
    fn run_child(&mut self, call: &TaskCall) -> TaskOutcome {
        let Some(machine) = self.prepare.clone() else {
            return TaskOutcome::err(Failure::new(
                asl::error::names::TASK_FAILED,
                "this design has no child state machine",
            ));
        };
        let machine_arn = call.payload["StateMachineArn"].as_str().unwrap_or_default();
        let input = call.payload["Input"].clone();
        let start: DateTime<Utc> = SIM_START.parse().expect("a fixed time");
        let run = self.express.len();
        let info = ExecutionInfo::new(
            machine_arn,
            &format!("{ORDER_ID}-{run}"),
            &format!("arn:aws:iam::{ACCOUNT}:role/oms-order-prepare"),
            true,
            start,
        );
        let arn = info.execution_arn.clone();
        let mut host = RunHost {
            clock: VirtualClock(start),
            random: SeededRandom::new(13 + run as u64),
        };
        let invoked_before = self.calls.len() as u64 + self.callbacks;
        let options = RunOptions {
            info: Some(info),
            record_history: true,
        };
        let outcome = runner::run(machine, input.clone(), self, &mut host, options);
        let read = read_history(&outcome.history, &arn);
        self.express.push(ExpressRun {
            status: outcome.status.as_str().to_string(),
            lambda_invocations: self.calls.len() as u64 + self.callbacks - invoked_before,
            waited_ms: (host.clock.0 - start).num_milliseconds().max(0) as u64,
            log_bytes: read.log_bytes(self.prepare_logs),
            log_bytes_all: read.bytes_all,
            states: read.states,
        });
        let description = json!({
            "ExecutionArn": arn,
            "Input": input,
            "Output": outcome.output,
            "Status": outcome.status.as_str(),
            "Error": outcome.error,
            "Cause": outcome.cause,
        });
        if outcome.status == Status::Succeeded {
            TaskOutcome::ok(description)
        } else {
            TaskOutcome::err(Failure::new(
                asl::error::names::TASK_FAILED,
                description.to_string(),
            ))
        }
    }
}

/// Whether a task starts another state machine's execution.
fn starts_execution(call: &TaskCall) -> bool {
    matches!(&call.target, Target::Service { service, action, .. }
        if service == "states" && action == "startExecution")
}

impl TaskHandler for Simulation<'_> {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome {
        if starts_execution(call) {
            return self.run_child(call);
        }
        let def = match oms_orders::resolve(oms_orders::function_of(call)) {
            Ok(def) => def,
            Err(failure) => return TaskOutcome::err(failure),
        };
        self.calls.push(def.name);
        self.caller(def.name);
        if self.transient == Some(def.name) {
            self.transient = None;
            return TaskOutcome::err(Failure::new(
                ErrorKind::ActivityUnavailable.name(),
                "transient failure injected by the cost simulation",
            ));
        }
        let out = match self
            .rt
            .block_on(activity::invoke(&self.ctx, def.key, &call.payload))
        {
            Ok(v) => v,
            Err(e) => return TaskOutcome::err(oms_orders::lambda_failure(&e)),
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
            Ok((_, Ok(state))) => TaskOutcome::ok(activities::model::to_json(&state)),
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
    /// The saga's history as CloudWatch Logs log records at its design's level
    /// (execution data included).
    pub history_log_bytes: u64,
    /// The same at level ALL, for comparison.
    pub history_log_bytes_all: u64,
    /// The runs of the Express child (two when a forward step failed for good: the
    /// second reports the error).
    pub express_runs: Vec<ExpressRun>,
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
        self.history_log_bytes
            + self.lambda_log_bytes
            + self.express_runs.iter().map(|r| r.log_bytes).sum::<u64>()
    }
    pub fn express_requests(&self) -> u64 {
        self.express_runs.len() as u64
    }
    pub fn express_gb_seconds(&self, lambda_ms: u64) -> f64 {
        self.express_runs
            .iter()
            .map(|r| r.billed_ms(lambda_ms) as f64 / 1000.0 * EXPRESS_BILLED_MEMORY_MB / 1024.0)
            .sum()
    }
    /// The states the Express child runs entered, run after run.
    #[cfg(test)]
    pub fn child_states(&self) -> Vec<String> {
        self.express_runs
            .iter()
            .flat_map(|r| r.states.iter().cloned())
            .collect()
    }
    pub fn calls_of(&self, name: &str) -> u64 {
        self.task_calls.get(name).copied().unwrap_or(0)
    }
}

/// The saga as `oms up` registers it by default (JSONPath, as the CDK app deploys
/// it), with functions named as this account's would be.
#[cfg(test)]
pub fn deployed() -> Design {
    Design::split(oms_orders::SagaLanguage::JsonPath).unwrap()
}

/// When every simulated order starts.
const SIM_START: &str = "2026-11-26T12:00:00Z";

/// What the table keeps: not the outbox items, which the event relay deletes once it
/// has published them (docs/events.md).
async fn table_bytes(store: &dyn Store) -> Result<i64, String> {
    let outbox = activities::events::outbox_prefix();
    Ok(store
        .scan("")
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|i| !i.key.pk.starts_with(outbox))
        .map(|i| stored_size(i) as i64 + DYNAMO_ITEM_OVERHEAD)
        .sum())
}

/// What one history gives: its StateEntered events, the retries, the states entered
/// and the bytes of its log records at each level.
struct HistoryRead {
    entered: u64,
    retries: u64,
    states: Vec<String>,
    bytes_all: u64,
    bytes_error: u64,
}

impl HistoryRead {
    fn log_bytes(&self, level: LogLevel) -> u64 {
        match level {
            LogLevel::All => self.bytes_all,
            LogLevel::Error => self.bytes_error,
        }
    }
}

/// The events level ERROR logs: a task, a state or the execution failing, timing out
/// or aborting.
fn is_error_event(kind: &str) -> bool {
    kind.ends_with("Failed") || kind.ends_with("TimedOut") || kind.ends_with("Aborted")
}

fn read_history(history: &[HistoryEvent], execution_arn: &str) -> HistoryRead {
    let mut entered = 0;
    let mut task_entered: u64 = 0;
    let mut scheduled: u64 = 0;
    let mut states = Vec::new();
    let (mut bytes_all, mut bytes_error) = (0, 0);
    for e in history {
        let kind: &str = &e.kind;
        let typed = HistoryEventKind::parse(kind);
        if typed.is_some_and(HistoryEventKind::is_state_entered) {
            entered += 1;
            states.push(
                e.details.value()["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if typed == Some(HistoryEventKind::TaskStateEntered) {
            task_entered += 1;
        }
        if matches!(
            typed,
            Some(
                HistoryEventKind::TaskScheduled
                    | HistoryEventKind::LambdaFunctionScheduled
                    | HistoryEventKind::ActivityScheduled
            )
        ) {
            scheduled += 1;
        }
        // The record a log group receives for the event (execution data included).
        let record = json!({
            "id": e.id.to_string(),
            "type": kind,
            "details": e.details,
            "previous_event_id": e.previous_event_id.to_string(),
            "event_timestamp": e.timestamp.timestamp_millis().to_string(),
            "execution_arn": execution_arn,
            "redrive_count": "0",
        });
        let bytes = record.to_string().len() as u64 + 1;
        bytes_all += bytes;
        if is_error_event(kind) {
            bytes_error += bytes;
        }
    }
    // A retry schedules the task again without entering the state again.
    let retries: u64 = scheduled.saturating_sub(task_entered);
    HistoryRead {
        entered,
        retries,
        states,
        bytes_all,
        bytes_error,
    }
}

/// Runs one order down `path` on `definition` and meters it.
pub fn simulate(
    design: &Design,
    path: Path,
    shipments: usize,
    opts: &SimOptions,
) -> Result<PathRun, String> {
    let machine = crate::exec::load_machine(&design.saga)
        .map_err(|v| format!("the saga's definition is invalid: {v}"))?;
    let prepare = match &design.prepare {
        Some(text) => Some(Arc::new(
            crate::exec::load_machine_as(text, asl::validate::MachineType::Express)
                .map_err(|v| format!("the child's definition is invalid: {v}"))?,
        )),
        None => None,
    };
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
    let start: DateTime<Utc> = SIM_START.parse().expect("a fixed time");
    let info = ExecutionInfo::new(
        &format!(
            "arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{}",
            oms_orders::MACHINE_NAME
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
        prepare,
        prepare_logs: design.prepare_logs,
        express: Vec::new(),
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
    Ok(metered_run(
        path,
        outcome,
        (&execution_arn, design.saga_logs),
        &sim,
        stored_after - stored_before,
    ))
}

/// What the run of one order on `path` cost, from its outcome and the simulation's
/// counts; `stored_bytes` is what the order left in the table.
fn metered_run(
    path: Path,
    outcome: runner::Outcome,
    (execution_arn, logs): (&str, LogLevel),
    sim: &Simulation,
    stored_bytes: i64,
) -> PathRun {
    let read = read_history(&outcome.history, execution_arn);
    let (state_entered, retries) = (read.entered, read.retries);
    let mut task_calls: BTreeMap<String, u64> = BTreeMap::new();
    for c in &sim.calls {
        *task_calls.entry(c.to_string()).or_default() += 1;
    }
    let lambda_invocations = sim.calls.len() as u64 + sim.callbacks;
    let m = sim.metering.lock().expect("metering lock");
    let mut total = Units::default();
    for u in m.by_caller.values() {
        total.add(u);
    }
    PathRun {
        path,
        trigger: path.trigger(),
        status: outcome.status.as_str().to_string(),
        error: outcome.error,
        caught_at: path.caught_at(),
        transitions: state_entered + retries,
        state_entered,
        retries,
        states: read.states.clone(),
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
        history_log_bytes: read.log_bytes(logs),
        history_log_bytes_all: read.bytes_all,
        express_runs: sim.express.clone(),
        lambda_log_bytes: lambda_invocations * LAMBDA_LOG_BYTES_PER_INVOCATION,
        stored_bytes,
        calls: sim.calls.clone(),
    }
}

/// Every path, checked to end as it should (a path that did not fail where it was
/// meant to would price the wrong thing).
pub fn simulate_all(design: &Design, shipments: usize) -> Result<Vec<PathRun>, String> {
    let mut runs = Vec::new();
    for path in Path::ALL {
        let run = simulate(design, path, shipments, &SimOptions::default())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: Path, shipments: usize) -> PathRun {
        simulate(&deployed(), path, shipments, &SimOptions::default()).unwrap()
    }

    fn definition() -> Value {
        serde_json::from_str(&deployed().saga).unwrap()
    }

    /// Where the saga goes when `step` fails with a business error: the target of its
    /// Catch, or for the child's steps, PrepareOutcome's choice for it.
    fn compensation_start(def: &Value, step: &str) -> String {
        let states = &def["States"];
        if let Some(catch) = states[step]["Catch"].get(0) {
            return catch["Next"].as_str().unwrap().to_string();
        }
        let outcome = &states["PrepareOutcome"];
        outcome["Choices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["StringEquals"] == step)
            .unwrap_or(outcome)
            .get("Next")
            .unwrap_or(&outcome["Default"])
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The states a failure of `state` leads through, by the definition: where it goes
    /// and every `Next` after it, with the states of any Map's iterations.
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
        let target = compensation_start(def, state);
        let mut out = Vec::new();
        walk(&def["States"], &target, &mut out);
        out
    }

    fn is_subsequence(needle: &[String], hay: &[String]) -> bool {
        let mut it = hay.iter();
        needle.iter().all(|n| it.any(|h| h == n))
    }

    /// The JSONata twins (saga and child) bill as the JSONPath ones do: the same states
    /// entered in both machines, the same transitions and retries, on every path.
    #[test]
    fn cost_the_jsonata_twin_bills_the_same_transitions() {
        let jsonpath = simulate_all(&deployed(), 1).unwrap();
        let twin = Design::split(oms_orders::SagaLanguage::Jsonata).unwrap();
        let jsonata = simulate_all(&twin, 1).unwrap();
        for (a, b) in jsonpath.iter().zip(&jsonata) {
            assert_eq!(a.path, b.path);
            assert_eq!(
                (a.transitions, a.retries, &a.states, &a.status, &a.error),
                (b.transitions, b.retries, &b.states, &b.status, &b.error),
                "{}",
                a.path.label()
            );
            assert_eq!(a.child_states(), b.child_states(), "{}", a.path.label());
            assert_eq!(a.express_requests(), b.express_requests());
        }
    }

    #[test]
    fn cost_every_path_ends_with_its_error() {
        for design in [deployed(), Design::single().unwrap()] {
            let runs = simulate_all(&design, 1).unwrap();
            assert_eq!(runs.len(), Path::ALL.len());
        }
    }

    /// The split design: a happy order costs four transitions (Prepare, the Map, its
    /// pick and ship) and one Express run; the single one eleven. A step that fails in
    /// the child runs it twice (the second run reports the error) and the compensations
    /// run in the Standard saga.
    #[test]
    fn cost_the_child_runs_the_forward_steps_and_the_saga_the_waits() {
        let happy = run(Path::Happy, 1);
        assert_eq!(
            happy.states,
            ["Prepare", "FulfilShipments", "PickShipment", "ShipShipment"]
        );
        assert_eq!(happy.express_requests(), 1);
        assert_eq!(happy.express_runs[0].lambda_invocations, 5);
        let single = simulate(
            &Design::single().unwrap(),
            Path::Happy,
            1,
            &SimOptions::default(),
        )
        .unwrap();
        assert_eq!(single.transitions, 11);
        // The same activities do the same writes: ShipShipment completes the order in its
        // batch, so the single workflow's MarkCompleted finds it COMPLETED and writes
        // nothing (one Lambda invocation and one read more there).
        assert_eq!(happy.dynamodb.wru, single.dynamodb.wru);
        assert_eq!(happy.lambda_invocations + 1, single.lambda_invocations);
        let charge = run(Path::ChargeFails, 1);
        assert_eq!(charge.express_requests(), 2);
        assert_eq!(charge.express_runs[0].status, "FAILED");
        assert_eq!(charge.express_runs[1].status, "SUCCEEDED");
        assert!(charge.states.contains(&"RefundPayment".to_string()));
        assert!(!charge.child_states().contains(&"RefundPayment".to_string()));
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
        let single = Design::single().unwrap();
        let no_fault = SimOptions::default();
        let base = simulate(&single, Path::Happy, 1, &no_fault).unwrap();
        let opts = SimOptions {
            transient_first_call_of: Some("ChargePayment"),
        };
        let r = simulate(&single, Path::Happy, 1, &opts).unwrap();
        assert_eq!(r.status, "SUCCEEDED");
        assert_eq!(r.retries, 1);
        assert_eq!(r.state_entered, base.state_entered);
        assert_eq!(r.transitions, base.transitions + 1);
        assert_eq!(r.lambda_invocations, base.lambda_invocations + 1);
        // In the Express child a retry costs no transition: one more invocation, and
        // the wait before it, in the child's duration.
        let base = run(Path::Happy, 1);
        let r = simulate(&deployed(), Path::Happy, 1, &opts).unwrap();
        assert_eq!(r.status, "SUCCEEDED");
        assert_eq!(r.transitions, base.transitions);
        assert_eq!(r.lambda_invocations, base.lambda_invocations + 1);
        assert!(r.express_gb_seconds(50) > base.express_gb_seconds(50));
    }

    #[test]
    fn cost_a_pass_state_adds_one_transition_per_order() {
        let mut def = definition();
        let first = def["StartAt"].clone();
        let states = def["States"].as_object_mut().unwrap();
        states.insert("Audit".into(), json!({"Type": "Pass", "Next": first}));
        def["StartAt"] = json!("Audit");
        let audited = Design {
            saga: def.to_string(),
            ..deployed()
        };
        for path in [Path::Happy, Path::ChargeFails, Path::PickFails] {
            let before = run(path, 1);
            let after = simulate(&audited, path, 1, &SimOptions::default()).unwrap();
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
}
