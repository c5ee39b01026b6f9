//! JSONPath as Step Functions evaluates it (Jayway semantics, not RFC 9535).
//!
//! Step Functions runs the Java Jayway JsonPath library, and its error messages leak
//! into the causes AWS reports (`Invalid path '$.a' : No results for path: $['a']`), so
//! this module reproduces Jayway's evaluation rules and wording rather than the RFC:
//!
//! - a definite path (names and single indexes only) yields one value or fails with
//!   Jayway's message; an indefinite one yields an array and never fails (AWS returns
//!   `[]` for `$.items[:1]` on `{}`, where plain Jayway would complain);
//! - a leaf union of names (`$['a','b']`) merges into one object, and counts as
//!   definite, as in Jayway;
//! - quoted names keep backslashes verbatim except before their own quote character:
//!   AWS selects the key `Test\""Name"` with `$['Test\""Name"']`.

mod regex;

use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt::Write as _;

pub use self::regex::Regex;

/// Paths come from state machine definitions, which AWS caps far below this; anything
/// longer is hostile or broken, and refusing it bounds parse and evaluation work.
pub const MAX_PATH_LEN: usize = 16 * 1024;
/// Filters nest (`[?(@.a[?(@.b)])]`, parentheses, `!`); the parser recurses on nesting,
/// so it is capped well below what could exhaust the stack.
pub const MAX_NESTING: usize = 32;

/// Jayway names the JSON provider and the Java class of the offending value when a
/// property is read from a non-object. AWS's provider is not documented; this assumes
/// Jackson (values as `java.util.LinkedHashMap`, `java.util.ArrayList`, boxed scalars).
const JSON_PROVIDER: &str = "com.jayway.jsonpath.spi.json.JacksonJsonProvider";

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
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// One name, or a union of names. `quote` is kept because Jayway echoes it when it
    /// prints the path in messages (`$["a"]` stays double-quoted).
    Property {
        names: Vec<String>,
        quote: char,
    },
    Index(Vec<i64>),
    Slice {
        from: Option<i64>,
        to: Option<i64>,
    },
    Wildcard,
    Scan,
    Filter(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Exists(Operand),
    Compare(Operand, Op, Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@...` (current item) when `current`, else `$...` (the whole document).
    Path {
        current: bool,
        tokens: Vec<Token>,
    },
    Literal(Value),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    TypedEq,
    TypedNe,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
    In,
    Nin,
    Contains,
    Size,
    Empty,
    SubsetOf,
    AnyOf,
    NoneOf,
}

impl JsonPath {
    /// Parses `$`, `$.a.b[0]`, `$['a']`, `$..a`, `$.a[*]`, `$.a[1:3]`, `$.a[?(@.x > 1)]`,
    /// `$$.Execution.Id`, `$var.field`. The error names the rule broken.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        if text.len() > MAX_PATH_LEN {
            return Err(format!(
                "path is {} bytes long, more than the {MAX_PATH_LEN} allowed",
                text.len()
            ));
        }
        // Blanks after the path are dropped, as Jayway JsonPath (AWS's) trims them:
        // AWS's own samples deploy with `"$$.Execution.Name "`.
        let mut p = Parser::new(text.trim_end());
        if p.peek() != Some('$') {
            return Err("path must start with '$' at position 0".into());
        }
        p.pos += 1;
        let root = if p.peek() == Some('$') {
            p.pos += 1;
            Root::Context
        } else if p.peek().is_some_and(is_name_char) {
            let start = p.pos;
            while p.peek().is_some_and(is_name_char) {
                p.pos += 1;
            }
            Root::Variable(p.slice(start, p.pos))
        } else {
            Root::Input
        };
        let tokens = p.segments(false, 0)?;
        if let Some(c) = p.peek() {
            return Err(format!(
                "unexpected character '{c}' at position {}; expected '.' or '['",
                p.pos
            ));
        }
        Ok(JsonPath {
            text: text.to_string(),
            root,
            tokens,
        })
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
        is_definite(&self.tokens)
    }
    /// Selects from `root` (the value the path's [`Root`] designates). A definite path
    /// yields the value or NotFound; an indefinite one yields an array, possibly empty.
    pub fn select(&self, root: &Value) -> Result<Value, NotFound> {
        if self.is_definite() {
            select_definite(&self.tokens, root)
        } else {
            Ok(Value::Array(
                select_all(&self.tokens, root, root)
                    .into_iter()
                    .map(Hit::into_value)
                    .collect(),
            ))
        }
    }
    /// Writes `value` at this (definite, `$`-rooted) path inside `target`, creating
    /// missing objects on the way as ResultPath does. `$` replaces the whole target.
    pub fn set(&self, target: &mut Value, value: Value) -> Result<(), String> {
        if self.root != Root::Input {
            return Err(format!(
                "ReferencePath {} must start with '$' to be written to",
                self.text
            ));
        }
        let settable = self.tokens.iter().all(|t| match t {
            Token::Property { names, .. } => names.len() == 1,
            Token::Index(ix) => ix.len() == 1,
            _ => false,
        });
        if !settable {
            return Err(format!(
                "ReferencePath {} must be definite (names and single indexes only) to be written to",
                self.text
            ));
        }
        // AWS's wording when ResultPath cannot be applied; it quotes the whole input.
        let unable = |target: &Value| {
            format!(
                "Unable to apply ReferencePath {} to input {}",
                self.text,
                serde_json::to_string(target).unwrap_or_default()
            )
        };
        // Check the walk first so a failure leaves the target untouched.
        {
            let mut cur: Option<&Value> = Some(target);
            for t in &self.tokens {
                let Some(v) = cur else {
                    // Past a missing name only objects get created, so only names may follow.
                    if matches!(t, Token::Property { .. }) {
                        continue;
                    }
                    return Err(unable(target));
                };
                cur = match (t, v) {
                    (Token::Property { names, .. }, Value::Object(m)) => m.get(&names[0]),
                    (Token::Index(ix), Value::Array(a)) => match wrap_index(ix[0], a.len()) {
                        Some(i) => Some(&a[i]),
                        None => return Err(unable(target)),
                    },
                    _ => return Err(unable(target)),
                };
            }
        }
        let mut cur = target;
        for t in &self.tokens {
            cur = match (t, cur) {
                (Token::Property { names, .. }, Value::Object(m)) => m
                    .entry(names[0].clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                (Token::Index(ix), Value::Array(a)) => {
                    let i = wrap_index(ix[0], a.len()).ok_or("index checked above")?;
                    &mut a[i]
                }
                _ => return Err("ReferencePath walk checked above".into()),
            };
        }
        *cur = value;
        Ok(())
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

// AWS documents variable names as letters, digits and underscores.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_definite(tokens: &[Token]) -> bool {
    tokens.iter().enumerate().all(|(i, t)| match t {
        // Jayway merges a union of names at the leaf into one object: definite.
        Token::Property { names, .. } => names.len() == 1 || i + 1 == tokens.len(),
        Token::Index(ix) => ix.len() == 1,
        _ => false,
    })
}

fn wrap_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { len + i } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

// ---------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
        }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }
    fn slice(&self, a: usize, b: usize) -> String {
        self.chars[a..b].iter().collect()
    }
    fn skip_ws(&mut self) {
        while self
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            self.pos += 1;
        }
    }
    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    /// Reads `.name`, `..name`, `[...]` segments. Inside a filter (`in_filter`) the path
    /// ends at the first character that cannot continue it; at top level the caller
    /// rejects leftovers.
    fn segments(&mut self, in_filter: bool, depth: usize) -> Result<Vec<Token>, String> {
        let mut tokens = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    let dot = self.pos;
                    if self.peek_at(1) == Some('.') {
                        self.pos += 2;
                        tokens.push(Token::Scan);
                        if self.peek().is_none() {
                            return Err(format!("path must not end with '..' (position {dot})"));
                        }
                        if self.peek() == Some('[') {
                            continue;
                        }
                    } else {
                        self.pos += 1;
                        if self.peek().is_none() {
                            return Err(format!("path must not end with '.' (position {dot})"));
                        }
                        if self.peek() == Some('[') {
                            continue;
                        }
                    }
                    match self.peek() {
                        Some('.') => {
                            return Err(format!(
                                "character '.' at position {} is not valid",
                                self.pos
                            ))
                        }
                        Some('*') => {
                            self.pos += 1;
                            tokens.push(Token::Wildcard);
                        }
                        _ => tokens.push(self.dot_name(in_filter)?),
                    }
                }
                Some('[') => tokens.push(self.bracket(depth)?),
                _ => break,
            }
        }
        if tokens.last() == Some(&Token::Scan) {
            return Err("deep scan '..' must be followed by a name, '*' or '['".into());
        }
        Ok(tokens)
    }

    fn dot_name(&mut self, in_filter: bool) -> Result<Token, String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                '.' | '[' => break,
                '(' => {
                    return Err(format!(
                        "path functions such as '{}()' are not supported (position {start})",
                        self.slice(start, self.pos)
                    ))
                }
                ' ' | '\t' | '\r' | '\n' if !in_filter => {
                    return Err(format!(
                        "use bracket notation ['my prop'] for names with blanks (position {})",
                        self.pos
                    ))
                }
                ' ' | '\t' | '\r' | '\n' | ')' | ']' | '=' | '!' | '<' | '>' | '&' | '|' | ','
                | '~'
                    if in_filter =>
                {
                    break
                }
                _ => self.pos += 1,
            }
        }
        if self.pos == start {
            return Err(format!("empty property name at position {start}"));
        }
        Ok(Token::Property {
            names: vec![self.slice(start, self.pos)],
            quote: '\'',
        })
    }

    fn bracket(&mut self, depth: usize) -> Result<Token, String> {
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        let token = match self.peek() {
            Some(q @ ('\'' | '"')) => self.quoted_names(q, open)?,
            Some('*') => {
                self.pos += 1;
                Token::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() != Some('(') {
                    return Err(format!(
                        "filter at position {open} must be written [?(...)]"
                    ));
                }
                self.pos += 1;
                let expr = self.expr_or(depth + 1)?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(format!(
                        "unclosed '(' in filter at position {open}{}",
                        self.found()
                    ));
                }
                self.pos += 1;
                Token::Filter(Box::new(expr))
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == ':' => self.indexes(open)?,
            None => return Err(format!("unterminated bracket at position {open}")),
            Some(c) => {
                return Err(format!(
                    "unexpected character '{c}' at position {} inside brackets; expected a quoted name, an index, '*' or '?('",
                    self.pos
                ))
            }
        };
        self.skip_ws();
        match self.peek() {
            Some(']') => {
                self.pos += 1;
                Ok(token)
            }
            None => Err(format!("unterminated bracket at position {open}")),
            Some(c) => Err(format!(
                "expected ']' at position {} to close the bracket at position {open}, found '{c}'",
                self.pos
            )),
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!(", found '{c}' at position {}", self.pos),
            None => ", found the end of the path".into(),
        }
    }

    fn quoted_names(&mut self, quote: char, open: usize) -> Result<Token, String> {
        let mut names = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(q) if q == quote => {}
                Some(c) => {
                    return Err(format!(
                        "expected {quote}-quoted name at position {}, found '{c}'",
                        self.pos
                    ))
                }
                None => return Err(format!("unterminated bracket at position {open}")),
            }
            let qpos = self.pos;
            self.pos += 1;
            let mut name = String::new();
            loop {
                match self.peek() {
                    None => {
                        return Err(format!(
                            "unterminated quoted name starting at position {qpos}"
                        ))
                    }
                    Some('\\') => {
                        // Only the delimiter is unescaped: AWS keeps `\"` verbatim in a
                        // single-quoted name (recorded: `$['Test\""Name"']`).
                        match self.peek_at(1) {
                            Some(c) if c == quote => name.push(c),
                            Some(c) => {
                                name.push('\\');
                                name.push(c);
                            }
                            None => {
                                return Err(format!(
                                    "unterminated quoted name starting at position {qpos}"
                                ))
                            }
                        }
                        self.pos += 2;
                    }
                    Some(c) if c == quote => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => {
                        name.push(c);
                        self.pos += 1;
                    }
                }
            }
            names.push(name);
            self.skip_ws();
            if self.peek() == Some(',') {
                self.pos += 1;
                continue;
            }
            return Ok(Token::Property { names, quote });
        }
    }

    fn indexes(&mut self, open: usize) -> Result<Token, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | ',' | ' '))
        {
            self.pos += 1;
        }
        let body = self.slice(start, self.pos);
        let body = body.trim_end();
        let int = |s: &str| -> Result<i64, String> {
            let s = s.trim();
            s.parse::<i32>()
                .map(i64::from)
                .map_err(|_| format!("invalid array index '{s}' in the bracket at position {open}"))
        };
        if body.contains(':') {
            if body.contains(' ') || body.contains(',') {
                return Err(format!(
                    "invalid slice '{body}' in the bracket at position {open}"
                ));
            }
            let parts: Vec<&str> = body.split(':').collect();
            if parts.len() > 2 {
                return Err(format!(
                    "slice steps are not supported: '{body}' at position {open}"
                ));
            }
            let opt = |s: &str| {
                if s.is_empty() {
                    Ok(None)
                } else {
                    int(s).map(Some)
                }
            };
            let from = opt(parts[0])?;
            let to = opt(parts[1])?;
            if from.is_none() && to.is_none() {
                return Err(format!(
                    "slice '{body}' at position {open} needs a start or an end"
                ));
            }
            Ok(Token::Slice { from, to })
        } else {
            let ix = body.split(',').map(int).collect::<Result<Vec<_>, _>>()?;
            Ok(Token::Index(ix))
        }
    }

    // -- filter expressions ----------------------------------------------------------

    fn nest(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_NESTING {
            Err(format!(
                "filter nesting deeper than {MAX_NESTING} at position {}",
                self.pos
            ))
        } else {
            Ok(())
        }
    }

    fn expr_or(&mut self, depth: usize) -> Result<Expr, String> {
        self.nest(depth)?;
        let mut left = self.expr_and(depth)?;
        loop {
            self.skip_ws();
            if self.starts_with("||") {
                self.pos += 2;
                let right = self.expr_and(depth)?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn expr_and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.expr_unary(depth)?;
        loop {
            self.skip_ws();
            if self.starts_with("&&") {
                self.pos += 2;
                let right = self.expr_unary(depth)?;
                left = Expr::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn expr_unary(&mut self, depth: usize) -> Result<Expr, String> {
        self.nest(depth)?;
        self.skip_ws();
        match self.peek() {
            Some('!') if self.peek_at(1) != Some('=') => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.expr_unary(depth + 1)?)))
            }
            Some('(') => {
                let open = self.pos;
                self.pos += 1;
                let e = self.expr_or(depth + 1)?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(format!("unclosed '(' at position {open}{}", self.found()));
                }
                self.pos += 1;
                Ok(e)
            }
            _ => self.relation(depth),
        }
    }

    fn relation(&mut self, depth: usize) -> Result<Expr, String> {
        let left = self.operand(depth)?;
        self.skip_ws();
        match self.operator() {
            Some(op) => {
                let right = self.operand(depth)?;
                Ok(Expr::Compare(left, op, right))
            }
            None if matches!(left, Operand::Path { .. }) => Ok(Expr::Exists(left)),
            None => Err(format!(
                "expected a comparison operator at position {}",
                self.pos
            )),
        }
    }

    fn operator(&mut self) -> Option<Op> {
        const SYMBOLS: [(&str, Op); 9] = [
            ("===", Op::TypedEq),
            ("!==", Op::TypedNe),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=~", Op::Matches),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        const WORDS: [(&str, Op); 8] = [
            ("nin", Op::Nin),
            ("in", Op::In),
            ("contains", Op::Contains),
            ("size", Op::Size),
            ("empty", Op::Empty),
            ("subsetof", Op::SubsetOf),
            ("anyof", Op::AnyOf),
            ("noneof", Op::NoneOf),
        ];
        for (s, op) in SYMBOLS {
            if self.starts_with(s) {
                self.pos += s.chars().count();
                return Some(op);
            }
        }
        for (w, op) in WORDS {
            let n = w.chars().count();
            if self.starts_with(w) && !self.peek_at(n).is_some_and(is_name_char) {
                self.pos += n;
                return Some(op);
            }
        }
        None
    }

    fn operand(&mut self, depth: usize) -> Result<Operand, String> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(c @ ('@' | '$')) => {
                self.pos += 1;
                if c == '$' && self.peek().is_some_and(is_name_char) {
                    return Err(format!(
                        "variables cannot be used inside filters (position {start})"
                    ));
                }
                let tokens = self.segments(true, depth)?;
                Ok(Operand::Path {
                    current: c == '@',
                    tokens,
                })
            }
            Some('/') => {
                self.pos += 1;
                let mut pattern = String::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(format!("unterminated regex starting at position {start}"))
                        }
                        Some('\\') if self.peek_at(1) == Some('/') => {
                            pattern.push('/');
                            self.pos += 2;
                        }
                        Some('\\') if self.peek_at(1).is_some() => {
                            pattern.push('\\');
                            pattern.push(self.peek_at(1).unwrap_or('\\'));
                            self.pos += 2;
                        }
                        Some('/') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            pattern.push(c);
                            self.pos += 1;
                        }
                    }
                }
                let fstart = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    self.pos += 1;
                }
                let flags = self.slice(fstart, self.pos);
                Regex::new(&pattern, &flags)
                    .map(Operand::Regex)
                    .map_err(|e| format!("invalid regex at position {start}: {e}"))
            }
            Some(_) => self.literal(depth).map(Operand::Literal),
            None => Err(format!("expected a value at position {start}")),
        }
    }

    /// JSON-like literals as Jayway reads them: strings may be single-quoted, even
    /// inside arrays (`@.x in ['a','b']`).
    fn literal(&mut self, depth: usize) -> Result<Value, String> {
        self.nest(depth)?;
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(q @ ('\'' | '"')) => self.literal_string(q, start),
            Some('[') => self.literal_array(start, depth),
            Some('{') => self.literal_object(start, depth),
            Some(c) if c == '-' || c.is_ascii_digit() => self.literal_number(start),
            Some(c) if c.is_ascii_alphabetic() => self.literal_word(start),
            Some(c) => Err(format!("unexpected character '{c}' at position {start}")),
            None => Err(format!("expected a value at position {start}")),
        }
    }

    /// A string quoted by `q`, with JSON's escapes.
    fn literal_string(&mut self, q: char, start: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("unterminated string starting at position {start}")),
                Some('\\') => {
                    let Some(e) = self.peek_at(1) else {
                        return Err(format!("unterminated string starting at position {start}"));
                    };
                    self.pos += 2;
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        'b' => s.push('\u{8}'),
                        'f' => s.push('\u{c}'),
                        'u' => {
                            let hex: String = (0..4).filter_map(|i| self.peek_at(i)).collect();
                            let code = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == 4)
                                .ok_or_else(|| {
                                    format!("invalid \\u escape at position {}", self.pos)
                                })?;
                            s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            self.pos += 4;
                        }
                        other => s.push(other),
                    }
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    return Ok(Value::String(s));
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal_array(&mut self, start: usize, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.literal(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(format!(
                        "expected ',' or ']' in the array starting at position {start}{}",
                        self.found()
                    ))
                }
            }
        }
    }

    fn literal_object(&mut self, start: usize, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            let Value::String(k) = self.literal(depth + 1)? else {
                return Err(format!(
                    "object keys must be strings (object at position {start})"
                ));
            };
            self.skip_ws();
            if self.peek() != Some(':') {
                return Err(format!(
                    "expected ':' in the object starting at position {start}{}",
                    self.found()
                ));
            }
            self.pos += 1;
            let v = self.literal(depth + 1)?;
            map.insert(k, v);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => {
                    return Err(format!(
                        "expected ',' or '}}' in the object starting at position {start}{}",
                        self.found()
                    ))
                }
            }
        }
    }

    fn literal_number(&mut self, start: usize) -> Result<Value, String> {
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            self.pos += 1;
        }
        let s = self.slice(start, self.pos);
        serde_json::from_str::<Number>(&s)
            .map(Value::Number)
            .map_err(|_| format!("invalid number '{s}' at position {start}"))
    }

    /// `true`, `false` or `null`.
    fn literal_word(&mut self, start: usize) -> Result<Value, String> {
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        match self.slice(start, self.pos).as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            w => Err(format!("unexpected word '{w}' at position {start}")),
        }
    }
}

// ---------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------

/// Jayway's rendering of the path, as it appears in its messages: `$['a'][0]`.
fn display(tokens: &[Token]) -> String {
    let mut s = String::from("$");
    for t in tokens {
        fragment(&mut s, t);
    }
    s
}

fn fragment(s: &mut String, t: &Token) {
    match t {
        Token::Property { names, quote } => {
            s.push('[');
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push(*quote);
                s.push_str(&n.replace('\\', "\\\\").replace('\'', "\\'"));
                s.push(*quote);
            }
            s.push(']');
        }
        Token::Index(ix) => {
            s.push('[');
            for (i, n) in ix.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{n}");
            }
            s.push(']');
        }
        Token::Slice { from, to } => {
            s.push('[');
            if let Some(f) = from {
                let _ = write!(s, "{f}");
            }
            s.push(':');
            if let Some(t) = to {
                let _ = write!(s, "{t}");
            }
            s.push(']');
        }
        Token::Wildcard => s.push_str("[*]"),
        Token::Scan => s.push_str(".."),
        Token::Filter(_) => s.push_str("[?]"),
    }
}

/// Java's class name for the value Jayway found where it wanted an object.
fn java_class(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "java.lang.Boolean",
        Value::String(_) => "java.lang.String",
        Value::Array(_) => "java.util.ArrayList",
        Value::Object(_) => "java.util.LinkedHashMap",
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => "java.lang.Integer",
            Some(_) => "java.lang.Long",
            None if n.is_u64() => "java.math.BigInteger",
            None => "java.lang.Double",
        },
    }
}

/// Java's `toString()` of a Jackson-mapped value, which Jayway puts in some messages.
fn java_string(v: &Value, out: &mut String) {
    // Iterative so a deep document cannot exhaust the stack.
    enum Step<'a> {
        Val(&'a Value),
        Text(&'static str),
        Key(&'a str),
    }
    let mut stack = vec![Step::Val(v)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(t) => out.push_str(t),
            Step::Key(k) => {
                out.push_str(k);
                out.push('=');
            }
            Step::Val(v) => match v {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => {
                    let _ = write!(out, "{b}");
                }
                Value::Number(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::String(s) => out.push_str(s),
                Value::Array(a) => {
                    out.push('[');
                    stack.push(Step::Text("]"));
                    for (i, x) in a.iter().enumerate().rev() {
                        stack.push(Step::Val(x));
                        if i > 0 {
                            stack.push(Step::Text(", "));
                        }
                    }
                }
                Value::Object(m) => {
                    out.push('{');
                    stack.push(Step::Text("}"));
                    let entries: Vec<_> = m.iter().collect();
                    for (i, (k, x)) in entries.into_iter().enumerate().rev() {
                        stack.push(Step::Val(x));
                        stack.push(Step::Key(k));
                        if i > 0 {
                            stack.push(Step::Text(", "));
                        }
                    }
                }
            },
        }
    }
}

fn not_found(detail: String) -> NotFound {
    NotFound { detail }
}

/// Jayway's rules for a definite path, with its messages.
fn select_definite(tokens: &[Token], root: &Value) -> Result<Value, NotFound> {
    let mut cur = root;
    // The path walked so far, as Jayway quotes it in its errors.
    let mut path = String::from("$");
    for (i, t) in tokens.iter().enumerate() {
        cur = match t {
            Token::Property { names, .. } => {
                match property_step(tokens, i, names, cur, &mut path)? {
                    Stepped::Into(v) => v,
                    Stepped::Merged(m) => return Ok(m),
                }
            }
            Token::Index(ix) => index_step(tokens, i, ix[0], cur, &mut path)?,
            // `select` routes only definite token lists here.
            _ => cur,
        };
    }
    Ok(cur.clone())
}

/// Where one token of a definite path leads: into the document, or to a value built
/// from it that ends the selection (several names merged into one object).
enum Stepped<'a> {
    Into(&'a Value),
    Merged(Value),
}

/// Token `i` of `tokens`, a property (or properties, `names`), applied to `cur`.
fn property_step<'a>(
    tokens: &[Token],
    i: usize,
    names: &[String],
    cur: &'a Value,
    path: &mut String,
) -> Result<Stepped<'a>, NotFound> {
    let Value::Object(m) = cur else {
        let mut frag = String::new();
        fragment(&mut frag, &tokens[i]);
        return Err(not_found(format!(
            "Expected to find an object with property {frag} in path {path} but found '{}'. This is not a json object according to the JsonProvider: '{JSON_PROVIDER}'.",
            java_class(cur)
        )));
    };
    if names.len() > 1 {
        let merged: Map<String, Value> = names
            .iter()
            .filter_map(|n| m.get(n).map(|v| (n.clone(), v.clone())))
            .collect();
        return Ok(Stepped::Merged(Value::Object(merged)));
    }
    let name = &names[0];
    let leaf = i + 1 == tokens.len();
    match m.get(name) {
        Some(v) => {
            let _ = write!(path, "['{name}']");
            Ok(Stepped::Into(v))
        }
        None if leaf => Err(not_found(format!(
            "No results for path: {}",
            display(tokens)
        ))),
        None => Err(not_found(format!(
            "Missing property in path {path}['{name}']"
        ))),
    }
}

/// Token `i` of `tokens`, array index `ix`, applied to `cur`.
fn index_step<'a>(
    tokens: &[Token],
    i: usize,
    ix: i64,
    cur: &'a Value,
    path: &mut String,
) -> Result<&'a Value, NotFound> {
    match cur {
        Value::Null => Err(not_found(format!("The path {path} is null"))),
        Value::Array(a) => match wrap_index(ix, a.len()) {
            Some(k) => {
                let _ = write!(path, "[{ix}]");
                Ok(&a[k])
            }
            None => Err(not_found(format!(
                "No results for path: {}",
                display(tokens)
            ))),
        },
        other => {
            let mut rest = String::new();
            for t in &tokens[i..] {
                fragment(&mut rest, t);
            }
            let mut ctx = String::new();
            java_string(other, &mut ctx);
            Err(not_found(format!(
                "Filter: {rest} can only be applied to arrays. Current context is: {ctx}"
            )))
        }
    }
}

/// A selected value: borrowed from the document, or built (a merged union).
enum Hit<'a> {
    Ref(&'a Value),
    Owned(Value),
}

impl Hit<'_> {
    fn into_value(self) -> Value {
        match self {
            Hit::Ref(v) => v.clone(),
            Hit::Owned(v) => v,
        }
    }
}

/// Indefinite evaluation: every branch that does not fit is dropped, nothing fails.
/// `doc` is what `$` means inside filters.
fn select_all<'a>(tokens: &[Token], start: &'a Value, doc: &'a Value) -> Vec<Hit<'a>> {
    select_all_noting(tokens, start, doc, &Cell::new(false))
}

/// [`select_all`], also noting in `missing` whether some branch met an object without
/// the name it asked for (what Jayway's REQUIRE_PROPERTIES turns into an error).
fn select_all_noting<'a>(
    tokens: &[Token],
    start: &'a Value,
    doc: &'a Value,
    missing: &Cell<bool>,
) -> Vec<Hit<'a>> {
    let mut cur: Vec<&'a Value> = vec![start];
    let mut i = 0;
    while i < tokens.len() {
        let leaf = i + 1 == tokens.len();
        if let Token::Property { names, .. } = &tokens[i] {
            if names.len() > 1 && leaf {
                return cur
                    .into_iter()
                    .filter_map(|v| v.as_object())
                    .map(|m| {
                        let merged: Map<String, Value> = names
                            .iter()
                            .filter_map(|n| m.get(n).map(|v| (n.clone(), v.clone())))
                            .collect();
                        Hit::Owned(Value::Object(merged))
                    })
                    .collect();
            }
        }
        if tokens[i] == Token::Scan {
            // The parser guarantees a token after `..`.
            let Some(target) = tokens.get(i + 1) else {
                return Vec::new();
            };
            let mut next = Vec::new();
            for v in cur {
                for node in descendants(v) {
                    scan_apply(target, node, doc, &mut next);
                }
            }
            cur = next;
            i += 2;
            continue;
        }
        let mut next = Vec::new();
        for v in cur {
            if let (Token::Property { names, .. }, Value::Object(m)) = (&tokens[i], v) {
                if names.iter().any(|n| !m.contains_key(n)) {
                    missing.set(true);
                }
            }
            step(&tokens[i], v, doc, &mut next);
        }
        cur = next;
        i += 1;
    }
    cur.into_iter().map(Hit::Ref).collect()
}

/// Containers under `v` (itself included) in document pre-order, as Jayway walks them.
fn descendants(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(n) = stack.pop() {
        match n {
            Value::Object(m) => {
                out.push(n);
                stack.extend(m.values().rev().filter(|x| x.is_object() || x.is_array()));
            }
            Value::Array(a) => {
                out.push(n);
                stack.extend(a.iter().rev().filter(|x| x.is_object() || x.is_array()));
            }
            _ => {}
        }
    }
    out
}

fn scan_apply<'a>(target: &Token, node: &'a Value, doc: &'a Value, out: &mut Vec<&'a Value>) {
    match target {
        Token::Property { names, .. } => {
            if let Value::Object(m) = node {
                for n in names {
                    if let Some(v) = m.get(n) {
                        out.push(v);
                    }
                }
            }
        }
        Token::Index(_) | Token::Slice { .. } => {
            if node.is_array() {
                step(target, node, doc, out);
            }
        }
        Token::Wildcard => step(target, node, doc, out),
        Token::Filter(e) => match node {
            Value::Object(_) if accept(e, node, doc) => out.push(node),
            Value::Array(_) if accept(e, node, doc) => step(target, node, doc, out),
            _ => {}
        },
        Token::Scan => {}
    }
}

fn step<'a>(t: &Token, v: &'a Value, doc: &'a Value, out: &mut Vec<&'a Value>) {
    match t {
        Token::Property { names, .. } => {
            if let Value::Object(m) = v {
                out.extend(names.iter().filter_map(|n| m.get(n)));
            }
        }
        Token::Index(ix) => {
            if let Value::Array(a) = v {
                out.extend(
                    ix.iter()
                        .filter_map(|&i| wrap_index(i, a.len()).map(|k| &a[k])),
                );
            }
        }
        Token::Slice { from, to } => {
            if let Value::Array(a) = v {
                for i in slice_indexes(*from, *to, a.len()) {
                    if let Some(k) = wrap_index(i, a.len()) {
                        out.push(&a[k]);
                    }
                }
            }
        }
        Token::Wildcard => match v {
            Value::Object(m) => out.extend(m.values()),
            Value::Array(a) => out.extend(a.iter()),
            _ => {}
        },
        Token::Filter(e) => match v {
            Value::Object(_) if accept(e, v, doc) => out.push(v),
            Value::Array(a) => out.extend(a.iter().filter(|x| accept(e, x, doc))),
            _ => {}
        },
        Token::Scan => {}
    }
}

/// Jayway's slice arithmetic, quirks included: only `[from:]` and `[:to]` count
/// negative bounds from the end; in `[from:to]` a negative `to` selects nothing and a
/// negative `from` walks indexes that each wrap on their own.
fn slice_indexes(from: Option<i64>, to: Option<i64>, len: usize) -> std::ops::Range<i64> {
    let len = len as i64;
    match (from, to) {
        (Some(f), None) => {
            let f = if f < 0 { len + f } else { f }.max(0);
            f.min(len)..len
        }
        (None, Some(t)) => {
            let t = if t < 0 { len + t } else { t }.min(len).max(0);
            0..t
        }
        (Some(f), Some(t)) => {
            let t = t.min(len);
            if f >= t || len == 0 {
                0..0
            } else {
                f..t
            }
        }
        (None, None) => 0..0,
    }
}

// -- filters -------------------------------------------------------------------------

/// A filter operand's value: JSON, or absent (a path that found nothing).
enum Node {
    Undefined,
    Json(Value),
    Regex(Regex),
}

fn accept(e: &Expr, item: &Value, doc: &Value) -> bool {
    match e {
        Expr::Or(a, b) => accept(a, item, doc) || accept(b, item, doc),
        Expr::And(a, b) => accept(a, item, doc) && accept(b, item, doc),
        Expr::Not(a) => !accept(a, item, doc),
        Expr::Exists(op) => match op {
            Operand::Path { current, tokens } => {
                let base = if *current { item } else { doc };
                if is_definite(tokens) {
                    return select_definite(tokens, base).is_ok();
                }
                // Jayway checks existence with REQUIRE_PROPERTIES: an indefinite path
                // exists, even when it selects nothing, unless its definite prefix
                // fails or some branch lacks a name it asks for.
                let prefix = tokens
                    .iter()
                    .take_while(|t| is_definite(std::slice::from_ref(t)))
                    .count();
                if prefix > 0 && select_definite(&tokens[..prefix], base).is_err() {
                    return false;
                }
                let missing = Cell::new(false);
                select_all_noting(tokens, base, doc, &missing);
                !missing.get()
            }
            _ => true,
        },
        Expr::Compare(l, op, r) => {
            let l = operand_value(l, item, doc);
            let r = operand_value(r, item, doc);
            compare(&l, *op, &r)
        }
    }
}

fn operand_value(o: &Operand, item: &Value, doc: &Value) -> Node {
    match o {
        Operand::Literal(v) => Node::Json(v.clone()),
        Operand::Regex(r) => Node::Regex(r.clone()),
        Operand::Path { current, tokens } => {
            let base = if *current { item } else { doc };
            if is_definite(tokens) {
                match select_definite(tokens, base) {
                    Ok(v) => Node::Json(v),
                    Err(_) => Node::Undefined,
                }
            } else {
                Node::Json(Value::Array(
                    select_all(tokens, base, doc)
                        .into_iter()
                        .map(Hit::into_value)
                        .collect(),
                ))
            }
        }
    }
}

fn is_container(v: &Value) -> bool {
    v.is_array() || v.is_object()
}

fn num_cmp(a: &Number, b: &Number) -> Option<std::cmp::Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
    }
}

/// Jayway's `==`: containers compare structurally; a string equals a number whose
/// text it is, a number equals a string that parses to it; otherwise same type only.
fn loose_eq(l: &Value, r: &Value) -> bool {
    match (l, r) {
        (Value::Number(a), Value::Number(b)) => num_cmp(a, b) == Some(std::cmp::Ordering::Equal),
        (Value::String(a), Value::Number(b)) => *a == b.to_string(),
        (Value::Number(a), Value::String(b)) => serde_json::from_str::<Number>(b.trim())
            .ok()
            .is_some_and(|b| num_cmp(a, &b) == Some(std::cmp::Ordering::Equal)),
        (a, b) if is_container(a) || is_container(b) => a == b,
        (a, b) => a == b,
    }
}

fn same_kind(l: &Value, r: &Value) -> bool {
    std::mem::discriminant(l) == std::mem::discriminant(r)
}

fn compare(l: &Node, op: Op, r: &Node) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => node_eq(l, r),
        Op::Ne => !node_eq(l, r),
        Op::TypedEq => match (l, r) {
            (Node::Json(a), Node::Json(b)) => same_kind(a, b) && loose_eq(a, b),
            _ => node_eq(l, r),
        },
        Op::TypedNe => !compare(l, Op::TypedEq, r),
        Op::Lt => node_ord(l, r) == Some(Less),
        Op::Le => matches!(node_ord(l, r), Some(Less | Equal)),
        Op::Gt => node_ord(l, r) == Some(Greater),
        Op::Ge => matches!(node_ord(l, r), Some(Greater | Equal)),
        Op::Matches => match (l, r) {
            (Node::Json(Value::String(s)), Node::Regex(re))
            | (Node::Regex(re), Node::Json(Value::String(s))) => re.is_full_match(s),
            _ => false,
        },
        Op::In => match (l, r) {
            (Node::Json(x), Node::Json(list)) => within(x, list),
            _ => false,
        },
        Op::Nin => !compare(l, Op::In, r),
        Op::Contains => match (l, r) {
            (Node::Json(Value::String(a)), Node::Json(Value::String(b))) => a.contains(b.as_str()),
            (Node::Json(list @ Value::Array(_)), Node::Json(x)) => within(x, list),
            _ => false,
        },
        Op::Size => match (l, r) {
            (Node::Json(v), Node::Json(Value::Number(n))) => size_is(v, n),
            _ => false,
        },
        Op::Empty => match (l, r) {
            (Node::Json(v), Node::Json(Value::Bool(want))) => emptiness_is(v, *want),
            _ => false,
        },
        Op::SubsetOf | Op::AnyOf | Op::NoneOf => match (l, r) {
            (Node::Json(Value::Array(left)), Node::Json(right @ Value::Array(_))) => {
                let mut hits = left.iter().map(|x| within(x, right));
                match op {
                    Op::SubsetOf => hits.all(|h| h),
                    Op::AnyOf => hits.any(|h| h),
                    _ => !hits.any(|h| h),
                }
            }
            _ => false,
        },
    }
}

/// `==` between filter operands: an undefined operand equals only another.
fn node_eq(l: &Node, r: &Node) -> bool {
    match (l, r) {
        (Node::Json(a), Node::Json(b)) => loose_eq(a, b),
        (Node::Undefined, Node::Undefined) => true,
        _ => false,
    }
}

/// The order of two numbers, or of two strings by UTF-16 code units as Java orders
/// them; other operands have none.
fn node_ord(l: &Node, r: &Node) -> Option<std::cmp::Ordering> {
    match (l, r) {
        (Node::Json(Value::Number(a)), Node::Json(Value::Number(b))) => num_cmp(a, b),
        (Node::Json(Value::String(a)), Node::Json(Value::String(b))) => {
            Some(a.encode_utf16().cmp(b.encode_utf16()))
        }
        _ => None,
    }
}

/// Whether `list` is an array holding a value equal to `x`.
fn within(x: &Value, list: &Value) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|y| loose_eq(x, y)))
}

/// The `size` operator: a string's length in UTF-16 code units, or an array's or
/// object's number of entries, against `n`.
fn size_is(v: &Value, n: &Number) -> bool {
    let len = match v {
        Value::String(s) => s.encode_utf16().count(),
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => return false,
    };
    n.as_f64().is_some_and(|n| n.trunc() == len as f64)
}

/// The `empty` operator: whether a string, array or object's emptiness is `want`.
fn emptiness_is(v: &Value, want: bool) -> bool {
    let empty = match v {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => return false,
    };
    empty == want
}
