"""RedriveExecution, as AWS behaves: a FAILED execution restarts from the failed state.

oms does not support redrive yet (it answers ExecutionNotRedrivable); this test fails
until it does, and passes as it is once RedriveExecution lands.
"""

import json

from helpers import create_machine, history, unique, wait_event, wait_status


def test_redrive_failed_activity(sfn):
    act = sfn.create_activity(name=unique("act"))["activityArn"]
    sm = create_machine(sfn, {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prep", "Next": "Work"},
            "Work": {"Type": "Task", "Resource": act, "End": True},
        },
    })
    arn = sfn.start_execution(stateMachineArn=sm, input='{"order": "o-r"}')["executionArn"]
    wait_event(sfn, arn, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="w")
    sfn.send_task_failure(taskToken=task["taskToken"], error="Worker.Crashed", cause="out of paper")
    failed = wait_status(sfn, arn)
    assert failed["status"] == "FAILED"
    assert failed["error"] == "Worker.Crashed"
    assert failed["redriveStatus"] == "REDRIVABLE"
    assert failed["redriveCount"] == 0
    events_before = history(sfn, arn)

    r = sfn.redrive_execution(executionArn=arn)
    assert r["redriveDate"] is not None

    # The failed state runs again: a new activity task, with the state's input.
    task2 = sfn.get_activity_task(activityArn=act, workerName="w2")
    assert task2.get("taskToken"), "no activity task after RedriveExecution"
    assert task2["taskToken"] != task["taskToken"]
    assert json.loads(task2["input"]) == {"order": "o-r", "prep": "ready"}
    sfn.send_task_success(taskToken=task2["taskToken"], output='{"done": 1}')

    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED"
    assert json.loads(d["output"]) == {"done": 1}
    assert d["redriveCount"] == 1
    assert d["redriveDate"] is not None

    events = history(sfn, arn)
    # The history continues: the old events stay, then ExecutionRedriven.
    assert [e["id"] for e in events[: len(events_before)]] == [e["id"] for e in events_before]
    types = [e["type"] for e in events]
    assert "ExecutionRedriven" in types
    redriven = events[types.index("ExecutionRedriven")]
    assert redriven["id"] == len(events_before) + 1
    assert redriven["executionRedrivenEventDetails"]["redriveCount"] == 1
    after = types[types.index("ExecutionRedriven"):]
    assert "PassStateEntered" not in after, "the succeeded Pass state ran again"
    assert after[-1] == "ExecutionSucceeded"
    assert "ActivityScheduled" in after and "ActivitySucceeded" in after

    listed = sfn.list_executions(stateMachineArn=sm, redriveFilter="REDRIVEN")["executions"]
    assert [e["executionArn"] for e in listed] == [arn]
