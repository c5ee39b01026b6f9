"""State machine CRUD, definitions and validation."""

import json

import pytest
from botocore.exceptions import ClientError

from helpers import ROLE, create_machine, error_code, unique

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
PASS2 = {"StartAt": "Q", "States": {"Q": {"Type": "Pass", "Result": {"v": 2}, "End": True}}}


def test_create_describe_list_update_delete(sfn):
    name = unique("crud")
    created = sfn.create_state_machine(name=name, definition=json.dumps(PASS), roleArn=ROLE)
    arn = created["stateMachineArn"]
    assert arn == f"arn:aws:states:us-east-1:{arn.split(':')[4]}:stateMachine:{name}"
    assert created["creationDate"] is not None

    d = sfn.describe_state_machine(stateMachineArn=arn)
    assert d["name"] == name
    assert d["type"] == "STANDARD"
    assert d["status"] == "ACTIVE"
    assert json.loads(d["definition"]) == PASS
    assert d["roleArn"] == ROLE

    listed = {m["stateMachineArn"]: m for m in sfn.list_state_machines()["stateMachines"]}
    assert arn in listed and listed[arn]["name"] == name and listed[arn]["type"] == "STANDARD"

    upd = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(PASS2))
    assert upd["updateDate"] >= created["creationDate"]
    d2 = sfn.describe_state_machine(stateMachineArn=arn)
    assert json.loads(d2["definition"]) == PASS2
    if d.get("revisionId") and d2.get("revisionId"):
        assert d2["revisionId"] != d["revisionId"]

    # An execution started after the update runs the new definition.
    e = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    from helpers import wait_status

    assert json.loads(wait_status(sfn, e)["output"]) == {"v": 2}

    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as ei:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert error_code(ei) == "StateMachineDoesNotExist"
    # Nor does it start, though it was started (and its row read) before.
    with pytest.raises(ClientError) as ei:
        sfn.start_execution(stateMachineArn=arn)
    assert error_code(ei) == "StateMachineDoesNotExist"
    assert arn not in {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}


def test_create_is_idempotent_for_same_definition(sfn):
    name = unique("idem")
    a = sfn.create_state_machine(name=name, definition=json.dumps(PASS), roleArn=ROLE)
    b = sfn.create_state_machine(name=name, definition=json.dumps(PASS), roleArn=ROLE)
    assert a["stateMachineArn"] == b["stateMachineArn"]
    assert a["creationDate"] == b["creationDate"]
    with pytest.raises(ClientError) as ei:
        sfn.create_state_machine(name=name, definition=json.dumps(PASS2), roleArn=ROLE)
    assert error_code(ei) == "StateMachineAlreadyExists"


def test_create_express_machine_type(sfn):
    arn = create_machine(sfn, PASS, type_="EXPRESS")
    assert sfn.describe_state_machine(stateMachineArn=arn)["type"] == "EXPRESS"


def test_invalid_definition_message(sfn):
    bad = {"StartAt": "Missing", "States": {"P": {"Type": "Pass", "End": True}}}
    with pytest.raises(ClientError) as ei:
        sfn.create_state_machine(name=unique("bad"), definition=json.dumps(bad), roleArn=ROLE)
    assert error_code(ei) == "InvalidDefinition"
    msg = ei.value.response["Error"]["Message"]
    assert msg.startswith("Invalid State Machine Definition: ")
    assert "MISSING_TRANSITION_TARGET" in msg, msg

    with pytest.raises(ClientError) as ei:
        sfn.create_state_machine(name=unique("bad"), definition="{not json", roleArn=ROLE)
    assert error_code(ei) == "InvalidDefinition"
    assert "INVALID_JSON_DESCRIPTION" in ei.value.response["Error"]["Message"]


def test_validate_definition_ok_and_fail(sfn):
    ok = sfn.validate_state_machine_definition(definition=json.dumps(PASS))
    assert ok["result"] == "OK"
    assert ok["diagnostics"] == []

    bad = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Nowhere"}}}
    fail = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert fail["result"] == "FAIL"
    diags = fail["diagnostics"]
    assert diags, fail
    d = diags[0]
    assert d["severity"] == "ERROR"
    assert d["code"] == "MISSING_TRANSITION_TARGET"
    assert "Nowhere" in d["message"]
    assert d.get("location") == "/States/P/Next"
