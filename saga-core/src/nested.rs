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
use asl::eval::EffectId;
use asl::resource::{Pattern, Target};
use asl::{Delivery, Failure, TaskCall};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// The Task of another execution that started an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub execution_arn: String,
    pub effect_id: EffectId,
    /// Started with `.sync` or `.sync:2`: the parent waits for it, and stopping the
    /// parent stops it.
    pub sync: bool,
    /// For a distributed Map's child: its iteration, naming its Map Run.
    pub map_run: Option<Box<asl::eval::IterationCall>>,
}

/// What the runtime needs of the service to run nested executions: starting one
/// linked to its parent's task, and reading one. The service owns the runtime, so it
/// hands itself over once it exists (`Runtime::attach_executions`).
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
pub(crate) enum Wait {
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
    starts_an_execution(&call.target)
}

/// Whether a Task's resource starts a nested execution.
pub fn starts_an_execution(target: &Target) -> bool {
    matches!(target, Target::Service { service, action, .. }
        if service == "states" && action == "startExecution")
}

/// The wait a start-execution task's integration pattern asks for.
pub(crate) fn wait_of(pattern: Pattern) -> Wait {
    match pattern {
        Pattern::RequestResponse => Wait::Started,
        Pattern::Sync => Wait::Closed { json: false },
        Pattern::Sync2 => Wait::Closed { json: true },
        Pattern::WaitForTaskToken => Wait::Token,
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
pub(crate) fn api_failure(e: &ApiError) -> Failure {
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

/// Starts the child of a parent's task.
pub(crate) async fn start(
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
        map_run: None,
    };
    executions
        .start_child(&request.machine_arn, request.name, request.input, parent)
        .await
        .map_err(|e| api_failure(&e))
}

/// Epoch milliseconds, as Step Functions renders dates in an integration's result.
fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// StartExecution's response as the request-response integration returns it.
pub(crate) fn start_response(child_arn: &str, started: DateTime<Utc>) -> Value {
    let start_s = epoch_ms(started) as f64 / 1000.0;
    let body = json!({"executionArn": child_arn, "startDate": start_s}).to_string();
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
pub(crate) fn closed_delivery(d: &DescribeExecutionOutput, json: bool) -> Delivery {
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
    #[test]
    fn the_suffix_says_how_the_task_waits() {
        let base = "arn:aws:states:::states:startExecution";
        let wait =
            |suffix: &str| wait_of(Target::parse(&format!("{base}{suffix}")).unwrap().pattern());
        assert_eq!(wait(""), Wait::Started);
        assert_eq!(wait(".sync"), Wait::Closed { json: false });
        assert_eq!(wait(".sync:2"), Wait::Closed { json: true });
        assert_eq!(wait(".waitForTaskToken"), Wait::Token);
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
