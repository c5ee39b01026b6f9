//! Choice rules: comparison operators as Step Functions applies them. A comparison
//! between values of the wrong type is false, not an error; a Variable that selects
//! nothing is an error except for IsPresent.

use crate::error::Failure;
use crate::jsonpath::JsonPath;
use crate::model::{CompareOp, Condition, Operand};
use crate::time::parse_timestamp;
use serde_json::Value;
use std::cmp::Ordering;

pub type Select<'a> = &'a dyn Fn(&JsonPath, &Value) -> Result<Value, String>;

pub fn evaluate(cond: &Condition, input: &Value, select: Select) -> Result<bool, Failure> {
    match cond {
        Condition::And(cs) => {
            for c in cs {
                if !evaluate(c, input, select)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Condition::Or(cs) => {
            for c in cs {
                if evaluate(c, input, select)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Condition::Not(c) => Ok(!evaluate(c, input, select)?),
        Condition::Jsonata(_) => Err(Failure::runtime(
            "JSONata Choice conditions are not evaluated by this engine yet.",
        )),
        Condition::Compare {
            variable,
            op,
            operand,
        } => {
            let value = select(variable, input).ok();
            if *op == CompareOp::IsPresent {
                return Ok(
                    value.is_some() == (operand_literal(operand) == Some(&Value::Bool(true)))
                );
            }
            let Some(value) = value else {
                return Err(Failure::runtime(format!(
                    "Invalid path '{}': The choice state's condition path references an invalid value.",
                    variable.text()
                )));
            };
            let operand = match operand {
                Operand::Literal(v) => v.clone(),
                Operand::Path(p) => select(p, input).map_err(|_| {
                    Failure::runtime(format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        p.text()
                    ))
                })?,
            };
            Ok(compare(*op, &value, &operand))
        }
    }
}

fn operand_literal(o: &Operand) -> Option<&Value> {
    match o {
        Operand::Literal(v) => Some(v),
        Operand::Path(_) => None,
    }
}

fn compare(op: CompareOp, value: &Value, operand: &Value) -> bool {
    use CompareOp::*;
    let flag = operand.as_bool().unwrap_or(false);
    match op {
        IsNull => value.is_null() == flag,
        IsNumeric => value.is_number() == flag,
        IsString => value.is_string() == flag,
        IsBoolean => value.is_boolean() == flag,
        IsTimestamp => value.as_str().and_then(parse_timestamp).is_some() == flag,
        IsPresent => true,
        BooleanEquals => matches!((value, operand), (Value::Bool(a), Value::Bool(b)) if a == b),
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals => {
            let (Value::String(a), Value::String(b)) = (value, operand) else {
                return false;
            };
            ordered(op, java_string_cmp(a, b))
        }
        StringMatches => {
            let (Value::String(a), Value::String(p)) = (value, operand) else {
                return false;
            };
            wildcard_match(p, a)
        }
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => {
            let (Value::Number(a), Value::Number(b)) = (value, operand) else {
                return false;
            };
            let ord = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => match a
                    .as_f64()
                    .unwrap_or(f64::NAN)
                    .partial_cmp(&b.as_f64().unwrap_or(f64::NAN))
                {
                    Some(o) => o,
                    None => return false,
                },
            };
            ordered(op, ord)
        }
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => {
            let (Some(a), Some(b)) = (
                value.as_str().and_then(parse_timestamp),
                operand.as_str().and_then(parse_timestamp),
            ) else {
                return false;
            };
            ordered(op, a.cmp(&b))
        }
    }
}

fn ordered(op: CompareOp, ord: Ordering) -> bool {
    use CompareOp::*;
    match op {
        StringEquals | NumericEquals | TimestampEquals => ord == Ordering::Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => ord == Ordering::Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => ord == Ordering::Greater,
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => {
            ord != Ordering::Greater
        }
        _ => ord != Ordering::Less,
    }
}

/// Java's String.compareTo: by UTF-16 code units, which differs from Rust's byte order
/// for characters beyond the Basic Multilingual Plane.
fn java_string_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// `*` matches any run of characters; `\*` and `\\` are literal.
///
/// The invoker matches every task's resource, function and state machine against its
/// rules with this (about 40 times an order): a pattern without escapes, the usual
/// kind, is matched a literal run at a time (`runs_match`), which was 1.4% of an
/// order's instructions a character at a time (callgrind).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    if pattern.contains('\\') {
        escaped_match(pattern, text)
    } else {
        runs_match(pattern, text)
    }
}

/// `wildcard_match` for a pattern with no `\`: the text starts with the run before the
/// first star, ends with the run after the last, and holds the runs between, in
/// order, in what is left. Taking each middle run where it first occurs is exact:
/// an earlier match leaves more of the text to the runs after it.
fn runs_match(pattern: &str, text: &str) -> bool {
    let (Some(first_star), Some(last_star)) = (pattern.find('*'), pattern.rfind('*')) else {
        return pattern == text;
    };
    let (head, tail) = (&pattern[..first_star], &pattern[last_star + 1..]);
    if text.len() < head.len() + tail.len() || !text.starts_with(head) || !text.ends_with(tail) {
        return false;
    }
    if first_star == last_star {
        return true;
    }
    let mut rest = &text[head.len()..text.len() - tail.len()];
    for run in pattern[first_star + 1..last_star].split('*') {
        match rest.find(run) {
            Some(at) => rest = &rest[at + run.len()..],
            None => return false,
        }
    }
    true
}

/// `wildcard_match` for any pattern, escapes included: both strings walked in place a
/// character at a time, backtracking to the last star.
fn escaped_match(pattern: &str, text: &str) -> bool {
    let (mut t, mut p) = (0usize, 0usize);
    // After a star: the pattern's byte after it, and the text's byte it has reached.
    let mut star: Option<(usize, usize)> = None;
    // Iterative glob matching with backtracking to the last star: linear memory, no
    // recursion, so hostile patterns cannot overflow the stack.
    while let Some(c) = text[t..].chars().next() {
        match wildcard_token(pattern, p) {
            Some((Some(literal), next)) if literal == c => {
                t += c.len_utf8();
                p = next;
            }
            Some((None, next)) => {
                star = Some((next, t));
                p = next;
            }
            _ => match star {
                Some((after_star, reached)) => {
                    let skipped = text[reached..].chars().next().map_or(0, char::len_utf8);
                    star = Some((after_star, reached + skipped));
                    p = after_star;
                    t = reached + skipped;
                }
                None => return false,
            },
        }
    }
    while let Some((None, next)) = wildcard_token(pattern, p) {
        p = next;
    }
    p == pattern.len()
}

/// The token at byte `p` of a wildcard pattern, and the byte after it: None for a
/// star, else the character it matches (`\` makes the next one literal; a trailing
/// one is itself).
fn wildcard_token(pattern: &str, p: usize) -> Option<(Option<char>, usize)> {
    let c = pattern[p..].chars().next()?;
    let after = p + c.len_utf8();
    Some(match c {
        '*' => (None, after),
        '\\' => match pattern[after..].chars().next() {
            Some(n) => (Some(n), after + n.len_utf8()),
            None => (Some('\\'), after),
        },
        c => (Some(c), after),
    })
}

#[cfg(test)]
mod tests {
    use super::{escaped_match, runs_match, wildcard_match};
    use proptest::prelude::*;

    proptest! {
        /// The two matchers agree on every pattern without escapes (few letters, so
        /// that runs repeat and overlap and the stars have choices to make).
        #[test]
        fn runs_match_as_the_walk_does(pattern in "[ab*é]{0,8}", text in "[abé]{0,10}") {
            prop_assert_eq!(runs_match(&pattern, &text), escaped_match(&pattern, &text));
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("log-*.txt", "log-2024.txt"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "acbd"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
        assert!(wildcard_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!wildcard_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa"));
        assert!(wildcard_match("", ""));
        assert!(!wildcard_match("", "a"));
        assert!(!wildcard_match("a", ""));
        assert!(wildcard_match("a**", "a"));
        assert!(wildcard_match("é*ü", "éxyzü"));
        assert!(!wildcard_match("é*ü", "éxyzu"));
        assert!(wildcard_match("*ü", "üü"));
        assert!(wildcard_match("a\\\\b", "a\\b"));
        assert!(wildcard_match("a\\", "a\\"));
        assert!(wildcard_match("a\\*", "a*"));
        assert!(!wildcard_match("a\\*", "ab"));
        assert!(wildcard_match(
            "arn:aws:lambda:*:*:function:Pick*",
            "arn:aws:lambda:us-east-1:1:function:PickShipment"
        ));
    }
}
