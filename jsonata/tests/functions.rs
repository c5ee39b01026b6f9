//! Host functions: called with JSON arguments, their values and errors flow back.

use jsonata::{Bindings, Compiled, FunctionError, Functions, Input, Limits, Outcome};
use serde_json::{json, Map, Value};

fn run(expr: &str, functions: &Functions) -> Outcome {
    let compiled = Compiled::new(expr).expect("parses");
    let input = Input::new(Some(&json!({"items": [1, 2, 3, 4, 5]})));
    compiled.evaluate_with(&input, &Map::new(), functions, Limits::default())
}

fn functions() -> Functions {
    let mut f = Functions::new();
    f.add("chunks", |args| {
        let (Some(Value::Array(items)), Some(Value::Number(n))) = (&args[0], &args[1]) else {
            return Err(FunctionError {
                code: "D3001".into(),
                message: "chunks(array, size)".into(),
            });
        };
        let size = n.as_u64().unwrap_or(1).max(1) as usize;
        Ok(Some(
            items
                .chunks(size)
                .map(|c| Value::Array(c.to_vec()))
                .collect(),
        ))
    });
    f.add("nothing", |_| Ok(None));
    // A name the language has: the host's replaces it.
    f.add("random", |_| Ok(Some(json!(0.25))));
    f
}

#[test]
fn a_host_function_is_called_with_json_and_returns_json() {
    assert_eq!(
        run("$chunks(items, 2)", &functions()),
        Outcome::Value(json!([[1, 2], [3, 4], [5]]))
    );
    assert_eq!(run("$nothing()", &functions()), Outcome::Undefined);
    assert_eq!(run("$random()", &functions()), Outcome::Value(json!(0.25)));
}

#[test]
fn a_host_function_error_keeps_its_code() {
    match run("$chunks('x', 2)", &functions()) {
        Outcome::Error { code, message } => {
            assert_eq!(code, "D3001");
            assert_eq!(message, "chunks(array, size)");
        }
        other => panic!("expected D3001, got {other:?}"),
    }
}

#[test]
fn without_host_functions_the_name_is_unknown() {
    match run("$chunks(items, 2)", &Functions::new()) {
        Outcome::Error { code, .. } => assert_eq!(code, "T1006"),
        other => panic!("expected T1006, got {other:?}"),
    }
}

/// A parsed state machine is shared across the runtime's threads, with its expressions.
#[test]
fn a_compiled_expression_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let compiled = Compiled::new("$sum(items)").expect("parses");
    shareable(&compiled);
    let compiled = std::sync::Arc::new(compiled);
    let other = std::sync::Arc::clone(&compiled);
    let sum = std::thread::spawn(move || {
        let input = Input::new(Some(&json!({"items": [1, 2]})));
        other.evaluate_input(&input, &Map::new(), Limits::default())
    })
    .join()
    .expect("thread ends");
    assert_eq!(sum, Outcome::Value(json!(3)));
}

/// Bindings converted once give what the same serde_json bindings give, for every
/// expression evaluated with them, and a later `bind` of a name wins.
#[test]
fn bindings_converted_once_match_json_bindings() {
    let json = json!({"states": {"input": {"n": 2}, "context": {"id": "x"}}, "k": [1, 2]});
    let json = json.as_object().expect("an object").clone();
    let bound = Bindings::new(&json);
    let input = Input::new(Some(&json!({"items": [1, 2, 3]})));
    let none = Functions::new();
    for expr in [
        "$states.input.n * $sum(items)",
        "$states.context.id & $string($k)",
        "$nope",
    ] {
        let compiled = Compiled::new(expr).expect("parses");
        assert_eq!(
            compiled.evaluate_bound(&input, &bound, &none, Limits::default()),
            compiled.evaluate_with(&input, &json, &none, Limits::default()),
            "{expr}"
        );
    }
    let mut rebound = Bindings::new(&json);
    rebound.bind("k", &json!("again"));
    let compiled = Compiled::new("$k").expect("parses");
    assert_eq!(
        compiled.evaluate_bound(&input, &rebound, &none, Limits::default()),
        Outcome::Value(json!("again"))
    );
}
