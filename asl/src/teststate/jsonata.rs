//! TestState of a JSONata state. Its stages are the evaluator's own
//! ([`crate::eval::jsonata`]): Arguments over `$states.input`, then Assign and Output
//! over `$states.input` and `$states.result` (or, in a catcher, `$states.errorOutput`).
//! AWS reports `input`, `afterArguments` (Task), `result` (Task) and `variables` for
//! them; the JSONPath stages (afterInputPath, afterParameters, afterResultSelector,
//! afterResultPath, afterItemsPath) are "not populated when QueryLanguage is JSONata".
//!
//! As in an execution, a `States.QueryEvaluationError` is the state's failure, which
//! Retry and Catch may handle; other errors (`States.Runtime`) end the test FAILED.

use super::*;
use crate::eval::jsonata as ata;
use crate::model::{Catcher, WaitFor};
use crate::query::States;

/// A failed JSONata stage: handled like the state's own failure when Retry and Catch
/// may see it.
fn stage_failure(f: Failure) -> Outcome {
    if f.error == names::QUERY_EVALUATION_ERROR {
        Outcome::Failed(f)
    } else {
        Outcome::Fatal(f)
    }
}

/// `?` for a JSONata stage.
macro_rules! stage {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return stage_failure(f),
        }
    };
}

impl Run<'_> {
    /// A JSONata state, from its raw input.
    pub(super) fn jsonata(&mut self, ctx: &Value, raw: Value, next: Option<usize>) -> Outcome {
        let state = self.state;
        match &state.kind {
            Kind::Pass { .. } => self.shaped(ctx, States::input(&raw), None, &raw, next),
            Kind::Succeed => self.shaped(ctx, States::input(&raw), None, &raw, None),
            Kind::Wait(wait) => {
                // TestState does not wait, but a bad Seconds or Timestamp still fails.
                stage!(self.wait_until(ctx, wait, &raw));
                self.shaped(ctx, States::input(&raw), None, &raw, next)
            }
            Kind::Choice { rules, default } => self.choice(ctx, &raw, rules, *default),
            Kind::Fail { error, cause } => {
                let mut scope = self.scope(ctx);
                let error = match error {
                    Some(e) => stage!(scope.text(e, &raw, "Error")),
                    None => String::new(),
                };
                let cause = match cause {
                    Some(c) => Some(stage!(scope.text(c, &raw, "Cause"))),
                    None => None,
                };
                Outcome::Fatal(Failure { error, cause })
            }
            Kind::Task(spec) => self.jsonata_task(ctx, raw, spec, next),
            Kind::Parallel { .. } => {
                // Arguments are evaluated for their errors; the branches' result is the
                // mock's. AWS reports no afterArguments for a Parallel.
                stage!(self.arguments(ctx, &raw));
                match self.mocked() {
                    Ok(r) => self.with_result(ctx, raw, r, next),
                    Err(f) => Outcome::Failed(f),
                }
            }
            Kind::Map(spec) => self.jsonata_map(ctx, raw, spec, next),
        }
    }

    fn arguments(&self, ctx: &Value, raw: &Value) -> Result<Value, Failure> {
        ata::render_arguments(&mut self.scope(ctx), self.state.parameters.as_ref(), raw)
    }

    /// Assign, then Output (default: `default`), both over `states`; the variables
    /// assigned join those in scope.
    fn shaped(
        &mut self,
        ctx: &Value,
        states: States,
        rule: Option<&ChoiceRule>,
        default: &Value,
        next: Option<usize>,
    ) -> Outcome {
        let (assign, output) = match rule {
            Some(r) => (r.assign.as_ref(), r.output.as_ref()),
            None => (self.state.assign.as_ref(), self.state.output.as_ref()),
        };
        let mut scope = self.scope(ctx);
        let assigned = stage!(ata::assign(&mut scope, assign, states));
        let output = stage!(ata::output(&mut scope, output, states, default));
        if let Some(a) = assigned {
            self.vars.extend(a);
            if self.debug() {
                self.insp.variables = Some(Value::Object(self.vars.clone()));
            }
        }
        Outcome::Done { output, next }
    }

    /// A Task's, Parallel's or Map's result: Assign and Output see `$states.result`.
    fn with_result(
        &mut self,
        ctx: &Value,
        raw: Value,
        result: Value,
        next: Option<usize>,
    ) -> Outcome {
        let states = States {
            input: &raw,
            result: Some(&result),
            error_output: None,
        };
        self.shaped(ctx, states, None, &result, next)
    }

    fn wait_until(&self, ctx: &Value, wait: &WaitFor, raw: &Value) -> Result<(), Failure> {
        let mut scope = self.scope(ctx);
        match wait {
            WaitFor::SecondsExpr(e) => {
                ata::wait_seconds(&mut scope, e, raw, self.req.info.start_time).map(drop)
            }
            WaitFor::TimestampExpr(e) => ata::wait_timestamp(&mut scope, e, raw).map(drop),
            _ => Ok(()),
        }
    }

    /// The first rule whose Condition holds decides the next state, with its Assign and
    /// Output; with none, the Default does, with the state's own.
    fn choice(
        &mut self,
        ctx: &Value,
        raw: &Value,
        rules: &[ChoiceRule],
        default: Option<usize>,
    ) -> Outcome {
        let states = States::input(raw);
        let mut chosen = None;
        for rule in rules {
            if stage!(ata::condition(
                &mut self.scope(ctx),
                &rule.condition,
                states
            )) {
                chosen = Some(rule);
                break;
            }
        }
        match (chosen, default) {
            (Some(rule), _) => self.shaped(ctx, states, Some(rule), raw, Some(rule.next)),
            (None, Some(d)) => self.shaped(ctx, states, None, raw, Some(d)),
            (None, None) => Outcome::Fatal(Failure::new(
                names::NO_CHOICE_MATCHED,
                format!("No Matches! State: {}", self.state.name),
            )),
        }
    }

    fn jsonata_task(
        &mut self,
        ctx: &Value,
        raw: Value,
        spec: &TaskSpec,
        next: Option<usize>,
    ) -> Outcome {
        let args = stage!(self.arguments(ctx, &raw));
        if self.debug() {
            self.insp.after_arguments = Some(args.clone());
        }
        let result = match &self.req.mock {
            Some(m) => mock_result(m),
            None => {
                let task = stage!(self.task_machine(ctx, spec, &raw));
                self.run_machine(task, args)
            }
        };
        match result {
            Ok(r) => {
                if self.debug() {
                    self.insp.result = Some(r.clone());
                }
                self.with_result(ctx, raw, r, next)
            }
            Err(f) => Outcome::Failed(f),
        }
    }

    fn jsonata_map(
        &mut self,
        ctx: &Value,
        raw: Value,
        spec: &MapSpec,
        next: Option<usize>,
    ) -> Outcome {
        let mut scope = self.scope(ctx);
        let items = match &self.req.map_item_reader_data {
            Some(data) => match self.read_items(&scope, data, &raw) {
                Ok(items) => items,
                Err(outcome) => return outcome,
            },
            None => stage!(ata::map_items(&mut scope, spec, &raw)),
        };
        let limits = stage!(MapLimits::read(&mut scope, spec, &raw));
        let selected = match &spec.item_selector {
            Some(sel) => Some(stage!(self.select_items(ctx, sel, &items, &raw))),
            None => None,
        };
        if self.debug() {
            self.insp.after_item_selector = selected.map(Value::Array);
            // AWS reports 0 (no limit) when the Map sets none.
            self.insp.max_concurrency = limits.max_concurrency.or(Some(0));
            self.insp.tolerated_failure_count = limits.tolerated_count;
            self.insp.tolerated_failure_percentage = limits.tolerated_pct;
        }
        let result = self
            .mocked()
            .and_then(|r| self.within_tolerance(&limits, items.len()).map(|()| r));
        match result {
            Ok(r) => self.with_result(ctx, raw, r, next),
            Err(f) => Outcome::Failed(f),
        }
    }

    /// A JSONata catcher's Output (default: the error output) over
    /// `$states.errorOutput`; its Assign shows in the reported variables.
    pub(super) fn caught_jsonata(
        &self,
        c: &Catcher,
        error_output: Value,
        insp: &mut InspectionData,
    ) -> Result<Value, Failure> {
        let ctx = self.context(self.task_token().as_deref());
        let mut scope = self.scope(&ctx);
        let (output, assigned) = ata::caught(&mut scope, c, &self.req.input, error_output)?;
        if let (Some(a), true) = (assigned, self.debug()) {
            let mut vars = self.vars.clone();
            vars.extend(a);
            insp.variables = Some(Value::Object(vars));
        }
        Ok(output)
    }
}
