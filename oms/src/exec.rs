//! `oms exec` and `oms validate`.

use asl::error::Failure;
use asl::runner::{self, Clock, RunHost, RunOptions, SeededRandom, TaskOutcome, VirtualClock};
use asl::validate::{self, Diagnostic, MachineType, Options, Severity};
use asl::{Machine, TaskCall};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum ClockKind {
    /// Wall-clock time: Wait states really wait.
    Real,
    /// Virtual time: Waits, backoffs and timeouts pass at once.
    Virtual,
}

// The flags of `oms exec` (its help is the `Exec` subcommand's doc comment).
#[derive(clap::Args)]
pub struct ExecArgs {
    /// The state machine definition (ASL JSON).
    #[arg(long)]
    definition: PathBuf,
    /// The execution input, as JSON text.
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// A file holding the execution input.
    #[arg(long)]
    input_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "real")]
    clock: ClockKind,
    /// Also print the execution history (events as GetExecutionHistory shapes them).
    #[arg(long)]
    history: bool,
    /// Run as an Express state machine: validated with the Express rules (no `.sync`,
    /// no `.waitForTaskToken`, no activities) and with an Express execution ARN
    /// (`...:express:MACHINE:NAME:ID`) in `$$.Execution.Id`.
    #[arg(long)]
    express: bool,
}

// The flags of `oms validate` (its help is the `Validate` subcommand's doc comment).
#[derive(clap::Args)]
pub struct ValidateArgs {
    files: Vec<PathBuf>,
    /// Print the diagnostics as JSON.
    #[arg(long)]
    json: bool,
    /// Validate as an Express state machine.
    #[arg(long)]
    express: bool,
}

/// Real time for `--clock real`: the in-memory runner sleeps through Waits.
pub struct WallClock;

impl Clock for WallClock {
    fn now(&mut self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(&mut self, t: DateTime<Utc>) {
        if let Ok(d) = (t - Utc::now()).to_std() {
            std::thread::sleep(d);
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses and validates a definition as a Standard machine; on failure, the JSON object
/// `oms exec` prints.
pub fn load_machine(text: &str) -> Result<Machine, Value> {
    load_machine_as(text, MachineType::Standard)
}

/// Parses and validates a definition with the rules of `machine_type`.
pub fn load_machine_as(text: &str, machine_type: MachineType) -> Result<Machine, Value> {
    let diagnostics = validate::validate_str(text, Options { machine_type });
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(json!({
            "status": "INVALID_DEFINITION",
            "error": "InvalidDefinition",
            "cause": validate::invalid_definition_message(&diagnostics),
            "diagnostics": diagnostics,
        }));
    }
    Machine::parse(text).map_err(|e| {
        json!({"status": "INVALID_DEFINITION", "error": "InvalidDefinition", "cause": e, "diagnostics": []})
    })
}

/// No task handlers are registered in `oms exec` yet: a task fails as AWS fails a call
/// to a function that does not exist, so Retry and Catch can be exercised.
fn no_such_resource(call: &TaskCall) -> TaskOutcome {
    let target = call.function.as_deref().unwrap_or(&call.resource);
    TaskOutcome::err(Failure::new(
        asl::error::names::LAMBDA_RESOURCE_NOT_FOUND,
        format!("Function not found: {target} (no handler is registered for it in oms exec)"),
    ))
}

pub fn exec(args: ExecArgs) -> Result<ExitCode, String> {
    let text = read(&args.definition)?;
    let input_text = match (args.input, &args.input_file) {
        (Some(s), _) => s,
        (None, Some(f)) => read(f)?,
        (None, None) => "{}".to_string(),
    };
    let input: Value = serde_json::from_str(&input_text)
        .map_err(|e| format!("the input is not valid JSON: {e}"))?;
    let machine_type = if args.express {
        MachineType::Express
    } else {
        MachineType::Standard
    };
    let machine = match load_machine_as(&text, machine_type) {
        Ok(m) => Arc::new(m),
        Err(report) => {
            println!("{report}");
            return Ok(ExitCode::from(2));
        }
    };
    let name = args
        .definition
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("machine");
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let express = args.express;
    let opts = |start| RunOptions {
        info: Some(execution_info(
            name,
            &format!("exec-{seed:x}"),
            express,
            start,
        )),
        record_history: args.history,
    };
    let mut handler = no_such_resource;
    let outcome = match args.clock {
        ClockKind::Real => {
            let mut host = RunHost {
                clock: WallClock,
                random: SeededRandom::new(seed),
            };
            runner::run(machine, input, &mut handler, &mut host, opts(Utc::now()))
        }
        ClockKind::Virtual => {
            let start = Utc::now();
            let mut host = RunHost {
                clock: VirtualClock(start),
                random: SeededRandom::new(seed),
            };
            runner::run(machine, input, &mut handler, &mut host, opts(start))
        }
    };
    println!("{}", outcome_json(outcome, args.history));
    Ok(ExitCode::SUCCESS)
}

/// The identifiers `$$.Execution` shows: a local account's, Standard or Express shaped.
fn execution_info(
    machine_name: &str,
    execution_name: &str,
    express: bool,
    start: DateTime<Utc>,
) -> asl::ExecutionInfo {
    let local = asl::ExecutionInfo::local(machine_name, execution_name, start);
    asl::ExecutionInfo::new(
        &local.state_machine_arn,
        execution_name,
        &local.role_arn,
        express,
        start,
    )
}

/// What `oms exec` prints: how the run ended, and with `history` its events.
fn outcome_json(outcome: runner::Outcome, history: bool) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("status".into(), json!(outcome.status.as_str()));
    if let Some(o) = outcome.output {
        out.insert("output".into(), o);
    }
    if outcome.status != asl::Status::Succeeded {
        out.insert("error".into(), json!(outcome.error));
        out.insert("cause".into(), json!(outcome.cause));
    }
    if history {
        let events: Vec<Value> = outcome
            .history
            .iter()
            .map(|e| {
                json!({"id": e.id, "previousEventId": e.previous_event_id,
                       "timestamp": asl::eval::timestamp(e.timestamp), "type": e.kind, "details": e.details})
            })
            .collect();
        out.insert("history".into(), Value::Array(events));
    }
    Value::Object(out)
}

pub fn validate(args: ValidateArgs) -> Result<ExitCode, String> {
    let ValidateArgs {
        files,
        json: as_json,
        express,
    } = args;
    if files.is_empty() {
        return Err("name at least one definition file".into());
    }
    let opts = Options {
        machine_type: if express {
            MachineType::Express
        } else {
            MachineType::Standard
        },
    };
    let mut any_error = false;
    let mut report = Vec::new();
    for f in &files {
        let diagnostics: Vec<Diagnostic> = validate::validate_str(&read(f)?, opts);
        any_error |= diagnostics.iter().any(|d| d.severity == Severity::Error);
        if as_json {
            report.push(json!({"file": f, "diagnostics": diagnostics}));
        } else if diagnostics.is_empty() {
            println!("{}: ok", f.display());
        } else {
            for d in &diagnostics {
                let sev = if d.severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                };
                let at = d
                    .location
                    .as_deref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                println!("{}: {sev}: {}: {}{at}", f.display(), d.code, d.message);
            }
        }
    }
    if as_json {
        println!("{}", Value::Array(report));
    }
    Ok(if any_error {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
