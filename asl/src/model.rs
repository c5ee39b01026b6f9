//! The definition model: a state machine parsed once into a form the evaluator can run
//! without re-reading JSON (paths compiled, templates compiled, targets resolved to
//! indexes). Parsing assumes nothing about validation having run: a malformed shape is
//! an error, never a panic; [`crate::validate`] gives the user-facing diagnostics.

use crate::intrinsics::{self, Call};
use crate::jsonpath::JsonPath;
use crate::query::Expr;
use crate::{item_reader, map_writer};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Which expression language a state's fields use: the state's own `QueryLanguage`,
/// else the machine's (top-level) one, else JSONPath. A state nested in a Map or
/// Parallel does not take the enclosing state's: AWS documents that a state without the
/// field "will use the query language specified in the top-level queryLanguage field".
/// The validator reads states through this same type and rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLanguage {
    JsonPath,
    /// `{% ... %}` expressions in Arguments, Output, Assign, Condition, ... (see
    /// [`crate::query`]).
    Jsonata,
}

impl QueryLanguage {
    /// The language a `QueryLanguage` field names, if it names one.
    pub fn from_name(v: &Value) -> Option<QueryLanguage> {
        match v.as_str() {
            Some("JSONPath") => Some(QueryLanguage::JsonPath),
            Some("JSONata") => Some(QueryLanguage::Jsonata),
            _ => None,
        }
    }

    /// A state's language: its own if it names one, else the machine's.
    pub fn of_state(own: Option<QueryLanguage>, machine: QueryLanguage) -> QueryLanguage {
        own.unwrap_or(machine)
    }
}

/// A value produced at run time from the definition: literal JSON, a path, an intrinsic
/// call, a JSONata expression, or a structure of these.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Value),
    Path(JsonPath),
    Intrinsic(Box<Call>),
    Jsonata(Arc<Expr>),
    Object(Vec<(String, Template, TemplateKey)>),
    Array(Vec<Template>),
}

/// The original key, kept for error messages (`'value.$'`).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateKey(pub String);

impl Template {
    /// Compiles a Parameters-like payload template: keys ending in `.$` take a path or
    /// intrinsic call; everything else is literal.
    pub fn compile(v: &Value) -> Result<Template, String> {
        Self::compile_depth(v, 0)
    }

    fn compile_depth(v: &Value, depth: usize) -> Result<Template, String> {
        if depth > MAX_DEPTH {
            return Err("template nesting is too deep".into());
        }
        match v {
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                let mut dynamic = false;
                for (k, child) in map {
                    if let Some(name) = k.strip_suffix(".$") {
                        let Value::String(expr) = child else {
                            return Err(format!(
                                "The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call"
                            ));
                        };
                        let t = Template::compile_expr(expr).map_err(|_| {
                            format!("The value for the field '{k}' must be a valid JSONPath or a valid intrinsic function call")
                        })?;
                        dynamic = true;
                        fields.push((name.to_string(), t, TemplateKey(k.clone())));
                    } else {
                        let t = Self::compile_depth(child, depth + 1)?;
                        dynamic |= !matches!(t, Template::Literal(_));
                        fields.push((k.clone(), t, TemplateKey(k.clone())));
                    }
                }
                if dynamic {
                    Ok(Template::Object(fields))
                } else {
                    Ok(Template::Literal(v.clone()))
                }
            }
            Value::Array(items) => {
                let compiled: Vec<Template> = items
                    .iter()
                    .map(|i| Self::compile_depth(i, depth + 1))
                    .collect::<Result<_, _>>()?;
                if compiled.iter().all(|t| matches!(t, Template::Literal(_))) {
                    Ok(Template::Literal(v.clone()))
                } else {
                    Ok(Template::Array(compiled))
                }
            }
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// A JSONata state's field: each string written `{% ... %}` is an expression, the
    /// rest literal (keys are taken as written: `.$` means nothing in JSONata).
    pub fn compile_jsonata(v: &Value) -> Template {
        Self::compile_jsonata_depth(v, 0)
    }

    fn compile_jsonata_depth(v: &Value, depth: usize) -> Template {
        let t = match v {
            Value::String(s) => match Expr::parse(s) {
                Some(e) => return Template::Jsonata(Arc::new(e)),
                None => return Template::Literal(v.clone()),
            },
            // Deeper than this is literal: the validator refuses such nesting anyway.
            _ if depth > MAX_DEPTH => return Template::Literal(v.clone()),
            Value::Object(map) => Template::Object(
                map.iter()
                    .map(|(k, c)| {
                        let t = Self::compile_jsonata_depth(c, depth + 1);
                        (k.clone(), t, TemplateKey(k.clone()))
                    })
                    .collect(),
            ),
            Value::Array(items) => Template::Array(
                items
                    .iter()
                    .map(|i| Self::compile_jsonata_depth(i, depth + 1))
                    .collect(),
            ),
            other => return Template::Literal(other.clone()),
        };
        if t.is_literal_tree() {
            Template::Literal(v.clone())
        } else {
            t
        }
    }

    fn is_literal_tree(&self) -> bool {
        match self {
            Template::Literal(_) => true,
            Template::Object(fields) => fields.iter().all(|(_, t, _)| t.is_literal_tree()),
            Template::Array(items) => items.iter().all(Template::is_literal_tree),
            _ => false,
        }
    }

    /// A field in a state of language `ql`.
    fn compile_in(v: &Value, ql: QueryLanguage) -> Result<Template, String> {
        match ql {
            QueryLanguage::JsonPath => Template::compile(v),
            QueryLanguage::Jsonata => Ok(Template::compile_jsonata(v)),
        }
    }

    /// Every JSONata expression in the template, in definition order.
    pub fn expressions(&self) -> Vec<&Arc<Expr>> {
        let mut out = Vec::new();
        self.collect_expressions(&mut out);
        out
    }

    fn collect_expressions<'a>(&'a self, out: &mut Vec<&'a Arc<Expr>>) {
        match self {
            Template::Jsonata(e) => out.push(e),
            Template::Object(fields) => fields
                .iter()
                .for_each(|(_, t, _)| t.collect_expressions(out)),
            Template::Array(items) => items.iter().for_each(|t| t.collect_expressions(out)),
            _ => {}
        }
    }

    /// A `.$` value: an intrinsic call or a path.
    pub fn compile_expr(expr: &str) -> Result<Template, String> {
        if intrinsics::looks_like_call(expr) {
            Ok(Template::Intrinsic(Box::new(intrinsics::parse(expr)?)))
        } else {
            Ok(Template::Path(JsonPath::parse(expr)?))
        }
    }
}

const MAX_DEPTH: usize = 512;

/// Where a state's output goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Next(usize),
    End,
}

/// `ResultPath`: absent means `$`, `null` discards the result.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultPath {
    Replace,
    Discard,
    At(JsonPath),
}

/// `InputPath`/`OutputPath`: absent means `$`, `null` means `{}`.
#[derive(Debug, Clone, PartialEq)]
pub enum IoPath {
    Whole,
    Empty,
    At(JsonPath),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter_full: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub result_path: ResultPath,
    pub next: usize,
    pub assign: Option<Template>,
    /// JSONata: the catcher's Output (default: `$states.errorOutput`).
    pub output: Option<Template>,
}

/// A number given literally, by a path (`TimeoutSeconds` / `TimeoutSecondsPath`), or in
/// a JSONata state by an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    Fixed(f64),
    Path(JsonPath),
    Expr(Arc<Expr>),
}

/// A string given literally or by a path/intrinsic (`Error` / `ErrorPath`).
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Fixed(String),
    Dynamic(Template),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Seconds(f64),
    SecondsPath(JsonPath),
    Timestamp(String),
    TimestampPath(JsonPath),
    /// JSONata: `Seconds` given as an expression.
    SecondsExpr(Arc<Expr>),
    /// JSONata: `Timestamp` given as an expression.
    TimestampExpr(Arc<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub resource: String,
    pub target: crate::resource::Target,
    pub timeout: Option<Amount>,
    pub heartbeat: Option<Amount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    pub items_path: IoPath,
    /// JSONata: `Items`, an array (maybe holding expressions) or an expression.
    pub items: Option<Template>,
    pub item_selector: Option<Template>,
    pub processor: usize,
    pub max_concurrency: Option<Amount>,
    pub tolerated_failure_count: Option<Amount>,
    pub tolerated_failure_percentage: Option<Amount>,
    /// Set for `Mode: DISTRIBUTED`: each iteration (or batch) runs as a child
    /// execution of this machine, which the driver starts.
    pub distributed: Option<Arc<ChildMachine>>,
    /// Groups items into batches, each child getting `{"Items": [...], "BatchInput"}`.
    pub batcher: Option<Batcher>,
    /// The ItemReader field as written (checked by `item_reader::reader_format`): the
    /// driver reads the items (`Effect::ReadItems`).
    pub item_reader: Option<Value>,
    /// The ItemReader's Parameters, rendered against the state's input.
    pub item_reader_parameters: Option<Template>,
    /// The ResultWriter field as written (checked by `map_writer::writer_config`): the
    /// driver formats or exports the results (`Effect::WriteResults`).
    pub result_writer: Option<Value>,
    /// The ResultWriter's Parameters, rendered against the state's input.
    pub result_writer_parameters: Option<Template>,
}

/// A distributed Map's ItemProcessor as the state machine its child executions run.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildMachine {
    /// The Map's `Label`, or its name: the child machine is `<parent>/<label>` and the
    /// Map Run `mapRun:<parent>/<label>:<id>`.
    pub label: String,
    /// `ProcessorConfig.ExecutionType` is EXPRESS.
    pub express: bool,
    /// The ItemProcessor as a definition of its own, as DescribeStateMachineForExecution
    /// shows it for a child.
    pub definition: Arc<Value>,
    pub machine: Arc<Machine>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batcher {
    pub max_items: Option<Amount>,
    pub max_bytes: Option<Amount>,
    pub batch_input: Option<Template>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task(Box<TaskSpec>),
    Choice {
        rules: Vec<ChoiceRule>,
        default: Option<usize>,
    },
    Wait(WaitFor),
    Succeed,
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
    Parallel {
        branches: Vec<usize>,
    },
    Map(Box<MapSpec>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub type_name: &'static str,
    pub kind: Kind,
    pub query_language: QueryLanguage,
    pub input_path: IoPath,
    pub output_path: IoPath,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub result_path: ResultPath,
    pub assign: Option<Template>,
    /// JSONata: the state's `Output` (its `Arguments` are kept in `parameters`).
    pub output: Option<Template>,
    pub transition: Transition,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// One list of states with its own StartAt: the machine itself, a Parallel branch or
/// a Map's item processor.
#[derive(Debug, Clone, PartialEq)]
pub struct StateList {
    pub start_at: usize,
    pub states: Vec<State>,
    pub by_name: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: usize,
    pub assign: Option<Template>,
    /// JSONata: the rule's Output, when it is chosen.
    pub output: Option<Template>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        variable: JsonPath,
        op: CompareOp,
        operand: Operand,
    },
    /// A JSONata rule's `Condition`: an expression, or a boolean written as it is.
    Jsonata(Template),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(JsonPath),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

impl CompareOp {
    const ALL: &'static [(&'static str, CompareOp)] = &[
        ("StringEquals", CompareOp::StringEquals),
        ("StringLessThan", CompareOp::StringLessThan),
        ("StringGreaterThan", CompareOp::StringGreaterThan),
        ("StringLessThanEquals", CompareOp::StringLessThanEquals),
        (
            "StringGreaterThanEquals",
            CompareOp::StringGreaterThanEquals,
        ),
        ("StringMatches", CompareOp::StringMatches),
        ("NumericEquals", CompareOp::NumericEquals),
        ("NumericLessThan", CompareOp::NumericLessThan),
        ("NumericGreaterThan", CompareOp::NumericGreaterThan),
        ("NumericLessThanEquals", CompareOp::NumericLessThanEquals),
        (
            "NumericGreaterThanEquals",
            CompareOp::NumericGreaterThanEquals,
        ),
        ("BooleanEquals", CompareOp::BooleanEquals),
        ("TimestampEquals", CompareOp::TimestampEquals),
        ("TimestampLessThan", CompareOp::TimestampLessThan),
        ("TimestampGreaterThan", CompareOp::TimestampGreaterThan),
        (
            "TimestampLessThanEquals",
            CompareOp::TimestampLessThanEquals,
        ),
        (
            "TimestampGreaterThanEquals",
            CompareOp::TimestampGreaterThanEquals,
        ),
        ("IsNull", CompareOp::IsNull),
        ("IsPresent", CompareOp::IsPresent),
        ("IsNumeric", CompareOp::IsNumeric),
        ("IsString", CompareOp::IsString),
        ("IsBoolean", CompareOp::IsBoolean),
        ("IsTimestamp", CompareOp::IsTimestamp),
    ];

    /// Finds the comparison in a rule: `NumericEquals` or its `NumericEqualsPath` form.
    fn find(rule: &Map<String, Value>) -> Option<(CompareOp, bool, &Value)> {
        for (name, op) in Self::ALL {
            if let Some(v) = rule.get(*name) {
                return Some((*op, false, v));
            }
            if let Some(v) = rule.get(&format!("{name}Path")) {
                return Some((*op, true, v));
            }
        }
        None
    }
}

/// A parsed state machine. States are grouped into lists; list 0 is the machine's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub lists: Vec<StateList>,
    pub timeout_seconds: Option<u64>,
    pub query_language: QueryLanguage,
    /// Whether anything in the definition may read the context object (`$$`). A
    /// conservative test on the text: a literal "$$" also counts.
    pub reads_context: bool,
}

impl Machine {
    pub fn root(&self) -> &StateList {
        &self.lists[0]
    }

    /// Whether any state is a distributed Map (its executions start Map Runs).
    pub fn has_map_runs(&self) -> bool {
        self.lists
            .iter()
            .flat_map(|l| &l.states)
            .any(|s| matches!(&s.kind, Kind::Map(spec) if spec.distributed.is_some()))
    }

    /// The child machine of the distributed Map whose ItemProcessor is list `processor`.
    pub fn child_machine(&self, processor: usize) -> Option<&Arc<ChildMachine>> {
        self.lists
            .iter()
            .flat_map(|l| &l.states)
            .find_map(|s| match &s.kind {
                Kind::Map(spec) if spec.processor == processor => spec.distributed.as_ref(),
                _ => None,
            })
    }

    /// Reads the first JSON value of `text` and ignores what follows, as validation
    /// does (`validate::validate_str`, after AWS's Jackson): a definition that validates
    /// must load.
    pub fn parse(text: &str) -> Result<Machine, String> {
        let first = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .next()
            .unwrap_or_else(|| serde_json::from_str(text));
        let v = first.map_err(|e| format!("definition is not valid JSON: {e}"))?;
        Machine::from_value(&v)
    }

    pub fn from_value(def: &Value) -> Result<Machine, String> {
        let obj = def
            .as_object()
            .ok_or("Definition must be a valid JSON object")?;
        let query_language = match obj.get("QueryLanguage") {
            None => QueryLanguage::JsonPath,
            Some(v) => parse_query_language(v, "/QueryLanguage")?,
        };
        let timeout_seconds = match obj.get("TimeoutSeconds") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or("/TimeoutSeconds must be a non-negative integer")?,
            ),
        };
        let text = def.to_string();
        let reads_context = text.contains("$$") || text.contains("JSONata");
        let mut m = Machine {
            lists: Vec::new(),
            timeout_seconds,
            query_language,
            reads_context,
        };
        m.parse_list(def, "", query_language, 0)?;
        Ok(m)
    }

    fn parse_list(
        &mut self,
        v: &Value,
        loc: &str,
        ql: QueryLanguage,
        depth: usize,
    ) -> Result<usize, String> {
        if depth > 64 {
            return Err(format!("{loc}: states are nested too deeply"));
        }
        let obj = v
            .as_object()
            .ok_or_else(|| format!("{loc} must be an object"))?;
        let states = obj
            .get("States")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{loc}/States is required and must be an object"))?;
        let start = obj
            .get("StartAt")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{loc}/StartAt is required and must be a string"))?;
        let by_name: HashMap<String, usize> = states
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let start_at = *by_name
            .get(start)
            .ok_or_else(|| format!("{loc}/StartAt: no state named '{start}'"))?;
        let id = self.lists.len();
        self.lists.push(StateList {
            start_at,
            states: Vec::new(),
            by_name,
        });
        let mut parsed = Vec::with_capacity(states.len());
        for (name, sv) in states {
            let sloc = format!("{loc}/States/{name}");
            parsed.push(self.parse_state(id, name, sv, &sloc, ql, depth)?);
        }
        self.lists[id].states = parsed;
        Ok(id)
    }

    fn target(&self, list: usize, name: &Value, loc: &str) -> Result<usize, String> {
        let name = name
            .as_str()
            .ok_or_else(|| format!("{loc} must be a string"))?;
        self.lists[list]
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| format!("{loc}: no state named '{name}'"))
    }

    fn parse_state(
        &mut self,
        list: usize,
        name: &str,
        v: &Value,
        loc: &str,
        machine_ql: QueryLanguage,
        depth: usize,
    ) -> Result<State, String> {
        let o = v
            .as_object()
            .ok_or_else(|| format!("{loc} must be an object"))?;
        let own = match o.get("QueryLanguage") {
            None => None,
            Some(q) => Some(parse_query_language(q, &format!("{loc}/QueryLanguage"))?),
        };
        let ql = QueryLanguage::of_state(own, machine_ql);
        let type_name = o
            .get("Type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{loc}/Type is required"))?;
        let transition = match (o.get("Next"), o.get("End")) {
            (Some(n), _) => Transition::Next(self.target(list, n, &format!("{loc}/Next"))?),
            _ => Transition::End,
        };
        let kind = self.parse_kind(list, name, o, type_name, loc, ql, depth)?;
        let retry = match o.get("Retry") {
            None => Vec::new(),
            Some(r) => parse_retry(r, &format!("{loc}/Retry"))?,
        };
        let catch = match o.get("Catch") {
            None => Vec::new(),
            Some(c) => self.parse_catch(list, c, loc, ql)?,
        };
        let io = DataFields::parse(o, ql, matches!(kind, Kind::Map(_)), loc)?;
        Ok(State {
            name: name.to_string(),
            type_name: kind_name(&kind),
            query_language: ql,
            input_path: io.input_path,
            output_path: io.output_path,
            parameters: io.parameters,
            result_selector: io.result_selector,
            result_path: io.result_path,
            assign: io.assign,
            output: io.output,
            kind,
            transition,
            retry,
            catch,
        })
    }
    /// The part of a state its Type decides.
    #[allow(clippy::too_many_arguments)]
    fn parse_kind(
        &mut self,
        list: usize,
        name: &str,
        o: &Map<String, Value>,
        type_name: &str,
        loc: &str,
        ql: QueryLanguage,
        depth: usize,
    ) -> Result<Kind, String> {
        match type_name {
            "Pass" => Ok(Kind::Pass {
                result: o.get("Result").cloned(),
            }),
            "Succeed" => Ok(Kind::Succeed),
            "Fail" => parse_fail(o, loc, ql),
            "Wait" => parse_wait(o, loc, ql).map(Kind::Wait),
            "Choice" => self.parse_choice(list, o, loc, ql),
            "Task" => parse_task(o, loc, ql).map(|spec| Kind::Task(Box::new(spec))),
            "Parallel" => self.parse_parallel(o, loc, depth),
            "Map" => self
                .parse_map(name, o, loc, ql, depth)
                .map(|spec| Kind::Map(Box::new(spec))),
            other => Err(format!("{loc}/Type: unknown state type '{other}'")),
        }
    }

    fn parse_choice(
        &mut self,
        list: usize,
        o: &Map<String, Value>,
        loc: &str,
        ql: QueryLanguage,
    ) -> Result<Kind, String> {
        let rules = o
            .get("Choices")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{loc}/Choices is required and must be an array"))?;
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let rloc = format!("{loc}/Choices/{i}");
            let ro = r
                .as_object()
                .ok_or_else(|| format!("{rloc} must be an object"))?;
            let next = self.target(
                list,
                ro.get("Next")
                    .ok_or_else(|| format!("{rloc}/Next is required"))?,
                &format!("{rloc}/Next"),
            )?;
            let assign = assign_field(ro, &rloc, ql)?;
            let condition = if ql == QueryLanguage::Jsonata {
                let c = ro.get("Condition").cloned().unwrap_or(Value::Null);
                Condition::Jsonata(Template::compile_jsonata(&c))
            } else {
                parse_condition(r, &rloc, 0)?
            };
            parsed.push(ChoiceRule {
                condition,
                next,
                assign,
                output: jsonata_output(ro, ql),
            });
        }
        let default = match o.get("Default") {
            None => None,
            Some(d) => Some(self.target(list, d, &format!("{loc}/Default"))?),
        };
        Ok(Kind::Choice {
            rules: parsed,
            default,
        })
    }

    fn parse_parallel(
        &mut self,
        o: &Map<String, Value>,
        loc: &str,
        depth: usize,
    ) -> Result<Kind, String> {
        let branches = o
            .get("Branches")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{loc}/Branches is required and must be an array"))?;
        // Nested states default to the machine's language, not this state's.
        let machine_ql = self.query_language;
        let mut ids = Vec::with_capacity(branches.len());
        for (i, b) in branches.iter().enumerate() {
            ids.push(self.parse_list(b, &format!("{loc}/Branches/{i}"), machine_ql, depth + 1)?);
        }
        Ok(Kind::Parallel { branches: ids })
    }

    fn parse_map(
        &mut self,
        name: &str,
        o: &Map<String, Value>,
        loc: &str,
        ql: QueryLanguage,
        depth: usize,
    ) -> Result<MapSpec, String> {
        let (proc_v, proc_field) = match (o.get("ItemProcessor"), o.get("Iterator")) {
            (Some(p), _) => (p, "ItemProcessor"),
            (None, Some(p)) => (p, "Iterator"),
            _ => return Err(format!("{loc}: a Map state needs an ItemProcessor")),
        };
        // Nested states default to the machine's language, not this state's.
        let machine_ql = self.query_language;
        let distributed = child_machine(name, o, proc_v, machine_ql, loc)?;
        let processor = self.parse_list(
            proc_v,
            &format!("{loc}/{proc_field}"),
            machine_ql,
            depth + 1,
        )?;
        let amount = |lit: &str| amount_field(o, lit, loc, ql);
        // The legacy Parameters field of Map plays ItemSelector's role.
        let item_selector = match (o.get("ItemSelector"), o.get("Parameters")) {
            (Some(s), _) | (None, Some(s)) => Some(
                Template::compile_in(s, ql).map_err(|e| format!("{e} at {loc}/ItemSelector"))?,
            ),
            _ => None,
        };
        let (item_reader, item_reader_parameters) = s3_field(
            o,
            "ItemReader",
            |v| item_reader::reader_format(v).map(|_| ()),
            loc,
            ql,
        )?;
        let (result_writer, result_writer_parameters) = s3_field(
            o,
            "ResultWriter",
            |v| map_writer::writer_config(v).map(|_| ()),
            loc,
            ql,
        )?;
        Ok(MapSpec {
            items_path: io_path(o.get("ItemsPath"), &format!("{loc}/ItemsPath"))?,
            items: match ql {
                QueryLanguage::JsonPath => None,
                QueryLanguage::Jsonata => o.get("Items").map(Template::compile_jsonata),
            },
            item_selector,
            processor,
            max_concurrency: amount("MaxConcurrency")?,
            tolerated_failure_count: amount("ToleratedFailureCount")?,
            tolerated_failure_percentage: amount("ToleratedFailurePercentage")?,
            distributed,
            batcher: match o.get("ItemBatcher") {
                None => None,
                Some(b) => Some(parse_batcher(b, &format!("{loc}/ItemBatcher"), ql)?),
            },
            item_reader,
            item_reader_parameters,
            result_writer,
            result_writer_parameters,
        })
    }

    /// A state's Catch array (`c`).
    fn parse_catch(
        &self,
        list: usize,
        c: &Value,
        loc: &str,
        ql: QueryLanguage,
    ) -> Result<Vec<Catcher>, String> {
        let arr = c
            .as_array()
            .ok_or_else(|| format!("{loc}/Catch must be an array"))?;
        let mut out = Vec::with_capacity(arr.len());
        for (i, c) in arr.iter().enumerate() {
            let cloc = format!("{loc}/Catch/{i}");
            let co = c
                .as_object()
                .ok_or_else(|| format!("{cloc} must be an object"))?;
            let next = self.target(
                list,
                co.get("Next")
                    .ok_or_else(|| format!("{cloc}/Next is required"))?,
                &format!("{cloc}/Next"),
            )?;
            let assign = assign_field(co, &cloc, ql)?;
            let result_path = match ql {
                QueryLanguage::JsonPath => {
                    result_path(co.get("ResultPath"), &format!("{cloc}/ResultPath"))?
                }
                QueryLanguage::Jsonata => ResultPath::Replace,
            };
            out.push(Catcher {
                error_equals: error_equals(co.get("ErrorEquals"), &cloc)?,
                result_path,
                next,
                assign,
                output: jsonata_output(co, ql),
            });
        }
        Ok(out)
    }
}

/// The fields that carry a state's data in and out, in its query language: JSONPath's
/// five (InputPath, Parameters, ResultSelector, ResultPath, OutputPath) or JSONata's
/// Arguments and Output (kept in `parameters` and `output`); Assign in both.
struct DataFields {
    input_path: IoPath,
    output_path: IoPath,
    parameters: Option<Template>,
    result_selector: Option<Template>,
    result_path: ResultPath,
    assign: Option<Template>,
    output: Option<Template>,
}

impl DataFields {
    fn parse(
        o: &Map<String, Value>,
        ql: QueryLanguage,
        is_map: bool,
        loc: &str,
    ) -> Result<DataFields, String> {
        let tmpl = |field: &str| -> Result<Option<Template>, String> {
            match o.get(field) {
                None => Ok(None),
                Some(v) => Template::compile_in(v, ql)
                    .map(Some)
                    .map_err(|e| format!("{e} at {loc}/{field}")),
            }
        };
        let jsonpath = ql == QueryLanguage::JsonPath;
        // A Map's Parameters are its ItemSelector (MapSpec); a JSONata state's
        // Arguments play Parameters' role.
        let parameters = match (is_map, ql) {
            (true, _) => None,
            (false, QueryLanguage::JsonPath) => tmpl("Parameters")?,
            (false, QueryLanguage::Jsonata) => tmpl("Arguments")?,
        };
        Ok(DataFields {
            input_path: io_path(o.get("InputPath"), &format!("{loc}/InputPath"))?,
            output_path: io_path(o.get("OutputPath"), &format!("{loc}/OutputPath"))?,
            parameters,
            result_selector: if jsonpath {
                tmpl("ResultSelector")?
            } else {
                None
            },
            result_path: if jsonpath {
                result_path(o.get("ResultPath"), &format!("{loc}/ResultPath"))?
            } else {
                ResultPath::Replace
            },
            assign: tmpl("Assign")?,
            output: if jsonpath { None } else { tmpl("Output")? },
        })
    }
}

/// A JSONata state's, rule's or catcher's `Output`.
fn jsonata_output(o: &Map<String, Value>, ql: QueryLanguage) -> Option<Template> {
    match ql {
        QueryLanguage::JsonPath => None,
        QueryLanguage::Jsonata => o.get("Output").map(Template::compile_jsonata),
    }
}

/// The Type a parsed state was written with.
fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Pass { .. } => "Pass",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
        Kind::Wait(_) => "Wait",
        Kind::Choice { .. } => "Choice",
        Kind::Task(_) => "Task",
        Kind::Parallel { .. } => "Parallel",
        Kind::Map(_) => "Map",
    }
}

fn parse_fail(o: &Map<String, Value>, loc: &str, ql: QueryLanguage) -> Result<Kind, String> {
    let text = |lit: &str, path: &str| -> Result<Option<Text>, String> {
        if let Some(e) = o.get(lit).and_then(|v| jsonata_expr(v, ql)) {
            return Ok(Some(Text::Dynamic(Template::Jsonata(e))));
        }
        if let Some(v) = o.get(lit) {
            return Ok(Some(Text::Fixed(
                v.as_str()
                    .ok_or_else(|| format!("{loc}/{lit} must be a string"))?
                    .to_string(),
            )));
        }
        if let Some(v) = o.get(path) {
            let s = v
                .as_str()
                .ok_or_else(|| format!("{loc}/{path} must be a string"))?;
            return Ok(Some(Text::Dynamic(
                Template::compile_expr(s).map_err(|e| format!("{loc}/{path}: {e}"))?,
            )));
        }
        Ok(None)
    };
    Ok(Kind::Fail {
        error: text("Error", "ErrorPath")?,
        cause: text("Cause", "CausePath")?,
    })
}

fn parse_wait(o: &Map<String, Value>, loc: &str, ql: QueryLanguage) -> Result<WaitFor, String> {
    if let Some(e) = o.get("Seconds").and_then(|v| jsonata_expr(v, ql)) {
        Ok(WaitFor::SecondsExpr(e))
    } else if let Some(e) = o.get("Timestamp").and_then(|v| jsonata_expr(v, ql)) {
        Ok(WaitFor::TimestampExpr(e))
    } else if let Some(v) = o.get("Seconds") {
        Ok(WaitFor::Seconds(v.as_f64().ok_or_else(|| {
            format!("{loc}/Seconds must be a number")
        })?))
    } else if let Some(v) = o.get("SecondsPath") {
        Ok(WaitFor::SecondsPath(path_field(
            v,
            &format!("{loc}/SecondsPath"),
        )?))
    } else if let Some(v) = o.get("Timestamp") {
        Ok(WaitFor::Timestamp(
            v.as_str()
                .ok_or_else(|| format!("{loc}/Timestamp must be a string"))?
                .into(),
        ))
    } else if let Some(v) = o.get("TimestampPath") {
        Ok(WaitFor::TimestampPath(path_field(
            v,
            &format!("{loc}/TimestampPath"),
        )?))
    } else {
        Err(format!(
            "{loc}: a Wait state needs Seconds, SecondsPath, Timestamp or TimestampPath"
        ))
    }
}

fn parse_task(o: &Map<String, Value>, loc: &str, ql: QueryLanguage) -> Result<TaskSpec, String> {
    let resource = o
        .get("Resource")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{loc}/Resource is required and must be a string"))?;
    let target =
        crate::resource::Target::parse(resource).map_err(|e| format!("{e} at {loc}/Resource"))?;
    let amount = |lit: &str| amount_field(o, lit, loc, ql);
    Ok(TaskSpec {
        resource: resource.to_string(),
        target,
        timeout: amount("TimeoutSeconds")?,
        heartbeat: amount("HeartbeatSeconds")?,
    })
}

/// A distributed Map's ItemReader or ResultWriter, checked by `check`, and its
/// JSONPath Parameters compiled (the validator holds them to the same rules).
fn s3_field(
    o: &Map<String, Value>,
    field: &str,
    check: fn(&Value) -> Result<(), String>,
    loc: &str,
    ql: QueryLanguage,
) -> Result<(Option<Value>, Option<Template>), String> {
    let Some(v) = o.get(field) else {
        return Ok((None, None));
    };
    check(v).map_err(|e| format!("{loc}/{e}"))?;
    let parameters = match (ql, v.get("Parameters"), v.get("Arguments")) {
        (QueryLanguage::JsonPath, Some(p), _) => {
            Some(Template::compile(p).map_err(|e| format!("{e} at {loc}/{field}/Parameters"))?)
        }
        (QueryLanguage::Jsonata, _, Some(a)) => Some(Template::compile_jsonata(a)),
        _ => None,
    };
    Ok((Some(v.clone()), parameters))
}

/// A distributed Map's ItemProcessor as a machine of its own, or None for an inline
/// Map. Its states read the parent machine's QueryLanguage unless they say otherwise.
fn child_machine(
    name: &str,
    o: &Map<String, Value>,
    processor: &Value,
    machine_ql: QueryLanguage,
    loc: &str,
) -> Result<Option<Arc<ChildMachine>>, String> {
    let config = processor.get("ProcessorConfig");
    let field = |f: &str| config.and_then(|c| c.get(f)).and_then(Value::as_str);
    if field("Mode") != Some("DISTRIBUTED") {
        return Ok(None);
    }
    let mut definition = processor.as_object().cloned().unwrap_or_default();
    definition.remove("ProcessorConfig");
    if machine_ql == QueryLanguage::Jsonata && !definition.contains_key("QueryLanguage") {
        definition.insert("QueryLanguage".into(), Value::from("JSONata"));
    }
    let definition = Value::Object(definition);
    let machine =
        Machine::from_value(&definition).map_err(|e| format!("{loc}/ItemProcessor: {e}"))?;
    let label = o.get("Label").and_then(Value::as_str).unwrap_or(name);
    Ok(Some(Arc::new(ChildMachine {
        label: label.to_string(),
        express: field("ExecutionType") == Some("EXPRESS"),
        definition: Arc::new(definition),
        machine: Arc::new(machine),
    })))
}

fn parse_batcher(v: &Value, loc: &str, ql: QueryLanguage) -> Result<Batcher, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("{loc} must be an object"))?;
    let amount = |lit: &str| amount_field(o, lit, loc, ql);
    Ok(Batcher {
        max_items: amount("MaxItemsPerBatch")?,
        max_bytes: amount("MaxInputBytesPerBatch")?,
        batch_input: match o.get("BatchInput") {
            None => None,
            Some(b) => {
                Some(Template::compile_in(b, ql).map_err(|e| format!("{e} at {loc}/BatchInput"))?)
            }
        },
    })
}

/// A number given as `NAME` or by a path as `NAMEPath` (TimeoutSeconds, MaxConcurrency...).
/// A JSONata state may give a JSONata expression instead.
fn amount_field(
    o: &Map<String, Value>,
    lit: &str,
    loc: &str,
    ql: QueryLanguage,
) -> Result<Option<Amount>, String> {
    if let Some(v) = o.get(lit) {
        if let Some(e) = jsonata_expr(v, ql) {
            return Ok(Some(Amount::Expr(e)));
        }
        let n = v
            .as_f64()
            .ok_or_else(|| format!("{loc}/{lit} must be a number"))?;
        return Ok(Some(Amount::Fixed(n)));
    }
    let p = format!("{lit}Path");
    match o.get(&p) {
        Some(v) => Ok(Some(Amount::Path(path_field(v, &format!("{loc}/{p}"))?))),
        None => Ok(None),
    }
}

/// The `Assign` of a state, Choice rule or catcher.
fn assign_field(
    o: &Map<String, Value>,
    loc: &str,
    ql: QueryLanguage,
) -> Result<Option<Template>, String> {
    match o.get("Assign") {
        None => Ok(None),
        Some(a) => Template::compile_in(a, ql)
            .map(Some)
            .map_err(|e| format!("{e} at {loc}/Assign")),
    }
}

/// `{% ... %}`: a JSONata expression, where a JSONata state's field may hold one.
pub(crate) fn is_jsonata_expr(s: &str) -> bool {
    s.starts_with("{%") && s.ends_with("%}") && s.len() >= 4
}

/// The expression a JSONata state's field holds, if it holds one.
fn jsonata_expr(v: &Value, ql: QueryLanguage) -> Option<Arc<Expr>> {
    match ql {
        QueryLanguage::Jsonata => v.as_str().and_then(Expr::parse).map(Arc::new),
        QueryLanguage::JsonPath => None,
    }
}

fn parse_query_language(v: &Value, loc: &str) -> Result<QueryLanguage, String> {
    QueryLanguage::from_name(v).ok_or_else(|| format!("{loc} must be JSONPath or JSONata"))
}

fn path_field(v: &Value, loc: &str) -> Result<JsonPath, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{loc} must be a string"))?;
    JsonPath::parse(s).map_err(|e| format!("{loc}: {e}"))
}

fn io_path(v: Option<&Value>, loc: &str) -> Result<IoPath, String> {
    match v {
        None => Ok(IoPath::Whole),
        Some(Value::Null) => Ok(IoPath::Empty),
        Some(v) => Ok(IoPath::At(path_field(v, loc)?)),
    }
}

fn result_path(v: Option<&Value>, loc: &str) -> Result<ResultPath, String> {
    match v {
        None => Ok(ResultPath::Replace),
        Some(Value::Null) => Ok(ResultPath::Discard),
        Some(v) => {
            let p = path_field(v, loc)?;
            if p.text() == "$" {
                Ok(ResultPath::Replace)
            } else {
                Ok(ResultPath::At(p))
            }
        }
    }
}

fn error_equals(v: Option<&Value>, loc: &str) -> Result<Vec<String>, String> {
    let arr = v
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{loc}/ErrorEquals is required"))?;
    arr.iter()
        .map(|e| {
            e.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{loc}/ErrorEquals must hold strings"))
        })
        .collect()
}

fn parse_retry(v: &Value, loc: &str) -> Result<Vec<Retrier>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{loc} must be an array"))?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, r) in arr.iter().enumerate() {
        let rloc = format!("{loc}/{i}");
        let ro = r
            .as_object()
            .ok_or_else(|| format!("{rloc} must be an object"))?;
        let num = |k: &str, default: f64| -> Result<f64, String> {
            match ro.get(k) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| format!("{rloc}/{k} must be a number")),
            }
        };
        out.push(Retrier {
            error_equals: error_equals(ro.get("ErrorEquals"), &rloc)?,
            interval_seconds: num("IntervalSeconds", 1.0)?,
            max_attempts: num("MaxAttempts", 3.0)?.max(0.0) as u32,
            backoff_rate: num("BackoffRate", 2.0)?,
            max_delay_seconds: match ro.get("MaxDelaySeconds") {
                None => None,
                Some(v) => Some(
                    v.as_f64()
                        .ok_or_else(|| format!("{rloc}/MaxDelaySeconds must be a number"))?,
                ),
            },
            jitter_full: ro.get("JitterStrategy").and_then(Value::as_str) == Some("FULL"),
        });
    }
    Ok(out)
}

fn parse_condition(v: &Value, loc: &str, depth: usize) -> Result<Condition, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{loc}: choice rule nesting is too deep"));
    }
    let o = v
        .as_object()
        .ok_or_else(|| format!("{loc} must be an object"))?;
    let list = |k: &str| -> Result<Vec<Condition>, String> {
        let arr = o[k]
            .as_array()
            .ok_or_else(|| format!("{loc}/{k} must be an array"))?;
        arr.iter()
            .enumerate()
            .map(|(i, c)| parse_condition(c, &format!("{loc}/{k}/{i}"), depth + 1))
            .collect()
    };
    if o.contains_key("And") {
        return Ok(Condition::And(list("And")?));
    }
    if o.contains_key("Or") {
        return Ok(Condition::Or(list("Or")?));
    }
    if let Some(n) = o.get("Not") {
        return Ok(Condition::Not(Box::new(parse_condition(
            n,
            &format!("{loc}/Not"),
            depth + 1,
        )?)));
    }
    let variable = path_field(
        o.get("Variable")
            .ok_or_else(|| format!("{loc}/Variable is required"))?,
        &format!("{loc}/Variable"),
    )?;
    let (op, is_path, operand) =
        CompareOp::find(o).ok_or_else(|| format!("{loc}: the rule has no comparison operator"))?;
    let operand = if is_path {
        Operand::Path(path_field(operand, loc)?)
    } else {
        Operand::Literal(operand.clone())
    };
    Ok(Condition::Compare {
        variable,
        op,
        operand,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state<'m>(m: &'m Machine, name: &str) -> &'m State {
        m.lists
            .iter()
            .flat_map(|l| l.states.iter())
            .find(|s| s.name == name)
            .expect("state exists")
    }

    /// A state inside a JSONata Map takes the machine's language, not the Map's, as the
    /// validator reads it (and AWS documents it).
    #[test]
    fn nested_states_default_to_the_machines_language() {
        let def = json!({"StartAt": "M", "States": {"M": {
            "Type": "Map", "QueryLanguage": "JSONata", "End": true,
            "ItemProcessor": {"StartAt": "C", "States": {
                "C": {"Type": "Choice", "Default": "Y",
                      "Choices": [{"Variable": "$.a", "IsPresent": true, "Next": "Y"}]},
                "Y": {"Type": "Succeed"}}}}}});
        // validate_cases/ql_jsonata_map_with_jsonpath_choice_ok.json: it validates too.
        let m = Machine::from_value(&def).expect("loads");
        assert_eq!(state(&m, "M").query_language, QueryLanguage::Jsonata);
        assert_eq!(state(&m, "C").query_language, QueryLanguage::JsonPath);
        assert!(matches!(
            &state(&m, "C").kind,
            Kind::Choice { rules, .. } if matches!(rules[0].condition, Condition::Compare { .. })
        ));
    }
}
