//! JSONPath as Step Functions evaluates it (Jayway semantics, not RFC 9535).
//! INTERFACE STUB: implemented by the jsonpath work.

use serde_json::Value;

/// What a path is evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `$`: the state's input (or whatever value the field applies to).
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a variable.
    Variable(String),
}

/// Why a path selected nothing. `detail` is Jayway's wording, which AWS quotes in
/// causes, e.g. `Missing property in path $['no']` or `No results for path: $['x']`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub detail: String,
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    root: Root,
}

impl JsonPath {
    /// Parses `$`, `$.a.b[0]`, `$['a']`, `$..a`, `$.a[*]`, `$.a[1:3]`, `$.a[?(@.x > 1)]`,
    /// `$$.Execution.Id`, `$var.field`. The error names the rule broken.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        Err(format!("JSONPath not implemented yet: {text}"))
    }
    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn root(&self) -> &Root {
        &self.root
    }
    /// A definite path (no wildcard, filter, slice, union or deep scan) selects at most
    /// one value; only definite paths may be written to (ResultPath).
    pub fn is_definite(&self) -> bool {
        false
    }
    /// Selects from `root` (the value the path's [`Root`] designates). A definite path
    /// yields the value or NotFound; an indefinite one yields an array, possibly empty.
    pub fn select(&self, root: &Value) -> Result<Value, NotFound> {
        let _ = root;
        Err(NotFound { detail: "not implemented".into() })
    }
    /// Writes `value` at this (definite, `$`-rooted) path inside `target`, creating
    /// missing objects on the way as ResultPath does. `$` replaces the whole target.
    pub fn set(&self, target: &mut Value, value: Value) -> Result<(), String> {
        let _ = (target, value);
        Err("not implemented".into())
    }
}
