//! A distributed Map through the service and the runtime, in process: its iterations
//! run as child executions of `<machine>/<label>`, its Map Run is listed, described and
//! updated through the API, and a stopped parent aborts the Map Run and its children.

mod common;
use common::NoTasks;
use saga_core::api::*;
use saga_core::runtime::Runtime;
use saga_core::service::LocalStepFunctions;
use saga_core::store::ExecutionStore;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn service(name: &str) -> Arc<LocalStepFunctions> {
    let dir = std::env::temp_dir().join(format!("oms-{name}-{}", uuid::Uuid::new_v4()));
    let runtime = Runtime::new(ExecutionStore::open(&dir).unwrap(), Arc::new(NoTasks));
    LocalStepFunctions::shared(runtime, "us-east-1", "000000000000")
}

/// A machine whose distributed Map (label `Items`) runs `processor` on `$.items`.
async fn machine(sfn: &LocalStepFunctions, map: Value) -> String {
    let definition = json!({"StartAt": "M", "States": {"M": map}});
    sfn.create_state_machine(CreateStateMachineInput {
        name: "dmap".into(),
        definition: definition.to_string(),
        role_arn: "arn:aws:iam::000000000000:role/r".into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e:?}"))
    .state_machine_arn
}

fn map_state(processor_states: Value, extra: Value) -> Value {
    let mut map = json!({
        "Type": "Map", "Label": "Items", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Check", "States": processor_states}});
    for (k, v) in extra.as_object().unwrap() {
        map[k] = v.clone();
    }
    map
}

/// Items below 100 double; 13 fails.
fn doubling_states() -> Value {
    json!({
        "Check": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericEquals": 13, "Next": "Bad"}], "Default": "Double"},
        "Bad": {"Type": "Fail", "Error": "Item.Unlucky", "Cause": "13"},
        "Double": {"Type": "Pass", "Parameters": {"twice.$": "States.MathAdd($.n, $.n)"}, "End": true}})
}

async fn start(sfn: &LocalStepFunctions, machine: &str, items: &[i64]) -> String {
    let items: Vec<Value> = items.iter().map(|n| json!({"n": n})).collect();
    sfn.start_execution(StartExecutionInput {
        state_machine_arn: machine.into(),
        input: Some(json!({"items": items}).to_string()),
        ..Default::default()
    })
    .await
    .unwrap()
    .execution_arn
}

async fn describe(sfn: &LocalStepFunctions, arn: &str) -> DescribeExecutionOutput {
    sfn.describe_execution(DescribeExecutionInput {
        execution_arn: arn.into(),
        included_data: None,
    })
    .await
    .unwrap()
}

async fn only_map_run(sfn: &LocalStepFunctions, execution_arn: &str) -> DescribeMapRunOutput {
    let runs = sfn
        .list_map_runs(ListMapRunsInput {
            execution_arn: execution_arn.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .map_runs;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].map_run_arn.contains(":mapRun:dmap/Items:"),
        "{runs:?}"
    );
    sfn.describe_map_run(DescribeMapRunInput {
        map_run_arn: runs[0].map_run_arn.clone(),
    })
    .await
    .unwrap()
}

async fn children(sfn: &LocalStepFunctions, map_run_arn: &str) -> Vec<ExecutionListItem> {
    sfn.list_executions(ListExecutionsInput {
        map_run_arn: Some(map_run_arn.into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .executions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterations_run_as_child_executions_of_the_map_run() {
    let sfn = service("dmap-ok");
    let extra = json!({"MaxConcurrency": 2, "ToleratedFailureCount": 1});
    let m = machine(&sfn, map_state(doubling_states(), extra)).await;
    let arn = start(&sfn, &m, &[1, 2, 13, 4, 5]).await;
    sfn.runtime().wait_finished(&arn).await;
    let done = describe(&sfn, &arn).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
    assert_eq!(out[0], json!({"twice": 2}), "{out}");
    assert_eq!(out[2]["Error"], "Item.Unlucky", "{out}");
    assert_eq!(out[4], json!({"twice": 10}), "{out}");

    let run = only_map_run(&sfn, &arn).await;
    assert_eq!(run.status, MapRunStatus::Succeeded);
    assert_eq!(run.execution_arn, arn);
    assert_eq!((run.max_concurrency, run.tolerated_failure_count), (2, 1));
    let c = &run.execution_counts;
    assert_eq!(
        (c.total, c.succeeded, c.failed, c.pending),
        (5, 4, 1, 0),
        "{c:?}"
    );
    assert!(run.stop_date.is_some());

    let kids = children(&sfn, &run.map_run_arn).await;
    assert_eq!(kids.len(), 5);
    for kid in &kids {
        assert!(
            kid.state_machine_arn.ends_with(":stateMachine:dmap/Items"),
            "{kid:?}"
        );
        assert!(
            kid.execution_arn.contains(":execution:dmap/Items:"),
            "{kid:?}"
        );
        assert_eq!(kid.map_run_arn.as_deref(), Some(run.map_run_arn.as_str()));
    }
    let kid = describe(&sfn, &kids[0].execution_arn).await;
    assert_eq!(kid.map_run_arn.as_deref(), Some(run.map_run_arn.as_str()));
    let kid_machine = sfn
        .describe_state_machine_for_execution(DescribeStateMachineForExecutionInput {
            execution_arn: kids[0].execution_arn.clone(),
            included_data: None,
        })
        .await
        .unwrap();
    assert_eq!(kid_machine.label.as_deref(), Some("Items"));
    let processor: Value = serde_json::from_str(&kid_machine.definition).unwrap();
    assert_eq!(processor["StartAt"], "Check", "{processor}");
    assert!(processor.get("ProcessorConfig").is_none(), "{processor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failure_too_many_fails_the_map_run() {
    let sfn = service("dmap-fail");
    let m = machine(&sfn, map_state(doubling_states(), json!({}))).await;
    let arn = start(&sfn, &m, &[13, 1]).await;
    sfn.runtime().wait_finished(&arn).await;
    let done = describe(&sfn, &arn).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    let run = only_map_run(&sfn, &arn).await;
    assert_eq!(run.status, MapRunStatus::Failed, "{run:?}");
}

/// Children wait on an activity nobody works, so they stay running.
async fn waiting_map_run(sfn: &LocalStepFunctions) -> (String, String) {
    let activity = sfn
        .create_activity(CreateActivityInput {
            name: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .activity_arn;
    let states = json!({"Check": {"Type": "Task", "Resource": activity, "End": true}});
    let m = machine(sfn, map_state(states, json!({"MaxConcurrency": 1}))).await;
    let arn = start(sfn, &m, &[1, 2, 3, 4]).await;
    // The Map Run's row is written with its first child, just after the parent's step.
    for _ in 0..100 {
        let runs = sfn
            .list_map_runs(ListMapRunsInput {
                execution_arn: arn.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .map_runs;
        if let Some(run) = runs.first() {
            return (arn, run.map_run_arn.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no Map Run was started for {arn}");
}

async fn running(sfn: &LocalStepFunctions, run: &str, want: usize) -> usize {
    for _ in 0..100 {
        let n = children(sfn, run)
            .await
            .iter()
            .filter(|k| k.status == ExecutionStatus::Running)
            .count();
        if n == want {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    children(sfn, run)
        .await
        .iter()
        .filter(|k| k.status == ExecutionStatus::Running)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_map_run_raises_concurrency_and_stop_aborts_the_children() {
    let sfn = service("dmap-update");
    let (arn, run) = waiting_map_run(&sfn).await;
    assert_eq!(running(&sfn, &run, 1).await, 1);
    sfn.update_map_run(UpdateMapRunInput {
        map_run_arn: run.clone(),
        max_concurrency: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(running(&sfn, &run, 3).await, 3);
    let described = only_map_run(&sfn, &arn).await;
    assert_eq!(described.max_concurrency, 3);
    assert_eq!(described.execution_counts.pending, 1, "{described:?}");

    let bad = sfn
        .update_map_run(UpdateMapRunInput {
            map_run_arn: run.clone(),
            tolerated_failure_percentage: Some(101.0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        bad.message.contains("toleratedFailurePercentage"),
        "{bad:?}"
    );

    sfn.stop_execution(StopExecutionInput {
        execution_arn: arn.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(running(&sfn, &run, 0).await, 0);
    let stopped = only_map_run(&sfn, &arn).await;
    assert_eq!(stopped.status, MapRunStatus::Aborted, "{stopped:?}");
    assert_eq!(stopped.execution_counts.aborted, 3, "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_count_as_executions_and_their_items_as_items() {
    let sfn = service("dmap-batches");
    let states = json!({"Check": {"Type": "Pass", "End": true}});
    let batcher = json!({"ItemBatcher": {"MaxItemsPerBatch": 2}});
    let m = machine(&sfn, map_state(states, batcher)).await;
    let arn = start(&sfn, &m, &[1, 2, 3, 4, 5]).await;
    sfn.runtime().wait_finished(&arn).await;
    let run = only_map_run(&sfn, &arn).await;
    let (e, i) = (&run.execution_counts, &run.item_counts);
    assert_eq!((e.total, e.succeeded, e.pending), (3, 3, 0), "{e:?}");
    assert_eq!((i.total, i.succeeded, i.pending), (5, 5, 0), "{i:?}");
    let mut sizes: Vec<i32> = children(&sfn, &run.map_run_arn)
        .await
        .iter()
        .map(|k| k.item_count.unwrap_or(0))
        .collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2, 2]);
}

/// A succeeded parent deletes its clean Express children (runtime/children.rs), but
/// not a Map Run's: AWS lists and describes those by their Map Run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_children_of_a_succeeded_map_run_stay_listed() {
    let sfn = service("dmap-express");
    let mut map = map_state(doubling_states(), json!({}));
    map["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = json!("EXPRESS");
    let m = machine(&sfn, map).await;
    let arn = start(&sfn, &m, &[1, 2, 4]).await;
    sfn.runtime().wait_finished(&arn).await;
    assert_eq!(
        describe(&sfn, &arn).await.status,
        ExecutionStatus::Succeeded
    );
    let run = only_map_run(&sfn, &arn).await;
    let kids = children(&sfn, &run.map_run_arn).await;
    assert_eq!(kids.len(), 3, "{kids:?}");
    assert!(
        kids.iter().all(|k| k.execution_arn.contains(":express:")),
        "{kids:?}"
    );
}
