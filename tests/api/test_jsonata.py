"""JSONata state machines through the Step Functions API, with boto3: they validate,
run, record their history (EvaluationFailed included), name the variables each state
reads, are redriven, and refuse a syntax error at creation."""

import json

import pytest
from botocore.exceptions import ClientError

from helpers import create_machine, error_code, history, unique, wait_event, wait_status

# An order's lines priced by an activity, totals computed in JSONata, a variable
# carried across states, and a catcher that shapes the error.
PRICED = {
    "QueryLanguage": "JSONata",
    "StartAt": "Init",
    "States": {
        "Init": {"Type": "Pass", "Assign": {"order": "{% $states.input.id %}"}, "Next": "Lines"},
        "Lines": {
            "Type": "Map",
            "Items": "{% $states.input.lines %}",
            "ItemSelector": {"sku": "{% $states.context.Map.Item.Value.sku %}",
                             "qty": "{% $states.context.Map.Item.Value.qty %}"},
            "ItemProcessor": {"StartAt": "Line", "States": {
                "Line": {"Type": "Pass", "Output": "{% $states.input.qty * 2.5 %}", "End": True}}},
            "Assign": {"total": "{% $sum($states.result) %}"},
            "Output": {"lines": "{% $count($states.result) %}"},
            "Next": "Approve",
        },
        "Approve": {
            "Type": "Task",
            "Resource": "ACTIVITY",
            "Arguments": {"order": "{% $order %}", "total": "{% $total %}"},
            "Output": {"order": "{% $order %}", "total": "{% $total %}",
                       "approved": "{% $states.result.ok %}", "lines": "{% $states.input.lines %}"},
            "Catch": [{"ErrorEquals": ["Rejected"], "Next": "Refused",
                       "Output": {"order": "{% $order %}", "why": "{% $states.errorOutput.Cause %}"}}],
            "End": True,
        },
        "Refused": {"Type": "Fail", "Error": "OrderRefused", "Cause": "{% $states.input.why %}"},
    },
}


def priced(sfn):
    act = sfn.create_activity(name=unique("act"))["activityArn"]
    definition = json.loads(json.dumps(PRICED).replace('"ACTIVITY"', json.dumps(act)))
    return act, create_machine(sfn, definition)


def test_a_jsonata_machine_runs_and_names_its_variables(sfn):
    act, sm = priced(sfn)
    refs = sfn.describe_state_machine(stateMachineArn=sm)["variableReferences"]
    assert refs == {"Approve": ["order", "total"]}

    arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps(
        {"id": "o-7", "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 4}]}))["executionArn"]
    wait_event(sfn, arn, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="w")
    assert json.loads(task["input"]) == {"order": "o-7", "total": 15}
    sfn.send_task_success(taskToken=task["taskToken"], output='{"ok": true}')
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"order": "o-7", "total": 15, "approved": True, "lines": 2}

    events = history(sfn, arn)
    scheduled = [e for e in events if e["type"] == "ActivityScheduled"][0]
    assert json.loads(scheduled["activityScheduledEventDetails"]["input"]) == {"order": "o-7", "total": 15}
    exited = [e for e in events if e["type"] == "MapStateExited"][0]
    assert json.loads(exited["stateExitedEventDetails"]["output"]) == {"lines": 2}


def test_a_caught_error_is_shaped_by_the_catchers_output(sfn):
    act, sm = priced(sfn)
    arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps(
        {"id": "o-8", "lines": [{"sku": "A", "qty": 1}]}))["executionArn"]
    wait_event(sfn, arn, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="w")
    sfn.send_task_failure(taskToken=task["taskToken"], error="Rejected", cause="over budget")
    d = wait_status(sfn, arn)
    assert (d["status"], d["error"], d["cause"]) == ("FAILED", "OrderRefused", "over budget")


def test_a_failing_expression_records_evaluation_failed_and_is_redriven(sfn):
    """The expression fails for want of a variable the activity's result provides on
    the second attempt: the redriven execution runs the failed state again."""
    act = sfn.create_activity(name=unique("act"))["activityArn"]
    sm = create_machine(sfn, {
        "QueryLanguage": "JSONata",
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Task", "Resource": act,
                     "Output": {"id": "{% $states.result.id %}"}, "End": True},
        },
    })
    arn = sfn.start_execution(stateMachineArn=sm, input="{}")["executionArn"]
    wait_event(sfn, arn, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="w")
    sfn.send_task_success(taskToken=task["taskToken"], output='{"no_id": 1}')
    d = wait_status(sfn, arn)
    assert d["status"] == "FAILED"
    assert d["error"] == "States.QueryEvaluationError"
    assert "'$states.result.id' specified for the field 'Output/id' returned nothing" in d["cause"]
    failed = [e for e in history(sfn, arn) if e["type"] == "EvaluationFailed"]
    assert len(failed) == 1
    details = failed[0]["evaluationFailedEventDetails"]
    assert (details["state"], details["location"], details["error"]) == (
        "Work", "Output/id", "States.QueryEvaluationError")

    sfn.redrive_execution(executionArn=arn)
    task = sfn.get_activity_task(activityArn=act, workerName="w2")
    assert task.get("taskToken"), "the failed Task did not run again"
    sfn.send_task_success(taskToken=task["taskToken"], output='{"id": "x-1"}')
    d = wait_status(sfn, arn)
    assert d["status"] == "SUCCEEDED"
    assert json.loads(d["output"]) == {"id": "x-1"}


def test_a_syntax_error_is_refused_at_creation(sfn):
    bad = {"QueryLanguage": "JSONata", "StartAt": "P",
           "States": {"P": {"Type": "Pass", "Output": {"x": "{% [1, 2 %}"}, "End": True}}}
    r = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert r["result"] == "FAIL"
    assert r["diagnostics"][0]["location"] == "/States/P/Output/x"
    assert "[1, 2" in r["diagnostics"][0]["message"]
    with pytest.raises(ClientError) as e:
        create_machine(sfn, bad)
    assert error_code(e) == "InvalidDefinition"
