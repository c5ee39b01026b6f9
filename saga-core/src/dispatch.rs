//! The awsJson 1.0 protocol's operation layer: an operation name and a JSON body in,
//! a JSON body or an [`ApiError`] out. Transport-free (the HTTP front is `oms`'s).
//!
//! Errors are worded as AWS words them: a missing or null required member is a
//! `ValidationException` ("1 validation error detected: Value null at 'executionArn'
//! failed to satisfy constraint: Member must not be null"), as is a value outside an
//! enum's set; a body that is not JSON, or a member of the wrong JSON type, is a
//! `SerializationException`; an operation this service does not have is an
//! `UnknownOperationException`.

use crate::api::{self, ApiError, StepFunctions, ENUM_ERROR_MARK};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The prefix of `X-Amz-Target` for this service (the model's `targetPrefix`).
pub const TARGET_PREFIX: &str = "AWSStepFunctions";

/// The operation an `X-Amz-Target` header names (`AWSStepFunctions.StartExecution` ->
/// `StartExecution`), or the error AWS answers a missing or foreign target with.
pub fn operation_from_target(target: Option<&str>) -> Result<&str, ApiError> {
    let target = target.map(str::trim).unwrap_or("");
    match target.split_once('.') {
        Some((TARGET_PREFIX, op)) if OPERATIONS.contains(&op) => Ok(op),
        _ if target.is_empty() => Err(ApiError::unknown_operation("Missing X-Amz-Target header")),
        _ => Err(ApiError::unknown_operation(format!(
            "Unknown operation: {target}"
        ))),
    }
}

/// The error body of the awsJson protocol: `{"__type": "<Code>", "message": "..."}`.
/// botocore and smithy-rs both read the code from `__type` (keeping what follows a
/// `#` and what precedes a `:`), and the message from `message` or `Message`.
pub fn error_body(error: &ApiError) -> Value {
    serde_json::json!({ "__type": error.code.as_str(), "message": error.message })
}

macro_rules! operations {
    ($($name:literal => $method:ident($input:ty);)+) => {
        /// Every operation served, by its API name.
        pub const OPERATIONS: &[&str] = &[$($name),+];

        /// Runs `operation` (an API name such as `StartExecution`) with `body` (the
        /// request's JSON; an empty body counts as `{}`) and returns the response's JSON.
        pub async fn dispatch(
            sfn: &dyn StepFunctions,
            operation: &str,
            body: &[u8],
        ) -> Result<Value, ApiError> {
            match operation {
                $($name => {
                    let input: $input = parse(body)?;
                    to_json(sfn.$method(input).await?)
                })+
                _ => Err(ApiError::unknown_operation(format!(
                    "Unknown operation: {TARGET_PREFIX}.{operation}"
                ))),
            }
        }

        /// Decodes `body` as `operation`'s input, exactly as [`dispatch`] does, and
        /// writes it out again: the request as the service understands it. The fuzz
        /// target (fuzz/fuzz_targets/aws_json.rs) checks that this form decodes to
        /// itself.
        pub fn canonical_input(operation: &str, body: &[u8]) -> Result<Value, ApiError> {
            match operation {
                $($name => to_json(parse::<$input>(body)?),)+
                _ => Err(ApiError::unknown_operation(format!(
                    "Unknown operation: {TARGET_PREFIX}.{operation}"
                ))),
            }
        }
    };
}

operations! {
    "CreateStateMachine" => create_state_machine(api::CreateStateMachineInput);
    "UpdateStateMachine" => update_state_machine(api::UpdateStateMachineInput);
    "DescribeStateMachine" => describe_state_machine(api::DescribeStateMachineInput);
    "ListStateMachines" => list_state_machines(api::ListStateMachinesInput);
    "DeleteStateMachine" => delete_state_machine(api::DeleteStateMachineInput);
    "ValidateStateMachineDefinition" => validate_state_machine_definition(api::ValidateStateMachineDefinitionInput);
    "StartExecution" => start_execution(api::StartExecutionInput);
    "StartSyncExecution" => start_sync_execution(api::StartSyncExecutionInput);
    "DescribeExecution" => describe_execution(api::DescribeExecutionInput);
    "DescribeStateMachineForExecution" => describe_state_machine_for_execution(api::DescribeStateMachineForExecutionInput);
    "ListExecutions" => list_executions(api::ListExecutionsInput);
    "GetExecutionHistory" => get_execution_history(api::GetExecutionHistoryInput);
    "StopExecution" => stop_execution(api::StopExecutionInput);
    "RedriveExecution" => redrive_execution(api::RedriveExecutionInput);
    "SendTaskSuccess" => send_task_success(api::SendTaskSuccessInput);
    "SendTaskFailure" => send_task_failure(api::SendTaskFailureInput);
    "SendTaskHeartbeat" => send_task_heartbeat(api::SendTaskHeartbeatInput);
    "CreateActivity" => create_activity(api::CreateActivityInput);
    "DeleteActivity" => delete_activity(api::DeleteActivityInput);
    "DescribeActivity" => describe_activity(api::DescribeActivityInput);
    "ListActivities" => list_activities(api::ListActivitiesInput);
    "GetActivityTask" => get_activity_task(api::GetActivityTaskInput);
    "TestState" => test_state(api::TestStateInput);
    "ListMapRuns" => list_map_runs(api::ListMapRunsInput);
    "DescribeMapRun" => describe_map_run(api::DescribeMapRunInput);
    "UpdateMapRun" => update_map_run(api::UpdateMapRunInput);
}

fn to_json<T: serde::Serialize>(output: T) -> Result<Value, ApiError> {
    serde_json::to_value(output)
        .map_err(|e| ApiError::internal_failure(format!("could not serialize the response: {e}")))
}

/// Parses a request body as an operation's input, wording failures as AWS does.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(input_error)?;
    de.end()
        .map_err(|e| ApiError::serialization(strip_position(&e.to_string())))?;
    Ok(value)
}

fn input_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = member_path(&e.path().to_string());
    let inner = e.into_inner();
    let raw = inner.to_string();
    let msg = strip_position(&raw);
    match inner.classify() {
        Category::Data => {
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                let at = if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                return not_null(&at);
            }
            if msg.starts_with("invalid type: null") && !path.is_empty() {
                return not_null(&path);
            }
            if let Some(rest) = msg.strip_prefix(ENUM_ERROR_MARK) {
                if let Some((value, set)) = rest.split_once(ENUM_ERROR_MARK) {
                    return ApiError::validation(format!(
                        "1 validation error detected: Value '{value}' at '{path}' failed to satisfy \
                         constraint: Member must satisfy enum value set: [{set}]"
                    ));
                }
            }
            if path.is_empty() {
                ApiError::serialization(msg.to_string())
            } else {
                ApiError::serialization(format!("{msg} at '{path}'"))
            }
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::serialization(msg.to_string()),
    }
}

fn not_null(path: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{path}' failed to satisfy constraint: \
         Member must not be null"
    ))
}

/// serde_path_to_error writes the root as `.`; AWS names members without it.
fn member_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// serde_json appends " at line L column C" to its messages; AWS's carry no position.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::*;
    use chrono::DateTime;
    use serde_json::json;

    /// Starts executions and answers every other operation with an error.
    struct Fake;

    fn nope<T>() -> Result<T, ApiError> {
        Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "not in this fake",
        ))
    }

    #[async_trait::async_trait]
    impl StepFunctions for Fake {
        async fn create_state_machine(
            &self,
            _: CreateStateMachineInput,
        ) -> Result<CreateStateMachineOutput, ApiError> {
            nope()
        }
        async fn update_state_machine(
            &self,
            _: UpdateStateMachineInput,
        ) -> Result<UpdateStateMachineOutput, ApiError> {
            nope()
        }
        async fn describe_state_machine(
            &self,
            _: DescribeStateMachineInput,
        ) -> Result<DescribeStateMachineOutput, ApiError> {
            nope()
        }
        async fn list_state_machines(
            &self,
            _: ListStateMachinesInput,
        ) -> Result<ListStateMachinesOutput, ApiError> {
            nope()
        }
        async fn delete_state_machine(
            &self,
            _: DeleteStateMachineInput,
        ) -> Result<DeleteStateMachineOutput, ApiError> {
            Ok(DeleteStateMachineOutput {})
        }
        async fn validate_state_machine_definition(
            &self,
            _: ValidateStateMachineDefinitionInput,
        ) -> Result<ValidateStateMachineDefinitionOutput, ApiError> {
            nope()
        }
        async fn start_execution(
            &self,
            input: StartExecutionInput,
        ) -> Result<StartExecutionOutput, ApiError> {
            if !input.state_machine_arn.starts_with("arn:") {
                return Err(ApiError::invalid_arn(format!(
                    "Invalid Arn: '{}'",
                    input.state_machine_arn
                )));
            }
            Ok(StartExecutionOutput {
                execution_arn: format!(
                    "{}:{}",
                    input.state_machine_arn,
                    input.name.unwrap_or_default()
                ),
                start_date: DateTime::from_timestamp_millis(1_700_000_000_500).unwrap(),
            })
        }
        async fn start_sync_execution(
            &self,
            _: StartSyncExecutionInput,
        ) -> Result<StartSyncExecutionOutput, ApiError> {
            nope()
        }
        async fn describe_execution(
            &self,
            _: DescribeExecutionInput,
        ) -> Result<DescribeExecutionOutput, ApiError> {
            nope()
        }
        async fn describe_state_machine_for_execution(
            &self,
            _: DescribeStateMachineForExecutionInput,
        ) -> Result<DescribeStateMachineForExecutionOutput, ApiError> {
            nope()
        }
        async fn list_executions(
            &self,
            _: ListExecutionsInput,
        ) -> Result<ListExecutionsOutput, ApiError> {
            nope()
        }
        async fn get_execution_history(
            &self,
            _: GetExecutionHistoryInput,
        ) -> Result<GetExecutionHistoryOutput, ApiError> {
            nope()
        }
        async fn stop_execution(
            &self,
            _: StopExecutionInput,
        ) -> Result<StopExecutionOutput, ApiError> {
            nope()
        }
        async fn redrive_execution(
            &self,
            _: RedriveExecutionInput,
        ) -> Result<RedriveExecutionOutput, ApiError> {
            nope()
        }
        async fn send_task_success(
            &self,
            _: SendTaskSuccessInput,
        ) -> Result<SendTaskSuccessOutput, ApiError> {
            nope()
        }
        async fn send_task_failure(
            &self,
            _: SendTaskFailureInput,
        ) -> Result<SendTaskFailureOutput, ApiError> {
            nope()
        }
        async fn send_task_heartbeat(
            &self,
            _: SendTaskHeartbeatInput,
        ) -> Result<SendTaskHeartbeatOutput, ApiError> {
            nope()
        }
        async fn create_activity(
            &self,
            _: CreateActivityInput,
        ) -> Result<CreateActivityOutput, ApiError> {
            nope()
        }
        async fn delete_activity(
            &self,
            _: DeleteActivityInput,
        ) -> Result<DeleteActivityOutput, ApiError> {
            nope()
        }
        async fn describe_activity(
            &self,
            _: DescribeActivityInput,
        ) -> Result<DescribeActivityOutput, ApiError> {
            nope()
        }
        async fn list_activities(
            &self,
            _: ListActivitiesInput,
        ) -> Result<ListActivitiesOutput, ApiError> {
            nope()
        }
        async fn get_activity_task(
            &self,
            _: GetActivityTaskInput,
        ) -> Result<GetActivityTaskOutput, ApiError> {
            nope()
        }
        async fn test_state(&self, _: TestStateInput) -> Result<TestStateOutput, ApiError> {
            nope()
        }
        async fn list_map_runs(&self, _: ListMapRunsInput) -> Result<ListMapRunsOutput, ApiError> {
            nope()
        }
        async fn describe_map_run(
            &self,
            _: DescribeMapRunInput,
        ) -> Result<DescribeMapRunOutput, ApiError> {
            nope()
        }
        async fn update_map_run(
            &self,
            _: UpdateMapRunInput,
        ) -> Result<UpdateMapRunOutput, ApiError> {
            nope()
        }
    }

    fn run(op: &str, body: &str) -> Result<Value, ApiError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(dispatch(&Fake, op, body.as_bytes()))
    }

    #[test]
    fn happy_path() {
        let out = run(
            "StartExecution",
            r#"{"stateMachineArn": "arn:sm", "name": "x", "input": "{}"}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"executionArn": "arn:sm:x", "startDate": 1_700_000_000.5})
        );
        // Operations without output answer `{}`; an empty body is `{}`.
        assert_eq!(
            run("DeleteStateMachine", r#"{"stateMachineArn": "arn:sm"}"#).unwrap(),
            json!({})
        );
        // Members the model does not have are ignored, as AWS does.
        assert!(run(
            "StartExecution",
            r#"{"stateMachineArn": "arn:sm", "extra": 1}"#
        )
        .is_ok());
    }

    #[test]
    fn backend_errors_pass_through() {
        let e = run("StartExecution", r#"{"stateMachineArn": "bad"}"#).unwrap_err();
        assert_eq!(e, ApiError::invalid_arn("Invalid Arn: 'bad'"));
        assert_eq!(
            error_body(&e),
            json!({"__type": "InvalidArn", "message": "Invalid Arn: 'bad'"})
        );
    }

    #[test]
    fn unknown_operation() {
        let e = run("StartExecutions", "{}").unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownOperationException);
        assert_eq!(
            operation_from_target(Some("AWSStepFunctions.StartExecution")),
            Ok("StartExecution")
        );
        for bad in [
            None,
            Some(""),
            Some("AWSStepFunctions.Nope"),
            Some("DynamoDB_20120810.GetItem"),
            Some("StartExecution"),
        ] {
            assert_eq!(
                operation_from_target(bad).unwrap_err().code,
                ErrorCode::UnknownOperationException,
                "{bad:?}"
            );
        }
        for op in OPERATIONS {
            assert_eq!(
                operation_from_target(Some(&format!("AWSStepFunctions.{op}"))),
                Ok(*op)
            );
        }
    }

    #[test]
    fn malformed_json() {
        for body in [
            "{",
            "not json",
            "[1]",
            "null",
            r#"{"stateMachineArn": "arn:sm"} x"#,
            r#"{"stateMachineArn": 5}"#,
        ] {
            let e = run("StartExecution", body).unwrap_err();
            assert_eq!(e.code, ErrorCode::SerializationException, "{body}: {e}");
            assert!(!e.message.contains("line 1"), "{}", e.message);
        }
        let e = run("StartExecution", r#"{"stateMachineArn": 5}"#).unwrap_err();
        assert!(e.message.ends_with("at 'stateMachineArn'"), "{}", e.message);
    }

    #[test]
    fn missing_required_member() {
        let expected = ApiError::validation(
            "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy constraint: \
             Member must not be null",
        );
        assert_eq!(run("StartExecution", "{}").unwrap_err(), expected);
        assert_eq!(run("StartExecution", "").unwrap_err(), expected);
        assert_eq!(
            run("StartExecution", r#"{"stateMachineArn": null}"#).unwrap_err(),
            expected
        );
        // Nested members are named by their path.
        let e = run(
            "CreateStateMachine",
            r#"{"name": "n", "definition": "{}", "roleArn": "r", "encryptionConfiguration": {}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "1 validation error detected: Value null at 'encryptionConfiguration.type' failed to satisfy \
             constraint: Member must not be null"
        );
    }

    #[test]
    fn enum_outside_its_set() {
        let e = run("ListExecutions", r#"{"statusFilter": "DONE"}"#).unwrap_err();
        assert_eq!(
            e,
            ApiError::validation(
                "1 validation error detected: Value 'DONE' at 'statusFilter' failed to satisfy constraint: \
                 Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"
            )
        );
    }
}
