//! Hostile expressions end with an error, never a stack overflow (which would abort the
//! whole process, `oms up` included). Test threads have 2 MiB stacks, as tokio's do.

use jsonata::{evaluate, Limits, Outcome};
use serde_json::Map;

fn outcome(expr: &str) -> Outcome {
    evaluate(expr, None, &Map::new(), Limits::default())
}

#[test]
fn deep_nesting_in_the_parser_is_bounded() {
    let depth = 100_000;
    for (open, close) in [("(", ")"), ("[", "]"), ("{'a':", "}"), ("-", "")] {
        let expr = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        match outcome(&expr) {
            Outcome::Error { .. } | Outcome::Value(_) => {}
            Outcome::Undefined => panic!("{open}...{close} nested {depth} deep gave no value"),
        }
    }
}

#[test]
fn runaway_recursion_ends_with_u1001() {
    let expr = "($f := function($n){ [$f($n + 1)] }; $f(0))";
    match outcome(expr) {
        Outcome::Error { code, .. } => assert_eq!(code, "U1001"),
        other => panic!("expected U1001, got {other:?}"),
    }
}

#[test]
fn a_time_limit_ends_an_endless_loop() {
    let expr = "($f := function($n){ $f($n + 1) }; $f(0))";
    let limits = Limits {
        time_ms: Some(100),
        depth: None,
    };
    match evaluate(expr, None, &Map::new(), limits) {
        Outcome::Error { code, .. } => assert_eq!(code, "U1001"),
        other => panic!("expected U1001, got {other:?}"),
    }
}
