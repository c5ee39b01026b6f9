//! A nested execution through the service and the runtime, in process: a parent runs
//! a child to its end with `.sync:2` and gets the child's output as JSON, and the
//! child is the only execution of its state machine.

mod common;
use common::NoTasks;
use saga_core::api::{
    CreateStateMachineInput, DescribeExecutionInput, DescribeExecutionOutput, ExecutionStatus,
    ListExecutionsInput, StartExecutionInput, StateMachineType, StepFunctions,
};
use saga_core::runtime::Runtime;
use saga_core::service::LocalStepFunctions;
use saga_core::store::ExecutionStore;
use serde_json::{json, Value};
use std::sync::Arc;

async fn machine(sfn: &LocalStepFunctions, name: &str, definition: Value) -> String {
    typed_machine(sfn, name, definition, None).await
}

async fn typed_machine(
    sfn: &LocalStepFunctions,
    name: &str,
    definition: Value,
    r#type: Option<StateMachineType>,
) -> String {
    sfn.create_state_machine(CreateStateMachineInput {
        name: name.into(),
        definition: definition.to_string(),
        role_arn: "arn:aws:iam::000000000000:role/r".into(),
        r#type,
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

/// A succeeded parent deletes its Express children that succeeded without meeting an
/// error (runtime/children.rs); every other child stays: one that met an error on its
/// way, one whose parent did not succeed, and a Standard one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_parent_keeps_only_the_express_children_worth_reading() {
    // (case, child type, the child meets a caught error, the parent fails after it,
    // the child is kept)
    let cases = [
        (
            "clean express child, parent succeeds",
            StateMachineType::Express,
            false,
            false,
            false,
        ),
        (
            "express child met an error",
            StateMachineType::Express,
            true,
            false,
            true,
        ),
        (
            "parent fails after the child",
            StateMachineType::Express,
            false,
            true,
            true,
        ),
        (
            "standard child",
            StateMachineType::Standard,
            false,
            false,
            true,
        ),
    ];
    let dir = std::env::temp_dir().join(format!("oms-nested-{}", uuid::Uuid::new_v4()));
    let store = ExecutionStore::open(&dir).unwrap();
    let runtime = Runtime::new(store.clone(), Arc::new(NoTasks));
    let sfn = LocalStepFunctions::shared(runtime, "us-east-1", "000000000000");
    for (i, (case, child_type, child_errs, parent_fails, kept)) in cases.into_iter().enumerate() {
        // NoTasks fails every Lambda call: a caught one is an error met on the way.
        let child_states = if child_errs {
            json!({"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:f",
                         "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "P"}], "Next": "P"},
                   "P": {"Type": "Pass", "End": true}})
        } else {
            json!({"P": {"Type": "Pass", "End": true}})
        };
        let start = if child_errs { "T" } else { "P" };
        let child_definition = json!({"StartAt": start, "States": child_states});
        let child = typed_machine(
            &sfn,
            &format!("child{i}"),
            child_definition,
            Some(child_type),
        )
        .await;
        let then = if parent_fails {
            json!({"Type": "Fail", "Error": "Parent.Failed"})
        } else {
            json!({"Type": "Succeed"})
        };
        let parent_definition = json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                  "Parameters": {"StateMachineArn": child, "Input": {}}, "Next": "Then"},
            "Then": then}});
        let parent = machine(&sfn, &format!("parent{i}"), parent_definition).await;
        let done = run(&sfn, &parent).await;
        let expected = if parent_fails {
            ExecutionStatus::Failed
        } else {
            ExecutionStatus::Succeeded
        };
        assert_eq!(done.status, expected, "{case}: {done:?}");
        let child_arn = child.clone();
        let (rows, frames): (i64, i64) = store
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT count(*), (SELECT count(*) FROM histories h WHERE h.execution_id = e.rowid) \
                     FROM executions e WHERE e.state_machine_arn = ?1",
                    [&child_arn],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!(
            (rows, frames),
            if kept { (1, 1) } else { (0, 0) },
            "{case}: child rows, frames"
        );
    }
    // Nothing left behind by the deletes: every history belongs to an execution.
    let orphans: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM histories WHERE execution_id NOT IN (SELECT rowid FROM executions)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(orphans, 0);
    let _ = std::fs::remove_dir_all(dir);
}
