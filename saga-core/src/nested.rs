//! Nested executions: a Task whose resource is `arn:aws:states:::states:startExecution`
//! starts an execution of another state machine on this same service, as Step
//! Functions' own integration does.
//!
//! - Request-response (no suffix): the task succeeds once the child has started, with
//!   StartExecution's response (`ExecutionArn`, `StartDate`) and the SDK metadata AWS
//!   adds to it.
//! - `.sync` and `.sync:2`: the task waits for the child to close and succeeds with its
//!   DescribeExecution (`Output` as a JSON string for `.sync`, as JSON for `.sync:2`),
//!   or fails with `States.TaskFailed` and that description as the cause.
//! - `.waitForTaskToken`: the child is started and the task waits for SendTaskSuccess
//!   or SendTaskFailure with the token (passed in the child's input).
//!
//! The child is linked to the parent's task (the `children` table, written with the
//! child's first step), so a parent resumed after a crash finds its child again rather
//! than starting a second one, and stopping a parent stops its `.sync` children.
//! Failing to start (no such state machine, a name taken) fails the task with the
//! API's error as `StepFunctions.<Code>Exception`, as AWS names it.

use crate::api::{ApiError, DescribeExecutionOutput, ExecutionStatus};
use crate::runtime::{epoch, Parent, Runtime};
use asl::eval::EffectId;
use asl::resource::Target;
use asl::{Delivery, Failure, TaskCall};
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// What the runtime needs of the service to run nested executions: starting one
/// linked to its parent's task, and reading one. The service owns the runtime, so it
/// hands itself over once it exists ([`Runtime::attach_executions`]).
#[async_trait::async_trait]
pub trait Executions: Send + Sync {
    /// StartExecution of `machine_arn`, recording `parent` with the child's first step.
    async fn start_child(
        &self,
        machine_arn: &str,
        name: Option<String>,
        input: String,
        parent: Parent,
    ) -> Result<(String, DateTime<Utc>), ApiError>;
    /// DescribeExecution.
    async fn describe(&self, execution_arn: &str) -> Result<DescribeExecutionOutput, ApiError>;
}

/// How the parent's task waits for the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Request-response: until it has started.
    Started,
    /// `.sync` (`json: false`, the child's Input and Output as strings) or `.sync:2`
    /// (as JSON): until it has closed.
    Closed { json: bool },
    /// `.waitForTaskToken`: for the token.
    Token,
}

/// Whether a task starts a nested execution.
pub fn is_start_execution(call: &TaskCall) -> bool {
    matches!(&call.target, Target::Service { service, action, .. }
        if service == "states" && action == "startExecution")
}

/// The wait a start-execution resource asks for, from its suffix.
fn wait_of(resource: &str) -> Wait {
    if resource.ends_with(".waitForTaskToken") {
        Wait::Token
    } else if resource.ends_with(".sync:2") {
        Wait::Closed { json: true }
    } else if resource.ends_with(".sync") {
        Wait::Closed { json: false }
    } else {
        Wait::Started
    }
}

/// The request a start-execution task makes: its Parameters, checked.
struct Request {
    machine_arn: String,
    name: Option<String>,
    input: String,
}

impl Request {
    fn of(parameters: &Value) -> Result<Request, Failure> {
        let machine_arn = match &parameters["StateMachineArn"] {
            Value::String(s) => s.clone(),
            _ => {
                return Err(api_failure(&ApiError::validation(
                    "1 validation error detected: Value null at 'stateMachineArn' failed to \
                     satisfy constraint: Member must not be null",
                )))
            }
        };
        let name = match &parameters["Name"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => {
                return Err(api_failure(&ApiError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'name' failed to satisfy \
                     constraint: Member must be a string"
                ))))
            }
        };
        // A string is the child's input as JSON text (`$string(...)` in JSONata, or
        // `States.JsonToString`); anything else is the input itself.
        let input = match &parameters["Input"] {
            Value::Null => "{}".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(Request {
            machine_arn,
            name,
            input,
        })
    }
}

/// An API error as the task failure AWS reports for it:
/// `StepFunctions.StateMachineDoesNotExistException`, with the SDK's cause text.
fn api_failure(e: &ApiError) -> Failure {
    let code = e.code.as_str();
    let error = if code.ends_with("Exception") {
        format!("StepFunctions.{code}")
    } else {
        format!("StepFunctions.{code}Exception")
    };
    Failure::new(
        &error,
        format!(
            "{} (Service: AWSStepFunctions; Status Code: 400; Error Code: {code}; Request ID: \
             {}; Proxy: null)",
            e.message,
            uuid::Uuid::new_v4()
        ),
    )
}

impl Runtime {
    /// Performs a start-execution task: starts (or finds again) the child, and delivers
    /// what the task's wait asks for. Returns the handle of the task doing it, so that
    /// the parent's end stops it waiting.
    pub(crate) fn perform_child(
        self: &Arc<Self>,
        parent_arn: String,
        id: EffectId,
        call: TaskCall,
    ) -> tokio::task::AbortHandle {
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let delivery = rt.run_child(&parent_arn, id, &call).await;
            if let Some(delivery) = delivery {
                // Detached: the delivery ends this task's effect, which aborts this task.
                tokio::spawn(async move { rt.deliver(&parent_arn, id, delivery).await });
            }
        });
        task.abort_handle()
    }

    /// What a start-execution task delivers; None while it waits for a token.
    async fn run_child(
        self: &Arc<Self>,
        parent_arn: &str,
        id: EffectId,
        call: &TaskCall,
    ) -> Option<Delivery> {
        let Some(executions) = self.executions() else {
            return Some(Delivery::TaskFailed(Failure::new(
                asl::error::names::TASK_FAILED,
                "this runtime runs no nested executions: it has no service attached",
            )));
        };
        let wait = wait_of(&call.resource);
        let child = match self.child_of(parent_arn, id) {
            Some(found) => Ok(found),
            None => start(executions.as_ref(), parent_arn, id, call, wait).await,
        };
        let (child_arn, started) = match child {
            Ok(c) => c,
            Err(f) => return Some(Delivery::TaskFailed(f)),
        };
        match wait {
            Wait::Token => None,
            Wait::Started => Some(Delivery::TaskSucceeded(start_response(&child_arn, started))),
            Wait::Closed { json } => {
                let closed = self.wait_closed(executions.as_ref(), &child_arn).await;
                Some(match closed {
                    Ok(d) => closed_delivery(&d, json),
                    Err(e) => Delivery::TaskFailed(api_failure(&e)),
                })
            }
        }
    }

    /// The child a parent's task started before (found again after a restart), with
    /// its start date.
    fn child_of(&self, parent_arn: &str, id: EffectId) -> Option<(String, DateTime<Utc>)> {
        let parent = parent_arn.to_string();
        self.store()
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT c.child_arn, e.start_date FROM children c \
                     JOIN executions e ON e.arn = c.child_arn \
                     WHERE c.parent_arn = ?1 AND c.effect_id = ?2",
                    rusqlite::params![parent, id as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)),
                )
                .optional()?)
            })
            .ok()
            .flatten()
            .map(|(arn, start)| (arn, crate::runtime::from_epoch(start)))
    }

    /// The `.sync` children of an execution that are still running.
    pub(crate) fn running_sync_children(&self, parent_arn: &str) -> Vec<String> {
        let parent = parent_arn.to_string();
        self.store()
            .read(move |c| {
                let mut st = c.prepare(
                    "SELECT c.child_arn FROM children c JOIN executions e ON e.arn = c.child_arn \
                     WHERE c.parent_arn = ?1 AND c.sync = 1 AND e.status = 'RUNNING'",
                )?;
                let rows = st.query_map([&parent], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap_or_default()
    }

    /// Waits until an execution has closed and returns its description. Polls the
    /// store as well as waiting for the end signal: a child resumed after a restart
    /// may not be live yet when its parent starts waiting.
    async fn wait_closed(
        &self,
        executions: &dyn Executions,
        child_arn: &str,
    ) -> Result<DescribeExecutionOutput, ApiError> {
        let mut pause_ms = 20u64;
        loop {
            self.wait_finished(child_arn).await;
            let described = executions.describe(child_arn).await?;
            if described.status != ExecutionStatus::Running {
                return Ok(described);
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
            pause_ms = (pause_ms * 2).min(1000);
        }
    }
}

/// Starts the child of a parent's task.
async fn start(
    executions: &dyn Executions,
    parent_arn: &str,
    id: EffectId,
    call: &TaskCall,
    wait: Wait,
) -> Result<(String, DateTime<Utc>), Failure> {
    let request = Request::of(&call.parameters)?;
    let parent = Parent {
        execution_arn: parent_arn.to_string(),
        effect_id: id,
        sync: matches!(wait, Wait::Closed { .. }),
    };
    executions
        .start_child(&request.machine_arn, request.name, request.input, parent)
        .await
        .map_err(|e| api_failure(&e))
}

/// Epoch milliseconds, as Step Functions renders dates in an integration's result.
fn epoch_ms(t: DateTime<Utc>) -> i64 {
    (epoch(t) * 1000.0).round() as i64
}

/// StartExecution's response as the request-response integration returns it.
fn start_response(child_arn: &str, started: DateTime<Utc>) -> Value {
    let body = json!({"executionArn": child_arn, "startDate": epoch(started)}).to_string();
    let request_id = uuid::Uuid::new_v4().to_string();
    let date = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let len = body.len().to_string();
    json!({
        "ExecutionArn": child_arn,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "x-amzn-RequestId": [request_id],
                "connection": ["keep-alive"],
                "Content-Length": [len],
                "Date": [date],
                "Content-Type": ["application/x-amz-json-1.0"]
            },
            "HttpHeaders": {
                "connection": "keep-alive",
                "Content-Length": len,
                "Content-Type": "application/x-amz-json-1.0",
                "Date": date,
                "x-amzn-RequestId": request_id
            },
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StartDate": epoch_ms(started)
    })
}

/// A closed child's description as `.sync` (`json: false`) or `.sync:2` returns it:
/// DescribeExecution's members in PascalCase, dates in epoch milliseconds.
fn described(d: &DescribeExecutionOutput, json: bool) -> Value {
    let data = |text: &Option<String>| match (text, json) {
        (None, _) => Value::Null,
        (Some(t), true) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())),
        (Some(t), false) => Value::String(t.clone()),
    };
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            out.insert(k.to_string(), v);
        }
    };
    put("ExecutionArn", json!(d.execution_arn));
    put("Input", data(&d.input));
    put("InputDetails", json!({"Included": true}));
    put("Name", json!(d.name));
    put("Output", data(&d.output));
    put("OutputDetails", json!({"Included": true}));
    put("RedriveCount", json!(d.redrive_count.unwrap_or(0)));
    put("RedriveStatus", json!(d.redrive_status.map(|s| s.as_str())));
    put("StartDate", json!(epoch_ms(d.start_date)));
    put("StateMachineArn", json!(d.state_machine_arn));
    put("Status", json!(d.status.as_str()));
    put("StopDate", json!(d.stop_date.map(epoch_ms)));
    put("Error", json!(d.error));
    put("Cause", json!(d.cause));
    Value::Object(out)
}

/// What a `.sync` task delivers for its closed child: its description, or
/// States.TaskFailed with the description as the cause.
fn closed_delivery(d: &DescribeExecutionOutput, json: bool) -> Delivery {
    let description = described(d, json);
    if d.status == ExecutionStatus::Succeeded {
        Delivery::TaskSucceeded(description)
    } else {
        Delivery::TaskFailed(Failure::new(
            asl::error::names::TASK_FAILED,
            description.to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        CreateStateMachineInput, DescribeExecutionInput, StartExecutionInput, StepFunctions,
    };
    use crate::runtime::{default_route, Invoker, Route};
    use crate::service::LocalStepFunctions;
    use crate::store::ExecutionStore;

    struct NoTasks;

    #[async_trait::async_trait]
    impl Invoker for NoTasks {
        fn route(&self, call: &TaskCall) -> Route {
            default_route(call)
        }
        async fn invoke(&self, _: &str, _: &TaskCall) -> Result<Value, Failure> {
            Err(Failure::new("Test.NoTasks", "this test runs no tasks"))
        }
    }

    async fn machine(sfn: &LocalStepFunctions, name: &str, definition: Value) -> String {
        sfn.create_state_machine(CreateStateMachineInput {
            name: name.into(),
            definition: definition.to_string(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
        .state_machine_arn
    }

    async fn run(sfn: &LocalStepFunctions, machine: &str) -> DescribeExecutionOutput {
        let arn = sfn
            .start_execution(StartExecutionInput {
                state_machine_arn: machine.into(),
                input: Some(r#"{"n": 7}"#.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .execution_arn;
        sfn.runtime().wait_finished(&arn).await;
        sfn.describe_execution(DescribeExecutionInput {
            execution_arn: arn,
            included_data: None,
        })
        .await
        .unwrap()
    }

    /// A parent runs a child to its end with `.sync:2` and gets its output as JSON;
    /// with the link written, finding the child again gives the same one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sync_parent_gets_its_childs_output() {
        let dir = std::env::temp_dir().join(format!("oms-nested-{}", uuid::Uuid::new_v4()));
        let store = ExecutionStore::open(&dir).unwrap();
        let runtime = Runtime::new(store, Arc::new(NoTasks));
        let sfn = LocalStepFunctions::shared(runtime, "us-east-1", "000000000000");
        let child = machine(
            &sfn,
            "child",
            json!({"StartAt": "P", "States": {
            "P": {"Type": "Pass", "Parameters": {"got.$": "$.n"}, "End": true}}}),
        )
        .await;
        let parent = machine(
            &sfn,
            "parent",
            json!({"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$.n"}}, "End": true}}}),
        )
        .await;
        let done = run(&sfn, &parent).await;
        assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(out["Output"], json!({"got": 7}), "{out}");
        assert_eq!(out["Status"], "SUCCEEDED");
        // The task's effect id is the engine's to choose: one of the first few.
        let found = (0..8).find_map(|id| sfn.runtime().child_of(&done.execution_arn, id));
        assert_eq!(
            found.map(|(arn, _)| arn),
            out["ExecutionArn"].as_str().map(String::from)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_suffix_says_how_the_task_waits() {
        let base = "arn:aws:states:::states:startExecution";
        assert_eq!(wait_of(base), Wait::Started);
        assert_eq!(
            wait_of(&format!("{base}.sync")),
            Wait::Closed { json: false }
        );
        assert_eq!(
            wait_of(&format!("{base}.sync:2")),
            Wait::Closed { json: true }
        );
        assert_eq!(wait_of(&format!("{base}.waitForTaskToken")), Wait::Token);
    }

    #[test]
    fn the_input_is_json_text_when_a_string_and_the_value_otherwise() {
        let arn = "arn:aws:states:us-east-1:000000000000:stateMachine:child";
        let cases = [
            (json!({"StateMachineArn": arn}), "{}"),
            (
                json!({"StateMachineArn": arn, "Input": {"a": 1}}),
                r#"{"a":1}"#,
            ),
            (
                json!({"StateMachineArn": arn, "Input": "{\"a\":1}"}),
                r#"{"a":1}"#,
            ),
            (json!({"StateMachineArn": arn, "Input": [1]}), "[1]"),
        ];
        for (parameters, input) in cases {
            let r = Request::of(&parameters).unwrap_or_else(|f| panic!("{parameters}: {f:?}"));
            assert_eq!(r.input, input, "{parameters}");
        }
    }

    #[test]
    fn a_request_without_a_state_machine_fails_as_aws_names_it() {
        let f = Request::of(&json!({"Input": {}})).err().expect("refused");
        assert_eq!(f.error, "StepFunctions.ValidationException");
        assert!(f.cause.unwrap_or_default().contains("stateMachineArn"));
    }

    #[test]
    fn api_errors_are_named_with_the_service_prefix_and_one_exception_suffix() {
        let f = api_failure(&ApiError::state_machine_does_not_exist(
            "State Machine Does Not Exist: 'x'",
        ));
        assert_eq!(f.error, "StepFunctions.StateMachineDoesNotExistException");
        let cause = f.cause.unwrap_or_default();
        assert!(cause.starts_with("State Machine Does Not Exist: 'x' (Service: AWSStepFunctions;"));
        assert!(cause.contains("Error Code: StateMachineDoesNotExist;"));
    }
}
