"""`oms up --backend aws` and the CLI's `--backend aws`, offline: the deployed stack is
played by API-compatible servers. DynamoDB Local holds the table; an `oms up` of its
own plays Step Functions and Lambda (its in-process activities are the Lambda
functions' code, writing that same table), and its state machine is the one the stack
deploys. The oms under test knows only the stack's outputs file and the endpoints,
as it would know them on AWS.

The Step Functions API that `oms up --backend aws` serves passes each call to the
"account" through aws-sdk-sfn; every answer must be the account's own, byte for byte
in meaning: the console and the CLI read executions through it."""

import json
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import Server, oms_bin
from dynamodb_local import CREDENTIALS, ROOT, TABLE, DynamoDbLocal
from moto_server import moto_server
from helpers import Api, make_client, order_body



@pytest.fixture(scope="module")
def dynamodb_local():
    try:
        ddb = DynamoDbLocal()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield ddb.endpoint
    ddb.stop()


@pytest.fixture(scope="module")
def account(tmp_path_factory, dynamodb_local):
    """The stand-in for the AWS account: Step Functions running the saga, whose
    activities write the stack's table. Picks wait for the warehouse, as on AWS."""
    data = tmp_path_factory.mktemp("account") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--manual-picking", "--fault-injection", "--store", f"dynamodb:{TABLE}",
                                 "--dynamodb-endpoint", dynamodb_local], env=CREDENTIALS)
    s.start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, account):
    """What `cdk deploy --outputs-file` writes."""
    machines = {m["name"]: m["stateMachineArn"] for m in account.client().list_state_machines()["stateMachines"]}
    path = tmp_path_factory.mktemp("stack") / "cdk-outputs.json"
    path.write_text(json.dumps({"Oms": {"OrdersTableName": TABLE, "StateMachineArn": machines["order-saga"],
                                        "AmendStateMachineArn": machines["order-amend"],
                                        "OrdersApiUrl": "https://example.execute-api/prod/"}}))
    return path


def aws_args(outputs, account, dynamodb_local):
    return ["--backend", "aws", "--stack-outputs", str(outputs), "--sfn-endpoint", account.endpoint,
            "--dynamodb-endpoint", dynamodb_local]


@pytest.fixture(scope="module")
def oms_aws(tmp_path_factory, outputs, account, dynamodb_local):
    data = tmp_path_factory.mktemp("oms-aws") / "data"
    data.mkdir()
    s = Server(data, extra_args=[*aws_args(outputs, account, dynamodb_local), "--fault-injection"],
               env=CREDENTIALS)
    s.start()
    yield s
    s.kill()


def cli(args, outputs, account, dynamodb_local):
    out = subprocess.run([oms_bin(), *aws_args(outputs, account, dynamodb_local), "--output", "json", *args],
                         env={**os.environ, **CREDENTIALS}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def pick(api, order_id, damaged=None):
    """Answers the order's pick as a warehouse would: once the saga has asked (until
    then the answer is refused with 409, and nothing is picked)."""
    view = api.wait(order_id, lambda v: v["status"] == "FULFILLING" and v["shipments"])
    path = f"/shipments/{view['shipments'][0]['shipment_id']}/picked"
    body = {"damaged": damaged} if damaged else {}
    deadline = time.monotonic() + 30
    while True:
        status, out = api.call("POST", path, body)
        if status != 409 or time.monotonic() > deadline:
            assert status == 200, (status, out)
            return out
        assert "no pick was requested" in out["message"], out
        time.sleep(0.05)


def test_an_order_runs_on_the_account_and_reads_back_through_oms(oms_aws, account, outputs, dynamodb_local):
    api = Api(oms_aws.endpoint)
    before = api.stock()
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    # The warehouse's answer goes to the account through aws-sdk-sfn (SendTaskSuccess).
    assert pick(api, body["order_id"])["status"] == "PICKED"
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPLETED", view
    assert view["execution_status"] == "SUCCEEDED"
    assert view["charged_cents"] == view["total_cents"] > 0
    # The account's activities wrote the ledger that oms reads from the table.
    assert {s["step"] for s in view["steps"]} >= {"reserve", "charge", "pick", "ship"}
    after = api.stock()
    moved = [k for k in before if before[k] != after[k]]
    assert moved and all(after[k][2] == before[k][2] + 1 for k in moved), (before, after)

    # The CLI runs the same Orders service in-process, over the same stack.
    shown = cli(["orders", "show", body["order_id"]], outputs, account, dynamodb_local)
    assert shown["status"] == "COMPLETED" and shown["execution_arn"] == view["execution_arn"]
    listed = cli(["orders", "list", "--customer", body["customer_id"]], outputs, account, dynamodb_local)
    assert body["order_id"] in {o["order_id"] for o in listed["orders"]}
    executions = cli(["executions", "list"], outputs, account, dynamodb_local)
    assert view["execution_arn"] in json.dumps(executions)


def test_an_amendment_runs_on_the_accounts_amend_machine(oms_aws, account, outputs, dynamodb_local):
    """PATCH /orders/{id} over the stack starts the execution on the machine the stack
    outputs name (AmendStateMachineArn); the account's activities apply it to the
    table, and the order then completes as amended."""
    api = Api(oms_aws.endpoint)
    body = order_body(lines=[{"sku": "SOCKS-3PK", "quantity": 1}])
    api.ok("POST", "/orders", body, want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "FULFILLING" and v["shipments"] and all(
        s.get("status") == "RESERVED" for s in v["shipments"]))
    status, out = api.call("PATCH", f"/orders/{body['order_id']}",
                           {"version": view["version"], "lines": [{"sku": "SOCKS-3PK", "quantity": 2}]},
                           headers={"X-Oms-Associate": "assoc-aws"})
    assert status == 202, out
    aid = out["amendment_id"]
    amended = api.wait(body["order_id"], lambda v: any(
        a["amendment_id"] == aid and a["status"] != "RUNNING" for a in v["amendments"]), timeout=30)
    [record] = [a for a in amended["amendments"] if a["amendment_id"] == aid]
    assert record["status"] == "APPLIED" and record["by"] == "assoc-aws", record
    assert [line["quantity"] for line in amended["lines"]] == [2], amended["lines"]
    # The execution ran on the account, under the stack's amend machine.
    amend_arn = json.loads(outputs.read_text())["Oms"]["AmendStateMachineArn"]
    names = [e["name"] for e in account.client().list_executions(stateMachineArn=amend_arn)["executions"]]
    assert f"{body['order_id']}-{aid}" in names, names
    assert pick(api, body["order_id"])["status"] == "PICKED"
    done = api.finish(body["order_id"])
    assert done["status"] == "COMPLETED" and done["charged_cents"] - done["refunded_cents"] == done["total_cents"], done


def test_a_stack_without_the_amend_machine_refuses_amendments_saying_why(tmp_path, account, outputs, dynamodb_local):
    """A stack deployed before amendments has no AmendStateMachineArn: orders still run,
    and PATCH answers 501 Amendments.Unavailable naming the fix."""
    old = json.loads(outputs.read_text())
    del old["Oms"]["AmendStateMachineArn"]
    path = tmp_path / "old-outputs.json"
    path.write_text(json.dumps(old))
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, extra_args=["--backend", "aws", "--stack-outputs", str(path), "--sfn-endpoint", account.endpoint,
                                 "--dynamodb-endpoint", dynamodb_local], env=CREDENTIALS)
    s.start()
    try:
        status, out = Api(s.endpoint).call("PATCH", "/orders/any", {"version": 1})
        assert status == 501 and out["code"] == "Amendments.Unavailable", out
        assert "--amend-machine-arn" in out["message"], out
    finally:
        s.kill()


def test_the_step_functions_api_answers_as_the_account_does(oms_aws, account):
    api = Api(oms_aws.endpoint)
    body = order_body(payment={"token": "tok_declined"})
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "CANCELLED" and view["failure"]["step"] == "ChargePayment"
    arn = view["execution_arn"]
    via_oms, direct = make_client(oms_aws.endpoint), account.client()
    strip = lambda r: {k: v for k, v in r.items() if k != "ResponseMetadata"}  # noqa: E731
    for call in [
        lambda c: c.describe_execution(executionArn=arn),
        lambda c: c.get_execution_history(executionArn=arn, maxResults=1000),
        lambda c: c.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=3),
        lambda c: c.describe_state_machine_for_execution(executionArn=arn),
        lambda c: c.list_executions(stateMachineArn=view["execution_arn"].rsplit(":", 1)[0]
                                    .replace(":execution:", ":stateMachine:"), maxResults=50),
        lambda c: c.list_state_machines(),
    ]:
        assert strip(call(via_oms)) == strip(call(direct))
    # Paging goes through: the token the account issued is the one passed back.
    page = via_oms.get_execution_history(executionArn=arn, maxResults=2)
    rest = via_oms.get_execution_history(executionArn=arn, maxResults=1000, nextToken=page["nextToken"])
    whole = direct.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    assert page["events"] + rest["events"] == whole

    # The account's errors come back as its own codes.
    with pytest.raises(ClientError) as e:
        via_oms.describe_execution(executionArn=arn + "-missing")
    assert e.value.response["Error"]["Code"] == "ExecutionDoesNotExist"
    # The stack owns the state machine: oms does not change it.
    with pytest.raises(ClientError) as e:
        via_oms.create_state_machine(name="x", definition="{}", roleArn="arn:aws:iam::1:role/x")
    assert e.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "infra-cdk" in e.value.response["Error"]["Message"]


def test_a_failed_compensation_is_retried_by_redrive_on_the_account(oms_aws):
    api = Api(oms_aws.endpoint)
    before = api.stock()
    # The fault plan lives in the table, so the account's activities obey it.
    api.ok("PUT", "/admin/faults", {"ship": {"fail_next": 1, "error": "Ship.AddressRejected"},
                                    "refund": {"fail_next": 1, "error": "Payment.RefundRejected"}})
    try:
        body = order_body()
        api.ok("POST", "/orders", body, want=(202,))
        pick(api, body["order_id"])
        view = api.finish(body["order_id"])
        assert view["status"] == "COMPENSATION_FAILED", view
        assert view["failure"]["step"] == "RefundPayment"
        preview = api.ok("GET", f"/orders/{body['order_id']}/retry")
        assert preview["will_run_again"] == ["RefundPayment"], preview
    finally:
        api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "CANCELLED")
    assert view["charged_cents"] == view["refunded_cents"]
    assert api.stock() == before


def test_the_console_is_served_over_the_stack(oms_aws):
    import urllib.request
    with urllib.request.urlopen(oms_aws.endpoint + "/console", timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read().lower()


def test_without_the_stack_oms_says_what_is_missing(tmp_path, account, dynamodb_local):
    run = lambda *a: subprocess.run([oms_bin(), *a], env={**os.environ, **CREDENTIALS},  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    out = run("--backend", "aws", "orders", "list")
    assert out.returncode == 2 and "--stack-outputs" in out.stderr and "StateMachineArn" in out.stderr
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"A": {}, "B": {}}))
    out = run("--backend", "aws", "--stack-outputs", str(two), "orders", "list")
    assert out.returncode == 2 and "one stack" in out.stderr
    # A machine the account does not have is refused at start, naming it.
    out = run("--backend", "aws", "--table", TABLE, "--state-machine-arn",
              "arn:aws:states:us-east-1:000000000000:stateMachine:nope", "--sfn-endpoint", account.endpoint,
              "--dynamodb-endpoint", dynamodb_local, "orders", "list")
    assert out.returncode == 2 and "stateMachine:nope" in out.stderr and "StateMachineDoesNotExist" in out.stderr


# ---- moto's server as a second Step Functions peer ---------------------------------
# moto does not run definitions (its executions stay RUNNING with a canned history),
# but it answers the operations in AWS's shapes: the adapter must pass them through
# unchanged, including members oms itself never sends.

@pytest.fixture(scope="module")
def moto():
    with moto_server(lambda endpoint: make_client(endpoint).list_state_machines()) as endpoint:
        yield endpoint


def test_moto_as_the_account(tmp_path, moto, dynamodb_local):
    direct = make_client(moto)
    definition = (ROOT / "statemachines/order-saga.asl.json").read_text()
    machine = direct.create_state_machine(
        name="oms-order-saga", definition=definition, roleArn="arn:aws:iam::123456789012:role/saga",
        loggingConfiguration={"level": "ALL", "includeExecutionData": True, "destinations": [
            {"cloudWatchLogsLogGroup": {"logGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:saga:*"}}]},
        tracingConfiguration={"enabled": True})["stateMachineArn"]
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, extra_args=["--backend", "aws", "--table", TABLE, "--state-machine-arn", machine,
                                 "--sfn-endpoint", moto, "--dynamodb-endpoint", dynamodb_local], env=CREDENTIALS)
    s.start()
    try:
        api, via_oms = Api(s.endpoint), make_client(s.endpoint)
        body = order_body()
        started = api.ok("POST", "/orders", body, want=(202,))
        assert started["execution_arn"].endswith(":execution:oms-order-saga:" + body["order_id"])
        view = api.ok("GET", f"/orders/{body['order_id']}")
        assert view["execution_status"] == "RUNNING" and view["status"] == "PENDING"
        arn = started["execution_arn"]
        strip = lambda r: {k: v for k, v in r.items() if k != "ResponseMetadata"}  # noqa: E731
        for call in [
            lambda c: c.describe_state_machine(stateMachineArn=machine),
            lambda c: c.list_state_machines(),
            lambda c: c.describe_execution(executionArn=arn),
            lambda c: c.list_executions(stateMachineArn=machine),
            lambda c: c.list_executions(stateMachineArn=machine, statusFilter="RUNNING"),
            lambda c: c.get_execution_history(executionArn=arn),
        ]:
            assert strip(call(via_oms)) == strip(call(direct))
        assert via_oms.describe_state_machine(stateMachineArn=machine)["loggingConfiguration"]["level"] == "ALL"
        via_oms.stop_execution(executionArn=arn, error="Operator.Stopped", cause="test")
        assert direct.describe_execution(executionArn=arn)["status"] == "ABORTED"
        with pytest.raises(ClientError) as e:
            via_oms.describe_execution(executionArn=machine.replace(":stateMachine:", ":execution:") + ":nope")
        assert e.value.response["Error"]["Code"] == "ExecutionDoesNotExist"
    finally:
        s.kill()


def test_a_stock_feed_imports_into_the_stacks_table(oms_aws, outputs, account, dynamodb_local, tmp_path):
    """`oms import --backend aws` (docs/deploy.md, feeds from S3): the same code applies
    the feed to DynamoDB, in TransactWriteItems batches, once."""
    api = Api(oms_aws.endpoint)
    before = api.stock()[("CAP-NAVY", "WH-IE")]
    feed = tmp_path / "stock.csv"
    feed.write_text("warehouse_id,sku,delta\nWH-IE,CAP-NAVY,7\n" + "WH-NJ,CAP-NAVY,1\n" * 120)
    first = cli(["import", "stock", str(feed)], outputs, account, dynamodb_local)
    assert (first["status"], first["applied"], first["rows"]) == ("applied", 121, 121), first
    again = cli(["import", "stock", str(feed)], outputs, account, dynamodb_local)
    assert again["status"] == "already_applied", again
    after = api.stock()
    assert after[("CAP-NAVY", "WH-IE")][0] == before[0] + 7
    assert after[("CAP-NAVY", "WH-NJ")][0] == 120
