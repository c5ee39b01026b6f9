//! The evaluator: a state machine execution as a value that advances by steps.
//!
//! An [`Execution`] runs every state it can without outside help, then stops at
//! *effects* it cannot perform itself: invoking a task, or waiting until a time. The
//! driver (the in-memory runner, the durable runtime, a test) performs them and
//! delivers the results; the execution advances again. Time, randomness and ids come
//! from a [`Host`]. Nothing here does I/O, so every driver shares this one evaluator.

use crate::choice;
use crate::error::{names, Failure};
use crate::history::{self, EventLog, HistoryEvent, HistoryEventKind};
use crate::intrinsics::{self, IntrinsicHost};
use crate::jsonpath::{JsonPath, Root};
use crate::model::{
    Amount, Batcher, Catcher, ChoiceRule, IoPath, Kind, Machine, MapSpec, QueryLanguage,
    ResultPath, Retrier, State, TaskSpec, Template, Text, Transition, WaitFor,
};
use crate::query::{self, Expr, FieldPath, States};
use crate::resource::{Pattern, Target};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

// Their old home: other crates name them `asl::eval::...`.
pub use crate::host::Host;
pub use crate::time::{parse_timestamp, seconds_after, timestamp};

/// The largest payload Step Functions accepts between states: 256 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Step Functions' quota on one execution's history; an execution that reaches it
/// fails. It also bounds a definition that loops forever without waiting.
pub const MAX_HISTORY_EVENTS: u64 = 25_000;

/// Who an execution is, as the context object (`$$`) reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub start_time: DateTime<Utc>,
    /// `None` for Express executions, which have no redrive.
    pub redrive_count: Option<u32>,
}

impl ExecutionInfo {
    /// An execution of the machine `state_machine_arn`. Standard executions are
    /// `...:execution:MACHINE:NAME`; Express ones `...:express:MACHINE:NAME:ID` and have
    /// no RedriveCount.
    pub fn new(
        state_machine_arn: &str,
        name: &str,
        role_arn: &str,
        express: bool,
        start_time: DateTime<Utc>,
    ) -> Self {
        let (prefix, machine_name) = match state_machine_arn.rsplit_once(":stateMachine:") {
            Some((p, m)) => (p.to_string(), m.to_string()),
            None => (
                "arn:aws:states:us-east-1:000000000000".to_string(),
                state_machine_arn.to_string(),
            ),
        };
        let execution_arn = if express {
            format!(
                "{prefix}:express:{machine_name}:{name}:{}",
                start_time.timestamp_millis()
            )
        } else {
            format!("{prefix}:execution:{machine_name}:{name}")
        };
        ExecutionInfo {
            execution_arn,
            name: name.to_string(),
            state_machine_arn: state_machine_arn.to_string(),
            state_machine_name: machine_name,
            role_arn: role_arn.to_string(),
            start_time,
            redrive_count: if express { None } else { Some(0) },
        }
    }

    /// Plausible identifiers for an execution run outside any account.
    pub fn local(machine_name: &str, execution_name: &str, start_time: DateTime<Utc>) -> Self {
        ExecutionInfo::new(
            &format!("arn:aws:states:us-east-1:000000000000:stateMachine:{machine_name}"),
            execution_name,
            "arn:aws:iam::000000000000:role/oms-local",
            false,
            start_time,
        )
    }
}

/// A task the driver must run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskCall {
    pub state_name: String,
    pub resource: String,
    pub target: Target,
    /// For Lambda targets, the function to invoke (`FunctionName` for `lambda:invoke`).
    pub function: Option<String>,
    /// The payload: the effective input, or for `lambda:invoke` its `Payload`.
    pub payload: Value,
    /// The effective parameters as the history's TaskScheduled shows them.
    pub parameters: Value,
    pub timeout_seconds: Option<f64>,
    pub heartbeat_seconds: Option<f64>,
    /// Set for `.waitForTaskToken` integrations; also what `$$.Task.Token` showed.
    pub task_token: Option<String>,
}

impl TaskCall {
    /// TimeoutSeconds and HeartbeatSeconds as a scheduled event's details show them
    /// (whole seconds), those that are set.
    fn limits(&self) -> Vec<(&'static str, Value)> {
        let seconds = |t: Option<f64>| t.map(|t| Value::from(t as i64));
        [
            ("timeoutInSeconds", seconds(self.timeout_seconds)),
            ("heartbeatInSeconds", seconds(self.heartbeat_seconds)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }
}

/// One iteration (or batch) of a distributed Map, which the driver runs as a child
/// execution of [`Machine::child_machine`]`(processor)` and answers with its output
/// (`TaskSucceeded`) or its error and cause (`TaskFailed`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IterationCall {
    pub map_run_arn: String,
    pub state_name: String,
    /// The ItemProcessor's list in the machine.
    pub processor: usize,
    pub index: usize,
    pub input: Value,
    /// The Map Run's limits, for DescribeMapRun: 0 is no concurrency limit.
    pub max_concurrency: usize,
    pub tolerated_failure_count: Option<f64>,
    pub tolerated_failure_percentage: Option<f64>,
    /// The children the Map Run starts (batches, with an ItemBatcher).
    pub child_count: usize,
    /// The items the Map Run runs, and those this child runs (its batch's).
    #[serde(default)]
    pub total_items: usize,
    #[serde(default)]
    pub items: usize,
}

impl IterationCall {
    /// The state machine the child execution runs: `stateMachine:<parent>/<label>`,
    /// the Map Run's ARN without its id.
    pub fn child_machine_arn(&self) -> String {
        let run = self
            .map_run_arn
            .rsplit_once(':')
            .map_or(self.map_run_arn.as_str(), |(run, _)| run);
        run.replacen(":mapRun:", ":stateMachine:", 1)
    }
}

/// A distributed Map's ItemReader: the driver reads the items from S3 (see
/// [`crate::item_reader`]) and answers with them as an array (`TaskSucceeded`), or
/// with `States.ItemReaderFailed`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReadCall {
    pub state_name: String,
    /// The ItemReader field as written.
    pub reader: Value,
    /// Its Parameters, rendered (Bucket, Key or Prefix, ...).
    pub parameters: Value,
    /// MaxItems, or what MaxItemsPath selected; None for no limit.
    pub max_items: Option<u64>,
}

/// A distributed Map's ResultWriter, once its Map Run has succeeded: the driver
/// formats or exports the results (see [`crate::map_writer`]) and answers with the
/// state's result (`TaskSucceeded`), or with `States.ResultWriterFailed`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteCall {
    pub state_name: String,
    pub map_run_arn: String,
    /// The ResultWriter field as written.
    pub writer: Value,
    /// Its Parameters, rendered (Bucket, Prefix).
    pub parameters: Value,
    /// The Map Run's results in item order, as the state would have them.
    pub results: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    Invoke(Box<TaskCall>),
    Iteration(Box<IterationCall>),
    ReadItems(Box<ReadCall>),
    WriteResults(Box<WriteCall>),
    /// Deliver [`Delivery::TimerFired`] at or after this time.
    Timer {
        until: DateTime<Utc>,
    },
}

/// The driver's answer to an effect.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Delivery {
    TaskSucceeded(Value),
    TaskFailed(Failure),
    TimerFired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }
}

pub type EffectId = u64;

/// An execution between steps, as a value a durable driver stores. Restoring it with
/// the same machine continues exactly where it stopped.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    ident: Ident,
    root: Frame,
    pending: BTreeMap<EffectId, (Vec<u32>, Effect)>,
    next_effect: EffectId,
    event_count: u64,
    status: Status,
    output: Option<Value>,
    failure: Option<Failure>,
}

/// One running execution.
pub struct Execution {
    machine: Arc<Machine>,
    core: Core,
    root: Frame,
    status: Status,
    output: Option<Value>,
    failure: Option<Failure>,
}

/// Everything a step needs besides the frame it advances.
struct Core {
    machine: Arc<Machine>,
    ident: Ident,
    log: EventLog,
    pending: BTreeMap<EffectId, (Vec<u32>, Effect)>,
    next_effect: EffectId,
    /// The path of child indexes from the root frame to the frame being advanced, so
    /// that an effect knows where its result must be delivered.
    path: Vec<u32>,
    /// Map Runs that ended since the driver last asked (not part of the snapshot).
    map_run_ends: Vec<MapRunEnd>,
}

/// UpdateMapRun's changes; None leaves a limit as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapRunUpdate {
    /// 0: no limit.
    pub max_concurrency: Option<usize>,
    pub tolerated_failure_count: Option<f64>,
    pub tolerated_failure_percentage: Option<f64>,
}

/// A distributed Map's Map Run that has ended, for the driver's records (DescribeMapRun).
/// The history's MapRunSucceeded and MapRunFailed events do not name the run.
#[derive(Debug, Clone, PartialEq)]
pub struct MapRunEnd {
    pub map_run_arn: String,
    /// The failure that ended it; None when it succeeded.
    pub failure: Option<Failure>,
}

/// The execution's identity and input, as `$$.Execution` shows them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ident {
    info: ExecutionInfo,
    input: Value,
}

/// A list of states being run: the machine, a Parallel branch or a Map iteration.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Frame {
    list: usize,
    vars: Map<String, Value>,
    map_item: Option<(usize, Value)>,
    cursor: Option<Cursor>,
    result: Option<Result<Value, Failure>>,
}

impl Frame {
    /// A Parallel branch or Map iteration not yet started, seeing the parent's
    /// variables.
    fn child(list: usize, vars: Map<String, Value>, map_item: Option<(usize, Value)>) -> Frame {
        Frame {
            list,
            vars,
            map_item,
            cursor: None,
            result: None,
        }
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Cursor {
    state: usize,
    input: Value,
    entered_event: u64,
    entered_time: DateTime<Utc>,
    /// Attempts used per retrier, and in all (`$$.State.RetryCount`).
    attempts: Vec<u32>,
    retry_count: u32,
    phase: Phase,
}

impl Execution {
    /// Starts an execution: records ExecutionStarted and runs until the first effect.
    pub fn start(
        machine: Arc<Machine>,
        input: Value,
        info: ExecutionInfo,
        record_history: bool,
        host: &mut dyn Host,
    ) -> Execution {
        let mut core = Core {
            machine: machine.clone(),
            ident: Ident {
                info,
                // $$.Execution.Input needs the original input; copy it only for
                // machines that can read the context object.
                input: if machine.reads_context {
                    input.clone()
                } else {
                    Value::Null
                },
            },
            log: EventLog::new(record_history),
            pending: BTreeMap::new(),
            next_effect: 1,
            path: Vec::new(),
            map_run_ends: Vec::new(),
        };
        let role = core.ident.info.role_arn.clone();
        core.log
            .record_details(host, HistoryEventKind::ExecutionStarted, || {
                history::details_text(&[
                    ("input", &input),
                    ("inputDetails", history::whole()),
                    ("roleArn", &Value::String(role)),
                ])
            });
        let root = Frame {
            list: 0,
            vars: Map::new(),
            map_item: None,
            cursor: None,
            result: None,
        };
        let mut exec = Execution {
            machine,
            core,
            root,
            status: Status::Running,
            output: None,
            failure: None,
        };
        let start = exec.machine.root().start_at;
        exec.core.enter(&mut exec.root, start, input, host);
        exec.core.run(&mut exec.root, host);
        exec.settle(host);
        exec
    }

    pub fn status(&self) -> Status {
        self.status
    }
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }
    pub fn info(&self) -> &ExecutionInfo {
        &self.core.ident.info
    }
    pub fn history(&self) -> &[HistoryEvent] {
        self.core.log.events()
    }
    /// The snapshot as JSON, written straight from the execution without copying it
    /// first (the durable runtime stores one at every step).
    pub fn snapshot_json(&self) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct SnapshotRef<'a> {
            ident: &'a Ident,
            root: &'a Frame,
            pending: &'a BTreeMap<EffectId, (Vec<u32>, Effect)>,
            next_effect: EffectId,
            event_count: u64,
            status: Status,
            output: &'a Option<Value>,
            failure: &'a Option<Failure>,
        }
        serde_json::to_string(&SnapshotRef {
            ident: &self.core.ident,
            root: &self.root,
            pending: &self.core.pending,
            next_effect: self.core.next_effect,
            event_count: self.core.log.count(),
            status: self.status,
            output: &self.output,
            failure: &self.failure,
        })
        .map_err(|e| e.to_string())
    }

    /// The execution's state between steps, for a durable driver to store.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ident: Ident {
                info: self.core.ident.info.clone(),
                input: self.core.ident.input.clone(),
            },
            root: self.root.clone(),
            pending: self.core.pending.clone(),
            next_effect: self.core.next_effect,
            event_count: self.core.log.count(),
            status: self.status,
            output: self.output.clone(),
            failure: self.failure.clone(),
        }
    }

    /// Continues a stored execution. `machine` must be the definition it started with.
    pub fn restore(machine: Arc<Machine>, snapshot: Snapshot, record_history: bool) -> Execution {
        let Snapshot {
            ident,
            root,
            pending,
            next_effect,
            event_count,
            status,
            output,
            failure,
        } = snapshot;
        let mut log = EventLog::new(record_history);
        log.skip(event_count);
        Execution {
            machine: machine.clone(),
            core: Core {
                machine,
                ident,
                log,
                pending,
                next_effect,
                path: Vec::new(),
                map_run_ends: Vec::new(),
            },
            root,
            status,
            output,
            failure,
        }
    }

    /// Hands over the history events recorded since the last call, for a driver that
    /// persists them as it goes.
    pub fn take_new_events(&mut self) -> Vec<HistoryEvent> {
        self.core.log.take_events()
    }

    /// Hands over the Map Runs that ended since the last call.
    pub fn take_map_run_ends(&mut self) -> Vec<MapRunEnd> {
        std::mem::take(&mut self.core.map_run_ends)
    }

    /// Ends the borrow of a finished (or abandoned) execution, handing over its
    /// outcome and history without copying them.
    pub fn into_outcome(self) -> (Status, Option<Value>, Option<Failure>, Vec<HistoryEvent>) {
        (
            self.status,
            self.output,
            self.failure,
            self.core.log.into_events(),
        )
    }

    pub fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    /// Effects awaiting the driver, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = (EffectId, &Effect)> {
        self.core.pending.iter().map(|(id, (_, e))| (*id, e))
    }

    /// Delivers the outcome of an effect and runs until the next effects or the end.
    /// Unknown ids (already resolved, or abandoned when a branch failed) are ignored.
    pub fn deliver(&mut self, id: EffectId, delivery: Delivery, host: &mut dyn Host) {
        if self.status != Status::Running {
            return;
        }
        let Some((path, effect)) = self.core.pending.remove(&id) else {
            return;
        };
        let _ = effect;
        self.core.deliver(&mut self.root, &path, id, delivery, host);
        self.settle(host);
    }

    /// RedriveExecution: a FAILED, ABORTED or TIMED_OUT execution continues from the
    /// states that did not succeed (failed ones, or those in progress when it was
    /// stopped), keeping every result that was reached. Map iterations and Parallel
    /// branches that succeeded are not run again.
    pub fn redrive(&mut self, host: &mut dyn Host) -> Result<u32, String> {
        if !matches!(
            self.status,
            Status::Failed | Status::Aborted | Status::TimedOut
        ) {
            return Err(format!(
                "Execution is {} and cannot be redriven",
                self.status.as_str()
            ));
        }
        let Some(count) = self.core.ident.info.redrive_count else {
            return Err("Express executions cannot be redriven".into());
        };
        if !redrivable(&self.root) {
            return Err("The execution has no state to redrive from".into());
        }
        let count = count + 1;
        self.core.ident.info.redrive_count = Some(count);
        self.status = Status::Running;
        self.failure = None;
        self.output = None;
        self.core.log.record(
            host,
            HistoryEventKind::ExecutionRedriven,
            || json!({ "redriveCount": count }),
        );
        Core::reset_for_redrive(&mut self.root);
        self.core.reenter(&mut self.root, host);
        self.core.resume(&mut self.root, host);
        self.settle(host);
        Ok(count)
    }

    /// The driver is invoking effect `id`'s task again (after a restart lost the first
    /// attempt's outcome): records the scheduling again, so the history shows the
    /// second invocation as AWS shows a Lambda retried by the service.
    pub fn reinvoking(&mut self, id: EffectId, host: &mut dyn Host) {
        if self.status != Status::Running {
            return;
        }
        if let Some((_, Effect::Invoke(call))) = self.core.pending.get(&id) {
            let call = call.clone();
            self.core.log_scheduled(&call, host);
        }
    }

    /// A worker took the activity task of effect `id`: records ActivityStarted.
    pub fn activity_started(&mut self, id: EffectId, worker_name: &str, host: &mut dyn Host) {
        let is_activity = matches!(
            self.core.pending.get(&id),
            Some((_, Effect::Invoke(call))) if matches!(call.target, Target::Activity { .. })
        );
        if is_activity && self.status == Status::Running {
            self.core.log.record(
                host,
                HistoryEventKind::ActivityStarted,
                || json!({ "workerName": worker_name }),
            );
        }
    }

    /// UpdateMapRun: new limits for a running Map Run of this execution. A higher
    /// MaxConcurrency starts waiting iterations at once; the tolerated failures are
    /// judged from the next failure on. False when no running Map Run has that ARN.
    pub fn update_map_run(
        &mut self,
        map_run_arn: &str,
        update: &MapRunUpdate,
        host: &mut dyn Host,
    ) -> bool {
        if self.status != Status::Running {
            return false;
        }
        let found = self
            .core
            .update_map_run(&mut self.root, map_run_arn, update, host);
        self.settle(host);
        found
    }

    /// StopExecution: the execution ends ABORTED and its effects are abandoned.
    pub fn stop(&mut self, error: Option<String>, cause: Option<String>, host: &mut dyn Host) {
        if self.status != Status::Running {
            return;
        }
        self.core.pending.clear();
        self.status = Status::Aborted;
        self.failure = error.clone().map(|e| Failure {
            error: e,
            cause: cause.clone(),
        });
        self.core
            .log
            .record(host, HistoryEventKind::ExecutionAborted, || {
                let mut d = Map::new();
                if let Some(e) = &error {
                    d.insert("error".into(), json!(e));
                }
                if let Some(c) = &cause {
                    d.insert("cause".into(), json!(c));
                }
                Value::Object(d)
            });
    }

    /// The machine's TimeoutSeconds (or the caller's deadline) passed.
    pub fn time_out(&mut self, host: &mut dyn Host) {
        if self.status != Status::Running {
            return;
        }
        self.core.pending.clear();
        // DescribeExecution shows no error or cause for a timed-out execution.
        self.status = Status::TimedOut;
        self.failure = None;
        self.core.log.record(
            host,
            HistoryEventKind::ExecutionTimedOut,
            || json!({"error": names::TIMEOUT}),
        );
    }

    fn settle(&mut self, host: &mut dyn Host) {
        match self.root.result.take() {
            None => {}
            Some(Ok(out)) => {
                self.status = Status::Succeeded;
                self.core
                    .log
                    .record_details(host, HistoryEventKind::ExecutionSucceeded, || {
                        history::details_text(&[
                            ("output", &out),
                            ("outputDetails", history::whole()),
                        ])
                    });
                self.output = Some(out);
                self.core.pending.clear();
            }
            Some(Err(f)) => {
                self.status = Status::Failed;
                self.core
                    .log
                    .record(host, HistoryEventKind::ExecutionFailed, || {
                        let mut d = Map::new();
                        d.insert("error".into(), json!(f.error));
                        if let Some(c) = &f.cause {
                            d.insert("cause".into(), json!(c));
                        }
                        Value::Object(d)
                    });
                self.failure = Some(f);
                self.core.pending.clear();
            }
        }
    }
}

/// Whether `fail` will retry the state for this failure rather than catch or end.
fn will_retry(state: &State, cursor: &Cursor, f: &Failure) -> bool {
    f.error != names::RUNTIME
        && state
            .retry
            .iter()
            .position(|r| matches_error(&r.error_equals, &f.error))
            .is_some_and(|i| cursor.attempts[i] < state.retry[i].max_attempts)
}

/// Whether a frame that did not succeed can be started again where it stopped.
fn redrivable(frame: &Frame) -> bool {
    match (&frame.result, &frame.cursor) {
        (Some(Ok(_)), _) => true,
        (_, None) => false,
        (_, Some(c)) => match &c.phase {
            Phase::Fanout(fan) => fan.children.iter().zip(&fan.status).all(|(child, s)| {
                !matches!(s, ChildStatus::Running | ChildStatus::Failed) || redrivable(child)
            }),
            _ => true,
        },
    }
}

/// Resolves paths and intrinsics for one evaluation: input, context and variables.
struct Scope<'a> {
    ident: &'a Ident,
    vars: &'a Map<String, Value>,
    map_item: Option<&'a (usize, Value)>,
    state: &'a State,
    entered_time: DateTime<Utc>,
    retry_count: u32,
    task_token: Option<&'a str>,
    host: &'a mut dyn Host,
}

impl Scope<'_> {
    /// The context object (`$$`, `$states.context`).
    fn context(&self) -> Value {
        let mut ctx = Map::new();
        for name in query::CONTEXT_MEMBERS {
            if let Some(v) = self.context_part(name) {
                ctx.insert(name.to_string(), v);
            }
        }
        Value::Object(ctx)
    }

    /// One member of the context object, built alone (a JSONata expression reading
    /// `$states.context.Map` need not copy the execution's input).
    fn context_part(&self, name: &str) -> Option<Value> {
        let info = &self.ident.info;
        match name {
            "Execution" => {
                let mut exec = Map::new();
                exec.insert("Id".into(), json!(info.execution_arn));
                exec.insert("Input".into(), self.ident.input.clone());
                exec.insert("StartTime".into(), json!(timestamp(info.start_time)));
                exec.insert("Name".into(), json!(info.name));
                exec.insert("RoleArn".into(), json!(info.role_arn));
                if let Some(r) = info.redrive_count {
                    exec.insert("RedriveCount".into(), json!(r));
                }
                Some(Value::Object(exec))
            }
            "StateMachine" => {
                Some(json!({"Id": info.state_machine_arn, "Name": info.state_machine_name}))
            }
            "State" => {
                let mut state = Map::new();
                state.insert("Name".into(), json!(self.state.name));
                state.insert("EnteredTime".into(), json!(timestamp(self.entered_time)));
                if matches!(self.state.kind, Kind::Task(_)) {
                    state.insert("RetryCount".into(), json!(self.retry_count));
                }
                Some(Value::Object(state))
            }
            "Task" => self.task_token.map(|t| json!({ "Token": t })),
            "Map" => self.map_item.map(|(i, v)| {
                history::details([(
                    "Item",
                    history::details([("Index", (*i).into()), ("Value", v.clone())]),
                )])
            }),
            _ => None,
        }
    }
}

impl Resolve for Scope<'_> {
    fn select(&self, path: &JsonPath, input: &Value) -> Result<Value, String> {
        let found = match path.root() {
            Root::Input => path.select(input),
            Root::Context => path.select(&self.context()),
            Root::Variable(name) => match self.vars.get(name) {
                Some(v) => path.select(v),
                None => return Err(format!("The variable '{name}' is not defined")),
            },
        };
        found.map_err(|nf| nf.detail)
    }

    fn uuid_v4(&mut self) -> String {
        self.host.uuid_v4()
    }
}

impl query::Draws for Scope<'_> {
    fn context_object(&self) -> Value {
        self.context()
    }

    fn context_member(&self, name: &str) -> Option<Value> {
        self.context_part(name)
    }

    fn variable(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }

    fn random_u64(&mut self) -> u64 {
        self.host.random_u64()
    }

    fn now(&mut self) -> DateTime<Utc> {
        self.host.now()
    }
}

/// Resolves paths, templates and intrinsics as an execution does. An execution's
/// [`Scope`] and TestState's scope differ only in where the context object and random
/// numbers come from (the required methods); every other method is shared, so TestState
/// cannot drift from what an execution does.
pub(crate) trait Resolve: query::Draws {
    /// Selects a path from the input, the context object or a variable; the error is
    /// the detail AWS quotes (Jayway's wording for a miss).
    fn select(&self, path: &JsonPath, input: &Value) -> Result<Value, String>;
    fn uuid_v4(&mut self) -> String;

    /// Renders a JSONata state's field (`field`: where it is, for errors): each
    /// expression evaluated with `states`, the rest as written.
    fn render_ata(
        &mut self,
        t: &Template,
        states: States,
        field: &FieldPath,
    ) -> Result<Value, Failure> {
        let exprs: Vec<&Expr> = t.expressions().into_iter().map(|e| &**e).collect();
        if exprs.is_empty() {
            return self.render(t, states.input);
        }
        // One conversion of `$states` and the variables for all of the field's
        // expressions: converting is most of what evaluating a path costs.
        let prepared = query::prepare(&exprs, states, self);
        self.render_prepared(t, &prepared, states.input, field)
    }

    /// [`Resolve::render_ata`]'s walk over a field, its expressions prepared.
    fn render_prepared(
        &mut self,
        t: &Template,
        prepared: &query::Prepared,
        input: &Value,
        field: &FieldPath,
    ) -> Result<Value, Failure> {
        match t {
            Template::Jsonata(e) => query::evaluate_prepared(e, prepared, field),
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let index = i.to_string();
                    out.push(self.render_prepared(item, prepared, input, &field.child(&index))?);
                }
                Ok(Value::Array(out))
            }
            Template::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (name, t, _) in fields {
                    let v = self.render_prepared(t, prepared, input, &field.child(name))?;
                    out.insert(name.clone(), v);
                }
                Ok(Value::Object(out))
            }
            other => self.render(other, input),
        }
    }

    /// A JSONata number field (MaxConcurrency, TimeoutSeconds, ...).
    fn ata_number(&mut self, e: &Expr, input: &Value, field: &str) -> Result<f64, Failure> {
        let path = FieldPath::root(field);
        let v = query::evaluate(e, States::input(input), self, &path)?;
        v.as_f64()
            .ok_or_else(|| query::wrong_type(e, &path, "number", &v))
    }

    /// Renders a Parameters-like template against `input`.
    fn render(&mut self, t: &Template, input: &Value) -> Result<Value, Failure> {
        self.render_field(t, input, "$")
    }

    /// Renders a template; `field` is the key a missing path is reported under.
    fn render_field(&mut self, t: &Template, input: &Value, field: &str) -> Result<Value, Failure> {
        match t {
            Template::Literal(v) => Ok(v.clone()),
            Template::Path(p) => self
                .select(p, input)
                .map_err(|_| field_miss(p, field, input)),
            Template::Intrinsic(call) => self.intrinsic(call, input),
            Template::Jsonata(e) => {
                query::evaluate(e, States::input(input), self, &FieldPath::root(field))
            }
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.render_field(i, input, field)?);
                }
                Ok(Value::Array(out))
            }
            Template::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (name, t, key) in fields {
                    let v = self.render_field(t, input, &key.0)?;
                    out.insert(name.clone(), v);
                }
                Ok(Value::Object(out))
            }
        }
    }

    fn intrinsic(&mut self, call: &intrinsics::Call, input: &Value) -> Result<Value, Failure> {
        intrinsics::eval(call, &mut Bridge { scope: self, input })
    }

    /// InputPath / OutputPath / ItemsPath.
    fn io_path(&self, p: &IoPath, value: Value) -> Result<Value, Failure> {
        match p {
            IoPath::Whole => Ok(value),
            IoPath::Empty => Ok(Value::Object(Map::new())),
            IoPath::At(path) => self.select(path, &value).map_err(|detail| {
                Failure::runtime(format!("Invalid path '{}' : {}", path.text(), detail))
            }),
        }
    }

    /// A `*Path` field's raw value.
    fn path_value(&self, p: &JsonPath, input: &Value) -> Result<Value, Failure> {
        self.select(p, input)
            .map_err(|d| Failure::runtime(format!("Invalid path '{}' : {}", p.text(), d)))
    }

    /// A Fail state's Error or Cause.
    fn text(&mut self, t: &Text, input: &Value, field: &str) -> Result<String, Failure> {
        match t {
            Text::Fixed(s) => Ok(s.clone()),
            Text::Dynamic(tmpl) => match self.render_field(tmpl, input, field)? {
                Value::String(s) => Ok(s),
                other => Ok(compact(&other)),
            },
        }
    }

    /// A number given in the definition or read by its `*Path` field (`field`).
    fn amount(&mut self, a: &Amount, input: &Value, field: &str) -> Result<f64, Failure> {
        let lit = field.strip_suffix("Path").unwrap_or(field);
        self.amount_or(a, input, lit, |v, p| {
            Failure::runtime(format!(
                "The {field} field refers to value \"{}\" which is not a valid number: {}",
                compact(v),
                p.text()
            ))
        })
    }

    /// [`Resolve::amount`] with the error for a value that is not a number worded by
    /// `not_number` (TestState words it differently from an execution).
    fn amount_or(
        &mut self,
        a: &Amount,
        input: &Value,
        lit: &str,
        not_number: impl FnOnce(&Value, &JsonPath) -> Failure,
    ) -> Result<f64, Failure> {
        match a {
            Amount::Fixed(n) => Ok(*n),
            Amount::Expr(e) => self.ata_number(e, input, lit),
            Amount::Path(p) => {
                let v = self.path_value(p, input)?;
                v.as_f64().ok_or_else(|| not_number(&v, p))
            }
        }
    }
}

fn field_miss(path: &JsonPath, field: &str, input: &Value) -> Failure {
    Failure::runtime(format!(
        "The JSONPath '{}' specified for the field '{}' could not be found in the input '{}'",
        path.text(),
        field,
        compact(input)
    ))
}

/// Lets intrinsic functions resolve paths and draw random numbers through a scope.
struct Bridge<'s, S: ?Sized> {
    scope: &'s mut S,
    input: &'s Value,
}

impl<S: Resolve + ?Sized> IntrinsicHost for Bridge<'_, S> {
    fn resolve_path(&mut self, path: &str) -> Result<Value, Failure> {
        let p = JsonPath::parse(path).map_err(Failure::runtime)?;
        self.scope.select(&p, self.input).map_err(|_| {
            Failure::runtime(format!(
                "The JSONPath '{path}' could not be found in the input '{}'",
                compact(self.input)
            ))
        })
    }
    fn random_u64(&mut self) -> u64 {
        query::Draws::random_u64(self.scope)
    }
    fn uuid_v4(&mut self) -> String {
        self.scope.uuid_v4()
    }
}

pub(crate) fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The size of a value as compact JSON, without building the string.
pub fn json_size(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Whether an ErrorEquals list catches `error`. States.ALL and States.TaskFailed are
/// wildcards, but nothing catches States.Runtime, and TaskFailed spares Timeout.
pub(crate) fn matches_error(error_equals: &[String], error: &str) -> bool {
    if error == names::RUNTIME {
        return false;
    }
    error_equals.iter().any(|e| {
        e == error || e == names::ALL || (e == names::TASK_FAILED && error != names::TIMEOUT)
    })
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum Phase {
    Enter,
    Task {
        effect: EffectId,
        call: Box<TaskCall>,
    },
    Wait {
        effect: EffectId,
        output: Value,
        assigned: Option<Map<String, Value>>,
    },
    Backoff {
        effect: EffectId,
    },
    Fanout(Box<Fanout>),
    /// A distributed Map's iteration, running as a child execution the driver started.
    Iteration {
        effect: EffectId,
    },
    /// A distributed Map waiting for its ItemReader's items.
    Reading {
        effect: EffectId,
    },
    /// A distributed Map waiting for its ResultWriter.
    Writing {
        effect: EffectId,
    },
}

/// A delivery that is not the outcome the frame's state waits for: it keeps waiting.
fn keep_waiting(frame: &mut Frame, phase: Phase) {
    if let Some(c) = frame.cursor.as_mut() {
        c.phase = phase;
    }
}

impl Phase {
    /// The effect a distributed Map's own phase waits for.
    fn map_effect(&self) -> Option<EffectId> {
        match self {
            Phase::Reading { effect } | Phase::Writing { effect } | Phase::Iteration { effect } => {
                Some(*effect)
            }
            _ => None,
        }
    }
}

/// The children of a Parallel or Map state and how far they have got.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Fanout {
    is_map: bool,
    /// A distributed Map runs its iterations as child executions: their events are
    /// not part of this execution's history, which shows MapRun events instead.
    #[serde(default)]
    distributed: bool,
    /// A distributed Map's Map Run, once started.
    #[serde(default)]
    map_run_arn: Option<String>,
    /// MaxConcurrency as the state gave it (0: no limit), as DescribeMapRun shows it.
    #[serde(default)]
    max_concurrency_given: usize,
    /// The items before an ItemBatcher grouped them (each child's input then holds
    /// its batch as `Items`); 0 when there is no batcher.
    #[serde(default)]
    batched_items: usize,
    status: Vec<ChildStatus>,
    inputs: Vec<Value>,
    children: Vec<Frame>,
    max_concurrency: usize,
    running: usize,
    finished: usize,
    results: Vec<Value>,
    failures: usize,
    tolerated_failures: Option<f64>,
    tolerated_percentage: Option<f64>,
}

impl Fanout {
    /// A Parallel's fanout of `children`, none started; `inputs[i]` is child i's input.
    /// A Map sets its own fields over it.
    fn new(inputs: Vec<Value>, children: Vec<Frame>, max_concurrency: usize) -> Fanout {
        let n = inputs.len();
        Fanout {
            is_map: false,
            distributed: false,
            map_run_arn: None,
            max_concurrency_given: 0,
            batched_items: 0,
            status: vec![ChildStatus::NotStarted; n],
            inputs,
            children,
            max_concurrency,
            running: 0,
            finished: 0,
            results: vec![Value::Null; n],
            failures: 0,
            tolerated_failures: None,
            tolerated_percentage: None,
        }
    }
}

/// Where a Parallel branch or Map iteration stands.
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum ChildStatus {
    NotStarted,
    Running,
    Succeeded,
    Failed,
}

/// How a state action ended.
enum Step {
    /// Completed: the output, the variables it assigns, where it goes next.
    Done(Value, Option<Map<String, Value>>, Transition),
    /// The state's own evaluation failed. A States.Runtime error raised here gets AWS's
    /// "An error occurred while executing the state" prefix.
    Error(Failure),
    /// A task or child failed: retry and catch apply.
    Failed(Failure),
    Invoke(Box<TaskCall>),
    Sleep {
        until: DateTime<Utc>,
        output: Value,
        assigned: Option<Map<String, Value>>,
    },
    Fanout(Box<Fanout>),
    /// A distributed Map's items are to be read first.
    ReadItems(Box<ReadCall>),
    /// A Map failed after it started (MapStateStarted with this many items).
    MapStartedError(usize, Failure),
    Blocked,
}

/// [`tryf!`] for a Map whose MapStateStarted (with `$len` items) precedes the error.
macro_rules! started_tryf {
    ($len:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return Step::MapStartedError($len, f),
        }
    };
}

macro_rules! tryf {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return Step::Error(f),
        }
    };
}

fn assign(
    scope: &mut Scope,
    t: Option<&Template>,
    value: &Value,
) -> Result<Option<Map<String, Value>>, Failure> {
    match t {
        None => Ok(None),
        Some(t) => match scope.render(t, value)? {
            Value::Object(m) => Ok(Some(m)),
            _ => Ok(None),
        },
    }
}

/// Writes `result` into `input` at ResultPath.
pub(crate) fn apply_result_path(
    rp: &ResultPath,
    input: Value,
    result: Value,
) -> Result<Value, Failure> {
    match rp {
        ResultPath::Replace => Ok(result),
        ResultPath::Discard => Ok(input),
        ResultPath::At(p) => {
            let mut target = input;
            p.set(&mut target, result)
                .map_err(|e| Failure::runtime(format!("Invalid path '{}' : {}", p.text(), e)))?;
            Ok(target)
        }
    }
}

fn backoff(r: &Retrier, attempt: u32, host: &mut dyn Host) -> Duration {
    let mut secs = r.interval_seconds * r.backoff_rate.powi(attempt as i32);
    if let Some(max) = r.max_delay_seconds {
        secs = secs.min(max);
    }
    if r.jitter_full {
        let unit = (host.random_u64() >> 11) as f64 / (1u64 << 53) as f64;
        secs *= unit;
    }
    Duration::milliseconds((secs * 1000.0).clamp(0.0, 1e12) as i64)
}

/// A `*Path` number such as MaxConcurrencyPath: a JSON number, or a string holding
/// one; `kind` names what was expected ("integer", "float") in the error.
fn path_number<T: std::str::FromStr>(
    v: &Value,
    field: &str,
    path: &JsonPath,
    kind: &str,
    from_json: fn(&serde_json::Number) -> Option<T>,
) -> Result<T, Failure> {
    let n = match v {
        Value::Number(n) => from_json(n),
        Value::String(s) => s.trim().parse::<T>().ok(),
        _ => None,
    };
    n.ok_or_else(|| {
        let shown = match v {
            Value::String(s) => s.clone(),
            other => compact(other),
        };
        Failure::runtime(format!(
            "The {field} field refers to value \"{shown}\" which is not a valid {kind}: {}",
            path.text()
        ))
    })
}

fn path_integer(v: &Value, field: &str, path: &JsonPath) -> Result<i64, Failure> {
    path_number(v, field, path, "integer", serde_json::Number::as_i64)
}

fn path_float(v: &Value, field: &str, path: &JsonPath) -> Result<f64, Failure> {
    path_number(v, field, path, "float", serde_json::Number::as_f64)
}

/// Step Functions' limits on variables: one variable, one Assign, all of an
/// execution's variables (as compact JSON).
pub const MAX_VARIABLE_BYTES: usize = 256 * 1024;
pub const MAX_ASSIGN_BYTES: usize = 256 * 1024;
pub const MAX_VARIABLES_BYTES: usize = 10 * 1024 * 1024;

/// Whether `assigned` may join `vars` within the limits; else States.DataLimitExceeded
/// naming the limit.
fn variables_fit(
    vars: &Map<String, Value>,
    assigned: &Map<String, Value>,
    state: &str,
) -> Result<(), Failure> {
    let too_big = |what: String| {
        Failure::new(
            names::DATA_LIMIT_EXCEEDED,
            format!("The state '{state}' assigned {what}"),
        )
    };
    let mut assign_bytes = 0usize;
    for (name, v) in assigned {
        let bytes = json_size(v);
        if bytes > MAX_VARIABLE_BYTES {
            return Err(too_big(format!(
                "the variable '{name}' {bytes} bytes, more than the {MAX_VARIABLE_BYTES} bytes a variable may hold"
            )));
        }
        assign_bytes += bytes;
    }
    if assign_bytes > MAX_ASSIGN_BYTES {
        return Err(too_big(format!(
            "{assign_bytes} bytes in one Assign, more than the {MAX_ASSIGN_BYTES} bytes allowed"
        )));
    }
    let kept: usize = vars
        .iter()
        .filter(|(name, _)| !assigned.contains_key(*name))
        .map(|(_, v)| json_size(v))
        .sum();
    if kept + assign_bytes > MAX_VARIABLES_BYTES {
        return Err(too_big(format!(
            "variables that bring the execution's to {} bytes, more than the {MAX_VARIABLES_BYTES} bytes allowed",
            kept + assign_bytes
        )));
    }
    Ok(())
}

/// A state's own error as AWS words it: the state, the event it entered at, the cause.
fn in_state(frame: &Frame, state: &State, f: &Failure) -> String {
    let entered = frame.cursor.as_ref().map_or(0, |c| c.entered_event);
    format!(
        "An error occurred while executing the state '{}' (entered at the event id #{}). {}",
        state.name,
        entered,
        f.cause.as_deref().unwrap_or("")
    )
}

/// The longest Wait Step Functions accepts; beyond it the delay is "too long".
const MAX_WAIT_SECONDS: i64 = i32::MAX as i64;

impl Core {
    /// Enters state `idx` of `frame` with `input`.
    fn enter(&mut self, frame: &mut Frame, idx: usize, input: Value, host: &mut dyn Host) {
        if self.log.count() >= MAX_HISTORY_EVENTS {
            frame.cursor = None;
            frame.result = Some(Err(Failure::runtime(format!(
                "The execution reached the maximum number of history events ({MAX_HISTORY_EVENTS})."
            ))));
            return;
        }
        let machine = self.machine.clone();
        let state = &machine.lists[frame.list].states[idx];
        let entered_time = host.now();
        let entered_event =
            self.log
                .record_details(host, HistoryEventKind::state_entered(&state.kind), || {
                    history::details_text(&[
                        ("input", &input),
                        ("inputDetails", history::whole()),
                        ("name", &Value::String(state.name.clone())),
                    ])
                });
        frame.cursor = Some(Cursor {
            state: idx,
            input,
            entered_event,
            entered_time,
            attempts: vec![0; state.retry.len()],
            retry_count: 0,
            phase: Phase::Enter,
        });
    }

    /// Runs the frame until it blocks on effects or ends.
    fn run(&mut self, frame: &mut Frame, host: &mut dyn Host) {
        let machine = self.machine.clone();
        loop {
            if frame.result.is_some() {
                return;
            }
            let Some(cursor) = frame.cursor.as_ref() else {
                return;
            };
            if !matches!(cursor.phase, Phase::Enter) {
                return;
            }
            let state = &machine.lists[frame.list].states[cursor.state];
            let step = Self::act(&self.ident, frame, state, host);
            self.conclude(frame, state, step, host);
        }
    }

    /// Carries out what a state action decided.
    fn conclude(&mut self, frame: &mut Frame, state: &State, step: Step, host: &mut dyn Host) {
        match step {
            Step::Blocked => {}
            Step::MapStartedError(n, f) => {
                self.log.record(
                    host,
                    HistoryEventKind::MapStateStarted,
                    || json!({ "length": n }),
                );
                self.conclude(frame, state, Step::Error(f), host)
            }
            Step::Done(output, assigned, next) => {
                self.done(frame, state, output, assigned, next, host)
            }
            Step::Error(f) if f.error == names::RUNTIME => {
                let f = Failure::runtime(in_state(frame, state, &f));
                // The cursor stays: a redrive restarts the frame at this state.
                frame.result = Some(Err(f));
            }
            // A JSONata error names the state too, and a catcher may take it.
            Step::Error(f) if f.error == names::QUERY_EVALUATION_ERROR => {
                self.evaluation_failed(frame, state, f, host)
            }
            Step::Error(f) | Step::Failed(f) => self.fail(frame, state, f, host),
            Step::Invoke(call) => {
                let id = self.effect(Effect::Invoke(call.clone()));
                self.log_scheduled(&call, host);
                if let Some(c) = frame.cursor.as_mut() {
                    c.phase = Phase::Task { effect: id, call };
                }
            }
            Step::Sleep {
                until,
                output,
                assigned,
            } => {
                let id = self.effect(Effect::Timer { until });
                if let Some(c) = frame.cursor.as_mut() {
                    c.phase = Phase::Wait {
                        effect: id,
                        output,
                        assigned,
                    };
                }
            }
            Step::Fanout(fan) => self.start_fanout(frame, state, fan, host),
            Step::ReadItems(call) => {
                let id = self.effect(Effect::ReadItems(call));
                if let Some(c) = frame.cursor.as_mut() {
                    c.phase = Phase::Reading { effect: id };
                }
            }
        }
    }

    /// A JSONata error of the state's own: EvaluationFailed (with the field that
    /// failed), MapStateFailed for a Map failing before it starts, then the failure,
    /// which a retrier or catcher may take.
    fn evaluation_failed(
        &mut self,
        frame: &mut Frame,
        state: &State,
        f: Failure,
        host: &mut dyn Host,
    ) {
        let location = f
            .cause
            .as_deref()
            .and_then(query::location)
            .map(str::to_string);
        let f = Failure::new(names::QUERY_EVALUATION_ERROR, in_state(frame, state, &f));
        self.log
            .record(host, HistoryEventKind::EvaluationFailed, || {
                let mut d = json!({"cause": f.cause, "error": f.error, "state": state.name});
                if let Some(l) = location {
                    d["location"] = json!(l);
                }
                d
            });
        // A Map whose own fields fail before it starts is failed as a whole.
        let before_start = frame
            .cursor
            .as_ref()
            .is_some_and(|c| matches!(c.phase, Phase::Enter));
        if matches!(state.kind, Kind::Map(_)) && before_start {
            self.log
                .record(host, HistoryEventKind::MapStateFailed, || Value::Null);
        }
        self.fail(frame, state, f, host)
    }

    /// A state completed: its output must fit between states before it is passed on.
    fn done(
        &mut self,
        frame: &mut Frame,
        state: &State,
        output: Value,
        assigned: Option<Map<String, Value>>,
        next: Transition,
        host: &mut dyn Host,
    ) {
        match payload_problem(&output) {
            None => {}
            Some(PayloadProblem::TooLarge) => {
                let f = Failure::new(
                    names::DATA_LIMIT_EXCEEDED,
                    format!(
                        "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                        state.name
                    ),
                );
                return self.fail(frame, state, f, host);
            }
            Some(PayloadProblem::TooDeep) => {
                return self.conclude(frame, state, Step::Error(too_deep()), host);
            }
        }
        if let Some(vars) = assigned {
            if let Err(f) = variables_fit(&frame.vars, &vars, &state.name) {
                return self.fail(frame, state, f, host);
            }
            frame.vars.extend(vars);
        }
        self.exit(frame, state, output, next, host)
    }

    /// A Parallel or Map records its start and starts as many children as it may.
    fn start_fanout(
        &mut self,
        frame: &mut Frame,
        state: &State,
        mut fan: Box<Fanout>,
        host: &mut dyn Host,
    ) {
        if fan.is_map {
            let n = fan.inputs.len();
            self.log.record(
                host,
                HistoryEventKind::MapStateStarted,
                || json!({ "length": n }),
            );
            if let Kind::Map(spec) = &state.kind {
                if let Some(child) = &spec.distributed {
                    fan.map_run_arn = Some(map_run_arn(&self.ident.info, &child.label, host));
                }
            }
            if let Some(arn) = fan.map_run_arn.clone() {
                self.log.record(
                    host,
                    HistoryEventKind::MapRunStarted,
                    || json!({ "mapRunArn": arn }),
                );
            }
        } else {
            self.log
                .record(host, HistoryEventKind::ParallelStateStarted, || Value::Null);
        }
        if let Some(c) = frame.cursor.as_mut() {
            c.phase = Phase::Fanout(fan);
        }
        self.pump(frame, state, host);
    }

    fn exit(
        &mut self,
        frame: &mut Frame,
        state: &State,
        output: Value,
        next: Transition,
        host: &mut dyn Host,
    ) {
        self.log
            .record_details(host, HistoryEventKind::state_exited(&state.kind), || {
                history::details_text(&[
                    ("name", &Value::String(state.name.clone())),
                    ("output", &output),
                    ("outputDetails", history::whole()),
                ])
            });
        match next {
            Transition::Next(n) => self.enter(frame, n, output, host),
            Transition::End => {
                frame.cursor = None;
                frame.result = Some(Ok(output));
            }
        }
    }

    /// A state failed: retry if a retrier allows, else catch, else the frame fails.
    fn fail(&mut self, frame: &mut Frame, state: &State, f: Failure, host: &mut dyn Host) {
        if f.error != names::RUNTIME {
            if let Some(cursor) = frame.cursor.as_mut() {
                // The first retrier whose ErrorEquals matches decides, even when spent.
                if let Some(i) = state
                    .retry
                    .iter()
                    .position(|r| matches_error(&r.error_equals, &f.error))
                {
                    let r = &state.retry[i];
                    if cursor.attempts[i] < r.max_attempts {
                        let delay = backoff(r, cursor.attempts[i], host);
                        cursor.attempts[i] += 1;
                        cursor.retry_count += 1;
                        let now = host.now();
                        let until = now
                            .checked_add_signed(delay)
                            .unwrap_or(DateTime::<Utc>::MAX_UTC);
                        let id = self.effect(Effect::Timer { until });
                        if let Some(cursor) = frame.cursor.as_mut() {
                            cursor.phase = Phase::Backoff { effect: id };
                        }
                        return;
                    }
                }
            }
            if let Some(c) = state
                .catch
                .iter()
                .find(|c| matches_error(&c.error_equals, &f.error))
            {
                return self.caught(frame, state, c, f, host);
            }
        }
        // The cursor stays: a redrive restarts the frame at this state.
        frame.result = Some(Err(f));
    }

    fn caught(
        &mut self,
        frame: &mut Frame,
        state: &State,
        c: &Catcher,
        f: Failure,
        host: &mut dyn Host,
    ) {
        let Some(cursor) = frame.cursor.as_mut() else {
            return;
        };
        cursor.phase = Phase::Enter;
        let raw = std::mem::take(&mut cursor.input);
        let mut err = Map::new();
        err.insert("Error".into(), json!(f.error));
        err.insert("Cause".into(), json!(f.cause.clone().unwrap_or_default()));
        let err = Value::Object(err);
        let mut scope = Scope {
            ident: &self.ident,
            vars: &frame.vars,
            map_item: frame.map_item.as_ref(),
            state,
            entered_time: cursor.entered_time,
            retry_count: cursor.retry_count,
            task_token: None,
            host,
        };
        let shaped = match state.query_language {
            QueryLanguage::Jsonata => jsonata::caught(&mut scope, c, &raw, err),
            QueryLanguage::JsonPath => assign(&mut scope, c.assign.as_ref(), &err)
                .and_then(|a| apply_result_path(&c.result_path, raw, err).map(|o| (o, a))),
        };
        let step = match shaped {
            Ok((output, assigned)) => Step::Done(output, assigned, Transition::Next(c.next)),
            Err(e) => Step::Error(e),
        };
        self.conclude(frame, state, step, host);
    }

    fn effect(&mut self, e: Effect) -> EffectId {
        let id = self.next_effect;
        self.next_effect += 1;
        self.pending.insert(id, (self.path.clone(), e));
        id
    }

    fn log_scheduled(&mut self, call: &TaskCall, host: &mut dyn Host) {
        if !self.log.recording() {
            // An activity's start is recorded when a worker takes it.
            self.log
                .skip(if matches!(call.target, Target::Activity { .. }) {
                    1
                } else {
                    2
                });
            return;
        }
        match &call.target {
            Target::Activity { arn } => {
                let resource = Value::String(arn.clone());
                let limits = call.limits();
                let mut fields = vec![
                    ("input", &call.payload),
                    ("inputDetails", history::whole()),
                    ("resource", &resource),
                ];
                fields.extend(limits.iter().map(|(k, v)| (*k, v)));
                self.log
                    .record_details(host, HistoryEventKind::ActivityScheduled, || {
                        history::details_text(&fields)
                    });
            }
            Target::LambdaFunction { arn } => {
                let resource = Value::String(arn.clone());
                self.log
                    .record_details(host, HistoryEventKind::LambdaFunctionScheduled, || {
                        history::details_text(&[
                            ("input", &call.payload),
                            ("inputDetails", history::whole()),
                            ("resource", &resource),
                        ])
                    });
                self.log
                    .record(host, HistoryEventKind::LambdaFunctionStarted, || {
                        Value::Null
                    });
            }
            target => {
                let (rtype, res) = target.history_names(&call.resource);
                let (region, resource, resource_type) = (
                    Value::from("us-east-1"),
                    Value::String(res.clone()),
                    Value::String(rtype.clone()),
                );
                let limits = call.limits();
                let mut fields = vec![
                    ("parameters", &call.parameters),
                    ("region", &region),
                    ("resource", &resource),
                    ("resourceType", &resource_type),
                ];
                fields.extend(limits.iter().map(|(k, v)| (*k, v)));
                self.log
                    .record_details(host, HistoryEventKind::TaskScheduled, || {
                        history::details_text(&fields)
                    });
                self.log.record(
                    host,
                    HistoryEventKind::TaskStarted,
                    || json!({"resource": res, "resourceType": rtype}),
                );
            }
        }
    }

    fn log_task_end(
        &mut self,
        call: &TaskCall,
        outcome: Result<&Value, &Failure>,
        host: &mut dyn Host,
    ) {
        let lambda = matches!(call.target, Target::LambdaFunction { .. });
        let activity = matches!(call.target, Target::Activity { .. });
        // Lambda functions and activities report in their own event types, without
        // the resource fields that service integrations carry.
        let plain = lambda || activity;
        let (rtype, res) = call.target.history_names(&call.resource);
        match outcome {
            Ok(out) => {
                let t = if lambda {
                    HistoryEventKind::LambdaFunctionSucceeded
                } else if activity {
                    HistoryEventKind::ActivitySucceeded
                } else {
                    HistoryEventKind::TaskSucceeded
                };
                self.log.record_details(host, t, || {
                    let (resource, resource_type) = (Value::from(res), Value::from(rtype));
                    let mut fields = vec![("output", out), ("outputDetails", history::whole())];
                    if !plain {
                        fields.extend([("resource", &resource), ("resourceType", &resource_type)]);
                    }
                    history::details_text(&fields)
                });
            }
            Err(f) => {
                let timed_out = f.error == names::TIMEOUT || f.error == names::HEARTBEAT_TIMEOUT;
                let t = match (lambda, activity, timed_out) {
                    (true, _, true) => HistoryEventKind::LambdaFunctionTimedOut,
                    (true, _, false) => HistoryEventKind::LambdaFunctionFailed,
                    (_, true, true) => HistoryEventKind::ActivityTimedOut,
                    (_, true, false) => HistoryEventKind::ActivityFailed,
                    (_, _, true) => HistoryEventKind::TaskTimedOut,
                    (_, _, false) => HistoryEventKind::TaskFailed,
                };
                self.log.record(host, t, || {
                    let mut d = Map::new();
                    if let Some(c) = &f.cause {
                        d.insert("cause".into(), json!(c));
                    }
                    d.insert("error".into(), json!(f.error));
                    if !plain {
                        d.insert("resource".into(), json!(res));
                        d.insert("resourceType".into(), json!(rtype));
                    }
                    Value::Object(d)
                });
            }
        }
    }

    /// A distributed Map whose ItemReader answered: it starts over `items`.
    fn map_with_items(
        ident: &Ident,
        frame: &mut Frame,
        state: &State,
        items: Vec<Value>,
        host: &mut dyn Host,
    ) -> Step {
        let Kind::Map(spec) = &state.kind else {
            return Step::Error(Failure::runtime(
                "items were read for a state that is no Map",
            ));
        };
        let Frame {
            vars,
            map_item,
            cursor,
            ..
        } = frame;
        let Some(cursor) = cursor.as_mut() else {
            return Step::Blocked;
        };
        let mut scope = Scope {
            ident,
            vars,
            map_item: map_item.as_ref(),
            state,
            entered_time: cursor.entered_time,
            retry_count: cursor.retry_count,
            task_token: None,
            host,
        };
        act_map_on(&mut scope, &cursor.input, spec, Some(items))
    }

    /// Decides what the state at the cursor does. Reads the frame; changes nothing but
    /// the cursor's input, which a state that completes at once no longer needs.
    fn act(ident: &Ident, frame: &mut Frame, state: &State, host: &mut dyn Host) -> Step {
        let Frame {
            vars,
            map_item,
            cursor,
            ..
        } = frame;
        let Some(cursor) = cursor.as_mut() else {
            return Step::Blocked;
        };
        // Drawn before anything else the state does, so that the host's random
        // numbers are used in the same order on every run.
        let task_token = match &state.kind {
            Kind::Task(t) if t.target.pattern() == Pattern::WaitForTaskToken => {
                Some(host.uuid_v4())
            }
            _ => None,
        };
        let mut scope = Scope {
            ident,
            vars,
            map_item: map_item.as_ref(),
            state,
            entered_time: cursor.entered_time,
            retry_count: cursor.retry_count,
            task_token: task_token.as_deref(),
            host,
        };
        let input = &mut cursor.input;
        if state.query_language == QueryLanguage::Jsonata {
            return jsonata::act(&mut scope, input);
        }
        match &state.kind {
            Kind::Pass { result } => act_pass(&mut scope, input, result.as_ref()),
            Kind::Succeed => act_succeed(&mut scope, input),
            Kind::Fail { error, cause } => act_fail(&mut scope, input, error, cause),
            Kind::Choice { rules, default } => act_choice(&mut scope, input, rules, *default),
            Kind::Wait(wait) => act_wait(&mut scope, input, wait),
            Kind::Task(spec) => act_task(&mut scope, input, spec),
            Kind::Parallel { branches } => act_parallel(&mut scope, input, branches),
            Kind::Map(spec) => act_map(&mut scope, input, spec),
        }
    }
}

// One function per state kind, each deciding the state's [`Step`] from its scope and
// the input it entered with. `Core::act` picks the one for the state's kind.

fn act_pass(scope: &mut Scope, input: &mut Value, result: Option<&Value>) -> Step {
    let state = scope.state;
    let keep_raw = !matches!(state.result_path, ResultPath::Replace);
    let raw = std::mem::take(input);
    // Cloning the input is the costliest step of a Pass; do it only when both the
    // effective input and the raw input (for ResultPath) are needed.
    let needs_effective = result.is_none() || !matches!(state.input_path, IoPath::Whole);
    let (raw, effective) = if !needs_effective {
        (raw, Value::Null)
    } else if keep_raw {
        let e = tryf!(scope.io_path(&state.input_path, raw.clone()));
        (raw, e)
    } else {
        (Value::Null, tryf!(scope.io_path(&state.input_path, raw)))
    };
    let result = match (result, &state.parameters) {
        (Some(r), _) => r.clone(),
        (None, Some(p)) => tryf!(scope.render(p, &effective)),
        (None, None) => effective,
    };
    let assigned = tryf!(assign(scope, state.assign.as_ref(), &result));
    let output = tryf!(apply_result_path(&state.result_path, raw, result));
    let output = tryf!(scope.io_path(&state.output_path, output));
    Step::Done(output, assigned, state.transition)
}

fn act_succeed(scope: &mut Scope, input: &mut Value) -> Step {
    let state = scope.state;
    let raw = std::mem::take(input);
    let effective = tryf!(scope.io_path(&state.input_path, raw));
    let output = tryf!(scope.io_path(&state.output_path, effective));
    Step::Done(output, None, Transition::End)
}

fn act_fail(scope: &mut Scope, input: &Value, error: &Option<Text>, cause: &Option<Text>) -> Step {
    let (error_field, cause_field) = match scope.state.query_language {
        QueryLanguage::JsonPath => ("ErrorPath", "CausePath"),
        QueryLanguage::Jsonata => ("Error", "Cause"),
    };
    let error = match error {
        Some(e) => tryf!(scope.text(e, input, error_field)),
        None => String::new(),
    };
    let cause = match cause {
        Some(c) => Some(tryf!(scope.text(c, input, cause_field))),
        None => None,
    };
    Step::Failed(Failure { error, cause })
}

fn act_choice(
    scope: &mut Scope,
    input: &mut Value,
    rules: &[ChoiceRule],
    default: Option<usize>,
) -> Step {
    let state = scope.state;
    let raw = std::mem::take(input);
    let effective = tryf!(scope.io_path(&state.input_path, raw));
    let mut chosen = None;
    for rule in rules {
        let hit = tryf!(choice::evaluate(
            &rule.condition,
            &effective,
            &|p: &JsonPath, v: &Value| scope.select(p, v)
        ));
        if hit {
            chosen = Some((rule.next, rule.assign.as_ref()));
            break;
        }
    }
    let (next, assign_t) = match (chosen, default) {
        (Some(c), _) => c,
        (None, Some(d)) => (d, state.assign.as_ref()),
        (None, None) => {
            return Step::Failed(Failure::new(
                names::NO_CHOICE_MATCHED,
                format!("No Matches! State: {}", state.name),
            ))
        }
    };
    let assigned = tryf!(assign(scope, assign_t, &effective));
    let output = tryf!(scope.io_path(&state.output_path, effective));
    Step::Done(output, assigned, Transition::Next(next))
}

fn act_wait(scope: &mut Scope, input: &Value, wait: &WaitFor) -> Step {
    let state = scope.state;
    // Cloned, not taken: a Wait interrupted by StopExecution or the machine's timeout
    // is redriven, and enters again with the input it had.
    let effective = tryf!(scope.io_path(&state.input_path, input.clone()));
    let entered = scope.entered_time;
    let until = tryf!(wait_until(scope, wait, &effective, entered));
    if (until - entered).num_seconds() > MAX_WAIT_SECONDS {
        return Step::Error(Failure::runtime("Wait state delay is too long."));
    }
    let assigned = tryf!(assign(scope, state.assign.as_ref(), &effective));
    let output = tryf!(scope.io_path(&state.output_path, effective));
    Step::Sleep {
        until,
        output,
        assigned,
    }
}

/// When a Wait entered at `entered` ends, from whichever of its four fields it has.
fn wait_until(
    scope: &Scope,
    wait: &WaitFor,
    effective: &Value,
    entered: DateTime<Utc>,
) -> Result<DateTime<Utc>, Failure> {
    match wait {
        // A wait too long to hold saturates, and is refused as too long by the caller.
        WaitFor::Seconds(s) => Ok(seconds_after(entered, *s)),
        WaitFor::SecondsPath(p) => {
            let v = scope.path_value(p, effective)?;
            wait_seconds_path(&v, p).map(|s| seconds_after(entered, s as f64))
        }
        WaitFor::Timestamp(t) => parse_timestamp(t)
            .ok_or_else(|| Failure::runtime(format!("The Timestamp '{t}' is not valid"))),
        WaitFor::SecondsExpr(_) | WaitFor::TimestampExpr(_) => {
            Err(Failure::runtime("a JSONata Wait field in a JSONPath state"))
        }
        WaitFor::TimestampPath(p) => {
            let v = scope.path_value(p, effective)?;
            v.as_str().and_then(parse_timestamp).ok_or_else(|| {
                let shown = v.as_str().map(str::to_string).unwrap_or_else(|| compact(&v));
                Failure::runtime(format!(
                    "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                    p.text(),
                    shown
                ))
            })
        }
    }
}

/// The whole seconds a Wait's SecondsPath selected (`v`), from 0 to [`MAX_WAIT_SECONDS`].
fn wait_seconds_path(v: &Value, p: &JsonPath) -> Result<i64, Failure> {
    let secs = match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64(),
        _ => None,
    };
    match secs {
        Some(s) if s < 0 => Err(Failure::runtime(format!(
            "The SecondsPath parameter references a negative value: {} == {}",
            p.text(),
            compact(v)
        ))),
        Some(s) if s > MAX_WAIT_SECONDS => Err(Failure::runtime("Wait state delay is too long.")),
        Some(s) => Ok(s),
        None => Err(Failure::runtime(format!(
            "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
            p.text(),
            compact(v)
        ))),
    }
}

fn act_task(scope: &mut Scope, input: &Value, spec: &TaskSpec) -> Step {
    let state = scope.state;
    let effective = tryf!(scope.io_path(&state.input_path, input.clone()));
    let params = tryf!(arguments(scope, &effective));
    let timeout_seconds = match &spec.timeout {
        Some(a) => Some(tryf!(task_seconds(scope, a, &effective, "TimeoutSeconds"))),
        None => None,
    };
    let heartbeat_seconds = match &spec.heartbeat {
        Some(a) => Some(tryf!(task_seconds(
            scope,
            a,
            &effective,
            "HeartbeatSeconds"
        ))),
        None => None,
    };
    let call = TaskCall {
        state_name: state.name.clone(),
        resource: spec.resource.clone(),
        target: spec.target.clone(),
        function: None,
        payload: Value::Null,
        parameters: Value::Null,
        timeout_seconds,
        heartbeat_seconds,
        task_token: scope.task_token.map(str::to_string),
    };
    let call = match &spec.target {
        Target::LambdaFunction { arn } => TaskCall {
            function: Some(arn.clone()),
            parameters: params.clone(),
            payload: params,
            ..call
        },
        Target::LambdaInvoke { .. } => return lambda_invoke(call, params),
        _ => TaskCall {
            parameters: params.clone(),
            payload: params,
            ..call
        },
    };
    Step::Invoke(Box::new(call))
}

/// Invokes `lambda:invoke`: the function is Parameters' FunctionName and gets Payload,
/// while the history shows the whole Parameters.
fn lambda_invoke(call: TaskCall, params: Value) -> Step {
    let function = match params.get("FunctionName") {
        Some(Value::String(f)) => f.clone(),
        _ => {
            return Step::Error(Failure::runtime(
                "The field 'FunctionName' is required by lambda:invoke and must be a string",
            ))
        }
    };
    // Lambda receives Payload as bytes: a string is sent as it is, so it reaches the
    // function as the JSON it spells.
    let payload = match params.get("Payload") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(v) => v,
            Err(e) => {
                return Step::Failed(Failure::new(
                    "Lambda.InvalidRequestContentException",
                    format!("Could not parse request body into json: {e}"),
                ))
            }
        },
        Some(p) => p.clone(),
    };
    Step::Invoke(Box::new(TaskCall {
        function: Some(function),
        payload,
        parameters: params,
        ..call
    }))
}

/// Parameters (JSONPath) or Arguments (JSONata) rendered against the effective input;
/// without them, the effective input.
fn arguments(scope: &mut Scope, effective: &Value) -> Result<Value, Failure> {
    match (scope.state.query_language, &scope.state.parameters) {
        (QueryLanguage::Jsonata, _) => jsonata::arguments(scope, effective),
        (QueryLanguage::JsonPath, Some(p)) => scope.render(p, effective),
        (QueryLanguage::JsonPath, None) => Ok(effective.clone()),
    }
}

fn act_parallel(scope: &mut Scope, input: &Value, branches: &[usize]) -> Step {
    let state = scope.state;
    let effective = tryf!(scope.io_path(&state.input_path, input.clone()));
    let effective = tryf!(arguments(scope, &effective));
    let n = branches.len();
    let children = branches
        .iter()
        .map(|&list| Frame::child(list, scope.vars.clone(), None))
        .collect();
    Step::Fanout(Box::new(Fanout::new(
        vec![effective; n],
        children,
        n.max(1),
    )))
}

/// A Map state starts its iterations (or batches); one with an ItemReader has its
/// items read first.
fn act_map(scope: &mut Scope, input: &Value, spec: &MapSpec) -> Step {
    match &spec.item_reader {
        Some(reader) => read_items(scope, input, spec, reader),
        None => act_map_on(scope, input, spec, None),
    }
}

/// The ItemReader's request: its Parameters rendered, its MaxItems resolved.
fn read_items(scope: &mut Scope, input: &Value, spec: &MapSpec, reader: &Value) -> Step {
    let effective = tryf!(scope.io_path(&scope.state.input_path, input.clone()));
    let parameters = match &spec.item_reader_parameters {
        Some(p) => tryf!(scope.render(p, &effective)),
        None => Value::Object(Map::new()),
    };
    let format = tryf!(crate::item_reader::reader_format(reader).map_err(Failure::runtime));
    let max_items = match format.max_items {
        crate::item_reader::MaxItems::Unlimited => None,
        crate::item_reader::MaxItems::Count(n) => Some(n),
        crate::item_reader::MaxItems::Path(p) => {
            let path = tryf!(JsonPath::parse(&p).map_err(Failure::runtime));
            let v = tryf!(scope.path_value(&path, &effective));
            tryf!(crate::item_reader::max_items_from_path(&p, &v))
        }
    };
    Step::ReadItems(Box::new(ReadCall {
        state_name: scope.state.name.clone(),
        reader: reader.clone(),
        parameters,
        max_items,
    }))
}

/// A Map state starts its iterations over `read` (its ItemReader's items) or over
/// what ItemsPath selects.
fn act_map_on(scope: &mut Scope, input: &Value, spec: &MapSpec, read: Option<Vec<Value>>) -> Step {
    let state = scope.state;
    let effective = tryf!(scope.io_path(&state.input_path, input.clone()));
    let items = match (read, scope.state.query_language) {
        (Some(items), _) => items,
        (None, QueryLanguage::JsonPath) => tryf!(map_items(scope, spec, &effective)),
        (None, QueryLanguage::Jsonata) => tryf!(jsonata::map_items(scope, spec, &effective)),
    };
    // Unlike the tolerated-failure fields, MaxConcurrencyPath is read before the Map
    // starts.
    let max_concurrency = tryf!(map_max_concurrency(scope, spec, &effective));
    // AWS reads these after recording MapStateStarted, so a bad value fails the
    // state with that event already in the history.
    let n_items = items.len();
    let tolerated_failures =
        started_tryf!(n_items, tolerated_failure_count(scope, spec, &effective));
    let tolerated_percentage = started_tryf!(
        n_items,
        tolerated_failure_percentage(scope, spec, &effective)
    );
    let (inputs, children) = tryf!(map_children(scope, spec, items, &effective));
    let (inputs, children) = match &spec.batcher {
        None => (inputs, children),
        Some(b) => tryf!(map_batches(scope, spec, b, inputs, &effective)),
    };
    let n = inputs.len();
    let max_concurrency_given = usize::try_from(max_concurrency).unwrap_or(0);
    let max_concurrency = if max_concurrency_given == 0 {
        n.max(1)
    } else {
        max_concurrency_given
    };
    Step::Fanout(Box::new(Fanout {
        is_map: true,
        distributed: spec.distributed.is_some(),
        max_concurrency_given,
        batched_items: if spec.batcher.is_some() { n_items } else { 0 },
        tolerated_failures,
        tolerated_percentage,
        ..Fanout::new(inputs, children, max_concurrency)
    }))
}

/// The array ItemsPath selects from the Map's effective input.
fn map_items(scope: &Scope, spec: &MapSpec, effective: &Value) -> Result<Vec<Value>, Failure> {
    match scope.io_path(&spec.items_path, effective.clone())? {
        Value::Array(items) => Ok(items),
        other => {
            let p = match &spec.items_path {
                IoPath::At(p) => p.text().to_string(),
                _ => "$".into(),
            };
            Err(Failure::runtime(format!(
                "Invalid path '{p}' : The ItemsPath field must reference an array, but it references {}",
                compact(&other)
            )))
        }
    }
}

/// MaxConcurrency, or the integer MaxConcurrencyPath selects; 0 when unset.
fn map_max_concurrency(
    scope: &mut Scope,
    spec: &MapSpec,
    effective: &Value,
) -> Result<i64, Failure> {
    match &spec.max_concurrency {
        None => Ok(0),
        Some(Amount::Fixed(n)) => Ok(*n as i64),
        Some(Amount::Expr(e)) => {
            let n = scope.ata_number(e, effective, "MaxConcurrency")?;
            Ok(n as i64)
        }
        Some(Amount::Path(p)) => {
            let v = scope.path_value(p, effective)?;
            path_integer(&v, "MaxConcurrencyPath", p)
        }
    }
}

fn tolerated_failure_count(
    scope: &mut Scope,
    spec: &MapSpec,
    effective: &Value,
) -> Result<Option<f64>, Failure> {
    match &spec.tolerated_failure_count {
        None => Ok(None),
        Some(Amount::Fixed(n)) => Ok(Some(*n)),
        Some(Amount::Expr(e)) => {
            let n = scope.ata_number(e, effective, "ToleratedFailureCount")?;
            if n < 0.0 {
                return Err(Failure::runtime(
                    "ToleratedFailureCount cannot be negative.",
                ));
            }
            Ok(Some(n))
        }
        Some(Amount::Path(p)) => {
            let v = scope.path_value(p, effective)?;
            let n = path_integer(&v, "ToleratedFailureCountPath", p)?;
            if n < 0 {
                return Err(Failure::runtime(
                    "ToleratedFailureCount cannot be negative.",
                ));
            }
            Ok(Some(n as f64))
        }
    }
}

fn tolerated_failure_percentage(
    scope: &mut Scope,
    spec: &MapSpec,
    effective: &Value,
) -> Result<Option<f64>, Failure> {
    match &spec.tolerated_failure_percentage {
        None => Ok(None),
        Some(Amount::Fixed(n)) => Ok(Some(*n)),
        Some(Amount::Expr(e)) => {
            let n = scope.ata_number(e, effective, "ToleratedFailurePercentage")?;
            if !(0.0..=100.0).contains(&n) {
                return Err(Failure::runtime(
                    "ToleratedFailurePercentage must be between 0 and 100.",
                ));
            }
            Ok(Some(n))
        }
        Some(Amount::Path(p)) => {
            let v = scope.path_value(p, effective)?;
            let n = path_float(&v, "ToleratedFailurePercentagePath", p)?;
            if !(0.0..=100.0).contains(&n) {
                return Err(Failure::runtime(
                    "ToleratedFailurePercentage must be between 0 and 100.",
                ));
            }
            Ok(Some(n))
        }
    }
}

/// Each item's input (the item, or ItemSelector rendered with `$$.Map.Item`) and the
/// frame that runs it.
fn map_children(
    scope: &mut Scope,
    spec: &MapSpec,
    items: Vec<Value>,
    effective: &Value,
) -> Result<(Vec<Value>, Vec<Frame>), Failure> {
    let mut inputs = Vec::with_capacity(items.len());
    let mut children = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let entry = (i, item);
        let input = match &spec.item_selector {
            Some(sel) => {
                let mut item_scope = Scope {
                    ident: scope.ident,
                    vars: scope.vars,
                    map_item: Some(&entry),
                    state: scope.state,
                    entered_time: scope.entered_time,
                    retry_count: scope.retry_count,
                    task_token: None,
                    host: &mut *scope.host,
                };
                match item_scope.state.query_language {
                    QueryLanguage::JsonPath => item_scope.render(sel, effective)?,
                    QueryLanguage::Jsonata => item_scope.render_ata(
                        sel,
                        States::input(effective),
                        &FieldPath::root("ItemSelector"),
                    )?,
                }
            }
            None => entry.1.clone(),
        };
        children.push(Frame::child(
            spec.processor,
            scope.vars.clone(),
            Some(entry),
        ));
        inputs.push(input);
    }
    Ok((inputs, children))
}

/// ItemBatcher: the items grouped into batches, and a frame for each batch.
fn map_batches(
    scope: &mut Scope,
    spec: &MapSpec,
    b: &Batcher,
    inputs: Vec<Value>,
    effective: &Value,
) -> Result<(Vec<Value>, Vec<Frame>), Failure> {
    let max_items = match &b.max_items {
        Some(a) => scope.amount(a, effective, "MaxItemsPerBatchPath")?,
        None => f64::INFINITY,
    };
    let max_bytes = match &b.max_bytes {
        Some(a) => scope.amount(a, effective, "MaxInputBytesPerBatchPath")?,
        None => MAX_PAYLOAD_BYTES as f64,
    };
    let batch_input = match &b.batch_input {
        Some(t) => Some(scope.render(t, effective)?),
        None => None,
    };
    let batches = batch_items(inputs, max_items, max_bytes, batch_input);
    let frames = batches
        .iter()
        .map(|_| Frame::child(spec.processor, scope.vars.clone(), None))
        .collect();
    Ok((batches, frames))
}

/// ItemBatcher: consecutive items grouped up to a count and a size, each batch the
/// child's input as `{"BatchInput": ..., "Items": [...]}`.
fn batch_items(
    items: Vec<Value>,
    max_items: f64,
    max_bytes: f64,
    batch_input: Option<Value>,
) -> Vec<Value> {
    let max_items = if max_items >= 1.0 {
        max_items as usize
    } else {
        1
    };
    let mut batches = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    let flush = |current: &mut Vec<Value>, batches: &mut Vec<Value>| {
        if current.is_empty() {
            return;
        }
        let mut batch = Map::new();
        if let Some(b) = &batch_input {
            batch.insert("BatchInput".into(), b.clone());
        }
        batch.insert("Items".into(), Value::Array(std::mem::take(current)));
        batches.push(Value::Object(batch));
    };
    for item in items {
        let size = json_size(&item) + 1;
        if !current.is_empty() && (current.len() >= max_items || (bytes + size) as f64 > max_bytes)
        {
            flush(&mut current, &mut batches);
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    flush(&mut current, &mut batches);
    batches
}

/// The most seconds a Task's TimeoutSeconds or HeartbeatSeconds may be (the bound the
/// validator puts on the literal fields).
pub const MAX_TASK_SECONDS: i64 = 99_999_999;

/// A Task's TimeoutSeconds or HeartbeatSeconds (`lit` names the literal field). The
/// validator bounds the literal; a value read by the `*Path` field comes from the
/// input, and is held to the same bound here so that no deadline is built from it
/// that a clock cannot hold.
fn task_seconds(
    scope: &mut impl Resolve,
    a: &Amount,
    input: &Value,
    lit: &str,
) -> Result<f64, Failure> {
    match a {
        Amount::Expr(e) => {
            let n = scope.ata_number(e, input, lit)?;
            if (1.0..=MAX_TASK_SECONDS as f64).contains(&n) && n.fract() == 0.0 {
                Ok(n)
            } else {
                Err(query::query_error(format!(
                    "The JSONata expression '{}' specified for the field '{lit}' must give an integer between 1 and {MAX_TASK_SECONDS}, but gave {n}",
                    e.text()
                )))
            }
        }
        Amount::Fixed(n) if (1.0..=MAX_TASK_SECONDS as f64).contains(n) && n.fract() == 0.0 => {
            Ok(*n)
        }
        // Only a definition that skipped validation gets here.
        Amount::Fixed(_) => Err(Failure::runtime(format!(
            "The value for the field '{lit}' must be between 1 and {MAX_TASK_SECONDS}"
        ))),
        Amount::Path(p) => {
            let v = scope.path_value(p, input)?;
            task_seconds_value(&v, &format!("{lit}Path"), p.text())
        }
    }
}

/// Checks a TimeoutSecondsPath / HeartbeatSecondsPath value: a whole number of seconds
/// from 1 to [`MAX_TASK_SECONDS`], else States.Runtime naming the field and the value.
pub fn task_seconds_value(v: &Value, field: &str, path: &str) -> Result<f64, Failure> {
    let shown = match v {
        Value::String(s) => s.clone(),
        other => compact(other),
    };
    let Some(n) = v.as_f64().filter(|n| n.fract() == 0.0) else {
        return Err(Failure::runtime(format!(
            "The {field} field refers to value \"{shown}\" which is not a valid integer: {path}"
        )));
    };
    if !(1.0..=MAX_TASK_SECONDS as f64).contains(&n) {
        return Err(Failure::runtime(format!(
            "The {field} field refers to value \"{shown}\" which is not between 1 and {MAX_TASK_SECONDS}: {path}"
        )));
    }
    Ok(n)
}

fn too_deep() -> Failure {
    Failure::runtime(format!(
        "The state's result is nested more than {MAX_NESTING_DEPTH} levels deep, more than oms accepts."
    ))
}

/// What is wrong with a value that may not pass between states.
enum PayloadProblem {
    TooLarge,
    TooDeep,
}

/// Checks a value against the 256 KiB limit and the nesting limit.
fn payload_problem(v: &Value) -> Option<PayloadProblem> {
    // Serialising every state's output to measure it dominated the cost of a Pass
    // state. An upper bound computed by a walk decides almost every case; only values
    // whose bound crosses the limit are measured exactly.
    match json_size_bound(v, 1) {
        usize::MAX => Some(PayloadProblem::TooDeep),
        n if n > MAX_PAYLOAD_BYTES && json_size(v) > MAX_PAYLOAD_BYTES => {
            Some(PayloadProblem::TooLarge)
        }
        _ => None,
    }
}

/// The deepest nesting a value may have. Values are cloned and dropped recursively;
/// a machine that nests its output one level per loop would otherwise exhaust the
/// stack long before the history cap stops it. 256 is twice what serde_json accepts
/// when parsing, so no input can reach it, and shallow enough that a debug build on a
/// 2 MiB thread stack clones and drops such values safely.
pub const MAX_NESTING_DEPTH: usize = 256;

/// An upper bound on a value's compact JSON size, or usize::MAX if it is nested
/// deeper than [`MAX_NESTING_DEPTH`].
fn json_size_bound(v: &Value, depth: usize) -> usize {
    if depth > MAX_NESTING_DEPTH {
        return usize::MAX;
    }
    match v {
        Value::Null | Value::Bool(_) => 5,
        // Finite f64s and 64-bit integers print in at most 24 bytes.
        Value::Number(_) => 24,
        Value::String(s) => string_bound(s),
        Value::Array(items) => {
            let mut n: usize = 2;
            for i in items {
                match json_size_bound(i, depth + 1) {
                    usize::MAX => return usize::MAX,
                    m => n = n.saturating_add(1 + m),
                }
            }
            n
        }
        Value::Object(map) => {
            let mut n: usize = 2;
            for (k, i) in map {
                match json_size_bound(i, depth + 1) {
                    usize::MAX => return usize::MAX,
                    m => n = n.saturating_add(2 + string_bound(k) + m),
                }
            }
            n
        }
    }
}

fn string_bound(s: &str) -> usize {
    // A control character becomes at most six bytes (\u00XX); quotes and backslashes two.
    2 + s.len()
        + s.bytes()
            .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
            .count()
            * 5
}

impl Core {
    /// Delivers an effect's outcome to the frame at `path` below `frame`, then lets
    /// every frame on the way back up react (a finished child may finish its parent).
    fn deliver(
        &mut self,
        frame: &mut Frame,
        path: &[u32],
        id: EffectId,
        delivery: Delivery,
        host: &mut dyn Host,
    ) {
        if frame.result.is_some() || frame.cursor.is_none() {
            return;
        }
        if let Some((&i, rest)) = path.split_first() {
            return self.deliver_to_child(frame, i, rest, id, delivery, host);
        }
        let machine = self.machine.clone();
        let Some(cursor) = frame.cursor.as_mut() else {
            return;
        };
        let state = &machine.lists[frame.list].states[cursor.state];
        let phase = std::mem::replace(&mut cursor.phase, Phase::Enter);
        match (phase, delivery) {
            (Phase::Task { effect, call }, Delivery::TaskSucceeded(v)) if effect == id => {
                let step = self.task_succeeded(frame, state, &call, v, host);
                self.conclude(frame, state, step, host);
            }
            (Phase::Task { effect, call }, Delivery::TaskFailed(f)) if effect == id => {
                let f = shape_task_failure(&call, f);
                self.log_task_end(&call, Err(&f), host);
                self.conclude(frame, state, Step::Failed(f), host);
            }
            (
                Phase::Wait {
                    effect,
                    output,
                    assigned,
                },
                Delivery::TimerFired,
            ) if effect == id => {
                self.conclude(
                    frame,
                    state,
                    Step::Done(output, assigned, state.transition),
                    host,
                );
            }
            (Phase::Backoff { effect }, Delivery::TimerFired) if effect == id => {}
            (phase, delivery) if phase.map_effect() == Some(id) => {
                return self.deliver_to_map(frame, state, phase, delivery, host);
            }
            (phase, _) => return keep_waiting(frame, phase),
        }
        self.run(frame, host);
    }

    /// A distributed Map's own phases: its items read, its results written, or (on a
    /// child frame) its iteration's child execution ended.
    fn deliver_to_map(
        &mut self,
        frame: &mut Frame,
        state: &State,
        phase: Phase,
        delivery: Delivery,
        host: &mut dyn Host,
    ) {
        match (phase, delivery) {
            (Phase::Iteration { .. }, delivery) => {
                // The child execution's outcome is the iteration's; the cursor stays
                // (back at Enter) so that a redrive can run a failed one again.
                frame.result = Some(match delivery {
                    Delivery::TaskSucceeded(v) => Ok(v),
                    Delivery::TaskFailed(f) => Err(f),
                    Delivery::TimerFired => {
                        Err(Failure::runtime("a timer answered a Map iteration"))
                    }
                });
                return;
            }
            (Phase::Reading { .. }, Delivery::TaskSucceeded(Value::Array(items))) => {
                let step = Self::map_with_items(&self.ident, frame, state, items, host);
                self.conclude(frame, state, step, host);
            }
            (Phase::Reading { .. }, Delivery::TaskSucceeded(other)) => {
                let f = Failure::runtime(format!(
                    "the ItemReader's items are not an array: {}",
                    compact(&other)
                ));
                self.conclude(frame, state, Step::Failed(f), host);
            }
            (Phase::Writing { .. }, Delivery::TaskSucceeded(result)) => {
                self.fanout_succeeded(frame, state, result, host);
            }
            (_, Delivery::TaskFailed(f)) => self.conclude(frame, state, Step::Failed(f), host),
            (phase, _) => return keep_waiting(frame, phase),
        }
        self.run(frame, host);
    }

    /// Delivers an effect's outcome below child `i` of the fanout `frame` is in, then
    /// lets the fanout react if the child finished.
    fn deliver_to_child(
        &mut self,
        frame: &mut Frame,
        i: u32,
        rest: &[u32],
        id: EffectId,
        delivery: Delivery,
        host: &mut dyn Host,
    ) {
        let machine = self.machine.clone();
        let Some(cursor) = frame.cursor.as_mut() else {
            return;
        };
        let state = &machine.lists[frame.list].states[cursor.state];
        let Phase::Fanout(fan) = &mut cursor.phase else {
            return;
        };
        let Some(child) = fan.children.get_mut(i as usize) else {
            return;
        };
        self.path.push(i);
        self.log.mute(fan.distributed);
        self.deliver(child, rest, id, delivery, host);
        self.log.unmute(fan.distributed);
        self.path.pop();
        if child.result.is_some() {
            fan.running -= 1;
            if let Some(step) = self.child_finished(fan, i as usize, state, host) {
                self.conclude_fanout(frame, state, step, host);
            } else {
                self.pump(frame, state, host);
            }
        }
        self.run(frame, host);
    }

    fn task_succeeded(
        &mut self,
        frame: &mut Frame,
        state: &State,
        call: &TaskCall,
        raw: Value,
        host: &mut dyn Host,
    ) -> Step {
        let result = match call.target {
            Target::LambdaInvoke {
                pattern: Pattern::RequestResponse,
            } => lambda_invoke_response(raw, host),
            _ => raw,
        };
        // One walk of the result for both limits (the walks were about 1% of a loaded
        // order's CPU profile: one for every task's result and state's output).
        let problem = payload_problem(&result);
        if let Some(PayloadProblem::TooDeep) = problem {
            let f = too_deep();
            self.log_task_end(call, Err(&f), host);
            return Step::Error(f);
        }
        if let Some(PayloadProblem::TooLarge) = problem {
            let who = match &call.target {
                Target::LambdaInvoke { .. } => "lambda".to_string(),
                _ => call.resource.clone(),
            };
            let f = Failure::new(
                names::DATA_LIMIT_EXCEEDED,
                format!("The state/task '{who}' returned a result with a size exceeding the maximum number of bytes service limit."),
            );
            self.log_task_end(call, Err(&f), host);
            return Step::Failed(f);
        }
        self.log_task_end(call, Ok(&result), host);
        let Frame {
            vars,
            map_item,
            cursor,
            ..
        } = frame;
        let Some(cursor) = cursor.as_mut() else {
            return Step::Blocked;
        };
        let mut scope = Scope {
            ident: &self.ident,
            vars,
            map_item: map_item.as_ref(),
            state,
            entered_time: cursor.entered_time,
            retry_count: cursor.retry_count,
            task_token: call.task_token.as_deref(),
            host,
        };
        let raw_input = std::mem::take(&mut cursor.input);
        shape_result(&mut scope, raw_input, result)
    }

    /// Clears a frame's failure so that it runs again from where it stopped: the state
    /// it was in starts over (its retries counted afresh), and inside a Map or Parallel
    /// only the children that had not succeeded run again.
    fn reset_for_redrive(frame: &mut Frame) {
        if matches!(frame.result, Some(Ok(_))) {
            return;
        }
        frame.result = None;
        let Some(cursor) = frame.cursor.as_mut() else {
            return;
        };
        cursor.attempts.iter_mut().for_each(|a| *a = 0);
        cursor.retry_count = 0;
        match &mut cursor.phase {
            Phase::Fanout(fan) => {
                for (child, status) in fan.children.iter_mut().zip(fan.status.iter_mut()) {
                    if matches!(status, ChildStatus::Running | ChildStatus::Failed) {
                        Self::reset_for_redrive(child);
                        *status = ChildStatus::Running;
                    }
                }
                fan.finished = fan
                    .status
                    .iter()
                    .filter(|s| **s == ChildStatus::Succeeded)
                    .count();
                fan.running = fan
                    .status
                    .iter()
                    .filter(|s| **s == ChildStatus::Running)
                    .count();
                fan.failures = 0;
            }
            phase => *phase = Phase::Enter,
        }
    }

    /// Records the states a redrive runs again as entered anew, outermost first (and a
    /// Map's redriven iterations as started again): AWS redrives the states that have
    /// no Exited event, and its history shows each of them entered again, so a reader
    /// of the history finds the states that are open. The new entered event and time
    /// are the ones a later runtime error and `$$.State.EnteredTime` report.
    fn reenter(&mut self, frame: &mut Frame, host: &mut dyn Host) {
        let machine = self.machine.clone();
        if frame.result.is_some() {
            return;
        }
        let Some(cursor) = frame.cursor.as_mut() else {
            return;
        };
        let state = &machine.lists[frame.list].states[cursor.state];
        cursor.entered_time = host.now();
        cursor.entered_event =
            self.log
                .record_details(host, HistoryEventKind::state_entered(&state.kind), || {
                    history::details_text(&[
                        ("input", &cursor.input),
                        ("inputDetails", history::whole()),
                        ("name", &Value::String(state.name.clone())),
                    ])
                });
        let Phase::Fanout(fan) = &mut cursor.phase else {
            return;
        };
        let again: Vec<usize> = (0..fan.children.len())
            .filter(|&i| fan.status[i] == ChildStatus::Running && fan.children[i].result.is_none())
            .collect();
        if fan.is_map && !fan.distributed {
            for &i in &again {
                self.log.record(
                    host,
                    HistoryEventKind::MapIterationStarted,
                    || json!({"index": i, "name": state.name}),
                );
            }
        }
        for &i in &again {
            self.log.mute(fan.distributed);
            self.reenter(&mut fan.children[i], host);
            self.log.unmute(fan.distributed);
        }
    }

    /// Runs a frame reset by [`Core::reset_for_redrive`]: its redriven children first,
    /// then whatever they unblock.
    fn resume(&mut self, frame: &mut Frame, host: &mut dyn Host) {
        let machine = self.machine.clone();
        let Some(cursor) = frame.cursor.as_mut() else {
            return;
        };
        let state = &machine.lists[frame.list].states[cursor.state];
        if let Phase::Fanout(fan) = &mut cursor.phase {
            let n = fan.children.len();
            for i in 0..n {
                let Some(cursor) = frame.cursor.as_mut() else {
                    return;
                };
                let Phase::Fanout(fan) = &mut cursor.phase else {
                    return;
                };
                if fan.status[i] != ChildStatus::Running || fan.children[i].result.is_some() {
                    continue;
                }
                if fan.distributed {
                    // A redriven iteration is a new child execution.
                    let input = fan.children[i].cursor.as_ref().map(|c| c.input.clone());
                    self.start_iteration(fan, i, input.unwrap_or_default(), state, host);
                    continue;
                }
                if let Some(step) = self.advance_child(fan, i, state, true, host) {
                    self.conclude_fanout(frame, state, step, host);
                    return self.run(frame, host);
                }
            }
            self.pump(frame, state, host);
        }
        self.run(frame, host);
    }

    /// Starts children while the concurrency limit allows; finishes the state when all
    /// are done or one failure too many has happened.
    fn pump(&mut self, frame: &mut Frame, state: &State, host: &mut dyn Host) {
        let machine = self.machine.clone();
        loop {
            let Some(cursor) = frame.cursor.as_mut() else {
                return;
            };
            let Phase::Fanout(fan) = &mut cursor.phase else {
                return;
            };
            let n = fan.children.len();
            if fan.finished == n {
                let step = self.fanout_complete(fan, state, host);
                return self.conclude_fanout(frame, state, step, host);
            }
            let room = fan.max_concurrency.saturating_sub(fan.running);
            let batch: Vec<usize> = (0..n)
                .filter(|i| fan.status[*i] == ChildStatus::NotStarted)
                .take(room)
                .collect();
            if batch.is_empty() {
                return;
            }
            // Children start together, as AWS runs them concurrently: every iteration
            // is started, then every first state entered, then each runs. The history
            // then reads as AWS's does (all branches entered before any exits).
            for &i in &batch {
                fan.status[i] = ChildStatus::Running;
                fan.running += 1;
                if fan.is_map && !fan.distributed {
                    self.log.record(
                        host,
                        HistoryEventKind::MapIterationStarted,
                        || json!({"index": i, "name": state.name}),
                    );
                }
            }
            if fan.distributed {
                for &i in &batch {
                    let input = std::mem::take(&mut fan.inputs[i]);
                    self.start_iteration(fan, i, input, state, host);
                }
                continue;
            }
            for &i in &batch {
                let input = std::mem::take(&mut fan.inputs[i]);
                let child = &mut fan.children[i];
                let start = machine.lists[child.list].start_at;
                self.path.push(i as u32);
                self.log.mute(fan.distributed);
                self.enter(child, start, input, host);
                self.log.unmute(fan.distributed);
                self.path.pop();
            }
            for &i in &batch {
                if let Some(step) = self.advance_child(fan, i, state, false, host) {
                    return self.conclude_fanout(frame, state, step, host);
                }
            }
        }
    }

    /// Finds the running Map Run `arn` at or below `frame`, applies `update` to it and
    /// starts the iterations a higher MaxConcurrency allows.
    fn update_map_run(
        &mut self,
        frame: &mut Frame,
        arn: &str,
        update: &MapRunUpdate,
        host: &mut dyn Host,
    ) -> bool {
        let machine = self.machine.clone();
        let Some(cursor) = frame.cursor.as_mut() else {
            return false;
        };
        let state = &machine.lists[frame.list].states[cursor.state];
        let Phase::Fanout(fan) = &mut cursor.phase else {
            return false;
        };
        if fan.map_run_arn.as_deref() != Some(arn) {
            for i in 0..fan.children.len() {
                self.path.push(i as u32);
                let found = self.update_map_run(&mut fan.children[i], arn, update, host);
                self.path.pop();
                if found {
                    return true;
                }
            }
            return false;
        }
        if let Some(m) = update.max_concurrency {
            fan.max_concurrency_given = m;
            fan.max_concurrency = if m == 0 { fan.children.len().max(1) } else { m };
        }
        if let Some(c) = update.tolerated_failure_count {
            fan.tolerated_failures = Some(c);
        }
        if let Some(p) = update.tolerated_failure_percentage {
            fan.tolerated_percentage = Some(p);
        }
        self.pump(frame, state, host);
        self.run(frame, host);
        true
    }

    /// Asks the driver to run a distributed Map's iteration `i` as a child execution.
    /// The child frame keeps the input, so that a redrive can ask again.
    fn start_iteration(
        &mut self,
        fan: &mut Fanout,
        i: usize,
        input: Value,
        state: &State,
        host: &mut dyn Host,
    ) {
        let child_count = fan.children.len();
        let (total_items, items) = match fan.batched_items {
            0 => (child_count, 1),
            n => (n, input["Items"].as_array().map_or(0, Vec::len)),
        };
        let child = &mut fan.children[i];
        let call = IterationCall {
            map_run_arn: fan.map_run_arn.clone().unwrap_or_default(),
            state_name: state.name.clone(),
            processor: child.list,
            index: i,
            input: input.clone(),
            max_concurrency: fan.max_concurrency_given,
            tolerated_failure_count: fan.tolerated_failures,
            tolerated_failure_percentage: fan.tolerated_percentage,
            child_count,
            total_items,
            items,
        };
        self.path.push(i as u32);
        let effect = self.effect(Effect::Iteration(Box::new(call)));
        self.path.pop();
        let start = self.machine.lists[child.list].start_at;
        child.cursor = Some(Cursor {
            state: start,
            input,
            entered_event: 0,
            entered_time: host.now(),
            attempts: Vec::new(),
            retry_count: 0,
            phase: Phase::Iteration { effect },
        });
    }

    /// Runs child `i` (resuming it after a redrive when `resumed`) as far as it goes;
    /// if it finishes, records it and returns the state's outcome when that is decided.
    fn advance_child(
        &mut self,
        fan: &mut Fanout,
        i: usize,
        state: &State,
        resumed: bool,
        host: &mut dyn Host,
    ) -> Option<Step> {
        let child = &mut fan.children[i];
        self.path.push(i as u32);
        self.log.mute(fan.distributed);
        if resumed {
            self.resume(child, host);
        } else {
            self.run(child, host);
        }
        self.log.unmute(fan.distributed);
        self.path.pop();
        child.result.as_ref()?;
        fan.running -= 1;
        self.child_finished(fan, i, state, host)
    }

    /// Records a finished child; returns the state's outcome if it is now decided by a
    /// failure.
    fn child_finished(
        &mut self,
        fan: &mut Fanout,
        i: usize,
        state: &State,
        host: &mut dyn Host,
    ) -> Option<Step> {
        fan.finished += 1;
        let result = fan.children[i].result.take().unwrap_or(Ok(Value::Null));
        match result {
            Ok(v) => {
                fan.status[i] = ChildStatus::Succeeded;
                // The child is done for good; free its variables now.
                fan.children[i].vars = Map::new();
                if fan.is_map && !fan.distributed {
                    self.log.record(
                        host,
                        HistoryEventKind::MapIterationSucceeded,
                        || json!({"index": i, "name": state.name}),
                    );
                }
                fan.results[i] = v;
                None
            }
            Err(f) => {
                fan.status[i] = ChildStatus::Failed;
                // Keep the failure on the child so a redrive knows to run it again.
                fan.children[i].result = Some(Err(f.clone()));
                if fan.is_map && !fan.distributed {
                    self.log.record(
                        host,
                        HistoryEventKind::MapIterationFailed,
                        || json!({"index": i, "name": state.name}),
                    );
                }
                fan.failures += 1;
                let tolerated = fan.is_map
                    && (fan.tolerated_failures.is_some() || fan.tolerated_percentage.is_some());
                if !tolerated || f.error == names::RUNTIME {
                    return Some(Step::Failed(f));
                }
                let n = fan.children.len().max(1) as f64;
                let over_count = fan
                    .tolerated_failures
                    .is_some_and(|c| fan.failures as f64 > c);
                let over_pct = fan
                    .tolerated_percentage
                    .is_some_and(|p| fan.failures as f64 * 100.0 / n > p);
                let over = match (fan.tolerated_failures, fan.tolerated_percentage) {
                    (Some(_), Some(_)) => over_count && over_pct,
                    _ => over_count || over_pct,
                };
                if over {
                    return Some(Step::Failed(Failure::new(
                        names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                        "The specified tolerated failure threshold was exceeded",
                    )));
                }
                let mut err = Map::new();
                err.insert("Error".into(), json!(f.error));
                err.insert("Cause".into(), json!(f.cause.unwrap_or_default()));
                fan.results[i] = Value::Object(err);
                None
            }
        }
    }

    fn fanout_complete(&mut self, fan: &mut Fanout, state: &State, host: &mut dyn Host) -> Step {
        let _ = (state, host);
        Step::Done(
            Value::Array(std::mem::take(&mut fan.results)),
            None,
            Transition::End,
        )
    }

    fn writes_results(state: &State) -> bool {
        matches!(&state.kind, Kind::Map(spec) if spec.result_writer.is_some())
    }

    /// A Map Run with a ResultWriter has succeeded: the driver formats or exports its
    /// results, and its answer is the state's result.
    fn start_writing(
        &mut self,
        frame: &mut Frame,
        state: &State,
        results: Vec<Value>,
        host: &mut dyn Host,
    ) {
        let step = Self::write_call(&self.ident, frame, state, results, host);
        match step {
            Ok(call) => {
                let id = self.effect(Effect::WriteResults(Box::new(call)));
                if let Some(c) = frame.cursor.as_mut() {
                    c.phase = Phase::Writing { effect: id };
                }
            }
            Err(f) => self.conclude(frame, state, Step::Failed(f), host),
        }
    }

    /// The ResultWriter's request: its Parameters rendered against the state's input.
    fn write_call(
        ident: &Ident,
        frame: &mut Frame,
        state: &State,
        results: Vec<Value>,
        host: &mut dyn Host,
    ) -> Result<WriteCall, Failure> {
        let (Kind::Map(spec), Some(cursor)) = (&state.kind, frame.cursor.as_ref()) else {
            return Err(Failure::runtime(
                "results were written for a state that is no Map",
            ));
        };
        let map_run_arn = match &cursor.phase {
            Phase::Fanout(fan) => fan.map_run_arn.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let input = cursor.input.clone();
        let (entered_time, retry_count) = (cursor.entered_time, cursor.retry_count);
        let mut scope = Scope {
            ident,
            vars: &frame.vars,
            map_item: frame.map_item.as_ref(),
            state,
            entered_time,
            retry_count,
            task_token: None,
            host,
        };
        let effective = scope.io_path(&state.input_path, input)?;
        let parameters = match &spec.result_writer_parameters {
            Some(p) => scope.render(p, &effective)?,
            None => Value::Object(Map::new()),
        };
        Ok(WriteCall {
            state_name: state.name.clone(),
            map_run_arn,
            writer: spec.result_writer.clone().unwrap_or_default(),
            parameters,
            results,
        })
    }

    /// Every child succeeded: the results, in child order, become the state's result.
    fn fanout_succeeded(
        &mut self,
        frame: &mut Frame,
        state: &State,
        results: Value,
        host: &mut dyn Host,
    ) {
        if let Some(c) = frame.cursor.as_mut() {
            c.phase = Phase::Enter;
        }
        if let Kind::Map(spec) = &state.kind {
            if spec.distributed.is_some() {
                self.log
                    .record(host, HistoryEventKind::MapRunSucceeded, || Value::Null);
            }
            self.log
                .record(host, HistoryEventKind::MapStateSucceeded, || Value::Null);
        }
        let Frame {
            vars,
            map_item,
            cursor,
            ..
        } = frame;
        let Some(cursor) = cursor.as_mut() else {
            return;
        };
        let mut scope = Scope {
            ident: &self.ident,
            vars,
            map_item: map_item.as_ref(),
            state,
            entered_time: cursor.entered_time,
            retry_count: cursor.retry_count,
            task_token: None,
            host,
        };
        let raw_input = std::mem::take(&mut cursor.input);
        let step = shape_result(&mut scope, raw_input, results);
        self.conclude(frame, state, step, host);
    }

    /// Turns a decided fanout into the state's outcome: on success the results go
    /// through ResultSelector, ResultPath and OutputPath; on failure the children's
    /// outstanding effects are abandoned.
    fn conclude_fanout(
        &mut self,
        frame: &mut Frame,
        state: &State,
        step: Step,
        host: &mut dyn Host,
    ) {
        let is_map = matches!(state.kind, Kind::Map(_));
        let distributed = matches!(&state.kind, Kind::Map(spec) if spec.distributed.is_some());
        if let Some(map_run_arn) = frame.cursor.as_ref().and_then(|c| match &c.phase {
            Phase::Fanout(fan) => fan.map_run_arn.clone(),
            _ => None,
        }) {
            let failure = match &step {
                Step::Failed(f) => Some(f.clone()),
                _ => None,
            };
            self.map_run_ends.push(MapRunEnd {
                map_run_arn,
                failure,
            });
        }
        let depth = self.path.len();
        let here = self.path.clone();
        self.pending
            .retain(|_, (p, _)| !(p.len() > depth && p.starts_with(&here)));
        match step {
            Step::Done(Value::Array(results), _, _) if Self::writes_results(state) => {
                self.start_writing(frame, state, results, host)
            }
            Step::Done(results, _, _) => self.fanout_succeeded(frame, state, results, host),
            Step::Failed(f) => {
                // AWS records the state as failed only when no retrier takes it again.
                let retried = frame
                    .cursor
                    .as_ref()
                    .is_some_and(|c| will_retry(state, c, &f));
                if distributed {
                    self.log
                        .record(host, HistoryEventKind::MapRunFailed, || Value::Null);
                }
                if !retried {
                    let kind = if is_map {
                        HistoryEventKind::MapStateFailed
                    } else {
                        HistoryEventKind::ParallelStateFailed
                    };
                    self.log.record(host, kind, || Value::Null);
                }
                self.conclude(frame, state, Step::Failed(f), host);
            }
            other => self.conclude(frame, state, other, host),
        }
    }
}

/// ResultSelector, Assign, ResultPath and OutputPath: the way from a Task's, Parallel's
/// or Map's result (and the input the state entered with) to the state's output.
fn shape_result(scope: &mut Scope, raw_input: Value, result: Value) -> Step {
    let state = scope.state;
    if state.query_language == QueryLanguage::Jsonata {
        return jsonata::shape_result(scope, raw_input, result);
    }
    let selected = match &state.result_selector {
        Some(sel) => tryf!(scope.render(sel, &result)),
        None => result,
    };
    let assigned = tryf!(assign(scope, state.assign.as_ref(), &selected));
    let output = tryf!(apply_result_path(&state.result_path, raw_input, selected));
    let output = tryf!(scope.io_path(&state.output_path, output));
    Step::Done(output, assigned, state.transition)
}

/// The ARN of a distributed Map's run: `...:mapRun:MACHINE/STATE:ID`.
fn map_run_arn(info: &ExecutionInfo, state: &str, host: &mut dyn Host) -> String {
    let prefix = info
        .state_machine_arn
        .replacen(":stateMachine:", ":mapRun:", 1);
    format!("{prefix}/{state}:{}", host.uuid_v4())
}

/// Lambda's Invoke response, as `arn:aws:states:::lambda:invoke` returns it.
fn lambda_invoke_response(payload: Value, host: &mut dyn Host) -> Value {
    let len = json_size(&payload).to_string();
    let request_id = host.uuid_v4();
    let date = host.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let trace = format!("Root=1-{}", &host.uuid_v4().replace('-', "")[..24]);
    let metadata = json!({
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "X-Amz-Executed-Version": ["$LATEST"],
                "x-amzn-Remapped-Content-Length": ["0"],
                "Connection": ["keep-alive"],
                "x-amzn-RequestId": [request_id],
                "Content-Length": [len],
                "Date": [date],
                "X-Amzn-Trace-Id": [trace],
                "Content-Type": ["application/json"]
            },
            "HttpHeaders": {
                "Connection": "keep-alive",
                "Content-Length": len,
                "Content-Type": "application/json",
                "Date": date,
                "X-Amz-Executed-Version": "$LATEST",
                "x-amzn-Remapped-Content-Length": "0",
                "x-amzn-RequestId": request_id,
                "X-Amzn-Trace-Id": trace
            },
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200
    });
    // The payload is moved in: json! would serialise a copy of it (to_value).
    let mut response = Map::new();
    response.insert("ExecutedVersion".into(), "$LATEST".into());
    response.insert("Payload".into(), payload);
    if let Value::Object(metadata) = metadata {
        response.extend(metadata);
    }
    Value::Object(response)
}

/// A Lambda function error's Cause is its error payload as a JSON string. Step
/// Functions re-serialises it: compactly for `lambda:invoke`, and with Python's
/// `json.dumps` spacing for a function ARN used directly as the Resource.
fn shape_task_failure(call: &TaskCall, f: Failure) -> Failure {
    let Some(cause) = &f.cause else { return f };
    let Ok(Value::Object(payload)) = serde_json::from_str::<Value>(cause) else {
        return f;
    };
    let cause = match call.target {
        Target::LambdaFunction { .. } => spaced_json(&Value::Object(payload)),
        Target::LambdaInvoke { .. } => compact(&Value::Object(payload)),
        _ => return f,
    };
    Failure {
        error: f.error,
        cause: Some(cause),
    }
}

/// JSON with `", "` and `": "` separators (Python's `json.dumps` default).
pub fn spaced_json(v: &Value) -> String {
    let mut out = String::new();
    write_spaced(v, &mut out);
    out
}

fn write_spaced(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_spaced(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&compact(&Value::String(k.clone())));
                out.push_str(": ");
                write_spaced(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&compact(other)),
    }
}

// After the macros above, which it uses.
pub(crate) mod jsonata;
