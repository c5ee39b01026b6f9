"""Defects found by attacking a running `oms up` (issue 11), each a case that failed
before its fix: orders the saga cannot run are refused at the door; the order saga
cannot be changed or deleted through the Step Functions API, and its functions cannot
be called by another state machine; a status a poller reads is one the order had; the
data dir is private; payment tokens stay with the gateway; fault injection is opt-in;
credentials are required where the server asks for them."""

import json
import os
import re
import sqlite3
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
import zstandard
from botocore.config import Config as BotoConfig

from conftest import Server, oms_bin
from helpers import Api, error_code, history, make_client, order_body, wait_status


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A data dir as an older oms left it (0755): oms must make it private.
    data = tmp_path_factory.mktemp("hardening") / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    s = Server(data, extra_args=["--pick-delay-ms", "20"])
    s.start()
    yield s
    s.kill()


@pytest.fixture
def api(server):
    return Api(server.endpoint)


@pytest.fixture
def sfn(server):
    return make_client(server.endpoint)


BAD_OPTIONS = [
    ({"pick_timeout_seconds": 5}, "options.pick_heartbeat_seconds"),
    ("x", "options"),
    ({"pick_timeout_seconds": 1e30, "pick_heartbeat_seconds": 3600}, "options.pick_timeout_seconds"),
    ({"pick_timeout_seconds": 31536001, "pick_heartbeat_seconds": 1}, "options.pick_timeout_seconds"),
    ({"pick_timeout_seconds": 60, "pick_heartbeat_seconds": 0}, "options.pick_heartbeat_seconds"),
    ({"pick_timeout_seconds": 60, "pick_heartbeat_seconds": 1, "pick": 1}, "options.pick"),
]


@pytest.mark.parametrize("options,field", BAD_OPTIONS)
def test_options_the_saga_cannot_run_are_refused_before_anything_is_written(api, options, field):
    before = api.stock()
    body = order_body(options=options)
    status, out = api.call("POST", "/orders", body)
    assert status == 400, out
    assert out["code"] == "Order.Invalid"
    assert [f["field"] for f in out["fields"]] == [field], out
    status, _ = api.call("GET", f"/orders/{body['order_id']}")
    assert status == 404, "a refused order must leave nothing behind"
    assert api.stock() == before


def test_whole_options_are_accepted_and_used(api):
    body = order_body(options={"pick_timeout_seconds": 600, "pick_heartbeat_seconds": 60})
    api.ok("POST", "/orders", body, want=(202,))
    assert api.finish(body["order_id"])["status"] == "COMPLETED"


def saga_arn(sfn):
    machines = sfn.list_state_machines()["stateMachines"]
    return next(m["stateMachineArn"] for m in machines if m["name"] == "order-saga")


def test_the_order_saga_cannot_be_changed_or_deleted_through_the_api(api, sfn):
    arn = saga_arn(sfn)
    before = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    assert error_code(e) == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sfn.delete_state_machine(stateMachineArn=arn)
    assert error_code(e) == "AccessDeniedException"
    assert sfn.describe_state_machine(stateMachineArn=arn)["definition"] == before
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    assert api.finish(body["order_id"])["status"] == "COMPLETED"


def test_another_state_machine_cannot_call_the_order_functions(api, sfn):
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    done = api.finish(body["order_id"])
    assert done["status"] == "COMPLETED"
    account = saga_arn(sfn).split(":")[4]
    definition = {"StartAt": "Refund", "States": {"Refund": {
        "Type": "Task", "Resource": f"arn:aws:lambda:us-east-1:{account}:function:oms-refund-payment",
        "Parameters": {"order_id": body["order_id"]}, "End": True}}}
    machine = sfn.create_state_machine(name=f"thief-{body['order_id']}", definition=json.dumps(definition),
                                       roleArn=f"arn:aws:iam::{account}:role/x")["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    out = wait_status(sfn, run)
    assert out["status"] == "FAILED"
    assert out["error"] == "Lambda.AWSLambdaException", out
    after = api.ok("GET", f"/orders/{body['order_id']}")
    assert after["status"] == "COMPLETED"
    assert after["refunded_cents"] == 0 and after["charged_cents"] == done["charged_cents"]


def test_a_poller_only_sees_statuses_the_order_passed_through(api):
    """Out-of-stock orders go PENDING -> COMPENSATING -> CANCELLED; a view that paired a
    ledger read with a later execution read showed COMPENSATION_FAILED in between.
    Each order is polled from the moment it is submitted, by a few pollers at once."""
    allowed = {"PENDING", "COMPENSATING", "CANCELLED"}
    seen = {}

    def poll(order_id):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            view = api.ok("GET", f"/orders/{order_id}")
            seen.setdefault(order_id, set()).add(view["status"])
            if view["status"] == "CANCELLED":
                return

    # A SKU in the catalog with no stock anywhere (the demo's SKUs are stocked deep).
    status, report = api.import_feed("catalog", "sku,name,price_cents\nSOLD-OUT-1,Sold out,100\n")
    assert status == 200, report
    threads = []
    ids = []
    for _ in range(60):
        body = order_body(lines=[{"sku": "SOLD-OUT-1", "quantity": 1}])
        ids.append(body["order_id"])
        api.ok("POST", "/orders", body, want=(202,))
        for _ in range(4):
            threads.append(threading.Thread(target=poll, args=(body["order_id"],)))
            threads[-1].start()
    for t in threads:
        t.join()
    for order_id in ids:
        assert seen[order_id] <= allowed, (order_id, seen[order_id])
        assert "CANCELLED" in seen[order_id], (order_id, seen[order_id])


def test_the_data_dir_and_its_files_are_private(server):
    mode = stat.S_IMODE(os.stat(server.data_dir).st_mode)
    assert mode == 0o700, oct(mode)
    files = [f for f in os.listdir(server.data_dir) if os.path.isfile(os.path.join(server.data_dir, f))]
    assert files, "the data dir has no databases"
    for f in files:
        mode = stat.S_IMODE(os.stat(os.path.join(server.data_dir, f)).st_mode)
        assert mode & 0o077 == 0, (f, oct(mode))



# The order store's documents are zstd frames against this dictionary, after a byte
# naming it (activities/src/store/sqlite.rs, doc_codec); older ones are JSON text.
DOC_DICTIONARY = Path(__file__).resolve().parents[2] / "activities/src/store/sqlite-dict-v1.zdict"


def stored_doc(doc):
    """An order-store document's JSON text, however it was stored."""
    if isinstance(doc, str):
        return doc
    assert doc[0] == 1, f"a document compressed with dictionary {doc[0]}"
    dictionary = zstandard.ZstdCompressionDict(DOC_DICTIONARY.read_bytes())
    return zstandard.ZstdDecompressor(dict_data=dictionary).decompress(doc[1:]).decode()


def assert_token_only_in_the_vault(sfn, server, arn, token, answers):
    """The execution's input carries a payment-method reference, and the token is in
    neither `answers`, the execution's input and history, nor any file of the data dir
    but the order store, where only the built-in gateway's vault item holds it."""
    described = sfn.describe_execution(executionArn=arn)
    payment = json.loads(described["input"])["payment"]
    assert set(payment) == {"method"} and re.fullmatch(r"pm_[0-9a-f]{32}", payment["method"]), payment
    events = history(sfn, arn)
    assert len(events) > 10, "the whole history was read"
    for what, text in [*answers, ("DescribeExecution", described), ("GetExecutionHistory", events)]:
        assert token not in json.dumps(text, default=str), what
    files = sorted(os.listdir(server.data_dir))
    assert "oms.sqlite3" in files, files
    # The order store's items live in oms.sqlite3 (and its WAL): the vault item is there,
    # so that file is searched by row, every other file byte by byte.
    for name in files:
        path = os.path.join(server.data_dir, name)
        if os.path.isfile(path) and not name.startswith("oms.sqlite3"):
            with open(path, "rb") as f:
                assert token.encode() not in f.read(), name
    db = sqlite3.connect(f"file:{os.path.join(server.data_dir, 'oms.sqlite3')}?mode=ro", uri=True)
    try:
        rows = [(pk, sk) for pk, sk, doc in db.execute("SELECT pk, sk, doc FROM items")
                if token in stored_doc(doc)]
    finally:
        db.close()
    assert rows == [("GATEWAY", f"METHOD#{payment['method']}")], rows


def test_the_payment_token_stays_with_the_gateway(api, sfn, server):
    token = f"tok_secret_{uuid.uuid4().hex}"
    body = order_body(payment={"token": token})
    placed = api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPLETED", view
    assert_token_only_in_the_vault(sfn, server, placed["execution_arn"], token,
                                   [("POST answer", placed), ("order view", view)])


def test_an_order_an_older_oms_placed_with_its_token_still_runs(api, sfn, server):
    """An older oms kept the token in the order record: a saga started from that record
    (an order placed whose saga never started) carries a reference, and the charge
    leaves the reference in the record in the token's place."""
    token = f"tok_legacy_{uuid.uuid4().hex}"
    body = order_body()
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    record = {
        "order_id": body["order_id"], "customer_id": body["customer_id"],
        "lines": [{"sku": "SOCKS-3PK", "quantity": 1, "unit_price_cents": 899, "line_total_cents": 899}],
        "total_cents": 899, "currency": "USD", "payment_token": token, "ship_to": body["ship_to"],
        "status": "PENDING", "charged_cents": 0, "refunded_cents": 0, "cancel_requested": False,
        "created_at": now, "updated_at": now,
    }
    db = sqlite3.connect(os.path.join(server.data_dir, "oms.sqlite3"), timeout=10)
    try:
        with db:
            db.execute("INSERT INTO items (pk, sk, version, doc) VALUES (?, 'ORDER', 1, ?)",
                       (f"ORDER#{body['order_id']}", json.dumps(record)))
    finally:
        db.close()
    started = api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    assert started["started"] is True, started
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPLETED", view
    assert_token_only_in_the_vault(sfn, server, started["execution_arn"], token,
                                   [("retry answer", started), ("order view", view)])


def test_fault_injection_is_off_unless_the_server_is_started_with_it(api):
    for method, body in [("GET", None), ("PUT", {"ship": {"fail_next": 1}}), ("DELETE", None)]:
        status, out = api.call(method, "/admin/faults", body)
        assert status == 403 and out["code"] == "Faults.Disabled", (method, status, out)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server that requires credentials (as any off loopback does), on loopback."""
    data = tmp_path_factory.mktemp("guarded") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--pick-delay-ms", "20", "--require-auth"])
    s.start()
    yield s
    s.kill()


def signed_client(endpoint, key, secret):
    return boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


def test_credentials_are_generated_once_and_printed_once(guarded):
    creds = json.loads((Path(guarded.data_dir) / "credentials.json").read_text())
    mode = stat.S_IMODE(os.stat(Path(guarded.data_dir) / "credentials.json").st_mode)
    assert mode == 0o600, oct(mode)
    assert guarded.log_text().count(f"OMS_TOKEN={creds['token']}") == 1
    guarded.kill()
    guarded.start()
    assert guarded.log_text().count(f"OMS_TOKEN={creds['token']}") == 1, "printed again"
    assert json.loads((Path(guarded.data_dir) / "credentials.json").read_text()) == creds


def test_the_step_functions_api_requires_a_sigv4_signature_with_the_servers_key(guarded):
    creds = json.loads((Path(guarded.data_dir) / "credentials.json").read_text())
    ok = signed_client(guarded.endpoint, creds["access_key_id"], creds["secret_access_key"])
    assert any(m["name"] == "order-saga" for m in ok.list_state_machines()["stateMachines"])
    cases = [(creds["access_key_id"], "wrong-secret", "InvalidSignatureException"),
             ("AKIDSOMEONEELSE", creds["secret_access_key"], "UnrecognizedClientException")]
    for key, secret, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            signed_client(guarded.endpoint, key, secret).list_state_machines()
        assert error_code(e) == code
    unsigned = urllib.request.Request(guarded.endpoint + "/", data=b"{}", method="POST", headers={
        "content-type": "application/x-amz-json-1.0", "x-amz-target": "AWSStepFunctions.ListStateMachines"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(unsigned, timeout=10)
    assert json.loads(e.value.read())["__type"] == "MissingAuthenticationTokenException"


def test_the_orders_api_requires_the_bearer_token(guarded):
    creds = json.loads((Path(guarded.data_dir) / "credentials.json").read_text())
    with urllib.request.urlopen(guarded.endpoint + "/health", timeout=10) as r:
        assert r.status == 200, "the health check stays open"
    anonymous = Api(guarded.endpoint)
    for method, path in [("GET", "/orders"), ("POST", "/orders"), ("GET", "/inventory"),
                         ("GET", "/admin/faults"), ("GET", "/openapi.json")]:
        status, out = anonymous.call(method, path, order_body() if method == "POST" else None)
        assert status == 401 and out["code"] == "Auth.Required", (method, path, status, out)
    status, out = anonymous.call("GET", "/orders", headers={"Authorization": "Bearer not-the-token"})
    assert status == 401, out
    body = order_body()
    status, out = anonymous.call("POST", "/orders", body, headers={"Authorization": f"Bearer {creds['token']}"})
    assert status == 202, out
    listed = subprocess.run([oms_bin(), "--endpoint", guarded.endpoint, "--output", "json", "orders", "show",
                             body["order_id"]], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OMS_TOKEN": creds["token"]})
    assert listed.returncode == 0, listed.stderr
    refused = subprocess.run([oms_bin(), "--endpoint", guarded.endpoint, "orders", "show", body["order_id"]],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k != "OMS_TOKEN"})
    assert refused.returncode != 0 and "Auth.Required" in refused.stdout + refused.stderr
