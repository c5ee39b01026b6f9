//! JSONata in state machines: a `{% ... %}` field compiled once with the definition,
//! evaluated with `$states` and the workflow's variables bound and Step Functions' own
//! functions added, its failures worded as AWS words them (`States.QueryEvaluationError`).
//!
//! The language itself is the `jsonata` crate; this module is what Step Functions puts
//! around it. Evaluation stays pure: time and random numbers come from the caller
//! ([`Draws`]), which takes them from the execution's `Host`.

use crate::error::{names, Failure};
use crate::intrinsics;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::rc::Rc;

/// A JSONata expression from a definition: `text` is what stood between `{%` and `%}`,
/// trimmed, as AWS quotes it in errors. A syntax error is kept and reported when the
/// expression is evaluated, so a definition that validates always loads.
pub struct Expr {
    text: String,
    compiled: Result<jsonata::Compiled, jsonata::Outcome>,
    needs: Needs,
}

/// What evaluating expressions needs from their execution, read from their text once;
/// a field's expressions are prepared together with the union of theirs.
#[derive(Debug, Clone, Default)]
struct Needs {
    /// The `$name`s read as values: only these are bound.
    refs: Vec<String>,
    /// The `$name`s called (`$name(`): the host functions needed.
    calls: Vec<String>,
    /// Which members of `$states` may be read: only those are built (the context
    /// object and a large input are not free to copy).
    reads: StatesReads,
}

impl Needs {
    fn add(&mut self, other: &Needs) {
        for (mine, theirs) in [
            (&mut self.refs, &other.refs),
            (&mut self.calls, &other.calls),
        ] {
            for name in theirs {
                if !mine.contains(name) {
                    mine.push(name.clone());
                }
            }
        }
        self.reads = self.reads.union(other.reads);
    }

    fn calls(&self, names: &[&str]) -> bool {
        self.calls.iter().any(|r| names.contains(&r.as_str()))
    }
}

/// The members of `$states` an expression may read, judged from its text: `$states`
/// followed by anything but `.member` counts as all of them. `context` is a set of the
/// context object's members ([`CONTEXT_MEMBERS`], one bit each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StatesReads {
    input: bool,
    result: bool,
    error_output: bool,
    context: u8,
}

/// The context object's members, in the order of [`StatesReads::context`]'s bits.
pub const CONTEXT_MEMBERS: [&str; 5] = ["Execution", "StateMachine", "State", "Task", "Map"];

const ALL_CONTEXT: u8 = (1 << CONTEXT_MEMBERS.len()) - 1;

impl StatesReads {
    const ALL: StatesReads = StatesReads {
        input: true,
        result: true,
        error_output: true,
        context: ALL_CONTEXT,
    };

    fn union(self, o: StatesReads) -> StatesReads {
        StatesReads {
            input: self.input || o.input,
            result: self.result || o.result,
            error_output: self.error_output || o.error_output,
            context: self.context | o.context,
        }
    }

    /// The context members read after `context` (the text following it).
    fn context_members(after: &str) -> u8 {
        let Some(member) = after.trim_start().strip_prefix('.') else {
            return ALL_CONTEXT;
        };
        let member = member.trim_start();
        CONTEXT_MEMBERS
            .iter()
            .position(|m| {
                member.starts_with(m)
                    && !member[m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
            .map_or(ALL_CONTEXT, |i| 1 << i)
    }

    fn of(text: &str) -> StatesReads {
        let mut reads = StatesReads::default();
        for (at, _) in text.match_indices("$states") {
            let rest = text[at + "$states".len()..].trim_start();
            let Some(member) = rest.strip_prefix('.') else {
                return StatesReads::ALL;
            };
            let member = member.trim_start();
            if member.starts_with("input") {
                reads.input = true;
            } else if member.starts_with("result") {
                reads.result = true;
            } else if member.starts_with("errorOutput") {
                reads.error_output = true;
            } else if let Some(after) = member.strip_prefix("context") {
                reads.context |= Self::context_members(after);
            } else {
                return StatesReads::ALL;
            }
        }
        reads
    }
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{% {} %}}", self.text)
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// Step Functions' own functions, beside the language's.
const SFN_FUNCTIONS: &[&str] = &["partition", "range", "hash", "random", "uuid", "parse"];

/// Functions whose answer depends on the world: they are replaced by ones reading the
/// caller's clock, so that evaluation stays pure.
const CLOCK_FUNCTIONS: &[&str] = &["now", "millis"];

/// `$eval` is not in Step Functions' JSONata ("use $parse instead").
const REMOVED_FUNCTIONS: &[&str] = &["eval"];

/// Evaluation bounds: far beyond what a state's expression needs, near enough that a
/// hostile one (endless recursion) ends with an error instead of holding a worker.
const LIMITS: jsonata::Limits = jsonata::Limits {
    time_ms: Some(10_000),
    depth: Some(1_000),
};

impl Expr {
    /// The expression in `s` if it is written `{% ... %}`.
    pub fn parse(s: &str) -> Option<Expr> {
        let inner = s.strip_prefix("{%")?.strip_suffix("%}")?;
        let text = inner.trim().to_string();
        let (refs, calls) = references(&text);
        Some(Expr {
            compiled: jsonata::Compiled::new(&text),
            needs: Needs {
                refs,
                calls,
                reads: StatesReads::of(&text),
            },
            text,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The syntax error, if the expression has one (the validator reports it).
    pub fn syntax_error(&self) -> Option<String> {
        match &self.compiled {
            Err(jsonata::Outcome::Error { code, message }) => Some(format!("{code}: {message}")),
            _ => None,
        }
    }

    /// The workflow variables the expression may read (every `$name` but `$states` and
    /// the ones it calls).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.needs
            .refs
            .iter()
            .map(String::as_str)
            .filter(|r| *r != "states")
    }
}

/// The `$states` of one evaluation: the state's input, and where the field may read
/// them its result (Output and Assign of Task, Parallel, Map) or its error (a Catch).
#[derive(Clone, Copy)]
pub struct States<'a> {
    pub input: &'a Value,
    pub result: Option<&'a Value>,
    pub error_output: Option<&'a Value>,
}

impl<'a> States<'a> {
    pub fn input(input: &'a Value) -> Self {
        States {
            input,
            result: None,
            error_output: None,
        }
    }

    /// Binds `$states` with the members `reads` asks for, each converted where it is;
    /// of the context object, only the members read are built.
    fn bind<D: Draws + ?Sized>(self, reads: StatesReads, draws: &D, out: &mut jsonata::Bindings) {
        let context = (reads.context != 0).then(|| {
            let mut context = Map::new();
            for (i, name) in CONTEXT_MEMBERS.iter().enumerate() {
                if reads.context & (1 << i) != 0 {
                    if let Some(v) = draws.context_member(name) {
                        context.insert((*name).to_string(), v);
                    }
                }
            }
            Value::Object(context)
        });
        let mut members: Vec<(&str, &Value)> = Vec::with_capacity(4);
        if reads.input {
            members.push(("input", self.input));
        }
        if let (true, Some(r)) = (reads.result, self.result) {
            members.push(("result", r));
        }
        if let (true, Some(e)) = (reads.error_output, self.error_output) {
            members.push(("errorOutput", e));
        }
        if let Some(c) = &context {
            members.push(("context", c));
        }
        out.bind_object("states", &members);
    }
}

/// What an evaluation takes from its execution: the context object, variables, and the
/// host's time and random numbers (drawn only when the expression calls for them).
pub trait Draws {
    fn context_object(&self) -> Value;
    /// One member of the context object (`Execution`, `Map`, ...), built alone.
    fn context_member(&self, name: &str) -> Option<Value> {
        self.context_object().get(name).cloned()
    }
    fn variable(&self, name: &str) -> Option<&Value>;
    fn random_u64(&mut self) -> u64;
    fn now(&mut self) -> DateTime<Utc>;
}

/// A field's location in a state, as AWS names it in errors: `Output/result/0`.
#[derive(Clone, Copy)]
pub struct FieldPath<'a> {
    pub parent: Option<&'a FieldPath<'a>>,
    pub name: &'a str,
}

impl<'a> FieldPath<'a> {
    pub fn root(name: &'a str) -> Self {
        FieldPath { parent: None, name }
    }

    pub fn child(&'a self, name: &'a str) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            name,
        }
    }
}

impl std::fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent {
            write!(f, "{p}/")?;
        }
        f.write_str(self.name)
    }
}

/// Evaluates `e` for `field`: its value, or the States.QueryEvaluationError AWS gives
/// for an error, an undefined result or a function.
pub fn evaluate<D: Draws + ?Sized>(
    e: &Expr,
    states: States,
    draws: &mut D,
    field: &FieldPath,
) -> Result<Value, Failure> {
    let prepared = prepare(&[e], states, draws);
    evaluate_prepared(e, &prepared, field)
}

/// What the expressions of one field need, converted to the engine's form once: the
/// variables and `$states` members any of them reads, and the host functions any calls.
pub struct Prepared {
    bindings: jsonata::Bindings,
    functions: jsonata::Functions,
}

/// Prepares the evaluation of `exprs` (a field's expressions) over `states`.
pub fn prepare<D: Draws + ?Sized>(exprs: &[&Expr], states: States, draws: &mut D) -> Prepared {
    let mut merged = Needs::default();
    for e in exprs {
        merged.add(&e.needs);
    }
    Prepared {
        bindings: bindings(&merged, states, draws),
        functions: functions(&merged, draws),
    }
}

/// Evaluates `e`, one of the expressions `p` was prepared for.
pub fn evaluate_prepared(e: &Expr, p: &Prepared, field: &FieldPath) -> Result<Value, Failure> {
    let compiled = match &e.compiled {
        Ok(c) => c,
        Err(outcome) => return Err(failure(e, field, outcome)),
    };
    let input = jsonata::Input::new(None);
    match compiled.evaluate_bound(&input, &p.bindings, &p.functions, LIMITS) {
        jsonata::Outcome::Value(v) => Ok(v),
        other => Err(failure(e, field, &other)),
    }
}

/// The error for an evaluation that gave no usable value.
fn failure(e: &Expr, field: &FieldPath, outcome: &jsonata::Outcome) -> Failure {
    let what = match outcome {
        jsonata::Outcome::Undefined => "returned nothing (undefined).".to_string(),
        jsonata::Outcome::Function => "returned an unsupported result type.".to_string(),
        jsonata::Outcome::Error { code, message } => {
            format!("threw an error during evaluation. {code}: {message}")
        }
        jsonata::Outcome::Value(_) => "returned a value.".to_string(),
    };
    query_error(format!(
        "The JSONata expression '{}' specified for the field '{field}' {what}",
        e.text
    ))
}

/// The field a JSONata error names (`Output/error`), for the EvaluationFailed event's
/// `location`: read back from the cause, which [`failure`] and [`wrong_type`] word.
pub fn location(cause: &str) -> Option<&str> {
    const MARK: &str = "specified for the field '";
    let at = cause.find(MARK)? + MARK.len();
    let len = cause[at..].find('\'')?;
    Some(&cause[at..at + len])
}

/// A field's value of the wrong JSON type (Items not an array, a Condition not a
/// boolean, ...): `expected` is the type AWS names.
pub fn wrong_type(e: &Expr, field: &FieldPath, expected: &str, got: &Value) -> Failure {
    query_error(format!(
        "The JSONata expression '{}' specified for the field '{field}' returned an unexpected result type. Expected '{expected}', but was '{}' for value: {}",
        e.text,
        intrinsics::type_name(got),
        serde_json::to_string(got).unwrap_or_default()
    ))
}

pub fn query_error(cause: String) -> Failure {
    Failure::new(names::QUERY_EVALUATION_ERROR, cause)
}

fn bindings<D: Draws + ?Sized>(e: &Needs, states: States, draws: &mut D) -> jsonata::Bindings {
    let mut out = jsonata::Bindings::default();
    for name in &e.refs {
        if name == "states" {
            states.bind(e.reads, draws, &mut out);
        } else if let Some(v) = draws.variable(name) {
            out.bind(name, v);
        }
    }
    out
}

/// The host functions `e` calls: Step Functions' own, the clock's, and `$eval` taken
/// away. Built per evaluation because they hold this evaluation's draws.
fn functions<D: Draws + ?Sized>(e: &Needs, draws: &mut D) -> jsonata::Functions {
    let mut f = jsonata::Functions::new();
    if e.calls(SFN_FUNCTIONS) {
        pure_functions(&mut f);
        if e.calls(&["random", "uuid"]) {
            random_functions(&mut f, draws.random_u64());
        }
    }
    if e.calls(CLOCK_FUNCTIONS) {
        clock_functions(&mut f, draws.now());
    }
    if e.calls(REMOVED_FUNCTIONS) {
        for name in REMOVED_FUNCTIONS {
            f.add(name, |_| {
                Err(fn_error("T1006", "Attempted to invoke a non-function"))
            });
        }
    }
    f
}

/// Step Functions' functions for JSONata outside a state machine (`oms jsonata`): the
/// language keeps its own `$random`, `$now` and `$eval`, and `$uuid` draws from `seed`.
pub fn standalone_functions(seed: u64) -> jsonata::Functions {
    let mut f = jsonata::Functions::new();
    pure_functions(&mut f);
    let state = Rc::new(Cell::new(seed));
    f.add("uuid", move |_| {
        let (hi, lo) = (split_mix(&state), split_mix(&state));
        Ok(Some(Value::String(uuid_from(hi, lo))))
    });
    f
}

/// The next number of a SplitMix64 sequence kept in `state`.
fn split_mix(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fn_error(code: &str, message: impl Into<String>) -> jsonata::FunctionError {
    jsonata::FunctionError {
        code: code.to_string(),
        message: message.into(),
    }
}

/// An intrinsic's failure as a function's error: its cause, with the code the language
/// uses for a bad argument.
fn from_failure(f: Failure) -> jsonata::FunctionError {
    fn_error("D3137", f.cause.unwrap_or(f.error))
}

/// Arguments as the intrinsics take them: an undefined one is JSON null.
fn json_args<const N: usize>(args: &[Option<Value>]) -> [Value; N] {
    std::array::from_fn(|i| args.get(i).cloned().flatten().unwrap_or(Value::Null))
}

fn pure_functions(f: &mut jsonata::Functions) {
    f.add("partition", |args| {
        intrinsics::array_partition("$partition", &json_args::<2>(args))
            .map(Some)
            .map_err(from_failure)
    });
    f.add("range", |args| {
        // A one-item range is a singleton sequence, which JSONata gives as the item
        // itself (recorded: `$range(1, 9, 9)` is 1).
        match intrinsics::array_range("$range", &json_args::<3>(args)).map_err(from_failure)? {
            Value::Array(mut items) if items.len() == 1 => Ok(items.pop()),
            other => Ok(Some(other)),
        }
    });
    f.add("hash", |args| {
        intrinsics::hash("$hash", &json_args::<2>(args))
            .map(Some)
            .map_err(from_failure)
    });
    f.add("parse", |args| {
        let [text] = json_args::<1>(args);
        match text {
            Value::String(_) => intrinsics::string_to_json("$parse", &text)
                .map(Some)
                .map_err(from_failure),
            other => Err(fn_error(
                "T0410",
                format!(
                    "Argument 1 of function \"parse\" does not match function signature: expected a string, got {}",
                    intrinsics::type_name(&other)
                ),
            )),
        }
    });
}

/// `$random([seed])` and `$uuid()`, from one number drawn from the host per evaluation.
fn random_functions(f: &mut jsonata::Functions, seed: u64) {
    let state = Rc::new(Cell::new(seed));
    // The evaluation's numbers follow from the one host draw.
    let draw = move || split_mix(&state);
    let draw = Rc::new(draw);
    let d = Rc::clone(&draw);
    f.add("random", move |args| {
        let x = match args.first().cloned().flatten() {
            None | Some(Value::Null) => (d() >> 11) as f64 / (1u64 << 53) as f64,
            Some(Value::Number(n)) => {
                let seed = n.as_i64().unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64);
                intrinsics::JavaRandom::new(seed).next_double()
            }
            Some(other) => {
                return Err(fn_error(
                    "T0410",
                    format!(
                        "Argument 1 of function \"random\" does not match function signature: expected a number, got {}",
                        intrinsics::type_name(&other)
                    ),
                ))
            }
        };
        Ok(Some(Value::from(x)))
    });
    f.add("uuid", move |_| {
        let (hi, lo) = (draw(), draw());
        Ok(Some(Value::String(uuid_from(hi, lo))))
    });
}

/// A version 4 UUID from 128 random bits.
fn uuid_from(hi: u64, lo: u64) -> String {
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & !(0xC000_u64 << 48)) | (0x8000_u64 << 48);
    let h = format!("{hi:016x}{lo:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `$now()` and `$millis()` at the caller's time: the same instant throughout one
/// evaluation, as in jsonata-js.
fn clock_functions(f: &mut jsonata::Functions, now: DateTime<Utc>) {
    let millis = now.timestamp_millis();
    f.add("millis", move |_| Ok(Some(Value::from(millis))));
    f.add("now", move |args| {
        if args.iter().all(Option::is_none) {
            let text = now.to_rfc3339_opts(SecondsFormat::Millis, true);
            return Ok(Some(Value::String(text)));
        }
        // A picture or a time zone: the language's own $fromMillis formats the instant.
        let mut b = Map::new();
        b.insert("ms".into(), Value::from(millis));
        b.insert("p".into(), args[0].clone().unwrap_or(Value::Null));
        let tz = args.get(1).cloned().flatten();
        let expr = match tz {
            Some(tz) => {
                b.insert("tz".into(), tz);
                "$fromMillis($ms, $p, $tz)"
            }
            None => "$fromMillis($ms, $p)",
        };
        match jsonata::evaluate(expr, None, &b, LIMITS) {
            jsonata::Outcome::Value(v) => Ok(Some(v)),
            jsonata::Outcome::Error { code, message } => Err(fn_error(&code, message)),
            _ => Ok(None),
        }
    });
}

/// The `$name`s in an expression, outside its strings, regexes and comments, as
/// (values read, functions called); `$` and `$$` alone (the context and root) are not
/// names.
fn references(text: &str) -> (Vec<String>, Vec<String>) {
    let b = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut calls: Vec<String> = Vec::new();
    let mut i = 0;
    let mut prev_significant = b'(';
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_quoted(b, i, c),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(b.len(), |at| i + 2 + at + 2);
            }
            // A regex starts where an operand may (not after a value, where `/` divides).
            b'/' if !ends_operand(prev_significant) => i = skip_quoted(b, i, b'/'),
            b'$' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                let called = text[end..].trim_start().starts_with('(');
                let list = if called { &mut calls } else { &mut out };
                if end > start && !list.iter().any(|r| r == &text[start..end]) {
                    list.push(text[start..end].to_string());
                }
                i = end.max(start);
                prev_significant = b'a';
                continue;
            }
            _ => i += 1,
        }
        if !c.is_ascii_whitespace() {
            prev_significant = c;
        }
    }
    (out, calls)
}

/// Whether a character can end an operand, after which `/` is division.
fn ends_operand(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b')' | b']' | b'}' | b'"' | b'\'' | b'`' | b'_')
}

/// The index after the quoted run that opens at `at` with `quote`, escapes honoured.
fn skip_quoted(b: &[u8], at: usize, quote: u8) -> usize {
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_skip_strings_regexes_and_comments() {
        let e =
            Expr::parse(r#"{% $a & "$b" & $c.x /* $d */ & $contains('x', /\$e/) / $f %}"#).unwrap();
        assert_eq!(e.needs.refs, vec!["a", "c", "f"]);
        assert_eq!(e.needs.calls, vec!["contains"]);
    }

    #[test]
    fn only_the_members_of_states_read_are_built() {
        let reads = |t: &str| StatesReads::of(t);
        assert_eq!(
            reads("$states.input.a + $states .context.Execution.Id"),
            StatesReads {
                input: true,
                context: 1,
                ..StatesReads::default()
            }
        );
        assert_eq!(reads("$states.context.Map.Item").context, 1 << 4);
        assert_eq!(reads("$states.context.Mapped").context, ALL_CONTEXT);
        assert_eq!(reads("$states.context").context, ALL_CONTEXT);
        assert_eq!(reads("$keys($states)"), StatesReads::ALL);
        assert_eq!(reads("$states.other"), StatesReads::ALL);
        assert_eq!(reads("1 + 1"), StatesReads::default());
    }

    #[test]
    fn the_location_is_read_back_from_the_cause() {
        let e = Expr::parse("{% $x %}").unwrap();
        let f = wrong_type(&e, &FieldPath::root("Items"), "array", &Value::Null);
        assert_eq!(location(f.cause.as_deref().unwrap()), Some("Items"));
    }

    #[test]
    fn field_paths_read_as_aws_writes_them() {
        let root = FieldPath::root("Output");
        let child = root.child("result");
        assert_eq!(child.child("0").to_string(), "Output/result/0");
    }

    #[test]
    fn a_uuid_has_version_4_and_the_variant_bits() {
        let u = uuid_from(u64::MAX, u64::MAX);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }
}
