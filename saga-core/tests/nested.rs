//! A nested execution through the service and the runtime, in process: a parent runs
//! a child to its end with `.sync:2` and gets the child's output as JSON, and the
//! child is the only execution of its state machine.

mod common;
use common::{Answers, Hangs, NoTasks};
use saga_core::api::{
    CreateStateMachineInput, DescribeExecutionInput, DescribeExecutionOutput, ExecutionStatus,
    ListExecutionsInput, SendTaskSuccessInput, StartExecutionInput, StateMachineType,
    StepFunctions, StopExecutionInput,
};
use saga_core::runtime::{Invoker, Runtime};
use saga_core::service::LocalStepFunctions;
use saga_core::store::ExecutionStore;
use serde_json::{json, Value};
use std::sync::Arc;

/// The function every Lambda task of these tests names.
const LAMBDA: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

/// A fresh data dir.
fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("oms-nested-{}", uuid::Uuid::new_v4()))
}

/// The service over `store`, its tasks answered by `invoker`.
fn service(
    store: &ExecutionStore,
    invoker: Arc<dyn Invoker>,
) -> (Arc<Runtime>, Arc<LocalStepFunctions>) {
    let runtime = Runtime::new(store.clone(), invoker);
    let sfn = LocalStepFunctions::shared(runtime.clone(), "us-east-1", "000000000000");
    (runtime, sfn)
}

/// An Express machine of one Lambda task.
async fn express_lambda_child(sfn: &LocalStepFunctions) -> String {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": LAMBDA, "End": true}}});
    typed_machine(sfn, "child", definition, Some(StateMachineType::Express)).await
}

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
    let dir = data_dir();
    let store = ExecutionStore::open(&dir).unwrap();
    let (_, sfn) = service(&store, Arc::new(NoTasks));
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

/// An Express child that succeeded without meeting an error is not kept
/// (runtime/children.rs): one its parent waits for runs in memory and is never
/// written, whatever its parent does after. Every other child stays: one that met an
/// error on its way, and a Standard one.
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
            false,
        ),
        (
            "express child met an error, parent fails after it",
            StateMachineType::Express,
            true,
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
    let dir = data_dir();
    let store = ExecutionStore::open(&dir).unwrap();
    let (_, sfn) = service(&store, Arc::new(NoTasks));
    for (i, (case, child_type, child_errs, parent_fails, kept)) in cases.into_iter().enumerate() {
        // NoTasks fails every Lambda call: a caught one is an error met on the way.
        let child_states = if child_errs {
            json!({"T": {"Type": "Task", "Resource": LAMBDA,
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

/// The rows stored of a state machine's executions: (status, kept linked to a parent).
fn stored(store: &ExecutionStore, machine_arn: &str) -> Vec<(String, bool)> {
    let arn = machine_arn.to_string();
    store
        .read(move |c| {
            let mut q = c.prepare(
                "SELECT e.status, EXISTS (SELECT 1 FROM children l WHERE l.child_arn = e.arn) \
                 FROM executions e WHERE e.state_machine_arn = ?1",
            )?;
            let rows = q.query_map([&arn], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
}

/// Waits (up to 5 s) until `n` executions are live.
async fn until_live(runtime: &Runtime, n: usize) {
    for _ in 0..500 {
        if runtime.running() == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} executions live, not {n}", runtime.running());
}

/// Waits (up to 5 s) until a task token is stored.
async fn until_token_stored(store: &ExecutionStore) {
    for _ in 0..500 {
        let tokens: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?))
            .unwrap();
        if tokens > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no task token stored");
}

async fn start(sfn: &LocalStepFunctions, machine: &str) -> String {
    sfn.start_execution(StartExecutionInput {
        state_machine_arn: machine.into(),
        input: Some("{}".into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .execution_arn
}

const SYNC_PARENT_TASK: &str = "arn:aws:states:::states:startExecution.sync:2";

/// An Express child its parent waits for runs in memory (runtime/children.rs): nothing
/// of it is stored while it runs. Stopping the parent stops it, and it is then kept,
/// ABORTED and linked to its parent, as a child that met an error is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_child_runs_in_memory_and_is_stopped_with_its_parent() {
    let dir = data_dir();
    let store = ExecutionStore::open(&dir).unwrap();
    let (runtime, sfn) = service(&store, Arc::new(Hangs));
    let child = express_lambda_child(&sfn).await;
    let parent_definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": SYNC_PARENT_TASK, "Parameters": {"StateMachineArn": child}, "End": true}}});
    let parent = machine(&sfn, "parent", parent_definition).await;
    let parent_arn = start(&sfn, &parent).await;
    until_live(&runtime, 2).await;
    assert_eq!(stored(&store, &child), [], "a running in-memory child");
    sfn.stop_execution(StopExecutionInput {
        execution_arn: parent_arn.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    until_live(&runtime, 0).await;
    assert_eq!(stored(&store, &child), [("ABORTED".to_string(), true)]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A crash loses an in-memory child with the process; the parent, resumed, invokes its
/// task again, which runs the child again to its end. A Standard child is stored from
/// its start, and resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_parent_runs_its_in_memory_child_again() {
    let dir = data_dir();
    let store = ExecutionStore::open(&dir).unwrap();
    let (child, token_child, parent_arn) = {
        let (runtime, sfn) = service(&store, Arc::new(Hangs));
        let child = express_lambda_child(&sfn).await;
        let token_definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": LAMBDA, "Payload": {"token.$": "$$.Task.Token"}},
            "End": true}}});
        // Standard: an Express machine cannot wait for a token.
        let token_child = machine(&sfn, "token-child", token_definition).await;
        let parent_definition = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel",
            "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": SYNC_PARENT_TASK,
                    "Parameters": {"StateMachineArn": child}, "End": true}}},
                {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": SYNC_PARENT_TASK,
                    "Parameters": {"StateMachineArn": token_child}, "End": true}}}],
            "End": true}}});
        let parent = machine(&sfn, "parent", parent_definition).await;
        let parent_arn = start(&sfn, &parent).await;
        until_live(&runtime, 3).await;
        // Live is not yet stored: an execution is registered before its first commit.
        until_token_stored(&store).await;
        assert_eq!(stored(&store, &child), [], "a running in-memory child");
        assert_eq!(
            stored(&store, &token_child),
            [("RUNNING".to_string(), true)],
            "a running child that hands out a token"
        );
        (child, token_child, parent_arn)
    };
    store.close();
    let store = ExecutionStore::open(&dir).unwrap();
    let (runtime, sfn) = service(&store, Arc::new(Answers));
    // The parent and its stored child; the in-memory child is started again by the
    // parent's task.
    assert_eq!(runtime.recover().await.unwrap(), 2);
    let token = store
        .read(|c| Ok(c.query_row("SELECT token FROM tasks", [], |r| r.get::<_, String>(0))?))
        .unwrap();
    sfn.send_task_success(SendTaskSuccessInput {
        task_token: token,
        output: "{}".into(),
    })
    .await
    .unwrap();
    runtime.wait_finished(&parent_arn).await;
    let done = sfn
        .describe_execution(DescribeExecutionInput {
            execution_arn: parent_arn,
            included_data: None,
        })
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let output: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
    assert_eq!(output[0]["Output"], json!({"answered": "T"}), "{output}");
    // The in-memory child met no error and is not kept; a Standard child is.
    assert_eq!(stored(&store, &child), []);
    assert_eq!(
        stored(&store, &token_child),
        [("SUCCEEDED".to_string(), false)]
    );
    let _ = std::fs::remove_dir_all(dir);
}
