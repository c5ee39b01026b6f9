//! The AWS backend: oms's Orders API, console and CLI over a deployed stack (infra-cdk),
//! with executions in AWS Step Functions (aws-sdk-sfn) and orders in DynamoDB
//! (aws-sdk-dynamodb, through the activities' store). Nothing above the two adapters
//! knows which backend it runs on: the Orders service takes a `StepFunctions` and a
//! store, as it does locally.
//!
//! Step Functions answers in the same JSON shapes the `StepFunctions` trait is written
//! in (saga-core's api.rs is that wire model). So the adapter lets aws-sdk-sfn do what
//! an SDK is for (credentials, region, endpoint, SigV4, retries, error parsing) and
//! reads the successful answer's body into the trait's types, instead of converting
//! the SDK's ~60 history-event detail structs by hand into a second copy of the
//! model that could drift from the first.

use activities::activity::Ctx;
use activities::store::dynamo::DynamoStore;
use async_trait::async_trait;
use aws_sdk_sfn::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_sfn::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types as sdk;
use oms_orders::{Orders, Warehouse};
use saga_core::api::*;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the deployed stack is: the table and the state machine, from `cdk deploy
/// --outputs-file` or flags, and endpoints other than AWS's (for tests and for
/// API-compatible servers).
#[derive(Debug, Clone, Default)]
pub struct AwsTarget {
    pub stack_outputs: Option<PathBuf>,
    pub table: Option<String>,
    pub state_machine_arn: Option<String>,
    pub amend_machine_arn: Option<String>,
    pub sfn_endpoint: Option<String>,
    pub dynamodb_endpoint: Option<String>,
}

/// The stack outputs oms reads (infra-cdk/lib/oms-stack.ts names them).
const TABLE_OUTPUT: &str = "OrdersTableName";
const MACHINE_OUTPUT: &str = "StateMachineArn";
const AMEND_MACHINE_OUTPUT: &str = "AmendStateMachineArn";

/// The deployed stack's parts oms uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub table: String,
    pub machine_arn: String,
    /// The order-amend machine; None for a stack deployed before amendments, whose
    /// orders then answer PATCH with Amendments.Unavailable.
    pub amend_machine_arn: Option<String>,
}

impl AwsTarget {
    /// The table and the state machines' ARNs: flags first, then the outputs file.
    pub fn resolve(&self) -> Result<Resolved, String> {
        let outputs = match &self.stack_outputs {
            Some(p) => Some(read_outputs(p)?),
            None => None,
        };
        let from_outputs = |key: &str| -> Option<String> { outputs.as_ref()?.get(key).cloned() };
        let table = self.table.clone().or_else(|| from_outputs(TABLE_OUTPUT));
        let machine = self
            .state_machine_arn
            .clone()
            .or_else(|| from_outputs(MACHINE_OUTPUT));
        let amend_machine_arn = self
            .amend_machine_arn
            .clone()
            .or_else(|| from_outputs(AMEND_MACHINE_OUTPUT));
        match (table, machine) {
            (Some(table), Some(machine_arn)) => Ok(Resolved {
                table,
                machine_arn,
                amend_machine_arn,
            }),
            (t, m) => {
                let mut missing = Vec::new();
                if t.is_none() {
                    missing.push(format!(
                        "the table (--table, or {TABLE_OUTPUT} in --stack-outputs)"
                    ));
                }
                if m.is_none() {
                    missing.push(format!(
                        "the state machine (--state-machine-arn, or {MACHINE_OUTPUT} in --stack-outputs)"
                    ));
                }
                Err(format!(
                    "--backend aws needs {}; `cdk deploy --outputs-file cdk-outputs.json` writes both",
                    missing.join(" and ")
                ))
            }
        }
    }
}

/// Reads `cdk deploy --outputs-file`: `{"<Stack>": {"<OutputId>": "value"}}`. One stack
/// is expected; a file holding several must name the outputs by flag instead.
fn read_outputs(path: &Path) -> Result<std::collections::HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let stacks: Vec<_> = v
        .as_object()
        .map(|o| o.values().filter_map(|s| s.as_object()).collect())
        .unwrap_or_default();
    let [stack] = stacks.as_slice() else {
        return Err(format!(
            "{}: expected the outputs of one stack ({{\"Oms\": {{...}}}}), found {}",
            path.display(),
            stacks.len()
        ));
    };
    Ok(stack
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect())
}

/// The Orders service over the deployed stack. Picks are answered by the warehouses'
/// callbacks (`POST /shipments/{id}/picked`): the simulated warehouse of `oms up` sits
/// beside its in-process activities, and on AWS the activities run in Lambda.
pub async fn orders(target: &AwsTarget) -> Result<(Arc<dyn StepFunctions>, Orders), String> {
    let Resolved {
        table,
        machine_arn,
        amend_machine_arn,
    } = target.resolve()?;
    let sfn: Arc<dyn StepFunctions> =
        Arc::new(AwsStepFunctions::connect(target.sfn_endpoint.as_deref()).await);
    let store = DynamoStore::connect(target.dynamodb_endpoint.as_deref(), &table).await;
    let ctx = Ctx::new(Arc::new(store));
    let warehouse = Arc::new(Warehouse::new(ctx.clone(), false, Default::default()));
    warehouse.connect(sfn.clone());
    // Fail now, with the reason, rather than on the first request.
    for arn in std::iter::once(&machine_arn).chain(&amend_machine_arn) {
        sfn.describe_state_machine(DescribeStateMachineInput {
            state_machine_arn: arn.clone(),
            included_data: Some(IncludedData::MetadataOnly),
        })
        .await
        .map_err(|e| format!("cannot read the state machine {arn}: {e}"))?;
    }
    let mut orders = Orders::attach(ctx, sfn.clone(), warehouse, machine_arn);
    orders.amend_machine_arn = amend_machine_arn;
    Ok((sfn, orders))
}

/// The Step Functions API of an AWS account (or of any server that speaks it).
pub struct AwsStepFunctions {
    client: aws_sdk_sfn::Client,
}

impl AwsStepFunctions {
    /// The standard credential chain and region; `endpoint` overrides AWS's.
    pub async fn connect(endpoint: Option<&str>) -> AwsStepFunctions {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        AwsStepFunctions {
            client: aws_sdk_sfn::Client::new(&loader.load().await),
        }
    }
}

/// Keeps the body of the answer the SDK deserialized (the orchestrator has read it
/// into memory by then).
#[derive(Debug, Clone, Default)]
struct AnswerBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for AnswerBody {
    fn name(&self) -> &'static str {
        "oms::AnswerBody"
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(bytes) = ctx.response().body().bytes() {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes.to_vec());
        }
        Ok(())
    }
}

impl AnswerBody {
    fn decode<O: DeserializeOwned>(&self, op: &str) -> Result<O, ApiError> {
        let body = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        let body = body.unwrap_or_else(|| b"{}".to_vec());
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::internal_failure(format!("{op}: the answer does not fit its shape: {e}"))
        })
    }
}

/// An SDK failure as the API error it is: the service's own code and message, or
/// ServiceUnavailable when the service could not be reached.
fn api_error<E, R>(op: &str, e: SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let SdkError::ServiceError(service) = &e {
        let err = service.err();
        let message = err.message().unwrap_or_default().to_string();
        return match err.code().and_then(ErrorCode::parse) {
            Some(code) => ApiError::new(code, message),
            None => ApiError::internal_failure(format!(
                "{op}: {}: {message}",
                err.code().unwrap_or("an unnamed error")
            )),
        };
    }
    ApiError::service_unavailable(format!(
        "{op}: cannot reach Step Functions: {}",
        DisplayErrorContext(&e)
    ))
}

/// Sends a fluent request with the body-keeping interceptor and decodes the answer.
macro_rules! send {
    ($op:literal, $request:expr) => {{
        let body = AnswerBody::default();
        match $request.customize().interceptor(body.clone()).send().await {
            Ok(_) => body.decode($op),
            Err(e) => Err(api_error($op, e)),
        }
    }};
}

/// The state machine belongs to the stack (infra-cdk): the AWS backend reads and runs
/// it, and leaves changing it, and the account's activities, to CloudFormation and
/// the AWS tools.
fn not_served(op: &str) -> ApiError {
    ApiError::unknown_operation(format!(
        "{op} is not served by oms's AWS backend: the stack (infra-cdk) owns the state \
         machine and activities; use `cdk deploy` or the AWS CLI"
    ))
}

#[async_trait]
impl StepFunctions for AwsStepFunctions {
    async fn create_state_machine(
        &self,
        _: CreateStateMachineInput,
    ) -> Result<CreateStateMachineOutput, ApiError> {
        Err(not_served("CreateStateMachine"))
    }

    async fn update_state_machine(
        &self,
        _: UpdateStateMachineInput,
    ) -> Result<UpdateStateMachineOutput, ApiError> {
        Err(not_served("UpdateStateMachine"))
    }

    async fn describe_state_machine(
        &self,
        input: DescribeStateMachineInput,
    ) -> Result<DescribeStateMachineOutput, ApiError> {
        send!(
            "DescribeStateMachine",
            self.client
                .describe_state_machine()
                .state_machine_arn(input.state_machine_arn)
                .set_included_data(
                    input
                        .included_data
                        .map(|d| sdk::IncludedData::from(d.as_str()))
                )
        )
    }

    async fn list_state_machines(
        &self,
        input: ListStateMachinesInput,
    ) -> Result<ListStateMachinesOutput, ApiError> {
        send!(
            "ListStateMachines",
            self.client
                .list_state_machines()
                .set_max_results(input.max_results)
                .set_next_token(input.next_token)
        )
    }

    async fn delete_state_machine(
        &self,
        _: DeleteStateMachineInput,
    ) -> Result<DeleteStateMachineOutput, ApiError> {
        Err(not_served("DeleteStateMachine"))
    }

    async fn validate_state_machine_definition(
        &self,
        input: ValidateStateMachineDefinitionInput,
    ) -> Result<ValidateStateMachineDefinitionOutput, ApiError> {
        send!(
            "ValidateStateMachineDefinition",
            self.client
                .validate_state_machine_definition()
                .definition(input.definition)
                .set_type(
                    input
                        .r#type
                        .map(|t| sdk::StateMachineType::from(t.as_str()))
                )
                .set_severity(
                    input
                        .severity
                        .map(|s| { sdk::ValidateStateMachineDefinitionSeverity::from(s.as_str()) })
                )
                .set_max_results(input.max_results)
        )
    }

    async fn start_execution(
        &self,
        input: StartExecutionInput,
    ) -> Result<StartExecutionOutput, ApiError> {
        send!(
            "StartExecution",
            self.client
                .start_execution()
                .state_machine_arn(input.state_machine_arn)
                .set_name(input.name)
                .set_input(input.input)
                .set_trace_header(input.trace_header)
        )
    }

    async fn start_sync_execution(
        &self,
        input: StartSyncExecutionInput,
    ) -> Result<StartSyncExecutionOutput, ApiError> {
        send!(
            "StartSyncExecution",
            self.client
                .start_sync_execution()
                .state_machine_arn(input.state_machine_arn)
                .set_name(input.name)
                .set_input(input.input)
                .set_trace_header(input.trace_header)
                .set_included_data(
                    input
                        .included_data
                        .map(|d| sdk::IncludedData::from(d.as_str()))
                )
        )
    }

    async fn describe_execution(
        &self,
        input: DescribeExecutionInput,
    ) -> Result<DescribeExecutionOutput, ApiError> {
        send!(
            "DescribeExecution",
            self.client
                .describe_execution()
                .execution_arn(input.execution_arn)
                .set_included_data(
                    input
                        .included_data
                        .map(|d| sdk::IncludedData::from(d.as_str()))
                )
        )
    }

    async fn describe_state_machine_for_execution(
        &self,
        input: DescribeStateMachineForExecutionInput,
    ) -> Result<DescribeStateMachineForExecutionOutput, ApiError> {
        send!(
            "DescribeStateMachineForExecution",
            self.client
                .describe_state_machine_for_execution()
                .execution_arn(input.execution_arn)
                .set_included_data(
                    input
                        .included_data
                        .map(|d| sdk::IncludedData::from(d.as_str()))
                )
        )
    }

    async fn list_executions(
        &self,
        input: ListExecutionsInput,
    ) -> Result<ListExecutionsOutput, ApiError> {
        send!(
            "ListExecutions",
            self.client
                .list_executions()
                .set_state_machine_arn(input.state_machine_arn)
                .set_status_filter(
                    input
                        .status_filter
                        .map(|s| sdk::ExecutionStatus::from(s.as_str()))
                )
                .set_max_results(input.max_results)
                .set_next_token(input.next_token)
                .set_map_run_arn(input.map_run_arn)
                .set_redrive_filter(
                    input
                        .redrive_filter
                        .map(|f| sdk::ExecutionRedriveFilter::from(f.as_str()))
                )
        )
    }

    async fn get_execution_history(
        &self,
        input: GetExecutionHistoryInput,
    ) -> Result<GetExecutionHistoryOutput, ApiError> {
        send!(
            "GetExecutionHistory",
            self.client
                .get_execution_history()
                .execution_arn(input.execution_arn)
                .set_max_results(input.max_results)
                .set_reverse_order(input.reverse_order)
                .set_next_token(input.next_token)
                .set_include_execution_data(input.include_execution_data)
        )
    }

    async fn stop_execution(
        &self,
        input: StopExecutionInput,
    ) -> Result<StopExecutionOutput, ApiError> {
        send!(
            "StopExecution",
            self.client
                .stop_execution()
                .execution_arn(input.execution_arn)
                .set_error(input.error)
                .set_cause(input.cause)
        )
    }

    async fn redrive_execution(
        &self,
        input: RedriveExecutionInput,
    ) -> Result<RedriveExecutionOutput, ApiError> {
        send!(
            "RedriveExecution",
            self.client
                .redrive_execution()
                .execution_arn(input.execution_arn)
                .set_client_token(input.client_token)
        )
    }

    async fn send_task_success(
        &self,
        input: SendTaskSuccessInput,
    ) -> Result<SendTaskSuccessOutput, ApiError> {
        send!(
            "SendTaskSuccess",
            self.client
                .send_task_success()
                .task_token(input.task_token)
                .output(input.output)
        )
    }

    async fn send_task_failure(
        &self,
        input: SendTaskFailureInput,
    ) -> Result<SendTaskFailureOutput, ApiError> {
        send!(
            "SendTaskFailure",
            self.client
                .send_task_failure()
                .task_token(input.task_token)
                .set_error(input.error)
                .set_cause(input.cause)
        )
    }

    async fn send_task_heartbeat(
        &self,
        input: SendTaskHeartbeatInput,
    ) -> Result<SendTaskHeartbeatOutput, ApiError> {
        send!(
            "SendTaskHeartbeat",
            self.client
                .send_task_heartbeat()
                .task_token(input.task_token)
        )
    }

    async fn create_activity(
        &self,
        _: CreateActivityInput,
    ) -> Result<CreateActivityOutput, ApiError> {
        Err(not_served("CreateActivity"))
    }

    async fn delete_activity(
        &self,
        _: DeleteActivityInput,
    ) -> Result<DeleteActivityOutput, ApiError> {
        Err(not_served("DeleteActivity"))
    }

    async fn describe_activity(
        &self,
        input: DescribeActivityInput,
    ) -> Result<DescribeActivityOutput, ApiError> {
        send!(
            "DescribeActivity",
            self.client
                .describe_activity()
                .activity_arn(input.activity_arn)
        )
    }

    async fn list_activities(
        &self,
        input: ListActivitiesInput,
    ) -> Result<ListActivitiesOutput, ApiError> {
        send!(
            "ListActivities",
            self.client
                .list_activities()
                .set_max_results(input.max_results)
                .set_next_token(input.next_token)
        )
    }

    async fn get_activity_task(
        &self,
        _: GetActivityTaskInput,
    ) -> Result<GetActivityTaskOutput, ApiError> {
        // Taking a task here would hide it from the workers that poll for it.
        Err(ApiError::unknown_operation(
            "GetActivityTask is not served by oms's AWS backend: run `oms worker` against AWS",
        ))
    }

    async fn list_map_runs(&self, input: ListMapRunsInput) -> Result<ListMapRunsOutput, ApiError> {
        send!(
            "ListMapRuns",
            self.client
                .list_map_runs()
                .execution_arn(input.execution_arn)
                .set_max_results(input.max_results)
                .set_next_token(input.next_token)
        )
    }

    async fn describe_map_run(
        &self,
        input: DescribeMapRunInput,
    ) -> Result<DescribeMapRunOutput, ApiError> {
        send!(
            "DescribeMapRun",
            self.client
                .describe_map_run()
                .map_run_arn(input.map_run_arn)
        )
    }

    async fn update_map_run(
        &self,
        input: UpdateMapRunInput,
    ) -> Result<UpdateMapRunOutput, ApiError> {
        // The SDK's maxConcurrency is 32-bit: a larger value is refused here, naming it.
        let narrow = |field: &str, n: Option<i64>| {
            n.map(i32::try_from)
                .transpose()
                .map_err(|_| ApiError::validation(format!("{field} must be at most {}", i32::MAX)))
        };
        send!(
            "UpdateMapRun",
            self.client
                .update_map_run()
                .map_run_arn(input.map_run_arn)
                .set_max_concurrency(narrow("maxConcurrency", input.max_concurrency)?)
                .set_tolerated_failure_count(input.tolerated_failure_count)
                .set_tolerated_failure_percentage(
                    input.tolerated_failure_percentage.map(|p| p as f32)
                )
        )
    }

    async fn test_state(&self, _: TestStateInput) -> Result<TestStateOutput, ApiError> {
        // TestState needs an IAM role to assume in the account: call it with the AWS
        // tools, or run it locally against `oms up`.
        Err(ApiError::unknown_operation(
            "TestState is not served by oms's AWS backend: use the AWS CLI, or `oms up`",
        ))
    }
}
