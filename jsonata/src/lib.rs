//! JSONata 2.x for oms.
//!
//! The language (parser, evaluator, function library) is the `jsonata-core` crate, which
//! passes the official suite (docs/jsonata.md has the evidence and the measured rate).
//! This crate is the boundary the rest of oms uses:
//!
//! - [`evaluate`]: one expression, optional input, JSON bindings and [`Limits`], giving an
//!   [`Outcome`]: a JSON value, "no value" (undefined, which is not `null`), or an error
//!   with the reference's code (`T2001`, `S0202`, `D3001`, ...).
//! - [`Outcome::to_json`]: the one-object shape `oms jsonata` prints and the suite's
//!   `compare.mjs` scores.
//! - [`cases`]: a file of suite-format lines evaluated in one process.

pub mod cases;

use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError, EvaluatorOptions};
use jsonata_core::parser::ParserError;
use jsonata_core::value::JValue;
use serde_json::{json, Map, Value};

/// Bounds on one evaluation. Going past either ends it with error `U1001`, the code the
/// reference's test runner uses for its own time and depth guard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time allowed for the evaluation, in milliseconds.
    pub time_ms: Option<u64>,
    /// Nesting depth of evaluation steps allowed (the reference's `stack` bound).
    pub depth: Option<usize>,
}

/// How one evaluation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Value(Value),
    /// The expression produced no value (JSONata's `undefined`).
    Undefined,
    Error {
        code: String,
        message: String,
    },
}

impl Outcome {
    fn error(code: &str, message: impl Into<String>) -> Self {
        Outcome::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// `{"result": v}`, `{"undefined": true}` or `{"code": "T2001", "message": "..."}`.
    pub fn to_json(&self) -> Map<String, Value> {
        let v = match self {
            Outcome::Value(v) => json!({ "result": v }),
            Outcome::Undefined => json!({ "undefined": true }),
            Outcome::Error { code, message } => json!({ "code": code, "message": message }),
        };
        match v {
            Value::Object(m) => m,
            _ => unreachable!("each arm builds an object"),
        }
    }
}

/// Code for an error the engine raised without a reference code; never one of the
/// reference's own, so a comparison never mistakes it for a match.
const UNCODED: &str = "ENGINE";

/// Evaluates `expr` against `input` (`None`: no input at all, which is not JSON `null`),
/// with each entry of `bindings` bound as a variable (`{"x": 1}` binds `$x`).
pub fn evaluate(
    expr: &str,
    input: Option<&Value>,
    bindings: &Map<String, Value>,
    limits: Limits,
) -> Outcome {
    let ast = match jsonata_core::parser::parse(expr) {
        Ok(ast) => ast,
        Err(e) => return parse_error(&e, limits),
    };
    let mut context = Context::new();
    for (name, value) in bindings {
        context.bind(name.clone(), JValue::from(value.clone()));
    }
    let options = EvaluatorOptions {
        timeout_ms: limits.time_ms,
        max_stack_depth: limits.depth,
        ..EvaluatorOptions::default()
    };
    let data = input.map_or(JValue::Undefined, |v| JValue::from(v.clone()));
    let mut evaluator = Evaluator::with_options(context, options);
    match evaluator.evaluate(&ast, &data) {
        Ok(v) => to_outcome(&v),
        Err(e) => evaluation_error(&e, limits),
    }
}

fn evaluation_error(e: &EvaluatorError, limits: Limits) -> Outcome {
    coded(e.message(), limits)
}

fn parse_error(e: &ParserError, limits: Limits) -> Outcome {
    match e {
        // The one parse error jsonata-core reports without its code.
        ParserError::UnclosedComment => Outcome::error("S0106", "Comment has no closing tag"),
        _ => coded(&e.to_string(), limits),
    }
}

/// The outcome for an engine message carrying its code (`"T2001: ..."`, possibly after a
/// category such as `"Invalid syntax: "`); the engine's own guards (D1011 depth, D1012
/// time) become `U1001` when the caller set that limit, as the reference runner's does.
fn coded(message: &str, limits: Limits) -> Outcome {
    let Some((code, text)) = find_code(message) else {
        return Outcome::error(UNCODED, message);
    };
    match code {
        "D1011" if limits.depth.is_some() => Outcome::error("U1001", message),
        "D1012" if limits.time_ms.is_some() => Outcome::error("U1001", message),
        _ => Outcome::error(code, text),
    }
}

/// The first `X0000:` code that opens the message or one of its `": "`-separated parts,
/// and the text after it.
fn find_code(message: &str) -> Option<(&str, &str)> {
    let mut rest = message;
    loop {
        if let Some(code) = jsonata_core::evaluator::error_code_prefix(rest) {
            return Some((code, rest[code.len() + 1..].trim_start()));
        }
        let at = rest.find(": ")?;
        rest = &rest[at + 2..];
    }
}

fn to_outcome(v: &JValue) -> Outcome {
    match to_json(v) {
        Some(json) => Outcome::Value(json),
        None => Outcome::Undefined,
    }
}

/// JSON for a JSONata value as JSON.stringify gives it: `None` for undefined; inside an
/// object an undefined member is left out, inside an array it is `null`; a function is
/// `""`, as the reference serialises one.
fn to_json(v: &JValue) -> Option<Value> {
    Some(match v {
        JValue::Undefined => return None,
        JValue::Null => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        JValue::String(s) => Value::String(s.to_string()),
        JValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| to_json(i).unwrap_or(Value::Null))
                .collect(),
        ),
        JValue::Object(map) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| to_json(v).map(|v| (k.clone(), v)))
                .collect(),
        ),
        JValue::Lambda { .. } | JValue::Builtin { .. } => Value::String(String::new()),
        JValue::Regex { .. } => Value::Object(Map::new()),
    })
}
