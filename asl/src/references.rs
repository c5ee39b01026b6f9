//! Which workflow variables each state reads: DescribeStateMachine's
//! `variableReferences`, so a console or a reviewer sees where a variable is used.
//!
//! Read from the definition as written, in both languages: in a JSONPath state, the
//! paths (`"x.$": "$order.id"`, `*Path` fields, a Choice rule's `Variable`) and the
//! paths inside intrinsic calls; in a JSONata state, the `$name`s of its `{% %}`
//! expressions. `$states`, the context (`$$`) and the input (`$`) are not variables.

use crate::intrinsics;
use crate::model::{is_jsonata_expr, QueryLanguage};
use crate::query::Expr;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// State name to the variables it reads, in the order they first appear; states that
/// read none are left out (as AWS leaves them out).
pub fn variable_references(definition: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let top = definition
        .get("QueryLanguage")
        .and_then(QueryLanguage::from_name)
        .unwrap_or(QueryLanguage::JsonPath);
    machine(definition, top, &mut out, 0);
    out
}

/// Nesting beyond this is not followed (the validator refuses such definitions).
const MAX_DEPTH: usize = 64;

fn machine(m: &Value, top: QueryLanguage, out: &mut BTreeMap<String, Vec<String>>, depth: usize) {
    let Some(states) = m.get("States").and_then(Value::as_object) else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    for (name, s) in states {
        let Some(o) = s.as_object() else { continue };
        let own = o.get("QueryLanguage").and_then(QueryLanguage::from_name);
        let lang = QueryLanguage::of_state(own, top);
        let mut names = Vec::new();
        for (k, v) in o {
            match k.as_str() {
                "ItemProcessor" | "Iterator" => machine(v, top, out, depth + 1),
                "Branches" => v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .for_each(|b| machine(b, top, out, depth + 1)),
                "Comment" | "ResultPath" => {}
                _ => field(k, v, lang, &mut names, 0),
            }
        }
        if !names.is_empty() {
            out.insert(name.clone(), names);
        }
    }
}

/// The variables read by field `key` holding `v`.
fn field(key: &str, v: &Value, lang: QueryLanguage, names: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::String(s) => match lang {
            QueryLanguage::Jsonata if is_jsonata_expr(s) => {
                if let Some(e) = Expr::parse(s) {
                    e.variables().for_each(|n| add(names, n));
                }
            }
            QueryLanguage::JsonPath if reads_a_path(key) => jsonpath_refs(s, names),
            _ => {}
        },
        Value::Array(items) => items
            .iter()
            .for_each(|i| field(key, i, lang, names, depth + 1)),
        Value::Object(o) => object(o, lang, names, depth + 1),
        _ => {}
    }
}

fn object(o: &Map<String, Value>, lang: QueryLanguage, names: &mut Vec<String>, depth: usize) {
    for (k, v) in o {
        if k != "ResultPath" {
            field(k, v, lang, names, depth);
        }
    }
}

/// A JSONPath field whose string value is a path or an intrinsic call.
fn reads_a_path(key: &str) -> bool {
    key.ends_with(".$") || key.ends_with("Path") || key == "Variable"
}

/// `$name...` at the head of a path, or each `$name` inside an intrinsic call's
/// arguments (outside its quoted strings).
fn jsonpath_refs(s: &str, names: &mut Vec<String>) {
    if intrinsics::looks_like_call(s) {
        let mut in_quote = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => in_quote = !in_quote,
                '$' if !in_quote => {
                    if let Some(n) = head_name(&s[i..]) {
                        add(names, n);
                    }
                }
                _ => {}
            }
        }
    } else if let Some(n) = head_name(s) {
        add(names, n);
    }
}

/// The variable a path starts with: `$name` then the end, `.` or `[`.
fn head_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('$')?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..end];
    (!name.is_empty()).then_some(name)
}

fn add(names: &mut Vec<String>, name: &str) {
    if !names.iter().any(|n| n == name) {
        names.push(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_languages_and_nested_states() {
        let def = json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Parameters": {"x.$": "$order.id", "y.$": "States.Format('{}', $who, '$notme')"},
                  "ResultPath": "$.r", "Next": "M"},
            "M": {"Type": "Map", "ItemsPath": "$lines", "End": true,
                  "ItemProcessor": {"StartAt": "J", "States": {
                      "J": {"Type": "Pass", "QueryLanguage": "JSONata",
                            "Output": "{% $total + $states.input.n + $count($lines) %}", "End": true}}}},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$flag", "BooleanEquals": true, "Next": "A"}]},
            "N": {"Type": "Pass", "Parameters": {"plain": "$notapath", "in.$": "$.x", "ctx.$": "$$.Execution.Id"}, "End": true}
        }});
        let refs = variable_references(&def);
        assert_eq!(refs["A"], vec!["order", "who"]);
        assert_eq!(refs["M"], vec!["lines"]);
        assert_eq!(refs["J"], vec!["total", "lines"]);
        assert_eq!(refs["C"], vec!["flag"]);
        assert!(!refs.contains_key("N"), "{refs:?}");
    }
}
