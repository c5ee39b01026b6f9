"""Nested executions: a Task with `arn:aws:states:::states:startExecution[.sync|.sync:2|
.waitForTaskToken]` starts an execution of another state machine on the same oms,
with the output shapes AWS gives, its error names, stopping, and a restart mid-wait."""

import json
import time

from helpers import create_machine, history, unique, wait_event, wait_executions, wait_status

START = "arn:aws:states:::states:startExecution"


def child_machines(sfn):
    """A child that succeeds (echoing its input), one that fails, one that waits."""
    ok = create_machine(sfn, {"StartAt": "Echo", "States": {
        "Echo": {"Type": "Pass", "Parameters": {"echo.$": "$", "from": "child"}, "End": True}}})
    fails = create_machine(sfn, {"StartAt": "No", "States": {
        "No": {"Type": "Fail", "Error": "Child.Broke", "Cause": "on purpose"}}})
    waits = create_machine(sfn, {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": {"waited": True}, "End": True}}})
    return ok, fails, waits


def parent(sfn, resource, child, extra=None, catch=False):
    task = {"Type": "Task", "Resource": resource,
            "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$.n"}, **(extra or {})},
            "End": True}
    if catch:
        task["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]
        task.pop("End")
        task["Next"] = "Done"
    states = {"Start": task}
    if catch:
        states.update({"Done": {"Type": "Pass", "End": True}, "Caught": {"Type": "Pass", "End": True}})
    return create_machine(sfn, {"StartAt": "Start", "States": states})


def run(sfn, machine, payload):
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))["executionArn"]
    return arn, wait_status(sfn, arn)


def test_request_response_returns_the_start_and_the_child_runs(sfn):
    ok, _, _ = child_machines(sfn)
    arn, done = run(sfn, parent(sfn, START, ok), {"n": 1})
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert out["ExecutionArn"].startswith(ok.replace(":stateMachine:", ":execution:") + ":")
    assert isinstance(out["StartDate"], int) and out["StartDate"] > 1_600_000_000_000
    assert out["SdkHttpMetadata"]["HttpStatusCode"] == 200
    assert out["SdkResponseMetadata"]["RequestId"]
    child = wait_status(sfn, out["ExecutionArn"])
    assert child["status"] == "SUCCEEDED"
    assert json.loads(child["input"]) == {"n": 1}
    scheduled = [e for e in history(sfn, arn) if e["type"] == "TaskScheduled"][0]
    details = scheduled["taskScheduledEventDetails"]
    assert (details["resourceType"], details["resource"]) == ("states", "startExecution")


def test_sync_gives_the_output_as_a_string_and_sync2_as_json(sfn):
    ok, _, _ = child_machines(sfn)
    _, done = run(sfn, parent(sfn, START + ".sync", ok), {"n": 2})
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert out["Status"] == "SUCCEEDED"
    assert json.loads(out["Output"]) == {"echo": {"n": 2}, "from": "child"}
    assert json.loads(out["Input"]) == {"n": 2}
    assert out["StopDate"] >= out["StartDate"]

    _, done2 = run(sfn, parent(sfn, START + ".sync:2", ok), {"n": 3})
    out2 = json.loads(done2["output"])
    assert out2["Output"] == {"echo": {"n": 3}, "from": "child"}
    assert out2["Input"] == {"n": 3}
    assert out2["OutputDetails"] == {"Included": True}


def test_a_failed_child_fails_the_task_with_states_task_failed(sfn):
    _, fails, _ = child_machines(sfn)
    arn, done = run(sfn, parent(sfn, START + ".sync:2", fails, catch=True), {"n": 4})
    assert done["status"] == "SUCCEEDED", done
    failed = [e for e in history(sfn, arn) if e["type"] == "TaskFailed"][0]["taskFailedEventDetails"]
    assert failed["error"] == "States.TaskFailed"
    cause = json.loads(failed["cause"])
    assert (cause["Status"], cause["Error"], cause["Cause"]) == ("FAILED", "Child.Broke", "on purpose")


def test_a_missing_state_machine_is_named_as_aws_names_it(sfn):
    ok, _, _ = child_machines(sfn)
    missing = ok + "-gone"
    arn, done = run(sfn, parent(sfn, START, missing, catch=True), {"n": 5})
    assert done["status"] == "SUCCEEDED", done
    failed = [e for e in history(sfn, arn) if e["type"] == "TaskFailed"][0]["taskFailedEventDetails"]
    assert failed["error"] == "StepFunctions.StateMachineDoesNotExistException"
    assert "Error Code: StateMachineDoesNotExist" in failed["cause"]


def test_wait_for_task_token_hands_the_token_to_the_child(sfn):
    ok, _, _ = child_machines(sfn)
    m = create_machine(sfn, {"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": START + ".waitForTaskToken",
        "Parameters": {"StateMachineArn": ok, "Input": {"token.$": "$$.Task.Token"}},
        "End": True}}})
    arn = sfn.start_execution(stateMachineArn=m, input="{}")["executionArn"]
    wait_event(sfn, arn, "TaskStarted")
    children = wait_executions(sfn, stateMachineArn=ok)
    token = None
    for c in children:
        got = json.loads(sfn.describe_execution(executionArn=c["executionArn"])["input"])
        token = got.get("token") or token
    assert token, children
    sfn.send_task_success(taskToken=token, output='{"answer": 42}')
    done = wait_status(sfn, arn)
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"answer": 42}


def test_stopping_a_parent_stops_its_sync_child(sfn):
    _, _, waits = child_machines(sfn)
    m = create_machine(sfn, {"StartAt": "Start", "States": {"Start": {
        "Type": "Task", "Resource": START + ".sync:2", "Parameters": {
            "StateMachineArn": waits, "Name": unique("child")}, "End": True}}})
    arn = sfn.start_execution(stateMachineArn=m, input="{}")["executionArn"]
    wait_event(sfn, arn, "TaskStarted")
    child = wait_executions(sfn, stateMachineArn=waits, statusFilter="RUNNING")
    assert len(child) == 1, child
    sfn.stop_execution(executionArn=arn, error="Test.Stop")
    assert wait_status(sfn, arn)["status"] == "ABORTED"
    stopped = wait_status(sfn, child[0]["executionArn"], timeout=5)
    assert stopped["status"] == "ABORTED", stopped


def test_a_parent_resumed_after_kill_9_waits_for_the_same_child(fresh_server, tmp_path):
    server = fresh_server(tmp_path / "nested-crash").start()
    sfn = server.client()
    _, _, waits = child_machines(sfn)
    m = parent(sfn, START + ".sync:2", waits)
    arn = sfn.start_execution(stateMachineArn=m, input='{"n": 6}')["executionArn"]
    wait_event(sfn, arn, "TaskStarted")
    server.kill()
    time.sleep(0.5)
    server.start()
    sfn = server.client()
    done = wait_status(sfn, arn, timeout=20)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"])["Output"] == {"waited": True}
    children = sfn.list_executions(stateMachineArn=waits)["executions"]
    assert len(children) == 1, f"the resumed parent started another child: {children}"
