"""Durability: `kill -9` the server mid-flight, restart it on the same data dir, and
every execution ends as it would have without the crash."""

import json
import time

from helpers import create_machine, history, unique, wait_event, wait_status

CALLBACK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"


def consecutive(events):
    ids = [e["id"] for e in events]
    assert ids == list(range(1, len(ids) + 1)), ids
    for prev, ev in zip(events, events[1:]):
        assert ev["previousEventId"] == prev["id"] or ev["type"] == "ExecutionRedriven"


def test_kill_9_and_restart(fresh_server, tmp_path):
    data = tmp_path / "crash-data"
    server = fresh_server(data).start()
    sfn = server.client()

    wait3 = create_machine(sfn, {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "waited", "ResultPath": "$.r", "End": True}}})
    wait1 = create_machine(sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}})
    act = sfn.create_activity(name=unique("crash-act"))["activityArn"]
    activity = create_machine(sfn, {"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": act, "ResultPath": "$.work", "Next": "After"},
        "After": {"Type": "Pass", "End": True}}})
    callback = create_machine(sfn, {"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": CALLBACK,
                "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
                "ResultPath": "$.answer", "End": True}}})
    quick = create_machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})

    t_start = time.monotonic()
    ex_wait3 = sfn.start_execution(stateMachineArn=wait3, input='{"case": "a"}')["executionArn"]
    ex_wait1 = sfn.start_execution(stateMachineArn=wait1, input='{"case": "a2"}')["executionArn"]
    ex_act = sfn.start_execution(stateMachineArn=activity, input='{"case": "b"}')["executionArn"]
    ex_cb = sfn.start_execution(stateMachineArn=callback, input='{"case": "c"}')["executionArn"]
    ex_quick = sfn.start_execution(stateMachineArn=quick, input='{"case": "d"}')["executionArn"]

    wait_event(sfn, ex_wait3, "WaitStateEntered")
    wait_event(sfn, ex_act, "ActivityScheduled")
    task = sfn.get_activity_task(activityArn=act, workerName="survivor")
    assert task.get("taskToken"), task
    assert json.loads(task["input"]) == {"case": "b"}
    wait_event(sfn, ex_act, "ActivityStarted")
    wait_event(sfn, ex_cb, "TaskStarted")
    scheduled = wait_event(sfn, ex_cb, "TaskScheduled")
    cb_token = json.loads(scheduled["taskScheduledEventDetails"]["parameters"])["MessageBody"]["token"]
    assert wait_status(sfn, ex_quick)["status"] == "SUCCEEDED"

    # Crash 1.2 s into the 3 s wait, stay down a second, come back.
    time.sleep(max(0.0, 1.2 - (time.monotonic() - t_start)))
    server.kill()  # SIGKILL: no graceful shutdown
    assert server.proc.returncode == -9
    time.sleep(1.0)
    server.start()
    sfn = server.client()
    restarted_at = time.monotonic()

    for arn in (ex_wait3, ex_act, ex_cb):
        assert sfn.describe_execution(executionArn=arn)["status"] in ("RUNNING", "SUCCEEDED"), arn
    assert sfn.describe_execution(executionArn=ex_quick)["status"] == "SUCCEEDED"

    # The worker and the callback answer with the tokens they got before the crash.
    sfn.send_task_success(taskToken=task["taskToken"], output='{"worked": true}')
    sfn.send_task_success(taskToken=cb_token, output='{"approved": true}')

    d_act = wait_status(sfn, ex_act)
    assert d_act["status"] == "SUCCEEDED", d_act
    assert json.loads(d_act["output"]) == {"case": "b", "work": {"worked": True}}
    h_act = history(sfn, ex_act)
    consecutive(h_act)
    assert [e["type"] for e in h_act] == [
        "ExecutionStarted", "TaskStateEntered", "ActivityScheduled", "ActivityStarted", "ActivitySucceeded",
        "TaskStateExited", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]

    d_cb = wait_status(sfn, ex_cb)
    assert d_cb["status"] == "SUCCEEDED", d_cb
    assert json.loads(d_cb["output"]) == {"case": "c", "answer": {"approved": True}}
    h_cb = history(sfn, ex_cb)
    consecutive(h_cb)
    assert [e["type"] for e in h_cb].count("TaskScheduled") == 1

    # The 1 s wait's deadline passed while the server was down: it ends promptly.
    d1 = wait_status(sfn, ex_wait1, timeout=5)
    assert d1["status"] == "SUCCEEDED"
    assert time.monotonic() - restarted_at < 1.5

    # The 3 s wait keeps its deadline: about 3 s from the start, not 3 s from the restart.
    d3 = wait_status(sfn, ex_wait3, timeout=10)
    assert d3["status"] == "SUCCEEDED", d3
    assert json.loads(d3["output"]) == {"case": "a", "r": "waited"}
    took = (d3["stopDate"] - d3["startDate"]).total_seconds()
    assert 2.9 <= took < 4.0, f"the Wait took {took:.2f}s from start to stop; expected about 3s"
    h3 = history(sfn, ex_wait3)
    consecutive(h3)
    assert [e["type"] for e in h3] == [
        "ExecutionStarted", "WaitStateEntered", "WaitStateExited", "PassStateEntered", "PassStateExited",
        "ExecutionSucceeded"]

    # Nothing runs twice: the finished execution's history is unchanged by the restart.
    assert [e["type"] for e in history(sfn, ex_quick)] == [
        "ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]


def test_kill_9_during_a_redrive(fresh_server, tmp_path):
    """A redriven execution waiting on its activity survives kill -9: after the
    restart a worker gets the task again, and the execution completes as redriven."""
    server = fresh_server(tmp_path / "redrive-crash").start()
    sfn = server.client()
    act = sfn.create_activity(name=unique("redrive-crash"))["activityArn"]
    machine = create_machine(sfn, {"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prepared", "Next": "Work"},
        "Work": {"Type": "Task", "Resource": act, "ResultPath": "$.work", "End": True}}})
    ex = sfn.start_execution(stateMachineArn=machine, input='{"order": "o-9"}')["executionArn"]
    first = sfn.get_activity_task(activityArn=act, workerName="flaky")
    sfn.send_task_failure(taskToken=first["taskToken"], error="Worker.Flaky", cause="try later")
    assert wait_status(sfn, ex)["status"] == "FAILED"

    sfn.redrive_execution(executionArn=ex)
    wait_event(sfn, ex, "ExecutionRedriven")
    server.kill()
    assert server.proc.returncode == -9
    server.start()
    sfn = server.client()

    assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
    again = sfn.get_activity_task(activityArn=act, workerName="steady")
    assert again.get("taskToken") and again["taskToken"] != first["taskToken"]
    assert json.loads(again["input"]) == {"order": "o-9", "prepared": "ready"}
    sfn.send_task_success(taskToken=again["taskToken"], output='{"done": true}')
    d = wait_status(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    assert d["redriveCount"] == 1
    assert json.loads(d["output"]) == {"order": "o-9", "prepared": "ready", "work": {"done": True}}
    types = [e["type"] for e in history(sfn, ex)]
    assert types.count("PassStateEntered") == 1, "the state that succeeded before does not run again"
    assert types.count("ExecutionRedriven") == 1
    assert types[-1] == "ExecutionSucceeded"
