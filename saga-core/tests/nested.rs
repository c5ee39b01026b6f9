//! A nested execution through the service and the runtime, in process: a parent runs
//! a child to its end with `.sync:2` and gets the child's output as JSON, and the
//! child is the only execution of its state machine.

mod common;
use common::NoTasks;
use saga_core::api::{
    CreateStateMachineInput, DescribeExecutionInput, DescribeExecutionOutput, ExecutionStatus,
    ListExecutionsInput, StartExecutionInput, StepFunctions,
};
use saga_core::runtime::Runtime;
use saga_core::service::LocalStepFunctions;
use saga_core::store::ExecutionStore;
use serde_json::{json, Value};
use std::sync::Arc;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_parent_gets_its_childs_output() {
    let dir = std::env::temp_dir().join(format!("oms-nested-{}", uuid::Uuid::new_v4()));
    let store = ExecutionStore::open(&dir).unwrap();
    let runtime = Runtime::new(store.clone(), Arc::new(NoTasks));
    let sfn = LocalStepFunctions::shared(runtime, "us-east-1", "000000000000");
    let child_definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"got.$": "$.n"}, "End": true}}});
    let child = machine(&sfn, "child", child_definition).await;
    let parent_definition = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$.n"}}, "End": true}}});
    let parent = machine(&sfn, "parent", parent_definition).await;
    let done = run(&sfn, &parent).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
    assert_eq!(out["Output"], json!({"got": 7}), "{out}");
    assert_eq!(out["Status"], "SUCCEEDED");
    let children = sfn
        .list_executions(ListExecutionsInput {
            state_machine_arn: Some(child),
            ..Default::default()
        })
        .await
        .unwrap()
        .executions;
    let arns: Vec<_> = children.iter().map(|e| e.execution_arn.as_str()).collect();
    assert_eq!(arns, [out["ExecutionArn"].as_str().unwrap()]);
    // A succeeded parent can be neither resumed nor redriven: its link to the child,
    // kept for those, is gone with its close.
    let links: i64 = store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM children", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(
        links, 0,
        "a succeeded parent's links to its children are kept"
    );
    let _ = std::fs::remove_dir_all(dir);
}
