//! The in-memory runner: drives an [`Execution`] to its end by performing its effects
//! at once, calling task handlers in-process and letting time pass on a [`Clock`].

use crate::error::{names, Failure};
use crate::eval::{Delivery, Effect, Execution, ExecutionInfo, IterationCall, Status, TaskCall};
use crate::history::HistoryEvent;
use crate::host::Host;
use crate::map_writer::ChildRecord;
use crate::model::Machine;
use crate::time::seconds_after;
use crate::time::timestamp;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Runs a task for the in-memory runner.
pub trait TaskHandler {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome;
}

/// What a task did, and how long it took if it is to be judged against its
/// TimeoutSeconds (a handler that simulates a slow function says so here).
pub struct TaskOutcome {
    pub result: Result<Value, Failure>,
    pub took: Option<std::time::Duration>,
}

impl TaskOutcome {
    pub fn ok(v: Value) -> Self {
        TaskOutcome {
            result: Ok(v),
            took: None,
        }
    }
    pub fn err(f: Failure) -> Self {
        TaskOutcome {
            result: Err(f),
            took: None,
        }
    }
}

/// Handlers by closure, for tests and simple drivers.
impl<F: FnMut(&TaskCall) -> TaskOutcome> TaskHandler for F {
    fn call(&mut self, call: &TaskCall) -> TaskOutcome {
        self(call)
    }
}

/// Where time comes from. The virtual clock makes Waits and backoffs pass at once.
pub trait Clock {
    fn now(&mut self) -> DateTime<Utc>;
    /// Returns once `t` has come.
    fn sleep_until(&mut self, t: DateTime<Utc>);
}

pub struct VirtualClock(pub DateTime<Utc>);

impl Clock for VirtualClock {
    fn now(&mut self) -> DateTime<Utc> {
        self.0
    }
    fn sleep_until(&mut self, t: DateTime<Utc>) {
        if t > self.0 {
            self.0 = t;
        }
    }
}

/// SplitMix64: a small, fast, seedable generator; runs are reproducible by seed.
pub struct SeededRandom(u64);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A version-4 UUID from two draws.
    pub fn uuid_v4(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

/// A [`Host`] made of a clock and a seeded generator.
pub struct RunHost<C: Clock> {
    pub clock: C,
    pub random: SeededRandom,
}

impl<C: Clock> Host for RunHost<C> {
    fn now(&mut self) -> DateTime<Utc> {
        self.clock.now()
    }
    fn random_u64(&mut self) -> u64 {
        self.random.next_u64()
    }
    fn uuid_v4(&mut self) -> String {
        self.random.uuid_v4()
    }
}

pub struct RunOptions {
    pub info: Option<ExecutionInfo>,
    pub record_history: bool,
}

/// `t` plus a duration a handler reported, saturating rather than panicking when the
/// sum is past the last instant a timestamp can hold.
fn later(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Only timers are left: lets time pass to the earliest, or ends the execution at its
/// deadline if that comes first.
fn fire_next_timer<C: Clock>(
    exec: &mut Execution,
    pending: &[(u64, Effect)],
    host: &mut RunHost<C>,
    deadline: Option<DateTime<Utc>>,
) {
    let next = pending.iter().filter_map(|(id, e)| match e {
        Effect::Timer { until } => Some((*until, *id)),
        _ => None,
    });
    let Some((until, id)) = next.min() else {
        // Nothing to wait for and not finished: an evaluator bug, reported as such.
        let f = Failure::runtime("the execution stalled with no pending work");
        exec.stop(Some(f.error), f.cause, host);
        return;
    };
    if let Some(d) = deadline.filter(|d| until > *d) {
        host.clock.sleep_until(d);
        exec.time_out(host);
        return;
    }
    host.clock.sleep_until(until);
    exec.deliver(id, Delivery::TimerFired, host);
}

/// Calls the handler for effect `id`'s task and delivers its outcome, judged against
/// the task's TimeoutSeconds and the execution's deadline.
fn invoke<C: Clock>(
    exec: &mut Execution,
    id: u64,
    call: &TaskCall,
    handler: &mut dyn TaskHandler,
    host: &mut RunHost<C>,
    deadline: Option<DateTime<Utc>>,
) {
    let outcome = handler.call(call);
    // A limit too large for a Duration is no limit: no task runs that long.
    let timeout = call
        .timeout_seconds
        .and_then(|s| std::time::Duration::try_from_secs_f64(s.max(0.0)).ok());
    let delivery = match (outcome.took, timeout) {
        (Some(took), Some(limit)) if took > limit => {
            let t = later(host.clock.now(), limit);
            host.clock.sleep_until(t);
            Delivery::TaskFailed(Failure {
                error: names::TIMEOUT.into(),
                cause: None,
            })
        }
        (took, _) => {
            if let Some(t) = took {
                let t = later(host.clock.now(), t);
                host.clock.sleep_until(t);
            }
            match outcome.result {
                Ok(v) => Delivery::TaskSucceeded(v),
                Err(f) => Delivery::TaskFailed(f),
            }
        }
    };
    if deadline.is_some_and(|d| host.clock.now() > d) {
        exec.time_out(host);
        return;
    }
    exec.deliver(id, delivery, host);
}

/// Performs a distributed Map's effect: an iteration (its child's record kept in
/// `children` by Map Run), its ItemReader or its ResultWriter, whose S3 requests go to
/// the handler as any task's would.
fn distributed_map<C: Clock>(
    exec: &Execution,
    effect: &Effect,
    children: &mut HashMap<String, Vec<ChildRecord>>,
    handler: &mut dyn TaskHandler,
    host: &mut RunHost<C>,
) -> Delivery {
    let outcome = match effect {
        Effect::Iteration(call) => {
            let (delivery, record) = iterate(exec, call, handler, host);
            let run = children.entry(call.map_run_arn.clone()).or_default();
            run.push(record);
            return delivery;
        }
        Effect::ReadItems(call) => {
            crate::map_reader::read(call, &mut |c| handler.call(&c).result).map(Value::Array)
        }
        Effect::WriteResults(call) => {
            let mut records = children.remove(&call.map_run_arn).unwrap_or_default();
            records.sort_by_key(|r| r.index);
            crate::map_writer::write(call, &records, &mut |c| handler.call(&c).result)
        }
        Effect::Invoke(_) | Effect::Timer { .. } => Err(Failure::runtime(
            "the runner asked the distributed Map to perform a task or a timer",
        )),
    };
    match outcome {
        Ok(v) => Delivery::TaskSucceeded(v),
        Err(f) => Delivery::TaskFailed(f),
    }
}

/// Runs a distributed Map's iteration to its end as a child execution of its own, as
/// the Map Run would: its outcome is the iteration's. Also returns the child's record.
fn iterate<C: Clock>(
    parent: &Execution,
    call: &IterationCall,
    handler: &mut dyn TaskHandler,
    host: &mut RunHost<C>,
) -> (Delivery, ChildRecord) {
    let name = host.random.uuid_v4();
    let info = ExecutionInfo::new(
        &call.child_machine_arn(),
        &name,
        &parent.info().role_arn,
        parent
            .machine()
            .child_machine(call.processor)
            .is_some_and(|c| c.express),
        host.clock.now(),
    );
    let mut record = ChildRecord {
        index: call.index,
        execution_arn: info.execution_arn.clone(),
        name,
        state_machine_arn: call.child_machine_arn(),
        status: "FAILED".into(),
        input: call.input.to_string(),
        output: None,
        error: None,
        cause: None,
        start_date: timestamp(info.start_time),
        stop_date: None,
    };
    let Some(child) = parent.machine().child_machine(call.processor).cloned() else {
        let f = Failure::runtime(format!(
            "the Map state '{}' has no child machine",
            call.state_name
        ));
        return (Delivery::TaskFailed(f), record);
    };
    let opts = RunOptions {
        info: Some(info),
        record_history: false,
    };
    let outcome = run(
        child.machine.clone(),
        call.input.clone(),
        handler,
        host,
        opts,
    );
    record.status = outcome.status.as_str().to_string();
    record.stop_date = Some(timestamp(host.clock.now()));
    record.output = outcome.output.as_ref().map(Value::to_string);
    record.error = outcome.error.clone();
    record.cause = outcome.cause.clone();
    let delivery = match outcome.status {
        Status::Succeeded => Delivery::TaskSucceeded(outcome.output.unwrap_or(Value::Null)),
        _ => Delivery::TaskFailed(Failure {
            error: outcome.error.unwrap_or_default(),
            cause: outcome.cause,
        }),
    };
    (delivery, record)
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub history: Vec<HistoryEvent>,
}

/// Runs `machine` on `input` to the end.
pub fn run<C: Clock>(
    machine: Arc<Machine>,
    input: Value,
    handler: &mut dyn TaskHandler,
    host: &mut RunHost<C>,
    opts: RunOptions,
) -> Outcome {
    let start = host.clock.now();
    let info = opts
        .info
        .unwrap_or_else(|| ExecutionInfo::local("local", "local-execution", start));
    let deadline = machine
        .timeout_seconds
        .map(|s| seconds_after(info.start_time, s as f64));
    let mut exec = Execution::start(machine, input, info, opts.record_history, host);
    // The distributed Maps' children, by Map Run, for their ResultWriters.
    let mut children: HashMap<String, Vec<ChildRecord>> = HashMap::new();
    while exec.status() == Status::Running {
        let pending: Vec<(u64, Effect)> = exec.pending().map(|(id, e)| (id, e.clone())).collect();
        let work = pending
            .iter()
            .find(|(_, e)| !matches!(e, Effect::Timer { .. }));
        match work {
            Some((id, Effect::Invoke(call))) => {
                invoke(&mut exec, *id, call, handler, host, deadline)
            }
            Some((id, effect)) => {
                let delivery = distributed_map(&exec, effect, &mut children, handler, host);
                exec.deliver(*id, delivery, host);
            }
            None => fire_next_timer(&mut exec, &pending, host, deadline),
        }
    }
    let (status, output, failure, history) = exec.into_outcome();
    let (error, cause) = match failure {
        // A Fail state without Error reports none, as AWS's ExecutionFailed does.
        Some(f) => (Some(f.error).filter(|e| !e.is_empty()), f.cause),
        None => (None, None),
    };
    Outcome {
        status,
        output,
        error,
        cause,
        history,
    }
}
