"""TestState through boto3: what only the API shows (JSON text in the answer, error
codes and AWS's messages). The engine's behaviour is covered case by case in
asl/tests/teststate_cases/."""

import json

import pytest
from botocore.exceptions import ClientError

from helpers import error_code

LAMBDA = {
    "Type": "Task",
    "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "f", "Payload.$": "$"},
    "ResultSelector": {"body.$": "$.Payload"},
    "End": True,
}
START = {
    "Type": "Task",
    "Resource": "arn:aws:states:::states:startExecution",
    "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:111111111111:stateMachine:Target"},
    "End": True,
}
MAP_WITH_READER = {
    "Type": "Map",
    "ItemReader": {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "CSVDelimiter": "SEMICOLON"},
        "Parameters": {"Bucket": "b", "Key": "k.csv"},
    },
    "ToleratedFailureCount": 0,
    "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "End": True}},
    },
    "Catch": [{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Next": "TooMany"}],
    "End": True,
}


def refused(code, fn, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    assert error_code(ei) == code, ei.value.response
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return ei.value.response["Error"]["Message"]


def test_mocked_task_reports_each_stage_as_json_text(sfn):
    out = sfn.test_state(
        definition=json.dumps(LAMBDA),
        input=json.dumps({"n": 1}),
        inspectionLevel="DEBUG",
        mock={"result": json.dumps({"StatusCode": 200, "Payload": {"doubled": 2}})},
    )
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"]) == {"body": {"doubled": 2}}
    data = out["inspectionData"]
    assert json.loads(data["afterParameters"]) == {"FunctionName": "f", "Payload": {"n": 1}}
    assert json.loads(data["result"]) == {"StatusCode": 200, "Payload": {"doubled": 2}}


def test_strict_mock_is_held_to_the_response_shape(sfn):
    msg = refused(
        "ValidationException",
        sfn.test_state,
        definition=json.dumps(LAMBDA),
        mock={"result": json.dumps({"StatusCode": "200"})},
    )
    assert msg == "Mock result schema validation error: Field 'StatusCode' must be a number"
    msg = refused("ValidationException", sfn.test_state, definition=json.dumps(START), mock={"result": "{}"})
    assert msg == "Mock result schema validation error: Required field 'ExecutionArn' is missing"


def test_present_and_none_modes_relax_the_check(sfn):
    present = sfn.test_state(
        definition=json.dumps(START), mock={"result": "{}", "fieldValidationMode": "PRESENT"}
    )
    assert present["status"] == "SUCCEEDED" and json.loads(present["output"]) == {}
    none = sfn.test_state(
        definition=json.dumps(START),
        mock={"result": json.dumps({"StartDate": 5}), "fieldValidationMode": "NONE"},
    )
    assert json.loads(none["output"]) == {"StartDate": 5}


def test_mock_rules_in_aws_words(sfn):
    both = {"result": "{}", "errorOutput": {"error": "E"}}
    assert (
        refused("ValidationException", sfn.test_state, definition=json.dumps(LAMBDA), mock=both)
        == "A test mock should have only one of the following fields: [result, errorOutput]."
    )
    assert (
        refused(
            "ValidationException",
            sfn.test_state,
            definition=json.dumps(LAMBDA),
            mock={"result": "{}"},
            revealSecrets=True,
        )
        == "TestState does not support RevealSecrets when a mock is specified."
    )
    assert (
        refused("InvalidDefinition", sfn.test_state, definition=json.dumps(MAP_WITH_READER))
        == "TestState API does not support Map or Parallel states. Supported state types include: [Task, Wait, Pass, Succeed, Fail, Choice]"
    )


def test_map_reads_item_reader_data_and_holds_failures_to_its_tolerance(sfn):
    config = {"mapItemReaderData": "id;qty\na;1\nb;2\n"}
    ok = sfn.test_state(
        definition=json.dumps(MAP_WITH_READER),
        inspectionLevel="DEBUG",
        mock={"result": json.dumps(["done", "done"])},
        stateConfiguration=config,
    )
    assert ok["status"] == "SUCCEEDED", ok
    assert json.loads(ok["inspectionData"]["afterItemsPath"]) == [{"id": "a", "qty": "1"}, {"id": "b", "qty": "2"}]
    assert ok["inspectionData"]["toleratedFailureCount"] == 0
    caught = sfn.test_state(
        definition=json.dumps(MAP_WITH_READER),
        mock={"result": json.dumps(["done", "done"])},
        stateConfiguration={**config, "mapIterationFailureCount": 1},
    )
    assert caught["status"] == "CAUGHT_ERROR", caught
    assert caught["nextState"] == "TooMany"
    assert caught["error"] == "States.ExceedToleratedFailureThreshold"
    assert "inspectionData" not in caught  # INFO: AWS reports none


def test_task_without_mock_is_still_refused(sfn):
    msg = refused("ValidationException", sfn.test_state, definition=json.dumps(LAMBDA))
    assert "give a mock" in msg


def test_jsonata_task_reports_after_arguments_as_json_text(sfn):
    state = {
        "Type": "Task",
        "QueryLanguage": "JSONata",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Arguments": {"FunctionName": "f", "Payload": "{% $states.input %}"},
        "Output": "{% $states.result.Payload %}",
        "End": True,
    }
    out = sfn.test_state(
        definition=json.dumps(state),
        input=json.dumps({"n": 1}),
        inspectionLevel="DEBUG",
        mock={"result": json.dumps({"StatusCode": 200, "Payload": {"doubled": 2}})},
    )
    assert out["status"] == "SUCCEEDED", out
    assert json.loads(out["output"]) == {"doubled": 2}
    data = out["inspectionData"]
    assert json.loads(data["afterArguments"]) == {"FunctionName": "f", "Payload": {"n": 1}}
    # AWS leaves the JSONPath stages out for a JSONata state.
    assert "afterParameters" not in data and "afterResultPath" not in data
