//! What a JSONata state does differently from a JSONPath one: `Arguments` instead of
//! InputPath and Parameters, `Output` instead of ResultSelector, ResultPath and
//! OutputPath, `$states.result` and `$states.errorOutput` for Output and Assign, and
//! expressions in Items, Condition, Seconds and Timestamp. Everything else (retries,
//! catchers, the Map's fan-out, history) is the evaluator's shared path.

use super::*;
use crate::model::Condition;

/// A JSONata state's action (`Core::act` hands JSONata states here). Task, Parallel
/// and Map share the JSONPath actions, which ask [`arguments`] and [`map_items`] for
/// the parts that differ.
pub(super) fn act(scope: &mut Scope, input: &mut Value) -> Step {
    match &scope.state.kind {
        Kind::Pass { .. } | Kind::Succeed => act_pass(scope, input),
        Kind::Fail { error, cause } => super::act_fail(scope, input, error, cause),
        Kind::Choice { rules, default } => act_choice(scope, input, rules, *default),
        Kind::Wait(wait) => act_wait(scope, input, wait),
        Kind::Task(spec) => super::act_task(scope, input, spec),
        Kind::Parallel { branches } => super::act_parallel(scope, input, branches),
        Kind::Map(spec) => super::act_map(scope, input, spec),
    }
}

/// Pass and Succeed: Output (default: the input) and Assign, both over `$states.input`.
fn act_pass(scope: &mut Scope, input: &mut Value) -> Step {
    let state = scope.state;
    let raw = std::mem::take(input);
    let states = States::input(&raw);
    let (assigned, output) = tryf!(assign_and_output(
        scope,
        state.assign.as_ref(),
        state.output.as_ref(),
        states,
        &raw
    ));
    let next = match state.kind {
        Kind::Succeed => Transition::End,
        _ => state.transition,
    };
    Step::Done(output, assigned, next)
}

/// Choice: the first rule whose Condition is true decides the next state, and its
/// Assign and Output apply; with none, the Default does with the state's own.
fn act_choice(
    scope: &mut Scope,
    input: &mut Value,
    rules: &[ChoiceRule],
    default: Option<usize>,
) -> Step {
    let state = scope.state;
    let raw = std::mem::take(input);
    let states = States::input(&raw);
    let mut chosen = None;
    for rule in rules {
        if tryf!(condition(scope, &rule.condition, states)) {
            chosen = Some((rule.next, rule.assign.as_ref(), rule.output.as_ref()));
            break;
        }
    }
    let (next, assign_t, output_t) = match (chosen, default) {
        (Some(c), _) => c,
        (None, Some(d)) => (d, state.assign.as_ref(), state.output.as_ref()),
        (None, None) => {
            return Step::Failed(Failure::new(
                names::NO_CHOICE_MATCHED,
                format!("No Matches! State: {}", state.name),
            ))
        }
    };
    let (assigned, output) = tryf!(assign_and_output(scope, assign_t, output_t, states, &raw));
    Step::Done(output, assigned, Transition::Next(next))
}

/// A rule's Condition: a boolean written as it is, or an expression giving one.
pub(crate) fn condition<R: Resolve + ?Sized>(
    scope: &mut R,
    c: &Condition,
    states: States,
) -> Result<bool, Failure> {
    let Condition::Jsonata(t) = c else {
        return Err(Failure::runtime("a JSONata Choice rule needs a Condition"));
    };
    let path = FieldPath::root("Condition");
    match scope.render_ata(t, states, &path)? {
        Value::Bool(b) => Ok(b),
        other => Err(match t {
            Template::Jsonata(e) => query::wrong_type(e, &path, "boolean", &other),
            _ => Failure::runtime("The Condition field must be a boolean"),
        }),
    }
}

/// Wait: Seconds or Timestamp, maybe expressions; Output and Assign as a Pass.
fn act_wait(scope: &mut Scope, input: &Value, wait: &WaitFor) -> Step {
    let state = scope.state;
    let entered = scope.entered_time;
    let until = match wait {
        WaitFor::SecondsExpr(e) => tryf!(wait_seconds(scope, e, input, entered)),
        WaitFor::TimestampExpr(e) => tryf!(wait_timestamp(scope, e, input)),
        other => tryf!(super::wait_until(scope, other, input, entered)),
    };
    if (until - entered).num_seconds() > MAX_WAIT_SECONDS {
        return Step::Error(Failure::runtime("Wait state delay is too long."));
    }
    let states = States::input(input);
    let (assigned, output) = tryf!(assign_and_output(
        scope,
        state.assign.as_ref(),
        state.output.as_ref(),
        states,
        input
    ));
    Step::Sleep {
        until,
        output,
        assigned,
    }
}

pub(crate) fn wait_seconds<D: query::Draws + ?Sized>(
    scope: &mut D,
    e: &Expr,
    input: &Value,
    entered: DateTime<Utc>,
) -> Result<DateTime<Utc>, Failure> {
    let path = FieldPath::root("Seconds");
    let v = query::evaluate(e, States::input(input), scope, &path)?;
    match v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX)) {
        Some(s) if s >= 0 => Ok(seconds_after(entered, s as f64)),
        _ => Err(query::wrong_type(e, &path, "integer", &v)),
    }
}

pub(crate) fn wait_timestamp<D: query::Draws + ?Sized>(
    scope: &mut D,
    e: &Expr,
    input: &Value,
) -> Result<DateTime<Utc>, Failure> {
    let path = FieldPath::root("Timestamp");
    let v = query::evaluate(e, States::input(input), scope, &path)?;
    let Value::String(text) = &v else {
        return Err(query::wrong_type(e, &path, "string", &v));
    };
    parse_timestamp(text).ok_or_else(|| {
        query::query_error(format!(
            "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {text}"
        ))
    })
}

/// A Task's or Parallel's Arguments (default: the input).
pub(super) fn arguments(scope: &mut Scope, input: &Value) -> Result<Value, Failure> {
    let parameters = scope.state.parameters.as_ref();
    render_arguments(scope, parameters, input)
}

/// Arguments (`parameters`, as the model compiles them) over `$states.input`; without
/// them, the input.
pub(crate) fn render_arguments<R: Resolve + ?Sized>(
    scope: &mut R,
    parameters: Option<&Template>,
    input: &Value,
) -> Result<Value, Failure> {
    match parameters {
        Some(t) => scope.render_ata(t, States::input(input), &FieldPath::root("Arguments")),
        None => Ok(input.clone()),
    }
}

/// A Map's items: Items (an array, or an expression giving one), else the input, which
/// must then be an array.
pub(crate) fn map_items<R: Resolve + ?Sized>(
    scope: &mut R,
    spec: &MapSpec,
    input: &Value,
) -> Result<Vec<Value>, Failure> {
    let path = FieldPath::root("Items");
    let items = match &spec.items {
        Some(t) => scope.render_ata(t, States::input(input), &path)?,
        None => {
            return match input {
                Value::Array(items) => Ok(items.clone()),
                other => Err(query::query_error(format!(
                    "Map state input must be an array but was: {}",
                    compact(other)
                ))),
            }
        }
    };
    match (items, &spec.items) {
        (Value::Array(items), _) => Ok(items),
        (other, Some(Template::Jsonata(e))) => Err(query::wrong_type(e, &path, "array", &other)),
        (other, _) => Err(query::query_error(format!(
            "The Items field must be an array, but was: {}",
            compact(&other)
        ))),
    }
}

/// A Task's, Parallel's or Map's result to the state's output: Assign and Output see
/// `$states.result` beside the input.
pub(super) fn shape_result(scope: &mut Scope, raw_input: Value, result: Value) -> Step {
    let state = scope.state;
    let states = States {
        input: &raw_input,
        result: Some(&result),
        error_output: None,
    };
    let (assigned, output) = tryf!(assign_and_output(
        scope,
        state.assign.as_ref(),
        state.output.as_ref(),
        states,
        &result
    ));
    Step::Done(output, assigned, state.transition)
}

/// A catcher's Assign and Output (default: the error output) over
/// `$states.errorOutput`.
pub(crate) fn caught<R: Resolve + ?Sized>(
    scope: &mut R,
    c: &Catcher,
    raw_input: &Value,
    error_output: Value,
) -> Result<(Value, Option<Map<String, Value>>), Failure> {
    let states = States {
        input: raw_input,
        result: None,
        error_output: Some(&error_output),
    };
    let (assigned, output) = assign_and_output(
        scope,
        c.assign.as_ref(),
        c.output.as_ref(),
        states,
        &error_output,
    )?;
    Ok((output, assigned))
}

/// Assign and Output of one state (or catcher), their expressions prepared together:
/// both read the same `$states` and variables, converted once.
fn assign_and_output<R: Resolve + ?Sized>(
    scope: &mut R,
    assign_t: Option<&Template>,
    output_t: Option<&Template>,
    states: States,
    default: &Value,
) -> Result<(Option<Map<String, Value>>, Value), Failure> {
    let exprs: Vec<&Expr> = [assign_t, output_t]
        .into_iter()
        .flatten()
        .flat_map(|t| t.expressions())
        .map(|e| &**e)
        .collect();
    if exprs.is_empty() {
        let assigned = assign(scope, assign_t, states)?;
        return Ok((assigned, output(scope, output_t, states, default)?));
    }
    let prepared = query::prepare(&exprs, states, scope);
    let assigned = match assign_t {
        None => None,
        Some(t) => {
            let path = FieldPath::root("Assign");
            let v = scope.render_prepared(t, &prepared, states.input, &path)?;
            Some(assigned_object(t, &path, v)?)
        }
    };
    let output = match output_t {
        Some(t) => scope.render_prepared(t, &prepared, states.input, &FieldPath::root("Output"))?,
        None => default.clone(),
    };
    Ok((assigned, output))
}

/// Assign: an object of variables to set, each value maybe an expression.
pub(crate) fn assign<R: Resolve + ?Sized>(
    scope: &mut R,
    t: Option<&Template>,
    states: States,
) -> Result<Option<Map<String, Value>>, Failure> {
    let Some(t) = t else { return Ok(None) };
    let path = FieldPath::root("Assign");
    let v = scope.render_ata(t, states, &path)?;
    assigned_object(t, &path, v).map(Some)
}

/// What an Assign gave, which must be an object of variables.
fn assigned_object(
    t: &Template,
    path: &FieldPath,
    v: Value,
) -> Result<Map<String, Value>, Failure> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(match t {
            Template::Jsonata(e) => query::wrong_type(e, path, "object", &other),
            _ => Failure::runtime("The Assign field must be an object"),
        }),
    }
}

/// Output, or `default` when the state has none.
pub(crate) fn output<R: Resolve + ?Sized>(
    scope: &mut R,
    t: Option<&Template>,
    states: States,
    default: &Value,
) -> Result<Value, Failure> {
    match t {
        Some(t) => scope.render_ata(t, states, &FieldPath::root("Output")),
        None => Ok(default.clone()),
    }
}
