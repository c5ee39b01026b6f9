//! Static validation of a state machine definition, with diagnostics shaped like
//! ValidateStateMachineDefinition's.
//!
//! The rules are what CreateStateMachine enforces. Messages quoted from recorded AWS
//! responses are reproduced exactly; where no recording exists the wording follows the
//! same patterns (`Field 'X' is not supported`, `These fields are required: [...]`), so
//! clients see one consistent dialect. Locations are JSON-pointer-like, with array
//! elements written `Name[i]` as AWS writes them (`/States/P/Branches[0]/States/X`).

mod json_text;
mod resources;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::names;
use crate::intrinsics;
use crate::jsonpath::JsonPath;
// The query language as the model reads it: one type and one defaulting rule for both.
use crate::model::{is_jsonata_expr, QueryLanguage as Lang};
use resources::{Pattern, Resource};

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

/// Diagnostic codes, as listed in the ValidateStateMachineDefinitionDiagnostic reference.
pub mod codes {
    pub const INVALID_JSON_DESCRIPTION: &str = "INVALID_JSON_DESCRIPTION";
    pub const SCHEMA_VALIDATION_FAILED: &str = "SCHEMA_VALIDATION_FAILED";
    pub const MISSING_TRANSITION_TARGET: &str = "MISSING_TRANSITION_TARGET";
    pub const MISSING_END_STATE: &str = "MISSING_END_STATE";
    pub const DUPLICATE_STATE_NAME: &str = "DUPLICATE_STATE_NAME";
    pub const INVALID_STATE_NAME: &str = "INVALID_STATE_NAME";
}

/// How deep states, choice rules and payload templates may nest. Far beyond anything
/// written by hand; it exists so that validation cannot exhaust the stack.
pub const MAX_NESTING: usize = 64;
/// Longest state name AWS accepts.
pub const MAX_STATE_NAME: usize = 80;
/// Longest variable name AWS accepts in `Assign`.
pub const MAX_VARIABLE_NAME: usize = 80;
const MAX_SECONDS: i64 = 99_999_999;

const NOT_AN_OBJECT: &str = "Definition must be a valid JSON object";
const TOO_DEEP: &str = "Definition is nested too deeply";

/// Validates definition text, as the API receives it (JSON syntax errors included).
pub fn validate_str(text: &str, opts: Options) -> Vec<Diagnostic> {
    if text.trim().is_empty() {
        return vec![error(codes::SCHEMA_VALIDATION_FAILED, NOT_AN_OBJECT, None)];
    }
    // Jackson ignores whatever follows the first value, so read only the first one.
    let first = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .next();
    match first {
        Some(Ok(v)) => validate(&v, opts),
        Some(Err(e)) if e.to_string().starts_with("recursion limit exceeded") => {
            vec![error(codes::SCHEMA_VALIDATION_FAILED, TOO_DEEP, None)]
        }
        other => {
            let (message, location) = match json_text::first_error(text) {
                Some(j) => (j.message, Some(j.location)),
                // Jackson and serde_json disagree (e.g. lone surrogates); keep serde's word.
                None => (
                    other
                        .and_then(|r| r.err())
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                    None,
                ),
            };
            vec![error(
                codes::INVALID_JSON_DESCRIPTION,
                &message,
                location.as_deref(),
            )]
        }
    }
}

/// Validates a parsed definition.
pub fn validate(def: &Value, opts: Options) -> Vec<Diagnostic> {
    let Value::Object(top) = def else {
        return vec![error(codes::SCHEMA_VALIDATION_FAILED, NOT_AN_OBJECT, None)];
    };
    let top_lang = top
        .get("QueryLanguage")
        .and_then(Lang::from_name)
        .unwrap_or(Lang::JsonPath);
    let mut c = Checker {
        opts,
        top_lang,
        out: Vec::new(),
        seen_names: HashMap::new(),
    };
    c.machine(top, "", Scope::Top, 0);
    c.out
}

/// The message CreateStateMachine gives for an invalid definition: every error, each
/// as `CODE: message at location`, joined by `, ` inside one pair of quotes, e.g.
/// `Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target:
/// pass3 at /States/pass1/Next, MISSING_TRANSITION_TARGET: State "pass2" is not
/// reachable. at /States/pass2'` (recorded from AWS in localstack/localstack#12487).
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

fn error(code: &str, message: &str, location: Option<&str>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: code.to_string(),
        message: message.to_string(),
        location: location.map(str::to_string),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Top,
    Branch,
    Processor,
}

impl Scope {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Scope::Top => &[
                "Comment",
                "StartAt",
                "States",
                "TimeoutSeconds",
                "Version",
                "QueryLanguage",
            ],
            Scope::Branch => &["Comment", "StartAt", "States"],
            Scope::Processor => &["Comment", "StartAt", "States", "ProcessorConfig"],
        }
    }
}

/// What follows a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Exactly one of `Next` or `End: true`.
    NextOrEnd,
    /// Ends the scope (Succeed, Fail).
    Terminal,
    /// Transitions through its rules and `Default`.
    Choice,
}

struct TypeSpec {
    name: &'static str,
    fields: &'static [&'static str],
    required: &'static [&'static str],
    flow: Flow,
}

/// Every state may carry these.
const COMMON_FIELDS: &[&str] = &["Type", "Comment", "QueryLanguage"];

/// Allowed fields per state type, both query languages together; [`JSONPATH_ONLY`] and
/// [`JSONATA_ONLY`] then remove what the state's language forbids. The order is the one
/// AWS lists in its "should have one of these values" message.
const STATE_TYPES: &[TypeSpec] = &[
    TypeSpec {
        name: "Task",
        fields: &[
            "Next",
            "End",
            "Resource",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
            "Arguments",
            "Output",
        ],
        required: &["Resource"],
        flow: Flow::NextOrEnd,
    },
    TypeSpec {
        name: "Wait",
        fields: &[
            "Next",
            "End",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "InputPath",
            "OutputPath",
            "Assign",
            "Output",
        ],
        required: &[],
        flow: Flow::NextOrEnd,
    },
    TypeSpec {
        name: "Pass",
        fields: &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
            "Output",
        ],
        required: &[],
        flow: Flow::NextOrEnd,
    },
    TypeSpec {
        name: "Succeed",
        fields: &["InputPath", "OutputPath", "Output"],
        required: &[],
        flow: Flow::Terminal,
    },
    TypeSpec {
        name: "Fail",
        fields: &["Error", "ErrorPath", "Cause", "CausePath"],
        required: &[],
        flow: Flow::Terminal,
    },
    TypeSpec {
        name: "Choice",
        fields: &[
            "Choices",
            "Default",
            "InputPath",
            "OutputPath",
            "Assign",
            "Output",
        ],
        required: &["Choices"],
        flow: Flow::Choice,
    },
    TypeSpec {
        name: "Parallel",
        fields: &[
            "Next",
            "End",
            "Branches",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Assign",
            "Arguments",
            "Output",
        ],
        required: &["Branches"],
        flow: Flow::NextOrEnd,
    },
    TypeSpec {
        name: "Map",
        fields: &[
            "Next",
            "End",
            "ItemProcessor",
            "Iterator",
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "ItemReader",
            "ResultWriter",
            "ItemBatcher",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "Label",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "ResultSelector",
            "Retry",
            "Catch",
            "Assign",
            "Items",
            "Output",
        ],
        required: &[],
        flow: Flow::NextOrEnd,
    },
];

/// Fields that only make sense with JSONPath processing.
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
    "Iterator",
    "Variable",
];

/// Fields that only make sense with JSONata processing.
const JSONATA_ONLY: &[&str] = &["Arguments", "Output", "Items", "Condition"];

/// Fields holding a JSONPath that must select exactly one node when written to.
const REFERENCE_PATHS: &[&str] = &["ResultPath"];
/// Fields holding a JSONPath (`null` allowed where marked).
const PATH_FIELDS: &[(&str, bool)] = &[
    ("InputPath", true),
    ("OutputPath", true),
    ("ResultPath", true),
    ("ItemsPath", false),
    ("SecondsPath", false),
    ("TimestampPath", false),
    ("TimeoutSecondsPath", false),
    ("HeartbeatSecondsPath", false),
    ("MaxConcurrencyPath", false),
    ("ToleratedFailurePercentagePath", false),
    ("ToleratedFailureCountPath", false),
];
/// Fields holding a JSONPath or an intrinsic call.
const PATH_OR_CALL_FIELDS: &[&str] = &["ErrorPath", "CausePath"];
/// Fields holding a payload template, where `key.$` values are paths or intrinsics.
const TEMPLATE_FIELDS: &[&str] = &["Parameters", "ResultSelector", "ItemSelector"];

/// Pairs that may not appear together on one state.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("TimeoutSeconds", "TimeoutSecondsPath"),
    ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ("Error", "ErrorPath"),
    ("Cause", "CausePath"),
    ("MaxConcurrency", "MaxConcurrencyPath"),
    (
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
    ),
    ("ToleratedFailureCount", "ToleratedFailureCountPath"),
    ("ItemProcessor", "Iterator"),
    ("ItemSelector", "Parameters"),
];

const WAIT_FIELDS: &[&str] = &["Seconds", "SecondsPath", "Timestamp", "TimestampPath"];

const RETRIER_FIELDS: &[&str] = &[
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
];
const CATCHER_FIELDS: &[&str] = &[
    "ErrorEquals",
    "Next",
    "ResultPath",
    "Comment",
    "Assign",
    "Output",
];

/// The value type a Choice comparison takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    String,
    Number,
    Boolean,
    Timestamp,
    Path,
    /// `And`/`Or`: a non-empty array of rules.
    Rules,
    /// `Not`: one rule.
    Rule,
}

const CHOICE_OPERATORS: &[(&str, Operand)] = &[
    ("And", Operand::Rules),
    ("Or", Operand::Rules),
    ("Not", Operand::Rule),
    ("BooleanEquals", Operand::Boolean),
    ("BooleanEqualsPath", Operand::Path),
    ("IsBoolean", Operand::Boolean),
    ("IsNull", Operand::Boolean),
    ("IsNumeric", Operand::Boolean),
    ("IsPresent", Operand::Boolean),
    ("IsString", Operand::Boolean),
    ("IsTimestamp", Operand::Boolean),
    ("NumericEquals", Operand::Number),
    ("NumericEqualsPath", Operand::Path),
    ("NumericGreaterThan", Operand::Number),
    ("NumericGreaterThanPath", Operand::Path),
    ("NumericGreaterThanEquals", Operand::Number),
    ("NumericGreaterThanEqualsPath", Operand::Path),
    ("NumericLessThan", Operand::Number),
    ("NumericLessThanPath", Operand::Path),
    ("NumericLessThanEquals", Operand::Number),
    ("NumericLessThanEqualsPath", Operand::Path),
    ("StringEquals", Operand::String),
    ("StringEqualsPath", Operand::Path),
    ("StringGreaterThan", Operand::String),
    ("StringGreaterThanPath", Operand::Path),
    ("StringGreaterThanEquals", Operand::String),
    ("StringGreaterThanEqualsPath", Operand::Path),
    ("StringLessThan", Operand::String),
    ("StringLessThanPath", Operand::Path),
    ("StringLessThanEquals", Operand::String),
    ("StringLessThanEqualsPath", Operand::Path),
    ("StringMatches", Operand::String),
    ("TimestampEquals", Operand::Timestamp),
    ("TimestampEqualsPath", Operand::Path),
    ("TimestampGreaterThan", Operand::Timestamp),
    ("TimestampGreaterThanPath", Operand::Path),
    ("TimestampGreaterThanEquals", Operand::Timestamp),
    ("TimestampGreaterThanEqualsPath", Operand::Path),
    ("TimestampLessThan", Operand::Timestamp),
    ("TimestampLessThanPath", Operand::Path),
    ("TimestampLessThanEquals", Operand::Timestamp),
    ("TimestampLessThanEqualsPath", Operand::Path),
];

/// Variable names the service keeps for itself.
const RESERVED_VARIABLES: &[&str] = &["states"];

fn at(base: &str, key: &str) -> String {
    format!("{base}/{key}")
}

fn at_index(base: &str, key: &str, i: usize) -> String {
    format!("{base}/{key}[{i}]")
}

/// The root is written `/`, everything below it `/A/B`.
fn shown(loc: &str) -> &str {
    if loc.is_empty() {
        "/"
    } else {
        loc
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "BOOLEAN",
        Value::Number(n) if n.is_i64() || n.is_u64() => "INTEGER",
        Value::Number(_) => "NUMBER",
        Value::String(_) => "STRING",
        Value::Array(_) => "ARRAY",
        Value::Object(_) => "OBJECT",
    }
}

/// RFC 3339 `date-time`, strictly: `T` separator and a zone (`Z` or `±hh:mm`) are required.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let zone_ok = match &b[i..] {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] if (*sign == b'+' || *sign == b'-') => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
                && (h1 - b'0') * 10 + (h2 - b'0') < 24
                && (m1 - b'0') * 10 + (m2 - b'0') < 60
        }
        _ => false,
    };
    zone_ok && chrono::NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%dT%H:%M:%S").is_ok()
}

fn valid_path(text: &str) -> bool {
    JsonPath::parse(text).is_ok()
}

fn valid_path_or_call(text: &str) -> bool {
    if intrinsics::looks_like_call(text) {
        intrinsics::parse(text).is_ok()
    } else {
        valid_path(text)
    }
}

fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && name.chars().count() <= MAX_VARIABLE_NAME
        && !RESERVED_VARIABLES.contains(&name)
}

/// One transition out of a state, to check against the scope's names.
struct Edge {
    target: String,
    field: &'static str,
    location: String,
}

struct Checker {
    opts: Options,
    top_lang: Lang,
    out: Vec<Diagnostic>,
    /// State names are unique across the whole machine, nested scopes included.
    seen_names: HashMap<String, String>,
}

impl Checker {
    fn schema(&mut self, message: impl AsRef<str>, location: &str) {
        self.out.push(error(
            codes::SCHEMA_VALIDATION_FAILED,
            message.as_ref(),
            Some(shown(location)),
        ));
    }

    fn too_deep(&mut self, location: &str) {
        self.schema(TOO_DEEP, location);
    }

    fn unsupported(&mut self, field: &str, location: &str) {
        self.schema(format!("Field '{field}' is not supported"), location);
    }

    fn required(&mut self, obj: &Map<String, Value>, fields: &[&str], location: &str) -> bool {
        let missing: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| !obj.contains_key(*f))
            .collect();
        if !missing.is_empty() {
            self.schema(
                format!("These fields are required: [{}]", missing.join(", ")),
                location,
            );
        }
        missing.is_empty()
    }

    fn wrong_type(&mut self, field: &str, expected: &str, location: &str) {
        self.schema(
            format!("The value for the field '{field}' must be of type {expected}"),
            location,
        );
    }

    fn expect_string<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        field: &str,
        loc: &str,
    ) -> Option<&'v str> {
        match obj.get(field)? {
            Value::String(s) => Some(s),
            _ => {
                self.wrong_type(field, "STRING", &at(loc, field));
                None
            }
        }
    }

    /// An integer field in `min..=max`; JSONata states may give an expression instead.
    fn integer(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        min: i64,
        max: i64,
        lang: Lang,
        loc: &str,
    ) -> Option<i64> {
        let v = obj.get(field)?;
        let here = at(loc, field);
        match v {
            Value::String(s) if lang == Lang::Jsonata && is_jsonata_expr(s) => None,
            Value::Number(n) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Some(i),
                Some(_) => {
                    self.schema(
                        format!(
                            "The value for the field '{field}' must be between {min} and {max}"
                        ),
                        &here,
                    );
                    None
                }
                None => {
                    self.wrong_type(field, "INTEGER", &here);
                    None
                }
            },
            _ => {
                self.wrong_type(field, "INTEGER", &here);
                None
            }
        }
    }

    fn number(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        min: f64,
        max: f64,
        lang: Lang,
        loc: &str,
    ) {
        let Some(v) = obj.get(field) else { return };
        let here = at(loc, field);
        match v {
            Value::String(s) if lang == Lang::Jsonata && is_jsonata_expr(s) => {}
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if !(min..=max).contains(&x) {
                    self.schema(
                        format!(
                            "The value for the field '{field}' must be between {min:?} and {max:?}"
                        ),
                        &here,
                    );
                }
            }
            _ => self.wrong_type(field, "NUMBER", &here),
        }
    }

    fn query_language(&mut self, obj: &Map<String, Value>, loc: &str) -> Option<Lang> {
        let v = obj.get("QueryLanguage")?;
        let lang = Lang::from_name(v);
        if lang.is_none() {
            self.schema(
                "The field 'QueryLanguage' should have one of these values: [JSONPath, JSONata]",
                &at(loc, "QueryLanguage"),
            );
        }
        lang
    }

    fn machine(&mut self, m: &Map<String, Value>, loc: &str, scope: Scope, depth: usize) {
        if depth > MAX_NESTING {
            return self.too_deep(loc);
        }
        // AWS lists the missing top-level fields in this order.
        self.required(m, &["States", "StartAt"], loc);
        for key in m.keys() {
            if !scope.fields().contains(&key.as_str()) {
                self.unsupported(key, loc);
            }
        }
        self.expect_string(m, "Comment", loc);
        if scope == Scope::Top {
            self.query_language(m, loc);
            self.integer(m, "TimeoutSeconds", 1, MAX_SECONDS, Lang::JsonPath, loc);
            self.expect_string(m, "Version", loc);
        }
        if scope == Scope::Processor {
            self.processor_config(m.get("ProcessorConfig"), &at(loc, "ProcessorConfig"));
        }
        let start = self.expect_string(m, "StartAt", loc);
        let states = match m.get("States") {
            Some(Value::Object(s)) => s,
            Some(_) => return self.wrong_type("States", "OBJECT", &at(loc, "States")),
            None => return,
        };
        let states_loc = at(loc, "States");
        let mut edges: HashMap<&str, Vec<Edge>> = HashMap::new();
        let mut terminal = false;
        for (name, state) in states {
            let here = at(&states_loc, name);
            self.state_name(name, &here);
            let (out, ends) = self.state(state, &here, depth + 1);
            terminal |= ends;
            edges.insert(name.as_str(), out);
        }
        if let Some(start) = start {
            if !states.contains_key(start) {
                self.out.push(error(
                    codes::MISSING_TRANSITION_TARGET,
                    &format!("Missing 'StartAt' target: {start}"),
                    Some(&at(loc, "StartAt")),
                ));
            }
        }
        self.missing_targets(states, &edges);
        // Unreachable states are only meaningful once the entry point exists.
        if let Some(start) = start.filter(|s| states.contains_key(*s)) {
            self.unreachable(states, &edges, start, &states_loc);
        }
        if !states.is_empty() && !terminal {
            self.out.push(error(
                codes::MISSING_END_STATE,
                "Workflow has no terminal state",
                Some(shown(loc)),
            ));
        }
    }

    /// A state's name: not too long, and not used twice in the whole definition.
    fn state_name(&mut self, name: &str, here: &str) {
        if name.chars().count() > MAX_STATE_NAME {
            self.out.push(error(
                codes::INVALID_STATE_NAME,
                &format!(
                    "State name '{name}' exceeds the maximum length of {MAX_STATE_NAME} characters"
                ),
                Some(here),
            ));
        }
        if let Some(first) = self.seen_names.insert(name.to_string(), here.to_string()) {
            self.out.push(error(
                codes::DUPLICATE_STATE_NAME,
                &format!("Duplicate State name: '{name}' is also defined at {first}"),
                Some(here),
            ));
        }
    }

    /// Transitions to states that do not exist in this scope.
    fn missing_targets(&mut self, states: &Map<String, Value>, edges: &HashMap<&str, Vec<Edge>>) {
        // In the order the states are written: the diagnostics, and so CreateStateMachine's
        // message, are the same on every call (a HashMap's order is not).
        for out in states.keys().filter_map(|name| edges.get(name.as_str())) {
            for e in out {
                if !states.contains_key(&e.target) {
                    self.out.push(error(
                        codes::MISSING_TRANSITION_TARGET,
                        &format!("Missing '{}' target: {}", e.field, e.target),
                        Some(&e.location),
                    ));
                }
            }
        }
    }

    /// States no path of transitions leads to from `start`.
    fn unreachable(
        &mut self,
        states: &Map<String, Value>,
        edges: &HashMap<&str, Vec<Edge>>,
        start: &str,
        states_loc: &str,
    ) {
        let mut reached: HashSet<&str> = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for e in edges.get(n).into_iter().flatten() {
                if let Some((k, _)) = states.get_key_value(&e.target) {
                    if reached.insert(k.as_str()) {
                        queue.push_back(k.as_str());
                    }
                }
            }
        }
        for name in states.keys() {
            if !reached.contains(name.as_str()) {
                self.out.push(error(
                    codes::MISSING_TRANSITION_TARGET,
                    &format!("State \"{name}\" is not reachable."),
                    Some(&at(states_loc, name)),
                ));
            }
        }
    }

    fn processor_config(&mut self, v: Option<&Value>, loc: &str) {
        let Some(v) = v else { return };
        let Value::Object(pc) = v else {
            return self.wrong_type("ProcessorConfig", "OBJECT", loc);
        };
        for key in pc.keys() {
            if !["Mode", "ExecutionType"].contains(&key.as_str()) {
                self.unsupported(key, loc);
            }
        }
        let mode = match pc.get("Mode") {
            None => "INLINE",
            Some(Value::String(s)) if s == "INLINE" || s == "DISTRIBUTED" => s.as_str(),
            Some(_) => {
                self.schema(
                    "The field 'Mode' should have one of these values: [INLINE, DISTRIBUTED]",
                    &at(loc, "Mode"),
                );
                return;
            }
        };
        if mode == "DISTRIBUTED" && self.opts.machine_type == MachineType::Express {
            self.schema("The field 'Mode' with value 'DISTRIBUTED' is not supported inside 'EXPRESS' state machines", &at(loc, "Mode"));
        }
        match pc.get("ExecutionType") {
            None => {}
            Some(_) if mode == "INLINE" => self.unsupported("ExecutionType", loc),
            Some(Value::String(s)) if s == "STANDARD" || s == "EXPRESS" => {}
            Some(_) => self.schema(
                "The field 'ExecutionType' should have one of these values: [STANDARD, EXPRESS]",
                &at(loc, "ExecutionType"),
            ),
        }
    }

    /// Checks one state; returns its transitions and whether it can end the scope.
    fn state(&mut self, v: &Value, loc: &str, depth: usize) -> (Vec<Edge>, bool) {
        let mut edges = Vec::new();
        let Value::Object(s) = v else {
            self.schema(
                format!(
                    "The value of a state must be of type OBJECT but was {}",
                    type_name(v)
                ),
                loc,
            );
            return (edges, true);
        };
        if !self.required(s, &["Type"], loc) {
            return (edges, true);
        }
        let Some(spec) = s
            .get("Type")
            .and_then(Value::as_str)
            .and_then(|t| STATE_TYPES.iter().find(|x| x.name == t))
        else {
            let all: Vec<&str> = STATE_TYPES.iter().map(|t| t.name).collect();
            self.schema(
                format!(
                    "The field 'Type' should have one of these values: [{}]",
                    all.join(", ")
                ),
                &at(loc, "Type"),
            );
            return (edges, true);
        };
        let lang = self.state_lang(s, loc);
        self.state_fields(s, spec, lang, loc);
        if lang == Lang::Jsonata {
            self.jsonata_syntax(s, loc, depth);
        }
        let ends = match spec.flow {
            Flow::NextOrEnd => self.next_or_end(s, loc, &mut edges),
            Flow::Terminal => true,
            // A Choice ends nowhere; its rules' edges are checked with its fields.
            Flow::Choice => false,
        };
        self.io_fields(s, lang, loc, depth);
        match spec.name {
            "Task" => self.task(s, lang, loc),
            "Wait" => self.wait(s, lang, loc),
            "Choice" => self.choice(s, lang, loc, depth, &mut edges),
            "Parallel" => self.parallel(s, loc, depth),
            "Map" => self.map(s, lang, loc, depth),
            _ => {}
        }
        if s.contains_key("Retry") {
            self.retriers(s.get("Retry"), loc);
        }
        if s.contains_key("Catch") {
            self.catchers(s.get("Catch"), lang, loc, depth, &mut edges);
        }
        (edges, ends)
    }

    /// Every `{% %}` expression of a JSONata state must parse, so that a machine that
    /// validates never fails later on its own syntax. Nested states (a Map's
    /// ItemProcessor, a Parallel's Branches) are checked as states of their own.
    fn jsonata_syntax(&mut self, s: &Map<String, Value>, loc: &str, depth: usize) {
        for (k, v) in s {
            if !matches!(
                k.as_str(),
                "ItemProcessor" | "Iterator" | "Branches" | "Comment"
            ) {
                self.jsonata_value_syntax(v, &at(loc, k), depth);
            }
        }
    }

    fn jsonata_value_syntax(&mut self, v: &Value, loc: &str, depth: usize) {
        if depth > MAX_NESTING {
            return self.too_deep(loc);
        }
        match v {
            Value::String(text) => {
                let error = crate::query::Expr::parse(text).and_then(|e| {
                    let why = e.syntax_error()?;
                    Some(format!(
                        "The JSONata expression '{}' is not valid: {why}",
                        e.text()
                    ))
                });
                if let Some(message) = error {
                    self.schema(message, loc);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.jsonata_value_syntax(item, &format!("{loc}[{i}]"), depth + 1);
                }
            }
            Value::Object(o) => {
                for (k, item) in o {
                    self.jsonata_value_syntax(item, &at(loc, k), depth + 1);
                }
            }
            _ => {}
        }
    }

    /// The state's query language: its own, else the machine's.
    fn state_lang(&mut self, s: &Map<String, Value>, loc: &str) -> Lang {
        let own = self.query_language(s, loc);
        if own == Some(Lang::JsonPath) && self.top_lang == Lang::Jsonata {
            self.schema(
                "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
                loc,
            );
        }
        Lang::of_state(own, self.top_lang)
    }

    /// Which fields the state's type and language allow, require or exclude together.
    fn state_fields(&mut self, s: &Map<String, Value>, spec: &TypeSpec, lang: Lang, loc: &str) {
        let forbidden = match lang {
            Lang::JsonPath => JSONATA_ONLY,
            Lang::Jsonata => JSONPATH_ONLY,
        };
        for key in s.keys() {
            let k = key.as_str();
            let allowed = COMMON_FIELDS.contains(&k) || spec.fields.contains(&k);
            if !allowed || forbidden.contains(&k) {
                self.unsupported(k, loc);
            }
        }
        self.required(s, spec.required, loc);
        self.expect_string(s, "Comment", loc);
        for (a, b) in EXCLUSIVE {
            if s.contains_key(*a) && s.contains_key(*b) {
                self.schema(
                    format!("Only one of the fields '{a}' and '{b}' may be set"),
                    loc,
                );
            }
        }
    }

    /// Next or End, exactly one; records Next's edge and returns whether the state ends
    /// its scope.
    fn next_or_end(&mut self, s: &Map<String, Value>, loc: &str, edges: &mut Vec<Edge>) -> bool {
        let end = match s.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.wrong_type("End", "BOOLEAN", &at(loc, "End"));
                true
            }
        };
        let next = self.expect_string(s, "Next", loc);
        match (next, end) {
            (Some(_), true) => {
                self.schema("Only one of the fields 'Next' and 'End' may be set", loc)
            }
            (None, false) if !s.contains_key("Next") => {
                self.schema("Exactly one of the fields 'Next' or 'End' must be set", loc)
            }
            _ => {}
        }
        if let Some(n) = next {
            edges.push(Edge {
                target: n.to_string(),
                field: "Next",
                location: at(loc, "Next"),
            });
        }
        end
    }

    /// Paths, payload templates and `Assign`, common to most state types.
    fn io_fields(&mut self, s: &Map<String, Value>, lang: Lang, loc: &str, depth: usize) {
        if lang == Lang::JsonPath {
            for (field, nullable) in PATH_FIELDS {
                self.path_field(s, field, *nullable, loc);
            }
            for field in PATH_OR_CALL_FIELDS {
                match s.get(*field) {
                    None => {}
                    Some(Value::String(p)) if valid_path_or_call(p) => {}
                    Some(_) => self.schema(
                        format!("The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call"),
                        &at(loc, field),
                    ),
                }
            }
            for field in TEMPLATE_FIELDS {
                if let Some(v) = s.get(*field) {
                    self.template(v, &at(loc, field), depth + 1);
                }
            }
        }
        if let Some(v) = s.get("Assign") {
            self.assign(v, lang, &at(loc, "Assign"), depth + 1);
        }
        for field in ["Error", "Cause"] {
            if let Some(v) = s.get(field) {
                if !v.is_string() {
                    self.wrong_type(field, "STRING", &at(loc, field));
                }
            }
        }
    }

    fn path_field(&mut self, s: &Map<String, Value>, field: &str, nullable: bool, loc: &str) {
        let Some(v) = s.get(field) else { return };
        let here = at(loc, field);
        let ok = match v {
            Value::Null => nullable,
            Value::String(p) => match JsonPath::parse(p) {
                Ok(path) if REFERENCE_PATHS.contains(&field) => {
                    path.is_definite() && matches!(path.root(), crate::jsonpath::Root::Input)
                }
                Ok(_) => true,
                Err(_) => false,
            },
            _ => false,
        };
        if !ok {
            let kind = if REFERENCE_PATHS.contains(&field) {
                "a valid Reference Path"
            } else {
                "a valid JSONPath"
            };
            self.schema(
                format!("The value for the field '{field}' must be {kind}"),
                &here,
            );
        }
    }

    /// A distributed Map's ItemReader and ResultWriter, by the rules the engine reads
    /// them with (`item_reader::reader_format`, `map_writer::writer_config`), so that a
    /// definition that validates also loads; their JSONPath Parameters are templates.
    fn reader_and_writer(&mut self, s: &Map<String, Value>, lang: Lang, loc: &str, depth: usize) {
        type Check = fn(&Value) -> Result<(), String>;
        let fields: [(&str, Check); 2] = [
            ("ItemReader", |v| {
                crate::item_reader::reader_format(v).map(|_| ())
            }),
            ("ResultWriter", |v| {
                crate::map_writer::writer_config(v).map(|_| ())
            }),
        ];
        for (field, check) in fields {
            let Some(v @ Value::Object(o)) = s.get(field) else {
                continue;
            };
            let here = at(loc, field);
            if let Err(e) = check(v) {
                self.schema(e, &here);
            }
            if let (Lang::JsonPath, Some(p)) = (lang, o.get("Parameters")) {
                self.template(p, &at(&here, "Parameters"), depth + 1);
            }
        }
    }

    /// A JSONPath payload template: every `key.$` holds a path or an intrinsic call.
    fn template(&mut self, v: &Value, loc: &str, depth: usize) {
        if depth > MAX_NESTING {
            return self.too_deep(loc);
        }
        match v {
            Value::Object(o) => {
                for (k, child) in o {
                    if k.ends_with(".$") {
                        self.dynamic_value(k, child, loc);
                    } else if child.is_object() || child.is_array() {
                        self.template(child, &at(loc, k), depth + 1);
                    }
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    if child.is_object() || child.is_array() {
                        self.template(child, &format!("{loc}[{i}]"), depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// AWS reports a bad `key.$` value at the object that holds it.
    fn dynamic_value(&mut self, key: &str, v: &Value, loc: &str) {
        match v {
            Value::String(p) if valid_path_or_call(p) => {}
            Value::String(_) => self.schema(
                format!("The value for the field '{key}' must be a valid JSONPath or a valid intrinsic function call"),
                loc,
            ),
            other => self.schema(
                format!("The value for the field '{key}' must be a STRING that contains a JSONPath but was {}", type_name(other)),
                loc,
            ),
        }
    }

    fn assign(&mut self, v: &Value, lang: Lang, loc: &str, depth: usize) {
        let Value::Object(o) = v else {
            if !(lang == Lang::Jsonata && v.as_str().is_some_and(is_jsonata_expr)) {
                self.wrong_type("Assign", "OBJECT", loc);
            }
            return;
        };
        for (k, child) in o {
            let dynamic = lang == Lang::JsonPath && k.ends_with(".$");
            let name = if dynamic {
                &k[..k.len() - 2]
            } else {
                k.as_str()
            };
            if !valid_variable_name(name) {
                self.schema(format!("The variable name '{name}' is invalid"), loc);
            }
            if lang == Lang::JsonPath {
                if dynamic {
                    self.dynamic_value(k, child, loc);
                } else if child.is_object() || child.is_array() {
                    self.template(child, &at(loc, k), depth + 1);
                }
            }
        }
    }

    fn task(&mut self, s: &Map<String, Value>, lang: Lang, loc: &str) {
        if let Some(res) = self.expect_string(s, "Resource", loc) {
            let here = at(loc, "Resource");
            match resources::classify(res) {
                None => self.schema(
                    format!("The resource provided {res} is not recognized. The value is not a valid resource ARN, or the resource is not available in this region."),
                    &here,
                ),
                Some(r) if self.opts.machine_type == MachineType::Express => match r {
                    Resource::Integration { pattern: p @ (Pattern::Sync | Pattern::Sync2 | Pattern::WaitForTaskToken) } => {
                        // The trailing space is AWS's.
                        self.schema(format!("Express state machine does not support '{}' service integration ", p.suffix()), &here)
                    }
                    Resource::Activity => self.schema("Express state machine does not support activities", &here),
                    _ => {}
                },
                Some(_) => {}
            }
        }
        let timeout = self.integer(s, "TimeoutSeconds", 1, MAX_SECONDS, lang, loc);
        let heartbeat = self.integer(s, "HeartbeatSeconds", 1, MAX_SECONDS, lang, loc);
        if let (Some(t), Some(h)) = (timeout, heartbeat) {
            if h >= t {
                self.schema("The value for the field 'HeartbeatSeconds' must be smaller than the value for the field 'TimeoutSeconds'", &at(loc, "HeartbeatSeconds"));
            }
        }
        if let Some(c) = s.get("Credentials") {
            if !c.is_object() {
                self.wrong_type("Credentials", "OBJECT", &at(loc, "Credentials"));
            }
        }
    }

    fn wait(&mut self, s: &Map<String, Value>, lang: Lang, loc: &str) {
        let present = WAIT_FIELDS.iter().filter(|f| s.contains_key(**f)).count();
        if present != 1 {
            self.schema(
                format!(
                    "Exactly one of these fields must be set: [{}]",
                    WAIT_FIELDS.join(", ")
                ),
                loc,
            );
        }
        self.integer(s, "Seconds", 0, MAX_SECONDS, lang, loc);
        if let Some(v) = s.get("Timestamp") {
            let ok = match v {
                Value::String(t) => is_rfc3339(t) || (lang == Lang::Jsonata && is_jsonata_expr(t)),
                _ => false,
            };
            if !ok {
                self.schema(
                    "String does not match RFC3339 timestamp",
                    &at(loc, "Timestamp"),
                );
            }
        }
    }

    fn choice(
        &mut self,
        s: &Map<String, Value>,
        lang: Lang,
        loc: &str,
        depth: usize,
        edges: &mut Vec<Edge>,
    ) {
        match s.get("Choices") {
            None => {}
            Some(Value::Array(rules)) if !rules.is_empty() => {
                for (i, rule) in rules.iter().enumerate() {
                    let here = at_index(loc, "Choices", i);
                    if let Some(next) = self.rule(rule, lang, &here, true, depth + 1) {
                        edges.push(Edge {
                            target: next,
                            field: "Next",
                            location: at(&here, "Next"),
                        });
                    }
                }
            }
            Some(Value::Array(_)) => self.schema(
                "The field 'Choices' should be non-empty",
                &at(loc, "Choices"),
            ),
            Some(_) => self.wrong_type("Choices", "ARRAY", &at(loc, "Choices")),
        }
        if let Some(d) = self.expect_string(s, "Default", loc) {
            edges.push(Edge {
                target: d.to_string(),
                field: "Default",
                location: at(loc, "Default"),
            });
        }
    }

    /// Checks a Choice rule; a top-level one returns its `Next`.
    fn rule(
        &mut self,
        v: &Value,
        lang: Lang,
        loc: &str,
        top: bool,
        depth: usize,
    ) -> Option<String> {
        if depth > MAX_NESTING {
            self.too_deep(loc);
            return None;
        }
        let Value::Object(r) = v else {
            self.schema(
                format!(
                    "A choice rule must be of type OBJECT but was {}",
                    type_name(v)
                ),
                loc,
            );
            return None;
        };
        let mut allowed: Vec<&str> = vec!["Comment"];
        if top {
            allowed.extend(["Next", "Assign"]);
        }
        match lang {
            Lang::Jsonata => allowed.extend(["Condition", "Output"]),
            Lang::JsonPath => {
                allowed.push("Variable");
                allowed.extend(CHOICE_OPERATORS.iter().map(|(k, _)| *k));
            }
        }
        for k in r.keys() {
            if !allowed.contains(&k.as_str()) {
                self.unsupported(k, loc);
            }
        }
        if top {
            self.required(r, &["Next"], loc);
        }
        if let Some(a) = r.get("Assign") {
            self.assign(a, lang, &at(loc, "Assign"), depth + 1);
        }
        if lang == Lang::Jsonata {
            self.required(r, &["Condition"], loc);
            match r.get("Condition") {
                None | Some(Value::Bool(_)) => {}
                Some(Value::String(c)) if is_jsonata_expr(c) => {}
                Some(_) => self.schema(
                    "The value for the field 'Condition' must be a JSONata expression",
                    &at(loc, "Condition"),
                ),
            }
        } else {
            self.comparison(r, lang, loc, depth);
        }
        if top {
            return self.expect_string(r, "Next", loc).map(str::to_string);
        }
        None
    }

    fn comparison(&mut self, r: &Map<String, Value>, lang: Lang, loc: &str, depth: usize) {
        let ops: Vec<(&String, &Value, Operand)> = r
            .iter()
            .filter_map(|(k, v)| {
                CHOICE_OPERATORS
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, o)| (k, v, *o))
            })
            .collect();
        if ops.len() != 1 {
            self.schema(
                "A choice rule must have exactly one comparison operator",
                loc,
            );
        }
        let Some(&(op, operand, kind)) = ops.first() else {
            return;
        };
        let compound = matches!(kind, Operand::Rules | Operand::Rule);
        match r.get("Variable") {
            None if !compound => {
                self.required(r, &["Variable"], loc);
            }
            Some(_) if compound => self.unsupported("Variable", loc),
            Some(Value::String(p)) if valid_path(p) => {}
            Some(_) => self.schema(
                "The value for the field 'Variable' must be a valid JSONPath",
                &at(loc, "Variable"),
            ),
            None => {}
        }
        let here = at(loc, op);
        let bad = |this: &mut Self, what: &str| {
            this.schema(
                format!("The value for the field '{op}' must be {what}"),
                &here,
            );
        };
        match kind {
            Operand::String if !operand.is_string() => bad(self, "a STRING"),
            Operand::Number if !operand.is_number() => bad(self, "a NUMBER"),
            Operand::Boolean if !operand.is_boolean() => bad(self, "a BOOLEAN"),
            Operand::Timestamp if !operand.as_str().is_some_and(is_rfc3339) => {
                bad(self, "a valid RFC3339 timestamp")
            }
            Operand::Path if !operand.as_str().is_some_and(valid_path) => {
                bad(self, "a valid JSONPath")
            }
            Operand::Rules => match operand {
                Value::Array(rules) if !rules.is_empty() => {
                    for (i, sub) in rules.iter().enumerate() {
                        self.rule(sub, lang, &format!("{here}[{i}]"), false, depth + 1);
                    }
                }
                _ => bad(self, "a non-empty ARRAY of choice rules"),
            },
            Operand::Rule => {
                self.rule(operand, lang, &here, false, depth + 1);
            }
            _ => {}
        }
    }

    fn parallel(&mut self, s: &Map<String, Value>, loc: &str, depth: usize) {
        match s.get("Branches") {
            None => {}
            Some(Value::Array(bs)) if !bs.is_empty() => {
                for (i, b) in bs.iter().enumerate() {
                    let here = at_index(loc, "Branches", i);
                    match b {
                        Value::Object(m) => self.machine(m, &here, Scope::Branch, depth + 1),
                        other => self.schema(
                            format!(
                                "A branch must be of type OBJECT but was {}",
                                type_name(other)
                            ),
                            &here,
                        ),
                    }
                }
            }
            Some(Value::Array(_)) => self.schema(
                "The field 'Branches' should be non-empty",
                &at(loc, "Branches"),
            ),
            Some(_) => self.wrong_type("Branches", "ARRAY", &at(loc, "Branches")),
        }
    }

    fn map(&mut self, s: &Map<String, Value>, lang: Lang, loc: &str, depth: usize) {
        let processor = ["ItemProcessor", "Iterator"]
            .into_iter()
            .find(|f| s.contains_key(*f));
        match processor {
            None => {
                self.required(s, &["ItemProcessor"], loc);
            }
            Some(field) => match &s[field] {
                Value::Object(m) => self.machine(m, &at(loc, field), Scope::Processor, depth + 1),
                _ => self.wrong_type(field, "OBJECT", &at(loc, field)),
            },
        }
        self.integer(s, "MaxConcurrency", 0, i64::MAX, lang, loc);
        self.number(s, "ToleratedFailurePercentage", 0.0, 100.0, lang, loc);
        self.integer(s, "ToleratedFailureCount", 0, i64::MAX, lang, loc);
        for field in ["ItemReader", "ResultWriter", "ItemBatcher"] {
            if let Some(v) = s.get(field) {
                if !v.is_object() {
                    self.wrong_type(field, "OBJECT", &at(loc, field));
                }
            }
        }
        if let Some(Value::Object(b)) = s.get("ItemBatcher") {
            self.item_batcher(b, lang, &at(loc, "ItemBatcher"), depth + 1);
        }
        self.reader_and_writer(s, lang, loc, depth);
        if let Some(label) = self.expect_string(s, "Label", loc) {
            if label.chars().count() > 40 {
                self.schema(
                    "The value for the field 'Label' must be at most 40 characters long",
                    &at(loc, "Label"),
                );
            }
        }
    }

    /// A Map's `ItemBatcher`: its limits are counts, given or read by a path, and its
    /// `BatchInput` is a payload template like `Parameters` (what the model compiles).
    fn item_batcher(&mut self, b: &Map<String, Value>, lang: Lang, loc: &str, depth: usize) {
        for field in ["MaxItemsPerBatch", "MaxInputBytesPerBatch"] {
            self.integer(b, field, 0, i64::MAX, lang, loc);
            if lang == Lang::JsonPath {
                self.path_field(b, &format!("{field}Path"), false, loc);
            }
        }
        if let (Some(v), Lang::JsonPath) = (b.get("BatchInput"), lang) {
            self.template(v, &at(loc, "BatchInput"), depth);
        }
    }

    /// `ErrorEquals` of one retrier or catcher.
    fn error_equals(&mut self, r: &Map<String, Value>, loc: &str) -> bool {
        let here = at(loc, "ErrorEquals");
        let Some(v) = r.get("ErrorEquals") else {
            return false;
        };
        let Value::Array(errs) = v else {
            self.wrong_type("ErrorEquals", "ARRAY", &here);
            return false;
        };
        if errs.is_empty() {
            self.schema("The field 'ErrorEquals' should be non-empty", &here);
        }
        let mut has_all = false;
        for e in errs {
            match e.as_str() {
                Some(names::ALL) => has_all = true,
                // Any other name, `States.` ones included (see `names::PREDEFINED`).
                Some(_) => {}
                None => self.schema(
                    "The error names in 'ErrorEquals' must be of type STRING",
                    &here,
                ),
            }
        }
        if has_all && errs.len() > 1 {
            self.schema("'States.ALL' must appear alone in 'ErrorEquals'", &here);
        }
        has_all
    }

    fn retriers(&mut self, v: Option<&Value>, loc: &str) {
        let here = at(loc, "Retry");
        let Some(Value::Array(rs)) = v else {
            return self.wrong_type("Retry", "ARRAY", &here);
        };
        for (i, r) in rs.iter().enumerate() {
            let rl = at_index(loc, "Retry", i);
            let Value::Object(r) = r else {
                self.schema(
                    format!("A retrier must be of type OBJECT but was {}", type_name(r)),
                    &rl,
                );
                continue;
            };
            for k in r.keys() {
                if !RETRIER_FIELDS.contains(&k.as_str()) {
                    self.unsupported(k, &rl);
                }
            }
            self.required(r, &["ErrorEquals"], &rl);
            if self.error_equals(r, &rl) && i + 1 != rs.len() {
                self.schema("A retrier with 'States.ALL' must be the last retrier", &rl);
            }
            self.integer(r, "IntervalSeconds", 1, MAX_SECONDS, Lang::JsonPath, &rl);
            self.integer(r, "MaxAttempts", 0, MAX_SECONDS, Lang::JsonPath, &rl);
            self.integer(r, "MaxDelaySeconds", 1, MAX_SECONDS, Lang::JsonPath, &rl);
            self.number(r, "BackoffRate", 1.0, f64::MAX, Lang::JsonPath, &rl);
            match r.get("JitterStrategy") {
                None => {}
                Some(Value::String(j)) if j == "FULL" || j == "NONE" => {}
                Some(_) => self.schema(
                    "The field 'JitterStrategy' should have one of these values: [FULL, NONE]",
                    &at(&rl, "JitterStrategy"),
                ),
            }
        }
    }

    fn catchers(
        &mut self,
        v: Option<&Value>,
        lang: Lang,
        loc: &str,
        depth: usize,
        edges: &mut Vec<Edge>,
    ) {
        let here = at(loc, "Catch");
        let Some(Value::Array(cs)) = v else {
            return self.wrong_type("Catch", "ARRAY", &here);
        };
        for (i, c) in cs.iter().enumerate() {
            let cl = at_index(loc, "Catch", i);
            let Value::Object(c) = c else {
                self.schema(
                    format!("A catcher must be of type OBJECT but was {}", type_name(c)),
                    &cl,
                );
                continue;
            };
            let forbidden = match lang {
                Lang::JsonPath => JSONATA_ONLY,
                Lang::Jsonata => JSONPATH_ONLY,
            };
            for k in c.keys() {
                if !CATCHER_FIELDS.contains(&k.as_str()) || forbidden.contains(&k.as_str()) {
                    self.unsupported(k, &cl);
                }
            }
            self.required(c, &["ErrorEquals", "Next"], &cl);
            if self.error_equals(c, &cl) && i + 1 != cs.len() {
                self.schema("A catcher with 'States.ALL' must be the last catcher", &cl);
            }
            if lang == Lang::JsonPath {
                self.path_field(c, "ResultPath", true, &cl);
            }
            if let Some(a) = c.get("Assign") {
                self.assign(a, lang, &at(&cl, "Assign"), depth + 1);
            }
            if let Some(n) = self.expect_string(c, "Next", &cl) {
                edges.push(Edge {
                    target: n.to_string(),
                    field: "Next",
                    location: at(&cl, "Next"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_values_get_a_diagnostic_not_a_stack_overflow() {
        // Built in code, so serde_json's parse-time recursion limit does not apply.
        let mut rule = json!({"Variable": "$.a", "IsNull": true});
        for _ in 0..500 {
            rule = json!({ "Not": rule });
        }
        let mut choice = json!({"Type": "Choice", "Default": "Y"});
        choice["Choices"] = json!([{ "Not": rule, "Next": "Y" }]);
        let def = json!({"StartAt": "C", "States": {"C": choice, "Y": {"Type": "Succeed"}}});
        let d = validate(&def, Options::default());
        assert!(d.iter().any(|d| d.message == TOO_DEEP), "{d:?}");
    }

    #[test]
    fn rfc3339() {
        assert!(is_rfc3339("2016-03-14T01:59:00Z"));
        assert!(is_rfc3339("2016-03-14T01:59:00.123+05:30"));
        for bad in [
            "2016-12-05 21:29:29Z",
            "2016-12-05T21:29:29",
            "2016-13-05T21:29:29Z",
            "2016-12-05T25:29:29Z",
            "05-12-2016T21:29:29Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
