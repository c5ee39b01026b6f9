//! TestState: one state run on its own, as the Step Functions `TestState` API runs it.
//!
//! The state is parsed with the ordinary model (wrapped in a machine of its own, with a
//! stand-in for every state it can transition to), then its stages are evaluated one by
//! one, so that each stage's value can be reported in `inspectionData`: InputPath,
//! Parameters, the result (a mock, the task's real answer, or the branches run by the
//! evaluator), ResultSelector, ResultPath, OutputPath. The context object (`$$`) and
//! the variables in scope are the caller's, as TestState's `context` and `variables`
//! arguments give them.
//!
//! A JSONata state's stages (Arguments, Output, Assign) are run in [`jsonata`] with the
//! evaluator's own functions.
//!
//! Retry and Catch are reported, not carried out: a failure a retrier would retry ends
//! `RETRIABLE` (with the retrier's index and backoff), a failure a catcher takes ends
//! `CAUGHT_ERROR` with the catcher's `Next` and the ResultPath-applied error as output.
//!
//! Tasks without a mock, and Parallel or Map states without one, are run by the
//! evaluator ([`crate::runner`]) on a virtual clock, so task calls, Lambda's response
//! shape and branch failures are the evaluator's.

mod jsonata;
mod mock_schema;
pub use mock_schema::FieldValidationMode;

use crate::choice;
use crate::error::{names, Failure};
use crate::eval::ExecutionInfo;
use crate::item_reader;
use crate::jsonpath::{JsonPath, Root};
use crate::model::{
    Amount, ChoiceRule, IoPath, Kind, Machine, MapSpec, QueryLanguage, Retrier, State, TaskSpec,
    Template, Text, Transition,
};
use crate::resource::Pattern;
use crate::runner::{self, RunHost, RunOptions, SeededRandom, TaskHandler, VirtualClock};
use crate::time::timestamp;
use crate::validate;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// How much TestState reports besides the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InspectionLevel {
    #[default]
    Info,
    Debug,
    Trace,
}

/// TestState's `mock`: the task's (or Map's, or Parallel's) result, or its error.
#[derive(Debug, Clone, PartialEq)]
pub enum Mock {
    /// The result as JSON text, as the API takes it.
    Result(String),
    Error(Failure),
}

/// One TestState call, with its JSON arguments already parsed.
#[derive(Debug, Clone)]
pub struct Request {
    /// The state's definition, or a whole state machine with `state_name` naming the
    /// state to test.
    pub definition: Value,
    pub state_name: Option<String>,
    pub input: Value,
    pub inspection_level: InspectionLevel,
    /// The variables in scope (`variables`).
    pub variables: Map<String, Value>,
    /// The context object as given (`context`); `None` builds one from `info`.
    pub context: Option<Value>,
    pub mock: Option<Mock>,
    /// `mock.fieldValidationMode`: how a mocked Task result is held to the
    /// integration's response shape.
    pub field_validation_mode: FieldValidationMode,
    /// `stateConfiguration.retrierRetryCount`: retries already made by the retrier
    /// matching the error.
    pub retrier_retry_count: u32,
    /// `stateConfiguration.errorCausedByState`: the state (the tested one, or one in
    /// its branches or processor) a mocked Map or Parallel error comes from.
    pub error_caused_by_state: Option<String>,
    /// `stateConfiguration.mapIterationFailureCount`: iterations of the mocked Map that
    /// failed, held to its ToleratedFailureCount / ToleratedFailurePercentage.
    pub map_iteration_failure_count: Option<u32>,
    /// `stateConfiguration.mapItemReaderData`: what the Map's ItemReader read, as found
    /// in its source; the items come from it instead of ItemsPath.
    pub map_item_reader_data: Option<String>,
    /// Who the (pretend) execution is, for a context object built here and for the
    /// evaluator runs of unmocked tasks and branches. An empty `role_arn` is a call
    /// without roleArn (the built context's RoleArn is then null, as AWS's is).
    pub info: ExecutionInfo,
    /// Seeds the random source of those evaluator runs.
    pub seed: u64,
}

impl Request {
    /// A request for `definition` on `input`, with defaults for everything else.
    pub fn new(definition: Value, input: Value, start_time: DateTime<Utc>) -> Request {
        Request {
            definition,
            state_name: None,
            input,
            inspection_level: InspectionLevel::Info,
            variables: Map::new(),
            context: None,
            mock: None,
            field_validation_mode: FieldValidationMode::Strict,
            retrier_retry_count: 0,
            error_caused_by_state: None,
            map_iteration_failure_count: None,
            map_item_reader_data: None,
            info: ExecutionInfo::new(
                "arn:aws:states:us-east-1:000000000000:stateMachine:TestStateMachine",
                "test-state",
                "arn:aws:iam::000000000000:role/oms-local",
                true,
                start_time,
            ),
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStatus {
    Succeeded,
    Failed,
    Retriable,
    CaughtError,
}

impl TestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TestStatus::Succeeded => "SUCCEEDED",
            TestStatus::Failed => "FAILED",
            TestStatus::Retriable => "RETRIABLE",
            TestStatus::CaughtError => "CAUGHT_ERROR",
        }
    }
}

/// Which retrier or catcher handled an error (`inspectionData.errorDetails`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorDetails {
    pub catch_index: Option<u32>,
    pub retry_index: Option<u32>,
    pub retry_backoff_interval_seconds: Option<u32>,
}

/// `inspectionData`: the value after each stage that ran. The API sends the values as
/// JSON text; [`InspectionData::to_json`] gives the JSON object with values in place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InspectionData {
    pub input: Option<Value>,
    /// A JSONata state's Arguments (JSONata states have no InputPath, Parameters,
    /// ResultSelector or ResultPath stages to report).
    pub after_arguments: Option<Value>,
    pub after_input_path: Option<Value>,
    pub after_parameters: Option<Value>,
    pub after_items_path: Option<Value>,
    pub after_item_selector: Option<Value>,
    pub result: Option<Value>,
    pub after_result_selector: Option<Value>,
    pub after_result_path: Option<Value>,
    pub variables: Option<Value>,
    pub max_concurrency: Option<i64>,
    pub tolerated_failure_count: Option<i64>,
    pub tolerated_failure_percentage: Option<f64>,
    pub error_details: Option<ErrorDetails>,
}

impl InspectionData {
    /// As the API's JSON shows it, values in place of their JSON text.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: &Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v.clone());
            }
        };
        put("input", &self.input);
        put("afterArguments", &self.after_arguments);
        put("afterInputPath", &self.after_input_path);
        put("afterParameters", &self.after_parameters);
        put("afterItemsPath", &self.after_items_path);
        put("afterItemSelector", &self.after_item_selector);
        put("result", &self.result);
        put("afterResultSelector", &self.after_result_selector);
        put("afterResultPath", &self.after_result_path);
        put("variables", &self.variables);
        if let Some(n) = self.max_concurrency {
            m.insert("maxConcurrency".into(), json!(n));
        }
        if let Some(n) = self.tolerated_failure_count {
            m.insert("toleratedFailureCount".into(), json!(n));
        }
        if let Some(n) = self.tolerated_failure_percentage {
            m.insert("toleratedFailurePercentage".into(), json!(n));
        }
        if let Some(d) = &self.error_details {
            let mut e = Map::new();
            if let Some(i) = d.catch_index {
                e.insert("catchIndex".into(), json!(i));
            }
            if let Some(i) = d.retry_index {
                e.insert("retryIndex".into(), json!(i));
            }
            if let Some(s) = d.retry_backoff_interval_seconds {
                e.insert("retryBackoffIntervalSeconds".into(), json!(s));
            }
            m.insert("errorDetails".into(), Value::Object(e));
        }
        Value::Object(m)
    }
}

/// What TestState answers.
#[derive(Debug, Clone, PartialEq)]
pub struct TestStateResult {
    pub status: TestStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub next_state: Option<String>,
    /// `None` at inspection level INFO.
    pub inspection_data: Option<InspectionData>,
}

impl TestStateResult {
    /// The API's response as JSON, values in place of JSON text (as the conformance
    /// corpus records it).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), json!(self.status.as_str()));
        if let Some(o) = &self.output {
            m.insert("output".into(), o.clone());
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
        }
        if let Some(c) = &self.cause {
            m.insert("cause".into(), json!(c));
        }
        if let Some(n) = &self.next_state {
            m.insert("nextState".into(), json!(n));
        }
        if let Some(d) = &self.inspection_data {
            m.insert("inspectionData".into(), d.to_json());
        }
        Value::Object(m)
    }
}

/// Why a TestState call is refused before anything runs (the API's
/// ValidationException or InvalidDefinition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    InvalidDefinition(String),
    Validation(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::InvalidDefinition(m) | RequestError::Validation(m) => f.write_str(m),
        }
    }
}

/// The name a lone state is tested under when no `stateName` is given.
pub const DEFAULT_STATE_NAME: &str = "TestState";

/// Runs `req`. Tasks without a mock are performed by `tasks`, through the evaluator.
pub fn test_state(
    req: &Request,
    tasks: &mut dyn TaskHandler,
) -> Result<TestStateResult, RequestError> {
    let (machine, name) = wrap(req)?;
    let list = machine.root();
    let idx = list.by_name[&name];
    let state = &list.states[idx];
    check_request(req, state)?;
    let names: Vec<String> = list.states.iter().map(|s| s.name.clone()).collect();
    let mut run = Run {
        req,
        state,
        names: &names,
        vars: req.variables.clone(),
        insp: InspectionData::default(),
        tasks,
    };
    let outcome = run.state();
    let insp = std::mem::take(&mut run.insp);
    Ok(run.finish(outcome, insp))
}

/// Parses the state into a machine of its own: its transitions lead to stand-in Pass
/// states, and it ends where it would have moved on (the name is kept as nextState).
fn wrap(req: &Request) -> Result<(Machine, String), RequestError> {
    let def = &req.definition;
    let invalid = |m: String| RequestError::InvalidDefinition(m);
    let obj = def
        .as_object()
        .ok_or_else(|| invalid("The definition must be a JSON object.".into()))?;
    if obj.contains_key("States") {
        // A whole machine: test the named state in place.
        let name = req.state_name.clone().ok_or_else(|| {
            RequestError::Validation(
                "stateName is required when the definition is a state machine.".into(),
            )
        })?;
        validated(def)?;
        let machine = Machine::from_value(def).map_err(invalid)?;
        if !machine.root().by_name.contains_key(&name) {
            return Err(RequestError::Validation(format!(
                "State '{name}' is not found in the definition."
            )));
        }
        return Ok((machine, name));
    }
    let name = req
        .state_name
        .clone()
        .unwrap_or_else(|| DEFAULT_STATE_NAME.to_string());
    let mut targets: Vec<String> = Vec::new();
    let mut note = |v: Option<&Value>| {
        if let Some(Value::String(s)) = v {
            if !targets.contains(s) {
                targets.push(s.clone());
            }
        }
    };
    note(obj.get("Next"));
    note(obj.get("Default"));
    for key in ["Choices", "Catch"] {
        if let Some(Value::Array(items)) = obj.get(key) {
            for i in items {
                note(i.get("Next"));
            }
        }
    }
    let mut states = Map::new();
    states.insert(name.clone(), def.clone());
    for t in targets {
        if t != name {
            states.insert(t, json!({"Type": "Pass", "End": true}));
        }
    }
    let wrapper = json!({"StartAt": name, "States": states});
    validated(&wrapper)?;
    let machine = Machine::from_value(&wrapper).map_err(invalid)?;
    Ok((machine, name))
}

/// The validator's verdict on the machine the state is tested in, as CreateStateMachine
/// would give it for a Standard machine (TestState accepts the patterns Express lacks).
fn validated(def: &Value) -> Result<(), RequestError> {
    let opts = validate::Options {
        machine_type: validate::MachineType::Standard,
    };
    let diags = validate::validate_str(&def.to_string(), opts);
    if diags
        .iter()
        .any(|d| d.severity == validate::Severity::Error)
    {
        return Err(RequestError::InvalidDefinition(
            validate::invalid_definition_message(&diags),
        ));
    }
    Ok(())
}

/// How the state's own evaluation ended, before Retry and Catch are considered.
enum Outcome {
    Done {
        output: Value,
        next: Option<usize>,
    },
    /// A failure Retry and Catch may handle.
    Failed(Failure),
    /// A failure nothing handles (States.Runtime, a Fail state's error).
    Fatal(Failure),
}

/// `?` for a step of a state whose failure nothing handles.
macro_rules! fatal {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return Outcome::Fatal(f),
        }
    };
}

struct Run<'a> {
    req: &'a Request,
    state: &'a State,
    names: &'a [String],
    vars: Map<String, Value>,
    insp: InspectionData,
    tasks: &'a mut dyn TaskHandler,
}

impl Run<'_> {
    fn name(&self) -> &str {
        &self.state.name
    }

    /// The context object: as given, or built as an execution's would be.
    fn context(&self, task_token: Option<&str>) -> Value {
        if let Some(c) = &self.req.context {
            return c.clone();
        }
        let info = &self.req.info;
        let mut state = Map::new();
        // AWS's TestState names the state "StateName" in the context it builds, whatever
        // the state is called (recorded: test_state_with_variables).
        state.insert("Name".into(), json!("StateName"));
        state.insert("EnteredTime".into(), json!(timestamp(info.start_time)));
        if matches!(self.state.kind, Kind::Task(_)) {
            state.insert("RetryCount".into(), json!(self.req.retrier_retry_count));
        }
        let mut ctx = Map::new();
        ctx.insert(
            "Execution".into(),
            json!({
                "Id": info.execution_arn,
                "Input": self.req.input,
                "Name": info.name,
                // A call without roleArn runs with no role: AWS shows null.
                "RoleArn": Some(&info.role_arn).filter(|r| !r.is_empty()),
                "StartTime": timestamp(info.start_time),
            }),
        );
        ctx.insert(
            "StateMachine".into(),
            json!({"Id": info.state_machine_arn, "Name": info.state_machine_name}),
        );
        ctx.insert("State".into(), Value::Object(state));
        if let Some(t) = task_token {
            ctx.insert("Task".into(), json!({ "Token": t }));
        }
        Value::Object(ctx)
    }

    /// The token a `.waitForTaskToken` task is given (the same each time it is asked).
    fn task_token(&self) -> Option<String> {
        match &self.state.kind {
            Kind::Task(t) if t.target.pattern() == Pattern::WaitForTaskToken => {
                Some(SeededRandom::new(self.req.seed ^ 0x5eed).uuid_v4())
            }
            _ => None,
        }
    }

    fn scope<'s>(&'s self, context: &'s Value) -> Scope<'s> {
        Scope {
            context,
            vars: &self.vars,
            random: SeededRandom::new(self.req.seed),
            now: self.req.info.start_time,
        }
    }

    /// Whether the inspection data shows more than the result (DEBUG or TRACE).
    fn debug(&self) -> bool {
        self.req.inspection_level != InspectionLevel::Info
    }

    fn state(&mut self) -> Outcome {
        let state = self.state;
        let raw = self.req.input.clone();
        if self.debug() {
            self.insp.input = Some(raw.clone());
            if !self.vars.is_empty() {
                self.insp.variables = Some(Value::Object(self.vars.clone()));
            }
        }
        let ctx = self.context(self.task_token().as_deref());
        let next = match state.transition {
            Transition::Next(n) => Some(n),
            Transition::End => None,
        };
        if state.query_language == QueryLanguage::Jsonata {
            return self.jsonata(&ctx, raw, next);
        }
        match &state.kind {
            Kind::Pass { result } => self.pass(&ctx, raw, result.as_ref(), next),
            Kind::Succeed | Kind::Choice { .. } | Kind::Wait(_) => self.flow(&ctx, raw, next),
            Kind::Fail { error, cause } => self.fail(&ctx, raw, error, cause),
            Kind::Task(spec) => self.task(&ctx, raw, spec, next),
            Kind::Parallel { .. } => self.parallel(&ctx, raw, next),
            Kind::Map(spec) => self.map(&ctx, raw, spec, next),
        }
    }

    fn pass(
        &mut self,
        ctx: &Value,
        raw: Value,
        result: Option<&Value>,
        next: Option<usize>,
    ) -> Outcome {
        let state = self.state;
        let (result, effective) = match result {
            Some(r) => (r.clone(), None),
            None => {
                let e = fatal!(self.scope(ctx).io_path(&state.input_path, raw.clone()));
                let p = match &state.parameters {
                    Some(p) => fatal!(self.scope(ctx).render(p, &e)),
                    None => e.clone(),
                };
                (p, Some(e))
            }
        };
        if self.debug() {
            match effective {
                Some(e) => {
                    self.insp.after_input_path = Some(e);
                    self.insp.after_parameters = Some(result.clone());
                }
                None => self.insp.result = Some(result.clone()),
            }
        }
        self.finish_result(ctx, raw, result, next, false)
    }

    /// Succeed, Choice and Wait: the input goes through InputPath and OutputPath; a
    /// Choice also picks the next state (TestState does not wait).
    fn flow(&mut self, ctx: &Value, raw: Value, next: Option<usize>) -> Outcome {
        let state = self.state;
        let effective = fatal!(self.scope(ctx).io_path(&state.input_path, raw));
        if self.debug() {
            self.insp.after_input_path = Some(effective.clone());
        }
        let next = match &state.kind {
            Kind::Choice { rules, default } => {
                fatal!(self.choose(ctx, &effective, rules, *default))
            }
            Kind::Succeed => None,
            _ => next,
        };
        let output = fatal!(self.scope(ctx).io_path(&state.output_path, effective));
        Outcome::Done { output, next }
    }

    /// The state a Choice goes to: its first matching rule's, else its Default.
    fn choose(
        &self,
        ctx: &Value,
        effective: &Value,
        rules: &[ChoiceRule],
        default: Option<usize>,
    ) -> Result<Option<usize>, Failure> {
        let scope = self.scope(ctx);
        for rule in rules {
            let hit = choice::evaluate(&rule.condition, effective, &|p: &JsonPath, v: &Value| {
                scope.select(p, v)
            })?;
            if hit {
                return Ok(Some(rule.next));
            }
        }
        match default {
            Some(n) => Ok(Some(n)),
            None => Err(Failure::new(
                names::NO_CHOICE_MATCHED,
                format!("No Matches! State: {}", self.state.name),
            )),
        }
    }

    fn fail(
        &mut self,
        ctx: &Value,
        raw: Value,
        error: &Option<Text>,
        cause: &Option<Text>,
    ) -> Outcome {
        let state = self.state;
        let effective = fatal!(self.scope(ctx).io_path(&state.input_path, raw.clone()));
        if self.debug() {
            self.insp.after_input_path = Some(effective);
        }
        let mut scope = self.scope(ctx);
        let error = match error {
            Some(e) => fatal!(scope.text(e, &raw, "ErrorPath")),
            None => String::new(),
        };
        let cause = match cause {
            Some(c) => Some(fatal!(scope.text(c, &raw, "CausePath"))),
            None => None,
        };
        Outcome::Fatal(Failure { error, cause })
    }

    fn task(&mut self, ctx: &Value, raw: Value, spec: &TaskSpec, next: Option<usize>) -> Outcome {
        let state = self.state;
        let effective = fatal!(self.scope(ctx).io_path(&state.input_path, raw.clone()));
        let params = match &state.parameters {
            Some(p) => fatal!(self.scope(ctx).render(p, &effective)),
            None => effective.clone(),
        };
        if self.debug() {
            self.insp.after_input_path = Some(effective.clone());
            self.insp.after_parameters = Some(params.clone());
        }
        let result = match &self.req.mock {
            Some(m) => mock_result(m),
            None => {
                let task = fatal!(self.task_machine(ctx, spec, &effective));
                self.run_machine(task, params)
            }
        };
        match result {
            Ok(r) => self.finish_result(ctx, raw, r, next, true),
            Err(f) => Outcome::Failed(f),
        }
    }

    /// The evaluator performs the call: a Task state with only the Resource (and
    /// limits), given the rendered parameters as input.
    fn task_machine(
        &self,
        ctx: &Value,
        spec: &TaskSpec,
        effective: &Value,
    ) -> Result<Value, Failure> {
        let mut t = Map::new();
        t.insert("Type".into(), json!("Task"));
        t.insert("Resource".into(), json!(spec.resource));
        let mut scope = self.scope(ctx);
        for (field, amount) in [
            ("TimeoutSeconds", &spec.timeout),
            ("HeartbeatSeconds", &spec.heartbeat),
        ] {
            if let Some(a) = amount {
                let n = scope.task_seconds(a, effective, field)?;
                t.insert(field.into(), json!(n));
            }
        }
        t.insert("End".into(), json!(true));
        Ok(Value::Object(t))
    }

    fn parallel(&mut self, ctx: &Value, raw: Value, next: Option<usize>) -> Outcome {
        let state = self.state;
        let effective = fatal!(self.scope(ctx).io_path(&state.input_path, raw.clone()));
        let params = match &state.parameters {
            Some(p) => fatal!(self.scope(ctx).render(p, &effective)),
            None => effective,
        };
        let _ = params; // evaluated for its errors; the branches' result is the mock's
        match self.mocked() {
            Ok(r) => self.finish_result(ctx, raw, r, next, false),
            Err(f) => Outcome::Failed(f),
        }
    }

    /// A Map's or Parallel's result: the mock, which [`check_request`] made sure of.
    fn mocked(&self) -> Result<Value, Failure> {
        match &self.req.mock {
            Some(m) => mock_result(m),
            None => Err(Failure::runtime(NO_MAP_OR_PARALLEL)),
        }
    }

    fn map(&mut self, ctx: &Value, raw: Value, spec: &MapSpec, next: Option<usize>) -> Outcome {
        let state = self.state;
        let effective = fatal!(self.scope(ctx).io_path(&state.input_path, raw.clone()));
        if self.debug() {
            self.insp.after_input_path = Some(effective.clone());
        }
        let mut scope = self.scope(ctx);
        let items = match &self.req.map_item_reader_data {
            Some(data) => match self.read_items(&scope, data, &effective) {
                Ok(items) => items,
                Err(outcome) => return outcome,
            },
            None => fatal!(map_items(&scope, spec, &effective)),
        };
        let limits = fatal!(MapLimits::read(&mut scope, spec, &effective));
        let item_count = items.len();
        let selected = match &spec.item_selector {
            None => items.clone(),
            Some(sel) => fatal!(self.select_items(ctx, sel, &items, &effective)),
        };
        if self.debug() {
            self.insp.after_items_path = Some(Value::Array(items));
            if spec.item_selector.is_some() {
                self.insp.after_item_selector = Some(Value::Array(selected.clone()));
            }
            // AWS reports 0 (no limit) when the Map sets none.
            self.insp.max_concurrency = limits.max_concurrency.or(Some(0));
            self.insp.tolerated_failure_count = limits.tolerated_count;
            self.insp.tolerated_failure_percentage = limits.tolerated_pct;
        }
        let _ = selected; // the iterations' result is the mock's
        let result = self
            .mocked()
            .and_then(|r| self.within_tolerance(&limits, item_count).map(|()| r));
        match result {
            Ok(r) => self.finish_result(ctx, raw, r, next, false),
            Err(f) => Outcome::Failed(f),
        }
    }

    /// The items of `mapItemReaderData`, read as the Map's ItemReader would read its
    /// source; a read failure is `States.ItemReaderFailed`, which Retry and Catch see.
    fn read_items(
        &self,
        scope: &Scope,
        data: &str,
        effective: &Value,
    ) -> Result<Vec<Value>, Outcome> {
        let reader = item_reader::reader_format(&self.field("ItemReader"))
            .map_err(|e| Outcome::Fatal(Failure::runtime(e)))?;
        let max_items = match &reader.max_items {
            item_reader::MaxItems::Unlimited => None,
            item_reader::MaxItems::Count(n) => Some(*n),
            item_reader::MaxItems::Path(p) => {
                let path = JsonPath::parse(p).map_err(|e| Outcome::Fatal(Failure::runtime(e)))?;
                let v = scope.path_value(&path, effective).map_err(Outcome::Fatal)?;
                item_reader::max_items_from_path(p, &v).map_err(Outcome::Failed)?
            }
        };
        item_reader::parse_items(&reader, data, max_items).map_err(Outcome::Failed)
    }

    /// `mapIterationFailureCount` held to the Map's tolerance. As AWS does, a Map that
    /// sets neither ToleratedFailureCount nor ToleratedFailurePercentage is not held.
    fn within_tolerance(&self, limits: &MapLimits, item_count: usize) -> Result<(), Failure> {
        let Some(failed) = self.req.map_iteration_failure_count else {
            return Ok(());
        };
        let over_count = limits
            .tolerated_count
            .is_some_and(|t| i64::from(failed) > t);
        let over_pct = limits.tolerated_pct.is_some_and(|pct| {
            let failed_pct = match item_count {
                0 => 100.0 * f64::from(u8::from(failed > 0)),
                n => f64::from(failed) * 100.0 / n as f64,
            };
            failed_pct > pct
        });
        if over_count || over_pct {
            return Err(Failure::new(
                names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            ));
        }
        Ok(())
    }

    /// ItemSelector rendered for each item, with `$$.Map.Item` in the context.
    fn select_items(
        &self,
        ctx: &Value,
        sel: &Template,
        items: &[Value],
        effective: &Value,
    ) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut c = ctx.clone();
            if let Value::Object(m) = &mut c {
                m.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
            }
            let mut scope = self.scope(&c);
            out.push(match self.state.query_language {
                QueryLanguage::JsonPath => scope.render(sel, effective)?,
                QueryLanguage::Jsonata => scope.render_ata(
                    sel,
                    crate::query::States::input(effective),
                    &crate::query::FieldPath::root("ItemSelector"),
                )?,
            });
        }
        Ok(out)
    }

    /// A field of the state's definition as written.
    fn field(&self, f: &str) -> Value {
        state_definition(self.req, self.name())
            .get(f)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Runs a one-state machine made of `state` on `input` with the evaluator, on a
    /// virtual clock; its output or failure is the stage's result.
    fn run_machine(&mut self, state: Value, input: Value) -> Result<Value, Failure> {
        let def = json!({"StartAt": self.name(), "States": {self.name(): state}});
        let machine = Machine::from_value(&def).map_err(Failure::runtime)?;
        let mut host = RunHost {
            clock: VirtualClock(self.req.info.start_time),
            random: SeededRandom::new(self.req.seed),
        };
        let out = runner::run(
            Arc::new(machine),
            input,
            &mut *self.tasks,
            &mut host,
            RunOptions {
                info: Some(self.req.info.clone()),
                record_history: false,
            },
        );
        match out.status {
            crate::Status::Succeeded => Ok(out.output.unwrap_or(Value::Null)),
            _ => Err(Failure {
                error: out.error.unwrap_or_default(),
                cause: out.cause,
            }),
        }
    }

    /// ResultSelector, ResultPath and OutputPath applied to a result.
    fn finish_result(
        &mut self,
        ctx: &Value,
        raw: Value,
        result: Value,
        next: Option<usize>,
        show_result: bool,
    ) -> Outcome {
        let debug = self.req.inspection_level != InspectionLevel::Info;
        let state = self.state;
        if debug && show_result {
            self.insp.result = Some(result.clone());
        }
        let mut scope = self.scope(ctx);
        let selected = match &state.result_selector {
            Some(sel) => match scope.render(sel, &result) {
                Ok(v) => v,
                Err(f) => return Outcome::Fatal(f),
            },
            None => result,
        };
        let assigned = match &state.assign {
            Some(a) => match scope.render(a, &selected) {
                Ok(Value::Object(m)) => Some(m),
                Ok(_) => None,
                Err(f) => return Outcome::Fatal(f),
            },
            None => None,
        };
        let after_rp = match apply_result_path(&state.result_path, raw, selected.clone()) {
            Ok(v) => v,
            Err(f) => return Outcome::Fatal(f),
        };
        let output = match scope.io_path(&state.output_path, after_rp.clone()) {
            Ok(v) => v,
            Err(f) => return Outcome::Fatal(f),
        };
        if let Some(a) = assigned {
            self.vars.extend(a);
            if debug {
                self.insp.variables = Some(Value::Object(self.vars.clone()));
            }
        }
        if debug {
            self.insp.after_result_selector = Some(selected);
            self.insp.after_result_path = Some(after_rp);
        }
        Outcome::Done { output, next }
    }

    /// Turns the state's outcome into TestState's answer, Retry and Catch considered.
    fn finish(&mut self, outcome: Outcome, mut insp: InspectionData) -> TestStateResult {
        let mut result = TestStateResult {
            status: TestStatus::Succeeded,
            output: None,
            error: None,
            cause: None,
            next_state: None,
            inspection_data: None,
        };
        match outcome {
            Outcome::Done { output, next } => {
                result.output = Some(output);
                result.next_state = next.map(|n| self.names[n].clone());
            }
            Outcome::Fatal(f) => {
                result.status = TestStatus::Failed;
                result.error = Some(f.error).filter(|e| !e.is_empty());
                result.cause = f.cause;
            }
            Outcome::Failed(f) => self.failed(f, &mut result, &mut insp),
        }
        self.with_inspection(result, insp)
    }

    /// A failure Retry and Catch may handle: retriable while the matching retrier has
    /// attempts left, else caught by the first matching catcher, else failed.
    fn failed(&self, f: Failure, result: &mut TestStateResult, insp: &mut InspectionData) {
        let state = self.state;
        result.status = TestStatus::Failed;
        let retrier = state
            .retry
            .iter()
            .position(|r| matches_error(&r.error_equals, &f.error));
        let retry = retrier.filter(|&i| self.req.retrier_retry_count < state.retry[i].max_attempts);
        if let Some(i) = retry {
            result.status = TestStatus::Retriable;
            insp.error_details = Some(ErrorDetails {
                retry_index: Some(i as u32),
                retry_backoff_interval_seconds: Some(backoff_seconds(
                    &state.retry[i],
                    self.req.retrier_retry_count,
                )),
                catch_index: None,
            });
        } else if let Some((i, c)) = state
            .catch
            .iter()
            .enumerate()
            .find(|(_, c)| matches_error(&c.error_equals, &f.error))
        {
            let err = json!({"Error": f.error, "Cause": f.cause.clone().unwrap_or_default()});
            let jsonata = state.query_language == QueryLanguage::Jsonata;
            let shaped = if jsonata {
                self.caught_jsonata(c, err, insp)
            } else {
                apply_result_path(&c.result_path, self.req.input.clone(), err)
            };
            match shaped {
                Ok(out) => {
                    result.status = TestStatus::CaughtError;
                    result.next_state = Some(self.names[c.next].clone());
                    if self.debug() && !jsonata {
                        insp.after_result_path = Some(out.clone());
                    }
                    result.output = Some(out);
                    insp.error_details = Some(ErrorDetails {
                        catch_index: Some(i as u32),
                        ..ErrorDetails::default()
                    });
                }
                Err(e) => {
                    result.error = Some(e.error);
                    result.cause = e.cause;
                    return;
                }
            }
        }
        result.error = Some(f.error).filter(|e| !e.is_empty());
        result.cause = f.cause;
    }

    fn with_inspection(
        &self,
        mut result: TestStateResult,
        mut insp: InspectionData,
    ) -> TestStateResult {
        if self.req.inspection_level != InspectionLevel::Info {
            if matches!(self.state.kind, Kind::Parallel { .. }) {
                // AWS reports neither the InputPath nor the Parameters stage of a Parallel.
                insp.after_input_path = None;
                insp.after_parameters = None;
            }
            result.inspection_data = Some(insp);
        }
        // At INFO AWS reports no inspection data at all, not even which retrier or
        // catcher took the error (its RETRIABLE and CAUGHT_ERROR answers at INFO).
        result
    }
}

/// AWS's refusal of an unmocked Map or Parallel.
const NO_MAP_OR_PARALLEL: &str = "TestState API does not support Map or Parallel states. Supported state types include: [Task, Wait, Pass, Succeed, Fail, Choice]";

/// The tested state's definition as written (inside `States` for a whole machine).
fn state_definition<'a>(req: &'a Request, name: &str) -> &'a Value {
    match req.definition.get("States") {
        Some(states) => &states[name],
        None => &req.definition,
    }
}

/// The checks AWS makes before anything runs, with its messages where it has them.
fn check_request(req: &Request, state: &State) -> Result<(), RequestError> {
    let def = state_definition(req, &state.name);
    let branched = matches!(state.kind, Kind::Map(_) | Kind::Parallel { .. });
    match &req.mock {
        None if branched => Err(RequestError::InvalidDefinition(NO_MAP_OR_PARALLEL.into())),
        None if matches!(&state.kind, Kind::Task(t) if waits_for_others(&t.target)) => {
            Err(RequestError::Validation(
                "TestState supports Activity tasks and the .sync and .waitForTaskToken integration patterns only when a mock is specified".into(),
            ))
        }
        None if req.context.is_some() => Err(RequestError::Validation(
            "context can only be given together with a mock".into(),
        )),
        Some(_) if !branched && !matches!(state.kind, Kind::Task(_)) => {
            Err(RequestError::Validation(format!(
                "State type '{}' is not supported when a mock is specified",
                state.type_name
            )))
        }
        Some(Mock::Result(text)) => check_mock_result(req, state, def, text),
        _ => Ok(()),
    }?;
    check_state_configuration(req, state, def)
}

/// A task whose result comes from someone else (an activity worker, a job run to its
/// end, a token's callback): TestState has nothing to wait for, so AWS needs a mock.
fn waits_for_others(target: &crate::resource::Target) -> bool {
    matches!(target, crate::resource::Target::Activity { .. })
        || matches!(
            target.pattern(),
            Pattern::Sync | Pattern::Sync2 | Pattern::WaitForTaskToken
        )
}

/// A mocked result is JSON of the shape the state's result has.
fn check_mock_result(
    req: &Request,
    state: &State,
    def: &Value,
    text: &str,
) -> Result<(), RequestError> {
    let invalid = |m: &str| Err(RequestError::Validation(m.to_string()));
    let result: Value = serde_json::from_str(text).map_err(|e| {
        RequestError::Validation(format!("The mocked result is not valid JSON: {e}"))
    })?;
    match &state.kind {
        Kind::Map(_) if def.get("ResultWriter").is_some() && !result.is_object() => {
            invalid("Mocked result must be a JSON object.")
        }
        Kind::Map(_) if def.get("ResultWriter").is_none() && !result.is_array() => {
            invalid("Mocked result must be an array.")
        }
        Kind::Parallel { .. } => match &result {
            Value::Array(items) if Some(items.len()) == def["Branches"].as_array().map(Vec::len) => Ok(()),
            Value::Array(_) => invalid("Mocked result must contain the same number of items as number of Parallel branches."),
            _ => invalid("Mocked result must be an array."),
        },
        Kind::Task(spec) => mock_schema::check(&spec.target, &result, req.field_validation_mode)
            .map_err(RequestError::Validation),
        _ => Ok(()),
    }
}

/// `stateConfiguration` members name what the tested state has.
fn check_state_configuration(
    req: &Request,
    state: &State,
    def: &Value,
) -> Result<(), RequestError> {
    let refuse = |m: String| Err(RequestError::Validation(m));
    let is_map = matches!(state.kind, Kind::Map(_));
    if let Some(name) = &req.error_caused_by_state {
        if !is_map && !matches!(state.kind, Kind::Parallel { .. }) {
            return refuse("errorCausedByState is only for a Map or Parallel state".into());
        }
        if name != &state.name && !nested_state_names(def).contains(name) {
            return refuse(format!(
                "errorCausedByState '{name}' is neither the tested state nor a state of its branches or item processor"
            ));
        }
    }
    if req.map_iteration_failure_count.is_some() && !is_map {
        return refuse("mapIterationFailureCount is only for a Map state".into());
    }
    if req.map_item_reader_data.is_some() && (!is_map || def.get("ItemReader").is_none()) {
        return refuse("mapItemReaderData is only for a Map state with an ItemReader".into());
    }
    Ok(())
}

/// The names of the states inside a Parallel's branches or a Map's processor, at any depth.
fn nested_state_names(def: &Value) -> Vec<String> {
    let mut lists: Vec<&Value> = def["Branches"]
        .as_array()
        .map(|b| b.iter().collect())
        .unwrap_or_default();
    lists.extend([&def["ItemProcessor"], &def["Iterator"]]);
    let mut names = Vec::new();
    for states in lists.iter().filter_map(|l| l["States"].as_object()) {
        for (name, inner) in states {
            names.push(name.clone());
            names.extend(nested_state_names(inner));
        }
    }
    names
}

fn mock_result(m: &Mock) -> Result<Value, Failure> {
    match m {
        Mock::Result(text) => serde_json::from_str(text)
            .map_err(|e| Failure::runtime(format!("The mocked result is not valid JSON: {e}"))),
        Mock::Error(f) => Err(f.clone()),
    }
}

/// The items a Map's ItemsPath selects, which must be an array.
fn map_items(scope: &Scope, spec: &MapSpec, effective: &Value) -> Result<Vec<Value>, Failure> {
    let items = match &spec.items_path {
        IoPath::At(p) if matches!(p.root(), Root::Context) => {
            // TestState's wording for a context path, which names the path inside the
            // context object.
            let shown = &p.text()[1..];
            match scope.select(p, effective) {
                Ok(v @ Value::Array(_)) => v,
                _ => {
                    return Err(Failure::runtime(format!(
                        "Reference path \"{shown}\" must point to array."
                    )))
                }
            }
        }
        other => {
            let v = scope.io_path(other, effective.clone())?;
            if !v.is_array() {
                let p = match other {
                    IoPath::At(p) => p.text().to_string(),
                    _ => "$".into(),
                };
                return Err(Failure::runtime(format!(
                    "Invalid path '{p}' : The ItemsPath field must reference an array, but it references {}",
                    compact(&v)
                )));
            }
            v
        }
    };
    let Value::Array(items) = items else {
        unreachable!("checked to be an array")
    };
    Ok(items)
}

/// A Map's concurrency and failure tolerance, read from the definition or the input.
struct MapLimits {
    max_concurrency: Option<i64>,
    tolerated_count: Option<i64>,
    tolerated_pct: Option<f64>,
}

impl MapLimits {
    fn read(scope: &mut Scope, spec: &MapSpec, effective: &Value) -> Result<MapLimits, Failure> {
        let max_concurrency = match &spec.max_concurrency {
            Some(a) => Some(scope.test_amount(a, effective, "MaxConcurrencyPath")? as i64),
            None => None,
        };
        let tolerated_count = match &spec.tolerated_failure_count {
            Some(a) => Some(scope.test_amount(a, effective, "ToleratedFailureCountPath")? as i64),
            None => None,
        };
        let tolerated_pct = match &spec.tolerated_failure_percentage {
            Some(a) => Some(scope.test_amount(a, effective, "ToleratedFailurePercentagePath")?),
            None => None,
        };
        Ok(MapLimits {
            max_concurrency,
            tolerated_count,
            tolerated_pct,
        })
    }
}

/// The retrier's backoff before its next attempt, whole seconds as TestState shows it.
fn backoff_seconds(r: &Retrier, attempt: u32) -> u32 {
    let mut secs = r.interval_seconds * r.backoff_rate.powi(attempt as i32);
    if let Some(max) = r.max_delay_seconds {
        secs = secs.min(max);
    }
    secs.clamp(0.0, u32::MAX as f64) as u32
}

// Error matching, ResultPath, compact JSON and the scope functions are the evaluator's
// own, so TestState cannot drift from what an execution does.
use crate::eval::{apply_result_path, compact, matches_error, task_seconds_value, Resolve};

/// Resolves paths and intrinsics against the input, the given context and variables;
/// the wording of its errors is the evaluator's.
struct Scope<'a> {
    context: &'a Value,
    vars: &'a Map<String, Value>,
    random: SeededRandom,
    now: DateTime<Utc>,
}

impl Resolve for Scope<'_> {
    fn select(&self, path: &JsonPath, input: &Value) -> Result<Value, String> {
        let found = match path.root() {
            Root::Input => path.select(input),
            Root::Context => path.select(self.context),
            Root::Variable(name) => match self.vars.get(name) {
                Some(v) => path.select(v),
                None => return Err(format!("The variable '{name}' is not defined")),
            },
        };
        found.map_err(|nf| nf.detail)
    }

    fn uuid_v4(&mut self) -> String {
        self.random.uuid_v4()
    }
}

impl crate::query::Draws for Scope<'_> {
    fn context_object(&self) -> Value {
        self.context.clone()
    }

    fn variable(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }

    fn random_u64(&mut self) -> u64 {
        self.random.next_u64()
    }

    /// TestState's clock stands at the pretend execution's start.
    fn now(&mut self) -> DateTime<Utc> {
        self.now
    }
}

impl Scope<'_> {
    /// A Task's TimeoutSeconds / HeartbeatSeconds, a value read from the input held to
    /// the bound the validator puts on the literal, as the evaluator holds it.
    fn task_seconds(&mut self, a: &Amount, input: &Value, lit: &str) -> Result<f64, Failure> {
        match a {
            Amount::Fixed(n) => Ok(*n),
            Amount::Expr(e) => self.ata_number(e, input, lit),
            Amount::Path(p) => {
                let v = self.path_value(p, input)?;
                task_seconds_value(&v, &format!("{lit}Path"), p.text())
            }
        }
    }

    /// A Map's number fields; TestState's wording for a value that is not a number
    /// differs from an execution's.
    fn test_amount(&mut self, a: &Amount, input: &Value, field: &str) -> Result<f64, Failure> {
        let lit = field.strip_suffix("Path").unwrap_or(field);
        self.amount_or(a, input, lit, |v, _| {
            Failure::runtime(format!(
                "The {field} field references a value that is not a number: {}",
                compact(v)
            ))
        })
    }
}
