//! Data-driven JSONPath cases (`jsonpath_cases.json`) plus no-panic properties.

use asl::jsonpath::{JsonPath, NotFound, Root};
use proptest::prelude::*;
use serde_json::{json, Value};

fn cases() -> Value {
    let text = include_str!("jsonpath_cases.json");
    serde_json::from_str(text).expect("jsonpath_cases.json is valid JSON")
}

/// `{"not_found": ..}` / `{"parse_error": ..}` / `{"error": ..}` mark failures; any
/// other expectation is the value itself.
fn special<'a>(expect: &'a Value, key: &str) -> Option<&'a Value> {
    match expect {
        Value::Object(m) if m.len() == 1 => m.get(key),
        _ => None,
    }
}

fn expected_root(case: &Value) -> Root {
    match case.get("root").and_then(Value::as_str) {
        None | Some("input") => Root::Input,
        Some("context") => Root::Context,
        Some(v) => Root::Variable(
            v.strip_prefix("var:")
                .expect("root is input, context or var:NAME")
                .to_string(),
        ),
    }
}

#[test]
fn select_cases() {
    let all = cases();
    let list = all["select"].as_array().expect("select list");
    let mut failures = Vec::new();
    for case in list {
        let path = case["path"].as_str().expect("path");
        let input = &case["input"];
        let expect = &case["expect"];
        let got = JsonPath::parse(path);
        if special(expect, "parse_error").is_some() {
            if let Ok(p) = got {
                failures.push(format!("{path}: expected a parse error, got {p:?}"));
            }
            continue;
        }
        let p = match got {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{path}: parse error {e}"));
                continue;
            }
        };
        assert_eq!(p.text(), path);
        if p.root() != &expected_root(case) {
            failures.push(format!("{path}: root {:?}", p.root()));
        }
        let result = p.select(input);
        match (special(expect, "not_found"), result) {
            (Some(detail), Err(NotFound { detail: got })) => {
                if detail.as_str() != Some(got.as_str()) {
                    failures.push(format!("{path}: detail\n   got {got}\n  want {detail}"));
                }
            }
            (Some(_), Ok(v)) => failures.push(format!("{path}: expected NotFound, got {v}")),
            (None, Ok(v)) => {
                if &v != expect {
                    failures.push(format!("{path}: got {v}, want {expect}"));
                }
                // Indefinite paths always answer with an array.
                if !p.is_definite() && !v.is_array() {
                    failures.push(format!("{path}: indefinite but not an array"));
                }
            }
            (None, Err(e)) => failures.push(format!("{path}: unexpected NotFound {}", e.detail)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(list.len() >= 60);
}

#[test]
fn set_cases() {
    let all = cases();
    let mut failures = Vec::new();
    for case in all["set"].as_array().expect("set list") {
        let path = case["path"].as_str().expect("path");
        let p = JsonPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut target = case["target"].clone();
        let result = p.set(&mut target, case["value"].clone());
        let expect = &case["expect"];
        match (special(expect, "error"), result) {
            (Some(want), Err(got)) => {
                if let Some(want) = want.as_str() {
                    if want != got {
                        failures.push(format!("{path}: error\n   got {got}\n  want {want}"));
                    }
                }
                if target != case["target"] {
                    failures.push(format!("{path}: target changed on failure: {target}"));
                }
            }
            (Some(_), Ok(())) => failures.push(format!("{path}: expected an error, got {target}")),
            (None, Ok(())) => {
                if &target != expect {
                    failures.push(format!("{path}: got {target}, want {expect}"));
                }
            }
            (None, Err(e)) => failures.push(format!("{path}: unexpected error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn definiteness() {
    for (path, definite) in [
        ("$", true),
        ("$.a[0]['b']", true),
        ("$['a','b']", true),
        ("$['a','b'].c", false),
        ("$.a[0,1]", false),
        ("$.a[*]", false),
        ("$..a", false),
        ("$.a[1:]", false),
        ("$.a[?(@.x)]", false),
    ] {
        assert_eq!(
            JsonPath::parse(path).unwrap().is_definite(),
            definite,
            "{path}"
        );
    }
}

#[test]
fn parse_errors_name_the_rule() {
    let e = JsonPath::parse("$.a['b'").unwrap_err();
    assert!(e.contains("position 3"), "{e}");
    let e = JsonPath::parse("$.a[0").unwrap_err();
    assert!(e.contains("unterminated bracket at position 3"), "{e}");
}

#[test]
fn absurd_input_is_refused_not_crashed() {
    let long = format!("$.{}", "a".repeat(asl::jsonpath::MAX_PATH_LEN));
    assert!(JsonPath::parse(&long).is_err());
    let deep = format!("$[?({}@.a{})]", "(".repeat(500), ")".repeat(500));
    assert!(JsonPath::parse(&deep).is_err());
    let nots = format!("$[?({}@.a)]", "!".repeat(5000));
    assert!(JsonPath::parse(&nots).is_err());
    let filters = format!("$.a{}", "[?(@.b".repeat(200) + &")]".repeat(200));
    assert!(JsonPath::parse(&filters).is_err());
    // Many segments are fine and evaluate without recursion.
    let many = format!("${}", ".a".repeat(5000));
    let p = JsonPath::parse(&many).unwrap();
    assert!(p.select(&json!({"a": {"a": 1}})).is_err());
    let scan = JsonPath::parse(&format!("${}", "..a".repeat(2000))).unwrap();
    assert_eq!(scan.select(&json!({"a": 1})).unwrap(), json!([]));
}

#[test]
fn regex_is_bounded() {
    let p = JsonPath::parse("$[?(@ =~ /(a*)*b/)]").unwrap();
    let s = "a".repeat(5000);
    assert_eq!(p.select(&json!([s])).unwrap(), json!([]));
    // Long subjects hit the depth cap instead of the stack (test threads get 2 MiB).
    for pattern in ["a*", "(a|b)*c?", "(?:a+)+", ".*z", "[a-z]{0,}"] {
        let p = JsonPath::parse(&format!("$[?(@ =~ /{pattern}/)]")).unwrap();
        for n in [10, 2_900, 3_100, 50_000] {
            let _ = p.select(&json!(["a".repeat(n)]));
        }
    }
    let p = JsonPath::parse("$[?(@ =~ /a*/)]").unwrap();
    assert_eq!(p.select(&json!(["aaa", "ab"])).unwrap(), json!(["aaa"]));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        "\\.[a-c]",
        Just(".*".to_string()),
        Just("..a".to_string()),
        Just("..*".to_string()),
        "\\[-?[0-3]\\]",
        Just("[*]".to_string()),
        Just("[1:]".to_string()),
        Just("[-2:]".to_string()),
        Just("[:2]".to_string()),
        Just("[0:-1]".to_string()),
        Just("[0,2]".to_string()),
        Just("['a','b']".to_string()),
        Just("[?(@.a)]".to_string()),
        Just("[?(@.a == 1 || @.b != 'x')]".to_string()),
        Just("[?(@ > 0)]".to_string()),
        Just("[?(@.a =~ /a.*/)]".to_string()),
        Just("[?(@.c in [1, 'a'])]".to_string()),
    ];
    prop::collection::vec(seg, 0..6).prop_map(|v| format!("${}", v.concat()))
}

proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = JsonPath::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_path_alphabet(s in "[$@.\\[\\]()?*:,'\"=!<>&|~/ a-c0-9-]{0,40}") {
        let _ = JsonPath::parse(&s);
    }

    #[test]
    fn select_and_set_never_panic(path in arb_path(), doc in arb_json()) {
        let p = JsonPath::parse(&path).unwrap();
        let out = p.select(&doc);
        if !p.is_definite() {
            prop_assert!(out.unwrap().is_array());
        }
        let mut target = doc.clone();
        if p.set(&mut target, json!("v")).is_ok() {
            // A successful set can be read back.
            prop_assert_eq!(p.select(&target).unwrap(), json!("v"));
        }
    }
}
