"""Tasks: activities and their workers, heartbeats, callbacks, in-process handlers,
and Express machines run with StartSyncExecution."""

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from helpers import create_machine, error_code, history, unique, wait_event, wait_status

CALLBACK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"


def activity_machine(activity_arn, **task_fields):
    task = {"Type": "Task", "Resource": activity_arn, "End": True}
    task.update(task_fields)
    return {"StartAt": "Work", "States": {"Work": task}}


def test_activity_success(sfn):
    act = sfn.create_activity(name=unique("act"))["activityArn"]
    assert sfn.describe_activity(activityArn=act)["activityArn"] == act
    assert act in {a["activityArn"] for a in sfn.list_activities()["activities"]}
    sm = create_machine(sfn, activity_machine(act, HeartbeatSeconds=30))

    # The worker polls first; the long poll answers as soon as the task is scheduled.
    got = {}
    poller = threading.Thread(target=lambda: got.update(sfn.get_activity_task(activityArn=act, workerName="w1")))
    poller.start()
    time.sleep(0.3)
    arn = sfn.start_execution(stateMachineArn=sm, input='{"order": "o-1"}')["executionArn"]
    poller.join(timeout=10)
    assert not poller.is_alive(), "GetActivityTask did not return once the task was scheduled"
    assert got.get("taskToken"), got
    assert json.loads(got["input"]) == {"order": "o-1"}

    sfn.send_task_heartbeat(taskToken=got["taskToken"])
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=got["taskToken"], output='{"done": true}')
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED"
    assert json.loads(d["output"]) == {"done": True}

    types = [e["type"] for e in history(sfn, arn)]
    assert types == [
        "ExecutionStarted", "TaskStateEntered", "ActivityScheduled", "ActivityStarted",
        "ActivitySucceeded", "TaskStateExited", "ExecutionSucceeded",
    ]
    started = [e for e in history(sfn, arn) if e["type"] == "ActivityStarted"][0]
    assert started["activityStartedEventDetails"]["workerName"] == "w1"

    # The token is spent.
    with pytest.raises(ClientError) as ei:
        sfn.send_task_success(taskToken=got["taskToken"], output="{}")
    assert error_code(ei) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


def test_activity_failure_is_caught(sfn):
    act = sfn.create_activity(name=unique("act"))["activityArn"]
    sm = create_machine(sfn, {
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Task", "Resource": act, "End": True,
                     "Catch": [{"ErrorEquals": ["Worker.Broke"], "ResultPath": "$.err", "Next": "Handled"}]},
            "Handled": {"Type": "Pass", "End": True},
        },
    })
    arn = sfn.start_execution(stateMachineArn=sm, input='{"a": 1}')["executionArn"]
    wait_event(sfn, arn, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="w")
    sfn.send_task_failure(taskToken=task["taskToken"], error="Worker.Broke", cause="the widget broke")
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED"
    assert json.loads(d["output"]) == {"a": 1, "err": {"Error": "Worker.Broke", "Cause": "the widget broke"}}
    failed = [e for e in history(sfn, arn) if e["type"] == "ActivityFailed"]
    assert failed and failed[0]["activityFailedEventDetails"] == {"error": "Worker.Broke", "cause": "the widget broke"}


def test_activity_heartbeat_timeout(sfn):
    act = sfn.create_activity(name=unique("act"))["activityArn"]
    sm = create_machine(sfn, activity_machine(act, HeartbeatSeconds=1, TimeoutSeconds=30))
    arn = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    wait_event(sfn, arn, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="sleepy")
    t0 = time.monotonic()
    d = wait_status(sfn, arn, timeout=10)
    assert d["status"] == "FAILED"
    assert d["error"] == "States.HeartbeatTimeout"
    assert time.monotonic() - t0 < 5
    assert any(e["type"] == "ActivityTimedOut" for e in history(sfn, arn))
    with pytest.raises(ClientError) as ei:
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert error_code(ei) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


def test_callback_wait_for_task_token(sfn):
    sm = create_machine(sfn, {
        "StartAt": "Ask",
        "States": {
            "Ask": {"Type": "Task", "Resource": CALLBACK,
                    "Parameters": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
                                   "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
                    "ResultPath": "$.answer", "End": True},
        },
    })
    arn = sfn.start_execution(stateMachineArn=sm, input='{"order": "o-9"}')["executionArn"]
    ev = wait_event(sfn, arn, "TaskScheduled")
    details = ev["taskScheduledEventDetails"]
    assert details["resourceType"] == "sqs"
    assert details["resource"] == "sendMessage.waitForTaskToken"
    params = json.loads(details["parameters"])
    assert params["MessageBody"]["order"] == "o-9"
    token = params["MessageBody"]["token"]
    assert isinstance(token, str) and token

    time.sleep(0.2)
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=token, output='{"approved": true}')
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED"
    assert json.loads(d["output"]) == {"order": "o-9", "answer": {"approved": True}}
    assert "TaskSucceeded" in [e["type"] for e in history(sfn, arn)]


SAGA4 = {
    "StartAt": "Reserve",
    "States": {
        "Reserve": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-reserve", "ResultPath": "$.reserve",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}], "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-charge", "ResultPath": "$.charge",
                   "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Release"}], "Next": "Pick"},
        "Pick": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-pick", "ResultPath": "$.pick",
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Refund"}], "Next": "Ship"},
        "Ship": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-ship", "ResultPath": "$.ship",
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Unpick"}], "Next": "Completed"},
        "Completed": {"Type": "Succeed"},
        "Unpick": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-unpick", "ResultPath": None,
                   "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 10}], "Next": "Refund"},
        "Refund": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-refund", "ResultPath": None,
                   "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 10}], "Next": "Release"},
        "Release": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-release", "ResultPath": None,
                    "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 10}], "Next": "Failed"},
        "Failed": {"Type": "Fail", "Error": "Saga.Compensated", "Cause": "a step failed and every completed step was undone"},
    },
}


def entered_states(events):
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def test_saga_with_builtin_handlers_succeeds(sfn):
    sm = create_machine(sfn, SAGA4)
    arn = sfn.start_execution(stateMachineArn=sm, input='{"orderId": "o-1"}')["executionArn"]
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert out["orderId"] == "o-1"
    for step in ("reserve", "charge", "pick", "ship"):
        assert out[step] == {"step": step, "ok": True}
    assert entered_states(history(sfn, arn)) == ["Reserve", "Charge", "Pick", "Ship", "Completed"]


def test_saga_with_builtin_handlers_compensates(sfn):
    sm = create_machine(sfn, SAGA4)
    arn = sfn.start_execution(stateMachineArn=sm, input='{"orderId": "o-2", "failAt": "ship"}')["executionArn"]
    d = wait_status(sfn, arn)
    assert d["status"] == "FAILED"
    assert d["error"] == "Saga.Compensated"
    assert d["cause"] == "a step failed and every completed step was undone"
    events = history(sfn, arn)
    assert entered_states(events) == ["Reserve", "Charge", "Pick", "Ship", "Unpick", "Refund", "Release", "Failed"]
    failed = [e for e in events if e["type"] == "LambdaFunctionFailed"]
    assert len(failed) == 1 and failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "Step.Failed"
    assert events[-1]["type"] == "ExecutionFailed"


def test_express_start_sync_execution(sfn):
    sm = create_machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}, "End": True}}},
                        type_="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=sm, input='{"n": 21}')
    assert r["status"] == "SUCCEEDED"
    assert json.loads(r["output"]) == {"doubled": 42}
    assert r["stateMachineArn"] == sm
    assert ":express:" in r["executionArn"]
    assert r["stopDate"] >= r["startDate"]

    failing = create_machine(sfn, {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E.Bad", "Cause": "no"}}}, type_="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=failing)
    assert r["status"] == "FAILED"
    assert r["error"] == "E.Bad" and r["cause"] == "no"

    # StartSyncExecution is for Express machines only.
    standard = create_machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    with pytest.raises(ClientError) as ei:
        sfn.start_sync_execution(stateMachineArn=standard)
    assert error_code(ei) == "StateMachineTypeNotSupported"
