//! The Step Functions API served by the durable runtime: [`LocalStepFunctions`]
//! implements [`StepFunctions`] over the SQLite store and [`Runtime`].

use crate::api::*;

pub(crate) mod map_runs;
use crate::nested::{Executions, Parent};
use crate::runtime::{epoch, from_epoch, ExecutionRecord, NewExecution, Runtime, RuntimeError};
use crate::store::StoreError;
use asl::validate::{self, MachineType, Options, Severity};
use asl::{Failure, Machine};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The largest execution input, task output or definition AWS accepts.
const MAX_PAYLOAD: usize = 256 * 1024;
const MAX_DEFINITION: usize = 1024 * 1024;
/// How long GetActivityTask waits for work before answering with no task.
const ACTIVITY_POLL: std::time::Duration = std::time::Duration::from_secs(60);

pub struct LocalStepFunctions {
    runtime: Arc<Runtime>,
    region: String,
    account: String,
    /// State machines an application in this process owns (ARN to owner): the API
    /// refuses to update or delete them, as an IAM policy would on AWS.
    owned: std::sync::RwLock<HashMap<String, String>>,
    /// State machines as read, by ARN, and how many times a write has cleared them.
    /// StartExecution read its machine's row every time, its whole definition with it
    /// (two read transactions an order, the saga's and its child's). Only this service
    /// writes machines (a data dir is one process's), and each write clears them once
    /// committed; a row read across a write is not kept (`known_machine`).
    machines: std::sync::Mutex<(u64, HashMap<String, Arc<Known>>)>,
}

/// A state machine's row as read, and the machine its definition parses to, parsed
/// when an execution first starts. StartExecution parsed its machine's every time, a
/// twentieth of an order's CPU (issue 16's profile); then looked it up by the
/// definition's text, hashing about 5 KB a start (1% of an order's instructions).
struct Known {
    row: MachineRow,
    parsed: std::sync::OnceLock<Arc<Machine>>,
}

impl Known {
    fn parsed(&self) -> Result<Arc<Machine>, ApiError> {
        if let Some(m) = self.parsed.get() {
            return Ok(m.clone());
        }
        let machine = Arc::new(Machine::parse(&self.row.definition).map_err(internal)?);
        Ok(self.parsed.get_or_init(|| machine).clone())
    }
}

/// Distinct machines kept; past it the cache starts again (a server with that many
/// machines in use gains little from it).
const MACHINES_KEPT: usize = 256;

impl LocalStepFunctions {
    pub fn new(runtime: Arc<Runtime>, region: &str, account: &str) -> Self {
        LocalStepFunctions {
            runtime,
            region: region.into(),
            account: account.into(),
            owned: Default::default(),
            machines: Default::default(),
        }
    }

    /// The service, shared, with its runtime able to start nested executions through
    /// it (`states:startExecution` tasks).
    pub fn shared(runtime: Arc<Runtime>, region: &str, account: &str) -> Arc<Self> {
        let service = Arc::new(LocalStepFunctions::new(runtime, region, account));
        let weak = Arc::downgrade(&service);
        service.runtime.attach_executions(weak);
        service
    }

    /// StartExecution on a Standard execution's name again: the same execution while it
    /// runs with the same input (StartExecution is idempotent then); otherwise the name
    /// is taken.
    fn same_running_execution(
        &self,
        arn: String,
        input_text: &str,
    ) -> Result<(String, DateTime<Utc>), ApiError> {
        let existing = self.execution_row(&arn)?;
        if existing.status == ExecutionStatus::Running && existing.input == input_text {
            Ok((arn, from_epoch(existing.start_date)))
        } else {
            Err(ApiError::execution_already_exists(format!(
                "Execution Already Exists: '{arn}'"
            )))
        }
    }

    /// A test case of the mock configuration (StartExecution on `ARN#Case`).
    fn check_test_case(&self, machine_name: &str, case: &str) -> Result<(), ApiError> {
        match self.runtime.mocks() {
            Some(mocks) => mocks.check_case(machine_name, case),
            None => Err(ApiError::validation(format!(
                "Invalid test case '{case}': this server has no mock configuration (start \
                 `oms up` with SFN_MOCK_CONFIG or --mock-config)"
            ))),
        }
    }

    /// From now on, UpdateStateMachine and DeleteStateMachine on `arn` are refused
    /// with AccessDeniedException naming `owner`.
    pub fn reserve(&self, arn: &str, owner: &str) {
        self.owned
            .write()
            .expect("owned lock")
            .insert(arn.to_string(), owner.to_string());
    }

    fn refuse_if_owned(&self, action: &str, arn: &str) -> Result<(), ApiError> {
        match self.owned.read().expect("owned lock").get(arn) {
            None => Ok(()),
            Some(owner) => Err(ApiError::access_denied(format!(
                "User is not authorized to perform: states:{action} on resource: {arn}: \
                 the state machine is owned by {owner}"
            ))),
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// A TestState call's arguments, checked, as the engine's request.
    fn test_state_request(
        &self,
        input: &TestStateInput,
    ) -> Result<asl::teststate::Request, ApiError> {
        use asl::teststate::{InspectionLevel as Level, Request};
        if input.definition.len() > MAX_DEFINITION {
            return Err(ApiError::invalid_definition(
                "Invalid State Machine Definition: 'The definition is larger than 1 MB'",
            ));
        }
        let definition: Value = serde_json::from_str(&input.definition).map_err(|e| {
            ApiError::invalid_definition(format!("Invalid State Machine Definition: '{e}'"))
        })?;
        let state_input = json_arg("input", &input.input)?.unwrap_or_else(|| serde_json::json!({}));
        let now = Utc::now();
        let mut req = Request::new(definition, state_input, now);
        let role = match &input.role_arn {
            Some(r) => {
                check_role(r)?;
                r.clone()
            }
            // No role, as AWS runs a call without roleArn ($$.Execution.RoleArn null).
            None => String::new(),
        };
        req.info = asl::ExecutionInfo::new(
            &self.machine_arn("TestState"),
            &format!("test-state-{}", now.timestamp_millis()),
            &role,
            true,
            now,
        );
        req.seed = now.timestamp_nanos_opt().unwrap_or_default() as u64;
        req.state_name = input.state_name.clone();
        req.inspection_level = match input.inspection_level.unwrap_or_default() {
            InspectionLevel::Info => Level::Info,
            InspectionLevel::Debug => Level::Debug,
            InspectionLevel::Trace => Level::Trace,
        };
        match json_arg("variables", &input.variables)? {
            None => {}
            Some(Value::Object(m)) => req.variables = m,
            Some(_) => {
                return Err(ApiError::validation(
                    "Invalid variables: the value must be a JSON object",
                ))
            }
        }
        req.context = json_arg("context", &input.context)?;
        if let Some(mock) = &input.mock {
            if input.reveal_secrets == Some(true) {
                return Err(ApiError::validation(
                    "TestState does not support RevealSecrets when a mock is specified.",
                ));
            }
            req.mock = Some(test_mock(mock)?);
            req.field_validation_mode = match mock.field_validation_mode.unwrap_or_default() {
                MockResponseValidationMode::Strict => asl::teststate::FieldValidationMode::Strict,
                MockResponseValidationMode::Present => asl::teststate::FieldValidationMode::Present,
                MockResponseValidationMode::None => asl::teststate::FieldValidationMode::None,
            };
        }
        if let Some(config) = &input.state_configuration {
            test_state_configuration(&mut req, config)?;
        }
        Ok(req)
    }

    fn machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{}",
            self.region, self.account, name
        )
    }

    fn activity_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:activity:{}",
            self.region, self.account, name
        )
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<R, StoreError>,
    ) -> Result<R, ApiError> {
        self.runtime.store().read(f).map_err(store_error)
    }

    fn machine_row(&self, arn: &str) -> Result<MachineRow, ApiError> {
        Ok(self.known_machine(arn)?.row.clone())
    }

    fn known_machine(&self, arn: &str) -> Result<Arc<Known>, ApiError> {
        check_arn(arn, "stateMachine")?;
        let lock = || self.machines.lock().unwrap_or_else(|p| p.into_inner());
        let cleared = {
            let machines = lock();
            if let Some(row) = machines.1.get(arn) {
                return Ok(row.clone());
            }
            machines.0
        };
        let row = self
            .read(|c| {
                let sql = format!(
                    "SELECT {} FROM state_machines WHERE arn = ?1",
                    MachineRow::COLUMNS
                );
                Ok(c.prepare_cached(&sql)?
                    .query_row([arn], MachineRow::from_row)
                    .optional()?)
            })?
            .ok_or_else(|| {
                ApiError::state_machine_does_not_exist(format!(
                    "State Machine Does Not Exist: '{arn}'"
                ))
            })?;
        let known = Arc::new(Known {
            row,
            parsed: Default::default(),
        });
        let mut machines = lock();
        // Kept only if no write cleared the rows since before this read: else it may be
        // the row as it was before that write, and the write's clearing has passed.
        if machines.0 == cleared {
            if machines.1.len() >= MACHINES_KEPT {
                machines.1.clear();
            }
            machines.1.insert(arn.to_string(), known.clone());
        }
        Ok(known)
    }

    /// After a write to `state_machines` commits: the rows read before it go.
    fn machines_changed(&self) {
        let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        machines.0 += 1;
        machines.1.clear();
    }

    fn execution_row(&self, arn: &str) -> Result<ExecutionRecord, ApiError> {
        check_execution_arn(arn)?;
        self.read(|c| {
            let sql = format!("{} WHERE e.arn = ?1", ExecutionRecord::SELECT);
            Ok(c.prepare_cached(&sql)?
                .query_row([arn], ExecutionRecord::from_row)
                .optional()?)
        })?
        .ok_or_else(|| no_such_execution(arn))
    }

    async fn start(
        &self,
        machine_arn: &str,
        name: Option<String>,
        input: Option<String>,
        parent: Option<Parent>,
    ) -> Result<(String, DateTime<Utc>, bool), ApiError> {
        let (machine_arn, test_case) = crate::mock::split_test_case(machine_arn);
        let known = self.known_machine(machine_arn)?;
        let machine = &known.row;
        if let Some(case) = test_case {
            self.check_test_case(&machine.name, case)?;
        }
        let name = match name {
            Some(n) => {
                check_name(&n)?;
                n
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let input_text = input.unwrap_or_else(|| "{}".into());
        if input_text.len() > MAX_PAYLOAD {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have length less than or equal to {MAX_PAYLOAD}"
            )));
        }
        let input_value: Value = serde_json::from_str(&input_text).map_err(|e| {
            ApiError::invalid_execution_input(format!(
                "Invalid State Machine Execution Input: '{e}'"
            ))
        })?;
        let parsed = known.parsed()?;
        let express = machine.r#type == "EXPRESS";
        let new = NewExecution {
            state_machine_arn: machine.arn.clone(),
            name: name.clone(),
            role_arn: machine.role_arn.clone(),
            express,
            definition: machine.definition.clone(),
            machine: parsed,
            input: input_value,
            input_text: input_text.clone(),
            parent,
            test_case: test_case.map(String::from),
        };
        match self.runtime.start(new).await {
            Ok((arn, start)) => Ok((arn, start, express)),
            Err(RuntimeError::AlreadyExists(_)) if express => Err(
                ApiError::execution_already_exists(format!("Execution Already Exists: '{name}'")),
            ),
            Err(RuntimeError::AlreadyExists(_)) => {
                let arn = format!(
                    "{}:{}",
                    machine.arn.replacen(":stateMachine:", ":execution:", 1),
                    name
                );
                self.same_running_execution(arn, &input_text)
                    .map(|(arn, start)| (arn, start, express))
            }
            Err(e) => Err(runtime_error(e)),
        }
    }
}

/// An execution as ListExecutions shows it.
struct ListedRow {
    arn: String,
    state_machine_arn: String,
    name: String,
    status: ExecutionStatus,
    start_date: f64,
    stop_date: Option<f64>,
    redrive_count: i64,
    redrive_date: Option<f64>,
}

impl ListedRow {
    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<ListedRow> {
        Ok(ListedRow {
            arn: r.get(0)?,
            state_machine_arn: r.get(1)?,
            name: r.get(2)?,
            status: crate::runtime::wire(r, 3, ExecutionStatus::parse)?,
            start_date: r.get(4)?,
            stop_date: r.get(5)?,
            redrive_count: r.get(6)?,
            redrive_date: r.get(7)?,
        })
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal_failure(e.to_string())
}

/// A store error as the API answers it: a full disk is 503 ServiceUnavailable (retry
/// later; nothing was written), anything else an internal failure.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(m) => ApiError::service_unavailable(m),
        other => internal(other),
    }
}

/// AWS's answer for an execution it does not have.
fn no_such_execution(arn: &str) -> ApiError {
    ApiError::execution_does_not_exist(format!("Execution Does Not Exist: '{arn}'"))
}

fn runtime_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::NoSuchExecution(a) => no_such_execution(&a),
        RuntimeError::NoSuchToken => ApiError::task_does_not_exist("Task Does Not Exist"),
        RuntimeError::AlreadyExists(a) => {
            ApiError::execution_already_exists(format!("Execution Already Exists: '{a}'"))
        }
        RuntimeError::Invalid(m) => ApiError::validation(m),
        RuntimeError::NotRedrivable(m) => ApiError::execution_not_redrivable(m),
        RuntimeError::Store(e) => store_error(e),
    }
}

/// Names of state machines, executions and activities: 1 to 80 characters, none of
/// whitespace, brackets, wildcards, `"#%\^|~`$&,;:/` or control characters.
fn check_name(name: &str) -> Result<(), ApiError> {
    const FORBIDDEN: &str = " <>{}[]?*\"#%\\^|~`$&,;:/";
    let ok = !name.is_empty()
        && name.chars().count() <= 80
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_name(format!("Invalid Name: '{name}'")))
    }
}

fn check_arn(arn: &str, kind: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "states" {
        return Err(ApiError::invalid_arn(format!(
            "Invalid Arn: 'Invalid ARN prefix: {arn}'"
        )));
    }
    if parts[5] != kind {
        return Err(ApiError::invalid_arn(format!(
            "Invalid Arn: 'Resource type not valid in this context: {}'",
            parts[5]
        )));
    }
    Ok(())
}

fn check_execution_arn(arn: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "states" {
        return Err(ApiError::invalid_arn(format!(
            "Invalid Arn: 'Invalid ARN prefix: {arn}'"
        )));
    }
    if parts[5] != "execution" && parts[5] != "express" {
        return Err(ApiError::invalid_arn(format!(
            "Invalid Arn: 'Resource type not valid in this context: {}'",
            parts[5]
        )));
    }
    Ok(())
}

/// oms mints every task token as a hyphenated UUID (the evaluator for
/// `.waitForTaskToken`, the runtime for activities). AWS answers InvalidToken for a
/// token it cannot decode and TaskDoesNotExist only for a well-formed one it does not
/// know, so a token of any other shape is InvalidToken here.
fn check_token(token: &str) -> Result<(), ApiError> {
    let well_formed = token.len() == 36 && uuid::Uuid::try_parse(token).is_ok();
    if !well_formed {
        return Err(ApiError::invalid_token("Invalid Token: 'Invalid token'"));
    }
    Ok(())
}

/// `nextToken` is an offset into the ordered result, written so it can be checked.
fn page(
    next_token: &Option<String>,
    max_results: Option<i32>,
    default_max: i64,
) -> Result<(i64, i64), ApiError> {
    let offset = match next_token {
        None => 0,
        Some(t) => t
            .strip_prefix("oms-page:")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid_token(t))?,
    };
    Ok((offset, page_size(max_results, default_max)?))
}

fn invalid_token(token: &str) -> ApiError {
    ApiError::invalid_token(format!("Invalid Token: '{token}'"))
}

/// Where a page of ListExecutions ends: its last execution's start (epoch seconds) and
/// ARN, in the list's order (newest first, then by ARN). The next page starts after it,
/// so executions started while a client pages (orders arrive all the time) neither
/// repeat an execution on the next page nor push one off it, as an offset would.
#[derive(Debug, Clone, PartialEq)]
struct ListCursor {
    start_date: f64,
    arn: String,
}

impl ListCursor {
    const PREFIX: &'static str = "oms-after:";

    fn token(&self) -> String {
        // `{}` prints an f64 in the fewest digits that read back as the same number.
        format!("{}{}:{}", Self::PREFIX, self.start_date, self.arn)
    }

    fn parse(token: &str) -> Result<ListCursor, ApiError> {
        token
            .strip_prefix(Self::PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(date, arn)| {
                let start_date = date.parse::<f64>().ok().filter(|d| d.is_finite())?;
                (!arn.is_empty()).then(|| ListCursor {
                    start_date,
                    arn: arn.to_string(),
                })
            })
            .ok_or_else(|| invalid_token(token))
    }
}

/// `maxResults`, or `default_max` when absent or 0.
fn page_size(max_results: Option<i32>, default_max: i64) -> Result<i64, ApiError> {
    // AWS's range is 0 to 1000 (0 means the default); its message names the bound broken.
    let limit = match max_results {
        None | Some(0) => default_max,
        Some(n) if !(0..=1000).contains(&n) => {
            let bound = if n < 0 {
                "greater than or equal to 0"
            } else {
                "less than or equal to 1000"
            };
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value {bound}"
            )));
        }
        Some(n) => n as i64,
    };
    Ok(limit)
}

fn next_page(offset: i64, limit: i64, got: usize) -> Option<String> {
    (got as i64 > limit).then(|| format!("oms-page:{}", offset + limit))
}

/// ListExecutions' statement: executions by `filter` (a machine's, or a Map Run's
/// children; `?1`), newest first, with `?2` the status asked for if any, `?3` the redrive
/// filter, `?4` the page's size, and after a cursor (`?5` and `?6`, a [`ListCursor`]) if
/// `after`, bounded by plain comparisons so that a deep page starts where the last one
/// ended rather than reading every execution before it. A status is bound by a plain comparison, never `(?2 IS
/// NULL OR ...)`, which SQLite cannot search an index by: a list of the few FAILED
/// executions would read every one that succeeded. Those others are in the partial index
/// `executions_open`, which a statement uses only if it says the index's condition; a
/// list of SUCCEEDED (most of a machine's) reads its machine's newest first, as an
/// unfiltered list does. A Map Run's children (`map_run`) are read by their run and each
/// checked (`+` keeps SQLite off the status indexes): a run has at most its items, while
/// every machine's failed executions may be many. store.rs's `status_lists_are_searched`
/// checks the plans.
pub(crate) fn list_executions_sql(
    filter: &str,
    map_run: bool,
    status: Option<&str>,
    after: bool,
) -> String {
    let after = if after {
        "AND e.start_date <= ?5 AND (e.start_date < ?5 OR e.arn > ?6)"
    } else {
        ""
    };
    let status = match status {
        None => "",
        Some(_) if map_run => "AND +e.status = ?2",
        Some(s) if s == ExecutionStatus::Succeeded.as_str() => "AND e.status = ?2",
        Some(_) => "AND e.status = ?2 AND e.status <> 'SUCCEEDED'",
    };
    format!(
        "SELECT e.arn, e.state_machine_arn, e.name, e.status, e.start_date, e.stop_date, \
         e.redrive_count, e.redrive_date FROM executions e \
         WHERE {filter} {status} {after} \
         AND (?3 IS NULL OR (?3 = 1 AND e.redrive_count > 0) OR (?3 = 0 AND e.redrive_count = 0)) \
         ORDER BY e.start_date DESC, e.arn LIMIT ?4"
    )
}

#[derive(Clone)]
struct MachineRow {
    arn: String,
    name: String,
    r#type: String,
    /// Shared with every execution started from it (two an order), not copied.
    definition: Arc<str>,
    role_arn: String,
    description: Option<String>,
    revision_id: String,
    created: f64,
}

impl MachineRow {
    const COLUMNS: &'static str =
        "arn, name, type, definition, role_arn, description, revision_id, created";
    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<MachineRow> {
        Ok(MachineRow {
            arn: r.get(0)?,
            name: r.get(1)?,
            r#type: r.get(2)?,
            definition: r.get::<_, String>(3)?.into(),
            role_arn: r.get(4)?,
            description: r.get(5)?,
            revision_id: r.get(6)?,
            created: r.get(7)?,
        })
    }
    fn machine_type(&self) -> StateMachineType {
        StateMachineType::parse(&self.r#type).unwrap_or_default()
    }
}

fn validate_definition(definition: &str, t: StateMachineType) -> Result<(), ApiError> {
    if definition.len() > MAX_DEFINITION {
        return Err(ApiError::invalid_definition(
            "Invalid State Machine Definition: 'The definition is larger than 1 MB'",
        ));
    }
    let opts = Options {
        machine_type: if t == StateMachineType::Express {
            MachineType::Express
        } else {
            MachineType::Standard
        },
    };
    let diags = validate::validate_str(definition, opts);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(ApiError::invalid_definition(
            validate::invalid_definition_message(&diags),
        ));
    }
    Machine::parse(definition).map(|_| ()).map_err(|e| {
        ApiError::invalid_definition(format!("Invalid State Machine Definition: '{e}'"))
    })
}

fn check_role(role: &str) -> Result<(), ApiError> {
    if role.starts_with("arn:") && role.contains(":iam::") {
        Ok(())
    } else {
        Err(ApiError::invalid_arn(format!(
            "Invalid Arn: 'Invalid ARN prefix: {role}'"
        )))
    }
}

/// The history as GetExecutionHistory shows it: details under the type's own key, and
/// inputs, outputs and parameters as JSON text.
fn api_event(
    id: i64,
    previous: i64,
    ts: f64,
    kind: &str,
    details: Option<String>,
    include_data: bool,
) -> HistoryEvent {
    let mut details: Value = details
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or(Value::Null);
    if let Value::Object(map) = &mut details {
        for key in ["input", "output", "parameters"] {
            if let Some(v) = map.get_mut(key) {
                if include_data {
                    *v = Value::String(v.to_string());
                } else {
                    map.remove(key);
                }
            }
        }
        if let Some(Value::Object(vars)) = map.get_mut("assignedVariables") {
            for v in vars.values_mut() {
                *v = Value::String(v.to_string());
            }
        }
    }
    HistoryEvent::new(
        id,
        (previous > 0).then_some(previous),
        from_epoch(ts),
        kind,
        details,
    )
}

#[async_trait::async_trait]
impl StepFunctions for LocalStepFunctions {
    async fn create_state_machine(
        &self,
        input: CreateStateMachineInput,
    ) -> Result<CreateStateMachineOutput, ApiError> {
        check_name(&input.name)?;
        check_role(&input.role_arn)?;
        let t = input.r#type.unwrap_or_default();
        validate_definition(&input.definition, t)?;
        let arn = self.machine_arn(&input.name);
        if let Ok(existing) = self.machine_row(&arn) {
            // Creating the same machine again is idempotent; a different one conflicts.
            if *existing.definition == *input.definition
                && existing.role_arn == input.role_arn
                && existing.r#type == t.as_str()
            {
                return Ok(CreateStateMachineOutput {
                    state_machine_arn: arn,
                    creation_date: from_epoch(existing.created),
                    ..Default::default()
                });
            }
            return Err(ApiError::state_machine_already_exists(format!(
                "State Machine Already Exists: '{arn}'"
            )));
        }
        let now = Utc::now();
        let (a, name, def, role) = (
            arn.clone(),
            input.name.clone(),
            input.definition.clone(),
            input.role_arn.clone(),
        );
        let revision = uuid::Uuid::new_v4().to_string();
        self.runtime
            .store()
            .write(move |c| {
                c.execute(
                    "INSERT INTO state_machines (arn, name, type, definition, role_arn, revision_id, created) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                    params![a, name, t.as_str(), def, role, revision, epoch(now)],
                )?;
                Ok(())
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ApiError::state_machine_already_exists(format!("State Machine Already Exists: '{arn}'")),
                other => internal(other),
            })?;
        self.machines_changed();
        Ok(CreateStateMachineOutput {
            state_machine_arn: arn,
            creation_date: now,
            ..Default::default()
        })
    }

    async fn update_state_machine(
        &self,
        input: UpdateStateMachineInput,
    ) -> Result<UpdateStateMachineOutput, ApiError> {
        self.refuse_if_owned("UpdateStateMachine", &input.state_machine_arn)?;
        let row = self.machine_row(&input.state_machine_arn)?;
        if input.definition.is_none()
            && input.role_arn.is_none()
            && input.logging_configuration.is_none()
            && input.tracing_configuration.is_none()
        {
            return Err(ApiError::missing_required_parameter("Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration must be specified"));
        }
        if let Some(d) = &input.definition {
            validate_definition(d, row.machine_type())?;
        }
        if let Some(r) = &input.role_arn {
            check_role(r)?;
        }
        let now = Utc::now();
        let revision = uuid::Uuid::new_v4().to_string();
        let rev = revision.clone();
        let (arn, def, role) = (
            row.arn.clone(),
            input
                .definition
                .unwrap_or_else(|| row.definition.to_string()),
            input.role_arn.unwrap_or(row.role_arn),
        );
        let updated = self
            .runtime
            .store()
            .write(move |c| {
                c.execute(
                    "UPDATE state_machines SET definition = ?2, role_arn = ?3, revision_id = ?4, updated = ?5 WHERE arn = ?1",
                    params![arn, def, role, rev, epoch(now)],
                )?;
                Ok(())
            })
            .await;
        // Cleared even if the write failed: it may have committed before failing to sync.
        self.machines_changed();
        updated.map_err(store_error)?;
        Ok(UpdateStateMachineOutput {
            update_date: now,
            revision_id: Some(revision),
            state_machine_version_arn: None,
        })
    }

    async fn describe_state_machine(
        &self,
        input: DescribeStateMachineInput,
    ) -> Result<DescribeStateMachineOutput, ApiError> {
        let row = self.machine_row(&input.state_machine_arn)?;
        let variable_references = variable_references(&row.definition);
        Ok(DescribeStateMachineOutput {
            variable_references,
            r#type: row.machine_type(),
            state_machine_arn: row.arn,
            name: row.name,
            status: Some(StateMachineStatus::Active),
            definition: row.definition.to_string(),
            role_arn: row.role_arn,
            creation_date: from_epoch(row.created),
            revision_id: Some(row.revision_id),
            description: row.description,
            logging_configuration: Some(LoggingConfiguration {
                level: Some(LogLevel::Off),
                include_execution_data: Some(false),
                ..Default::default()
            }),
            tracing_configuration: Some(TracingConfiguration {
                enabled: Some(false),
            }),
            ..Default::default()
        })
    }

    async fn list_state_machines(
        &self,
        input: ListStateMachinesInput,
    ) -> Result<ListStateMachinesOutput, ApiError> {
        let (offset, limit) = page(&input.next_token, input.max_results, 100)?;
        let rows: Vec<MachineRow> = self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM state_machines ORDER BY name LIMIT ?1 OFFSET ?2",
                MachineRow::COLUMNS
            ))?;
            let rows = st.query_map([limit + 1, offset], MachineRow::from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        let next_token = next_page(offset, limit, rows.len());
        Ok(ListStateMachinesOutput {
            state_machines: rows
                .into_iter()
                .take(limit as usize)
                .map(|r| StateMachineListItem {
                    r#type: r.machine_type(),
                    state_machine_arn: r.arn,
                    name: r.name,
                    creation_date: from_epoch(r.created),
                })
                .collect(),
            next_token,
        })
    }

    async fn delete_state_machine(
        &self,
        input: DeleteStateMachineInput,
    ) -> Result<DeleteStateMachineOutput, ApiError> {
        check_arn(&input.state_machine_arn, "stateMachine")?;
        self.refuse_if_owned("DeleteStateMachine", &input.state_machine_arn)?;
        let arn = input.state_machine_arn.clone();
        // Executions keep a copy of the definition they started with, so they run on.
        let deleted = self
            .runtime
            .store()
            .write(move |c| {
                c.execute("DELETE FROM state_machines WHERE arn = ?1", [arn])?;
                Ok(())
            })
            .await;
        self.machines_changed();
        deleted.map_err(store_error)?;
        Ok(DeleteStateMachineOutput {})
    }

    async fn validate_state_machine_definition(
        &self,
        input: ValidateStateMachineDefinitionInput,
    ) -> Result<ValidateStateMachineDefinitionOutput, ApiError> {
        let t = input.r#type.unwrap_or_default();
        let opts = Options {
            machine_type: if t == StateMachineType::Express {
                MachineType::Express
            } else {
                MachineType::Standard
            },
        };
        let want_warnings = input.severity == Some(ValidateStateMachineDefinitionSeverity::Warning);
        let mut diagnostics: Vec<ValidateStateMachineDefinitionDiagnostic> =
            validate::validate_str(&input.definition, opts)
                .into_iter()
                .filter(|d| want_warnings || d.severity == Severity::Error)
                .map(|d| ValidateStateMachineDefinitionDiagnostic {
                    severity: if d.severity == Severity::Error {
                        ValidateStateMachineDefinitionSeverity::Error
                    } else {
                        ValidateStateMachineDefinitionSeverity::Warning
                    },
                    code: d.code,
                    message: d.message,
                    location: d.location,
                })
                .collect();
        let failed = diagnostics
            .iter()
            .any(|d| d.severity == ValidateStateMachineDefinitionSeverity::Error);
        let max = input.max_results.filter(|m| *m > 0).unwrap_or(100) as usize;
        let truncated = diagnostics.len() > max;
        diagnostics.truncate(max);
        Ok(ValidateStateMachineDefinitionOutput {
            result: if failed {
                ValidateStateMachineDefinitionResultCode::Fail
            } else {
                ValidateStateMachineDefinitionResultCode::Ok
            },
            diagnostics,
            truncated: Some(truncated),
        })
    }

    async fn start_execution(
        &self,
        input: StartExecutionInput,
    ) -> Result<StartExecutionOutput, ApiError> {
        let (arn, start, _) = self
            .start(&input.state_machine_arn, input.name, input.input, None)
            .await?;
        Ok(StartExecutionOutput {
            execution_arn: arn,
            start_date: start,
        })
    }

    async fn start_sync_execution(
        &self,
        input: StartSyncExecutionInput,
    ) -> Result<StartSyncExecutionOutput, ApiError> {
        let machine = self.machine_row(&input.state_machine_arn)?;
        if machine.r#type != "EXPRESS" {
            return Err(ApiError::state_machine_type_not_supported(
                "This operation is not supported by this type of state machine",
            ));
        }
        let (arn, start, _) = self
            .start(&input.state_machine_arn, input.name, input.input, None)
            .await?;
        self.runtime.wait_finished(&arn).await;
        let row = self.execution_row(&arn)?;
        let status = match row.status {
            ExecutionStatus::Succeeded => SyncExecutionStatus::Succeeded,
            ExecutionStatus::TimedOut => SyncExecutionStatus::TimedOut,
            _ => SyncExecutionStatus::Failed,
        };
        let include = input.included_data != Some(IncludedData::MetadataOnly);
        Ok(StartSyncExecutionOutput {
            execution_arn: arn,
            state_machine_arn: Some(row.state_machine_arn),
            name: Some(row.name),
            start_date: start,
            stop_date: row.stop_date.map(from_epoch).unwrap_or_else(Utc::now),
            status,
            error: row.error,
            cause: row.cause,
            input: include.then_some(row.input),
            input_details: Some(CloudWatchEventsExecutionDataDetails {
                included: Some(include),
            }),
            output: if include { row.output } else { None },
            output_details: Some(CloudWatchEventsExecutionDataDetails {
                included: Some(include),
            }),
            ..Default::default()
        })
    }

    async fn describe_execution(
        &self,
        input: DescribeExecutionInput,
    ) -> Result<DescribeExecutionOutput, ApiError> {
        let r = self.execution_row(&input.execution_arn)?;
        let map_run_arn = map_runs::of_child(self, &r.arn)?;
        let include = input.included_data != Some(IncludedData::MetadataOnly);
        Ok(r.describe(include, map_run_arn))
    }

    async fn describe_state_machine_for_execution(
        &self,
        input: DescribeStateMachineForExecutionInput,
    ) -> Result<DescribeStateMachineForExecutionOutput, ApiError> {
        let r = self.execution_row(&input.execution_arn)?;
        let name = r
            .state_machine_arn
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        // A Map Run's child runs the Map's ItemProcessor, named `<machine>/<label>`.
        let map_run_arn = map_runs::of_child(self, &r.arn)?;
        let label = map_run_arn
            .as_ref()
            .and_then(|_| name.split_once('/'))
            .map(|(_, label)| label.to_string());
        Ok(DescribeStateMachineForExecutionOutput {
            state_machine_arn: r.state_machine_arn,
            name,
            variable_references: variable_references(&r.definition),
            definition: r.definition.to_string(),
            role_arn: r.role_arn,
            update_date: from_epoch(r.start_date),
            map_run_arn,
            label,
            ..Default::default()
        })
    }

    async fn list_executions(
        &self,
        input: ListExecutionsInput,
    ) -> Result<ListExecutionsOutput, ApiError> {
        // The executions of a state machine, or the children of a Map Run.
        let (filter, key, map_run) = match (&input.state_machine_arn, &input.map_run_arn) {
            (Some(machine_arn), None) => {
                self.machine_row(machine_arn)?;
                ("e.state_machine_arn = ?1", machine_arn.clone(), None)
            }
            (None, Some(run)) => {
                map_runs::row(self, run)?;
                (map_runs::CHILDREN_FILTER, run.clone(), Some(run.clone()))
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "Only one of StateMachine ARN or MapRun ARN may be provided",
                ))
            }
            (None, None) => {
                return Err(ApiError::validation(
                    "Must provide a StateMachine ARN or MapRun ARN",
                ))
            }
        };
        let limit = page_size(input.max_results, 100)?;
        let after = input
            .next_token
            .as_deref()
            .map(ListCursor::parse)
            .transpose()?;
        let status = input.status_filter.map(|s| s.as_str().to_string());
        let redriven = input
            .redrive_filter
            .map(|f| f == ExecutionRedriveFilter::Redriven);
        // Only what a list item shows: not the definition, input or output (a page of
        // 100 read each execution's whole definition and unpacked its payloads).
        let rows: Vec<ListedRow> = self.read(|c| {
            let mut st = c.prepare_cached(&list_executions_sql(
                filter,
                map_run.is_some(),
                status.as_deref(),
                after.is_some(),
            ))?;
            let page = limit + 1;
            let mut bound: Vec<&dyn rusqlite::ToSql> = vec![&key, &status, &redriven, &page];
            if let Some(a) = &after {
                bound.extend([&a.start_date as &dyn rusqlite::ToSql, &a.arn]);
            }
            let rows = st.query_map(bound.as_slice(), ListedRow::from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        // One more row than the page was read: there is a next page if it came.
        let next_token = (rows.len() as i64 > limit)
            .then(|| rows.get(limit as usize - 1))
            .flatten()
            .map(|last| {
                ListCursor {
                    start_date: last.start_date,
                    arn: last.arn.clone(),
                }
                .token()
            });
        let items = match &map_run {
            Some(run) => map_runs::items_by_child(self, run)?,
            None => HashMap::new(),
        };
        Ok(ListExecutionsOutput {
            executions: rows
                .into_iter()
                .take(limit as usize)
                .map(|r| ExecutionListItem {
                    item_count: items.get(&r.arn).map(|n| *n as i32),
                    execution_arn: r.arn,
                    state_machine_arn: r.state_machine_arn,
                    name: r.name,
                    status: r.status,
                    start_date: from_epoch(r.start_date),
                    stop_date: r.stop_date.map(from_epoch),
                    redrive_count: Some(r.redrive_count as i32),
                    redrive_date: r.redrive_date.map(from_epoch),
                    // AWS names the Map Run (and a child's items) only when the list
                    // was asked by it.
                    map_run_arn: map_run.clone(),
                    ..Default::default()
                })
                .collect(),
            next_token,
        })
    }

    async fn get_execution_history(
        &self,
        input: GetExecutionHistoryInput,
    ) -> Result<GetExecutionHistoryOutput, ApiError> {
        check_execution_arn(&input.execution_arn)?;
        let (offset, limit) = page(&input.next_token, input.max_results, 100)?;
        let reverse = input.reverse_order == Some(true);
        let include = input.include_execution_data != Some(false);
        let arn = input.execution_arn.clone();
        // Whether it exists is its rowid's lookup, not a read of its whole record.
        let rows: Option<Vec<(i64, i64, f64, String, Option<String>)>> = self.read(|c| {
            let Some(id) = crate::history::execution_id(c, &arn)? else {
                return Ok(None);
            };
            // Frames (a closed execution's, a running one's steps: history.rs), read
            // whole and paged here.
            let mut events = crate::history::read(c, id)?;
            if reverse {
                events.reverse();
            }
            Ok(Some(
                events
                    .into_iter()
                    .skip(offset as usize)
                    .take(limit as usize + 1)
                    .map(|e| (e.id, e.previous_id, e.timestamp, e.kind, e.details))
                    .collect(),
            ))
        })?;
        let rows = rows.ok_or_else(|| no_such_execution(&input.execution_arn))?;
        let next_token = next_page(offset, limit, rows.len());
        Ok(GetExecutionHistoryOutput {
            events: rows
                .into_iter()
                .take(limit as usize)
                .map(|(id, prev, ts, kind, d)| api_event(id, prev, ts, &kind, d, include))
                .collect(),
            next_token,
        })
    }

    async fn stop_execution(
        &self,
        input: StopExecutionInput,
    ) -> Result<StopExecutionOutput, ApiError> {
        let row = self.execution_row(&input.execution_arn)?;
        if row.status != ExecutionStatus::Running {
            return Ok(StopExecutionOutput {
                stop_date: row.stop_date.map(from_epoch).unwrap_or_else(Utc::now),
            });
        }
        let stop_date = self
            .runtime
            .stop(&input.execution_arn, input.error, input.cause)
            .await
            .map_err(runtime_error)?;
        Ok(StopExecutionOutput { stop_date })
    }

    async fn redrive_execution(
        &self,
        input: RedriveExecutionInput,
    ) -> Result<RedriveExecutionOutput, ApiError> {
        self.execution_row(&input.execution_arn)?;
        let redrive_date = self
            .runtime
            .redrive(&input.execution_arn)
            .await
            .map_err(runtime_error)?;
        Ok(RedriveExecutionOutput { redrive_date })
    }

    async fn send_task_success(
        &self,
        input: SendTaskSuccessInput,
    ) -> Result<SendTaskSuccessOutput, ApiError> {
        check_token(&input.task_token)?;
        if input.output.len() > MAX_PAYLOAD {
            return Err(ApiError::validation("1 validation error detected: Value at 'output' failed to satisfy constraint: Member must have length less than or equal to 262144"));
        }
        let output: Value = serde_json::from_str(&input.output)
            .map_err(|e| ApiError::invalid_output(format!("Invalid Output: '{e}'")))?;
        self.runtime
            .complete_task(&input.task_token, Ok(output))
            .await
            .map_err(runtime_error)?;
        Ok(SendTaskSuccessOutput {})
    }

    async fn send_task_failure(
        &self,
        input: SendTaskFailureInput,
    ) -> Result<SendTaskFailureOutput, ApiError> {
        check_token(&input.task_token)?;
        let f = Failure {
            error: input.error.unwrap_or_default(),
            cause: input.cause,
        };
        self.runtime
            .complete_task(&input.task_token, Err(f))
            .await
            .map_err(runtime_error)?;
        Ok(SendTaskFailureOutput {})
    }

    async fn send_task_heartbeat(
        &self,
        input: SendTaskHeartbeatInput,
    ) -> Result<SendTaskHeartbeatOutput, ApiError> {
        check_token(&input.task_token)?;
        self.runtime
            .heartbeat(&input.task_token)
            .await
            .map_err(runtime_error)?;
        Ok(SendTaskHeartbeatOutput {})
    }

    async fn create_activity(
        &self,
        input: CreateActivityInput,
    ) -> Result<CreateActivityOutput, ApiError> {
        check_name(&input.name)?;
        let arn = self.activity_arn(&input.name);
        let now = Utc::now();
        let (a, n) = (arn.clone(), input.name.clone());
        // Creating an existing activity returns it, as AWS does.
        let created: f64 = self
            .runtime
            .store()
            .write(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO activities (arn, name, created) VALUES (?1, ?2, ?3)",
                    params![a, n, epoch(now)],
                )?;
                Ok(
                    c.query_row("SELECT created FROM activities WHERE arn = ?1", [&a], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .map_err(store_error)?;
        Ok(CreateActivityOutput {
            activity_arn: arn,
            creation_date: from_epoch(created),
        })
    }

    async fn delete_activity(
        &self,
        input: DeleteActivityInput,
    ) -> Result<DeleteActivityOutput, ApiError> {
        check_arn(&input.activity_arn, "activity")?;
        let arn = input.activity_arn.clone();
        self.runtime
            .store()
            .write(move |c| {
                c.execute("DELETE FROM activities WHERE arn = ?1", [arn])?;
                Ok(())
            })
            .await
            .map_err(store_error)?;
        Ok(DeleteActivityOutput {})
    }

    async fn describe_activity(
        &self,
        input: DescribeActivityInput,
    ) -> Result<DescribeActivityOutput, ApiError> {
        check_arn(&input.activity_arn, "activity")?;
        let arn = input.activity_arn.clone();
        let row: Option<(String, f64)> = self.read(|c| {
            Ok(c.query_row(
                "SELECT name, created FROM activities WHERE arn = ?1",
                [&arn],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })?;
        let (name, created) = row.ok_or_else(|| {
            ApiError::activity_does_not_exist(format!("Activity Does Not Exist: '{arn}'"))
        })?;
        Ok(DescribeActivityOutput {
            activity_arn: arn,
            name,
            creation_date: from_epoch(created),
            encryption_configuration: None,
        })
    }

    async fn list_activities(
        &self,
        input: ListActivitiesInput,
    ) -> Result<ListActivitiesOutput, ApiError> {
        let (offset, limit) = page(&input.next_token, input.max_results, 100)?;
        let rows: Vec<(String, String, f64)> = self.read(|c| {
            let mut st = c.prepare(
                "SELECT arn, name, created FROM activities ORDER BY name LIMIT ?1 OFFSET ?2",
            )?;
            let rows = st.query_map([limit + 1, offset], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        let next_token = next_page(offset, limit, rows.len());
        Ok(ListActivitiesOutput {
            activities: rows
                .into_iter()
                .take(limit as usize)
                .map(|(activity_arn, name, created)| ActivityListItem {
                    activity_arn,
                    name,
                    creation_date: from_epoch(created),
                })
                .collect(),
            next_token,
        })
    }

    async fn get_activity_task(
        &self,
        input: GetActivityTaskInput,
    ) -> Result<GetActivityTaskOutput, ApiError> {
        check_arn(&input.activity_arn, "activity")?;
        let arn = input.activity_arn.clone();
        let exists: bool = self.read(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM activities WHERE arn = ?1",
                [&arn],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })?;
        if !exists {
            return Err(ApiError::activity_does_not_exist(format!(
                "Activity Does Not Exist: '{arn}'"
            )));
        }
        let deadline = tokio::time::Instant::now() + ACTIVITY_POLL;
        loop {
            let signal = self.runtime.activity_signal(&arn);
            let notified = signal.notified();
            if let Some((token, input)) = self
                .runtime
                .claim_activity_task(&arn, input.worker_name.clone())
                .await
                .map_err(runtime_error)?
            {
                return Ok(GetActivityTaskOutput {
                    task_token: Some(token),
                    input: Some(input),
                });
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(GetActivityTaskOutput {
                    task_token: None,
                    input: None,
                });
            }
        }
    }

    async fn test_state(&self, input: TestStateInput) -> Result<TestStateOutput, ApiError> {
        // The state runs in asl::teststate, on a virtual clock. Tasks are not called for
        // real here (the runtime's invoker is asynchronous and owned by the durable
        // runtime): a task without a mock is refused with a ValidationException.
        use asl::teststate::InspectionLevel as Level;
        let mut req = self.test_state_request(&input)?;
        // A task the invoker performs for TestState (an HTTP Task) runs for real; its
        // result is then given to the engine as the mock would be.
        let mut call = None;
        if req.mock.is_none() {
            if let Some(task) = first_task_call(&req) {
                let reveal = input.reveal_secrets.unwrap_or(false);
                call = self.runtime.invoker().test_call(&task, reveal).await;
            }
        }
        if let Some(c) = &call {
            req.mock = Some(match &c.result {
                Ok(v) => asl::teststate::Mock::Result(v.to_string()),
                Err(f) => asl::teststate::Mock::Error(f.clone()),
            });
        }
        let mut out = test_state_output(run_test_state(&req)?);
        if let (Some(c), Some(d)) = (call, out.inspection_data.as_mut()) {
            if req.inspection_level == Level::Trace {
                (d.request, d.response) = (c.request, c.response);
            }
        }
        Ok(out)
    }

    async fn list_map_runs(&self, input: ListMapRunsInput) -> Result<ListMapRunsOutput, ApiError> {
        map_runs::list(self, input)
    }

    async fn describe_map_run(
        &self,
        input: DescribeMapRunInput,
    ) -> Result<DescribeMapRunOutput, ApiError> {
        map_runs::describe(self, &input.map_run_arn)
    }

    async fn update_map_run(
        &self,
        input: UpdateMapRunInput,
    ) -> Result<UpdateMapRunOutput, ApiError> {
        map_runs::update(self, input).await
    }
}

/// The call `req`'s state makes when it is a Task (not one inside a Map or Parallel,
/// whose result the mock would otherwise stand for): state names are unique.
fn first_task_call(req: &asl::teststate::Request) -> Option<asl::TaskCall> {
    let mut first: Option<asl::TaskCall> = None;
    let mut record = |call: &asl::TaskCall| {
        first.get_or_insert_with(|| call.clone());
        asl::runner::TaskOutcome::err(Failure::runtime("recorded"))
    };
    let _ = asl::teststate::test_state(req, &mut record);
    let tested = (req.state_name.as_deref()).unwrap_or(asl::teststate::DEFAULT_STATE_NAME);
    first.filter(|c| c.state_name == tested)
}

/// `stateConfiguration`, held to the API's constraints (AWS's wording).
fn test_state_configuration(
    req: &mut asl::teststate::Request,
    config: &TestStateConfiguration,
) -> Result<(), ApiError> {
    let count = |name: &str, n: Option<i32>| -> Result<Option<u32>, ApiError> {
        n.map(|n| {
            u32::try_from(n).map_err(|_| ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at 'stateConfiguration.{name}' failed to satisfy constraint: Member must have value greater than or equal to 0"
            )))
        })
        .transpose()
    };
    req.retrier_retry_count = count("retrierRetryCount", config.retrier_retry_count)?.unwrap_or(0);
    req.map_iteration_failure_count = count(
        "mapIterationFailureCount",
        config.map_iteration_failure_count,
    )?;
    if let Some(name) = &config.error_caused_by_state {
        if name.is_empty() || name.chars().count() > 80 {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'stateConfiguration.errorCausedByState' failed to satisfy constraint: Member must have length between 1 and 80",
            ));
        }
        req.error_caused_by_state = Some(name.clone());
    }
    if let Some(data) = &config.map_item_reader_data {
        if data.len() > MAX_PAYLOAD {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'stateConfiguration.mapItemReaderData' failed to satisfy constraint: Member must have length less than or equal to {MAX_PAYLOAD}"
            )));
        }
        req.map_item_reader_data = Some(data.clone());
    }
    Ok(())
}

/// A TestState argument holding JSON text (`input`, `variables`, `context`), parsed.
fn json_arg(name: &str, text: &Option<String>) -> Result<Option<Value>, ApiError> {
    match text {
        None => Ok(None),
        Some(t) if t.len() > MAX_PAYLOAD => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must have length less than or equal to {MAX_PAYLOAD}"
        ))),
        Some(t) => serde_json::from_str(t).map(Some).map_err(|e| {
            ApiError::validation(format!("Invalid {name}: the value is not JSON: {e}"))
        }),
    }
}

/// TestState's `mock`: exactly one of a result and an error.
fn test_mock(mock: &MockInput) -> Result<asl::teststate::Mock, ApiError> {
    use asl::teststate::Mock;
    match (&mock.result, &mock.error_output) {
        (Some(r), None) => Ok(Mock::Result(r.clone())),
        (None, Some(e)) => Ok(Mock::Error(Failure {
            error: e.error.clone().unwrap_or_default(),
            cause: e.cause.clone(),
        })),
        _ => Err(ApiError::validation(
            "A test mock should have only one of the following fields: [result, errorOutput].",
        )),
    }
}

/// Runs a TestState request. Its tasks are not called: one without a mock is refused.
fn run_test_state(
    req: &asl::teststate::Request,
) -> Result<asl::teststate::TestStateResult, ApiError> {
    use asl::teststate::{self, RequestError};
    let mut called: Option<String> = None;
    let outcome = {
        let mut refuse = |call: &asl::TaskCall| {
            called.get_or_insert_with(|| call.resource.clone());
            asl::runner::TaskOutcome::err(Failure::new(
                "States.Runtime",
                "TestState cannot call tasks on this server",
            ))
        };
        teststate::test_state(req, &mut refuse)
    };
    if let Some(resource) = called {
        return Err(ApiError::validation(format!(
            "TestState on this server does not call '{resource}': give a mock (result or errorOutput) for the state"
        )));
    }
    outcome.map_err(|e| match e {
        RequestError::InvalidDefinition(m) => ApiError::invalid_definition(m),
        RequestError::Validation(m) => ApiError::validation(m),
    })
}

/// The engine's TestState result in the API's shape.
fn test_state_output(r: asl::teststate::TestStateResult) -> TestStateOutput {
    use asl::teststate;
    let text = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    let inspection_data = r.inspection_data.as_ref().map(|d| InspectionData {
        input: text(&d.input),
        after_arguments: text(&d.after_arguments),
        after_input_path: text(&d.after_input_path),
        after_parameters: text(&d.after_parameters),
        result: text(&d.result),
        after_result_selector: text(&d.after_result_selector),
        after_result_path: text(&d.after_result_path),
        variables: text(&d.variables),
        after_items_path: text(&d.after_items_path),
        after_item_selector: text(&d.after_item_selector),
        max_concurrency: d.max_concurrency.map(|n| n as i32),
        tolerated_failure_count: d.tolerated_failure_count.map(|n| n as i32),
        tolerated_failure_percentage: d.tolerated_failure_percentage.map(|n| n as f32),
        error_details: d.error_details.as_ref().map(|e| InspectionErrorDetails {
            catch_index: e.catch_index.map(|n| n as i32),
            retry_index: e.retry_index.map(|n| n as i32),
            retry_backoff_interval_seconds: e.retry_backoff_interval_seconds.map(|n| n as i32),
        }),
        ..InspectionData::default()
    });
    TestStateOutput {
        output: r.output.as_ref().map(Value::to_string),
        error: r.error,
        cause: r.cause,
        inspection_data,
        next_state: r.next_state,
        status: Some(match r.status {
            teststate::TestStatus::Succeeded => TestExecutionStatus::Succeeded,
            teststate::TestStatus::Failed => TestExecutionStatus::Failed,
            teststate::TestStatus::Retriable => TestExecutionStatus::Retriable,
            teststate::TestStatus::CaughtError => TestExecutionStatus::CaughtError,
        }),
    }
}

#[async_trait::async_trait]
impl Executions for LocalStepFunctions {
    async fn start_child(
        &self,
        machine_arn: &str,
        name: Option<String>,
        input: String,
        parent: Parent,
    ) -> Result<(String, DateTime<Utc>), ApiError> {
        // A child of an execution running a test case runs the test case of the same
        // name, where its own machine has one: a saga whose steps moved into a nested
        // machine (the order saga's Express child) is mocked as it was before.
        let inherited = self
            .runtime
            .test_case_of(&parent.execution_arn)
            .filter(|case| {
                let name = machine_arn.rsplit(':').next().unwrap_or(machine_arn);
                !machine_arn.contains('#') && self.check_test_case(name, case).is_ok()
            });
        let machine_arn = match inherited {
            Some(case) => format!("{machine_arn}#{case}"),
            None => machine_arn.to_string(),
        };
        let (arn, start, _) = self
            .start(&machine_arn, name, Some(input), Some(parent))
            .await?;
        Ok((arn, start))
    }

    async fn describe(&self, execution_arn: &str) -> Result<DescribeExecutionOutput, ApiError> {
        self.describe_execution(DescribeExecutionInput {
            execution_arn: execution_arn.to_string(),
            included_data: None,
        })
        .await
    }
}

/// DescribeStateMachine's `variableReferences`: each state's variables, absent when no
/// state reads one (as AWS leaves it out).
fn variable_references(definition: &str) -> Option<VariableReferences> {
    let def: serde_json::Value = serde_json::from_str(definition).ok()?;
    let refs = asl::references::variable_references(&def);
    (!refs.is_empty()).then_some(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_cursor_reads_back_as_written() {
        for start_date in [1.5, 1_764_979_200.123_456_7, 0.1 + 0.2, 1e-7] {
            let cursor = ListCursor {
                start_date,
                arn: "arn:aws:states:us-east-1:123456789012:execution:m:e".into(),
            };
            assert_eq!(ListCursor::parse(&cursor.token()).unwrap(), cursor);
        }
    }

    #[test]
    fn a_list_token_not_written_by_this_oms_is_refused() {
        for token in [
            "garbage",
            "oms-page:3",
            "oms-after:",
            "oms-after:1.5",
            "oms-after:1.5:",
            "oms-after:NaN:arn",
            "oms-after:inf:arn",
            "oms-after:x:arn",
        ] {
            let e = ListCursor::parse(token).unwrap_err();
            assert_eq!(e.message, format!("Invalid Token: '{token}'"), "{token}");
        }
    }
}
