//! `oms jsonata`: evaluate a JSONata expression, or a file of suite-format cases, with
//! the jsonata crate. The evaluation and the case-file format live there; this is only
//! the command line.

use serde_json::{Map, Value};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct JsonataArgs {
    /// The expression (omit with --cases).
    #[arg(required_unless_present = "cases", conflicts_with = "cases")]
    expr: Option<String>,
    /// The input document: JSON text, or @FILE to read it from a file. Without it the
    /// expression has no input at all (which is not `null`).
    #[arg(long)]
    data: Option<String>,
    /// Variables to bind, as one JSON object: {"x": 1} binds $x.
    #[arg(long)]
    bindings: Option<String>,
    /// Evaluate each line of this file ({id, expr, data, data_undefined, bindings,
    /// timelimit, depth}, the JSONata suite's format) and print one answer a line.
    #[arg(long, conflicts_with_all = ["data", "bindings"])]
    cases: Option<PathBuf>,
}

/// Prints `{"result": ...}`, `{"undefined": true}` or `{"code": ..., "message": ...}`;
/// exit 1 when the expression failed.
pub fn jsonata(args: JsonataArgs) -> Result<ExitCode, String> {
    if let Some(path) = args.cases {
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let functions = asl::query::standalone_functions(seed());
        jsonata::cases::run_with(BufReader::new(file), std::io::stdout().lock(), &functions)
            .map_err(|e| format!("--cases {}: {e}", path.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let expr = args.expr.unwrap_or_default();
    let data = args.data.as_deref().map(read_data).transpose()?;
    let bindings = match args.bindings.as_deref() {
        Some(text) => parse_bindings(text)?,
        None => Map::new(),
    };
    let functions = asl::query::standalone_functions(seed());
    let outcome = match jsonata::Compiled::new(&expr) {
        Ok(c) => c.evaluate_with(
            &jsonata::Input::new(data.as_ref()),
            &bindings,
            &functions,
            jsonata::Limits::default(),
        ),
        Err(e) => e,
    };
    println!("{}", Value::Object(outcome.to_json()));
    Ok(match outcome {
        jsonata::Outcome::Error { .. } => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn read_data(arg: &str) -> Result<Value, String> {
    let (text, source) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("--data: cannot read {path}: {e}"))?,
            path,
        ),
        None => (arg.to_string(), "its argument"),
    };
    serde_json::from_str(&text).map_err(|e| format!("--data: {source} is not JSON: {e}"))
}

fn parse_bindings(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("--bindings must be a JSON object, e.g. {\"x\": 1}".into()),
        Err(e) => Err(format!("--bindings is not JSON: {e}")),
    }
}

/// A seed for `$uuid`: the clock's nanoseconds (a command line wants fresh ids, not
/// reproducible ones).
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
