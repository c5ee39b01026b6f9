"""Distributed Map through boto3: iterations run as child executions of the Map's
ItemProcessor (`<machine>/<label>`), the Map Run API answers in AWS's shapes
(ListMapRuns, DescribeMapRun, UpdateMapRun, ListExecutions by mapRunArn), and the
history shows MapRun events, not the children's states."""

import json

import botocore.exceptions
import pytest

from helpers import create_machine, history, wait_status


def distributed(processor_states, **extra):
    return {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "Label": "Orders", "ItemsPath": "$.items", "End": True,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "Check", "States": processor_states},
        **extra}}}


STATES = {
    "Check": {"Type": "Choice", "Choices": [
        {"Variable": "$.sku", "StringEquals": "bad", "Next": "Bad"}], "Default": "Line"},
    "Bad": {"Type": "Fail", "Error": "Line.Invalid", "Cause": "no such sku"},
    "Line": {"Type": "Pass", "Parameters": {"sku.$": "$.sku", "ctx.$": "$$.Execution.Name"},
             "End": True},
}


def run(sfn, machine, items):
    arn = sfn.start_execution(stateMachineArn=machine,
                              input=json.dumps({"items": items}))["executionArn"]
    return arn, wait_status(sfn, arn)


def test_iterations_are_child_executions_listed_by_their_map_run(sfn):
    machine = create_machine(sfn, distributed(STATES, MaxConcurrency=2, ToleratedFailurePercentage=50))
    arn, done = run(sfn, machine, [{"sku": "a"}, {"sku": "bad"}, {"sku": "c"}])
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert [o.get("sku") for o in out] == ["a", None, "c"]
    assert out[1]["Error"] == "Line.Invalid"

    runs = sfn.list_map_runs(executionArn=arn)["mapRuns"]
    assert len(runs) == 1
    run_arn = runs[0]["mapRunArn"]
    assert ":mapRun:" in run_arn and "/Orders:" in run_arn
    described = sfn.describe_map_run(mapRunArn=run_arn)
    assert described["status"] == "SUCCEEDED"
    assert described["maxConcurrency"] == 2
    assert described["toleratedFailurePercentage"] == 50
    counts = described["executionCounts"]
    assert (counts["total"], counts["succeeded"], counts["failed"]) == (3, 2, 1)

    kids = sfn.list_executions(mapRunArn=run_arn)["executions"]
    assert len(kids) == 3
    assert all(k["mapRunArn"] == run_arn for k in kids)
    assert all(k["stateMachineArn"].endswith(":stateMachine:" + machine.split(":")[-1] + "/Orders")
               for k in kids)
    # Each child is an execution of its own: $$.Execution is the child's.
    names = {k["name"] for k in kids}
    assert {o["ctx"] for o in out if "ctx" in o} <= names
    kid = sfn.describe_execution(executionArn=kids[0]["executionArn"])
    assert kid["mapRunArn"] == run_arn
    kid_machine = sfn.describe_state_machine_for_execution(executionArn=kids[0]["executionArn"])
    assert kid_machine["mapRunArn"] == run_arn and kid_machine["label"] == "Orders"

    types = [e["type"] for e in history(sfn, arn)]
    assert "MapRunStarted" in types and "MapRunSucceeded" in types
    assert "PassStateEntered" not in types


def test_too_many_failures_fail_the_map_run_and_the_state(sfn):
    machine = create_machine(sfn, distributed(STATES))
    arn, done = run(sfn, machine, [{"sku": "bad"}, {"sku": "a"}])
    assert done["status"] == "FAILED", done
    run_arn = sfn.list_map_runs(executionArn=arn)["mapRuns"][0]["mapRunArn"]
    assert sfn.describe_map_run(mapRunArn=run_arn)["status"] == "FAILED"
    assert "MapRunFailed" in [e["type"] for e in history(sfn, arn)]


def test_map_run_api_errors_are_aws_shaped(sfn):
    machine = create_machine(sfn, distributed(STATES))
    arn, _ = run(sfn, machine, [{"sku": "a"}])
    run_arn = sfn.list_map_runs(executionArn=arn)["mapRuns"][0]["mapRunArn"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sfn.update_map_run(mapRunArn=run_arn, maxConcurrency=5)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "not running" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sfn.describe_map_run(mapRunArn=run_arn[:-4] + "0000")
    assert e.value.response["Error"]["Code"] == "ResourceNotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sfn.list_executions(stateMachineArn=machine, mapRunArn=run_arn)
    assert e.value.response["Error"]["Code"] == "ValidationException"
