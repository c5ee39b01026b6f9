"""The activities as Lambda functions, under `cargo lambda watch`, called through the
Lambda Invoke API (POST /2015-03-31/functions/NAME/invocations): a success, a typed
error whose errorType is the activity's error name, and an idempotent repeat.

AWS answers a function error with 200 and an X-Amz-Function-Error header; `cargo
lambda watch` answers 500 with the same body. `invoke` accepts both, as oms's Lambda
invoker does.

`cargo xtask test` installs cargo-lambda into target/venv and sets OMS_CARGO_LAMBDA.
The functions share an SQLite store in a temporary directory, seeded with the demo
catalog by the first function to start (OMS_SEED_DEMO).
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import urllib.error
import urllib.request

import pytest

from conftest import _die_with_parent, _free_port
from helpers import wait_listening

ROOT = Path(__file__).resolve().parents[2]


def cargo_lambda():
    path = os.environ.get("OMS_CARGO_LAMBDA")
    if not path or not Path(path).exists():
        pytest.fail(
            "OMS_CARGO_LAMBDA does not name the cargo-lambda binary: run the suite with "
            "`cargo xtask test`, which installs it into target/venv"
        )
    return path


@pytest.fixture(scope="module")
def functions():
    port = _free_port()
    data = tempfile.mkdtemp(prefix="oms-lambda-")
    venv_bin = str(Path(cargo_lambda()).parent)
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    log = open(Path(data) / "watch.log", "w")
    proc = subprocess.Popen(
        [
            cargo_lambda(), "lambda", "watch", "--ignore-changes",
            "-p", "activities", "-A", "127.0.0.1", "-P", str(port),
            "--env-var", f"OMS_STORE=sqlite:{data}/store.db",
            "--env-var", "OMS_SEED_DEMO=1",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    if not wait_listening(proc, port, 120):
        proc.kill()
        log.close()
        pytest.fail("cargo lambda watch did not start:\n" + (Path(data) / "watch.log").read_text()[-3000:])
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def invoke(endpoint, function, payload):
    """Returns (function error or None, body)."""
    request = urllib.request.Request(
        f"{endpoint}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        # The first call to each function compiles it.
        with urllib.request.urlopen(request, timeout=900) as response:
            body = json.loads(response.read() or b"null")
            return response.headers.get("X-Amz-Function-Error"), body
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"null")
        assert e.code == 500 and "errorType" in body, (e.code, body)
        return "Unhandled", body


ORDER = {
    "order_id": "lambda-1",
    "customer_id": "c-1",
    "lines": [{"sku": "SOCKS-3PK", "quantity": 2}],
    "payment": {"token": "tok_visa"},
    "ship_to": {"name": "Ada", "line1": "1 Main St", "city": "Boston",
                "postal_code": "02101", "country": "US"},
}


def test_success_then_idempotent_repeat(functions):
    err, placed = invoke(functions, "place-order", ORDER)
    assert err is None, placed
    assert placed["total_cents"] == 2 * 899
    err, first = invoke(functions, "reserve-inventory", {"order_id": "lambda-1"})
    assert err is None, first
    assert [s["warehouse_id"] for s in first["shipments"]] == ["WH-NJ"]
    err, again = invoke(functions, "reserve-inventory", {"order_id": "lambda-1"})
    assert err is None and again == first
    err, charge = invoke(functions, "charge-payment", {"order_id": "lambda-1"})
    assert err is None and charge["amount_cents"] == 2 * 899
    err, charge2 = invoke(functions, "charge-payment", {"order_id": "lambda-1"})
    assert err is None and charge2 == charge


def test_typed_errors_reach_the_caller_by_name(functions):
    declined = dict(ORDER, order_id="lambda-2", payment={"token": "tok_declined"})
    err, _ = invoke(functions, "place-order", declined)
    assert err is None
    err, body = invoke(functions, "charge-payment", {"order_id": "lambda-2"})
    assert err == "Unhandled"
    assert body["errorType"] == "Payment.Declined", body
    err, body = invoke(functions, "reserve-inventory", {"order_id": "nobody"})
    assert body["errorType"] == "Order.NotFound", body
    bad = dict(ORDER, order_id="lambda-3", lines=[{"sku": "SOCKS-3PK", "quantity": -4}])
    err, body = invoke(functions, "place-order", bad)
    assert body["errorType"] == "Order.Invalid"
    assert "lines[0].quantity" in body["errorMessage"]
