//! The order system inside `oms up`: the order saga registered with the local Step
//! Functions, its activities run in-process, the simulated warehouse that answers pick
//! requests, and the operations the Orders API serves. It sees executions only through
//! the `StepFunctions` trait and orders only through the activities' store.

use crate::invoker::Handler;
use activities::activity::{self, Ctx};
use activities::errors::{ActivityError, ErrorKind};
use activities::ledger::{self, from_item, IndexBy, OrderRecord, ShipmentRecord};
use activities::model::{
    FieldError, Order, OrderOptions, OrderStatus, ShipmentRef, ShipmentStatus,
};
use asl::{Failure, TaskCall};
use saga_core::api::{
    ApiError, CreateStateMachineInput, DescribeExecutionInput, GetExecutionHistoryInput,
    ListStateMachinesInput, RedriveExecutionInput, SendTaskFailureInput, SendTaskSuccessInput,
    StartExecutionInput, StepFunctions, UpdateStateMachineInput,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const MACHINE_NAME: &str = "order-saga";
/// The saga, as kept in statemachines/ and deployed by the CDK app.
pub const DEFINITION: &str = include_str!("../../statemachines/order-saga.asl.json");
/// The order `oms up` suggests on its first screen.
pub const DEMO_ORDER: &str = r#"{"customer_id":"c-1","lines":[{"sku":"TSHIRT-BLK-M","quantity":2}],"payment":{"token":"tok_visa"},"ship_to":{"name":"Ada Lovelace","line1":"1 Main St","city":"Boston","postal_code":"02101","country":"US"}}"#;

/// Local function names: `oms-` and the activity's function name.
pub const FUNCTION_PREFIX: &str = "oms-";

/// The definition with its `${...}` substitutions filled in for local functions.
pub fn local_definition(region: &str, account: &str) -> Result<String, String> {
    let mut text = DEFINITION.to_string();
    for a in activities::ACTIVITIES {
        let arn = format!(
            "arn:aws:lambda:{region}:{account}:function:{FUNCTION_PREFIX}{}",
            a.function()
        );
        text = text.replace(&format!("${{{}FunctionArn}}", a.name), &arn);
    }
    if let Some(at) = text.find("${") {
        let name: String = text[at..].chars().take_while(|c| *c != '}').collect();
        return Err(format!(
            "statemachines/order-saga.asl.json: no value for the substitution {name}}}"
        ));
    }
    Ok(text)
}

/// The activities as the in-process handler of Task states whose function is
/// `oms-<function>`.
pub struct ActivitiesHandler {
    ctx: Ctx,
    warehouse: Arc<Warehouse>,
}

impl ActivitiesHandler {
    pub fn new(ctx: Ctx, warehouse: Arc<Warehouse>) -> ActivitiesHandler {
        ActivitiesHandler { ctx, warehouse }
    }
}

/// An activity's error as a Lambda function's error reaches Step Functions: the name
/// as the error, and AWS's JSON error payload as the cause.
fn lambda_failure(e: &ActivityError) -> Failure {
    Failure::new(
        e.name(),
        json!({"errorType": e.name(), "errorMessage": e.message}).to_string(),
    )
}

#[async_trait::async_trait]
impl Handler for ActivitiesHandler {
    async fn call(&self, call: &TaskCall) -> Result<Value, Failure> {
        let function = call.function.as_deref().unwrap_or(&call.resource);
        let name = function.rsplit(':').next().unwrap_or(function);
        let def = name
            .strip_prefix(FUNCTION_PREFIX)
            .and_then(activity::by_function)
            .ok_or_else(|| {
                Failure::new(
                    "Lambda.ResourceNotFoundException",
                    format!("Function not found: {function}"),
                )
            })?;
        let out = activity::invoke(&self.ctx, def.key, &call.payload)
            .await
            .map_err(|e| lambda_failure(&e))?;
        if def.key == "pick" {
            if let Some(token) = call.payload.get("task_token").and_then(Value::as_str) {
                let target = ShipmentRef::of_payload(&call.payload);
                self.warehouse.requested(target, token.to_string());
            }
        }
        Ok(out)
    }
}

/// The warehouses' side of picking. `oms up` simulates them by default: each pick
/// request is answered as picked after `delay`. With the simulation off, picks wait for
/// `POST /shipments/{id}/picked`.
pub struct Warehouse {
    ctx: Ctx,
    sfn: OnceLock<Arc<dyn StepFunctions>>,
    pub simulate: bool,
    pub delay: Duration,
}

impl Warehouse {
    pub fn new(ctx: Ctx, simulate: bool, delay: Duration) -> Warehouse {
        Warehouse {
            ctx,
            sfn: OnceLock::new(),
            simulate,
            delay,
        }
    }

    /// The Step Functions the answers go to (set once it exists: it needs the
    /// invoker, which needs this).
    pub fn connect(&self, sfn: Arc<dyn StepFunctions>) {
        let _ = self.sfn.set(sfn);
    }

    fn requested(self: &Arc<Self>, target: ShipmentRef, _token: String) {
        if !self.simulate {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.delay).await;
            // A warehouse answers again until its answer is taken: a full disk or a
            // busy store must not leave the saga waiting for the pick's timeout.
            let mut wait = Duration::from_millis(100);
            loop {
                match me.answer(&target, None).await {
                    Ok(_) => return,
                    Err(e) if e.retryable() => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        eprintln!(
                            "oms: simulated warehouse could not answer the pick of {}: {e}",
                            target.shipment_id
                        );
                        return;
                    }
                }
            }
        });
    }

    /// Answers a pick request: picks the shipment (or records `damaged`) and answers
    /// the waiting execution. Returns the shipment's state or the pick's error.
    pub async fn answer(
        &self,
        target: &ShipmentRef,
        damaged: Option<&str>,
    ) -> Result<Result<Value, ActivityError>, ActivityError> {
        let (token, outcome) = activity::confirm_pick(&self.ctx, target, damaged).await?;
        if let (Some(token), Some(sfn)) = (token, self.sfn.get()) {
            let sent = match &outcome {
                Ok(state) => sfn
                    .send_task_success(SendTaskSuccessInput {
                        task_token: token,
                        output: serde_json::to_string(state).unwrap_or_default(),
                    })
                    .await
                    .map(|_| ()),
                Err(e) => sfn
                    .send_task_failure(SendTaskFailureInput {
                        task_token: token,
                        error: Some(e.name().to_string()),
                        cause: Some(e.message.clone()),
                    })
                    .await
                    .map(|_| ()),
            };
            // A token that no longer waits (the task timed out, the execution ended)
            // is not an error of the warehouse's answer; a store that cannot take the
            // answer now is, and the warehouse answers again (it is idempotent).
            match sent {
                Err(e) if e.code.as_str() == "ServiceUnavailable" => {
                    return Err(ActivityError::new(ErrorKind::StoreUnavailable, e.message));
                }
                Err(e) => eprintln!(
                    "oms: pick answer for {} not delivered: {}",
                    target.shipment_id, e.message
                ),
                Ok(()) => {}
            }
        }
        Ok(outcome.map(|s| serde_json::to_value(s).unwrap_or_default()))
    }

    /// Answers the pick requests left waiting by a previous run (they are stored with
    /// their tokens, the simulation's timers are not).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, String> {
        if !self.simulate {
            return Ok(0);
        }
        let mut n = 0;
        for item in self
            .ctx
            .store
            .scan("ORDER#")
            .await
            .map_err(|e| e.to_string())?
        {
            if !item.key.sk.starts_with("SHIPMENT#") {
                continue;
            }
            let Ok(s) = from_item::<ShipmentRecord>(&item) else {
                continue;
            };
            // Picked too: a crash after the pick was recorded but before the saga took
            // the answer would leave the saga waiting for the pick's timeout (found by
            // the power-loss campaign). Answering again is idempotent; a token that no
            // longer waits is refused and logged.
            if let (Some(token), ShipmentStatus::Reserved | ShipmentStatus::Picked) =
                (s.pick_token, s.status)
            {
                let order_id = item.key.pk.trim_start_matches("ORDER#").to_string();
                self.requested(
                    ShipmentRef {
                        order_id,
                        shipment_id: s.shipment_id,
                    },
                    token,
                );
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The Orders API's own error codes: what is wrong with a request as HTTP (its
/// body, type, size, origin or route) rather than with an order. The activities' codes
/// (`Order.Invalid`, `Shipment.NotFound`, ...) are in `activities::errors`.
pub mod code {
    /// The request is malformed: its body is not JSON or not the shape the route takes.
    pub const REQUEST_INVALID: &str = "Request.Invalid";
    /// The body is larger than the server accepts.
    pub const REQUEST_TOO_LARGE: &str = "Request.TooLarge";
    /// The body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "Request.UnsupportedMediaType";
    /// A browser sent a state-changing request from a page of another origin.
    pub const CROSS_ORIGIN: &str = "Request.CrossOrigin";
    /// No route has this path.
    pub const ROUTE_NOT_FOUND: &str = "Route.NotFound";
    /// The route exists, but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "Route.MethodNotAllowed";
    /// The server failed while answering.
    pub const INTERNAL_FAILURE: &str = "Server.InternalFailure";
    /// The fault plans of `PUT /admin/faults` are not JSON or break a rule.
    pub const FAULTS_INVALID: &str = "Faults.Invalid";
    /// An Idempotency-Key already names an order with other contents.
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IdempotencyKey.Reused";
    /// The server requires credentials (off loopback) and the request had none valid.
    pub const UNAUTHORIZED: &str = "Auth.Required";
    /// `/admin/faults` on a server started without `--fault-injection`.
    pub const FAULTS_DISABLED: &str = "Faults.Disabled";
    /// A loopback server was called by a name that is not its own (DNS rebinding).
    pub const HOST_NOT_ALLOWED: &str = "Request.HostNotAllowed";
    /// Every code above, for the test that the OpenAPI document lists them.
    #[cfg(test)]
    pub const ALL: &[&str] = &[
        REQUEST_INVALID,
        REQUEST_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        CROSS_ORIGIN,
        ROUTE_NOT_FOUND,
        METHOD_NOT_ALLOWED,
        INTERNAL_FAILURE,
        FAULTS_INVALID,
        IDEMPOTENCY_KEY_REUSED,
        UNAUTHORIZED,
        FAULTS_DISABLED,
        HOST_NOT_ALLOWED,
    ];
}

/// An Orders API error: an HTTP status, a code and a message, and for bad input the
/// fields and the rules they break.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
        }
    }
    /// Bad input in one field: a 400 whose message names the field and the rule.
    pub fn invalid_field(code: &str, field: &str, rule: &str) -> Problem {
        let mut p = Problem::new(400, code, format!("{field}: {rule}"));
        p.fields = vec![FieldError {
            field: field.to_string(),
            rule: rule.to_string(),
        }];
        p
    }
    pub fn body(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            v["fields"] = serde_json::to_value(&self.fields).unwrap_or_default();
        }
        v
    }
}

impl From<ActivityError> for Problem {
    fn from(e: ActivityError) -> Problem {
        let status = match e.kind {
            ErrorKind::OrderInvalid => 400,
            ErrorKind::OrderNotFound | ErrorKind::ShipmentNotFound => 404,
            ErrorKind::OrderConflict | ErrorKind::OrderCancelled => 409,
            k if k.retryable() => 503,
            _ => 422,
        };
        Problem::new(status, e.name(), e.message)
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        Problem::new(502, e.code.as_str(), e.message)
    }
}

pub struct Orders {
    pub ctx: Ctx,
    pub sfn: Arc<dyn StepFunctions>,
    pub machine_arn: String,
    pub warehouse: Arc<Warehouse>,
}

/// How far back the unfiltered listing goes, in months; a search by customer or SKU
/// has no such bound.
const MONTHS_LISTED: usize = 24;
/// Index entries read per Query.
const INDEX_PAGE: usize = 100;
/// Index entries one listing request may look at before it answers with what it found
/// and a cursor (a rare status filter would otherwise read everything).
const MAX_EXAMINED: usize = 2_000;

/// `YYYY-MM` of `now`'s month and the `n - 1` months before it, newest first.
fn recent_months(now: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<String> {
    use chrono::Datelike;
    let (mut year, mut month) = (now.year(), now.month());
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(format!("{year:04}-{month:02}"));
        (year, month) = if month == 1 {
            (year - 1, 12)
        } else {
            (year, month - 1)
        };
    }
    out
}

/// What a listing's cursor is bound to: its filters (a cursor resumes only the
/// listing it came from; the page size may change between pages).
fn cursor_scope(filter: &BTreeMap<String, String>) -> String {
    let field = |k: &str| filter.get(k).cloned().unwrap_or_default();
    json!([field("customer_id"), field("sku"), field("status")]).to_string()
}

/// The check a cursor carries: a digest of its scope and sort key. It is not a secret
/// (the derivation is in this file), so it stops a mangled cursor or one from another
/// listing, not a determined forger, who could at most start a listing, with filters
/// they may use anyway, at an index key of their choosing.
fn cursor_check(scope: &str, sk: &str) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("oms-cursor\0{scope}\0{sk}").as_bytes());
    let mut check = [0; 8];
    check.copy_from_slice(&d[..8]);
    check
}

/// A cursor is its check and then the index sort key it resumes below, hex-encoded so
/// that it travels in a query string as it is.
fn encode_cursor(scope: &str, sk: &str) -> String {
    let check = cursor_check(scope, sk);
    check
        .iter()
        .chain(sk.as_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sort key a cursor resumes below, if this API issued it for a listing with the
/// same scope and it holds an index sort key (`{created_at}#{order_id}`).
fn decode_cursor(scope: &str, cursor: &str) -> Option<String> {
    if !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let (check, sk) = bytes.split_at_checked(8)?;
    let sk = String::from_utf8(sk.to_vec()).ok()?;
    let (created_at, order_id) = sk.split_once('#')?;
    let well_formed =
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok() && !order_id.is_empty();
    (well_formed && check == cursor_check(scope, &sk)).then_some(sk)
}

/// Where a listing resumes: below the sort key of its `cursor`, which must be a
/// next_cursor this API returned for the same filters.
fn resume_point(scope: &str, cursor: Option<&String>) -> Result<Option<String>, Problem> {
    let invalid =
        |rule: &str| Problem::invalid_field(ErrorKind::OrderInvalid.name(), "cursor", rule);
    match cursor.map(String::as_str) {
        None => Ok(None),
        Some("") => Err(invalid(
            "must not be empty: leave it out for the first page",
        )),
        Some(c) => decode_cursor(scope, c).map(Some).ok_or_else(|| {
            invalid(
                "is not valid: pass the next_cursor of the previous page, with the same filters",
            )
        }),
    }
}

/// Execution statuses a redrive can restart.
const REDRIVABLE: [&str; 3] = ["FAILED", "TIMED_OUT", "ABORTED"];

impl Orders {
    /// Registers the order saga (created, or updated when its definition changed).
    pub async fn start(
        ctx: Ctx,
        sfn: Arc<dyn StepFunctions>,
        warehouse: Arc<Warehouse>,
        region: &str,
        account: &str,
    ) -> Result<Orders, String> {
        let definition = local_definition(region, account)?;
        let machines = sfn
            .list_state_machines(ListStateMachinesInput::default())
            .await
            .map_err(|e| e.message)?;
        let existing = machines
            .state_machines
            .iter()
            .find(|m| m.name == MACHINE_NAME)
            .map(|m| m.state_machine_arn.clone());
        let machine_arn = match existing {
            Some(arn) => {
                sfn.update_state_machine(UpdateStateMachineInput {
                    state_machine_arn: arn.clone(),
                    definition: Some(definition),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot update {MACHINE_NAME}: {}", e.message))?;
                arn
            }
            None => {
                sfn.create_state_machine(CreateStateMachineInput {
                    name: MACHINE_NAME.into(),
                    definition,
                    role_arn: format!("arn:aws:iam::{account}:role/oms-order-saga"),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot create {MACHINE_NAME}: {}", e.message))?
                .state_machine_arn
            }
        };
        Ok(Orders::attach(ctx, sfn, warehouse, machine_arn))
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
                "Order.Invalid",
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
        let options = check_options(options_given.as_ref());
        match activity::check_order(&self.ctx, &order).await? {
            Ok(_) if options.is_empty() => {}
            Ok(_) => return Err(order_invalid(options)),
            Err(mut fields) => {
                fields.extend(options);
                return Err(order_invalid(fields));
            }
        }
        // The gateway keeps the token: the saga's input, and so its history, carries
        // only the reference.
        let method = activity::payment_method(&self.ctx, &order).await?;
        order.payment = activities::model::Payment::method(&method);
        // Placing here, not only in the saga, means the order can be read as soon as
        // this answers. A transient failure is retried a few times before giving up.
        let mut attempt = 0;
        loop {
            match activity::place_order(&self.ctx, order.clone()).await {
                Ok(_) => break,
                Err(e) if e.retryable() && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut input = serde_json::to_value(&order).unwrap_or_default();
        if let Some(o) = options_given {
            input["options"] = o;
        }
        let arn = self.start_saga(&order.order_id, input).await?;
        let status = self.view(&order.order_id).await?["status"].clone();
        Ok(json!({"order_id": order.order_id, "execution_arn": arn, "status": status}))
    }

    /// Starts the saga of a placed order, named after it: starting it again is a no-op.
    /// If this fails, the order stays PENDING with no execution; submitting it again,
    /// retrying or cancelling it starts the saga (`start_placed`).
    async fn start_saga(&self, order_id: &str, input: Value) -> Result<String, Problem> {
        let started = self
            .sfn
            .start_execution(StartExecutionInput {
                state_machine_arn: self.machine_arn.clone(),
                name: Some(order_id.to_string()),
                input: Some(input.to_string()),
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
        let input = json!({
            "order_id": placed.order_id,
            "customer_id": placed.customer_id,
            "lines": placed.lines.iter()
                .map(|l| json!({"sku": l.sku, "quantity": l.quantity}))
                .collect::<Vec<_>>(),
            "payment": activities::model::Payment::method(&method),
            "ship_to": placed.ship_to,
        });
        self.start_saga(order_id, input).await.map(Some)
    }

    /// `GET /orders/{id}`: the order, its ledger, its shipments and where it stopped.
    pub async fn view(&self, order_id: &str) -> Result<Value, Problem> {
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
            .is_some_and(|e| e.status.as_str() != "RUNNING");
        if ended && !order.status.is_final() {
            (items, order) = self.ledger(order_id).await?;
        }
        let mut steps = Vec::new();
        let mut shipments = Vec::new();
        for i in &items {
            if i.key.sk.starts_with("STEP#") {
                let mut d = i.doc.clone();
                d.remove("result");
                d.remove("compensation");
                steps.push(Value::Object(d));
            } else if i.key.sk.starts_with("SHIPMENT#") {
                let mut d = i.doc.clone();
                d.remove("pick_token");
                shipments.push(Value::Object(d));
            }
        }
        // The ledger in saga order (the store keeps it by key).
        let rank = |v: &Value| {
            let step = v["step"].as_str().unwrap_or_default();
            let at = ["reserve", "charge", "pick", "ship"]
                .iter()
                .position(|s| *s == step)
                .unwrap_or(9);
            (
                at,
                v["shipment_id"].as_str().unwrap_or_default().to_string(),
            )
        };
        steps.sort_by_key(|v| rank(v));
        let execution_status = execution.as_ref().map(|e| e.status.as_str().to_string());
        let mut status = order.status;
        let (first_failed, last_failed) = if order.failure.is_some() {
            self.failed_states(&arn).await
        } else {
            (None, None)
        };
        // The saga records the state that caught the failure (for a shipment, the Map
        // around it); the history says which step inside it failed.
        let mut failure = order.failure.clone().map(|f| {
            let mut v = serde_json::to_value(&f).unwrap_or_default();
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
        if status == OrderStatus::Compensating
            && execution_status
                .as_deref()
                .is_some_and(|s| REDRIVABLE.contains(&s))
        {
            status = OrderStatus::CompensationFailed;
            if let Some(e) = &execution {
                failure = Some(json!({
                    "step": last_failed,
                    "error": e.error, "cause": e.cause,
                    "compensating": failure,
                }));
            }
        }
        Ok(json!({
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "status": status,
            "cancel_requested": order.cancel_requested,
            "lines": order.lines,
            "total_cents": order.total_cents,
            "currency": order.currency,
            "charged_cents": order.charged_cents,
            "refunded_cents": order.refunded_cents,
            "ship_to": order.ship_to,
            "shipments": shipments,
            "steps": steps,
            "failure": failure,
            "execution_arn": arn,
            "execution_status": execution_status,
            "created_at": order.created_at,
            "updated_at": order.updated_at,
        }))
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
        let Some(order_item) = items.iter().find(|i| i.key.sk == "ORDER") else {
            return Err(Problem::new(
                404,
                "Order.NotFound",
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
        let mut open: Vec<String> = Vec::new();
        let (mut first, mut last) = (None, None);
        for e in &history {
            let name = e["stateEnteredEventDetails"]["name"]
                .as_str()
                .or_else(|| e["stateExitedEventDetails"]["name"].as_str());
            let kind = e["type"].as_str().unwrap_or_default();
            if kind.ends_with("StateEntered") {
                open.push(name.unwrap_or_default().to_string());
            } else if kind.ends_with("StateExited") {
                if let Some(n) = name {
                    if let Some(pos) = open.iter().rposition(|o| o == n) {
                        open.truncate(pos);
                    }
                }
            } else if kind == "ExecutionRedriven" {
                open.clear();
            } else if (kind.starts_with("Task") || kind.starts_with("Lambda"))
                && (kind.ends_with("Failed") || kind.ends_with("TimedOut"))
            {
                if first.is_none() {
                    first = open.last().cloned();
                }
                last = open.last().cloned();
            }
        }
        (first, last)
    }

    async fn history(&self, arn: &str) -> Result<Vec<Value>, Problem> {
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
            for e in page.events {
                events.push(serde_json::to_value(e).unwrap_or_default());
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(events),
            }
        }
    }

    /// `GET /orders`: orders by status, customer or SKU, newest first, a page at a time.
    pub async fn list(&self, filter: &BTreeMap<String, String>) -> Result<Value, Problem> {
        let limit: usize = match filter.get("limit") {
            None => 50,
            Some(l) => l
                .parse()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| {
                    Problem::new(400, "Order.Invalid", "limit: an integer from 1 to 500")
                })?,
        };
        let status_filter = match filter.get("status") {
            Some(s) => Some(
                serde_json::from_value::<OrderStatus>(Value::String(s.clone())).map_err(|_| {
                    Problem::new(
                        400,
                        "Order.Invalid",
                        format!("status: '{s}' is not an order status"),
                    )
                })?,
            ),
            None => None,
        };
        let scope = cursor_scope(filter);
        let mut before = resume_point(&scope, filter.get("cursor"))?;
        let (customer, sku) = (filter.get("customer_id"), filter.get("sku"));
        // The narrowest index partition that holds every match; newest first.
        let partitions: Vec<String> = match (customer, sku) {
            (Some(c), _) => vec![ledger::index_pk(IndexBy::Customer, c)],
            (None, Some(k)) => vec![ledger::index_pk(IndexBy::Sku, k)],
            (None, None) => recent_months(chrono::Utc::now(), MONTHS_LISTED)
                .iter()
                .map(|m| ledger::index_pk(IndexBy::Month, m))
                .collect(),
        };
        let mut out = Vec::new();
        let mut next = None;
        let mut examined = 0;
        'partitions: for pk in partitions {
            loop {
                let page = self
                    .ctx
                    .store
                    .query_back(&pk, before.as_deref(), INDEX_PAGE)
                    .await
                    .map_err(ActivityError::from)?;
                for entry in &page {
                    // A filter that matches rarely must not read the whole history in
                    // one request: stop and hand back where to go on.
                    if examined == MAX_EXAMINED {
                        next = before.clone();
                        break 'partitions;
                    }
                    examined += 1;
                    let Some(order_id) = ledger::indexed_order_id(entry) else {
                        continue;
                    };
                    let Some(item) = self
                        .ctx
                        .store
                        .get(&ledger::order_key(order_id))
                        .await
                        .map_err(ActivityError::from)?
                    else {
                        continue;
                    };
                    let Ok(o) = from_item::<OrderRecord>(&item) else {
                        continue;
                    };
                    if customer.is_some_and(|c| *c != o.customer_id)
                        || sku.is_some_and(|s| !o.lines.iter().any(|l| l.sku == *s))
                    {
                        before = Some(entry.key.sk.clone());
                        continue;
                    }
                    let shown = self.summary(&o).await;
                    let wanted = status_filter.is_none_or(|want| {
                        serde_json::to_value(want).ok().as_ref() == Some(&shown["status"])
                    });
                    if wanted {
                        if out.len() == limit {
                            next = before.clone();
                            break 'partitions;
                        }
                        out.push(shown);
                    }
                    before = Some(entry.key.sk.clone());
                }
                if page.len() < INDEX_PAGE {
                    break;
                }
            }
        }
        let next_cursor = next.map(|sk| encode_cursor(&scope, &sk));
        Ok(json!({"orders": out, "next_cursor": next_cursor}))
    }

    async fn summary(&self, o: &OrderRecord) -> Value {
        let status = if o.status == OrderStatus::Compensating {
            match self.view(&o.order_id).await {
                Ok(v) => v["status"].clone(),
                Err(_) => json!(o.status),
            }
        } else {
            json!(o.status)
        };
        json!({
            "order_id": o.order_id, "customer_id": o.customer_id, "status": status,
            "total_cents": o.total_cents, "skus": o.lines.iter().map(|l| &l.sku).collect::<Vec<_>>(),
            "created_at": o.created_at, "execution_arn": o.execution_arn,
        })
    }

    /// `POST /orders/{id}/cancel`.
    pub async fn cancel(&self, order_id: &str) -> Result<Value, Problem> {
        let order = activity::request_cancel(&*self.ctx.store, order_id).await?;
        // An order whose saga never started is cancelled by starting it: its first step
        // sees the request and the saga ends CANCELLED, having taken nothing.
        if !order.status.is_final() {
            self.start_placed(order_id).await?;
        }
        if order.status.is_final() {
            return Err(Problem::new(
                409,
                "Order.Conflict",
                format!(
                    "order '{order_id}' is {} and cannot be cancelled",
                    json!(order.status).as_str().unwrap_or_default()
                ),
            ));
        }
        Ok(json!({"order_id": order_id, "cancel_requested": true, "status": order.status}))
    }

    /// `GET /orders/{id}/retry`: what a redrive would do, from the execution's history:
    /// the states that did not finish run again; the results of those that did are
    /// kept. (Step Functions restarts from the state that failed.)
    pub async fn retry_preview(&self, order_id: &str) -> Result<Value, Problem> {
        let view = self.view(order_id).await?;
        let arn = view["execution_arn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = view["execution_status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // No execution: the saga has not started, or retention deleted the execution
        // (oms.toml's retention_days; AWS forgets executions after 90 days).
        let history = if view["execution_status"].is_null() {
            Vec::new()
        } else {
            self.history(&arn).await?
        };
        let mut kept: Vec<String> = Vec::new();
        let mut open: Vec<String> = Vec::new();
        for e in &history {
            let kind = e["type"].as_str().unwrap_or_default();
            if kind.ends_with("StateEntered") {
                if let Some(n) = e["stateEnteredEventDetails"]["name"].as_str() {
                    open.push(n.to_string());
                }
            } else if kind.ends_with("StateExited") {
                if let Some(n) = e["stateExitedEventDetails"]["name"].as_str() {
                    // A Map or Parallel that exited takes its children with it: their
                    // failures were caught or are behind it.
                    if let Some(pos) = open.iter().rposition(|o| o == n) {
                        open.truncate(pos);
                    }
                    if !kept.contains(&n.to_string()) {
                        kept.push(n.to_string());
                    }
                }
            }
        }
        open.dedup();
        let order_final = matches!(view["status"].as_str(), Some("COMPLETED" | "CANCELLED"));
        let retryable = REDRIVABLE.contains(&status.as_str()) && !order_final;
        Ok(json!({
            "order_id": order_id,
            "execution_arn": arn,
            "execution_status": status,
            "retryable": retryable,
            "reason": if retryable {
                Value::Null
            } else if order_final {
                json!(format!("the order is {}: nothing is left to retry", view["status"].as_str().unwrap_or_default()))
            } else if view["execution_status"].is_null() {
                json!("the order has no execution: its saga has not started, or its execution was deleted by retention")
            } else {
                json!(format!("the execution is {status}; only FAILED, TIMED_OUT or ABORTED executions can be redriven"))
            },
            "will_run_again": if retryable { json!(open) } else { json!([]) },
            "kept": kept.into_iter().filter(|k| !open.contains(k)).collect::<Vec<_>>(),
            "order_status": view["status"],
        }))
    }

    /// `POST /orders/{id}/retry`: redrives the order's execution.
    pub async fn retry(&self, order_id: &str) -> Result<Value, Problem> {
        if let Some(arn) = self.start_placed(order_id).await? {
            return Ok(json!({"order_id": order_id, "execution_arn": arn, "started": true}));
        }
        let preview = self.retry_preview(order_id).await?;
        if preview["retryable"] != true {
            return Err(Problem::new(
                409,
                "Order.NotRetryable",
                preview["reason"]
                    .as_str()
                    .unwrap_or("not retryable")
                    .to_string(),
            ));
        }
        let arn = preview["execution_arn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.sfn
            .redrive_execution(RedriveExecutionInput {
                execution_arn: arn.clone(),
                client_token: None,
            })
            .await?;
        Ok(
            json!({"order_id": order_id, "execution_arn": arn, "will_run_again": preview["will_run_again"]}),
        )
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
        Ok(serde_json::to_value(state).unwrap_or_default())
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
    let mut p = Problem::new(400, "Order.Invalid", "the order breaks these rules");
    p.fields = fields;
    p
}

/// The order's options (how long a warehouse may take), checked at the door: the saga
/// reads both and cannot run on a partial object, a string or a year-long heartbeat.
fn check_options(options: Option<&Value>) -> Vec<FieldError> {
    let Some(options) = options else {
        return Vec::new();
    };
    match activities::model::decode_fields::<OrderOptions>(options) {
        Ok(o) => o.check(),
        Err(mut f) => {
            f.field = match f.field.as_str() {
                "input" => "options".to_string(),
                inner => format!("options.{}", inner.trim_start_matches('.')),
            };
            vec![f]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option_fields(options: Value) -> Vec<String> {
        check_options(Some(&options))
            .into_iter()
            .map(|f| f.field)
            .collect()
    }

    #[test]
    fn options_the_saga_cannot_run_are_refused_naming_the_field() {
        let both = json!({"pick_timeout_seconds": 600, "pick_heartbeat_seconds": 60});
        assert!(option_fields(both).is_empty());
        assert!(check_options(None).is_empty());
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

    /// The OpenAPI document is written by hand; the door's rules are the generated
    /// schema's. They must say the same.
    #[test]
    fn openapi_publishes_the_options_rules_the_door_checks() {
        let doc: Value = serde_json::from_str(crate::orders_http::OPENAPI).unwrap();
        let published = &doc["components"]["schemas"]["OrderSubmission"]["properties"]["options"];
        let generated: Value = serde_json::from_str(include_str!(
            "../../statemachines/schemas/OrderOptions.json"
        ))
        .unwrap();
        assert_eq!(published["required"], generated["required"]);
        assert_eq!(published["additionalProperties"], json!(false));
        assert_eq!(generated["additionalProperties"], json!(false));
        for field in ["pick_timeout_seconds", "pick_heartbeat_seconds"] {
            for rule in ["type", "minimum", "maximum"] {
                assert_eq!(
                    published["properties"][field][rule], generated["properties"][field][rule],
                    "{field}.{rule}"
                );
            }
        }
    }

    #[test]
    fn recent_months_cross_the_year() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-02-10T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            recent_months(at, 4),
            ["2026-02", "2026-01", "2025-12", "2025-11"]
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let scope = cursor_scope(&BTreeMap::from([(
            "sku".to_string(),
            "SOCKS-3PK".to_string(),
        )]));
        let sk = "2026-11-26T16:00:00.000Z#ord-1";
        let c = encode_cursor(&scope, sk);
        assert!(c.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode_cursor(&scope, &c).as_deref(), Some(sk));
        // Another listing's cursor, a forged one and garbage are all refused.
        let other = cursor_scope(&BTreeMap::new());
        assert_eq!(decode_cursor(&other, &c), None, "another listing's cursor");
        let bare: String = sk.bytes().map(|b| format!("{b:02x}")).collect();
        let mut flipped = c.clone();
        flipped.replace_range(c.len() - 2.., "33");
        for bad in ["", "abc", "zz", "ff", bare.as_str(), flipped.as_str()] {
            assert_eq!(decode_cursor(&scope, bad), None, "{bad}");
        }
        // Even a correct check does not make a sort key of something else.
        let not_a_key = encode_cursor(&scope, "ORDER");
        assert_eq!(decode_cursor(&scope, &not_a_key), None);
        assert!(resume_point(&scope, Some(&String::new())).is_err());
    }
}
