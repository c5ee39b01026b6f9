//! `oms up` driven by the official Rust SDK (aws-sdk-sfn), as a user's program would
//! drive Step Functions: each test starts the binary on a free loopback port with a
//! fresh data directory and talks to it only through the SDK.
//!
//! Host prefixes: StartSyncExecution and TestState are modeled with the host prefix
//! `sync-`, so the SDK sends them to `sync-127.0.0.1:PORT`. Unlike boto3
//! (`inject_host_prefix=False`) the Rust SDK has no switch to turn that off, so the
//! client here carries a small interceptor, [`NoHostPrefix`], that puts the endpoint's
//! own host back before the request is signed.

use aws_sdk_sfn::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_sfn::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::operation::create_state_machine::CreateStateMachineError;
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::operation::describe_state_machine::DescribeStateMachineError;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::types::{
    ExecutionRedriveStatus, ExecutionStatus, HistoryEvent, HistoryEventType, StateMachineStatus,
    StateMachineType, SyncExecutionStatus, TestExecutionStatus,
};
use aws_sdk_sfn::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const ROLE: &str = "arn:aws:iam::000000000000:role/oms-sdk-test";

/// A running `oms up`, killed (and its data directory removed) on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Server {
    fn start() -> Server {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oms-sdk-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the data directory");
        let child = Command::new(env!("CARGO_BIN_EXE_oms"))
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            // No stray oms.toml from the working directory.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oms up");
        let mut server = Server {
            child,
            dir,
            addr: String::new(),
        };
        let stdout = server.child.stdout.take().unwrap();
        let mut stderr = server.child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout for the server's life so it can never block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = etx.send(text);
        });
        let announced = rx.recv_timeout(Duration::from_secs(60));
        let addr = announced.as_deref().ok().and_then(|line| {
            let rest = line.strip_prefix("oms: Step Functions API on http://")?;
            Some(rest.split_whitespace().next()?.to_string())
        });
        let Some(addr) = addr else {
            let _ = server.child.kill();
            let status = server.child.wait();
            let stderr = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            panic!(
                "oms up did not start: first stdout line {announced:?}, exit {status:?}, stderr:\n{stderr}"
            );
        };
        server.addr = addr;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if health(&server.addr) {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let stderr = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                panic!("oms up exited ({status}) before GET /health answered; stderr:\n{stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "GET http://{}/health did not answer 200 \"ok\" within 30 s",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn client(&self) -> (Client, Arc<AtomicUsize>) {
        let rewritten = Arc::new(AtomicUsize::new(0));
        let config = aws_sdk_sfn::Config::builder()
            .endpoint_url(format!("http://{}", self.addr))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .behavior_version(BehaviorVersion::latest())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .interceptor(NoHostPrefix {
                host: self.addr.clone(),
                rewritten: rewritten.clone(),
            })
            .build();
        (Client::from_conf(config), rewritten)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET /health` answers 200 with body `ok`.
fn health(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok")
}

/// Undoes the model's host prefix (`sync-`) for the local endpoint: the equivalent of
/// boto3's `inject_host_prefix=False`, which the Rust SDK does not offer.
#[derive(Debug)]
struct NoHostPrefix {
    host: String,
    rewritten: Arc<AtomicUsize>,
}

impl Intercept for NoHostPrefix {
    fn name(&self) -> &'static str {
        "NoHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        let prefixed = format!("http://sync-{}", self.host);
        if let Some(rest) = request.uri().strip_prefix(&prefixed) {
            let uri = format!("http://{}{rest}", self.host);
            request.set_uri(uri)?;
            self.rewritten.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn parse(text: Option<&str>) -> Value {
    let text = text.expect("a JSON document");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn create_machine(client: &Client, name: &str, definition: &Value) -> String {
    client
        .create_state_machine()
        .name(name)
        .definition(definition.to_string())
        .role_arn(ROLE)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStateMachine {name}: {e:?}"))
        .state_machine_arn
}

async fn start(client: &Client, machine: &str, name: &str, input: &Value) -> String {
    client
        .start_execution()
        .state_machine_arn(machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("StartExecution {name}: {e:?}"))
        .execution_arn
}

/// DescribeExecution until the status is `want` (or the execution ends otherwise).
async fn wait_for(
    client: &Client,
    execution: &str,
    want: ExecutionStatus,
) -> DescribeExecutionOutput {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = client
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeExecution: {e:?}"));
        if d.status == want {
            return d;
        }
        assert!(
            d.status == ExecutionStatus::Running && Instant::now() < deadline,
            "waiting for {want:?}, the execution is {:?}: {d:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn history(client: &Client, execution: &str) -> Vec<HistoryEvent> {
    client
        .get_execution_history()
        .execution_arn(execution)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetExecutionHistory: {e:?}"))
        .events
}

fn pass_wait_pass() -> Value {
    json!({
        "StartAt": "Shape",
        "States": {
            "Shape": {
                "Type": "Pass",
                "Parameters": {"order.$": "$.order", "step": "shaped"},
                "Next": "Pause"
            },
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Finish"},
            "Finish": {"Type": "Pass", "Result": "done", "ResultPath": "$.status", "End": true}
        }
    })
}

fn long_wait() -> Value {
    json!({
        "StartAt": "Sleep",
        "States": {"Sleep": {"Type": "Wait", "Seconds": 3600, "End": true}}
    })
}

#[tokio::test]
async fn state_machine_lifecycle() {
    let server = Server::start();
    let (client, _) = server.client();
    let def = pass_wait_pass();
    let arn = create_machine(&client, "orders", &def).await;
    assert!(
        arn.starts_with("arn:aws:states:us-east-1:") && arn.ends_with(":stateMachine:orders"),
        "{arn}"
    );

    let d = client
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.name, "orders");
    assert_eq!(d.status, Some(StateMachineStatus::Active));
    assert_eq!(d.r#type, StateMachineType::Standard);
    assert_eq!(d.role_arn, ROLE);
    assert_eq!(parse(Some(&d.definition)), def);

    let other = create_machine(&client, "refunds", &long_wait()).await;
    let listed = client.list_state_machines().send().await.unwrap();
    let names: Vec<&str> = listed
        .state_machines
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    // `oms up` registers the order saga, its Express child and the amendments' saga itself.
    assert_eq!(
        names,
        [
            "order-amend",
            "order-prepare",
            "order-saga",
            "orders",
            "refunds"
        ]
    );
    let page = client
        .list_state_machines()
        .max_results(4)
        .send()
        .await
        .unwrap();
    assert_eq!(page.state_machines.len(), 4);
    let token = page.next_token.expect("a second page");
    let page2 = client
        .list_state_machines()
        .max_results(4)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(page2.state_machines[0].state_machine_arn, other);

    let updated_def = long_wait();
    let u = client
        .update_state_machine()
        .state_machine_arn(&arn)
        .definition(updated_def.to_string())
        .send()
        .await
        .unwrap();
    assert!(u.revision_id.is_some(), "{u:?}");
    let d = client
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(parse(Some(&d.definition)), updated_def);
    assert_eq!(d.revision_id, u.revision_id);

    client
        .delete_state_machine()
        .state_machine_arn(&other)
        .send()
        .await
        .unwrap();
    let listed = client.list_state_machines().send().await.unwrap();
    let arns: Vec<&str> = listed
        .state_machines
        .iter()
        .map(|m| m.state_machine_arn.as_str())
        .filter(|a| {
            !a.ends_with(":order-saga")
                && !a.ends_with(":order-prepare")
                && !a.ends_with(":order-amend")
        })
        .collect();
    assert_eq!(arns, [arn.as_str()]);
    // AWS answers DELETING for a while, then StateMachineDoesNotExist.
    match client
        .describe_state_machine()
        .state_machine_arn(&other)
        .send()
        .await
    {
        Ok(d) => assert_eq!(d.status, Some(StateMachineStatus::Deleting)),
        Err(e) => assert!(
            matches!(
                e.into_service_error(),
                DescribeStateMachineError::StateMachineDoesNotExist(_)
            ),
            "a deleted machine"
        ),
    }

    let bad = client
        .create_state_machine()
        .name("broken")
        .definition(r#"{"StartAt":"Nowhere","States":{"A":{"Type":"Pass","End":true}}}"#)
        .role_arn(ROLE)
        .send()
        .await
        .expect_err("a definition whose StartAt names no state");
    match bad.into_service_error() {
        CreateStateMachineError::InvalidDefinition(e) => {
            let message = e.message().unwrap_or_default();
            assert!(message.contains("Nowhere"), "{message}");
        }
        other => panic!("expected InvalidDefinition, got {other:?}"),
    }
}

#[tokio::test]
async fn execution_runs_lists_and_pages_its_history() {
    let server = Server::start();
    let (client, _) = server.client();
    let machine = create_machine(&client, "pipeline", &pass_wait_pass()).await;
    let exec = start(
        &client,
        &machine,
        "run-1",
        &json!({"order": 7, "drop": true}),
    )
    .await;
    assert!(exec.ends_with(":execution:pipeline:run-1"), "{exec}");

    let d = wait_for(&client, &exec, ExecutionStatus::Succeeded).await;
    assert_eq!(
        parse(d.output()),
        json!({"order": 7, "step": "shaped", "status": "done"})
    );
    assert_eq!(parse(d.input()), json!({"order": 7, "drop": true}));
    assert_eq!(d.state_machine_arn, machine);
    assert!(d.stop_date.is_some());
    let took = d.stop_date.unwrap().as_secs_f64() - d.start_date.as_secs_f64();
    assert!(took >= 0.99, "the Wait of 1 s took {took} s");

    let succeeded = client
        .list_executions()
        .state_machine_arn(&machine)
        .status_filter(ExecutionStatus::Succeeded)
        .send()
        .await
        .unwrap();
    assert_eq!(succeeded.executions.len(), 1);
    assert_eq!(succeeded.executions[0].execution_arn, exec);
    assert_eq!(succeeded.executions[0].status, ExecutionStatus::Succeeded);
    let failed = client
        .list_executions()
        .state_machine_arn(&machine)
        .status_filter(ExecutionStatus::Failed)
        .send()
        .await
        .unwrap();
    assert!(failed.executions.is_empty(), "{failed:?}");

    let all = history(&client, &exec).await;
    let types: Vec<HistoryEventType> = all.iter().map(|e| e.r#type.clone()).collect();
    assert_eq!(
        types,
        [
            HistoryEventType::ExecutionStarted,
            HistoryEventType::PassStateEntered,
            HistoryEventType::PassStateExited,
            HistoryEventType::WaitStateEntered,
            HistoryEventType::WaitStateExited,
            HistoryEventType::PassStateEntered,
            HistoryEventType::PassStateExited,
            HistoryEventType::ExecutionSucceeded,
        ]
    );

    for reverse in [false, true] {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = client
                .get_execution_history()
                .execution_arn(&exec)
                .max_results(3)
                .reverse_order(reverse)
                .set_next_token(token.take())
                .send()
                .await
                .unwrap();
            pages += 1;
            assert!(
                page.events.len() <= 3,
                "{} events in a page of 3",
                page.events.len()
            );
            ids.extend(page.events.iter().map(|e| e.id));
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
            assert!(pages < 10, "the history never ends");
        }
        let mut want: Vec<i64> = (1..=8).collect();
        if reverse {
            want.reverse();
        }
        assert_eq!(ids, want, "reverse_order={reverse}");
        assert_eq!(pages, 3, "8 events in pages of 3");
    }
}

#[tokio::test]
async fn stop_execution_aborts_with_error_and_cause() {
    let server = Server::start();
    let (client, _) = server.client();
    let machine = create_machine(&client, "sleeper", &long_wait()).await;
    let exec = start(&client, &machine, "nap", &json!({})).await;

    let running = client
        .list_executions()
        .state_machine_arn(&machine)
        .status_filter(ExecutionStatus::Running)
        .send()
        .await
        .unwrap();
    assert_eq!(running.executions.len(), 1);
    assert_eq!(running.executions[0].execution_arn, exec);

    let stopped = client
        .stop_execution()
        .execution_arn(&exec)
        .error("Ops.Cancelled")
        .cause("the customer cancelled")
        .send()
        .await
        .unwrap();
    let d = wait_for(&client, &exec, ExecutionStatus::Aborted).await;
    assert_eq!(d.error(), Some("Ops.Cancelled"));
    assert_eq!(d.cause(), Some("the customer cancelled"));
    assert_eq!(d.stop_date, Some(stopped.stop_date));

    let events = history(&client, &exec).await;
    let last = events.last().unwrap();
    assert_eq!(last.r#type, HistoryEventType::ExecutionAborted);
    let details = last.execution_aborted_event_details().expect("details");
    assert_eq!(details.error(), Some("Ops.Cancelled"));
    assert_eq!(details.cause(), Some("the customer cancelled"));

    let running = client
        .list_executions()
        .state_machine_arn(&machine)
        .status_filter(ExecutionStatus::Running)
        .send()
        .await
        .unwrap();
    assert!(running.executions.is_empty(), "{running:?}");
}

/// One turn of an activity worker: poll until a task arrives, then report `outcome`.
async fn work_once(client: &Client, activity: &str, outcome: Result<Value, &str>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let task = client
            .get_activity_task()
            .activity_arn(activity)
            .worker_name("sdk-test-worker")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetActivityTask: {e:?}"));
        let Some(token) = task.task_token().filter(|t| !t.is_empty()) else {
            assert!(Instant::now() < deadline, "no activity task arrived");
            continue;
        };
        let input = parse(task.input());
        match &outcome {
            Ok(output) => {
                client
                    .send_task_success()
                    .task_token(token)
                    .output(output.to_string())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("SendTaskSuccess: {e:?}"));
            }
            Err(error) => {
                client
                    .send_task_failure()
                    .task_token(token)
                    .error(*error)
                    .cause("the worker is flaky")
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("SendTaskFailure: {e:?}"));
            }
        }
        return input;
    }
}

#[tokio::test]
async fn activity_fails_then_succeeds_after_redrive() {
    let server = Server::start();
    let (client, _) = server.client();
    let activity = client
        .create_activity()
        .name("charge-card")
        .send()
        .await
        .unwrap()
        .activity_arn;
    assert!(activity.ends_with(":activity:charge-card"), "{activity}");
    let machine = create_machine(
        &client,
        "charge",
        &json!({
            "StartAt": "Charge",
            "States": {"Charge": {"Type": "Task", "Resource": activity, "End": true}}
        }),
    )
    .await;
    let input = json!({"order": "o-1", "amount": 20});
    let exec = start(&client, &machine, "charge-o-1", &input).await;

    let got = work_once(&client, &activity, Err("Worker.Flaky")).await;
    assert_eq!(got, input);
    let failed = wait_for(&client, &exec, ExecutionStatus::Failed).await;
    assert_eq!(failed.error(), Some("Worker.Flaky"));
    assert_eq!(failed.cause(), Some("the worker is flaky"));
    assert_eq!(failed.redrive_count(), Some(0));
    assert_eq!(
        failed.redrive_status(),
        Some(&ExecutionRedriveStatus::Redrivable)
    );

    client
        .redrive_execution()
        .execution_arn(&exec)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RedriveExecution: {e:?}"));
    let got = work_once(&client, &activity, Ok(json!({"charged": 20}))).await;
    assert_eq!(got, input);
    let done = wait_for(&client, &exec, ExecutionStatus::Succeeded).await;
    assert_eq!(parse(done.output()), json!({"charged": 20}));
    assert_eq!(done.redrive_count(), Some(1));
    assert!(done.redrive_date().is_some(), "{done:?}");

    let redriven = client
        .list_executions()
        .state_machine_arn(&machine)
        .redrive_filter(aws_sdk_sfn::types::ExecutionRedriveFilter::Redriven)
        .send()
        .await
        .unwrap();
    assert_eq!(redriven.executions.len(), 1);
    assert_eq!(redriven.executions[0].redrive_count(), Some(1));

    let types: Vec<HistoryEventType> = history(&client, &exec)
        .await
        .iter()
        .map(|e| e.r#type.clone())
        .collect();
    assert!(
        types.contains(&HistoryEventType::ActivityFailed),
        "{types:?}"
    );
    assert!(
        types.contains(&HistoryEventType::ExecutionRedriven),
        "{types:?}"
    );
    assert_eq!(types.last(), Some(&HistoryEventType::ExecutionSucceeded));
}

#[tokio::test]
async fn callback_token_from_history_completes_the_task() {
    let server = Server::start();
    let (client, _) = server.client();
    let machine = create_machine(
        &client,
        "callback",
        &json!({
            "StartAt": "Notify",
            "States": {"Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": true
            }}
        }),
    )
    .await;
    let exec = start(&client, &machine, "cb-1", &json!({"order": 1})).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let events = history(&client, &exec).await;
        let scheduled = events.iter().find_map(|e| e.task_scheduled_event_details());
        if let Some(s) = scheduled {
            assert_eq!(s.resource_type, "sqs");
            assert_eq!(s.resource, "sendMessage.waitForTaskToken");
            let params = parse(Some(&s.parameters));
            assert_eq!(params["QueueUrl"], "q");
            break params["MessageBody"]["token"]
                .as_str()
                .expect("the token in the parameters")
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no TaskScheduled event: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!token.is_empty());
    let d = client
        .describe_execution()
        .execution_arn(&exec)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status, ExecutionStatus::Running);

    client
        .send_task_success()
        .task_token(&token)
        .output(r#"{"delivered":true}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SendTaskSuccess: {e:?}"));
    let d = wait_for(&client, &exec, ExecutionStatus::Succeeded).await;
    assert_eq!(parse(d.output()), json!({"delivered": true}));

    // The token is spent.
    let again = client
        .send_task_success()
        .task_token(&token)
        .output("{}")
        .send()
        .await
        .expect_err("a token used twice");
    assert!(
        matches!(
            again.into_service_error(),
            SendTaskSuccessError::TaskTimedOut(_)
                | SendTaskSuccessError::TaskDoesNotExist(_)
                | SendTaskSuccessError::InvalidToken(_)
        ),
        "a spent token"
    );
}

#[tokio::test]
async fn a_redriven_task_that_fails_again_is_entered_again_in_the_history() {
    let server = Server::start();
    let (client, _) = server.client();
    let activity = client
        .create_activity()
        .name("pack-box")
        .send()
        .await
        .unwrap()
        .activity_arn;
    let machine = create_machine(
        &client,
        "pack",
        &json!({
            "StartAt": "Prepare",
            "States": {
                "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.step", "Next": "Pack"},
                "Pack": {"Type": "Task", "Resource": activity, "End": true}
            }
        }),
    )
    .await;
    let exec = start(&client, &machine, "pack-o-1", &json!({"order": "o-1"})).await;
    work_once(&client, &activity, Err("Packer.Jammed")).await;
    wait_for(&client, &exec, ExecutionStatus::Failed).await;
    client
        .redrive_execution()
        .execution_arn(&exec)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RedriveExecution: {e:?}"));
    work_once(&client, &activity, Err("Packer.Jammed")).await;
    let failed = wait_for(&client, &exec, ExecutionStatus::Failed).await;
    assert_eq!(failed.redrive_count(), Some(1));

    let events = history(&client, &exec).await;
    let at = events
        .iter()
        .position(|e| e.r#type == HistoryEventType::ExecutionRedriven)
        .expect("an ExecutionRedriven event");
    let after: Vec<HistoryEventType> = events[at + 1..].iter().map(|e| e.r#type.clone()).collect();
    assert_eq!(
        after,
        [
            HistoryEventType::TaskStateEntered,
            HistoryEventType::ActivityScheduled,
            HistoryEventType::ActivityStarted,
            HistoryEventType::ActivityFailed,
            HistoryEventType::ExecutionFailed
        ]
    );
    let entered = events[at + 1]
        .state_entered_event_details()
        .expect("the entered event's details");
    assert_eq!(entered.name, "Pack");
    assert_eq!(
        parse(entered.input()),
        json!({"order": "o-1", "step": "ready"})
    );
}

/// The error code each of SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat
/// answers for `token`.
async fn task_token_error_codes(client: &Client, token: &str) -> Vec<Option<String>> {
    let code = |e: Option<&str>| e.map(str::to_string);
    let success = client
        .send_task_success()
        .task_token(token)
        .output("{}")
        .send()
        .await
        .expect_err("SendTaskSuccess with a token no task has")
        .into_service_error();
    let failure = client
        .send_task_failure()
        .task_token(token)
        .error("E")
        .send()
        .await
        .expect_err("SendTaskFailure with a token no task has")
        .into_service_error();
    let heartbeat = client
        .send_task_heartbeat()
        .task_token(token)
        .send()
        .await
        .expect_err("SendTaskHeartbeat with a token no task has")
        .into_service_error();
    vec![
        code(success.code()),
        code(failure.code()),
        code(heartbeat.code()),
    ]
}

#[tokio::test]
async fn a_malformed_task_token_is_invalid_and_an_unknown_one_does_not_exist() {
    let server = Server::start();
    let (client, _) = server.client();
    let invalid = Some("InvalidToken".to_string());
    assert_eq!(
        task_token_error_codes(&client, "bogus").await,
        [invalid.clone(), invalid.clone(), invalid]
    );
    // The shape oms mints tokens in, but no task has this one.
    let missing = Some("TaskDoesNotExist".to_string());
    assert_eq!(
        task_token_error_codes(&client, "0b7c9d4e-3f2a-4c1b-8e5d-6a7f8b9c0d1e").await,
        [missing.clone(), missing.clone(), missing]
    );
}

#[tokio::test]
async fn bad_calls_answer_with_the_aws_error_codes() {
    let server = Server::start();
    let (client, _) = server.client();
    let machine = create_machine(&client, "errors", &pass_wait_pass()).await;

    let unknown = format!("{}:nope", machine.replace(":stateMachine:", ":execution:"));
    let e = client
        .describe_execution()
        .execution_arn(&unknown)
        .send()
        .await
        .expect_err("an unknown execution");
    assert!(
        matches!(
            e.into_service_error(),
            DescribeExecutionError::ExecutionDoesNotExist(_)
        ),
        "unknown execution ARN"
    );

    let e = client
        .describe_execution()
        .execution_arn("not-an-arn")
        .send()
        .await
        .expect_err("a malformed ARN");
    match e.into_service_error() {
        DescribeExecutionError::InvalidArn(_) => {}
        other => panic!("expected InvalidArn, got {other:?}"),
    }

    let e = client
        .send_task_success()
        .task_token("AAAAKgAAAAIAAAAAAAAAAbogus")
        .output("{}")
        .send()
        .await
        .expect_err("an unknown token");
    match e.into_service_error() {
        SendTaskSuccessError::TaskDoesNotExist(_) | SendTaskSuccessError::InvalidToken(_) => {}
        other => panic!("expected TaskDoesNotExist or InvalidToken, got {other:?}"),
    }

    let e = client
        .start_execution()
        .state_machine_arn(&machine)
        .input("{not json")
        .send()
        .await
        .expect_err("input that is not JSON");
    match e.into_service_error() {
        StartExecutionError::InvalidExecutionInput(_) => {}
        other => panic!("expected InvalidExecutionInput, got {other:?}"),
    }

    start(&client, &machine, "once", &json!({"a": 1})).await;
    let e = client
        .start_execution()
        .state_machine_arn(&machine)
        .name("once")
        .input(json!({"a": 2}).to_string())
        .send()
        .await
        .expect_err("the same name with different input");
    match e.into_service_error() {
        StartExecutionError::ExecutionAlreadyExists(_) => {}
        other => panic!("expected ExecutionAlreadyExists, got {other:?}"),
    }

    // An unreachable error code is a transport failure, not a service error.
    let e = client
        .describe_state_machine()
        .state_machine_arn(machine.replace(":errors", ":missing"))
        .send()
        .await
        .expect_err("an unknown machine");
    assert!(matches!(e, SdkError::ServiceError(_)), "{e:?}");
    assert!(matches!(
        e.into_service_error(),
        DescribeStateMachineError::StateMachineDoesNotExist(_)
    ));
}

#[tokio::test]
async fn start_sync_execution_through_the_sync_host_prefix() {
    let server = Server::start();
    let (client, rewritten) = server.client();
    let machine = client
        .create_state_machine()
        .name("express")
        .r#type(StateMachineType::Express)
        .definition(
            json!({
                "StartAt": "Echo",
                "States": {"Echo": {"Type": "Pass", "Parameters": {"got.$": "$.x"}, "End": true}}
            })
            .to_string(),
        )
        .role_arn(ROLE)
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let before = rewritten.load(Ordering::SeqCst);
    let out = client
        .start_sync_execution()
        .state_machine_arn(&machine)
        .input(r#"{"x":42}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("StartSyncExecution: {e:?}"));
    assert_eq!(
        rewritten.load(Ordering::SeqCst),
        before + 1,
        "the SDK sent StartSyncExecution to sync-{}",
        server.addr
    );
    assert_eq!(out.status, SyncExecutionStatus::Succeeded);
    assert_eq!(parse(out.output()), json!({"got": 42}));
}

#[tokio::test]
async fn test_state_through_the_sync_host_prefix() {
    let server = Server::start();
    let (client, rewritten) = server.client();
    let out = client
        .test_state()
        .definition(r#"{"Type":"Pass","Parameters":{"y.$":"$.x"},"End":true}"#)
        .role_arn(ROLE)
        .input(r#"{"x":1}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("TestState: {e:?}"));
    assert_eq!(rewritten.load(Ordering::SeqCst), 1);
    assert_eq!(out.status, Some(TestExecutionStatus::Succeeded));
    assert_eq!(parse(out.output()), json!({"y": 1}));
}
