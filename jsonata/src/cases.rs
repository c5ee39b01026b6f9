//! Case files: one JSON object a line, in the official suite's flattened format
//! (`{id, expr, data, data_undefined, bindings, timelimit, depth, ...}`), each evaluated
//! and answered with one line `{id, result | undefined | code, message}`.
//!
//! Expected-result fields (`result`, `undefined_result`, `code`) are not read here:
//! judging is the scorer's job (the suite's compare.mjs, or this crate's tests).

use crate::{evaluate, Limits, Outcome};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::io::{BufRead, Write};

/// The fields of a case line that say what to evaluate.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub id: String,
    pub expr: String,
    #[serde(default)]
    pub data: Value,
    /// `true`: evaluate with no input at all, not with `null`.
    #[serde(default)]
    pub data_undefined: bool,
    #[serde(default)]
    pub bindings: Map<String, Value>,
    /// Milliseconds allowed.
    #[serde(default)]
    pub timelimit: Option<u64>,
    #[serde(default)]
    pub depth: Option<usize>,
}

impl Case {
    pub fn run(&self) -> Outcome {
        let input = (!self.data_undefined).then_some(&self.data);
        let limits = Limits {
            time_ms: self.timelimit,
            depth: self.depth,
        };
        evaluate(&self.expr, input, &self.bindings, limits)
    }
}

/// The answer line for one case line; a line that is not a case is answered with an
/// error naming its line number (`id` is then `"line N"`), so one bad line never hides
/// the rest.
pub fn answer(line: &str, line_no: usize) -> Value {
    let (id, outcome) = match serde_json::from_str::<Case>(line) {
        Ok(case) => {
            let outcome = case.run();
            (case.id, outcome)
        }
        Err(e) => (
            format!("line {line_no}"),
            Outcome::Error {
                code: "CASE".into(),
                message: format!("line {line_no} is not a case: {e}"),
            },
        ),
    };
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id));
    out.extend(outcome.to_json());
    Value::Object(out)
}

/// Answers every non-blank line of `input` on `output`, in order.
pub fn run(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(output, "{}", answer(&line, i + 1))?;
    }
    output.flush()
}
