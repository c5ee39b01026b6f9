//! The Rust side of `cargo xtask bench`'s JSONata section: evaluations per second of
//! each expression over one document, measured as bench-reference.mjs (in
//! ../shared/jsonata-suite) measures jsonata-js, so the two can be set side by side.
//!
//!     cargo run --release -p jsonata --example bench -- SPEC.json [--seconds 2]
//!
//! SPEC.json is `{"doc": ..., "expressions": {"name": "expr", ...}, "expected": {"name":
//! value, ...}}` (xtask writes it from bench-reference.mjs, which stays in ../shared).
//! Each expression's result is checked against `expected` first: a fast wrong answer
//! is not a result. Prints one JSON object: per expression, the median of 3 runs in
//! evaluations/s for each way of calling the crate.

use jsonata::{evaluate, Compiled, Input, Limits, Outcome};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// oms's allocator (oms/src/main.rs): the crate is measured as oms runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec_path = args.first().ok_or("usage: bench SPEC.json [--seconds S]")?;
    let seconds: f64 = match args.iter().position(|a| a == "--seconds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| *s > 0.0)
            .ok_or("--seconds needs a positive number")?,
        None => 2.0,
    };
    // `--mode NAME` measures one way of calling the crate only (for `perf record`).
    let only = args
        .iter()
        .position(|a| a == "--mode")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let text =
        std::fs::read_to_string(spec_path).map_err(|e| format!("cannot read {spec_path}: {e}"))?;
    let spec: Value =
        serde_json::from_str(&text).map_err(|e| format!("{spec_path} is not JSON: {e}"))?;
    let doc = spec.get("doc").ok_or("the spec has no doc")?;
    let expressions = spec
        .get("expressions")
        .and_then(Value::as_object)
        .ok_or("the spec has no expressions object")?;
    let expected = spec.get("expected").and_then(Value::as_object);
    let mut results = Map::new();
    for (name, expr) in expressions {
        let expr = expr
            .as_str()
            .ok_or(format!("expression {name} is not a string"))?;
        check(name, expr, doc, expected.and_then(|e| e.get(name)))?;
        results.insert(
            name.clone(),
            measure_all(expr, doc, seconds, only.as_deref())?,
        );
    }
    let out = json!({"doc_bytes": doc.to_string().len(), "seconds_per_run": seconds,
                     "results": results});
    println!("{out}");
    Ok(())
}

/// Fails unless `expr` gives `expected` over `doc` (when there is an expectation).
fn check(name: &str, expr: &str, doc: &Value, expected: Option<&Value>) -> Result<(), String> {
    let got = evaluate(expr, Some(doc), &Map::new(), Limits::default());
    match (expected, &got) {
        (Some(want), Outcome::Value(v)) if v == want => Ok(()),
        (None, Outcome::Value(_)) => Ok(()),
        _ => Err(format!(
            "{name}: {expr} gave {got:?}, jsonata-js gives {expected:?}"
        )),
    }
}

/// The four ways of calling the crate (or the one `only` names), each the median of 3
/// runs in evaluations/s.
fn measure_all(expr: &str, doc: &Value, seconds: f64, only: Option<&str>) -> Result<Value, String> {
    let compiled = Compiled::new(expr).map_err(|e| format!("{expr}: {e:?}"))?;
    let input = Input::new(Some(doc));
    let none = Map::new();
    let limits = Limits::default();
    type Mode<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    let modes: Vec<Mode> = vec![
        // Compiled once, the document already in the engine's form (as jsonata-js's is).
        (
            "compiled_once",
            Box::new(|| drop(compiled.evaluate_input(&input, &none, limits))),
        ),
        // Compiled once, the document converted from serde_json on every evaluation.
        (
            "compiled_once_json_input",
            Box::new(|| drop(compiled.evaluate(Some(doc), &none, limits))),
        ),
        // Parsed on every evaluation, the document in the engine's form.
        (
            "compile_each_time",
            Box::new(|| {
                if let Ok(c) = Compiled::new(expr) {
                    drop(c.evaluate_input(&input, &none, limits));
                }
            }),
        ),
        // `jsonata::evaluate`: parse, convert, evaluate.
        (
            "compile_each_time_json_input",
            Box::new(|| drop(evaluate(expr, Some(doc), &none, limits))),
        ),
    ];
    let mut out = Map::new();
    for (name, f) in modes {
        if only.is_none_or(|o| o == name) {
            let v = runs(seconds, f);
            out.insert(
                name.into(),
                json!({"evals_per_s": median(&v).round(), "runs": v}),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Three runs of `seconds` each after a 300 ms warm-up, as bench-reference.mjs does:
/// batches of 100 evaluations until the time is up.
fn runs(seconds: f64, mut f: impl FnMut()) -> Vec<f64> {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        f();
    }
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let end = Duration::from_secs_f64(seconds);
            let mut n = 0u64;
            loop {
                for _ in 0..100 {
                    f();
                }
                n += 100;
                if start.elapsed() >= end {
                    break;
                }
            }
            (n as f64 / start.elapsed().as_secs_f64()).round()
        })
        .collect()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
