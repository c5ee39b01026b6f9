"""Mocked service integrations in Step Functions Local's format: `oms up` started with
SFN_MOCK_CONFIG answers the Task states a test case names, for executions started on
`stateMachineArn#TestCase`; every other state runs for real. The mock file is
tests/api/mocks/order-saga.json, as a team would keep theirs (docs/testing.md)."""

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import Server
from helpers import create_machine, history, order_body, wait_status

MOCKS = Path(__file__).parent / "mocks" / "order-saga.json"
LAMBDA = "arn:aws:states:::lambda:invoke"


@pytest.fixture
def mocked(tmp_path, oms_config):
    data = tmp_path / "mocked"
    data.mkdir()
    server = Server(data, oms_config, env={"SFN_MOCK_CONFIG": str(MOCKS)})
    try:
        yield server.start()
    finally:
        server.kill()


def demo_machine(sfn):
    return create_machine(sfn, {"StartAt": "Lookup", "States": {"Lookup": {
        "Type": "Task", "Resource": LAMBDA,
        "Parameters": {"FunctionName": "nowhere-at-all", "Payload.$": "$"},
        "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"],
                   "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1}],
        "OutputPath": "$.Payload", "End": True}}}, name="mock-demo")


def task_events(events, kinds=("TaskSucceeded", "TaskFailed")):
    return [(e["type"], e.get("taskFailedEventDetails", {}).get("error")) for e in events
            if e["type"] in kinds]


def test_a_test_case_answers_its_states_and_the_history_is_a_real_runs(mocked):
    sfn = mocked.client()
    sm = demo_machine(sfn)
    arn = sfn.start_execution(stateMachineArn=sm + "#HappyPath", input="{}")["executionArn"]
    assert arn == sm.replace(":stateMachine:", ":execution:") + ":" + arn.rsplit(":", 1)[1]
    done = wait_status(sfn, arn)
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == {"found": True}
    kinds = [e["type"] for e in history(sfn, arn)]
    assert kinds == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted",
                     "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"], kinds


def test_answers_follow_the_invocation_number_through_retries(mocked):
    sfn = mocked.client()
    sm = demo_machine(sfn)
    arn = sfn.start_execution(stateMachineArn=sm + "#RetryPath", input="{}")["executionArn"]
    done = wait_status(sfn, arn)
    assert json.loads(done["output"]) == {"found": "after retries"}
    assert task_events(history(sfn, arn)) == [
        ("TaskFailed", "Lambda.TooManyRequestsException"),
        ("TaskFailed", "Lambda.TooManyRequestsException"),
        ("TaskSucceeded", None)]


def test_a_test_case_that_runs_out_of_answers_fails_the_execution_saying_why(mocked):
    sfn = mocked.client()
    sm = demo_machine(sfn)
    arn = sfn.start_execution(stateMachineArn=sm + "#Exhausted", input="{}")["executionArn"]
    done = wait_status(sfn, arn)
    assert done["status"] == "FAILED"
    assert done["error"] == "States.Runtime"
    assert "no answer for invocation 1" in done["cause"]


def test_an_unknown_test_case_is_refused(mocked):
    sfn = mocked.client()
    sm = demo_machine(sfn)
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=sm + "#NoSuchCase", input="{}")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "NoSuchCase" in e.value.response["Error"]["Message"]


def order_saga(sfn):
    return next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
                if m["name"] == "order-saga")


def test_the_order_saga_compensates_a_mocked_decline(mocked):
    """The example in docs/testing.md: ChargePayment is mocked, everything else (the
    activities, the compensations) runs for real."""
    sfn = mocked.client()
    body = order_body()
    arn = sfn.start_execution(stateMachineArn=order_saga(sfn) + "#ChargeDeclined",
                              name=body["order_id"], input=json.dumps(body))["executionArn"]
    done = wait_status(sfn, arn, timeout=30)
    assert done["status"] == "FAILED" and done["error"] == "Payment.Declined", done
    events = history(sfn, arn)
    # ChargePayment runs in the saga's Express child (order-prepare), which ran the
    # same test case: the child failed with the mocked decline, the saga's Prepare
    # task with States.TaskFailed and the child's description as its cause.
    failed = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert any(f["error"] == "States.TaskFailed" and "Payment.Declined" in f.get("cause", "")
               for f in failed), failed
    entered = [e["stateEnteredEventDetails"]["name"] for e in events
               if e["type"].endswith("StateEntered")]
    assert "ReleaseInventory" in entered and "MarkCancelled" in entered, entered
