//! The durable runtime: drives executions through the `asl` evaluator and commits
//! every step before acting on it.
//!
//! Each running execution lives in memory as an [`Execution`] behind its own lock.
//! A step (start, a task's result, a timer) advances it; the snapshot, the new history
//! events and the task tokens it hands out are written in one group commit; only after
//! the commit are the new effects performed (tasks invoked, timers set). After a crash,
//! [`Runtime::recover`] restores every RUNNING execution from its last snapshot and
//! performs its outstanding effects again: timers keep their deadlines, tasks that were
//! in flight are invoked again (at least once, as Lambda is), tokens stay valid.

mod children;
mod map_runs;
use crate::api::{
    CloudWatchEventsExecutionDataDetails, DescribeExecutionOutput, ExecutionRedriveStatus,
    ExecutionStatus, StateMachineType,
};
use crate::history::Payload;
use crate::store::{ExecutionStore, StoreError};
use asl::eval::{
    seconds_after, Delivery, Effect, EffectId, Execution, ExecutionInfo, Snapshot, TaskCall,
};
use asl::history::HistoryEvent;
use asl::resource::{Pattern, Target};
use asl::{Failure, Host, Machine, Status};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Performs tasks: in-process handlers, a Lambda endpoint, or any other integration.
/// The runtime calls it after the step that scheduled the task is committed.
#[async_trait::async_trait]
pub trait Invoker: Send + Sync {
    /// How the runtime should treat `call`.
    fn route(&self, call: &TaskCall) -> Route;
    /// Runs a task routed [`Route::Invoke`] (or the request half of a callback) for
    /// the execution `execution_arn`: an invoker may serve some state machines only.
    async fn invoke(&self, execution_arn: &str, call: &TaskCall) -> Result<Value, Failure>;
    /// Whether a callback token handed to `call` (`.waitForTaskToken`) stays in this
    /// process until an answer of the API tells it: true only for in-process handlers
    /// whose writes share the store's WAL. Then the step that hands the token out may
    /// be committed lazily, as steps are: whatever the handler writes lands after it in
    /// the one WAL, so a power cut that loses the step loses the token with it, and
    /// everyone outside learns a token only from an answer or an event, each synced
    /// before it is told. Everyone else's token is durable before it leaves.
    fn keeps_token(&self, _call: &TaskCall) -> bool {
        false
    }
    /// Performs `call` for TestState, which calls no task for real but those an
    /// invoker answers here (HTTP Tasks, in oms): the result and, for the TRACE
    /// inspection level, the HTTP exchange. `None`: TestState needs a mock for it.
    async fn test_call(&self, _call: &TaskCall, _reveal_secrets: bool) -> Option<TestCall> {
        None
    }
}

/// A task TestState had performed ([`Invoker::test_call`]).
#[derive(Debug)]
pub struct TestCall {
    pub result: Result<Value, Failure>,
    pub request: Option<crate::api::InspectionDataRequest>,
    pub response: Option<crate::api::InspectionDataResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Call [`Invoker::invoke`] and deliver its result.
    Invoke,
    /// Call [`Invoker::invoke`], then wait for SendTaskSuccess/Failure with the token.
    InvokeThenAwaitToken,
    /// Nothing to call locally: the token (visible in the history's TaskScheduled) is
    /// all a client needs to answer with SendTaskSuccess/Failure.
    AwaitToken,
    /// Wait for an activity worker (GetActivityTask).
    Activity,
}

/// The default routing: activities wait for workers, `.waitForTaskToken` waits for a
/// callback after the request half, everything else is invoked.
pub fn default_route(call: &TaskCall) -> Route {
    match (&call.target, call.target.pattern()) {
        (Target::Activity { .. }, _) => Route::Activity,
        (_, Pattern::WaitForTaskToken) => Route::InvokeThenAwaitToken,
        _ => Route::Invoke,
    }
}

/// Real time and randomness for the evaluator.
pub struct SystemHost;

impl Host for SystemHost {
    fn now(&mut self) -> DateTime<Utc> {
        Utc::now()
    }
    fn random_u64(&mut self) -> u64 {
        let b = uuid::Uuid::new_v4().into_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
    fn uuid_v4(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// How long after it stops a FAILED, ABORTED or TIMED_OUT execution may be redriven
/// (AWS: 14 days). Retention never prunes an execution inside this window.
pub const REDRIVE_WINDOW_DAYS: i64 = 14;

pub fn redrive_window() -> Duration {
    Duration::days(REDRIVE_WINDOW_DAYS)
}

pub fn epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

pub fn from_epoch(s: f64) -> DateTime<Utc> {
    // A stored deadline past the last instant a timestamp holds is that instant: read
    // as the epoch instead, it would fire at once.
    DateTime::from_timestamp_micros((s * 1e6) as i64).unwrap_or(if s > 0.0 {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::UNIX_EPOCH
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("execution already exists: {0}")]
    AlreadyExists(String),
    #[error("no such execution: {0}")]
    NoSuchExecution(String),
    #[error("no such task token")]
    NoSuchToken,
    #[error("{0}")]
    NotRedrivable(String),
    #[error("{0}")]
    Invalid(String),
}

/// What the store knows of an execution.
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    pub arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_date: f64,
    pub stop_date: Option<f64>,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
    pub definition: Arc<str>,
    pub role_arn: String,
    pub machine_type: StateMachineType,
}

/// A column holding one of an API enum's wire values.
pub(crate) fn wire<T>(
    r: &rusqlite::Row,
    column: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(column)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("'{text}' is not a known value").into(),
        )
    })
}

/// The API's status of an execution the evaluator holds.
fn api_status(exec: &Execution) -> ExecutionStatus {
    match exec.status() {
        Status::Running => ExecutionStatus::Running,
        Status::Succeeded => ExecutionStatus::Succeeded,
        Status::Failed => ExecutionStatus::Failed,
        Status::TimedOut => ExecutionStatus::TimedOut,
        Status::Aborted => ExecutionStatus::Aborted,
    }
}

impl ExecutionRecord {
    /// DescribeExecution of this row, with its input and output if `include`, and the
    /// Map Run it is a child of.
    pub fn describe(self, include: bool, map_run_arn: Option<String>) -> DescribeExecutionOutput {
        let r = self;
        let redrivable = r.status.is_redrivable() && r.machine_type == StateMachineType::Standard;
        DescribeExecutionOutput {
            execution_arn: r.arn,
            state_machine_arn: r.state_machine_arn,
            name: Some(r.name),
            status: r.status,
            start_date: from_epoch(r.start_date),
            stop_date: r.stop_date.map(from_epoch),
            input: include.then_some(r.input),
            input_details: Some(CloudWatchEventsExecutionDataDetails {
                included: Some(include),
            }),
            output: if include { r.output } else { None },
            output_details: Some(CloudWatchEventsExecutionDataDetails {
                included: Some(include),
            }),
            map_run_arn,
            error: r.error,
            cause: r.cause,
            redrive_count: Some(r.redrive_count as i32),
            redrive_date: r.redrive_date.map(from_epoch),
            redrive_status: Some(if redrivable {
                ExecutionRedriveStatus::Redrivable
            } else {
                ExecutionRedriveStatus::NotRedrivable
            }),
            redrive_status_reason: (!redrivable).then(|| match r.status {
                ExecutionStatus::Running | ExecutionStatus::Succeeded => {
                    format!("Execution is {} and cannot be redriven", r.status)
                }
                _ => "Express executions cannot be redriven".to_string(),
            }),
            ..Default::default()
        }
    }

    /// The query that reads records; add a WHERE clause on `e.` columns.
    pub const SELECT: &'static str = "SELECT e.arn, e.state_machine_arn, e.name, e.status, e.input, \
         e.output, e.error, e.cause, e.start_date, e.stop_date, e.redrive_count, e.redrive_date, d.text, \
         e.role_arn, e.machine_type FROM executions e JOIN definitions d ON d.id = e.definition_id";

    pub fn from_row(r: &rusqlite::Row) -> rusqlite::Result<ExecutionRecord> {
        Ok(ExecutionRecord {
            arn: r.get(0)?,
            state_machine_arn: r.get(1)?,
            name: r.get(2)?,
            status: wire(r, 3, ExecutionStatus::parse)?,
            input: r.get::<_, Payload>(4)?.0,
            output: r.get::<_, Option<Payload>>(5)?.map(|p| p.0),
            error: r.get(6)?,
            cause: r.get(7)?,
            start_date: r.get(8)?,
            stop_date: r.get(9)?,
            redrive_count: r.get(10)?,
            redrive_date: r.get(11)?,
            definition: r.get(12)?,
            role_arn: r.get(13)?,
            machine_type: wire(r, 14, StateMachineType::parse)?,
        })
    }
}

struct Live {
    exec: Execution,
    /// The stop date last written, once the execution has ended.
    stop_date: Option<f64>,
    /// Effects already being performed, so a later step does not perform them again,
    /// with when they were dispatched (a task's latency, for the observer).
    dispatched: HashMap<EffectId, std::time::Instant>,
    /// Effects that have a row in `tasks` (a token), to add and remove rows as they come and go.
    task_rows: HashMap<EffectId, TaskHandle>,
    /// The sleeping tasks that watch this execution's deadlines.
    watchers: Watchers,
    /// Map Runs that ended (failed, or with the execution) in the last committed step,
    /// whose running children are to be stopped.
    map_runs_to_stop: Vec<String>,
    /// Set for an Express child run in memory, not stored step by step (children.rs).
    in_memory: Option<Box<children::InMemory>>,
}

impl Live {
    /// A live execution, its effects not yet performed.
    fn cell(
        exec: Execution,
        task_rows: HashMap<EffectId, TaskHandle>,
    ) -> Arc<tokio::sync::Mutex<Live>> {
        Arc::new(tokio::sync::Mutex::new(Live {
            exec,
            dispatched: HashMap::new(),
            stop_date: None,
            task_rows,
            watchers: Watchers::default(),
            map_runs_to_stop: Vec::new(),
            in_memory: None,
        }))
    }
}

/// The tasks that sleep until a deadline of a live execution (a task's timeout or
/// heartbeat, the execution's own timeout). Each is aborted once what it watches is
/// gone (the task answered, the execution ended), not left asleep until its deadline:
/// the order saga's pick timeout is a day away, and 100,000 orders' sleeping watchers
/// were most of the server's memory growth in the soak.
#[derive(Default)]
struct Watchers {
    by_effect: HashMap<EffectId, Vec<tokio::task::AbortHandle>>,
    execution: Option<tokio::task::AbortHandle>,
}

impl Watchers {
    fn watch(&mut self, id: EffectId, handles: Vec<tokio::task::AbortHandle>) {
        if !handles.is_empty() {
            self.by_effect.entry(id).or_default().extend(handles);
        }
    }

    /// Aborts the watchers of effects that are no longer pending.
    fn keep_only(&mut self, pending: &HashSet<EffectId>) {
        self.by_effect.retain(|id, handles| {
            let keep = pending.contains(id);
            if !keep {
                handles.iter().for_each(tokio::task::AbortHandle::abort);
            }
            keep
        });
    }
}

impl Drop for Watchers {
    /// A live execution dropped (ended, or reloaded after a failed commit, which arms
    /// its deadlines again) takes its watchers with it.
    fn drop(&mut self) {
        let handles = self.by_effect.values().flatten().chain(&self.execution);
        handles.for_each(tokio::task::AbortHandle::abort);
    }
}

/// The parameters of a new execution.
pub struct NewExecution {
    pub state_machine_arn: String,
    pub name: String,
    pub role_arn: String,
    pub express: bool,
    pub definition: Arc<str>,
    pub machine: Arc<Machine>,
    pub input: Value,
    pub input_text: String,
    /// The Task that started this execution, for a nested one.
    pub parent: Option<crate::nested::Parent>,
    /// The mock configuration's test case it runs (`mock.rs`), if any.
    pub test_case: Option<String>,
}

pub struct Runtime {
    store: ExecutionStore,
    invoker: Arc<dyn Invoker>,
    live: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Live>>>>,
    /// Wakes GetActivityTask long polls when a task for that activity is scheduled.
    activity_signals: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes waiters on an execution's end (StartSyncExecution).
    finished: Mutex<HashMap<String, Arc<Notify>>>,
    heartbeats: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Serialises redrives, so two requests cannot bring back one execution twice, and
    /// a redrive with a retention prune (`retention.rs`), so neither undoes the other.
    pub(crate) redriving: tokio::sync::Mutex<()>,
    /// The service, for nested executions (`nested.rs`); set once it exists.
    executions: std::sync::OnceLock<std::sync::Weak<dyn crate::nested::Executions>>,
    /// The mock configuration, when `oms up` was given one.
    mocks: std::sync::OnceLock<Arc<crate::mock::MockConfig>>,
    /// The Express children run in memory, by their parent and its task (children.rs).
    children_in_memory: Mutex<children::InMemoryChildren>,
    /// Executions running a test case: ARN -> (state machine name, test case).
    test_cases: Mutex<HashMap<String, (String, String)>>,
    /// Told of tasks answered, steps committed and redrives, once set (`observe.rs`).
    observer: crate::observe::ObserverSlot,
    /// Whether each step is fsynced before the next is acted on. Off, steps are
    /// committed lazily (store.rs): a power cut can undo steps nobody was told of, and
    /// their tasks run again, as a task in flight at a crash always has (at least once).
    durable_steps: std::sync::atomic::AtomicBool,
    /// Whether every answer that tells of a start is synced before it is sent (oms's
    /// `durable_answers`): a start is then committed lazily, like a step, and the
    /// answer's sync makes it durable. Else a start is fsynced before it returns.
    starts_synced_by_answers: std::sync::atomic::AtomicBool,
    /// The ids of the definitions started here (`definition_id`), by the machine parsed
    /// from each, which is held so that its address is not reused while it keys one.
    /// Digesting the text (about 5 KB for the order saga) on every start was 0.3% of
    /// an order's time under perf, and 11% of its instructions under callgrind, which
    /// runs sha2's portable code.
    definition_ids: Mutex<HashMap<usize, DefinitionId>>,
}

/// A definition's id, and the machine parsed from it (`Runtime::definition_ids`).
type DefinitionId = (Arc<Machine>, Arc<str>);

/// How many definitions' ids a runtime keeps (`Runtime::definition_ids`).
const DEFINITION_IDS_KEPT: usize = 64;

impl Runtime {
    pub fn new(store: ExecutionStore, invoker: Arc<dyn Invoker>) -> Arc<Runtime> {
        Arc::new(Runtime {
            store,
            invoker,
            live: Mutex::new(HashMap::new()),
            activity_signals: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
            heartbeats: Mutex::new(HashMap::new()),
            redriving: tokio::sync::Mutex::new(()),
            executions: std::sync::OnceLock::new(),
            mocks: std::sync::OnceLock::new(),
            children_in_memory: Mutex::default(),
            test_cases: Mutex::new(HashMap::new()),
            observer: crate::observe::ObserverSlot::default(),
            durable_steps: std::sync::atomic::AtomicBool::new(false),
            starts_synced_by_answers: std::sync::atomic::AtomicBool::new(false),
            definition_ids: Mutex::default(),
        })
    }

    /// The id `definition` is stored under; `machine` was parsed from it.
    fn definition_id_of(&self, machine: &Arc<Machine>, definition: &str) -> Arc<str> {
        let key = Arc::as_ptr(machine) as usize;
        let mut ids = self.definition_ids.lock().expect("definition ids lock");
        if let Some((_, id)) = ids.get(&key) {
            return id.clone();
        }
        let id: Arc<str> = definition_id(definition).into();
        if ids.len() >= DEFINITION_IDS_KEPT {
            ids.clear();
        }
        ids.insert(key, (machine.clone(), id.clone()));
        id
    }

    /// Fsyncs every step before acting on it (`oms up --fsync-every-step`), instead of
    /// leaving steps to the next sync (the default).
    pub fn set_durable_steps(&self, on: bool) {
        self.durable_steps
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Commits starts lazily, for a server whose every answer syncs the store before it
    /// is sent: the execution's first steps then need not wait for the start's fsync
    /// (at C=1 an order's saga waited about 0.4 ms for it; issue 16). Whoever is told
    /// of the start is told by such an answer, or by a later commit in the same WAL.
    pub fn set_starts_synced_by_answers(&self, on: bool) {
        self.starts_synced_by_answers
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    fn durable_starts(&self) -> bool {
        self.durable_steps()
            || !self
                .starts_synced_by_answers
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn durable_steps(&self) -> bool {
        self.durable_steps
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns once every step committed so far is on disk: what whoever tells the
    /// outside world of an execution's state (an API answer) calls first.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.store.sync().await
    }

    /// Tells `observer` what this runtime and its store do from now on.
    pub fn observe(&self, observer: Arc<dyn crate::observe::Observer>) {
        self.store.observe(observer.clone());
        self.observer.set(observer);
    }

    /// How many executions are running in this process now.
    pub fn running(&self) -> usize {
        self.live.lock().expect("live lock").len()
    }

    /// Answers the Task states of executions started as a test case (`ARN#Case`) from
    /// `mocks` instead of calling their resources.
    pub fn set_mocks(&self, mocks: Arc<crate::mock::MockConfig>) {
        let _ = self.mocks.set(mocks);
    }

    pub fn mocks(&self) -> Option<&Arc<crate::mock::MockConfig>> {
        self.mocks.get()
    }

    /// Who performs tasks (TestState asks it for the calls it may make).
    pub fn invoker(&self) -> &Arc<dyn Invoker> {
        &self.invoker
    }

    /// The mocked answer for a task of `arn`, if it runs a test case that mocks the
    /// task's state.
    fn mocked(&self, arn: &str, call: &TaskCall) -> Option<Result<Value, Failure>> {
        let mocks = self.mocks.get()?;
        let (machine, case) = self
            .test_cases
            .lock()
            .expect("test case lock")
            .get(arn)
            .cloned()?;
        let answer = mocks.answer(arn, &machine, &case, &call.state_name)?;
        // The engine wraps what `lambda:invoke` delivers in Lambda's Invoke response;
        // a mocked answer is that response already, so its Payload is delivered.
        let lambda_invoke = matches!(
            call.target,
            Target::LambdaInvoke {
                pattern: Pattern::RequestResponse
            }
        );
        Some(answer.map(|v| match lambda_invoke {
            true => v.get("Payload").cloned().unwrap_or(Value::Null),
            false => v,
        }))
    }

    /// The test case execution `arn` runs, if any.
    pub(crate) fn test_case_of(&self, arn: &str) -> Option<String> {
        let cases = self.test_cases.lock().expect("test case lock");
        cases.get(arn).map(|(_, case)| case.clone())
    }

    /// After a restart: the test case a resumed execution runs, if any.
    fn recall_test_case(&self, arn: &str) -> Result<(), StoreError> {
        let arn_owned = arn.to_string();
        let found: Option<(String, String)> = self.store.read(move |c| {
            Ok(c.query_row(
                "SELECT e.state_machine_arn, m.test_case FROM mocked_executions m \
                 JOIN executions e ON e.arn = m.arn WHERE m.arn = ?1",
                [&arn_owned],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })?;
        if let Some((machine_arn, case)) = found {
            self.remember_test_case(arn, &machine_arn, &case);
        }
        Ok(())
    }

    fn remember_test_case(&self, arn: &str, machine_arn: &str, case: &str) {
        // A distributed Map's child (`stateMachine:<machine>/<label>`) runs its parent's
        // test case, whose mocked states are named in the parent machine's entry.
        let machine = machine_arn.rsplit(':').next().unwrap_or(machine_arn);
        let machine = machine.split('/').next().unwrap_or(machine);
        self.test_cases
            .lock()
            .expect("test case lock")
            .insert(arn.to_string(), (machine.to_string(), case.to_string()));
    }

    /// Lets tasks start nested executions through `executions` (the service that owns
    /// this runtime: held weakly, so the two do not keep each other alive).
    pub fn attach_executions(&self, executions: std::sync::Weak<dyn crate::nested::Executions>) {
        let _ = self.executions.set(executions);
    }

    pub(crate) fn executions(&self) -> Option<Arc<dyn crate::nested::Executions>> {
        self.executions.get().and_then(std::sync::Weak::upgrade)
    }

    pub fn store(&self) -> &ExecutionStore {
        &self.store
    }

    fn live(&self, arn: &str) -> Option<Arc<tokio::sync::Mutex<Live>>> {
        self.live.lock().expect("live lock").get(arn).cloned()
    }

    pub fn activity_signal(&self, activity_arn: &str) -> Arc<Notify> {
        self.activity_signals
            .lock()
            .expect("signal lock")
            .entry(activity_arn.to_string())
            .or_default()
            .clone()
    }

    fn finished_signal(&self, arn: &str) -> Arc<Notify> {
        self.finished
            .lock()
            .expect("signal lock")
            .entry(arn.to_string())
            .or_default()
            .clone()
    }

    // Long on purpose: register locked, commit, then activate: that order is durability.
    /// Starts an execution; returns once its first step is committed (or, for an
    /// Express child run in memory, taken: children.rs).
    pub async fn start(
        self: &Arc<Self>,
        new: NewExecution,
    ) -> Result<(String, DateTime<Utc>), RuntimeError> {
        let mut host = SystemHost;
        let start = Utc::now();
        let info = ExecutionInfo::new(
            &new.state_machine_arn,
            &new.name,
            &new.role_arn,
            new.express,
            start,
        );
        let arn = info.execution_arn.clone();
        let in_memory = children::runs_in_memory(&new, self.durable_steps());
        if in_memory && self.is_stored(&arn)? {
            return Err(RuntimeError::AlreadyExists(arn));
        }
        let mut exec = Execution::start(new.machine.clone(), new.input, info, true, &mut host);
        let new_events = exec.take_new_events();
        let row = ExecutionRecord {
            arn: arn.clone(),
            state_machine_arn: new.state_machine_arn.clone(),
            name: new.name.clone(),
            status: api_status(&exec),
            input: new.input_text,
            output: None,
            error: None,
            cause: None,
            start_date: epoch(start),
            stop_date: None,
            redrive_count: 0,
            redrive_date: None,
            definition: new.definition,
            role_arn: new.role_arn,
            machine_type: if new.express {
                StateMachineType::Express
            } else {
                StateMachineType::Standard
            },
        };
        let deadline = new
            .machine
            .timeout_seconds
            .map(|s| seconds_after(start, s as f64));
        if in_memory {
            let parent = new.parent.expect("an in-memory execution is a child");
            let cell = Live::cell(exec, HashMap::new());
            let mut guard = cell.clone().lock_owned().await;
            if !self.register(&arn, &cell) {
                return Err(RuntimeError::AlreadyExists(arn));
            }
            if let Some(case) = &new.test_case {
                self.remember_test_case(&arn, &new.state_machine_arn, case);
            }
            let held = children::InMemory::new(row, parent, new.test_case);
            guard.in_memory = Some(Box::new(held));
            self.remember_in_memory(&guard);
            self.take_in_memory_step(&arn, &mut guard, new_events).await;
            self.activate(&arn, guard, deadline);
            return Ok((arn, start));
        }
        let snapshot = exec
            .snapshot_json()
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let tasks = new_task_rows(&exec, &HashMap::new(), &*self.invoker);
        let stop_date = stop_date_if_done(row.status);
        let row = row.with_outcome(&exec, stop_date);
        let status = row.status;
        // The first step's events as one frame: the whole history if it closed the
        // execution, else its first step's row (history.rs). Encoded here, off the writer.
        let stored = stored_events(&new_events);
        let history = match status {
            ExecutionStatus::Running => HistoryWrite::step(&stored),
            _ => crate::history::encode(&stored).map(|frame| Some(HistoryWrite::Whole(frame))),
        }
        .map_err(RuntimeError::Store)?;
        // See `step`'s `clean_express`: here the execution closed in its first step.
        let clean_express = new.express
            && status == ExecutionStatus::Succeeded
            && !crate::history::met_an_error(&stored);
        let task_rows_written = tasks
            .iter()
            .map(|t| (t.effect_id, t.handle()))
            .collect::<HashMap<_, _>>();
        // Registered (and locked) before the commit: a worker or client that sees the
        // committed task before this function returns waits for the lock instead of
        // finding no live execution to deliver to.
        let cell = Live::cell(exec, task_rows_written);
        let guard = cell.clone().lock_owned().await;
        if !self.register(&arn, &cell) {
            return Err(RuntimeError::AlreadyExists(arn));
        }
        if let Some(case) = &new.test_case {
            self.remember_test_case(&arn, &new.state_machine_arn, case);
        }
        let insert = Insert {
            definition_id: self.definition_id_of(&new.machine, &row.definition),
            packed: Packed::of(&row),
            row,
            snapshot_packed: Some(crate::history::pack_snapshot(&snapshot)),
            history,
            tasks,
            parent: new.parent,
            test_case: new.test_case,
            clean_express,
        };
        let job = move |c: &rusqlite::Connection| insert.store(c);
        let written = if self.durable_starts() {
            self.store.write(job).await
        } else {
            self.store.write_lazy(job).await
        };
        let written = written.map_err(|e| match e {
            StoreError::Conflict(a) => RuntimeError::AlreadyExists(a),
            other => RuntimeError::Store(other),
        });
        if let Err(e) = written {
            self.unregister(&arn, &cell);
            return Err(e);
        }
        if let Some(o) = self.observer.get() {
            o.step_committed(&new.state_machine_arn, &new_events);
        }
        self.activate(&arn, guard, deadline);
        Ok((arn, start))
    }

    /// Puts an execution under management unless one with that ARN already is.
    fn register(&self, arn: &str, cell: &Arc<tokio::sync::Mutex<Live>>) -> bool {
        let mut live = self.live.lock().expect("live lock");
        if live.contains_key(arn) {
            return false;
        }
        live.insert(arn.to_string(), cell.clone());
        true
    }

    fn unregister(&self, arn: &str, cell: &Arc<tokio::sync::Mutex<Live>>) {
        let mut live = self.live.lock().expect("live lock");
        if live.get(arn).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            live.remove(arn);
        }
    }

    /// After a registered execution's step is committed: arms its timeout and performs
    /// its outstanding effects, or lets it go if it has ended.
    fn activate(
        self: &Arc<Self>,
        arn: &str,
        mut guard: tokio::sync::OwnedMutexGuard<Live>,
        deadline: Option<DateTime<Utc>>,
    ) {
        if guard.exec.status() == Status::Running {
            if let Some(deadline) = deadline {
                let rt = self.clone();
                let arn = arn.to_string();
                let watcher = tokio::spawn(async move {
                    sleep_until(deadline).await;
                    // Detached: the time-out ends the execution, which aborts this
                    // watcher; the step it commits must not be cut short by that.
                    tokio::spawn(async move { rt.time_out(&arn).await });
                });
                guard.watchers.execution = Some(watcher.abort_handle());
            }
        }
        self.after_step(arn, &mut guard);
    }

    /// Performs effects not yet performed. Called with the execution locked, after the
    /// step that created them was committed.
    fn perform_effects(self: &Arc<Self>, arn: &str, live: &mut Live) {
        let pending: Vec<(EffectId, Effect)> = live
            .exec
            .pending()
            .filter(|(id, _)| !live.dispatched.contains_key(id))
            .map(|(id, e)| (id, e.clone()))
            .collect();
        for (id, effect) in pending {
            live.dispatched.insert(id, std::time::Instant::now());
            let rt = self.clone();
            let arn = arn.to_string();
            match effect {
                Effect::Timer { until } => {
                    let watcher = tokio::spawn(async move {
                        sleep_until(until).await;
                        // A step that cannot be committed reloads the execution,
                        // which arms this timer again. Detached, as the delivery
                        // aborts this watcher.
                        tokio::spawn(
                            async move { rt.deliver(&arn, id, Delivery::TimerFired).await },
                        );
                    });
                    live.watchers.watch(id, vec![watcher.abort_handle()]);
                }
                Effect::Invoke(call) => {
                    let token = live.task_rows.get(&id).cloned();
                    let watchers = self.perform_task(arn, id, *call, token);
                    live.watchers.watch(id, watchers);
                }
                Effect::Iteration(call) => {
                    let child = live.exec.machine().child_machine(call.processor).cloned();
                    let role = live.exec.info().role_arn.clone();
                    let watcher = self.perform_iteration(arn, role, id, *call, child);
                    live.watchers.watch(id, vec![watcher]);
                }
                Effect::ReadItems(call) => {
                    let watcher = self.perform_read(arn, id, *call);
                    live.watchers.watch(id, vec![watcher]);
                }
                Effect::WriteResults(call) => {
                    let watcher = self.perform_write(arn, id, *call);
                    live.watchers.watch(id, vec![watcher]);
                }
            }
        }
    }

    /// Starts a task; returns the watchers of its deadlines.
    fn perform_task(
        self: &Arc<Self>,
        arn: String,
        id: EffectId,
        call: TaskCall,
        task: Option<TaskHandle>,
    ) -> Vec<tokio::task::AbortHandle> {
        // A mocked task answers at once, from the test case (mock.rs).
        if let Some(answer) = self.mocked(&arn, &call) {
            self.deliver_detached(arn, id, answer);
            return Vec::new();
        }
        let route = self.invoker.route(&call);
        let mut watchers = Vec::new();
        if let Some(secs) = call.timeout_seconds {
            let stored = task.as_ref().and_then(|t| t.timeout_deadline);
            watchers.push(self.watch_timeout(arn.clone(), id, stored, secs));
        }
        if let (Some(secs), Some(task)) = (call.heartbeat_seconds, task) {
            let stored = task.heartbeat_deadline;
            watchers.push(self.watch_heartbeat(arn.clone(), id, task.token, stored, secs));
        }
        if crate::nested::is_start_execution(&call) {
            watchers.push(self.perform_child(arn, id, call));
            return watchers;
        }
        match route {
            Route::Activity => {
                if let Target::Activity { arn: activity } = &call.target {
                    self.activity_signal(activity).notify_waiters();
                }
            }
            Route::AwaitToken => {}
            Route::Invoke | Route::InvokeThenAwaitToken => {
                let rt = self.clone();
                tokio::spawn(async move {
                    let result = rt.invoker.invoke(&arn, &call).await;
                    match (route, result) {
                        (Route::Invoke, Ok(v)) => {
                            // Not committed: the reload invokes the task again.
                            let _ = rt.deliver(&arn, id, Delivery::TaskSucceeded(v)).await;
                        }
                        (_, Err(f)) => {
                            let _ = rt.deliver(&arn, id, Delivery::TaskFailed(f)).await;
                        }
                        // The request was sent; the result comes with the token.
                        (_, Ok(_)) => {}
                    }
                });
            }
        }
        watchers
    }

    /// Arms a task's timeout, at its `stored` deadline (epoch seconds) if it has one
    /// (a recovered task keeps the deadline it was given when first scheduled), else
    /// `secs` from now; returns the watcher.
    fn watch_timeout(
        self: &Arc<Self>,
        arn: String,
        id: EffectId,
        stored: Option<f64>,
        secs: f64,
    ) -> tokio::task::AbortHandle {
        let rt = self.clone();
        let deadline = deadline_or(stored, secs);
        let watcher = tokio::spawn(async move {
            sleep_until(deadline).await;
            // Not committed: the reload arms the timeout again from its stored
            // deadline. Detached, as the delivery aborts this watcher.
            let timed_out = Failure {
                error: asl::error::names::TIMEOUT.into(),
                cause: None,
            };
            rt.deliver_detached(arn, id, Err(timed_out));
        });
        watcher.abort_handle()
    }

    /// Delivers a task's outcome from a task of its own.
    fn deliver_detached(
        self: &Arc<Self>,
        arn: String,
        id: EffectId,
        outcome: Result<Value, Failure>,
    ) {
        let rt = self.clone();
        let delivery = match outcome {
            Ok(v) => Delivery::TaskSucceeded(v),
            Err(f) => Delivery::TaskFailed(f),
        };
        tokio::spawn(async move { rt.deliver(&arn, id, delivery).await });
    }

    /// Arms a task's heartbeat deadline, at its `stored` one (epoch seconds) if it has
    /// one (the last heartbeat's, for a recovered task), else `secs` from now; returns
    /// the watcher.
    fn watch_heartbeat(
        self: &Arc<Self>,
        arn: String,
        id: EffectId,
        token: String,
        stored: Option<f64>,
        secs: f64,
    ) -> tokio::task::AbortHandle {
        let initial = deadline_or(stored, secs);
        self.heartbeats
            .lock()
            .expect("heartbeat lock")
            .insert(token.clone(), initial);
        let rt = self.clone();
        let watcher = tokio::spawn(async move {
            loop {
                let Some(deadline) = rt
                    .heartbeats
                    .lock()
                    .expect("heartbeat lock")
                    .get(&token)
                    .copied()
                else {
                    return;
                };
                if Utc::now() >= deadline {
                    rt.heartbeats.lock().expect("heartbeat lock").remove(&token);
                    let f = Failure {
                        error: asl::error::names::HEARTBEAT_TIMEOUT.into(),
                        cause: None,
                    };
                    // Detached, as the delivery aborts this watcher.
                    tokio::spawn(
                        async move { rt.deliver(&arn, id, Delivery::TaskFailed(f)).await },
                    );
                    return;
                }
                sleep_until(deadline).await;
            }
        });
        watcher.abort_handle()
    }

    /// Delivers an effect's outcome, commits the step, then performs what it started.
    /// An outcome that comes too late (the execution ended, the effect is gone) is
    /// dropped; one whose step cannot be committed is an error, and the execution is
    /// reloaded from its last committed step as soon as the store takes writes again.
    pub async fn deliver(
        self: &Arc<Self>,
        arn: &str,
        id: EffectId,
        delivery: Delivery,
    ) -> Result<(), StoreError> {
        let Some(cell) = self.live(arn) else {
            return Ok(());
        };
        let mut live = cell.lock().await;
        if live.exec.status() != Status::Running || !live.exec.pending().any(|(i, _)| i == id) {
            return Ok(());
        }
        let finished = self
            .observer
            .get()
            .and_then(|_| task_outcome(&live, id, &delivery));
        let mut host = SystemHost;
        live.exec.deliver(id, delivery, &mut host);
        if let Err(e) = self.commit_step(arn, &mut live).await {
            // The step is not durable: forget it, and start again from the last
            // committed snapshot (its pending tasks invoked again, its timers armed).
            eprintln!("oms: could not commit a step of {arn}: {e}");
            self.live.lock().expect("live lock").remove(arn);
            drop(live);
            self.reload_later(arn.to_string());
            return Err(e);
        }
        if let (Some(o), Some((state, seconds, error))) = (self.observer.get(), finished) {
            o.task_finished(&crate::observe::TaskFinished {
                state_machine_arn: &live.exec.info().state_machine_arn,
                state_name: &state,
                seconds,
                error: error.as_deref(),
            });
        }
        self.after_step(arn, &mut live);
        Ok(())
    }

    /// Reloads an execution whose step could not be committed, retrying (100 ms,
    /// doubling to 5 s) until the store takes writes again: a full disk must not leave
    /// an execution stopped in memory until the next restart.
    fn reload_later(self: &Arc<Self>, arn: String) {
        let rt = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::milliseconds(100);
            loop {
                tokio::time::sleep(wait.to_std().unwrap_or_default()).await;
                match rt.reload(&arn).await {
                    Ok(()) => return,
                    Err(e) => eprintln!("oms: cannot reload {arn} yet: {e}"),
                }
                wait = (wait * 2).min(Duration::seconds(5));
            }
        });
    }

    /// Loads one RUNNING execution from the store and runs it on, as `recover` does at
    /// start. Nothing to do if it is live already or no longer running.
    async fn reload(self: &Arc<Self>, arn: &str) -> Result<(), RuntimeError> {
        let arn_owned = arn.to_string();
        let row: Option<RecoverRow> = self.store.read(move |c| {
            Ok(c.query_row(
                &format!("{RECOVER_SELECT} AND e.arn = ?1"),
                [&arn_owned],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Payload>(2)?.0, r.get(3)?)),
            )
            .optional()?)
        })?;
        match row {
            Some(row) => self.resume(row).await.map(|_| ()),
            None => Ok(()),
        }
    }

    fn after_step(self: &Arc<Self>, arn: &str, live: &mut Live) {
        for run in std::mem::take(&mut live.map_runs_to_stop) {
            self.stop_map_run_children(&run);
        }
        if live.exec.status() == Status::Running {
            self.perform_effects(arn, live);
        } else {
            self.live.lock().expect("live lock").remove(arn);
            self.forget_children_in_memory(arn);
            if self
                .test_cases
                .lock()
                .expect("test case lock")
                .remove(arn)
                .is_some()
            {
                if let Some(mocks) = self.mocks.get() {
                    mocks.forget(arn);
                }
            }
            let signal = self.finished.lock().expect("signal lock").remove(arn);
            if let Some(signal) = signal {
                signal.notify_waiters();
            }
        }
    }

    /// Writes the execution's snapshot, its new events and task rows in one commit.
    async fn commit_step(&self, arn: &str, live: &mut Live) -> Result<(), StoreError> {
        self.commit(arn, live, None).await
    }

    // Long on purpose: live state and its one transaction change in the order durability needs.
    /// [`Runtime::commit_step`], also counting a redrive at `redrive_date` in the same
    /// transaction, so a crash cannot count a redrive that did not happen.
    async fn commit(
        &self,
        arn: &str,
        live: &mut Live,
        redrive_date: Option<f64>,
    ) -> Result<(), StoreError> {
        let new_events = live.exec.take_new_events();
        if live.in_memory.is_some() {
            self.take_in_memory_step(arn, live, new_events).await;
            return Ok(());
        }
        let events = stored_events(&new_events);
        let (status, output, failure) = outcome(&live.exec);
        // A succeeded execution's snapshot is deleted, not written: none is made.
        let snapshot = match status {
            ExecutionStatus::Succeeded => None,
            _ => Some(
                live.exec
                    .snapshot_json()
                    .map_err(|e| StoreError::Failed(e.to_string()))?,
            ),
        };
        let new_tasks = new_task_rows(&live.exec, &live.task_rows, &*self.invoker);
        let pending: HashSet<EffectId> = live.exec.pending().map(|(i, _)| i).collect();
        let gone: Vec<String> = live
            .task_rows
            .iter()
            .filter(|(id, _)| !pending.contains(id))
            .map(|(_, t)| t.token.clone())
            .collect();
        for t in &new_tasks {
            live.task_rows.insert(t.effect_id, t.handle());
        }
        live.task_rows.retain(|id, _| pending.contains(id));
        // Deadlines of tasks that have answered are no longer watched. (If the commit
        // fails, the reload arms the pending ones again from their stored deadlines.)
        live.watchers.keep_only(&pending);
        {
            let mut heartbeats = self.heartbeats.lock().expect("heartbeat lock");
            gone.iter().for_each(|t| {
                heartbeats.remove(t);
            });
        }
        // One instant for the row, so StopExecution can answer with what is stored.
        let stop_date = stop_date_if_done(status);
        live.stop_date = stop_date;
        let map_run_ends = live.exec.take_map_run_ends();
        // Only a machine with a distributed Map can leave Map Runs to abort at its end:
        // the others' final step does not look.
        let ends_map_runs =
            status != ExecutionStatus::Running && live.exec.machine().has_map_runs();
        // A step that hands out a task token (a callback, an activity task) is durable
        // before anyone holds the token: whoever answers with it must find it, as on AWS.
        let hands_out_token = new_tasks.iter().any(|t| t.hands_out_token);
        let durable = hands_out_token || self.durable_steps();
        let closing = match status {
            ExecutionStatus::Running => None,
            _ => self.closing_frame(arn, &events)?,
        };
        // An Express child that succeeded without meeting an error is marked so, for its
        // parent's close to delete (children.rs).
        let clean_express = status == ExecutionStatus::Succeeded
            && live.exec.info().redrive_count.is_none()
            && closing.as_ref().is_some_and(|f| !f.met_an_error);
        // Encoded here, off the writer (history.rs).
        let history = match closing {
            Some(Closing { frame, through, .. }) => Some(HistoryWrite::Close { frame, through }),
            None => HistoryWrite::step(&events)?,
        };
        let arn = arn.to_string();
        let output_packed = output.as_deref().map(crate::history::pack_payload);
        // Packed off the writer.
        let snapshot_packed = snapshot
            .as_deref()
            .map_or(rusqlite::types::Value::Null, crate::history::pack_snapshot);
        let job = move |c: &rusqlite::Connection| {
            // A step that leaves the execution running changes nothing in its row
            // (a redrive, which brings it back to RUNNING, does): skip the update.
            if status != ExecutionStatus::Running || redrive_date.is_some() {
                c.prepare_cached(
                        "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stop_date = ?6 WHERE arn = ?1",
                    )?
                    .execute(params![
                        arn,
                        status.as_str(),
                        output_packed,
                        failure.as_ref().map(|f| f.error.clone()),
                        failure.as_ref().and_then(|f| f.cause.clone()),
                        stop_date
                    ])?;
            }
            // A succeeded execution can never be redriven: its state is not needed, nor
            // the links to the children its tasks started (kept to find a child again
            // when the parent resumes, and to stop `.sync` children with a running
            // parent). A failed parent keeps them for its redrive.
            if status == ExecutionStatus::Succeeded {
                c.prepare_cached("DELETE FROM snapshots WHERE arn = ?1")?
                    .execute([&arn])?;
                children::delete_clean_express(c, &arn)?;
                c.prepare_cached("DELETE FROM children WHERE parent_arn = ?1")?
                    .execute([&arn])?;
            } else {
                c.prepare_cached("UPDATE snapshots SET data = ?2 WHERE arn = ?1")?
                    .execute(params![arn, snapshot_packed])?;
            }
            if let Some(at) = redrive_date {
                c.prepare_cached(
                        "UPDATE executions SET redrive_count = redrive_count + 1, redrive_date = ?2 WHERE arn = ?1",
                    )?
                    .execute(params![arn, at])?;
            }
            if let Some(history) = &history {
                let id = crate::history::execution_id(c, &arn)?
                    .ok_or_else(|| StoreError::Failed(format!("{arn} is not stored")))?;
                history.store(c, id)?;
            }
            if clean_express {
                children::mark_clean(c, &arn)?;
            }
            insert_tasks(c, &arn, &new_tasks)?;
            for t in &gone {
                c.prepare_cached("DELETE FROM tasks WHERE token = ?1")?
                    .execute([t])?;
            }
            let ended = ends_map_runs;
            Ok(map_runs::record_ends(
                c,
                &arn,
                &map_run_ends,
                ended,
                map_runs::now_s(),
            )?)
        };
        let to_stop = if durable {
            self.store.write(job).await?
        } else {
            self.store.write_lazy(job).await?
        };
        live.map_runs_to_stop = to_stop;
        if let Some(o) = self.observer.get() {
            o.step_committed(&live.exec.info().state_machine_arn, &new_events);
        }
        Ok(())
    }

    /// The history of an execution its step `events` close, as one frame (history.rs);
    /// None if it has no history. Built here, before the step's write, so the store's
    /// writer only stores it: the rows committed before are read now (this execution's
    /// steps are serialised, so none is added meanwhile).
    fn closing_frame(
        &self,
        arn: &str,
        events: &[crate::history::StoredEvent],
    ) -> Result<Option<Closing>, StoreError> {
        let a = arn.to_string();
        let mut all = self
            .store
            .read(move |c| match crate::history::execution_id(c, &a)? {
                Some(id) => crate::history::read(c, id),
                None => Ok(Vec::new()),
            })?;
        all.extend_from_slice(events);
        let Some(through) = all.last().map(|e| e.id) else {
            return Ok(None);
        };
        Ok(Some(Closing {
            frame: crate::history::encode(&all)?,
            through,
            met_an_error: crate::history::met_an_error(&all),
        }))
    }

    /// StopExecution.
    pub async fn stop(
        self: &Arc<Self>,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<DateTime<Utc>, RuntimeError> {
        let Some(cell) = self.live(arn) else {
            return Err(RuntimeError::NoSuchExecution(arn.to_string()));
        };
        let mut live = cell.lock().await;
        // Found before the stop: its end forgets its links to children run in memory.
        let children = self.running_sync_children(arn);
        live.exec.stop(error, cause, &mut SystemHost);
        self.commit_step(arn, &mut live).await?;
        self.after_step(arn, &mut live);
        let stopped = live.stop_date.map(from_epoch).unwrap_or_else(Utc::now);
        drop(live);
        self.stop_sync_children(arn, children);
        Ok(stopped)
    }

    /// Stops the running `.sync` children of a stopped execution (and theirs in turn),
    /// as Step Functions does: nothing waits for them any more.
    fn stop_sync_children(self: &Arc<Self>, parent_arn: &str, children: Vec<String>) {
        for child in children {
            let rt = self.clone();
            let cause = format!("its parent execution {parent_arn} was stopped");
            let stop: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                Box::pin(async move { rt.stop(&child, None, Some(cause)).await });
            tokio::spawn(stop);
        }
    }

    async fn time_out(self: &Arc<Self>, arn: &str) {
        let Some(cell) = self.live(arn) else { return };
        let mut live = cell.lock().await;
        live.exec.time_out(&mut SystemHost);
        if self.commit_step(arn, &mut live).await.is_ok() {
            self.after_step(arn, &mut live);
        }
    }

    /// SendTaskSuccess / SendTaskFailure.
    pub async fn complete_task(
        self: &Arc<Self>,
        token: &str,
        result: Result<Value, Failure>,
    ) -> Result<(), RuntimeError> {
        let (arn, id) = self.token_owner(token)?;
        let delivery = match result {
            Ok(v) => Delivery::TaskSucceeded(v),
            Err(f) => Delivery::TaskFailed(f),
        };
        self.heartbeats
            .lock()
            .expect("heartbeat lock")
            .remove(token);
        // The answer is acknowledged only once it is committed: a client whose answer
        // found the disk full is told so (503) and sends it again.
        self.deliver(&arn, id, delivery).await?;
        Ok(())
    }

    /// SendTaskHeartbeat: pushes the task's heartbeat deadline out.
    pub async fn heartbeat(&self, token: &str) -> Result<(), RuntimeError> {
        let token_s = token.to_string();
        let secs: Option<f64> = self
            .store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT heartbeat_seconds FROM tasks WHERE token = ?1",
                    [&token_s],
                    |r| r.get::<_, Option<f64>>(0),
                )
                .optional()?)
            })?
            .ok_or(RuntimeError::NoSuchToken)?;
        if let Some(secs) = secs {
            let deadline = seconds_after(Utc::now(), secs);
            self.heartbeats
                .lock()
                .expect("heartbeat lock")
                .insert(token.to_string(), deadline);
            let d = epoch(deadline);
            self.store
                .write(move |c| {
                    c.execute(
                        "UPDATE tasks SET heartbeat_deadline = ?2 WHERE token = ?1",
                        params![token_s, d],
                    )?;
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    fn token_owner(&self, token: &str) -> Result<(String, EffectId), RuntimeError> {
        self.store
            .read(|c| {
                // Cached: every callback asks (see `child_of`).
                Ok(
                    c.prepare_cached(
                        "SELECT execution_arn, effect_id FROM tasks WHERE token = ?1",
                    )?
                    .query_row([token], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as EffectId))
                    })
                    .optional()?,
                )
            })?
            .ok_or(RuntimeError::NoSuchToken)
    }

    /// GetActivityTask's claim: the oldest waiting task of the activity, if any.
    pub async fn claim_activity_task(
        self: &Arc<Self>,
        activity_arn: &str,
        worker: Option<String>,
    ) -> Result<Option<(String, String)>, RuntimeError> {
        let activity = activity_arn.to_string();
        let w = worker.clone();
        let claimed: Option<(String, String, String, i64)> = self
            .store
            .write(move |c| {
                let row = c
                    .query_row(
                        "SELECT token, input, execution_arn, effect_id FROM tasks WHERE activity_arn = ?1 AND state = 'WAITING' ORDER BY created LIMIT 1",
                        [&activity],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Payload>(2)?.0, r.get(3)?)),
                    )
                    .optional()?;
                if let Some((token, _, _, _)) = &row {
                    c.execute("UPDATE tasks SET state = 'STARTED', worker = ?2 WHERE token = ?1", params![token, w])?;
                }
                Ok(row)
            })
            .await?;
        let Some((token, input, arn, id)) = claimed else {
            return Ok(None);
        };
        if let Some(cell) = self.live(&arn) {
            let mut live = cell.lock().await;
            live.exec.activity_started(
                id as EffectId,
                worker.as_deref().unwrap_or(""),
                &mut SystemHost,
            );
            self.commit_step(&arn, &mut live).await?;
        }
        Ok(Some((token, input)))
    }

    // Long on purpose: check, restore, register locked, commit, activate: that order is durability.
    /// RedriveExecution: restores a FAILED, ABORTED or TIMED_OUT Standard execution
    /// stopped within the last 14 days and continues it from the states that did not
    /// succeed. Returns the redrive date.
    pub async fn redrive(self: &Arc<Self>, arn: &str) -> Result<DateTime<Utc>, RuntimeError> {
        let _one_at_a_time = self.redriving.lock().await;
        let a = arn.to_string();
        let row: Option<ExecutionRecord> = self.store.read(|c| {
            Ok(c.query_row(
                &format!("{} WHERE e.arn = ?1", ExecutionRecord::SELECT),
                [&a],
                ExecutionRecord::from_row,
            )
            .optional()?)
        })?;
        let snapshot: Option<String> = self.store.read(|c| {
            Ok(
                c.query_row("SELECT data FROM snapshots WHERE arn = ?1", [&a], |r| {
                    Ok(r.get::<_, Payload>(0)?.0)
                })
                .optional()?,
            )
        })?;
        let Some(ExecutionRecord {
            status,
            definition,
            machine_type,
            stop_date,
            error,
            state_machine_arn,
            ..
        }) = row
        else {
            return Err(RuntimeError::NoSuchExecution(arn.to_string()));
        };
        if machine_type == StateMachineType::Express {
            return Err(RuntimeError::NotRedrivable(
                "Express executions cannot be redriven".into(),
            ));
        }
        if !status.is_redrivable() || self.live(arn).is_some() {
            return Err(RuntimeError::NotRedrivable(format!(
                "Execution is {status} and cannot be redriven"
            )));
        }
        if stop_date.is_some_and(|s| Utc::now() - from_epoch(s) > redrive_window()) {
            return Err(RuntimeError::NotRedrivable(
                "Execution stopped more than 14 days ago and can no longer be redriven".into(),
            ));
        }
        let machine = Arc::new(Machine::parse(&definition).map_err(RuntimeError::Invalid)?);
        let snapshot: Snapshot = snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| {
                RuntimeError::NotRedrivable("The execution's state was not kept".into())
            })?;
        let mut exec = Execution::restore(machine.clone(), snapshot, true);
        exec.redrive(&mut SystemHost)
            .map_err(RuntimeError::NotRedrivable)?;
        let now = Utc::now();
        let cell = Arc::new(tokio::sync::Mutex::new(Live {
            exec,
            dispatched: HashMap::new(),
            stop_date: None,
            task_rows: HashMap::new(),
            watchers: Watchers::default(),
            map_runs_to_stop: Vec::new(),
            in_memory: None,
        }));
        let mut guard = cell.clone().lock_owned().await;
        if !self.register(arn, &cell) {
            return Err(RuntimeError::NotRedrivable(
                "Execution is RUNNING and cannot be redriven".into(),
            ));
        }
        if let Err(e) = self.commit(arn, &mut guard, Some(epoch(now))).await {
            self.unregister(arn, &cell);
            return Err(e.into());
        }
        if let Some(o) = self.observer.get() {
            let state = self.last_state_entered(arn);
            o.redriven(&crate::observe::Redriven {
                state_machine_arn: &state_machine_arn,
                state_name: state.as_deref(),
                error: error.as_deref(),
            });
        }
        let deadline = machine
            .timeout_seconds
            .map(|s| seconds_after(now, s as f64));
        self.activate(arn, guard, deadline);
        Ok(now)
    }

    /// The name of the last state the execution's history shows it entering (where a
    /// redrive resumes), for the observer; None if the history is gone or unreadable.
    fn last_state_entered(&self, arn: &str) -> Option<String> {
        let arn = arn.to_string();
        let details: Option<String> = self
            .store
            .read(move |c| {
                let Some(id) = crate::history::execution_id(c, &arn)? else {
                    return Ok(None);
                };
                // Called after the redrive's first commit: the frame, then that step's rows.
                Ok(crate::history::read(c, id)?
                    .into_iter()
                    .rev()
                    .find(|e| e.kind.ends_with("StateEntered"))
                    .and_then(|e| e.details))
            })
            .ok()
            .flatten();
        let details: Value = serde_json::from_str(&details?).ok()?;
        details.get("name")?.as_str().map(str::to_string)
    }

    /// Waits until the execution is no longer running (StartSyncExecution).
    pub async fn wait_finished(&self, arn: &str) {
        loop {
            let signal = self.finished_signal(arn);
            let notified = signal.notified();
            if self.live(arn).is_none() {
                // The signal served its waiters; drop it so signals don't pile up.
                self.finished.lock().expect("signal lock").remove(arn);
                return;
            }
            notified.await;
        }
    }

    /// Restores every RUNNING execution from its last committed snapshot and performs
    /// its outstanding effects. Returns how many were resumed.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RuntimeError> {
        let rows: Vec<RecoverRow> = self.store.read(|c| {
            let mut st = c.prepare(RECOVER_SELECT)?;
            let rows = st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, Payload>(2)?.0, r.get(3)?))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        let mut resumed = 0;
        for row in rows {
            if self.resume(row).await? {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Runs on a RUNNING execution from its stored definition and snapshot. False when
    /// it cannot be resumed (said why) or is live already.
    async fn resume(
        self: &Arc<Self>,
        (arn, definition, snapshot, start): RecoverRow,
    ) -> Result<bool, RuntimeError> {
        let machine = match Machine::parse(&definition) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                eprintln!("oms: cannot resume {arn}: its definition no longer parses: {e}");
                return Ok(false);
            }
        };
        let snap: Snapshot = match serde_json::from_str(&snapshot) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("oms: cannot resume {arn}: its snapshot is unreadable: {e}");
                return Ok(false);
            }
        };
        self.recall_test_case(&arn)?;
        let mut exec = Execution::restore(machine.clone(), snap, true);
        // Tasks that were being invoked when the process died are invoked again (at
        // least once, as Lambda is); the history records the new attempt.
        let reinvoked: Vec<EffectId> = exec
            .pending()
            .filter(|(_, e)| {
                matches!(e, Effect::Invoke(call)
                if self.invoker.route(call) == Route::Invoke
                    && !crate::nested::is_start_execution(call))
            })
            .map(|(id, _)| id)
            .collect();
        for id in &reinvoked {
            exec.reinvoking(*id, &mut SystemHost);
        }
        let arn_owned = arn.clone();
        let task_rows: HashMap<EffectId, TaskHandle> = self.store.read(move |c| {
            let mut st = c.prepare(
                "SELECT effect_id, token, timeout_deadline, heartbeat_deadline FROM tasks \
                 WHERE execution_arn = ?1",
            )?;
            let rows = st.query_map([&arn_owned], |r| {
                let handle = TaskHandle {
                    token: r.get(1)?,
                    timeout_deadline: r.get(2)?,
                    heartbeat_deadline: r.get(3)?,
                };
                Ok((r.get::<_, i64>(0)? as EffectId, handle))
            })?;
            Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
        })?;
        let deadline = machine
            .timeout_seconds
            .map(|s| seconds_after(from_epoch(start), s as f64));
        let cell = Live::cell(exec, task_rows);
        let mut guard = cell.clone().lock_owned().await;
        if !self.register(&arn, &cell) {
            return Ok(false);
        }
        if !reinvoked.is_empty() {
            if let Err(e) = self.commit_step(&arn, &mut guard).await {
                self.unregister(&arn, &cell);
                return Err(e.into());
            }
        }
        self.activate(&arn, guard, deadline);
        Ok(true)
    }
}

/// An execution to resume: its ARN, definition, snapshot and start (epoch seconds).
type RecoverRow = (String, String, String, f64);

/// The second condition is the partial index's (`executions_open` in store.rs): said, it
/// lets SQLite read the running executions alone rather than the whole table.
pub(crate) const RECOVER_SELECT: &str =
    "SELECT e.arn, d.text, s.data, e.start_date FROM executions e \
     JOIN definitions d ON d.id = e.definition_id JOIN snapshots s ON s.arn = e.arn \
     WHERE e.status = 'RUNNING' AND e.status <> 'SUCCEEDED'";

/// A Task's state name, how long since it was dispatched and its error, when `id` is
/// a Task call being answered by `delivery` (for the observer).
fn task_outcome(
    live: &Live,
    id: EffectId,
    delivery: &Delivery,
) -> Option<(String, Option<f64>, Option<String>)> {
    let (_, effect) = live.exec.pending().find(|(i, _)| *i == id)?;
    let Effect::Invoke(call) = effect else {
        return None;
    };
    let error = match delivery {
        Delivery::TaskFailed(f) => Some(f.error.clone()),
        _ => None,
    };
    let seconds = live.dispatched.get(&id).map(|t| t.elapsed().as_secs_f64());
    Some((call.state_name.clone(), seconds, error))
}

impl ExecutionRecord {
    /// This row with an execution's outcome: its status, output and failure, and
    /// `stop_date` (None while it runs).
    fn with_outcome(self, exec: &Execution, stop_date: Option<f64>) -> ExecutionRecord {
        let (status, output, failure) = outcome(exec);
        ExecutionRecord {
            status,
            output,
            error: failure.as_ref().map(|f| f.error.clone()),
            cause: failure.and_then(|f| f.cause),
            stop_date,
            ..self
        }
    }
}

fn outcome(exec: &Execution) -> (ExecutionStatus, Option<String>, Option<Failure>) {
    (
        api_status(exec),
        exec.output().map(|o| o.to_string()),
        exec.failure().cloned().map(|f| Failure {
            error: f.error,
            cause: f.cause,
        }),
    )
}

fn stop_date_if_done(status: ExecutionStatus) -> Option<f64> {
    (status != ExecutionStatus::Running).then(|| epoch(Utc::now()))
}

async fn sleep_until(t: DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

/// A `stored` deadline (epoch seconds), else `secs` from now.
fn deadline_or(stored: Option<f64>, secs: f64) -> DateTime<Utc> {
    stored.map_or_else(|| seconds_after(Utc::now(), secs), from_epoch)
}

/// A task's token and the deadlines stored with it (epoch seconds): as written when the
/// task was scheduled, or as read back when its execution was recovered, so that a
/// recovered task keeps the deadlines it was given and a new one costs no read.
#[derive(Debug, Clone)]
struct TaskHandle {
    token: String,
    timeout_deadline: Option<f64>,
    heartbeat_deadline: Option<f64>,
}

struct TaskRow {
    token: String,
    effect_id: EffectId,
    kind: &'static str,
    /// Whether the token leaves this process (or may): the step that hands it out is
    /// then durable before it does (`Invoker::keeps_token`).
    hands_out_token: bool,
    activity_arn: Option<String>,
    input: String,
    timeout_deadline: Option<f64>,
    heartbeat_seconds: Option<f64>,
    heartbeat_deadline: Option<f64>,
}

impl TaskRow {
    fn handle(&self) -> TaskHandle {
        TaskHandle {
            token: self.token.clone(),
            timeout_deadline: self.timeout_deadline,
            heartbeat_deadline: self.heartbeat_deadline,
        }
    }
}

/// Rows for task effects that need a token (activities, callbacks) or a durable
/// deadline (timeouts), not yet written.
fn new_task_rows(
    exec: &Execution,
    existing: &HashMap<EffectId, TaskHandle>,
    invoker: &dyn Invoker,
) -> Vec<TaskRow> {
    let now = Utc::now();
    exec.pending()
        .filter(|(id, _)| !existing.contains_key(id))
        .filter_map(|(id, e)| match e {
            Effect::Invoke(call) => {
                let (kind, activity_arn) = match &call.target {
                    Target::Activity { arn } => ("activity", Some(arn.clone())),
                    t if t.pattern() == Pattern::WaitForTaskToken => ("callback", None),
                    _ if call.timeout_seconds.is_some() || call.heartbeat_seconds.is_some() => {
                        ("invoke", None)
                    }
                    _ => return None,
                };
                let kept = kind == "callback"
                    && !crate::nested::is_start_execution(call)
                    && invoker.keeps_token(call);
                Some(TaskRow {
                    hands_out_token: kind != "invoke" && !kept,
                    token: call
                        .task_token
                        .clone()
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                    effect_id: id,
                    kind,
                    activity_arn,
                    input: call.payload.to_string(),
                    timeout_deadline: call.timeout_seconds.map(|s| epoch(seconds_after(now, s))),
                    heartbeat_seconds: call.heartbeat_seconds,
                    heartbeat_deadline: call
                        .heartbeat_seconds
                        .map(|s| epoch(seconds_after(now, s))),
                })
            }
            _ => None,
        })
        .collect()
}

fn insert_tasks(c: &rusqlite::Connection, arn: &str, tasks: &[TaskRow]) -> Result<(), StoreError> {
    let now = epoch(Utc::now());
    for t in tasks {
        c.prepare_cached(
            "INSERT INTO tasks (token, execution_arn, effect_id, kind, activity_arn, input, state, created, timeout_deadline, heartbeat_seconds, heartbeat_deadline)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'WAITING', ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
                t.token,
                arn,
                t.effect_id as i64,
                t.kind,
                t.activity_arn,
                t.input,
                now,
                t.timeout_deadline,
                t.heartbeat_seconds,
                t.heartbeat_deadline,
            ])?;
    }
    Ok(())
}

/// A history event ready to store. Its details are serialised by the caller: the
/// store's single writer thread is the throughput limit, so it does no more than write.
/// The history frame of an execution closing, and what the close needs to know of it.
struct Closing {
    frame: Vec<u8>,
    /// The id of its last event.
    through: i64,
    met_an_error: bool,
}

/// An execution's first write, packed before it goes to the writer: what `start`
/// commits, and what an Express child run in memory commits at its end when it met
/// an error (children.rs).
struct Insert {
    definition_id: Arc<str>,
    /// The row as it is to be stored; its input and output are written as `packed`.
    row: ExecutionRecord,
    packed: Packed,
    /// None for an execution that has ended and cannot be redriven.
    snapshot_packed: Option<rusqlite::types::Value>,
    history: Option<HistoryWrite>,
    tasks: Vec<TaskRow>,
    parent: Option<crate::nested::Parent>,
    test_case: Option<String>,
    /// An Express success that met no error, for its parent's close to delete.
    clean_express: bool,
}

/// An execution row's input and output as stored, packed off the writer (history.rs).
struct Packed {
    input: rusqlite::types::Value,
    output: Option<rusqlite::types::Value>,
}

impl Packed {
    fn of(row: &ExecutionRecord) -> Packed {
        Packed {
            input: crate::history::pack_payload(&row.input),
            output: row.output.as_deref().map(crate::history::pack_payload),
        }
    }
}

impl Insert {
    /// Writes it, in the writer's transaction. A taken ARN is `StoreError::Conflict`.
    fn store(&self, c: &rusqlite::Connection) -> Result<(), StoreError> {
        let row = &self.row;
        let definition_id = &*self.definition_id;
        c.prepare_cached("INSERT OR IGNORE INTO definitions (id, text) VALUES (?1, ?2)")?
            .execute(params![definition_id, row.definition])?;
        c.prepare_cached(
            "INSERT INTO executions (arn, state_machine_arn, name, status, input, output, error, cause, \
             start_date, stop_date, redrive_count, redrive_date, definition_id, role_arn, machine_type) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
        )?
        .execute(params![
            row.arn,
            row.state_machine_arn,
            row.name,
            row.status.as_str(),
            self.packed.input,
            self.packed.output,
            row.error,
            row.cause,
            row.start_date,
            row.stop_date,
            row.redrive_count,
            row.redrive_date,
            definition_id,
            row.role_arn,
            row.machine_type.as_str()
        ])
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(row.arn.clone()),
            other => other,
        })?;
        // The execution's rowid, taken before the snapshot's insert replaces it as the
        // last one (the history frame once went to whichever execution had the
        // snapshot's rowid).
        let execution_id = c.last_insert_rowid();
        if let Some(snapshot) = &self.snapshot_packed {
            c.prepare_cached("INSERT INTO snapshots (arn, data) VALUES (?1, ?2)")?
                .execute(params![row.arn, snapshot])?;
        }
        if let Some(history) = &self.history {
            history.store(c, execution_id)?;
        }
        insert_tasks(c, &row.arn, &self.tasks)?;
        insert_links(c, row, self.parent.as_ref(), self.test_case.as_deref())?;
        if self.clean_express {
            children::mark_clean(c, &row.arn)?;
        }
        Ok(())
    }
}

/// What a step adds to an execution's history at rest (history.rs), encoded before the
/// write so that the store's writer only stores it.
enum HistoryWrite {
    /// A new execution closed in its first step: its whole history, with no rows to
    /// replace.
    Whole(Vec<u8>),
    /// A step that closed the execution: its whole history, in place of its step rows
    /// (and an older oms's rows) up to event `through`.
    Close { frame: Vec<u8>, through: i64 },
    /// A step that leaves the execution running: its events, as one step row.
    Step { first_id: i64, frame: Vec<u8> },
}

impl HistoryWrite {
    /// The step row of `events` (a step's, in id order); None if the step added none.
    fn step(events: &[crate::history::StoredEvent]) -> Result<Option<HistoryWrite>, StoreError> {
        let Some(first) = events.first() else {
            return Ok(None);
        };
        Ok(Some(HistoryWrite::Step {
            first_id: first.id,
            frame: crate::history::encode_step(events)?,
        }))
    }

    fn store(&self, c: &rusqlite::Connection, execution_id: i64) -> Result<(), StoreError> {
        match self {
            HistoryWrite::Whole(frame) => crate::history::store_frame(c, execution_id, frame),
            HistoryWrite::Close { frame, through } => {
                crate::history::replace_with_frame(c, execution_id, frame, *through)
            }
            HistoryWrite::Step { first_id, frame } => {
                crate::history::store_step(c, execution_id, *first_id, frame)
            }
        }
    }
}

/// New events as the history stores them, their details serialised once (they went
/// through a row type of their own before, and each details text was copied).
fn stored_events(events: &[HistoryEvent]) -> Vec<crate::history::StoredEvent> {
    events
        .iter()
        .map(|e| crate::history::StoredEvent {
            id: e.id as i64,
            previous_id: e.previous_event_id as i64,
            timestamp: epoch(e.timestamp),
            kind: e.kind.to_string(),
            details: e.details.to_text(),
        })
        .collect()
}

/// What else a new execution's first commit records: the Task that started it (a
/// nested execution) and the test case it runs (mocked).
fn insert_links(
    c: &rusqlite::Connection,
    row: &ExecutionRecord,
    parent: Option<&crate::nested::Parent>,
    test_case: Option<&str>,
) -> Result<(), StoreError> {
    let arn = &row.arn;
    if let Some(case) = test_case {
        c.execute(
            "INSERT INTO mocked_executions (arn, test_case) VALUES (?1, ?2)",
            params![arn, case],
        )?;
    }
    if let Some(p) = parent {
        c.prepare_cached(
            "INSERT INTO children (child_arn, parent_arn, effect_id, sync) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![arn, p.execution_arn, p.effect_id as i64, p.sync])?;
        if let Some(call) = &p.map_run {
            map_runs::insert_link(c, arn, &p.execution_arn, call, row.start_date)?;
        }
    }
    Ok(())
}

/// Definitions are stored once, under a digest of their text.
fn definition_id(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Echo;

    #[async_trait::async_trait]
    impl Invoker for Echo {
        fn route(&self, call: &TaskCall) -> Route {
            default_route(call)
        }
        async fn invoke(&self, _: &str, call: &TaskCall) -> Result<Value, Failure> {
            if call.payload.get("fail").is_some() {
                return Err(Failure::new("Step.Failed", "asked to fail"));
            }
            Ok(json!({"echo": call.payload}))
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("oms-rt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn new_execution(definition: &str, name: &str, input: Value) -> NewExecution {
        NewExecution {
            state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m".into(),
            name: name.into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            express: false,
            definition: definition.into(),
            machine: Arc::new(Machine::parse(definition).unwrap()),
            input_text: input.to_string(),
            parent: None,
            test_case: None,
            input,
        }
    }

    fn status(store: &ExecutionStore, arn: &str) -> (String, Option<String>) {
        store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT status, output FROM executions WHERE arn = ?1",
                    [arn],
                    |r| {
                        let output: Option<crate::history::Payload> = r.get(1)?;
                        Ok((r.get(0)?, output.map(|p| p.0)))
                    },
                )?)
            })
            .unwrap()
    }

    /// The execution's stored history, frame and rows (history.rs).
    fn history(store: &ExecutionStore, arn: &str) -> Vec<crate::history::StoredEvent> {
        store
            .read(|c| {
                let id = crate::history::execution_id(c, arn)?.expect("the execution is stored");
                crate::history::read(c, id)
            })
            .unwrap()
    }

    const TASK_THEN_WAIT: &str = r#"{"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:0:function:f","ResultPath":"$.t","Next":"W"},
        "W":{"Type":"Wait","Seconds":1,"End":true}}}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_execution_runs_to_the_end_and_its_history_is_stored() {
        let store = ExecutionStore::open(&temp_dir("run")).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        let (arn, _) = rt
            .start(new_execution(TASK_THEN_WAIT, "e1", json!({"a": 1})))
            .await
            .unwrap();
        rt.wait_finished(&arn).await;
        let (st, out) = status(&store, &arn);
        assert_eq!(st, "SUCCEEDED");
        assert_eq!(
            serde_json::from_str::<Value>(&out.unwrap()).unwrap(),
            json!({"a": 1, "t": {"echo": {"a": 1}}})
        );
        let kinds: Vec<String> = history(&store, &arn).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds.first().map(String::as_str), Some("ExecutionStarted"));
        assert_eq!(kinds.last().map(String::as_str), Some("ExecutionSucceeded"));
        assert!(kinds.contains(&"WaitStateExited".to_string()));
        // The same name again is refused while it exists.
        let again = rt
            .start(new_execution(TASK_THEN_WAIT, "e1", json!({})))
            .await;
        assert!(matches!(again, Err(RuntimeError::AlreadyExists(_))));
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_executions_history_is_one_frame_that_reads_as_the_rows_did() {
        let store = ExecutionStore::open(&temp_dir("frame")).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        let (arn, _) = rt
            .start(new_execution(TASK_THEN_WAIT, "f1", json!({"a": 1})))
            .await
            .unwrap();
        // In its Wait: the history so far is rows, as written step by step.
        let mut running = history(&store, &arn);
        for _ in 0..200 {
            if running.iter().any(|e| e.kind == "WaitStateEntered") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            running = history(&store, &arn);
        }
        assert!(running.iter().any(|e| e.kind == "WaitStateEntered"));
        rt.wait_finished(&arn).await;
        let closed = history(&store, &arn);
        let (frames, rows): (i64, i64) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT count(*) FROM histories), (SELECT count(*) FROM events) + (SELECT count(*) FROM step_events)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!((frames, rows), (1, 0), "the rows became one frame");
        // The frame holds every row exactly as it was, then the closing step's events.
        assert_eq!(closed[..running.len()], running[..]);
        assert_eq!(closed.last().unwrap().kind, "ExecutionSucceeded");
        let ids: Vec<i64> = closed.iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=closed.len() as i64).collect::<Vec<_>>());
        store.close();
    }

    const WAITS_FOR_TOKEN: &str = r#"{"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
             "Parameters":{"FunctionName":"f","Payload":{"token.$":"$$.Task.Token"}},
             "TimeoutSeconds":86400,"HeartbeatSeconds":3600,"End":true}}}"#;

    /// A task that has answered takes the watchers of its deadlines with it: they do not
    /// sleep on until a deadline a day away (the soak's memory growth).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_has_answered_leaves_no_watcher_asleep() {
        let store = ExecutionStore::open(&temp_dir("watchers")).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = alive();
        let mut arns = Vec::new();
        for i in 0..20 {
            let (arn, _) = rt
                .start(new_execution(WAITS_FOR_TOKEN, &format!("w{i}"), json!({})))
                .await
                .unwrap();
            arns.push(arn);
        }
        // Each waits with a timeout and a heartbeat watcher.
        assert!(alive() >= before + 40, "{} tasks, {before} before", alive());
        for arn in &arns {
            let a = arn.clone();
            let token: String = store
                .read(move |c| {
                    Ok(c.query_row(
                        "SELECT token FROM tasks WHERE execution_arn = ?1",
                        [&a],
                        |r| r.get(0),
                    )?)
                })
                .unwrap();
            rt.complete_task(&token, Ok(json!({}))).await.unwrap();
            rt.wait_finished(arn).await;
            assert_eq!(status(&store, arn).0, "SUCCEEDED");
        }
        // Aborted tasks go once the scheduler has seen the abort: wait for that, boundedly.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive() > before {
            assert!(
                std::time::Instant::now() < until,
                "{} tasks still alive, {before} before the executions",
                alive()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        store.close();
    }

    /// Echoes its invokes, and notes for each callback it is handed whether the store
    /// had a commit not yet on disk at that moment.
    struct SeesTheDisk {
        store: ExecutionStore,
        keeps: bool,
        unsynced_at_callback: std::sync::Mutex<Vec<bool>>,
    }

    #[async_trait::async_trait]
    impl Invoker for SeesTheDisk {
        fn route(&self, call: &TaskCall) -> Route {
            default_route(call)
        }
        async fn invoke(&self, _: &str, call: &TaskCall) -> Result<Value, Failure> {
            if call.target.pattern() == Pattern::WaitForTaskToken {
                let unsynced = self.store.db().unsynced();
                self.unsynced_at_callback.lock().unwrap().push(unsynced);
            }
            Ok(json!({}))
        }
        fn keeps_token(&self, _call: &TaskCall) -> bool {
            self.keeps
        }
    }

    /// A step that hands a callback token out is on disk before the invoker has the
    /// token, unless the invoker keeps tokens in the process (`Invoker::keeps_token`):
    /// then it is committed lazily, as other steps are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_step_is_durable_unless_the_invoker_keeps_the_token() {
        const INVOKE_THEN_TOKEN: &str = r#"{"StartAt":"I","States":{
            "I":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:0:function:f","Next":"T"},
            "T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
                 "Parameters":{"FunctionName":"f","Payload":{"token.$":"$$.Task.Token"}},
                 "End":true}}}"#;
        for keeps in [false, true] {
            let store = ExecutionStore::open(&temp_dir(&format!("keeps-{keeps}"))).unwrap();
            let invoker = Arc::new(SeesTheDisk {
                store: store.clone(),
                keeps,
                unsynced_at_callback: Default::default(),
            });
            let rt = Runtime::new(store.clone(), invoker.clone());
            let (arn, _) = rt
                .start(new_execution(INVOKE_THEN_TOKEN, "k", json!({})))
                .await
                .unwrap();
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while invoker.unsynced_at_callback.lock().unwrap().is_empty() {
                assert!(
                    std::time::Instant::now() < until,
                    "the callback was never invoked"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            // The step after I (a lazy one) is the token's: written, synced or not.
            assert_eq!(
                *invoker.unsynced_at_callback.lock().unwrap(),
                vec![keeps],
                "keeps_token {keeps}: whether the token's step was not yet on disk"
            );
            assert_eq!(status(&store, &arn).0, "RUNNING");
            store.close();
        }
    }

    /// A start is on disk when it returns, unless the runtime was told that every answer
    /// syncs first; `--fsync-every-step` keeps it durable all the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_start_is_durable_unless_answers_sync_it() {
        for (synced_by_answers, durable_steps, unsynced) in [
            (false, false, false),
            (true, false, true),
            (true, true, false),
        ] {
            let name = format!("start-{synced_by_answers}-{durable_steps}");
            let store = ExecutionStore::open(&temp_dir(&name)).unwrap();
            let rt = Runtime::new(store.clone(), Arc::new(Hangs));
            rt.set_starts_synced_by_answers(synced_by_answers);
            rt.set_durable_steps(durable_steps);
            rt.start(new_execution(TASK_THEN_WAIT, "s", json!({})))
                .await
                .unwrap();
            assert_eq!(
                store.db().unsynced(),
                unsynced,
                "answers sync: {synced_by_answers}, durable steps: {durable_steps}"
            );
            store.close();
        }
    }

    /// An invoker whose calls never return, as if the process died mid-call.
    struct Hangs;

    #[async_trait::async_trait]
    impl Invoker for Hangs {
        fn route(&self, call: &TaskCall) -> Route {
            default_route(call)
        }
        async fn invoke(&self, _: &str, _call: &TaskCall) -> Result<Value, Failure> {
            std::future::pending().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_in_flight_at_a_crash_is_invoked_again_and_the_history_shows_it() {
        let dir = temp_dir("reinvoke");
        let store = ExecutionStore::open(&dir).unwrap();
        let arn = {
            let rt = Runtime::new(store.clone(), Arc::new(Hangs));
            rt.start(new_execution(TASK_THEN_WAIT, "e3", json!({"a": 2})))
                .await
                .unwrap()
                .0
        };
        store.close();
        let store = ExecutionStore::open(&dir).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        assert_eq!(rt.recover().await.unwrap(), 1);
        rt.wait_finished(&arn).await;
        assert_eq!(status(&store, &arn).0, "SUCCEEDED");
        let scheduled = history(&store, &arn)
            .iter()
            .filter(|e| e.kind == "LambdaFunctionScheduled")
            .count();
        assert_eq!(
            scheduled, 2,
            "the first attempt and the one after the restart"
        );
        store.close();
    }

    /// A callback task whose `field` (TimeoutSecondsPath or HeartbeatSecondsPath) reads `$.t`.
    fn callback_task_with(field: &str) -> String {
        format!(
            r#"{{"StartAt":"T","States":{{"T":{{"Type":"Task",
            "Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "{field}":"$.t",
            "Parameters":{{"QueueUrl":"q","MessageBody":{{"token.$":"$$.Task.Token"}}}},
            "End":true}}}}}}"#
        )
    }

    /// Runs a callback task whose `field` reads 1e13 from the input: the execution must
    /// fail as AWS fails it, not panic the runtime or time out at once.
    async fn out_of_range_seconds_fail_the_execution(field: &str, name: &str) {
        let store = ExecutionStore::open(&temp_dir(name)).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        let def = callback_task_with(field);
        let (arn, _) = rt
            .start(new_execution(&def, name, json!({"t": 1e13})))
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), rt.wait_finished(&arn))
            .await
            .expect("the execution ends");
        let (status, error, cause): (String, Option<String>, Option<String>) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT status, error, cause FROM executions WHERE arn = ?1",
                    [&arn],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .unwrap();
        assert_eq!(status, "FAILED");
        assert_eq!(error.as_deref(), Some("States.Runtime"));
        let want = format!(
            "An error occurred while executing the state 'T' (entered at the event id #2). \
             The {field} field refers to value \"10000000000000.0\" which is not between 1 and 99999999: $.t"
        );
        assert_eq!(cause.as_deref(), Some(want.as_str()));
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timeout_seconds_path_past_the_limit_fails_the_execution() {
        out_of_range_seconds_fail_the_execution("TimeoutSecondsPath", "timeout-path").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_seconds_path_past_the_limit_fails_the_execution() {
        out_of_range_seconds_fail_the_execution("HeartbeatSecondsPath", "heartbeat-path").await;
    }

    #[test]
    fn a_stored_deadline_past_the_end_of_time_is_not_the_epoch() {
        assert_eq!(from_epoch(1e300), DateTime::<Utc>::MAX_UTC);
        assert_eq!(from_epoch(-1e300), DateTime::<Utc>::UNIX_EPOCH);
        let t = from_epoch(1_700_000_000.5);
        assert_eq!(epoch(t), 1_700_000_000.5);
    }

    /// A task's deadlines are the ones it was given when scheduled, kept across a
    /// restart: recovered, it times out when it would have, not `TimeoutSeconds` later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recovered_task_keeps_the_deadlines_it_was_scheduled_with() {
        let dir = temp_dir("deadlines");
        let store = ExecutionStore::open(&dir).unwrap();
        // An activity no worker polls: only its timeout or its heartbeat ends it.
        let def = |timeout: u32, heartbeat: u32| {
            format!(
                r#"{{"StartAt":"T","States":{{"T":{{"Type":"Task","Resource":"arn:aws:states:us-east-1:123456789012:activity:never","TimeoutSeconds":{timeout},"HeartbeatSeconds":{heartbeat},"End":true}}}}}}"#
            )
        };
        let started = std::time::Instant::now();
        let arns = {
            let rt = Runtime::new(store.clone(), Arc::new(Echo));
            let (timeout, _) = rt
                .start(new_execution(&def(2, 1000), "t", json!({})))
                .await
                .unwrap();
            let (heartbeat, _) = rt
                .start(new_execution(&def(1000, 3), "h", json!({})))
                .await
                .unwrap();
            store.sync().await.unwrap();
            [timeout, heartbeat]
            // Dropped with both tasks waiting, as a crash would leave them.
        };
        store.close();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let store = ExecutionStore::open(&dir).unwrap();
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        assert_eq!(rt.recover().await.unwrap(), 2);
        for arn in &arns {
            rt.wait_finished(arn).await;
        }
        let ended_s = started.elapsed().as_secs_f64();
        let errors: Vec<Option<String>> = arns
            .iter()
            .map(|arn| {
                store
                    .read(|c| {
                        Ok(c.query_row(
                            "SELECT error FROM executions WHERE arn = ?1",
                            [arn],
                            |r| r.get(0),
                        )?)
                    })
                    .unwrap()
            })
            .collect();
        assert_eq!(
            errors,
            [
                Some("States.Timeout".into()),
                Some("States.HeartbeatTimeout".into())
            ]
        );
        // Due at 2 s and 3 s after the start; rearmed at the recovery (1.5 s) they
        // would have come at 3.5 s and 4.5 s. The bound is between 3 and 4.5.
        assert!(ended_s < 4.0, "ended {ended_s:.2} s after the start");
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_runtime_resumes_a_waiting_execution() {
        let dir = temp_dir("recover");
        let store = ExecutionStore::open(&dir).unwrap();
        let def = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"Next":"P"},"P":{"Type":"Pass","Result":"done","End":true}}}"#;
        let arn = {
            let rt = Runtime::new(store.clone(), Arc::new(Echo));
            let (arn, _) = rt.start(new_execution(def, "e2", json!({}))).await.unwrap();
            arn
            // The runtime is dropped with the timer pending, as a crash would leave it.
        };
        store.close();
        let store = ExecutionStore::open(&dir).unwrap();
        assert_eq!(status(&store, &arn).0, "RUNNING");
        let rt = Runtime::new(store.clone(), Arc::new(Echo));
        assert_eq!(rt.recover().await.unwrap(), 1);
        rt.wait_finished(&arn).await;
        assert_eq!(
            status(&store, &arn),
            ("SUCCEEDED".into(), Some("\"done\"".into()))
        );
        store.close();
    }
}
