//! The operations the Orders API serves, over the order saga's executions (through the
//! `StepFunctions` trait) and the activities' store. Listing is in `listing.rs`.

use crate::problem::{code, Problem};
use crate::saga::{
    local_amend_definition, local_definition, local_prepare_definition, SagaLanguage,
    AMEND_MACHINE_NAME, MACHINE_NAME, PREPARE_MACHINE_NAME,
};
use crate::warehouse::Warehouse;
use activities::activity::{self, Ctx};
use activities::amend;
use activities::errors::{ActivityError, ErrorKind};
use activities::ledger::{self, from_item, OrderItem, OrderRecord};
use activities::model::{
    Address, FieldError, Order, OrderLine, OrderOptions, OrderStatus, PricedLine, ShipmentRef,
};
use asl::history::HistoryEventKind;
use saga_core::api::{
    CreateStateMachineInput, DescribeExecutionInput, DescribeExecutionOutput, ExecutionStatus,
    GetExecutionHistoryInput, HistoryEvent, ListStateMachinesInput, RedriveExecutionInput,
    StartExecutionInput, StateMachineType, StepFunctions, UpdateStateMachineInput,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who amends an order: the `X-Oms-Associate` header ("api" without one).
pub const ASSOCIATE_HEADER: &str = "x-oms-associate";

/// The operations the Orders API serves, over one saga (`machine_arn`).
pub struct Orders {
    /// The activities' context: their store and fault plans (the admin routes use it).
    pub ctx: Ctx,
    sfn: Arc<dyn StepFunctions>,
    pub machine_arn: String,
    warehouse: Arc<Warehouse>,
    /// The amendments' state machine (`PATCH /orders/{id}`); None where it is not
    /// deployed (the AWS stack does not have it yet).
    pub amend_machine_arn: Option<String>,
}

/// Creates the state machine `name`, or updates its definition: its ARN.
async fn register(
    sfn: &dyn StepFunctions,
    name: &str,
    definition: String,
    account: &str,
    r#type: Option<StateMachineType>,
) -> Result<String, String> {
    let machines = sfn
        .list_state_machines(ListStateMachinesInput::default())
        .await
        .map_err(|e| e.message)?;
    let existing = machines
        .state_machines
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.state_machine_arn.clone());
    match existing {
        Some(arn) => {
            sfn.update_state_machine(UpdateStateMachineInput {
                state_machine_arn: arn.clone(),
                definition: Some(definition),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot update {name}: {}", e.message))?;
            Ok(arn)
        }
        None => Ok(sfn
            .create_state_machine(CreateStateMachineInput {
                name: name.into(),
                definition,
                role_arn: format!("arn:aws:iam::{account}:role/oms-{name}"),
                r#type,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create {name}: {}", e.message))?
            .state_machine_arn),
    }
}

impl Orders {
    /// Registers the order saga in `language` (created, or updated when its definition
    /// changed: switching language updates it).
    pub async fn start(
        ctx: Ctx,
        sfn: Arc<dyn StepFunctions>,
        warehouse: Arc<Warehouse>,
        region: &str,
        account: &str,
        language: SagaLanguage,
    ) -> Result<Orders, String> {
        // The child first: the saga's Prepare state starts it (Express: the forward
        // steps that do not wait cost no state transitions there).
        let prepare = local_prepare_definition(region, account, language)?;
        let express = Some(StateMachineType::Express);
        register(&*sfn, PREPARE_MACHINE_NAME, prepare, account, express).await?;
        let definition = local_definition(region, account, language)?;
        let machine_arn = register(&*sfn, MACHINE_NAME, definition, account, None).await?;
        let amend = local_amend_definition(region, account)?;
        let amend_arn = register(&*sfn, AMEND_MACHINE_NAME, amend, account, None).await?;
        let mut orders = Orders::attach(ctx, sfn, warehouse, machine_arn);
        orders.amend_machine_arn = Some(amend_arn);
        Ok(orders)
    }

    /// The Orders service over a saga that already exists (on AWS, the stack's).
    pub fn attach(
        ctx: Ctx,
        sfn: Arc<dyn StepFunctions>,
        warehouse: Arc<Warehouse>,
        machine_arn: String,
    ) -> Orders {
        Orders {
            ctx,
            sfn,
            machine_arn,
            warehouse,
            amend_machine_arn: None,
        }
    }

    /// An order's execution is named after the order, so its ARN follows from the
    /// machine's: `...:stateMachine:NAME` becomes `...:execution:NAME:ORDER`.
    fn execution_arn(&self, order_id: &str) -> String {
        format!(
            "{}:{order_id}",
            self.machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }

    /// The execution of a placed order: the one it recorded, or the one named after it.
    fn arn_of(&self, order: &OrderRecord) -> String {
        order
            .execution_arn
            .clone()
            .unwrap_or_else(|| self.execution_arn(&order.order_id))
    }

    /// `POST /orders`: checks the order, places it, and starts its saga. The same order
    /// id (or Idempotency-Key) again starts nothing new.
    pub async fn submit(
        &self,
        mut body: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, Problem> {
        let Some(obj) = body.as_object_mut() else {
            return Err(Problem::new(
                400,
                ErrorKind::OrderInvalid.name(),
                "the body must be a JSON object",
            ));
        };
        let options_given = obj.remove("options");
        if !obj.contains_key("order_id") {
            let id = match idempotency_key {
                Some(k) => {
                    use sha2::{Digest, Sha256};
                    let d = Sha256::digest(k.as_bytes());
                    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
                    format!("ord-{hex}")
                }
                None => format!("ord-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            };
            obj.insert("order_id".into(), Value::String(id));
        }
        let mut order: Order = decode_order(&body)?;
        // Every rule the order and its options break, in one answer; the catalog is
        // read here and nowhere else on the way in.
        let checked = activity::check_order(&self.ctx, &order).await?;
        let (lines, options) = match (checked, check_options(options_given.as_ref())) {
            (Ok(lines), Ok(options)) => (lines, options),
            (lines, options) => {
                let mut fields = lines.err().unwrap_or_default();
                fields.extend(options.err().unwrap_or_default());
                return Err(order_invalid(fields));
            }
        };
        // The gateway keeps the token: the saga's input, and so its history, carries
        // only the reference.
        let method = activity::payment_method(&self.ctx, &order).await?;
        order.payment = activities::model::Payment::method(&method);
        // Placed here so that the order can be read as soon as this answers; the saga's
        // PlaceOrder then finds it. A transient failure is the client's to retry (503).
        let placed = activity::place_checked(&self.ctx, &order, lines, &method).await?;
        let input = SagaInput {
            order: &order,
            options,
        };
        let arn = self.start_saga(&order.order_id, input).await?;
        // A new order is PENDING, as placed just now: read back, its status would cost
        // this answer two reads, and the saga's first step, spawned onto this worker
        // where no other worker takes it from, would wait for them (issue 16). An
        // order placed before may be anywhere: read it.
        let status = if placed.new {
            OrderStatus::Pending
        } else {
            self.order_view(&order.order_id).await?.status
        };
        Ok(json!({"order_id": order.order_id, "execution_arn": arn, "status": status}))
    }

    /// Starts the saga of a placed order, named after it: starting it again is a no-op.
    /// If this fails, the order stays PENDING with no execution; submitting it again,
    /// retrying or cancelling it starts the saga (`start_placed`).
    async fn start_saga(&self, order_id: &str, input: SagaInput<'_>) -> Result<String, Problem> {
        let started = self
            .sfn
            .start_execution(StartExecutionInput {
                state_machine_arn: self.machine_arn.clone(),
                name: Some(order_id.to_string()),
                input: Some(activities::model::to_json_text(&input)),
                trace_header: None,
            })
            .await;
        match started {
            Ok(out) => Ok(out.execution_arn),
            // The saga of this order was started before and has ended: same order.
            Err(e) if e.code.as_str() == "ExecutionAlreadyExists" => {
                Ok(self.execution_arn(order_id))
            }
            Err(e) => {
                let mut p = Problem::from(e);
                p.message = format!(
                    "order '{order_id}' was placed but its saga did not start ({}); submit it \
                     again or POST /orders/{order_id}/retry to start it",
                    p.message
                );
                Err(p)
            }
        }
    }

    /// Starts the saga of an order that was placed but whose saga never started, from
    /// the order as it was placed (the saga's default options: the submission's options
    /// are not stored). Returns None when the order has an execution already.
    async fn start_placed(&self, order_id: &str) -> Result<Option<String>, Problem> {
        let placed = ledger::load_order(&*self.ctx.store, order_id).await?.value;
        // A final order's saga ran; its execution may since have been deleted by
        // retention, which must not start the saga again.
        if placed.status.is_final() {
            return Ok(None);
        }
        let arn = self.arn_of(&placed);
        let described = self
            .sfn
            .describe_execution(DescribeExecutionInput {
                execution_arn: arn,
                included_data: None,
            })
            .await;
        match described {
            Ok(_) => return Ok(None),
            Err(e) if e.code.as_str() == "ExecutionDoesNotExist" => {}
            Err(e) => return Err(e.into()),
        }
        let method = activity::recorded_method(&self.ctx, &placed).await?;
        let order = placed.as_order(&method);
        let input = SagaInput {
            order: &order,
            options: None,
        };
        self.start_saga(order_id, input).await.map(Some)
    }

    /// `GET /orders/{id}`: the order, its ledger, its shipments and where it stopped.
    pub async fn view(&self, order_id: &str) -> Result<Value, Problem> {
        Ok(activities::model::to_json(
            &self.order_view(order_id).await?,
        ))
    }

    /// The order as `GET /orders/{id}` shows it.
    pub async fn order_view(&self, order_id: &str) -> Result<OrderView, Problem> {
        let (mut items, mut order) = self.ledger(order_id).await?;
        let arn = self.arn_of(&order);
        let execution = self
            .sfn
            .describe_execution(DescribeExecutionInput {
                execution_arn: arn.clone(),
                included_data: None,
            })
            .await
            .ok();
        // The ledger was read before the execution: a saga that ended in between wrote
        // its last status after our read. Read the ledger again so that the two agree,
        // or a finished order would show a status it never had (COMPENSATING read, then
        // FAILED: "compensation failed" for an order that was being cancelled).
        let ended = execution
            .as_ref()
            .is_some_and(|e| e.status != ExecutionStatus::Running);
        if ended && !order.status.is_final() {
            (items, order) = self.ledger(order_id).await?;
        }
        let version = items
            .iter()
            .find(|i| OrderItem::of(&i.key) == Some(OrderItem::Order))
            .map_or(0, |i| i.version);
        let amend_refusal = self.amend_refusal(&order, &items);
        let (steps, shipments) = steps_and_shipments(&items);
        let (first_failed, last_failed) = if order.failure.is_some() {
            self.failed_states(&arn).await
        } else {
            (None, None)
        };
        let (status, failure) = shown_status(&order, execution.as_ref(), first_failed, last_failed);
        let mut view = OrderView {
            order_id: order.order_id,
            customer_id: order.customer_id,
            status,
            cancel_requested: order.cancel_requested,
            lines: order.lines,
            total_cents: order.total_cents,
            currency: order.currency,
            charged_cents: order.charged_cents,
            refunded_cents: order.refunded_cents,
            ship_to: order.ship_to,
            shipments,
            steps,
            failure,
            execution_arn: arn,
            execution_status: execution.map(|e| e.status),
            created_at: order.created_at,
            updated_at: order.updated_at,
            version,
            amendments: order.amendments.iter().map(amendment_view).collect(),
            actions: Vec::new(),
            actions_refused: BTreeMap::new(),
        };
        (view.actions, view.actions_refused) = actions_of(&view, amend_refusal);
        Ok(view)
    }

    /// Why the order cannot be amended now (`activities::amend::not_amendable`, the
    /// rule `PATCH /orders/{id}` applies); None when it can.
    fn amend_refusal(
        &self,
        order: &OrderRecord,
        items: &[activities::store::Item],
    ) -> Option<String> {
        if self.amend_machine_arn.is_none() {
            return Some("this backend has no order-amend state machine".into());
        }
        let shipments: Vec<ledger::ShipmentRecord> = items
            .iter()
            .filter(|i| OrderItem::of(&i.key) == Some(OrderItem::Shipment))
            .filter_map(|i| ledger::from_item(i).ok())
            .collect();
        amend::not_amendable(order, &shipments)
    }

    /// An order's ledger items and its order record, read together.
    async fn ledger(
        &self,
        order_id: &str,
    ) -> Result<(Vec<activities::store::Item>, OrderRecord), Problem> {
        let items = self
            .ctx
            .store
            .query(&ledger::order_pk(order_id), "")
            .await
            .map_err(ActivityError::from)?;
        let is_order =
            |i: &&activities::store::Item| OrderItem::of(&i.key) == Some(OrderItem::Order);
        let Some(order_item) = items.iter().find(is_order) else {
            return Err(Problem::new(
                404,
                ErrorKind::OrderNotFound.name(),
                format!("no order '{order_id}'"),
            ));
        };
        let order: OrderRecord = from_item(order_item)?;
        Ok((items, order))
    }

    /// The innermost states that failed in an execution's history: the first failure
    /// and the last one.
    async fn failed_states(&self, arn: &str) -> (Option<String>, Option<String>) {
        let Ok(history) = self.history(arn).await else {
            return (None, None);
        };
        let mut open: Vec<&str> = Vec::new();
        let (mut first, mut last) = (None, None);
        for e in &history {
            let Some(kind) = e.kind() else { continue };
            if kind.is_state_entered() {
                open.push(e.state_name().unwrap_or_default());
            } else if kind.is_state_exited() {
                if let Some(n) = e.state_name() {
                    if let Some(pos) = open.iter().rposition(|o| *o == n) {
                        open.truncate(pos);
                    }
                }
            } else if kind == HistoryEventKind::ExecutionRedriven {
                open.clear();
            } else if kind.is_task_failure() && !child_failed(e) {
                if first.is_none() {
                    first = open.last().map(|s| s.to_string());
                }
                last = open.last().map(|s| s.to_string());
            }
        }
        (first, last)
    }

    async fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, Problem> {
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sfn
                .get_execution_history(GetExecutionHistoryInput {
                    execution_arn: arn.to_string(),
                    max_results: Some(1000),
                    next_token: token.take(),
                    ..Default::default()
                })
                .await?;
            events.extend(page.events);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(events),
            }
        }
    }

    /// `PATCH /orders/{id}`: accepts an amendment (`activities::amend`): checks the
    /// body and the order's `version`, takes the order's lock and starts the
    /// amendment's saga. `by` is who asks (the associate).
    pub async fn amend(&self, order_id: &str, body: &Value, by: &str) -> Result<Value, Problem> {
        let Some(machine) = &self.amend_machine_arn else {
            return Err(Problem::new(
                501,
                code::AMENDMENTS_UNAVAILABLE,
                "this backend has no order-amend state machine (a stack deployed before amendments: redeploy infra-cdk, or pass --amend-machine-arn)",
            ));
        };
        let patch: AmendPatch =
            activities::model::decode_fields(body).map_err(|f| order_invalid(vec![f]))?;
        let record = ledger::load_order(&*self.ctx.store, order_id).await?.value;
        let lines = self.priced_patch(&record, &patch).await?;
        let request = amend::AmendRequest {
            version: patch.version,
            by: by.to_string(),
            ship_to: patch.ship_to,
            lines,
        };
        let amendment = amend::begin(&*self.ctx.store, order_id, &request)
            .await
            .map_err(|r| refusal(r, patch.version))?;
        let aid = amendment.amendment_id;
        let input = json!({"order_id": order_id, "amendment_id": aid});
        let started = self
            .sfn
            .start_execution(StartExecutionInput {
                state_machine_arn: machine.clone(),
                name: Some(format!("{order_id}-{aid}")),
                input: Some(input.to_string()),
                trace_header: None,
            })
            .await;
        if let Err(e) = started {
            // Nothing ran: give the order back and record why.
            let failed = amend::AmendFailed {
                order_id: order_id.to_string(),
                amendment_id: aid,
                error: e.code.as_str().to_string(),
                cause: format!("the amendment's saga did not start: {}", e.message),
            };
            amend::abandon_amendment(&self.ctx, failed).await?;
            return Err(e.into());
        }
        Ok(json!({"order_id": order_id, "amendment_id": aid, "status": "RUNNING"}))
    }

    /// The patch's new lines, checked and priced against the catalog (with its address
    /// checked too); None when it changes no line.
    async fn priced_patch(
        &self,
        record: &OrderRecord,
        patch: &AmendPatch,
    ) -> Result<Option<Vec<PricedLine>>, Problem> {
        let current: Vec<OrderLine> = record
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect();
        let order = Order {
            order_id: record.order_id.clone(),
            customer_id: record.customer_id.clone(),
            lines: patch.lines.clone().unwrap_or(current),
            payment: activities::model::Payment::method(&record.payment_method),
            ship_to: patch
                .ship_to
                .clone()
                .unwrap_or_else(|| record.ship_to.clone()),
        };
        match activity::check_order(&self.ctx, &order).await? {
            Ok(priced) => Ok(patch.lines.as_ref().map(|_| priced)),
            // Only what the patch can change is checked: the rest was checked when the
            // order was placed.
            Err(fields) => Err(order_invalid(
                fields
                    .into_iter()
                    .filter(|f| f.field.starts_with("lines") || f.field.starts_with("ship_to"))
                    .collect(),
            )),
        }
    }

    /// `POST /orders/{id}/cancel`. Refused (409, with what the user can do instead)
    /// when cancelling can change nothing: see [`cancel_refusal`].
    pub async fn cancel(&self, order_id: &str) -> Result<Value, Problem> {
        let view = self.order_view(order_id).await?;
        if let Some(reason) = cancel_refusal(&view) {
            return Err(Problem::new(409, ErrorKind::OrderConflict.name(), reason));
        }
        let order = activity::request_cancel(&*self.ctx.store, order_id).await?;
        // An order whose saga never started is cancelled by starting it: its first step
        // sees the request and the saga ends CANCELLED, having taken nothing.
        if !order.status.is_final() {
            self.start_placed(order_id).await?;
        }
        if order.status.is_final() {
            // It finished between the view and the request.
            return Err(Problem::new(
                409,
                ErrorKind::OrderConflict.name(),
                format!(
                    "order '{order_id}' is {} and cannot be cancelled",
                    status_name(order.status)
                ),
            ));
        }
        Ok(json!({"order_id": order_id, "cancel_requested": true, "status": order.status}))
    }

    /// `GET /orders/{id}/retry`: what a redrive would do, from the execution's history:
    /// the states that did not finish run again; the results of those that did are
    /// kept. (Step Functions restarts from the state that failed.)
    pub async fn retry_preview(&self, order_id: &str) -> Result<Value, Problem> {
        Ok(activities::model::to_json(
            &self.redrive_plan(order_id).await?,
        ))
    }

    /// What a redrive of the order's execution would do, and whether it may.
    async fn redrive_plan(&self, order_id: &str) -> Result<RetryPreview, Problem> {
        let view = self.order_view(order_id).await?;
        // No execution: the saga has not started, or retention deleted the execution
        // (oms.toml's retention_days; AWS forgets executions after 90 days).
        let history = match view.execution_status {
            Some(_) => self.history(&view.execution_arn).await?,
            None => Vec::new(),
        };
        let (open, kept) = open_and_kept_states(&history);
        // The preview agrees with the view's actions: an unstarted saga is retried by
        // starting it.
        let reason = if unstarted(&view) {
            None
        } else {
            not_retryable_reason(&view)
        };
        let retryable = reason.is_none();
        Ok(RetryPreview {
            order_id: order_id.to_string(),
            execution_arn: view.execution_arn,
            execution_status: view.execution_status,
            retryable,
            reason,
            will_run_again: if retryable { open } else { Vec::new() },
            kept,
            order_status: view.status,
        })
    }

    /// `POST /orders/{id}/retry`: redrives the order's execution.
    pub async fn retry(&self, order_id: &str) -> Result<Value, Problem> {
        if let Some(arn) = self.start_placed(order_id).await? {
            return Ok(json!({"order_id": order_id, "execution_arn": arn, "started": true}));
        }
        let plan = self.redrive_plan(order_id).await?;
        if let Some(reason) = plan.reason {
            return Err(Problem::new(409, code::ORDER_NOT_RETRYABLE, reason));
        }
        self.sfn
            .redrive_execution(RedriveExecutionInput {
                execution_arn: plan.execution_arn.clone(),
                client_token: None,
            })
            .await?;
        Ok(json!({
            "order_id": order_id,
            "execution_arn": plan.execution_arn,
            "will_run_again": plan.will_run_again,
        }))
    }

    /// `POST /shipments/{id}/picked`: the warehouse's answer to a pick request. Answers
    /// the shipment as it is after the answer, with the pick's error if it failed.
    pub async fn picked(&self, shipment_id: &str, body: &Value) -> Result<Value, Problem> {
        let damaged = damage_note(body)?;
        let order_id = activities::model::order_of_shipment(shipment_id).ok_or_else(|| {
            Problem::new(
                404,
                ErrorKind::ShipmentNotFound.name(),
                format!("no shipment '{shipment_id}'"),
            )
        })?;
        let target = ShipmentRef {
            order_id: order_id.into(),
            shipment_id: shipment_id.into(),
        };
        match self.warehouse.answer(&target, damaged).await? {
            Ok(state) => Ok(state),
            // The answer reached the saga, whose pick fails with it; the shipment is
            // as the failed step left it.
            Err(e) => {
                let mut shown = self.shipment(&target).await?;
                shown["error"] = json!(e.name());
                shown["message"] = json!(e.message);
                Ok(shown)
            }
        }
    }

    /// A shipment as the per-shipment steps return it (without its pick token).
    async fn shipment(&self, target: &ShipmentRef) -> Result<Value, Problem> {
        let record = ledger::load_shipment(&*self.ctx.store, &target.order_id, &target.shipment_id)
            .await?
            .value;
        let state = activities::model::ShipmentState {
            order_id: target.order_id.clone(),
            shipment_id: record.shipment_id,
            status: record.status,
            tracking_number: record.tracking_number,
        };
        Ok(activities::model::to_json(&state))
    }

    /// `GET /inventory`.
    pub async fn inventory(&self) -> Result<Value, Problem> {
        let mut prices: Map<String, Value> = Map::new();
        for item in self
            .ctx
            .store
            .query(ledger::CATALOG, "SKU#")
            .await
            .map_err(ActivityError::from)?
        {
            prices.insert(
                item.str("sku").unwrap_or_default().to_string(),
                json!(item.i64("price_cents")),
            );
        }
        let rows: Vec<Value> = activities::seed::inventory(&*self.ctx.store)
            .await
            .map_err(ActivityError::from)?
            .into_iter()
            .map(|s| {
                json!({
                    "sku": s.sku, "warehouse_id": s.warehouse_id, "on_hand": s.on_hand,
                    "reserved": s.reserved, "available": s.available, "shipped": s.shipped,
                    "price_cents": prices.get(&s.sku),
                })
            })
            .collect();
        Ok(json!({"inventory": rows}))
    }
}

/// Whether a task failure is a child execution's (the saga's Prepare running its
/// Express child): the saga records which of the child's steps failed, so the view keeps
/// that step rather than naming the task that ran the child.
fn child_failed(e: &HistoryEvent) -> bool {
    e.task_failed_event_details.as_ref().is_some_and(|d| {
        d["resourceType"] == "states"
            && d["resource"]
                .as_str()
                .is_some_and(|r| r.starts_with("startExecution"))
    })
}

/// The status an order's view shows and where it stopped, from its record, its
/// execution and the states that failed first and last in its history.
fn shown_status(
    order: &OrderRecord,
    execution: Option<&DescribeExecutionOutput>,
    first_failed: Option<String>,
    last_failed: Option<String>,
) -> (OrderStatus, Option<Value>) {
    let mut status = order.status;
    // The saga records the state that caught the failure (for a shipment, the Map
    // around it); the history says which step inside it failed.
    let mut failure = order.failure.clone().map(|f| {
        let mut v = activities::model::to_json(&f);
        if let Some(inner) = first_failed.clone() {
            if f.step.as_deref() != Some(inner.as_str()) {
                v["caught_by"] = json!(f.step);
                v["step"] = json!(inner);
            }
        }
        v
    });
    // The saga records COMPENSATING before it compensates; an execution that then
    // ends failed stopped in a compensation.
    if status == OrderStatus::Compensating && execution.is_some_and(|e| e.status.is_redrivable()) {
        status = OrderStatus::CompensationFailed;
        if let Some(e) = execution {
            failure = Some(json!({
                "step": last_failed,
                "error": e.error, "cause": e.cause,
                "compensating": failure,
            }));
        }
    }
    (status, failure)
}

/// An order's ledger as the Orders API shows it: its steps in saga order (without their
/// results) and its shipments (without their pick tokens).
fn steps_and_shipments(items: &[activities::store::Item]) -> (Vec<Value>, Vec<Value>) {
    let mut steps = Vec::new();
    let mut shipments = Vec::new();
    for i in items {
        match OrderItem::of(&i.key) {
            Some(OrderItem::Step) => {
                let mut d = serde_json::Map::clone(&i.doc);
                d.remove("result");
                d.remove("compensation");
                steps.push(Value::Object(d));
            }
            Some(OrderItem::Shipment) => {
                let mut d = serde_json::Map::clone(&i.doc);
                d.remove("pick_token");
                shipments.push(Value::Object(d));
            }
            Some(OrderItem::Order) | None => {}
        }
    }
    // The ledger in saga order (the store keeps it by key).
    // An amendment's steps come after the saga's, amendment by amendment (the
    // amendment's id is where a shipment's would be), each in the order they run.
    let rank = |v: &Value| {
        let step = v["step"].as_str().unwrap_or_default();
        let at = ledger::step_rank(step);
        let of = v["shipment_id"].as_str().unwrap_or_default().to_string();
        match amend::step_rank(step) {
            Some(n) => (usize::MAX, of, n),
            None => (at, of, 0),
        }
    };
    steps.sort_by_key(|v| rank(v));
    (steps, shipments)
}

/// The longest note a warehouse may give for a damaged pick (it is kept in the
/// order's ledger and shown with the order).
const MAX_DAMAGE_NOTE: usize = 500;

/// The warehouse's answer, as the OpenAPI schema states it: an object with no field
/// but an optional `damaged` note. Returns the note.
fn damage_note(body: &Value) -> Result<Option<&str>, Problem> {
    let invalid =
        |field: &str, rule: &str| Problem::invalid_field(code::REQUEST_INVALID, field, rule);
    let Some(answer) = body.as_object() else {
        return Err(invalid(
            "body",
            "must be a JSON object: {} when picked, {\"damaged\": \"why\"} when not",
        ));
    };
    if let Some(other) = answer.keys().find(|k| *k != "damaged") {
        return Err(invalid(
            other,
            "is not a field of a pick answer (the only one is damaged)",
        ));
    }
    match answer.get("damaged") {
        None => Ok(None),
        Some(Value::String(note)) => match activities::model::text_rule(note, MAX_DAMAGE_NOTE) {
            None => Ok(Some(note)),
            Some(rule) => Err(invalid("damaged", &rule)),
        },
        Some(_) => Err(invalid(
            "damaged",
            "must be a string saying what is damaged, or absent",
        )),
    }
}

fn decode_order(body: &Value) -> Result<Order, Problem> {
    activities::model::decode_fields(body).map_err(|f| order_invalid(vec![f]))
}

fn order_invalid(fields: Vec<FieldError>) -> Problem {
    let mut p = Problem::new(
        400,
        ErrorKind::OrderInvalid.name(),
        "the order breaks these rules",
    );
    p.fields = fields;
    p
}

/// The order's options (how long a warehouse may take), checked at the door: the saga
/// reads both and cannot run on a partial object, a string or a year-long heartbeat.
fn check_options(options: Option<&Value>) -> Result<Option<OrderOptions>, Vec<FieldError>> {
    let Some(options) = options else {
        return Ok(None);
    };
    match activities::model::decode_fields::<OrderOptions>(options) {
        Ok(o) => match o.check() {
            errors if errors.is_empty() => Ok(Some(o)),
            errors => Err(errors),
        },
        Err(mut f) => {
            f.field = match f.field.as_str() {
                "input" => "options".to_string(),
                inner => format!("options.{}", inner.trim_start_matches('.')),
            };
            Err(vec![f])
        }
    }
}

/// An amendment as the order view shows it (what it works towards is internal).
fn amendment_view(a: &ledger::AmendmentRecord) -> Value {
    let mut v = activities::model::to_json(a);
    if let Some(o) = v.as_object_mut() {
        o.remove("target");
    }
    v
}

/// `PATCH /orders/{id}`'s body: the version read, and the fields to change.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendPatch {
    version: u64,
    #[serde(default)]
    ship_to: Option<Address>,
    /// The complete new list of lines.
    #[serde(default)]
    lines: Option<Vec<OrderLine>>,
}

/// An amendment refused before it started, as the API answers it.
fn refusal(r: amend::Refusal, given: u64) -> Problem {
    match r {
        amend::Refusal::Stale { current } => Problem::new(
            409,
            code::ORDER_VERSION_STALE,
            format!(
                "version: the order is at version {current}, not {given}: it changed since \
                 it was read; read it again and resend the amendment"
            ),
        ),
        amend::Refusal::NotAmendable(why) => Problem::new(
            409,
            code::ORDER_NOT_AMENDABLE,
            format!("the order cannot be amended: {why}"),
        ),
        amend::Refusal::NoChange => Problem::invalid_field(
            code::REQUEST_INVALID,
            "body",
            "changes nothing: give ship_to or lines that differ from the order's",
        ),
        amend::Refusal::Error(e) => e.into(),
    }
}

/// An order as the Orders API shows it: its record, the status it really has (a
/// compensation that stopped shows COMPENSATION_FAILED), its steps and shipments from
/// the ledger, and its execution.
#[derive(Debug, serde::Serialize)]
pub struct OrderView {
    order_id: String,
    customer_id: String,
    /// The record's status, but for a compensation that stopped: see [`shown_status`].
    status: OrderStatus,
    cancel_requested: bool,
    lines: Vec<PricedLine>,
    total_cents: i64,
    currency: String,
    charged_cents: i64,
    refunded_cents: i64,
    ship_to: Address,
    shipments: Vec<Value>,
    steps: Vec<Value>,
    failure: Option<Value>,
    execution_arn: String,
    execution_status: Option<ExecutionStatus>,
    created_at: String,
    updated_at: String,
    /// What a user may do with the order now (`cancel`, `retry`): the console offers
    /// these buttons and no others, and the API refuses the rest with the reason in
    /// `actions_refused`.
    actions: Vec<&'static str>,
    /// Why each action not in `actions` would be refused.
    actions_refused: BTreeMap<&'static str, String>,
    /// Grows with every change of the order record: `PATCH /orders/{id}` sends it back.
    version: u64,
    /// The order's amendments, oldest first.
    amendments: Vec<Value>,
}

impl OrderView {
    pub fn status(&self) -> OrderStatus {
        self.status
    }
}

/// `GET /orders/{id}/retry`'s answer.
#[derive(Debug, serde::Serialize)]
struct RetryPreview {
    order_id: String,
    execution_arn: String,
    execution_status: Option<ExecutionStatus>,
    retryable: bool,
    /// Why not, when it is not retryable.
    reason: Option<String>,
    will_run_again: Vec<String>,
    kept: Vec<String>,
    order_status: OrderStatus,
}

/// An order status as the API spells it (`COMPENSATION_FAILED`).
fn status_name(status: OrderStatus) -> String {
    activities::model::to_json(&status)
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// An order whose saga never started: `retry` starts it.
fn unstarted(view: &OrderView) -> bool {
    view.execution_status.is_none() && !view.status.is_final()
}

/// The actions an order allows now, and why each other one is refused: the one place
/// the order view, the console's buttons and the API's refusals are derived from.
fn actions_of(
    view: &OrderView,
    amend_refusal: Option<String>,
) -> (Vec<&'static str>, BTreeMap<&'static str, String>) {
    let retry = if unstarted(view) {
        None
    } else {
        not_retryable_reason(view)
    };
    let (mut allowed, mut refused) = (Vec::new(), BTreeMap::new());
    let rules = [
        ("cancel", cancel_refusal(view)),
        ("retry", retry),
        ("amend", amend_refusal),
    ];
    for (action, reason) in rules {
        match reason {
            None => allowed.push(action),
            Some(r) => {
                refused.insert(action, r);
            }
        }
    }
    (allowed, refused)
}

/// Why cancelling an order would change nothing; None when it would stop the saga.
/// A cancellation is seen by the saga's next forward step, so it needs a saga that
/// runs (or has yet to start) and is not already undoing the order.
fn cancel_refusal(view: &OrderView) -> Option<String> {
    let id = &view.order_id;
    let status = status_name(view.status);
    if view.status.is_final() {
        return Some(format!("order '{id}' is {status} and cannot be cancelled"));
    }
    let step = view
        .failure
        .as_ref()
        .and_then(|f| f["step"].as_str())
        .map(|s| format!(" at {s}"))
        .unwrap_or_default();
    match (view.status, view.execution_status) {
        (OrderStatus::CompensationFailed, _) => Some(format!(
            "order '{id}' is COMPENSATION_FAILED: its saga stopped while undoing the \
             order{step}, so a cancellation has nothing left to stop; fix the cause and \
             retry the order (POST /orders/{id}/retry, `oms orders retry {id}`) to finish \
             undoing it"
        )),
        (OrderStatus::Compensating, _) => Some(format!(
            "order '{id}' is COMPENSATING: its saga is already undoing the order"
        )),
        (_, Some(s)) if s != ExecutionStatus::Running => Some(format!(
            "order '{id}' is {status} but its saga's execution is {}{step}: no step runs \
             to see a cancellation; retry the order (POST /orders/{id}/retry, `oms \
             orders retry {id}`) to run it again",
            s.as_str()
        )),
        _ => None,
    }
}

/// Why an order's execution cannot be redriven; None when it can.
fn not_retryable_reason(view: &OrderView) -> Option<String> {
    if view.status.is_final() {
        return Some(format!(
            "the order is {}: nothing is left to retry",
            status_name(view.status)
        ));
    }
    match view.execution_status {
        None => Some(
            "the order has no execution: its saga has not started, or its execution was \
             deleted by retention"
                .to_string(),
        ),
        Some(s) if s.is_redrivable() => None,
        Some(s) => Some(format!(
            "the execution is {}; only FAILED, TIMED_OUT or ABORTED executions can be \
             redriven",
            s.as_str()
        )),
    }
}

/// From an execution's history: the states still open where it stopped (a redrive
/// runs them again) and the states that exited (their results are kept).
fn open_and_kept_states(history: &[HistoryEvent]) -> (Vec<String>, Vec<String>) {
    let mut kept: Vec<String> = Vec::new();
    let mut open: Vec<String> = Vec::new();
    for e in history {
        let (Some(kind), Some(name)) = (e.kind(), e.state_name()) else {
            continue;
        };
        if kind.is_state_entered() {
            open.push(name.to_string());
        } else if kind.is_state_exited() {
            // A Map or Parallel that exited takes its children with it: their
            // failures were caught or are behind it.
            if let Some(pos) = open.iter().rposition(|o| o == name) {
                open.truncate(pos);
            }
            if !kept.iter().any(|k| k == name) {
                kept.push(name.to_string());
            }
        }
    }
    open.dedup();
    kept.retain(|k| !open.contains(k));
    (open, kept)
}

/// What the order saga starts from: the order (paying by reference) and, when the
/// submission gave them, its options (ApplyDefaults fills them in otherwise).
#[derive(serde::Serialize)]
struct SagaInput<'a> {
    #[serde(flatten)]
    order: &'a Order,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<OrderOptions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: OrderStatus, execution: Option<ExecutionStatus>) -> OrderView {
        let address = Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Boston".into(),
            postal_code: "02101".into(),
            country: "US".into(),
        };
        OrderView {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            status,
            cancel_requested: false,
            lines: Vec::new(),
            total_cents: 0,
            currency: "USD".into(),
            charged_cents: 0,
            refunded_cents: 0,
            ship_to: address,
            shipments: Vec::new(),
            steps: Vec::new(),
            failure: None,
            execution_arn: "arn".into(),
            execution_status: execution,
            created_at: String::new(),
            updated_at: String::new(),
            version: 1,
            amendments: Vec::new(),
            actions: Vec::new(),
            actions_refused: BTreeMap::new(),
        }
    }

    #[test]
    fn an_order_allows_only_what_can_change_something() {
        use ExecutionStatus::{Failed, Running, Succeeded};
        use OrderStatus::*;
        // (status, execution, allowed, words the refusal of each other action holds)
        type Case = (
            OrderStatus,
            Option<ExecutionStatus>,
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (Pending, None, &["cancel", "retry"], &[]),
            (Fulfilling, Some(Running), &["cancel"], &["RUNNING"]),
            (Fulfilling, Some(Failed), &["retry"], &["FAILED", "retry"]),
            (Compensating, Some(Running), &[], &["already", "RUNNING"]),
            (
                CompensationFailed,
                Some(Failed),
                &["retry"],
                &["COMPENSATION_FAILED", "retry"],
            ),
            (Completed, Some(Succeeded), &[], &["COMPLETED"]),
            (Cancelled, Some(Failed), &[], &["CANCELLED"]),
        ];
        for (status, execution, allowed, words) in cases {
            let not_amendable = Some("not amendable".to_string());
            let (actions, refused) = actions_of(&view(*status, *execution), not_amendable);
            assert_eq!(&actions, allowed, "{status:?} {execution:?}");
            let all: Vec<&str> = refused.values().map(String::as_str).collect();
            for w in *words {
                assert!(
                    all.iter().any(|r| r.contains(w)),
                    "{status:?}: {w} in {all:?}"
                );
            }
            assert_eq!(refused.len() + actions.len(), 3, "{refused:?}");
        }
        // Amending follows its own rule (activities::amend's), passed in.
        let (actions, _) = actions_of(&view(Fulfilling, Some(Running)), None);
        assert_eq!(actions, ["cancel", "amend"]);
    }

    fn option_fields(options: Value) -> Vec<String> {
        check_options(Some(&options))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.field)
            .collect()
    }

    #[test]
    fn options_the_saga_cannot_run_are_refused_naming_the_field() {
        let both = json!({"pick_timeout_seconds": 600, "pick_heartbeat_seconds": 60});
        assert!(option_fields(both).is_empty());
        assert_eq!(check_options(None), Ok(None));
        let cases = [
            (
                json!({"pick_timeout_seconds": 5}),
                "options.pick_heartbeat_seconds",
            ),
            (json!("x"), "options"),
            (json!([]), "options"),
            (
                json!({"pick_timeout_seconds": 1e30, "pick_heartbeat_seconds": 3600}),
                "options.pick_timeout_seconds",
            ),
            (
                json!({"pick_timeout_seconds": 31_536_001u64, "pick_heartbeat_seconds": 1}),
                "options.pick_timeout_seconds",
            ),
            (
                json!({"pick_timeout_seconds": 5, "pick_heartbeat_seconds": 0}),
                "options.pick_heartbeat_seconds",
            ),
            (
                json!({"pick_timeout_seconds": 5, "pick_heartbeat_seconds": -1}),
                "options.pick_heartbeat_seconds",
            ),
            (
                json!({"pick_timeout_seconds": 5, "pick_heartbeat_seconds": 1, "x": 1}),
                "options.x",
            ),
        ];
        for (options, field) in cases {
            assert_eq!(option_fields(options.clone()), [field], "{options}");
        }
    }
}
