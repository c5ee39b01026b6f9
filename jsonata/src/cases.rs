//! Case files: one JSON object a line, in the official suite's flattened format
//! (`{id, expr, data, data_undefined, bindings, timelimit, depth, ...}`), each evaluated
//! and answered with one line `{id, result | undefined | code, message}`.
//!
//! Expected-result fields (`result`, `undefined_result`, `code`) are not read here:
//! judging is the scorer's job (the suite's compare.mjs, or this crate's tests).

use crate::{evaluate, Compiled, Functions, Input, Limits, Outcome};
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
    /// Milliseconds allowed ([`crate::DEFAULT_TIME_MS`] when absent).
    #[serde(default)]
    pub timelimit: Option<u64>,
    #[serde(default)]
    pub depth: Option<usize>,
}

impl Case {
    pub fn run(&self) -> Outcome {
        self.run_with(&Functions::new())
    }

    /// As [`Case::run`], with the host's functions added to the language.
    pub fn run_with(&self, functions: &Functions) -> Outcome {
        let input = (!self.data_undefined).then_some(&self.data);
        let limits = Limits {
            time_ms: self.timelimit.or(Limits::default().time_ms),
            depth: self.depth,
        };
        if functions.is_empty() {
            return evaluate(&self.expr, input, &self.bindings, limits);
        }
        match Compiled::new(&self.expr) {
            Ok(c) => c.evaluate_with(&Input::new(input), &self.bindings, functions, limits),
            Err(e) => e,
        }
    }
}

/// The answer line for one case line: `{id, result | undefined | code, message}`.
pub fn answer(line: &str, line_no: usize) -> Value {
    answer_with(line, line_no, &Functions::new())
}

/// As [`answer`], with the host's functions added to the language.
pub fn answer_with(line: &str, line_no: usize, functions: &Functions) -> Value {
    let (id, outcome) = run_line_with(line, line_no, functions);
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id));
    out.extend(outcome.to_json());
    Value::Object(out)
}

/// The id and outcome of one case line. A line that is not a case is answered with an
/// error (`id` is the case's id if it can be read, else `"line N"`), so one bad line
/// never hides the rest.
pub fn run_line(line: &str, line_no: usize) -> (String, Outcome) {
    run_line_with(line, line_no, &Functions::new())
}

fn run_line_with(line: &str, line_no: usize, functions: &Functions) -> (String, Outcome) {
    match serde_json::from_str::<Case>(line) {
        Ok(case) => {
            let outcome = case.run_with(functions);
            (case.id, outcome)
        }
        Err(e) => (
            id_of(line).unwrap_or_else(|| format!("line {line_no}")),
            Outcome::Error {
                code: "CASE".into(),
                message: format!("line {line_no} is not a case: {e}{}", surrogate_note(line)),
            },
        ),
    }
}

/// The suite holds two expressions with a lone UTF-16 surrogate (`"\ud800"`), which a
/// Rust string cannot hold, so serde_json refuses the line. The id is still worth
/// reporting: read the line again with each `\u` escape defused.
fn id_of(line: &str) -> Option<String> {
    let defused = line.replace("\\u", "\\\\u");
    let v: Value = serde_json::from_str(&defused).ok()?;
    v.get("id")?.as_str().map(str::to_string)
}

fn surrogate_note(line: &str) -> &'static str {
    // A surrogate escape is \uD800 to \uDFFF.
    let surrogate = line.match_indices("\\u").any(|(at, _)| {
        let hex = line.as_bytes().get(at + 2..at + 4).unwrap_or_default();
        hex.eq_ignore_ascii_case(b"d8")
            || hex.eq_ignore_ascii_case(b"d9")
            || hex.first().is_some_and(|d| d.eq_ignore_ascii_case(&b'd'))
                && hex
                    .get(1)
                    .is_some_and(|d| (b'a'..=b'f').contains(&d.to_ascii_lowercase()))
    });
    if surrogate {
        " (a lone UTF-16 surrogate cannot be held in a Rust string)"
    } else {
        ""
    }
}

/// Answers every non-blank line of `input` on `output`, in order.
pub fn run(input: impl BufRead, output: impl Write) -> std::io::Result<()> {
    run_with(input, output, &Functions::new())
}

/// As [`run`], with the host's functions added to the language.
pub fn run_with(
    input: impl BufRead,
    mut output: impl Write,
    functions: &Functions,
) -> std::io::Result<()> {
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(output, "{}", answer_with(&line, i + 1, functions))?;
    }
    output.flush()
}

/// Judges `outcome` against a case line's expectation (`result`, `undefined_result` or
/// `code`, optionally `unordered`) by the suite's rules: deep JSON equality with object
/// key order ignored and numbers compared by value; `Err` says how it differs.
pub fn judge(case: &Value, outcome: &Outcome) -> Result<(), String> {
    let expected_code = case.get("code").and_then(Value::as_str);
    match (outcome, expected_code) {
        (Outcome::Error { code, .. }, Some(want)) if code == want => Ok(()),
        (Outcome::Error { code, message }, _) => Err(format!(
            "error {code} ({message}), expected {}",
            expectation(case)
        )),
        (_, Some(want)) => Err(format!("no error, expected {want}")),
        (Outcome::Undefined, _) if case["undefined_result"] == true => Ok(()),
        (Outcome::Function, _) => judge(case, &Outcome::Value(Value::String(String::new()))),
        (Outcome::Value(got), _) if case.get("result").is_some() => {
            let want = &case["result"];
            let same = if case["unordered"] == true {
                same_multiset(want, got)
            } else {
                same_json(want, got)
            };
            same.then_some(())
                .ok_or_else(|| format!("got {got}, expected {want}"))
        }
        (got, _) => Err(format!("got {got:?}, expected {}", expectation(case))),
    }
}

fn expectation(case: &Value) -> String {
    match (case.get("code"), case.get("result")) {
        (Some(code), _) => format!("error {code}"),
        (None, Some(result)) => result.to_string(),
        (None, None) => "undefined".into(),
    }
}

/// JSON equality with numbers compared as doubles (1 equals 1.0) and key order ignored.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn same_multiset(want: &Value, got: &Value) -> bool {
    let (Value::Array(want), Value::Array(got)) = (want, got) else {
        return false;
    };
    let mut used = vec![false; got.len()];
    want.len() == got.len()
        && want.iter().all(|w| {
            let found = (0..got.len()).find(|&i| !used[i] && same_json(w, &got[i]));
            found.map(|i| used[i] = true).is_some()
        })
}
