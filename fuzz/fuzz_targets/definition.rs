//! A state machine definition, as CreateStateMachine receives it: validation and
//! parsing never panic; a definition validation accepts parses; the parsed machine runs
//! a bounded number of steps, and its snapshot (what the durable runtime stores at
//! every step) restores to the same snapshot.
#![no_main]

use asl::eval::{Delivery, Effect, Execution, ExecutionInfo, Snapshot, Status};
use asl::validate::{self, MachineType, Options, Severity};
use asl::Machine;
use libfuzzer_sys::fuzz_target;
use oms_fuzz::{start_time, FixedHost};
use serde_json::{json, Value};
use std::sync::Arc;

/// How many effects (task calls, timers) a run may go through before it is stopped:
/// enough to pass a Map or a retry loop, few enough to keep each input fast.
const MAX_EFFECTS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut accepted = false;
    for machine_type in [MachineType::Standard, MachineType::Express] {
        let diags = validate::validate_str(text, Options { machine_type });
        for d in &diags {
            assert!(!d.code.is_empty() && !d.message.is_empty(), "{d:?}");
        }
        accepted |= !diags.iter().any(|d| d.severity == Severity::Error);
        same_when_reserialised(text, machine_type, &diags);
    }
    match Machine::parse(text) {
        Ok(machine) => run_bounded(Arc::new(machine)),
        // What validates, loads: one model for both (JSONata states included; their
        // evaluation is refused later, at run time).
        Err(e) if accepted => {
            panic!("validation accepted a definition that Machine::parse rejects: {e}")
        }
        Err(_) => {}
    }
});

/// Validating the definition's JSON written out again gives the same diagnostics: the
/// validator judges the value, not its spelling.
fn same_when_reserialised(text: &str, machine_type: MachineType, diags: &[validate::Diagnostic]) {
    let first = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .next();
    if let Some(Ok(value)) = first {
        let again = serde_json::to_string(&value).expect("a Value serialises");
        assert_eq!(
            validate::validate_str(&again, Options { machine_type }),
            diags,
            "diagnostics changed when the definition was written out again"
        );
    }
}

/// Runs `machine` on a small input, answering each task with its payload and firing
/// each timer, checking the snapshot round trip after every step.
fn run_bounded(machine: Arc<Machine>) {
    let mut host = FixedHost::new(Value::Null);
    let input = json!({"a": 1, "s": "x", "items": [1, 2, 3], "o": {"k": [true, null]}});
    let info = ExecutionInfo::local("fuzz", "fuzz-execution", start_time());
    let mut exec = Execution::start(machine.clone(), input, info, false, &mut host);
    for _ in 0..MAX_EFFECTS {
        exec = same_after_restore(&machine, exec);
        if exec.status() != Status::Running {
            return;
        }
        let Some((id, effect)) = exec.pending().next().map(|(id, e)| (id, e.clone())) else {
            return;
        };
        let delivery = match effect {
            Effect::Invoke(call) => Delivery::TaskSucceeded(call.payload.clone()),
            Effect::Timer { .. } => Delivery::TimerFired,
            Effect::Iteration(call) => Delivery::TaskSucceeded(call.input.clone()),
            Effect::ReadItems(_) => Delivery::TaskSucceeded(serde_json::json!([1, 2])),
            Effect::WriteResults(call) => Delivery::TaskSucceeded(call.results.clone().into()),
        };
        exec.deliver(id, delivery, &mut host);
    }
    exec.stop(None, None, &mut host);
}

/// The snapshot, stored and restored, is the same snapshot; returns the restored run.
fn same_after_restore(machine: &Arc<Machine>, exec: Execution) -> Execution {
    let stored = exec.snapshot_json().expect("a snapshot serialises");
    let snapshot: Snapshot = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("a stored snapshot does not read back: {e}\n{stored}"));
    let restored = Execution::restore(machine.clone(), snapshot, false);
    let again = restored.snapshot_json().expect("a snapshot serialises");
    assert_eq!(
        stored, again,
        "the snapshot changed across store and restore"
    );
    restored
}
