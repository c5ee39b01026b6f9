"""Error codes for bad calls, as boto3 sees them."""

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from helpers import ROLE, create_machine, error_code, unique

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def expect(code, fn, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    assert error_code(ei) == code, ei.value.response
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ei.value.response["Error"]["Message"], "error without a message"
    return ei.value.response["Error"]["Message"]


def test_invalid_arn(sfn):
    expect("InvalidArn", sfn.describe_state_machine, stateMachineArn="not-an-arn")
    expect("InvalidArn", sfn.describe_execution, executionArn="arn:aws:states:us-east-1:123456789012:stateMachine:x")
    expect("InvalidArn", sfn.start_execution, stateMachineArn="arn:aws:lambda:us-east-1:123456789012:function:f")


def test_does_not_exist(sfn):
    account = create_machine(sfn, PASS).split(":")[4]
    missing_sm = f"arn:aws:states:us-east-1:{account}:stateMachine:{unique('nope')}"
    expect("StateMachineDoesNotExist", sfn.describe_state_machine, stateMachineArn=missing_sm)
    expect("StateMachineDoesNotExist", sfn.start_execution, stateMachineArn=missing_sm)
    missing_ex = f"arn:aws:states:us-east-1:{account}:execution:{unique('nope')}:{unique('e')}"
    expect("ExecutionDoesNotExist", sfn.describe_execution, executionArn=missing_ex)
    expect("ExecutionDoesNotExist", sfn.get_execution_history, executionArn=missing_ex)
    expect("ExecutionDoesNotExist", sfn.stop_execution, executionArn=missing_ex)
    missing_act = f"arn:aws:states:us-east-1:{account}:activity:{unique('nope')}"
    expect("ActivityDoesNotExist", sfn.describe_activity, activityArn=missing_act)


def test_wrong_task_token(sfn):
    for call in (
        lambda: sfn.send_task_success(taskToken="not-a-token-we-issued", output="{}"),
        lambda: sfn.send_task_failure(taskToken="not-a-token-we-issued", error="E"),
        lambda: sfn.send_task_heartbeat(taskToken="not-a-token-we-issued"),
    ):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_code(ei) in ("InvalidToken", "TaskDoesNotExist"), ei.value.response


def test_bad_next_token(sfn):
    sm = create_machine(sfn, PASS)
    expect("InvalidToken", sfn.list_executions, stateMachineArn=sm, nextToken="garbage")


def test_invalid_execution_input(sfn):
    sm = create_machine(sfn, PASS)
    msg = expect("InvalidExecutionInput", sfn.start_execution, stateMachineArn=sm, input="{not json")
    assert "Invalid State Machine Execution Input" in msg
    assert sfn.list_executions(stateMachineArn=sm)["executions"] == []


def test_invalid_output(sfn):
    # A well-formed token (a malformed one is InvalidToken before the output is read).
    token = "00000000-0000-4000-8000-000000000000"
    expect("InvalidOutput", sfn.send_task_success, taskToken=token, output="{not json")


def test_a_malformed_token_is_invalid_and_an_unknown_one_does_not_exist(sfn):
    expect("InvalidToken", sfn.send_task_success, taskToken="bogus", output="{}")
    expect("TaskDoesNotExist", sfn.send_task_success, taskToken="00000000-0000-4000-8000-000000000000",
           output="{}")


def test_invalid_name(sfn):
    expect("InvalidName", sfn.create_state_machine, name="has space", definition=json.dumps(PASS), roleArn=ROLE)
    expect("InvalidName", sfn.create_state_machine, name="x" * 81, definition=json.dumps(PASS), roleArn=ROLE)
    expect("InvalidName", sfn.create_activity, name="bad/name")
    sm = create_machine(sfn, PASS)
    expect("InvalidName", sfn.start_execution, stateMachineArn=sm, name="a:b")


def raw_post(endpoint, target, body):
    req = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"{}")


def test_missing_required_field(sfn, server):
    # boto3 refuses to send it, so send it raw, as another SDK might.
    with pytest.raises(ParamValidationError):
        sfn.start_execution()
    status, headers, body = raw_post(server.endpoint, "AWSStepFunctions.StartExecution", {"input": "{}"})
    assert status == 400
    assert body["__type"].split("#")[-1] == "ValidationException", body
    assert "stateMachineArn" in body.get("message", body.get("Message", ""))
    status, _, body = raw_post(server.endpoint, "AWSStepFunctions.CreateStateMachine", {"name": unique("x"), "roleArn": ROLE})
    assert status == 400 and body["__type"].split("#")[-1] == "ValidationException", body


def test_unknown_operation(server):
    status, headers, body = raw_post(server.endpoint, "AWSStepFunctions.LaunchRockets", {})
    assert status == 400
    assert body["__type"].split("#")[-1] == "UnknownOperationException", body
    assert headers.get("x-amzn-errortype", "").split(":")[0] == "UnknownOperationException"
    status, _, body = raw_post(server.endpoint, "SomethingElse.ListStateMachines", {})
    assert status == 400 and body["__type"].split("#")[-1] == "UnknownOperationException", body
