"""Executions: start, describe, list, idempotency, history and StopExecution."""

import json
import time

import pytest
from botocore.exceptions import ClientError

from helpers import create_machine, error_code, history, unique, wait_event, wait_status

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
TWO_PASSES = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Result": {"a": 1}, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Pass", "Result": 2, "ResultPath": "$.b", "End": True},
    },
}


def test_start_describe_execution(sfn):
    sm = create_machine(sfn, TWO_PASSES)
    name = unique("ex")
    started = sfn.start_execution(stateMachineArn=sm, name=name, input='{"x": 1}')
    arn = started["executionArn"]
    assert arn == sm.replace(":stateMachine:", ":execution:") + ":" + name
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED"
    assert d["name"] == name
    assert d["stateMachineArn"] == sm
    assert json.loads(d["input"]) == {"x": 1}
    assert json.loads(d["output"]) == {"x": 1, "a": {"a": 1}, "b": 2}
    assert d["stopDate"] >= d["startDate"]
    assert d["startDate"] == started["startDate"]

    meta = sfn.describe_execution(executionArn=arn, includedData="METADATA_ONLY")
    assert "input" not in meta and "output" not in meta
    assert meta["status"] == "SUCCEEDED"


def test_list_executions_status_filter_and_pagination(sfn):
    sm = create_machine(sfn, {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.wait", "BooleanEquals": True, "Next": "W"}], "Default": "P"},
        "W": {"Type": "Wait", "Seconds": 600, "End": True},
        "P": {"Type": "Pass", "End": True}}})
    done = [sfn.start_execution(stateMachineArn=sm, input='{"wait": false}')["executionArn"] for _ in range(5)]
    running = [sfn.start_execution(stateMachineArn=sm, input='{"wait": true}')["executionArn"] for _ in range(2)]
    for a in done:
        wait_status(sfn, a)

    succeeded = sfn.list_executions(stateMachineArn=sm, statusFilter="SUCCEEDED")["executions"]
    assert sorted(e["executionArn"] for e in succeeded) == sorted(done)
    assert all(e["status"] == "SUCCEEDED" for e in succeeded)
    run = sfn.list_executions(stateMachineArn=sm, statusFilter="RUNNING")["executions"]
    assert sorted(e["executionArn"] for e in run) == sorted(running)
    assert all("stopDate" not in e for e in run)
    assert sfn.list_executions(stateMachineArn=sm, statusFilter="FAILED")["executions"] == []

    seen, token, pages = [], None, 0
    while True:
        args = {"stateMachineArn": sm, "maxResults": 3}
        if token:
            args["nextToken"] = token
        page = sfn.list_executions(**args)
        assert len(page["executions"]) <= 3
        seen += [e["executionArn"] for e in page["executions"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3
    assert len(seen) == 7 and set(seen) == set(done + running)

    # Executions started while a client pages (orders arrive all the time) neither
    # repeat one on the next page nor push one off it: a page starts after the last.
    first = sfn.list_executions(stateMachineArn=sm, maxResults=3)
    late = [sfn.start_execution(stateMachineArn=sm, input='{"wait": false}')["executionArn"] for _ in range(2)]
    rest = sfn.list_executions(stateMachineArn=sm, maxResults=10, nextToken=first["nextToken"])
    paged = [e["executionArn"] for e in first["executions"] + rest["executions"]]
    assert sorted(paged) == sorted(done + running), "each execution once, none started after"
    assert "nextToken" not in rest
    for a in late:
        wait_status(sfn, a)
    # Newest first, as AWS lists them.
    dates = [e["startDate"] for e in sfn.list_executions(stateMachineArn=sm)["executions"]]
    assert dates == sorted(dates, reverse=True)

    for a in running:
        sfn.stop_execution(executionArn=a)


def test_start_execution_idempotency(sfn):
    sm = create_machine(sfn, WAIT)
    name = unique("same")
    first = sfn.start_execution(stateMachineArn=sm, name=name, input='{"k": 1}')
    again = sfn.start_execution(stateMachineArn=sm, name=name, input='{"k": 1}')
    assert again["executionArn"] == first["executionArn"]
    assert again["startDate"] == first["startDate"]
    with pytest.raises(ClientError) as ei:
        sfn.start_execution(stateMachineArn=sm, name=name, input='{"k": 2}')
    assert error_code(ei) == "ExecutionAlreadyExists"
    assert len(sfn.list_executions(stateMachineArn=sm)["executions"]) == 1

    # Once the execution has ended, the name stays taken, even for the same input.
    sfn.stop_execution(executionArn=first["executionArn"])
    with pytest.raises(ClientError) as ei:
        sfn.start_execution(stateMachineArn=sm, name=name, input='{"k": 1}')
    assert error_code(ei) == "ExecutionAlreadyExists"


def test_express_executions_may_share_a_name(sfn):
    """AWS manages no idempotency for Express workflows: starting one with a name
    already used starts another execution (its ARN differs by its id)."""
    sm = create_machine(sfn, PASS, type_="EXPRESS")
    name = unique("same")
    first = sfn.start_execution(stateMachineArn=sm, name=name, input="{}")["executionArn"]
    time.sleep(0.005)
    again = sfn.start_execution(stateMachineArn=sm, name=name, input='{"k": 2}')["executionArn"]
    assert first != again and ":express:" in again
    assert again.split(":")[-2] == name


def test_execution_history_paging_order_and_data(sfn):
    sm = create_machine(sfn, TWO_PASSES)
    arn = sfn.start_execution(stateMachineArn=sm, input='{"x": 1}')["executionArn"]
    wait_status(sfn, arn)

    full = sfn.get_execution_history(executionArn=arn)["events"]
    types = [e["type"] for e in full]
    assert types == [
        "ExecutionStarted",
        "PassStateEntered", "PassStateExited",
        "PassStateEntered", "PassStateExited",
        "ExecutionSucceeded",
    ]
    assert [e["id"] for e in full] == list(range(1, 7))
    assert "previousEventId" not in full[0] or full[0]["previousEventId"] == 0
    for prev, ev in zip(full, full[1:]):
        assert ev["previousEventId"] == prev["id"]
    assert json.loads(full[0]["executionStartedEventDetails"]["input"]) == {"x": 1}
    assert full[1]["stateEnteredEventDetails"]["name"] == "A"
    assert json.loads(full[-1]["executionSucceededEventDetails"]["output"]) == {"x": 1, "a": {"a": 1}, "b": 2}

    # Pages of 4 then 2.
    p1 = sfn.get_execution_history(executionArn=arn, maxResults=4)
    assert [e["id"] for e in p1["events"]] == [1, 2, 3, 4]
    assert p1.get("nextToken")
    p2 = sfn.get_execution_history(executionArn=arn, maxResults=4, nextToken=p1["nextToken"])
    assert [e["id"] for e in p2["events"]] == [5, 6]
    assert not p2.get("nextToken")

    rev = sfn.get_execution_history(executionArn=arn, reverseOrder=True)["events"]
    assert [e["id"] for e in rev] == [6, 5, 4, 3, 2, 1]
    rp = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=2)
    assert [e["id"] for e in rp["events"]] == [6, 5]
    rp2 = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=2, nextToken=rp["nextToken"])
    assert [e["id"] for e in rp2["events"]] == [4, 3]

    lean = sfn.get_execution_history(executionArn=arn, includeExecutionData=False)["events"]
    assert [e["type"] for e in lean] == types
    assert "input" not in lean[0]["executionStartedEventDetails"]
    assert "input" not in lean[1]["stateEnteredEventDetails"]
    assert "output" not in lean[2]["stateExitedEventDetails"]
    assert "output" not in lean[-1].get("executionSucceededEventDetails", {})
    assert lean[1]["stateEnteredEventDetails"]["name"] == "A"


def test_stop_execution(sfn):
    sm = create_machine(sfn, WAIT)
    arn = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    wait_event(sfn, arn, "WaitStateEntered")
    stop = sfn.stop_execution(executionArn=arn, error="Ops.Stopped", cause="stopped by the test")
    d = sfn.describe_execution(executionArn=arn)
    assert d["status"] == "ABORTED"
    assert d["error"] == "Ops.Stopped"
    assert d["cause"] == "stopped by the test"
    # AWS answers StopExecution with the execution's stopDate. oms answers with the time
    # after its commit, which can be a few ms later (reported); allow for that, not more.
    assert abs((stop["stopDate"] - d["stopDate"]).total_seconds()) < 1.0
    last = history(sfn, arn)[-1]
    assert last["type"] == "ExecutionAborted"
    assert last["executionAbortedEventDetails"] == {"error": "Ops.Stopped", "cause": "stopped by the test"}
    # A stopped execution stays stopped (no Wait completes it later).
    time.sleep(0.2)
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
