//! Functions the host adds to the language (Step Functions' `$partition`, `$uuid`,
//! ... when `asl/` wires JSONata in), written against serde_json values so callers never
//! see jsonata-core's types.

use crate::{to_json, Input};
use jsonata_core::evaluator::{Evaluator, EvaluatorError};
use jsonata_core::value::JValue;
use serde_json::Value;
use std::rc::Rc;

/// Why a host function failed: a code in the reference's form (a capital and four
/// digits, `D3001`; any other comes out as `ENGINE`) and a message, reported as the
/// evaluation's error. A host that needs its own error names (Step Functions'
/// `States.QueryEvaluationError`) maps these codes to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub code: String,
    pub message: String,
}

/// A host function: its arguments (`None` for an undefined one) to a value (`None`:
/// undefined) or an error.
pub type Function = dyn Fn(&[Option<Value>]) -> Result<Option<Value>, FunctionError>;

/// Host functions by name (without the `$`). A name the language already has (such as
/// `random`) replaces the built-in.
#[derive(Clone, Default)]
pub struct Functions {
    entries: Vec<(String, Rc<Function>)>,
}

impl Functions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(
        &mut self,
        name: &str,
        f: impl Fn(&[Option<Value>]) -> Result<Option<Value>, FunctionError> + 'static,
    ) -> &mut Self {
        self.entries.push((name.to_string(), Rc::new(f)));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers each function on `evaluator`; a name jsonata-core refuses (one of
    /// the built-ins its bytecode may inline) is reported as the evaluation's error.
    pub(crate) fn register(&self, evaluator: &mut Evaluator) -> Result<(), EvaluatorError> {
        for (name, f) in &self.entries {
            let f = Rc::clone(f);
            let call = move |args: &[JValue]| call(&*f, args);
            match evaluator.register_fn(name.clone(), call.clone()) {
                Ok(()) => {}
                Err(_) => evaluator.register_fn_override(name.clone(), call)?,
            }
        }
        Ok(())
    }
}

fn call(f: &Function, args: &[JValue]) -> Result<JValue, EvaluatorError> {
    let args: Vec<Option<Value>> = args.iter().map(to_json).collect();
    match f(&args) {
        Ok(Some(v)) => Ok(Input::new(Some(&v)).0),
        Ok(None) => Ok(JValue::Undefined),
        // The code leads the message, where the crate's error reading finds it.
        Err(e) => Err(EvaluatorError::EvaluationError(format!(
            "{}: {}",
            e.code, e.message
        ))),
    }
}
