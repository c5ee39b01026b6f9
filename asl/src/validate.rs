//! Static validation of a state machine definition, with diagnostics shaped like
//! ValidateStateMachineDefinition's.
//! INTERFACE STUB: implemented by the validator work.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// e.g. `SCHEMA_VALIDATION_FAILED`, `INVALID_JSON_DESCRIPTION`.
    pub code: String,
    pub message: String,
    /// A JSON-pointer-like location such as `/States/Ship/Next`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MachineType {
    #[default]
    Standard,
    Express,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub machine_type: MachineType,
}

/// Validates definition text, as the API receives it (JSON syntax errors included).
pub fn validate_str(text: &str, opts: Options) -> Vec<Diagnostic> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => validate(&v, opts),
        Err(e) => vec![Diagnostic {
            severity: Severity::Error,
            code: "INVALID_JSON_DESCRIPTION".into(),
            message: e.to_string(),
            location: None,
        }],
    }
}

/// Validates a parsed definition.
pub fn validate(def: &Value, opts: Options) -> Vec<Diagnostic> {
    let _ = (def, opts);
    Vec::new()
}

/// The message CreateStateMachine gives for an invalid definition, e.g.
/// `Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: ... at /States/X/Next'`.
pub fn invalid_definition_message(diagnostics: &[Diagnostic]) -> String {
    let parts: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| match &d.location {
            Some(l) => format!("{}: {} at {}", d.code, d.message, l),
            None => format!("{}: {}", d.code, d.message),
        })
        .collect();
    format!("Invalid State Machine Definition: '{}'", parts.join(", "))
}
