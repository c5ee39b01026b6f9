//! The HTTP front of `oms up`: the Step Functions API over the awsJson 1.0 protocol,
//! as boto3, aws-sdk-sfn and the AWS CLI speak it, in front of any [`StepFunctions`].
//!
//! `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and a JSON body answers
//! 200 with the operation's JSON output, or an error: HTTP 400 (5xx for server faults)
//! with `{"__type": "<Code>", "message": "..."}` and `x-amzn-ErrorType: <Code>`.
//! botocore reads the code from `__type` (parsers.py, `BaseJSONParser._do_error_parse`);
//! smithy-rs reads `x-amzn-ErrorType` first, then `code`/`__type`. `GET /health`
//! answers `ok`.

use crate::respond::{
    body_too_large, error_response, json_response, problem_response, MAX_REQUEST_BYTES,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use saga_core::api::{ApiError, StepFunctions};
use saga_core::dispatch::{dispatch, operation_from_target};
use std::future::Future;
use std::sync::Arc;

/// Serves the API and `extra` routes (the Orders API) on `listener` until `shutdown`
/// completes, then lets requests in flight finish and returns.
/// With `auth`, every request but the public ones must carry those credentials; with
/// `hosts`, every request must be addressed to one of those names (checked first).
/// With `durability`, no answer leaves before what that store has committed is on disk.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    sfn: Arc<dyn StepFunctions>,
    extra: Router,
    auth: Option<Arc<crate::auth::Credentials>>,
    hosts: Option<Arc<crate::hosts::AllowedHosts>>,
    durability: Option<saga_core::store::ExecutionStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = extra.merge(router(sfn));
    if let Some(store) = durability {
        app = app.layer(axum::middleware::from_fn_with_state(store, durable_answers));
    }
    if let Some(creds) = auth {
        app = app.layer(axum::middleware::from_fn_with_state(
            creds,
            crate::auth::guard,
        ));
    }
    // The last layer added runs first.
    if let Some(hosts) = hosts {
        app = app.layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::hosts::guard,
        ));
    }
    // Without TCP_NODELAY an event the stream writes while the one before is not yet
    // acknowledged waits for that ACK, which a client delays by up to 40 ms: at C=1
    // an order's events come a millisecond apart (issue 16; p99 at C=1 was 40 ms).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("oms: cannot set TCP_NODELAY on a connection: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The runtime commits its steps lazily (saga-core/src/store.rs): an answer, which may
/// tell of any of them (an order's status, an execution's history, a task accepted),
/// waits until everything committed before it was computed is on disk. One fsync,
/// shared by every answer waiting at the time; none when nothing is waiting for one.
/// An answer that cannot be made durable (a full disk) is refused in the shape of the
/// API asked: AWS's for an SDK's request, the Orders API's problem otherwise.
async fn durable_answers(
    State(store): State<saga_core::store::ExecutionStore>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let aws_shaped = request.headers().contains_key("x-amz-target");
    let response = next.run(request).await;
    let Err(e) = store.sync().await else {
        return response;
    };
    let message = format!("the answer could not be made durable: {e}");
    if aws_shaped {
        return error_response(&ApiError::service_unavailable(message));
    }
    let unavailable = activities::errors::ActivityError::new(
        activities::errors::ErrorKind::StoreUnavailable,
        message,
    );
    problem_response(&oms_orders::Problem::from(unavailable))
}

/// Everything `oms up` serves: the Orders API and console over `orders`, and the Step
/// Functions API over `sfn`.
pub fn app(sfn: Arc<dyn StepFunctions>, orders: Arc<oms_orders::Orders>) -> Router {
    crate::orders_http::routes(orders).merge(router(sfn))
}

/// The routes, for callers that serve them some other way.
pub fn router(sfn: Arc<dyn StepFunctions>) -> Router {
    Router::new()
        .route("/", post(api))
        .route("/health", get(|| async { "ok" }))
        .fallback(not_found)
        .with_state(sfn)
}

/// A path no route has. An AWS SDK's request (it names an operation) is answered in
/// AWS's shape, anyone else's in the Orders API's.
async fn not_found(headers: HeaderMap, method: Method, uri: Uri) -> Response {
    if headers.contains_key("x-amz-target") {
        let e = ApiError::unknown_operation("No such resource; the API is served at POST /");
        let mut response = error_response(&e);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    problem_response(&oms_orders::Problem::new(
        404,
        oms_orders::code::ROUTE_NOT_FOUND,
        format!(
            "{method} {}: no such route (the Orders API's are listed at GET /openapi.json; \
             the Step Functions API is served at POST /)",
            uri.path()
        ),
    ))
}

async fn api(
    State(sfn): State<Arc<dyn StepFunctions>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let result = match operation_from_target(target) {
        Err(e) => Err(e),
        Ok(op) => match read_body(body).await {
            Err(e) => Err(e),
            Ok(bytes) => run(sfn, op.to_string(), bytes).await,
        },
    };
    let mut response = match result {
        Ok(output) => json_response(StatusCode::OK, &output),
        Err(e) => error_response(&e),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", v);
    }
    response
}

/// Runs the operation on its own task, so that a backend that panics answers 500
/// InternalFailure instead of dropping the connection.
async fn run(
    sfn: Arc<dyn StepFunctions>,
    op: String,
    body: Bytes,
) -> Result<serde_json::Value, ApiError> {
    let task = tokio::spawn(async move { dispatch(sfn.as_ref(), &op, &body).await });
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(ApiError::internal_failure(
            "Internal failure while handling the request",
        )),
        Err(_) => Err(ApiError::service_unavailable("The request was cancelled")),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            if body_too_large(&e) {
                Err(ApiError::validation(format!(
                    "Request body exceeds the maximum size of {MAX_REQUEST_BYTES} bytes"
                )))
            } else {
                Err(ApiError::serialization(format!(
                    "Could not read the request body: {e}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::CONTENT_TYPE;
    use chrono::DateTime;
    use saga_core::api::*;
    use serde_json::{json, Value};

    /// Starts executions, panics on DescribeExecution, and fails everything else.
    struct Fake;

    fn nope<T>() -> Result<T, ApiError> {
        Err(ApiError::service_unavailable("not in this fake"))
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
            nope()
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
                execution_arn: format!("{}:e1", input.state_machine_arn),
                start_date: DateTime::from_timestamp_millis(1_700_000_000_250).unwrap(),
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
            panic!("the backend fell over")
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

    struct Reply {
        status: u16,
        content_type: Option<String>,
        error_type: Option<String>,
        request_id: bool,
        body: Value,
    }

    async fn call(
        client: &reqwest::Client,
        base: &str,
        target: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut req = client
            .post(format!("{base}/"))
            .header("content-type", CONTENT_TYPE)
            .body(body);
        if let Some(t) = target {
            req = req.header("X-Amz-Target", t);
        }
        let resp = req.send().await.unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, error_type) = (header("content-type"), header("x-amzn-errortype"));
        let request_id = resp.headers().contains_key("x-amzn-requestid");
        let status = resp.status().as_u16();
        let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        Reply {
            status,
            content_type,
            error_type,
            request_id,
            body,
        }
    }

    fn assert_error(r: &Reply, status: u16, code: &str) {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.body["__type"], code, "{}", r.body);
        assert!(r.body["message"].is_string(), "{}", r.body);
        assert_eq!(r.error_type.as_deref(), Some(code));
        assert_eq!(r.content_type.as_deref(), Some(CONTENT_TYPE));
    }

    const START: Option<&str> = Some("AWSStepFunctions.StartExecution");

    /// An operation the backend answers, and one whose error it answers.
    async fn answers(client: &reqwest::Client, base: &str) {
        let r = call(
            client,
            base,
            START,
            r#"{"stateMachineArn": "arn:sm", "input": "{}"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.content_type.as_deref(), Some(CONTENT_TYPE));
        assert!(r.request_id);
        assert_eq!(r.error_type, None);
        assert_eq!(
            r.body,
            json!({"executionArn": "arn:sm:e1", "startDate": 1_700_000_000.25})
        );

        // The backend's error.
        let r = call(client, base, START, r#"{"stateMachineArn": "sm"}"#).await;
        assert_error(&r, 400, "InvalidArn");
        assert_eq!(r.body["message"], "Invalid Arn: 'sm'");
        assert!(r.request_id);
    }

    /// Missing, foreign and unknown targets, and bad bodies.
    async fn refuses_bad_requests(client: &reqwest::Client, base: &str) {
        for target in [
            None,
            Some("AWSStepFunctions.Frobnicate"),
            Some("DynamoDB_20120810.GetItem"),
        ] {
            let r = call(client, base, target, "{}").await;
            assert_error(&r, 400, "UnknownOperationException");
        }

        // Bad bodies.
        assert_error(
            &call(client, base, START, "{not json").await,
            400,
            "SerializationException",
        );
        let r = call(client, base, START, "{}").await;
        assert_error(&r, 400, "ValidationException");
        assert_eq!(
            r.body["message"],
            "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy constraint: \
             Member must not be null"
        );
        let big = format!(
            r#"{{"stateMachineArn": "arn:sm", "input": "{}"}}"#,
            "x".repeat(MAX_REQUEST_BYTES)
        );
        assert_error(
            &call(client, base, START, big).await,
            400,
            "ValidationException",
        );
        // Just under the limit is served.
        let fits = format!(
            r#"{{"stateMachineArn": "arn:sm", "input": "{}"}}"#,
            "x".repeat(MAX_REQUEST_BYTES - 64)
        );
        assert_eq!(call(client, base, START, fits).await.status, 200);
    }

    /// A backend that panics or is unavailable.
    async fn reports_server_faults(client: &reqwest::Client, base: &str) {
        let r = call(
            client,
            base,
            Some("AWSStepFunctions.DescribeExecution"),
            r#"{"executionArn": "e"}"#,
        )
        .await;
        assert_error(&r, 500, "InternalFailure");
        let r = call(client, base, Some("AWSStepFunctions.ListExecutions"), "{}").await;
        assert_error(&r, 503, "ServiceUnavailable");
    }

    /// Other paths: an SDK's request is answered in AWS's shape, anyone else's in the
    /// Orders API's.
    async fn answers_other_paths(client: &reqwest::Client, base: &str) {
        let r = client.get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["code"], oms_orders::code::ROUTE_NOT_FOUND, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("GET /nope"),
            "{body}"
        );
        let r = client
            .post(format!("{base}/nope"))
            .header("X-Amz-Target", "AWSStepFunctions.ListStateMachines")
            .header("content-type", CONTENT_TYPE)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["__type"], "UnknownOperationException", "{body}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_the_api() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with(
            listener,
            Arc::new(Fake),
            Router::new(),
            None,
            None,
            None,
            async {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::new();

        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), "ok");

        answers(&client, &base).await;
        refuses_bad_requests(&client, &base).await;
        reports_server_faults(&client, &base).await;
        answers_other_paths(&client, &base).await;

        // Still serving after all that; then shuts down when told.
        assert_eq!(
            call(&client, &base, START, r#"{"stateMachineArn": "arn:sm"}"#)
                .await
                .status,
            200
        );
        stop.send(()).unwrap();
        drop(client);
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("server did not shut down")
            .unwrap()
            .unwrap();
    }
}
