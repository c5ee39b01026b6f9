"""The numbers the business reads, against a real `oms up`: `GET /metrics` parsed with
Prometheus's own Python parser moves as orders complete, compensate and are retried,
and `oms export orders` writes tables whose totals are what the Orders API reports."""

import csv
import datetime
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, oms_bin
from helpers import Api, order_body

SAGA = "order-saga"
# The saga's Express child, which runs its forward steps that do not wait (docs/saga.md).
PREPARE = "order-prepare"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("analytics") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--fault-injection", "--pick-delay-ms", "20"])
    s.start()
    try:
        yield s, Api(s.endpoint)
    finally:
        s.kill()


def scrape(api):
    """Every sample of GET /metrics as {(name, sorted labels): value}."""
    import urllib.request
    with urllib.request.urlopen(api.endpoint + "/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_metric(api, name, want, timeout=20, **labels):
    """The orders gauge is counted at most every 5 s: wait for it to catch up."""
    deadline = time.monotonic() + timeout
    while True:
        got = value(scrape(api), name, **labels)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_metrics_move_with_orders_compensations_and_redrives(served):
    _, api = served
    before = scrape(api)
    assert value(before, "oms_executions_running") == 0
    completed = [order_body() for _ in range(2)]
    declined = order_body(payment={"token": "tok_declined"})
    for body in [*completed, declined]:
        api.ok("POST", "/orders", body, want=(202,))
    for body in [*completed, declined]:
        api.finish(body["order_id"])
    # A compensation that fails, then a retry (a redrive) that finishes it.
    api.ok("PUT", "/admin/faults", {
        "ship": {"fail_next": 1, "error": "Ship.AddressRejected"},
        "refund": {"fail_next": 1, "error": "Payment.RefundRejected"},
    })
    stuck = order_body()
    api.ok("POST", "/orders", stuck, want=(202,))
    assert api.finish(stuck["order_id"])["status"] == "COMPENSATION_FAILED"
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{stuck['order_id']}/retry", want=(202,))
    api.wait(stuck["order_id"], lambda v: v["status"] == "CANCELLED")

    after = scrape(api)
    moved = lambda name, **l: value(after, name, **l) - value(before, name, **l)  # noqa: E731
    assert moved("oms_executions_started_total", machine=SAGA) == 4
    assert moved("oms_executions_closed_total", machine=SAGA, status="SUCCEEDED") == 2
    # ChargePayment ran for every order, in the child; its latency was observed each
    # time (the declined order's child ran twice: its business error is asked again).
    assert moved("oms_saga_step_seconds_count", machine=PREPARE, state="ChargePayment") == 5
    assert moved("oms_saga_step_seconds_sum", machine=PREPARE, state="ChargePayment") > 0
    assert moved("oms_activity_errors_total", machine=PREPARE, state="ChargePayment",
                 error="Payment.Declined") == 2
    # The declined charge is caught in both of the child's runs: the first fails with
    # it, the reporting one hands it to the saga's compensations.
    assert moved("oms_saga_compensations_total", machine=PREPARE, step="ChargePayment",
                 error="Payment.Declined") == 2
    assert moved("oms_saga_compensations_total", machine=SAGA, step="FulfilShipments",
                 error="Ship.AddressRejected") == 1
    assert moved("oms_redrives_total", machine=SAGA, step="RefundPayment",
                 error="Payment.RefundRejected") == 1
    assert moved("oms_store_commit_seconds_count", outcome="committed") > 0
    # Every answer waited for an fsync of what it told: the syncer's are counted.
    assert moved("oms_store_fsync_seconds_count", outcome="synced") > 0
    assert moved("oms_store_fsync_seconds_sum", outcome="synced") > 0
    assert moved("oms_store_commit_writes_total", outcome="committed") >= \
        moved("oms_store_commit_seconds_count", outcome="committed")
    # Each step reads again the order a step before it wrote: the cache answers.
    assert moved("oms_order_store_gets_total", answered="cache") > \
        moved("oms_order_store_gets_total", answered="table")
    assert wait_metric(api, "oms_orders", 2, status="COMPLETED") == 2
    assert wait_metric(api, "oms_orders", 2, status="CANCELLED") == 2
    assert value(scrape(api), "oms_executions_running") == 0


def test_an_export_holds_the_totals_the_api_reports(served, tmp_path):
    server, api = served
    # From just before this test's orders: the export holds exactly them.
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(milliseconds=5))
    bodies = [order_body(lines=[{"sku": "MUG-WHITE", "quantity": q}]) for q in (1, 2, 3)]
    for body in bodies:
        api.ok("POST", "/orders", body, want=(202,))
    views = {b["order_id"]: api.finish(b["order_id"]) for b in bodies}
    out = tmp_path / "export"
    run = subprocess.run(
        [oms_bin(), "export", "orders", "--since", since.isoformat(), "--format", "csv",
         "--output-dir", str(out), "--data-dir", server.data_dir],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "exported 3 orders, 3 lines" in run.stdout, run.stdout
    with open(out / "orders" / "orders.csv", newline="") as f:
        orders = {r["order_id"]: r for r in csv.DictReader(f)}
    with open(out / "lines" / "lines.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert set(orders) == set(views)
    for order_id, view in views.items():
        row = orders[order_id]
        assert (int(row["total_cents"]), row["status"]) == (view["total_cents"], view["status"])
        assert int(row["charged_cents"]) == view["charged_cents"]
    assert sum(int(r["quantity"]) for r in lines) == 6
    assert sum(int(r["line_total_cents"]) for r in lines) == sum(v["total_cents"] for v in views.values())


def test_an_export_of_a_data_dir_that_is_not_one_says_so(tmp_path):
    run = subprocess.run(
        [oms_bin(), "export", "orders", "--since", "2026-01-01", "--output-dir", str(tmp_path / "o"),
         "--data-dir", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "--data-dir" in run.stderr and "no oms.sqlite3" in run.stderr, run.stderr
