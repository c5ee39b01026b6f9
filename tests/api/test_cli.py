"""The order CLI against a running `oms up`: submit, orders list/show/cancel/retry,
executions list/show, faults set/clear, and load with its summary."""

import json
import os
import subprocess
import time

import pytest

from conftest import Server, oms_bin


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--pick-delay-ms", "20", "--fault-injection"])
    s.start()
    yield s.endpoint
    s.kill()


def oms(endpoint, *args, stdin=None, ok=True):
    p = subprocess.run([oms_bin(), "--endpoint", endpoint, *args], input=stdin,
                       capture_output=True, text=True, timeout=120)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


ORDER = {"customer_id": "cli-cust", "lines": [{"sku": "SOCKS-3PK", "quantity": 1}],
         "payment": {"token": "tok_visa"},
         "ship_to": {"name": "A", "line1": "1 St", "city": "Boston", "postal_code": "02101", "country": "US"}}


def wait_done(endpoint, order_id):
    for _ in range(200):
        v = json.loads(oms(endpoint, "--output", "json", "orders", "show", order_id).stdout)
        if v["execution_status"] not in (None, "RUNNING"):
            return v
        time.sleep(0.1)
    pytest.fail(f"{order_id} did not finish")


def test_submit_list_show(endpoint, tmp_path):
    f = tmp_path / "order.json"
    f.write_text(json.dumps(dict(ORDER, order_id="cli-file")))
    out = oms(endpoint, "submit", str(f)).stdout
    # For people, a line, not JSON; --output json gives the answer whole.
    assert out.startswith("order cli-file  ") and "execution arn:" in out, out
    out = json.loads(oms(endpoint, "--output", "json", "submit", "-",
                         stdin=json.dumps(dict(ORDER, order_id="cli-stdin"))).stdout)
    assert out["execution_arn"].endswith(":cli-stdin")
    assert wait_done(endpoint, "cli-file")["status"] == "COMPLETED"
    wait_done(endpoint, "cli-stdin")
    table = oms(endpoint, "orders", "list", "--customer", "cli-cust").stdout
    assert table.splitlines()[0].split() == ["ORDER", "STATUS", "CUSTOMER", "TOTAL", "CREATED"]
    assert "cli-file" in table and "cli-stdin" in table and "COMPLETED" in table
    shown = oms(endpoint, "orders", "show", "cli-file").stdout
    assert "SHIPPED" in shown and "8.99" in shown
    # A completed order allows nothing: the table says so, as the API's view does.
    assert [l for l in shown.splitlines() if l.startswith("actions")] == ["actions   none"]
    lines = [l.split()[0] for l in shown.splitlines() if l.split() and l.split()[0] in ("reserve", "charge", "pick", "ship")]
    assert lines == ["reserve", "charge", "pick", "ship"]


def test_bad_input_and_errors_exit_nonzero_with_the_reason(endpoint):
    p = oms(endpoint, "submit", json.dumps(dict(ORDER, lines=[{"sku": "SOCKS-3PK", "quantity": 0}])), ok=False)
    assert p.returncode != 0 and "lines[0].quantity" in p.stderr
    p = oms(endpoint, "orders", "show", "no-such-order", ok=False)
    assert p.returncode != 0 and "Order.NotFound" in p.stderr
    p = oms("http://127.0.0.1:9", "orders", "list", ok=False)
    assert p.returncode != 0 and "cannot reach" in p.stderr


def test_faults_retry_and_executions(endpoint):
    oms(endpoint, "faults", "set", json.dumps({"ship": {"fail_next": 1, "error": "Ship.AddressRejected"},
                                               "refund": {"fail_next": 1, "error": "Payment.RefundRejected"}}))
    shown = json.loads(oms(endpoint, "--output", "json", "faults", "show").stdout)
    assert shown["refund"]["error"] == "Payment.RefundRejected"
    oms(endpoint, "submit", json.dumps(dict(ORDER, order_id="cli-retry")))
    v = wait_done(endpoint, "cli-retry")
    assert v["status"] == "COMPENSATION_FAILED"
    oms(endpoint, "faults", "clear")
    preview = json.loads(oms(endpoint, "--output", "json", "orders", "retry", "cli-retry", "--preview").stdout)
    assert preview["will_run_again"] == ["RefundPayment"]
    said = oms(endpoint, "orders", "retry", "cli-retry", "--preview").stdout
    assert "runs again  RefundPayment" in said, said
    failed = oms(endpoint, "executions", "list", "--status", "FAILED").stdout
    assert "cli-retry" in failed
    oms(endpoint, "orders", "retry", "cli-retry")
    for _ in range(200):
        v = json.loads(oms(endpoint, "--output", "json", "orders", "show", "cli-retry").stdout)
        if v["status"] == "CANCELLED":
            break
        time.sleep(0.1)
    assert v["status"] == "CANCELLED" and v["refunded_cents"] == v["charged_cents"]
    history = json.loads(oms(endpoint, "--output", "json", "executions", "show", v["execution_arn"]).stdout)
    types = [e["type"] for e in history["events"]]
    assert "ExecutionRedriven" in types and types[-1] == "ExecutionFailed"
    table = oms(endpoint, "executions", "show", v["execution_arn"]).stdout
    assert "RefundPayment" in table
    # An order id will do where the execution's ARN would.
    by_order = json.loads(oms(endpoint, "--output", "json", "executions", "show", "cli-retry").stdout)
    assert by_order == history
    missing = oms(endpoint, "executions", "show", "no-such-order", ok=False)
    assert missing.returncode != 0 and "no-such-order" in missing.stderr
    p = oms(endpoint, "orders", "cancel", "cli-retry", ok=False)
    assert p.returncode != 0 and "CANCELLED" in p.stderr


def test_load_reports_outcomes_and_latency(endpoint):
    out = json.loads(oms(endpoint, "--output", "json", "load", "--orders", "24", "--concurrency", "6",
                         "--fault-rate", "0.1").stdout)
    assert out["orders"] == 24
    assert sum(out["outcomes"].values()) == 24
    assert set(out["outcomes"]) <= {"COMPLETED", "CANCELLED"}, out
    assert out["latency_ms"]["p50"] > 0 and out["latency_ms"]["p99"] >= out["latency_ms"]["p50"]
    assert json.loads(oms(endpoint, "--output", "json", "faults", "show").stdout) == {}


def test_the_startup_hint_carries_what_the_aws_cli_needs(tmp_path):
    """The `aws stepfunctions ...` line oms up prints works on a machine with no AWS
    setup: it names the region and credentials the CLI wants before it sends anything.
    Run as the AWS CLI resolves them (botocore, from the environment alone)."""
    import shlex
    import sys

    data = tmp_path / "data"
    data.mkdir()
    s = Server(data)
    s.start()
    try:
        deadline = time.monotonic() + 10
        while "list-state-machines" not in s.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(l for l in s.log_text().splitlines() if "list-state-machines" in l)
        words = shlex.split(line.split("try", 1)[1])
        env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
        url = words[words.index("--endpoint-url") + 1]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        clean.update(env, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        code = ("import boto3, sys; c = boto3.client('stepfunctions', endpoint_url=sys.argv[1]); "
                "print(len(c.list_state_machines()['stateMachines']))")
        p = subprocess.run([sys.executable, "-c", code, url], env=clean,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, (line, p.stderr)
        assert int(p.stdout) >= 1, p.stdout  # the order saga
    finally:
        s.kill()
