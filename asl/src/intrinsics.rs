//! Intrinsic functions (`States.Format(...)` and friends).
//! INTERFACE STUB: implemented by the intrinsics work.

use crate::error::Failure;
use serde_json::Value;

/// One argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    /// A path: `$.a`, `$$.Execution.Id` or `$var.x`, kept as text and resolved through
    /// [`IntrinsicHost::resolve_path`].
    Path(String),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

/// What evaluating an intrinsic needs from outside; keeps this module pure.
pub trait IntrinsicHost {
    /// Resolves a path argument (the caller knows the input, context and variables).
    fn resolve_path(&mut self, path: &str) -> Result<Value, Failure>;
    /// A uniformly random u64 (States.MathRandom without a seed).
    fn random_u64(&mut self) -> u64;
    /// A fresh random (v4) UUID as text (States.UUID).
    fn uuid_v4(&mut self) -> String;
}

/// True when `s` looks like an intrinsic call (`States.Name(`...`)`), so that a `.$`
/// field is parsed as one rather than as a path.
pub fn looks_like_call(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

/// Parses an intrinsic call expression; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Call, String> {
    Err(format!("intrinsics not implemented yet: {text}"))
}

/// Evaluates a parsed call. Failures carry AWS's error name and cause.
pub fn eval(call: &Call, host: &mut dyn IntrinsicHost) -> Result<Value, Failure> {
    let _ = host;
    Err(Failure::runtime(format!("intrinsic {} not implemented", call.name)))
}
