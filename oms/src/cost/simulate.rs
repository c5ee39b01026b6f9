//! The simulation: one order down each path the saga can take, on the in-memory runner
//! with the real activities over the metering store, counted in the units AWS bills.

use super::metering::{stored_size, MeteredStore, Metering, Units, DYNAMO_ITEM_OVERHEAD};
use super::prices::{ACCOUNT, LAMBDA_LOG_BYTES_PER_INVOCATION, LAMBDA_MEMORY_MB, REGION};
use activities::activity::{self, Ctx};
use activities::errors::ErrorKind;
use activities::model::ShipmentRef;
use activities::store::sqlite::SqliteStore;
use activities::store::Store;
use asl::history::{HistoryEvent, HistoryEventKind};
use asl::runner::{
    self, RunHost, RunOptions, SeededRandom, TaskHandler, TaskOutcome, VirtualClock,
};
use asl::{ExecutionInfo, Failure, TaskCall};
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

impl TaskHandler for Simulation<'_> {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome {
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

/// The saga as `oms up` registers it by default (JSONPath, as the CDK app deploys
/// it), with functions named as this account's would be.
#[cfg(test)]
pub fn saga_definition() -> Result<String, String> {
    saga_definition_in(oms_orders::SagaLanguage::JsonPath)
}

/// The saga in `language` (its JSONata twin has the same states, so the same bill).
pub fn saga_definition_in(language: oms_orders::SagaLanguage) -> Result<String, String> {
    oms_orders::local_definition(REGION, ACCOUNT, language)
}

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
        let typed = HistoryEventKind::parse(kind);
        if typed.is_some_and(HistoryEventKind::is_state_entered) {
            entered += 1;
            states.push(e.details["name"].as_str().unwrap_or_default().to_string());
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
        &execution_arn,
        &sim,
        stored_after - stored_before,
    ))
}

/// What the run of one order on `path` cost, from its outcome and the simulation's
/// counts; `stored_bytes` is what the order left in the table.
fn metered_run(
    path: Path,
    outcome: runner::Outcome,
    execution_arn: &str,
    sim: &Simulation,
    stored_bytes: i64,
) -> PathRun {
    let (state_entered, retries, states, history_log_bytes) =
        read_history(&outcome.history, execution_arn);
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
        stored_bytes,
        calls: sim.calls.clone(),
    }
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

    /// The JSONata twin bills as the JSONPath saga does: the same states entered, the
    /// same transitions and retries, on every path.
    #[test]
    fn cost_the_jsonata_twin_bills_the_same_transitions() {
        let jsonpath = simulate_all(&saga_definition().unwrap(), 1).unwrap();
        let twin = saga_definition_in(oms_orders::SagaLanguage::Jsonata).unwrap();
        let jsonata = simulate_all(&twin, 1).unwrap();
        for (a, b) in jsonpath.iter().zip(&jsonata) {
            assert_eq!(a.path, b.path);
            assert_eq!(
                (a.transitions, a.retries, &a.states, &a.status, &a.error),
                (b.transitions, b.retries, &b.states, &b.status, &b.error),
                "{}",
                a.path.label()
            );
        }
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
}
