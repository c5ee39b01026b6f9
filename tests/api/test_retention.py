"""Retention: closed executions are deleted once older than the retention period (AWS
keeps them 90 days; `retention_days` in oms.toml, here a hidden seconds-level override)
and then answer ExecutionDoesNotExist, as an expired execution does on AWS. A FAILED
execution that may still be redriven (14 days) is kept, and a RUNNING one always is.
The order itself is a business record: GET /orders/{id} still answers with its stored
status, with a null execution_status, and a retry starts nothing."""

import json
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import Server, oms_bin
from helpers import Api, create_machine, error_code, order_body, wait_status


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("retention") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--pick-delay-ms", "20", "--retention-seconds", "1",
                                 "--prune-every-seconds", "1"])
    s.start()
    yield s
    s.kill()


def wait_gone(sfn, arn, timeout=30.0):
    """Polls DescribeExecution until it answers ExecutionDoesNotExist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sfn.describe_execution(executionArn=arn)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ExecutionDoesNotExist", e.response
            return e
        time.sleep(0.2)
    pytest.fail(f"{arn} was not pruned within {timeout}s")


def test_a_pruned_execution_does_not_exist_and_its_order_still_answers(server):
    sfn, api = server.client(), Api(server.endpoint)
    failing = create_machine(sfn, {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}})
    failed = sfn.start_execution(stateMachineArn=failing)["executionArn"]
    assert wait_status(sfn, failed)["status"] == "FAILED"
    waiting = create_machine(sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}})
    running = sfn.start_execution(stateMachineArn=waiting)["executionArn"]

    body = order_body(lines=[{"sku": "SOCKS-3PK", "quantity": 2}])
    arn = api.ok("POST", "/orders", body)["execution_arn"]
    # The order's own status, not its execution's: the execution may be pruned a
    # second after it ends.
    api.wait(body["order_id"], lambda v: v["status"] == "COMPLETED")

    gone = wait_gone(sfn, arn)
    assert arn in gone.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        sfn.get_execution_history(executionArn=arn)
    assert error_code(e) == "ExecutionDoesNotExist"
    listed = [x["executionArn"] for x in sfn.list_executions(stateMachineArn=arn.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:"))["executions"]]
    assert arn not in listed

    # The prune that took the order's execution ran after the FAILED one had been
    # closed longer than the retention: the redrive window kept it. RUNNING stays.
    assert sfn.describe_execution(executionArn=failed)["status"] == "FAILED"
    assert sfn.describe_execution(executionArn=running)["status"] == "RUNNING"

    view = api.ok("GET", f"/orders/{body['order_id']}", want=(200,))
    assert view["status"] == "COMPLETED"
    assert view["execution_status"] is None
    assert view["execution_arn"] == arn
    assert view["charged_cents"] == view["total_cents"] > 0
    assert {s["step"] for s in view["steps"]} >= {"reserve", "charge", "pick", "ship"}
    listing = api.ok("GET", "/orders?customer_id=" + body["customer_id"], want=(200,))
    assert body["order_id"] in [o["order_id"] for o in listing["orders"]]

    preview = api.ok("GET", f"/orders/{body['order_id']}/retry", want=(200,))
    assert preview["retryable"] is False, preview
    status, out = api.call("POST", f"/orders/{body['order_id']}/retry")
    assert status == 409, out
    # Nothing started again under the order's name.
    with pytest.raises(ClientError) as e:
        sfn.describe_execution(executionArn=arn)
    assert error_code(e) == "ExecutionDoesNotExist"
    sfn.stop_execution(executionArn=running)


@pytest.mark.parametrize("days", ["0", "36501", "-1", "\"ninety\""])
def test_a_bad_retention_is_refused_at_start_naming_the_setting(tmp_path, days):
    config = tmp_path / "oms.toml"
    config.write_text(f"[server]\nretention_days = {days}\n")
    data = tmp_path / "data"
    proc = subprocess.run([oms_bin(), "up", "--listen", "127.0.0.1:0", "--data-dir", str(data),
                           "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stdout
    assert "retention_days" in proc.stderr, proc.stderr


def test_the_retention_override_is_checked(tmp_path):
    proc = subprocess.run([oms_bin(), "up", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                           "--retention-seconds", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stdout
    assert "--retention-seconds 0" in proc.stderr, proc.stderr


def test_the_default_retention_keeps_a_closed_execution(tmp_path):
    """Without the override, a closed execution is kept (90 days): a second server on
    its own data dir, with prunes every second, still describes it."""
    s = Server(tmp_path / "data", extra_args=["--prune-every-seconds", "1"])
    (tmp_path / "data").mkdir()
    s.start()
    try:
        sfn = s.client()
        sm = create_machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps({}))["executionArn"]
        assert wait_status(sfn, arn)["status"] == "SUCCEEDED"
        time.sleep(2.5)
        assert sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
    finally:
        s.kill()
