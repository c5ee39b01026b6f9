//! Data-driven tests of the intrinsic functions (cases in `intrinsics_cases.json`) and
//! property tests that neither parsing nor evaluation can panic.

use asl::error::Failure;
use asl::intrinsics::{self, Arg, Call, IntrinsicHost};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Resolves `$`, `$.a.b`, `$.a[0]` and `$.a['b c']` over the input, `$$.x` over a fixed
/// context and `$var.x` over fixed variables; random numbers and UUIDs are a counter, so
/// expectations are stable.
struct TestHost {
    input: Value,
    counter: u64,
}

impl TestHost {
    fn new(input: Value) -> Self {
        TestHost { input, counter: 6 }
    }
}

fn walk(mut v: &Value, rest: &str) -> Option<Value> {
    let mut s = rest;
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix("['") {
            let end = r.find("']")?;
            v = v.get(&r[..end])?;
            s = &r[end + 2..];
        } else if let Some(r) = s.strip_prefix('[') {
            let end = r.find(']')?;
            v = v.get(r[..end].parse::<usize>().ok()?)?;
            s = &r[end + 1..];
        } else if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            v = v.get(&r[..end])?;
            s = &r[end..];
        } else {
            return None;
        }
    }
    Some(v.clone())
}

impl IntrinsicHost for TestHost {
    fn resolve_path(&mut self, path: &str) -> Result<Value, Failure> {
        let context = json!({"Execution": {"Name": "exec"}});
        let vars = json!({"var": {"x": "vx"}});
        let found = if let Some(rest) = path.strip_prefix("$$") {
            walk(&context, rest)
        } else if let Some(rest) = path.strip_prefix("$.").map(|r| format!(".{r}")) {
            walk(&self.input, &rest)
        } else if path == "$" {
            Some(self.input.clone())
        } else if let Some(rest) = path.strip_prefix("$[") {
            walk(&self.input, &format!("[{rest}"))
        } else {
            walk(&vars, &format!(".{}", &path[1..]))
        };
        found.ok_or_else(|| Failure::runtime(format!("path {path} not found")))
    }
    fn random_u64(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn uuid_v4(&mut self) -> String {
        format!("00000000-0000-4000-8000-{:012}", self.counter - 5)
    }
}

#[test]
fn cases_from_json() {
    let text = include_str!("intrinsics_cases.json");
    let cases: Vec<Value> = serde_json::from_str(text).expect("cases file is JSON");
    assert!(cases.len() >= 80);
    let mut failures = Vec::new();
    for case in &cases {
        let expr = case["expr"].as_str().expect("expr");
        let expect = &case["expect"];
        let mut host = TestHost::new(case["input"].clone());
        let parsed = intrinsics::parse(expr);
        let outcome = match (&parsed, expect.get("parse_error")) {
            (Err(_), Some(_)) => continue,
            (Ok(c), Some(_)) => format!("parsed although a parse error was expected: {c:?}"),
            (Err(e), None) => format!("parse error: {e}"),
            (Ok(call), None) => {
                let got = intrinsics::eval(call, &mut host);
                let is_error = expect
                    .as_object()
                    .is_some_and(|o| o.contains_key("error") && o.len() <= 2);
                match (got, is_error) {
                    (Ok(v), false) if &v == expect => continue,
                    (Err(f), true) => {
                        let cause_ok = expect
                            .get("cause")
                            .is_none_or(|c| f.cause.as_deref() == c.as_str());
                        if f.error == expect["error"] && cause_ok {
                            continue;
                        }
                        format!("failed with {f}")
                    }
                    (Ok(v), _) => format!("returned {v}"),
                    (Err(f), false) => format!("failed with {f}"),
                }
            }
        };
        failures.push(format!("{expr}\n    expected {expect}\n    but {outcome}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn format_template_literal_keeps_its_escapes() {
    let call = intrinsics::parse(r"States.Format('\{}', 'x')").unwrap();
    assert_eq!(call.args[0], Arg::Literal(json!(r"\{}")));
    assert_eq!(call.args[1], Arg::Literal(json!("x")));
}

#[test]
fn parse_errors_say_where() {
    let e = intrinsics::parse(r#"States.Format('a \"b\"')"#).unwrap_err();
    assert!(e.contains("invalid escape"), "{e}");
    let e = intrinsics::parse("States.Nope(1)").unwrap_err();
    assert!(
        e.contains("unknown intrinsic function 'States.Nope'"),
        "{e}"
    );
}

#[test]
fn seeded_math_random_is_deterministic() {
    let call = intrinsics::parse("States.MathRandom(1, 1000, 1234)").unwrap();
    let a = intrinsics::eval(&call, &mut TestHost::new(Value::Null)).unwrap();
    let b = intrinsics::eval(&call, &mut TestHost::new(Value::Null)).unwrap();
    assert_eq!(a, b);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("MD5"), Just("SHA-1"), Just("{}"), Just("[1]")].prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".{0,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parse_never_panics(s in ".{0,64}") {
        let _ = intrinsics::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_call_like_text(s in "States\\.[A-Za-z]{0,12}\\([ -~]{0,40}") {
        let _ = intrinsics::parse(&s);
    }

    #[test]
    fn eval_never_panics(
        f in 0..intrinsics::FUNCTIONS.len(),
        args in prop::collection::vec(arb_json(), 0..5),
    ) {
        let call = Call {
            name: intrinsics::FUNCTIONS[f].0.to_string(),
            args: args.into_iter().map(Arg::Literal).collect(),
        };
        let _ = intrinsics::eval(&call, &mut TestHost::new(Value::Null));
    }
}
