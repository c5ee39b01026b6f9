//! Intrinsic functions (`States.Format(...)` and friends).
//!
//! AWS runs these on the JVM, so wherever a value is turned into text (States.Format,
//! States.JsonToString) or a number is coerced (Math.round), this module copies what Java
//! and Jackson do rather than what Rust or serde would do by default.

use crate::error::{names, Failure};
use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// One argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A literal. A string literal holds its unescaped text, except the template (first
    /// argument) of `States.Format`, which keeps its escaped form so that an escaped
    /// `\{` stays distinguishable from a placeholder brace.
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

/// The error name of a failed intrinsic. The ASL documentation names
/// `States.IntrinsicFailure`, but no recorded AWS execution shows it, and the emulators
/// that are checked against AWS (LocalStack, aws-local-stepfunctions) raise
/// `States.Runtime`; kept in one place so the choice is easy to revisit.
pub const ERROR: &str = names::RUNTIME;

/// Documented limits (the intrinsic functions page of the Step Functions guide).
pub const MAX_ARRAY_RANGE_ITEMS: i64 = 1000;
pub const MAX_ENCODE_CHARS: usize = 10_000;
pub const MAX_HASH_CHARS: usize = 10_000;

/// Guards the recursive parser and evaluator against stack exhaustion. AWS documents
/// "up to 10" nested intrinsics; this cap is structural only and deliberately looser.
pub const MAX_CALL_DEPTH: usize = 32;

/// Every function AWS defines, with its argument count (min, max).
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("States.Format", 1, usize::MAX),
    ("States.StringToJson", 1, 1),
    ("States.JsonToString", 1, 1),
    ("States.Array", 0, usize::MAX),
    ("States.ArrayPartition", 2, 2),
    ("States.ArrayContains", 2, 2),
    ("States.ArrayRange", 3, 3),
    ("States.ArrayGetItem", 2, 2),
    ("States.ArrayLength", 1, 1),
    ("States.ArrayUnique", 1, 1),
    ("States.Base64Encode", 1, 1),
    ("States.Base64Decode", 1, 1),
    ("States.Hash", 2, 2),
    ("States.JsonMerge", 3, 3),
    ("States.MathRandom", 2, 3),
    ("States.MathAdd", 2, 2),
    ("States.StringSplit", 2, 2),
    ("States.UUID", 0, 0),
];

fn arity(name: &str) -> Option<(usize, usize)> {
    FUNCTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, lo, hi)| (lo, hi))
}

fn arity_text(lo: usize, hi: usize) -> String {
    match (lo, hi) {
        (lo, usize::MAX) => format!("at least {lo}"),
        (lo, hi) if lo == hi => format!("{lo}"),
        (lo, hi) => format!("{lo} to {hi}"),
    }
}

/// True when `s` looks like an intrinsic call (`States.Name(`...`)`), so that a `.$`
/// field is parsed as one rather than as a path.
pub fn looks_like_call(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

// ---------------------------------------------------------------------------------------
// Parsing

/// Parses an intrinsic call expression; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Call, String> {
    let mut p = Parser { src: text, pos: 0 };
    p.skip_ws();
    let call = p.call(0)?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.err("unexpected text after the closing ')'"));
    }
    Ok(call)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }
    fn err(&self, what: &str) -> String {
        format!(
            "invalid intrinsic function call at character {}: {what}",
            self.pos
        )
    }

    fn call(&mut self, depth: usize) -> Result<Call, String> {
        if depth >= MAX_CALL_DEPTH {
            return Err(self.err("intrinsic functions are nested too deeply"));
        }
        if !self.rest().starts_with("States.") {
            return Err(self.err("expected a function name starting with 'States.'"));
        }
        let start = self.pos;
        self.pos += "States.".len();
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.bump();
        }
        let name = self.src[start..self.pos].to_string();
        let Some((lo, hi)) = arity(&name) else {
            self.pos = start;
            return Err(self.err(&format!("unknown intrinsic function '{name}'")));
        };
        self.skip_ws();
        if self.bump() != Some('(') {
            return Err(self.err(&format!("expected '(' after {name}")));
        }
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.bump();
        } else {
            loop {
                self.skip_ws();
                let keep_escapes = name == "States.Format" && args.is_empty();
                args.push(self.arg(depth, keep_escapes)?);
                self.skip_ws();
                match self.bump() {
                    Some(',') => continue,
                    Some(')') => break,
                    Some(_) => {
                        self.pos -= 1;
                        return Err(self.err("expected ',' or ')' after an argument"));
                    }
                    None => return Err(self.err(&format!("missing ')' closing {name}"))),
                }
            }
        }
        if args.len() < lo || args.len() > hi {
            return Err(format!(
                "invalid intrinsic function call: {name} takes {} argument(s), got {}",
                arity_text(lo, hi),
                args.len()
            ));
        }
        Ok(Call { name, args })
    }

    fn arg(&mut self, depth: usize, keep_escapes: bool) -> Result<Arg, String> {
        match self.peek() {
            Some('\'') => {
                let (text, raw) = self.string()?;
                Ok(Arg::Literal(Value::String(if keep_escapes {
                    raw
                } else {
                    text
                })))
            }
            Some('$') => Ok(Arg::Path(self.path()?)),
            Some('S') if self.rest().starts_with("States.") => Ok(Arg::Call(self.call(depth + 1)?)),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.bump();
                }
                match &self.src[start..self.pos] {
                    "true" => Ok(Arg::Literal(Value::Bool(true))),
                    "false" => Ok(Arg::Literal(Value::Bool(false))),
                    "null" => Ok(Arg::Literal(Value::Null)),
                    word => {
                        self.pos = start;
                        Err(self.err(&format!("unexpected argument '{word}'")))
                    }
                }
            }
            Some(')') | Some(',') => Err(self.err("missing argument")),
            Some(c) => Err(self.err(&format!("unexpected character '{c}' in argument"))),
            None => Err(self.err("unexpected end of expression")),
        }
    }

    /// A quoted literal: returns the unescaped text and the text between the quotes.
    /// Only `\'`, `\{`, `\}` and `\\` are escapes; AWS rejects the definition for any
    /// other (e.g. `\"`), which the corpus records as SCHEMA_VALIDATION_FAILED.
    fn string(&mut self) -> Result<(String, String), String> {
        self.bump();
        let start = self.pos;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    self.pos = start - 1;
                    return Err(self.err("unterminated string literal"));
                }
                Some('\'') => break,
                Some('\\') => match self.bump() {
                    Some(c @ ('\'' | '{' | '}' | '\\')) => out.push(c),
                    Some(c) => {
                        self.pos -= c.len_utf8() + 1;
                        return Err(self.err(&format!(
                            "invalid escape '\\{c}' in string literal (only \\', \\{{, \\}} and \\\\ are allowed)"
                        )));
                    }
                    None => {
                        self.pos = start - 1;
                        return Err(self.err("unterminated string literal"));
                    }
                },
                Some(c) => out.push(c),
            }
        }
        let raw = self.src[start..self.pos - 1].to_string();
        Ok((out, raw))
    }

    /// Finds where a path argument ends: at a top-level ',' or ')' or whitespace, but not
    /// inside brackets (`$.a['b, c']`, `$.a[?(@.x == 1)]`). Checking the path itself is
    /// left to the JSONPath module.
    fn path(&mut self) -> Result<String, String> {
        let start = self.pos;
        let mut brackets = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                self.bump();
                if c == '\\' {
                    self.bump();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '[' => brackets += 1,
                ']' if brackets > 0 => brackets -= 1,
                ']' => return Err(self.err("unbalanced ']' in path")),
                '\'' | '"' if brackets > 0 => quote = Some(c),
                ',' | ')' if brackets == 0 => break,
                c if c.is_whitespace() && brackets == 0 => break,
                _ => {}
            }
            self.bump();
        }
        if quote.is_some() || brackets > 0 {
            self.pos = start;
            return Err(self.err("unterminated '[' in path"));
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn number(&mut self) -> Result<Arg, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        match serde_json::from_str::<Number>(text) {
            Ok(n) => Ok(Arg::Literal(Value::Number(n))),
            Err(_) => {
                self.pos = start;
                Err(self.err(&format!("invalid number '{text}'")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// Evaluates a parsed call. Failures carry AWS's error name and cause.
pub fn eval(call: &Call, host: &mut dyn IntrinsicHost) -> Result<Value, Failure> {
    eval_call(call, host, 0)
}

fn fail(cause: impl Into<String>) -> Failure {
    Failure::new(ERROR, cause)
}

fn invalid(name: &str, detail: impl std::fmt::Display) -> Failure {
    fail(format!("Invalid arguments in {name}: {detail}"))
}

fn eval_call(call: &Call, host: &mut dyn IntrinsicHost, depth: usize) -> Result<Value, Failure> {
    let name = call.name.as_str();
    if depth >= MAX_CALL_DEPTH {
        return Err(fail(format!(
            "{name}: intrinsic functions are nested too deeply"
        )));
    }
    let Some((lo, hi)) = arity(name) else {
        return Err(fail(format!("Unknown intrinsic function {name}")));
    };
    let n = call.args.len();
    if n < lo || n > hi {
        return Err(invalid(
            name,
            format!("expected {} argument(s), got {n}", arity_text(lo, hi)),
        ));
    }
    let mut args = Vec::with_capacity(n);
    for a in &call.args {
        args.push(match a {
            Arg::Literal(v) => v.clone(),
            Arg::Path(p) => host.resolve_path(p)?,
            Arg::Call(c) => eval_call(c, host, depth + 1)?,
        });
    }
    match name {
        "States.Format" => format(name, &args),
        "States.StringToJson" => string_to_json(name, &args[0]),
        "States.JsonToString" => Ok(Value::String(to_json_text(&args[0]))),
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => array_partition(name, &args),
        "States.ArrayContains" => {
            let arr = array_arg(name, &args[0], "first")?;
            Ok(Value::Bool(arr.iter().any(|v| json_eq(v, &args[1]))))
        }
        "States.ArrayRange" => array_range(name, &args),
        "States.ArrayGetItem" => array_get_item(name, &args),
        "States.ArrayLength" => Ok(Value::from(array_arg(name, &args[0], "first")?.len())),
        "States.ArrayUnique" => {
            let arr = array_arg(name, &args[0], "first")?;
            let mut out: Vec<Value> = Vec::new();
            for v in arr {
                if !out.iter().any(|o| json_eq(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            let s = limited_string(name, &args[0], MAX_ENCODE_CHARS)?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            ))
        }
        "States.Base64Decode" => base64_decode(name, &args[0]),
        "States.Hash" => hash(name, &args),
        "States.JsonMerge" => json_merge(name, &args),
        "States.MathRandom" => math_random(name, &args, host),
        "States.MathAdd" => {
            let a = int_arg(name, &args[0], "first")?;
            let b = int_arg(name, &args[1], "second")?;
            Ok(Value::from(a + b))
        }
        "States.StringSplit" => string_split(name, &args),
        "States.UUID" => Ok(Value::String(host.uuid_v4())),
        _ => Err(fail(format!("Unknown intrinsic function {name}"))),
    }
}

/// Java's `equals` on the values Jackson builds: `1` and `1.0` differ (Integer vs Double),
/// which is also how serde_json compares numbers.
fn json_eq(a: &Value, b: &Value) -> bool {
    a == b
}

/// A JSON value's type as JSONata's `$type` and AWS's messages name it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn array_arg<'v>(name: &str, v: &'v Value, which: &str) -> Result<&'v Vec<Value>, Failure> {
    v.as_array().ok_or_else(|| {
        invalid(
            name,
            format!(
                "the {which} argument must be an array, got {}",
                type_name(v)
            ),
        )
    })
}

fn string_arg<'v>(name: &str, v: &'v Value, which: &str) -> Result<&'v str, Failure> {
    v.as_str().ok_or_else(|| {
        invalid(
            name,
            format!(
                "the {which} argument must be a string, got {}",
                type_name(v)
            ),
        )
    })
}

fn limited_string<'v>(name: &str, v: &'v Value, max: usize) -> Result<&'v str, Failure> {
    let s = string_arg(name, v, "first")?;
    if s.chars().count() > max {
        return Err(invalid(
            name,
            format!("the input must be at most {max} characters long"),
        ));
    }
    Ok(s)
}

/// Java's `Math.round(double)`: halves go towards positive infinity (-1.5 -> -1), which
/// is what the recorded States.MathAdd results show.
fn java_round(x: f64) -> f64 {
    let f = x.floor();
    if x - f >= 0.5 {
        f + 1.0
    } else {
        f
    }
}

/// A number argument that AWS coerces to a Java int, rounding non-integers.
fn int_arg(name: &str, v: &Value, which: &str) -> Result<i64, Failure> {
    let Value::Number(n) = v else {
        return Err(invalid(
            name,
            format!(
                "the {which} argument must be a number, got {}",
                type_name(v)
            ),
        ));
    };
    let i = match n.as_i64() {
        Some(i) => Some(i),
        None => n
            .as_f64()
            .map(java_round)
            .filter(|f| f.abs() < 9.2e18)
            .map(|f| f as i64),
    };
    match i {
        Some(i) if i32::try_from(i).is_ok() => Ok(i),
        _ => Err(invalid(
            name,
            format!("the {which} argument must be an integer between -2147483648 and 2147483647"),
        )),
    }
}

pub(crate) fn array_partition(name: &str, args: &[Value]) -> Result<Value, Failure> {
    let arr = array_arg(name, &args[0], "first")?;
    let size = int_arg(name, &args[1], "second")?;
    if size <= 0 {
        return Err(invalid(name, "the chunk size must be a positive integer"));
    }
    let chunks = arr
        .chunks(size as usize)
        .map(|c| Value::Array(c.to_vec()))
        .collect();
    Ok(Value::Array(chunks))
}

pub(crate) fn array_range(name: &str, args: &[Value]) -> Result<Value, Failure> {
    let start = int_arg(name, &args[0], "first")?;
    let end = int_arg(name, &args[1], "second")?;
    let step = int_arg(name, &args[2], "third")?;
    if step == 0 {
        return Err(invalid(name, "the step must not be zero"));
    }
    // Counted up front so a huge range is refused without being built.
    let count = if (step > 0 && start <= end) || (step < 0 && start >= end) {
        (end - start) / step + 1
    } else {
        0
    };
    if count > MAX_ARRAY_RANGE_ITEMS {
        return Err(invalid(
            name,
            format!("the range would have {count} items, more than the limit of {MAX_ARRAY_RANGE_ITEMS}"),
        ));
    }
    Ok(Value::Array(
        (0..count).map(|i| Value::from(start + i * step)).collect(),
    ))
}

fn array_get_item(name: &str, args: &[Value]) -> Result<Value, Failure> {
    let arr = array_arg(name, &args[0], "first")?;
    let index = int_arg(name, &args[1], "second")?;
    if index < 0 || index as usize >= arr.len() {
        return Err(invalid(
            name,
            format!(
                "the index {index} is out of bounds for an array of length {}",
                arr.len()
            ),
        ));
    }
    Ok(arr[index as usize].clone())
}

fn base64_decode(name: &str, v: &Value) -> Result<Value, Failure> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // Java's Base64 decoder treats the trailing '=' as optional.
    const DECODER: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let s = limited_string(name, v, MAX_ENCODE_CHARS)?;
    let bytes = DECODER
        .decode(s.as_bytes())
        .map_err(|e| invalid(name, format!("the input is not valid Base64 ({e})")))?;
    // `new String(bytes, UTF_8)` replaces malformed sequences rather than failing.
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

pub(crate) fn hash(name: &str, args: &[Value]) -> Result<Value, Failure> {
    use md5::Digest as _;
    let data = match &args[0] {
        Value::String(s) => s.clone(),
        other => to_json_text(other),
    };
    if data.chars().count() > MAX_HASH_CHARS {
        return Err(invalid(
            name,
            format!("the input must be at most {MAX_HASH_CHARS} characters long"),
        ));
    }
    let algorithm = string_arg(name, &args[1], "second")?;
    let bytes = data.as_bytes();
    let digest: Vec<u8> = match algorithm {
        "MD5" => md5::Md5::digest(bytes).to_vec(),
        "SHA-1" => sha1::Sha1::digest(bytes).to_vec(),
        "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
        "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
        "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
        other => {
            return Err(invalid(
                name,
                format!("unsupported hash algorithm '{other}' (expected MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"),
            ))
        }
    };
    Ok(Value::String(
        digest.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

fn json_merge(name: &str, args: &[Value]) -> Result<Value, Failure> {
    let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
        let bad = if args[0].is_object() {
            &args[1]
        } else {
            &args[0]
        };
        return Err(invalid(
            name,
            format!(
                "the objects to merge must be JSON objects, got {}",
                type_name(bad)
            ),
        ));
    };
    match &args[2] {
        Value::Bool(false) => {}
        Value::Bool(true) => {
            return Err(invalid(
                name,
                "deep merging is not supported; the third argument must be false",
            ))
        }
        other => {
            return Err(invalid(
                name,
                format!(
                    "the third argument must be a boolean, got {}",
                    type_name(other)
                ),
            ))
        }
    }
    let mut out: Map<String, Value> = a.clone();
    for (k, v) in b {
        out.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(out))
}

pub(crate) fn string_to_json(name: &str, v: &Value) -> Result<Value, Failure> {
    let s = string_arg(name, v, "first")?;
    // Recorded: an empty or blank string gives null rather than an error.
    if s.trim().is_empty() {
        return Ok(Value::Null);
    }
    // serde_json's recursion limit turns absurd nesting into an error, not a stack overflow.
    let mut v = serde_json::from_str::<Value>(s)
        .map_err(|e| invalid(name, format!("the string is not valid JSON ({e})")))?;
    fix_negative_zeros(s, &mut v);
    Ok(v)
}

/// serde_json reads the integer `-0` as the double `-0.0`; Jackson reads it as the int 0
/// (recorded: StringToJson("-0") is 0). The text's negative-zero tokens are matched, in
/// document order, with the `-0.0`s in the parsed value.
fn fix_negative_zeros(text: &str, v: &mut Value) {
    let mut is_int: Vec<bool> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' {
            let start = i;
            i += 1;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            let tok = &text[start..i];
            if tok.parse::<f64>().is_ok_and(|f| f == 0.0) {
                is_int.push(!tok.contains(['.', 'e', 'E']));
            }
            continue;
        }
        i += 1;
    }
    if !is_int.contains(&true) {
        return;
    }
    let mut next = is_int.into_iter();
    fn walk(v: &mut Value, next: &mut impl Iterator<Item = bool>) {
        let negative_zero = v.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative());
        if negative_zero && next.next() == Some(true) {
            *v = Value::from(0);
        }
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, next)),
            Value::Object(m) => m.values_mut().for_each(|x| walk(x, next)),
            _ => {}
        }
    }
    walk(v, &mut next);
}

fn string_split(name: &str, args: &[Value]) -> Result<Value, Failure> {
    let s = string_arg(name, &args[0], "first")?;
    let delims = string_arg(name, &args[1], "second")?;
    // Like java.util.StringTokenizer: every character of the second argument is a
    // delimiter and empty tokens are dropped (recorded: ",,,," splits to []).
    let parts = s
        .split(|c: char| delims.contains(c))
        .filter(|p| !p.is_empty())
        .map(|p| Value::String(p.to_string()))
        .collect();
    Ok(Value::Array(parts))
}

fn math_random(name: &str, args: &[Value], host: &mut dyn IntrinsicHost) -> Result<Value, Failure> {
    let start = int_arg(name, &args[0], "first")?;
    let end = int_arg(name, &args[1], "second")?;
    if start >= end {
        return Err(invalid(name, "the start must be less than the end"));
    }
    let bound = end - start;
    let offset = match args.get(2) {
        Some(seed) => {
            let seed = match seed {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| java_round(f) as i64)),
                _ => None,
            }
            .ok_or_else(|| {
                invalid(
                    name,
                    format!("the seed must be an integer, got {}", type_name(seed)),
                )
            })?;
            let mut rng = JavaRandom::new(seed);
            match i32::try_from(bound) {
                Ok(b) => i64::from(rng.next_int_bounded(b)),
                Err(_) => (rng.next_long() as u64 % bound as u64) as i64,
            }
        }
        None => (host.random_u64() % bound as u64) as i64,
    };
    Ok(Value::from(start + offset))
}

/// `java.util.Random`, so that a seeded States.MathRandom gives what AWS's JVM gives for
/// `start + new Random(seed).nextInt(end - start)`.
pub struct JavaRandom {
    seed: i64,
}

impl JavaRandom {
    const MULTIPLIER: i64 = 0x5DEE_CE66D;
    const MASK: i64 = (1 << 48) - 1;

    pub fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed ^ Self::MULTIPLIER) & Self::MASK,
        }
    }
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> (48 - bits)) as i32
    }
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }
    pub fn next_long(&mut self) -> i64 {
        (i64::from(self.next(32)) << 32).wrapping_add(i64::from(self.next(32)))
    }
    /// `nextDouble()`: 53 random bits in [0, 1).
    pub fn next_double(&mut self) -> f64 {
        let hi = i64::from(self.next(26));
        let lo = i64::from(self.next(27));
        ((hi << 27) + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// `nextInt(bound)` for `bound > 0`.
    pub fn next_int_bounded(&mut self, bound: i32) -> i32 {
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }
}

// ---------------------------------------------------------------------------------------
// States.Format

fn format(name: &str, args: &[Value]) -> Result<Value, Failure> {
    let template = string_arg(name, &args[0], "first")?;
    let values = &args[1..];
    let mut out = String::with_capacity(template.len());
    let mut used = 0usize;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&e @ ('\'' | '{' | '}' | '\\')) => {
                    out.push(e);
                    chars.next();
                }
                // Only reachable for a template that came from a path: a literal with any
                // other escape is refused at parse time.
                _ => out.push('\\'),
            },
            '{' => {
                if chars.peek() != Some(&'}') {
                    return Err(fail(format!(
                        "Invalid template in {name}: matching '}}' not found for '{{'."
                    )));
                }
                chars.next();
                let Some(v) = values.get(used) else {
                    return Err(invalid(
                        name,
                        "the template has more placeholders '{}' than there are arguments",
                    ));
                };
                used += 1;
                java_to_string(v, &mut out);
            }
            '}' => {
                return Err(fail(format!(
                    "Invalid template in {name}: matching '{{' not found for '}}'."
                )));
            }
            c => out.push(c),
        }
    }
    if used != values.len() {
        return Err(invalid(
            name,
            "the template has fewer placeholders '{}' than there are arguments",
        ));
    }
    Ok(Value::String(out))
}

/// `String.valueOf` of the Java object Jackson would have built: strings bare, objects
/// as `{k=v, k2=v2}` (LinkedHashMap.toString), arrays as `[a, b]` (ArrayList.toString).
/// Recorded: `{"Arg1": 1, "Arg2": []}` formats as `{Arg1=1, Arg2=[]}`.
pub fn java_to_string(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&java_number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                java_to_string(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                java_to_string(x, out);
            }
            out.push('}');
        }
    }
}

/// A JSON number as Java prints it: integers as they are, others as `Double.toString`.
pub fn java_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    java_double(n.as_f64().unwrap_or(0.0))
}

/// `Double.toString`: plain notation with at least one fractional digit for magnitudes
/// in [1e-3, 1e7), otherwise `d.dddE±n` (`1.0E10`, `1.0E-4`), using the shortest digits
/// that round-trip (as Java 19+ does).
pub fn java_double(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-7".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let abs = x.abs();
    if (1e-3..1e7).contains(&abs) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let (int_part, frac) = if digits.len() > int_len {
                (digits[..int_len].to_string(), digits[int_len..].to_string())
            } else {
                (format!("{digits:0<int_len$}"), "0".to_string())
            };
            format!("{sign}{int_part}.{frac}")
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let frac = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{sign}{}.{frac}E{exp}", &digits[..1])
    }
}

// ---------------------------------------------------------------------------------------
// States.JsonToString

/// Compact JSON as Jackson writes it: key order kept, no spaces, doubles via
/// `Double.toString`, control characters escaped with upper-case hex.
pub fn to_json_text(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&java_number(n)),
        Value::String(s) => write_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(x, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_matches_double_to_string() {
        for (x, s) in [
            (1.0, "1.0"),
            (1.1, "1.1"),
            (1e10, "1.0E10"),
            (1.5e7, "1.5E7"),
            (9999999.0, "9999999.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (-2.5, "-2.5"),
            (123.456, "123.456"),
            (1e-10, "1.0E-10"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(java_double(x), s, "{x}");
        }
    }

    #[test]
    fn java_random_matches_jdk() {
        // new Random(42).nextInt(10) == 0, new Random(0).nextInt(100) == 60 on any JDK.
        assert_eq!(JavaRandom::new(42).next_int_bounded(10), 0);
        assert_eq!(JavaRandom::new(0).next_int_bounded(100), 60);
        assert_eq!(JavaRandom::new(42).next_int(), -1170105035);
    }
}
