"""The Orders API and the order saga end to end, against a real `oms up`: orders go
through reserve, charge, pick and ship; a business error at any step compensates what
was done; transient errors are retried; a compensation that fails stops the execution
there and a retry (redrive) finishes it; bad input is refused before anything is
written. After every order the books balance: what was charged minus what was refunded
is what completed orders cost, and no stock is left reserved."""

import time

import pytest

from conftest import Server

from helpers import Api, make_client, order_body, task_errors


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("orders") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--pick-delay-ms", "20", "--fault-injection"])
    s.start()
    yield Api(s.endpoint)
    s.kill()


@pytest.fixture(autouse=True)
def no_faults(api):
    api.ok("DELETE", "/admin/faults")
    yield
    api.ok("DELETE", "/admin/faults")


def steps(view):
    return {(s["step"], s["shipment_id"]): s["status"] for s in view["steps"]}


def test_an_order_completes_and_a_repeat_starts_nothing(api):
    before = api.stock()
    body = order_body(lines=[{"sku": "TSHIRT-BLK-M", "quantity": 2}])
    first = api.ok("POST", "/orders", body, want=(202,))
    assert first["execution_arn"].endswith(":order-saga:" + body["order_id"])
    again = api.ok("POST", "/orders", body, want=(202,))
    assert again["execution_arn"] == first["execution_arn"]
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPLETED", view
    assert view["execution_status"] == "SUCCEEDED"
    assert view["total_cents"] == view["charged_cents"] == 2 * 1999
    assert view["refunded_cents"] == 0
    assert [s["status"] for s in view["shipments"]] == ["SHIPPED"]
    assert view["shipments"][0]["tracking_number"].startswith("1Z")
    assert set(steps(view).values()) == {"DONE"}
    after = api.stock()
    nj = ("TSHIRT-BLK-M", "WH-NJ")
    assert after[nj] == (before[nj][0] - 2, 0, before[nj][2] + 2)
    # The same order again after it finished still starts nothing.
    assert api.ok("POST", "/orders", body, want=(202,))["execution_arn"] == first["execution_arn"]


def test_idempotency_key_names_the_order(api):
    body = order_body()
    del body["order_id"]
    key = {"Idempotency-Key": "key-" + str(time.time())}
    status, first = api.call("POST", "/orders", body, headers=key)
    assert status == 202
    status, again = api.call("POST", "/orders", body, headers=key)
    assert status == 202 and again["order_id"] == first["order_id"]
    assert again["execution_arn"] == first["execution_arn"]
    status, other = api.call("POST", "/orders", body)
    assert status == 202 and other["order_id"] != first["order_id"], "no key, a new order"
    api.finish(first["order_id"])
    api.finish(other["order_id"])


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b["lines"][0].update(quantity=-1), "lines[0].quantity"),
    (lambda b: b["lines"][0].update(sku="NO-SUCH-SKU"), "lines[0].sku"),
    (lambda b: b["ship_to"].update(country="ZZ"), "ship_to.country"),
    (lambda b: b["payment"].update(token="4111111111111111"), "payment.token"),
    (lambda b: b.pop("customer_id"), "customer_id"),
    (lambda b: b.update(lines=[]), "lines"),
])
def test_bad_orders_are_refused_with_the_field_and_nothing_is_written(api, mutate, field):
    body = order_body(customer_id="cust-bad")
    mutate(body)
    status, out = api.call("POST", "/orders", body)
    assert status == 400, out
    assert out["code"] == "Order.Invalid"
    assert any(f["field"] == field for f in out["fields"]), out
    status, _ = api.call("GET", f"/orders/{body['order_id']}")
    assert status == 404


def test_not_json_is_a_400(api):
    status, out = api.call("POST", "/orders", b"{nope")
    assert status == 400 and out["code"] == "Order.Invalid" and "not JSON" in out["message"]


def balanced(api, view, before):
    after = api.stock()
    assert after == before, "stock is back where it was"
    assert view["charged_cents"] == view["refunded_cents"]


@pytest.mark.parametrize("fault,token,failed_at", [
    ({"reserve": {"fail_next": 1, "error": "Inventory.OutOfStock"}}, "tok_visa", "ReserveInventory"),
    ({}, "tok_declined", "ChargePayment"),
    ({"pick": {"fail_next": 1, "error": "Pick.ItemDamaged"}}, "tok_visa", "PickShipment"),
    ({"ship": {"fail_next": 1, "error": "Ship.AddressRejected"}}, "tok_visa", "ShipShipment"),
])
def test_a_business_error_compensates_what_was_done(api, fault, token, failed_at):
    before = api.stock()
    if fault:
        api.ok("PUT", "/admin/faults", fault)
    body = order_body(payment={"token": token}, lines=[{"sku": "MUG-WHITE", "quantity": 1}])
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "CANCELLED", view
    assert view["failure"]["step"] == failed_at
    if failed_at in ("PickShipment", "ShipShipment"):
        assert view["failure"]["caught_by"] == "FulfilShipments"
    balanced(api, view, before)
    for (step, _), status in steps(view).items():
        assert status in ("COMPENSATED", "FAILED"), (step, status)


@pytest.mark.parametrize("activity", ["place", "reserve", "charge", "pick", "ship", "record_status"])
def test_a_transient_error_at_any_step_is_retried(api, activity):
    error = "Payment.GatewayTimeout" if activity == "charge" else "Activity.Unavailable"
    api.ok("PUT", "/admin/faults", {activity: {"fail_next": 1, "error": error, "after_effect": activity != "place"}})
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPLETED", view
    assert view["charged_cents"] == view["total_cents"]
    # The fault was injected and retried past by the saga's Retry, not skipped: used
    # up, and in the history (the Orders API places the order without retrying; the
    # saga's PlaceOrder finds it and is where a fault in placing shows).
    assert api.ok("GET", "/admin/faults")[activity]["fail_next"] == 0
    assert task_errors(make_client(api.endpoint), view["execution_arn"]) == [error]


@pytest.mark.parametrize("activity", ["cancel_shipment", "restock", "refund", "release"])
def test_a_transient_error_in_a_compensation_is_retried(api, activity):
    before = api.stock()
    error = "Payment.GatewayTimeout" if activity == "refund" else "Activity.Unavailable"
    api.ok("PUT", "/admin/faults", {
        "ship": {"fail_next": 1, "error": "Ship.AddressRejected"},
        activity: {"fail_next": 1, "error": error, "after_effect": True},
    })
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "CANCELLED", view
    balanced(api, view, before)
    assert task_errors(make_client(api.endpoint), view["execution_arn"]) == ["Ship.AddressRejected", error]


def test_a_failed_compensation_stops_there_and_a_retry_finishes_it(api):
    before = api.stock()
    api.ok("PUT", "/admin/faults", {
        "ship": {"fail_next": 1, "error": "Ship.AddressRejected"},
        "refund": {"fail_next": 1, "error": "Payment.RefundRejected"},
    })
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPENSATION_FAILED", view
    assert view["failure"]["error"] == "Payment.RefundRejected"
    assert view["failure"]["step"] == "RefundPayment"
    assert view["charged_cents"] > 0 and view["refunded_cents"] == 0
    preview = api.ok("GET", f"/orders/{body['order_id']}/retry")
    assert preview["retryable"] is True
    assert preview["will_run_again"] == ["RefundPayment"], preview
    assert "ShipShipment" not in preview["will_run_again"]
    assert {"ReserveInventory", "ChargePayment", "UndoShipments"} <= set(preview["kept"])
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "CANCELLED")
    balanced(api, view, before)
    # A finished order has nothing to retry.
    status, out = api.call("POST", f"/orders/{body['order_id']}/retry")
    assert status == 409 and "CANCELLED" in out["message"]


def test_a_transient_error_that_outlasts_its_retries_waits_for_a_retry(api):
    # Five failures outlast the saga's four retries: the execution fails at
    # ShipShipment without compensating (a carrier outage should not cancel orders).
    api.ok("PUT", "/admin/faults", {"ship": {"fail_next": 5, "error": "Activity.Unavailable"}})
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"], timeout=120)
    assert view["execution_status"] == "FAILED"
    assert view["status"] == "FULFILLING", view
    preview = api.ok("GET", f"/orders/{body['order_id']}/retry")
    assert "ShipShipment" in preview["will_run_again"], preview
    assert "ChargePayment" in preview["kept"]
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "COMPLETED")
    assert view["charged_cents"] == view["total_cents"]


def test_cancelling_a_running_order_compensates_it(api):
    before = api.stock()
    api.ok("PUT", "/admin/faults", {"pick": {"latency_ms": 1500}})
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    api.wait(body["order_id"], lambda v: v["status"] == "FULFILLING")
    out = api.ok("POST", f"/orders/{body['order_id']}/cancel", want=(202,))
    assert out["cancel_requested"] is True
    view = api.finish(body["order_id"])
    assert view["status"] == "CANCELLED", view
    assert view["failure"]["error"] == "Order.Cancelled"
    balanced(api, view, before)
    status, out = api.call("POST", f"/orders/{body['order_id']}/cancel")
    assert status == 409


def test_search_by_customer_sku_and_status(api):
    mine = order_body(customer_id="cust-search", lines=[{"sku": "CAP-NAVY", "quantity": 1}])
    api.ok("POST", "/orders", mine, want=(202,))
    api.finish(mine["order_id"])
    found = api.ok("GET", "/orders?customer_id=cust-search")["orders"]
    assert [o["order_id"] for o in found] == [mine["order_id"]]
    by_sku = api.ok("GET", "/orders?sku=CAP-NAVY&status=COMPLETED")["orders"]
    assert mine["order_id"] in [o["order_id"] for o in by_sku]
    page = api.ok("GET", "/orders?limit=1")
    assert len(page["orders"]) == 1 and page["next_cursor"]
    nxt = api.ok("GET", f"/orders?limit=1&cursor={page['next_cursor']}")
    assert nxt["orders"][0]["order_id"] != page["orders"][0]["order_id"]
    status, out = api.call("GET", "/orders?status=LOST")
    assert status == 400 and "status" in out["message"]


def test_paging_reads_every_order_once_newest_first(api):
    two_skus = order_body(customer_id="cust-paging", lines=[{"sku": "SOCKS-3PK", "quantity": 1},
                                                             {"sku": "MUG-WHITE", "quantity": 1}])
    api.ok("POST", "/orders", two_skus, want=(202,))
    api.finish(two_skus["order_id"])
    for sku in ("SOCKS-3PK", "MUG-WHITE"):
        found = api.ok("GET", f"/orders?sku={sku}&limit=500")["orders"]
        assert two_skus["order_id"] in [o["order_id"] for o in found], sku
    everything = api.ok("GET", "/orders?limit=500")["orders"]
    assert len(everything) > 5
    created = [o["created_at"] for o in everything]
    assert created == sorted(created, reverse=True)
    paged, cursor = [], None
    while True:
        page = api.ok("GET", "/orders?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        paged += [o["order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert paged == [o["order_id"] for o in everything]
    status, out = api.call("GET", "/orders?cursor=not-a-cursor")
    assert status == 400 and "cursor" in out["message"]


def test_openapi_describes_the_routes(api):
    doc = api.ok("GET", "/openapi.json")
    assert {"/orders", "/orders/{id}", "/orders/{id}/retry", "/admin/faults", "/inventory",
            "/shipments/{id}/picked", "/orders/{id}/cancel"} <= set(doc["paths"])


def test_a_bad_fault_plan_is_refused(api):
    status, out = api.call("PUT", "/admin/faults", {"teleport": {"fail_next": 1, "error": "Pick.ItemDamaged"}})
    assert status == 400 and "teleport" in out["message"]
    status, out = api.call("PUT", "/admin/faults", {"pick": {"fail_next": "x"}})
    assert status == 400 and "pick.fail_next" in out["message"]


@pytest.fixture
def manual_api(tmp_path):
    """A server of its own whose warehouse does not pick by itself."""
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, extra_args=["--manual-picking", "--fault-injection"])
    s.start()
    yield Api(s.endpoint)
    s.kill()


def test_the_warehouse_callback_answers_a_waiting_pick(manual_api):
    api = manual_api
    picked = order_body()
    api.ok("POST", "/orders", picked, want=(202,))
    view = api.wait(picked["order_id"], lambda v: v["status"] == "FULFILLING")
    time.sleep(0.3)
    assert api.ok("GET", f"/orders/{picked['order_id']}")["execution_status"] == "RUNNING"
    sid = view["shipments"][0]["shipment_id"]
    out = api.ok("POST", f"/shipments/{sid}/picked", {})
    assert out["status"] == "PICKED"
    assert api.finish(picked["order_id"])["status"] == "COMPLETED"

    damaged = order_body()
    api.ok("POST", "/orders", damaged, want=(202,))
    view = api.wait(damaged["order_id"], lambda v: v["status"] == "FULFILLING" and v["shipments"])
    sid = view["shipments"][0]["shipment_id"]
    out = api.ok("POST", f"/shipments/{sid}/picked", {"damaged": "torn box"})
    assert out["error"] == "Pick.ItemDamaged"
    view = api.finish(damaged["order_id"])
    assert view["status"] == "CANCELLED" and view["failure"]["error"] == "Pick.ItemDamaged"


@pytest.mark.parametrize("activity,error,stops_at", [
    ("cancel_shipment", "Shipment.InTransit", "CancelShipment"),
    ("restock", "Shipment.InTransit", "RestockShipment"),
    ("refund", "Payment.RefundRejected", "RefundPayment"),
    ("release", "Order.NotFound", "ReleaseInventory"),
])
def test_a_permanent_failure_of_any_compensation_is_finished_by_a_retry(api, activity, error, stops_at):
    before = api.stock()
    api.ok("PUT", "/admin/faults", {
        "ship": {"fail_next": 1, "error": "Ship.AddressRejected"},
        activity: {"fail_next": 1, "error": error},
    })
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"])
    assert view["status"] == "COMPENSATION_FAILED", view
    assert view["failure"]["step"] == stops_at and view["failure"]["error"] == error
    preview = api.ok("GET", f"/orders/{body['order_id']}/retry")
    assert stops_at in preview["will_run_again"], preview
    assert not {"ReserveInventory", "ChargePayment", "ShipShipment"} & set(preview["will_run_again"])
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "CANCELLED")
    balanced(api, view, before)


def test_a_pick_the_warehouse_never_answers_times_out_and_compensates(manual_api):
    api = manual_api
    before = api.stock()
    body = order_body(options={"pick_timeout_seconds": 1, "pick_heartbeat_seconds": 60})
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"], timeout=30)
    assert view["status"] == "CANCELLED", view
    assert view["failure"]["error"] == "States.Timeout"
    balanced(api, view, before)

