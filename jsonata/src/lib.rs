//! JSONata 2.x for oms.
//!
//! The language (parser, evaluator, function library) is the `jsonata-core` crate, which
//! passes 1,684 of the official suite's 1,686 cases here (docs/jsonata.md has the
//! evidence for the choice, the measured rate and what is left). This crate is the
//! boundary the rest of oms uses:
//!
//! - [`evaluate`]: one expression, optional input, JSON bindings and [`Limits`], giving an
//!   [`Outcome`]: a JSON value, "no value" (undefined, which is not `null`), or an error
//!   with the reference's code (`T2001`, `S0202`, `D3001`, ...). [`Compiled`] parses
//!   once for many evaluations, [`Input`] converts a document once, [`Bindings`]
//!   converts variables once, [`Functions`] adds the host's own functions. The time
//!   limit is kept by a watchdog thread (`deadline.rs`), not by reading the clock at
//!   every step.
//! - [`Outcome::to_json`]: the one-object shape `oms jsonata` prints and the suite's
//!   `compare.mjs` scores.
//! - [`cases`]: a file of suite-format lines evaluated in one process.

pub mod cases;
mod deadline;
mod functions;

pub use functions::{Function, FunctionError, Functions};

use deadline::Deadline;
use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError, EvaluatorOptions};
use jsonata_core::parser::ParserError;
use jsonata_core::value::JValue;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Bounds on one evaluation. Going past either ends it with error `U1001`, the code the
/// reference's test runner uses for its own time and depth guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time allowed for the evaluation, in milliseconds; `None` lets an
    /// endless tail-recursive loop run forever.
    pub time_ms: Option<u64>,
    /// Nesting depth of evaluation steps allowed (the reference's `stack` bound). With
    /// `None` jsonata-core still stops at its own bound (30,000 levels) with `U1001`.
    pub depth: Option<usize>,
}

/// The time an evaluation gets unless told otherwise: the reference suite's runner
/// gives each case the same 10 s.
pub const DEFAULT_TIME_MS: u64 = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_ms: Some(DEFAULT_TIME_MS),
            depth: None,
        }
    }
}

/// How one evaluation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Value(Value),
    /// The expression produced no value (JSONata's `undefined`).
    Undefined,
    /// The expression produced a function (a lambda or a built-in), which has no JSON
    /// form: the suite's runner prints it as `""`, and Step Functions refuses it.
    Function,
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
        let mut out = Map::new();
        match self {
            Outcome::Value(v) => {
                out.insert("result".into(), v.clone());
            }
            Outcome::Undefined => {
                out.insert("undefined".into(), Value::Bool(true));
            }
            Outcome::Function => {
                out.insert("result".into(), Value::String(String::new()));
            }
            Outcome::Error { code, message } => {
                out.insert("code".into(), Value::String(code.clone()));
                out.insert("message".into(), Value::String(message.clone()));
            }
        }
        out
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
    match Compiled::new(expr) {
        Ok(compiled) => compiled.evaluate(input, bindings, limits),
        Err(error) => error,
    }
}

/// An input document in the engine's own form. Converting a document costs several
/// times what evaluating a simple path over it does (a 5 KB order: ~60-80 us against
/// ~20 us, docs/jsonata.md), so a caller evaluating several expressions on one
/// document converts it once.
pub struct Input(JValue);

impl Input {
    /// `None`: no input at all, which is not JSON `null`.
    pub fn new(input: Option<&Value>) -> Self {
        // Deserialising from a borrowed Value spares the deep clone `JValue::from` needs.
        Input(input.map_or(JValue::Undefined, |v| {
            JValue::deserialize(v).unwrap_or_else(|_| JValue::from(v.clone()))
        }))
    }
}

/// An expression parsed once, to be evaluated many times, from any thread: it is
/// `Send + Sync`, so a parsed state machine can hold its expressions.
///
/// It holds jsonata-core's syntax tree and evaluates it with the tree-walker.
/// jsonata-core's `Expression` would add its bytecode VM, but caches engine values that
/// are not `Send`, takes no bindings or host functions (a state machine's expressions
/// always have `$states`), and measured no faster on the bench expressions, with the
/// time limit on or off (docs/jsonata.md).
pub struct Compiled {
    ast: AstNode,
}

impl Compiled {
    /// Parses `expr`; a syntax error is returned as the [`Outcome::Error`] to report.
    pub fn new(expr: &str) -> Result<Self, Outcome> {
        match contained(|| jsonata_core::parser::parse(expr)) {
            Ok(Ok(ast)) => Ok(Compiled { ast }),
            Ok(Err(e)) => Err(parse_error(&e)),
            Err(panicked) => Err(panicked),
        }
    }

    /// As [`evaluate`] does.
    pub fn evaluate(
        &self,
        input: Option<&Value>,
        bindings: &Map<String, Value>,
        limits: Limits,
    ) -> Outcome {
        self.evaluate_input(&Input::new(input), bindings, limits)
    }

    /// As [`Compiled::evaluate`], on an input converted once for several evaluations.
    pub fn evaluate_input(
        &self,
        input: &Input,
        bindings: &Map<String, Value>,
        limits: Limits,
    ) -> Outcome {
        self.evaluate_with(input, bindings, &Functions::default(), limits)
    }

    /// As [`Compiled::evaluate_input`], with the host's own functions.
    pub fn evaluate_with(
        &self,
        input: &Input,
        bindings: &Map<String, Value>,
        functions: &Functions,
        limits: Limits,
    ) -> Outcome {
        self.evaluate_bound(input, &Bindings::new(bindings), functions, limits)
    }

    /// As [`Compiled::evaluate_with`], with bindings converted once (see
    /// [`Bindings`]): the cheapest way to evaluate several expressions over the same
    /// variables.
    pub fn evaluate_bound(
        &self,
        input: &Input,
        bindings: &Bindings,
        functions: &Functions,
        limits: Limits,
    ) -> Outcome {
        // The time limit is the watchdog's (deadline.rs); jsonata-core's own clock
        // checks only when the watchdog thread could not be started.
        let deadline = limits.time_ms.and_then(Deadline::start);
        let options = EvaluatorOptions {
            timeout_ms: if deadline.is_some() {
                None
            } else {
                limits.time_ms
            },
            cancel: deadline.as_ref().map(Deadline::token),
            max_stack_depth: limits.depth,
            ..EvaluatorOptions::default()
        };
        let data = &input.0;
        let result = contained(|| {
            let mut context = Context::new();
            for (name, value) in &bindings.0 {
                context.bind(name.clone(), value.clone());
            }
            let mut evaluator = Evaluator::with_options(context, options);
            functions.register(&mut evaluator)?;
            evaluator.evaluate(&self.ast, data)
        });
        match result {
            Ok(Ok(v)) => to_outcome(&v),
            Ok(Err(e)) => match (&deadline, limits.time_ms) {
                (Some(d), Some(ms)) if d.passed() && e.code() == Some("U1003") => {
                    Outcome::error("U1001", timeout_message(ms))
                }
                _ => evaluation_error(&e, limits),
            },
            Err(panicked) => panicked,
        }
    }
}

/// Variables for an evaluation in the engine's form. [`Compiled::evaluate_with`]
/// converts its serde_json bindings on every call; a caller evaluating several
/// expressions with the same variables (a state's `$states` and the workflow's
/// variables) converts them once here and calls [`Compiled::evaluate_bound`].
#[derive(Default)]
pub struct Bindings(Vec<(String, JValue)>);

impl Bindings {
    /// Each entry bound as a variable (`{"x": 1}` binds `$x`).
    pub fn new(bindings: &Map<String, Value>) -> Self {
        Bindings(
            bindings
                .iter()
                .map(|(name, value)| (name.clone(), Input::new(Some(value)).0))
                .collect(),
        )
    }

    /// Binds `$name` to `value` (a later binding of the same name wins).
    pub fn bind(&mut self, name: &str, value: &Value) -> &mut Self {
        self.0.push((name.to_string(), Input::new(Some(value)).0));
        self
    }

    /// Binds `$name` to an object of `members`, each converted from where it is: the
    /// caller need not build (and copy into) a serde_json object first, which costs
    /// as much as converting it (Step Functions' `$states`).
    pub fn bind_object(&mut self, name: &str, members: &[(&str, &Value)]) -> &mut Self {
        let map = members
            .iter()
            .map(|(k, v)| (k.to_string(), Input::new(Some(v)).0))
            .collect();
        self.0.push((name.to_string(), JValue::object(map)));
        self
    }
}

/// jsonata-core's own wording for its time limit (D1012), which an evaluation the
/// watchdog stopped reports too, so the message does not depend on which one did.
fn timeout_message(limit_ms: u64) -> String {
    format!("D1012: Evaluation timeout after {limit_ms} milliseconds. Check for infinite loop")
}

/// Runs `f`, turning a panic inside jsonata-core into an [`Outcome::Error`] (code
/// `ENGINE`): a mutation fuzz of the suite's expressions found one (a date picture
/// `[,W01]` slices a string out of bounds in 2.2.13), and an expression from a client
/// must not take the process down. The engine's values are dropped with the panic, so
/// no half-updated state outlives it.
fn contained<T>(f: impl FnOnce() -> T) -> Result<T, Outcome> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Outcome::error(UNCODED, format!("the JSONata engine failed: {what}"))
    })
}

fn evaluation_error(e: &EvaluatorError, limits: Limits) -> Outcome {
    coded(e.message(), limits)
}

fn parse_error(e: &ParserError) -> Outcome {
    match e {
        // The one parse error jsonata-core reports without its code.
        ParserError::UnclosedComment => Outcome::error("S0106", "Comment has no closing tag"),
        _ => coded(
            &e.to_string(),
            Limits {
                time_ms: None,
                depth: None,
            },
        ),
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
        _ => Outcome::error(code, reference_message(code, text)),
    }
}

/// The reference's wording where jsonata-core adds to it: Step Functions quotes these
/// messages in its errors (recorded: `T1006: Attempted to invoke a non-function`, where
/// jsonata-core appends the name).
fn reference_message<'a>(code: &str, text: &'a str) -> &'a str {
    // Codes whose reference message has no value in it, so one text serves all.
    const FIXED: &[(&str, &str)] = &[
        ("T1006", "Attempted to invoke a non-function"),
        ("D3030", "Unable to cast value to a number"),
    ];
    match FIXED.iter().find(|(c, _)| *c == code) {
        Some((_, m)) => m,
        None => text,
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
    if matches!(v, JValue::Lambda { .. } | JValue::Builtin { .. }) {
        return Outcome::Function;
    }
    match to_json(v) {
        Some(json) => Outcome::Value(json),
        None => Outcome::Undefined,
    }
}

/// JSON for a JSONata value as JSON.stringify gives it: `None` for undefined; inside an
/// object an undefined member is left out, inside an array it is `null`; a function is
/// `""`, as the reference serialises one.
pub(crate) fn to_json(v: &JValue) -> Option<Value> {
    Some(match v {
        JValue::Undefined => return None,
        JValue::Null => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => number(*n),
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

/// A number as JSON.stringify writes it where serde_json can: integers without `.0`;
/// NaN and the infinities (which the reference leaves unchecked in a few places, `1/0`)
/// as `null`.
fn number(n: f64) -> Value {
    // Exact integers: |n| < 2^63 converts to i64 without loss, and prints as JS does.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && n.abs() < TWO_POW_63 {
        return Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}
