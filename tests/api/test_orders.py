"""The Orders API and the order saga end to end, against a real `oms up`: orders go
through reserve, charge, pick and ship; a business error at any step compensates what
was done; transient errors are retried; a compensation that fails stops the execution
there and a retry (redrive) finishes it; bad input is refused before anything is
written. After every order the books balance: what was charged minus what was refunded
is what completed orders cost, and no stock is left reserved.

The saga has two definitions, statemachines/order-saga.asl.json and its JSONata twin
(order-saga.jsonata.asl.json): every test here runs against each, on a server of its
own started with `--saga-query-language`, with the same expectations. Each case of the
fault matrix also records its orders' outcomes (`same_on_both`): the JSONata run must
end every order exactly as the JSONPath run did."""

import json
import re
import time

import pytest

from conftest import Server

from helpers import Api, make_client, order_body, task_errors

# ASL's names for the two query languages: `oms up --saga-query-language` takes them.
LANGUAGES = ["JSONPath", "JSONata"]


def saga_server(data, language, *extra):
    s = Server(data, extra_args=[*extra, "--fault-injection", "--saga-query-language", language])
    s.start()
    started = s.log_text()
    assert f"({language}, statemachines/" in started, started
    api = Api(s.endpoint)
    api.language = language
    return s, api


@pytest.fixture(scope="module", params=LANGUAGES)
def api(request, tmp_path_factory):
    data = tmp_path_factory.mktemp("orders") / "data"
    data.mkdir()
    s, api = saga_server(data, request.param, "--pick-delay-ms", "20")
    yield api
    s.kill()


# Each fault-matrix case's outcome, by case and then by query language.
OUTCOMES = {}

# What differs between two runs of one case whatever the definition: ids the
# activities make up (charges, payment methods, tracking numbers), and times.
RUN_SPECIFIC = [(re.compile(r"ch_[0-9a-f]+"), "ch_*"), (re.compile(r"pm_[0-9a-f]+"), "pm_*"),
                (re.compile(r"1Z[0-9A-Z]+"), "1Z*")]
TIMES = {"created_at", "updated_at"}


def normalized(value, order_id):
    if isinstance(value, dict):
        return {k: normalized(v, order_id) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [normalized(v, order_id) for v in value]
    if isinstance(value, str):
        value = value.replace(order_id, "<order>")
        for pattern, name in RUN_SPECIFIC:
            value = pattern.sub(name, value)
    return value


def outcome(api, order_id):
    """What the saga did to an order: its view (status, failure, ledger, shipments,
    money), its execution's status, error, cause and output, the states it entered and
    the task errors of its history."""
    # A test may stop waiting when the order's status is final, a step before its
    # execution ends (ShipShipment completes it, then the Map ends): compare ended executions.
    view = api.finish(order_id)
    sfn = make_client(api.endpoint)
    arn = view["execution_arn"]
    d = sfn.describe_execution(executionArn=arn)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    entered = sorted(e["stateEnteredEventDetails"]["name"]
                     for p in pages for e in p["events"] if "stateEnteredEventDetails" in e)
    execution = {k: d.get(k) for k in ("status", "error", "cause")}
    execution["output"] = json.loads(d["output"]) if d.get("output") else None
    return normalized({"view": view, "execution": execution, "entered": entered,
                       "task_errors": task_errors(sfn, arn)}, order_id)


def same_on_both(request, api, order_id, label=""):
    """Records the order's outcome for this case and this definition; once both
    definitions have run the case, they must agree."""
    case = request.node.name.replace(api.language, "*") + label
    seen = OUTCOMES.setdefault(case, {})
    seen[api.language] = outcome(api, order_id)
    if len(seen) == len(LANGUAGES):
        assert seen["JSONata"] == seen["JSONPath"], (case, differences(seen["JSONPath"], seen["JSONata"]))


def differences(a, b, at="$"):
    """Where two outcomes differ, as (path, JSONPath's, JSONata's)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{at}[{i}]")]
    return [] if a == b else [(at, a, b)]


@pytest.fixture(autouse=True)
def no_faults(request):
    # Only for the tests on the module's server: naming `api` here would start it, and
    # cross its languages with manual_api's, for the tests on a server of their own.
    if "api" not in request.fixturenames:
        yield
        return
    api = request.getfixturevalue("api")
    api.ok("DELETE", "/admin/faults")
    yield
    api.ok("DELETE", "/admin/faults")


def steps(view):
    return {(s["step"], s["shipment_id"]): s["status"] for s in view["steps"]}


def test_an_order_completes_and_a_repeat_starts_nothing(request, api):
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
    same_on_both(request, api, body["order_id"])



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


# A business error in the saga's Express child is learnt by running the child again
# (docs/saga.md, "How a business error crosses over"): an injected one must hold for
# both runs, as out-of-stock does while the stock is out. Once only, the second run
# reserves and the order goes on, as it should when stock came back in between.
@pytest.mark.parametrize("fault,token,failed_at", [
    ({"reserve": {"fail_next": 2, "error": "Inventory.OutOfStock"}}, "tok_visa", "ReserveInventory"),
    ({}, "tok_declined", "ChargePayment"),
    ({"pick": {"fail_next": 1, "error": "Pick.ItemDamaged"}}, "tok_visa", "PickShipment"),
    ({"ship": {"fail_next": 1, "error": "Ship.AddressRejected"}}, "tok_visa", "ShipShipment"),
])
def test_a_business_error_compensates_what_was_done(request, api, fault, token, failed_at):
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
    if token == "tok_declined":
        # The ledger keeps why the charge failed after the step is compensated.
        charge = next(s for s in view["steps"] if s["step"] == "charge")
        assert charge["error"]["name"] == "Payment.Declined", charge
        assert charge["error"]["message"], charge
    same_on_both(request, api, body["order_id"])



@pytest.mark.parametrize("activity", ["place", "reserve", "charge", "pick", "ship", "record_status"])
def test_a_transient_error_at_any_step_is_retried(request, api, activity):
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
    same_on_both(request, api, body["order_id"])



@pytest.mark.parametrize("activity", ["cancel_shipment", "restock", "refund", "release"])
def test_a_transient_error_in_a_compensation_is_retried(request, api, activity):
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
    same_on_both(request, api, body["order_id"])



def test_a_failed_compensation_stops_there_and_a_retry_finishes_it(request, api):
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
    assert {"Prepare", "UndoShipments"} <= set(preview["kept"])
    # Cancelling cannot do anything here (the saga is stopped mid-compensation): it is
    # refused with what to do instead, and the view offers only the retry.
    assert view["actions"] == ["retry"], view
    status, out = api.call("POST", f"/orders/{body['order_id']}/cancel")
    assert status == 409 and "COMPENSATION_FAILED" in out["message"] and "retry" in out["message"], out
    assert view["actions_refused"]["cancel"] == out["message"]
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "CANCELLED")
    balanced(api, view, before)
    # A finished order has nothing to retry.
    status, out = api.call("POST", f"/orders/{body['order_id']}/retry")
    assert status == 409 and "CANCELLED" in out["message"]
    assert view["actions"] == [] and view["actions_refused"]["retry"] == out["message"], view
    same_on_both(request, api, body["order_id"])



def test_a_transient_error_that_outlasts_its_retries_waits_for_a_retry(request, api):
    # Five failures outlast the saga's four retries: the execution fails at
    # ShipShipment without compensating (a carrier outage should not cancel orders).
    api.ok("PUT", "/admin/faults", {"ship": {"fail_next": 5, "error": "Activity.Unavailable"}})
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"], timeout=120)
    assert view["execution_status"] == "FAILED"
    assert view["status"] == "FULFILLING", view
    # No step runs to see a cancellation: refused, naming the retry.
    assert view["actions"] == ["retry"], view
    status, out = api.call("POST", f"/orders/{body['order_id']}/cancel")
    assert status == 409 and "retry" in out["message"], out
    preview = api.ok("GET", f"/orders/{body['order_id']}/retry")
    assert "ShipShipment" in preview["will_run_again"], preview
    assert "Prepare" in preview["kept"]
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "COMPLETED")
    assert view["charged_cents"] == view["total_cents"]
    same_on_both(request, api, body["order_id"])



def test_cancelling_a_running_order_compensates_it(request, api):
    before = api.stock()
    api.ok("PUT", "/admin/faults", {"pick": {"latency_ms": 1500}})
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    running = api.wait(body["order_id"], lambda v: v["status"] == "FULFILLING")
    # Waiting for picking: it can still be cancelled, or amended.
    assert running["actions"] == ["cancel", "amend"], running
    out = api.ok("POST", f"/orders/{body['order_id']}/cancel", want=(202,))
    assert out["cancel_requested"] is True
    view = api.finish(body["order_id"])
    assert view["status"] == "CANCELLED", view
    assert view["failure"]["error"] == "Order.Cancelled"
    balanced(api, view, before)
    status, out = api.call("POST", f"/orders/{body['order_id']}/cancel")
    assert status == 409
    same_on_both(request, api, body["order_id"])



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


@pytest.fixture(params=LANGUAGES)
def manual_api(request, tmp_path):
    """A server of its own whose warehouse does not pick by itself."""
    data = tmp_path / "data"
    data.mkdir()
    s, api = saga_server(data, request.param, "--manual-picking")
    yield api
    s.kill()


def answer_pick(api, shipment_id, answer, timeout=20):
    """The warehouse's answer to a pick, once the saga's request has reached it: the
    order shows FULFILLING a moment before PickShipment asks, and an answer to no
    request is refused (409)."""
    deadline = time.monotonic() + timeout
    while True:
        status, out = api.call("POST", f"/shipments/{shipment_id}/picked", answer)
        if status != 409 or "no pick was requested" not in out["message"] or time.monotonic() > deadline:
            assert status == 200, out
            return out
        time.sleep(0.05)


def test_the_warehouse_callback_answers_a_waiting_pick(request, manual_api):
    api = manual_api
    picked = order_body()
    api.ok("POST", "/orders", picked, want=(202,))
    view = api.wait(picked["order_id"], lambda v: v["status"] == "FULFILLING")
    time.sleep(0.3)
    assert api.ok("GET", f"/orders/{picked['order_id']}")["execution_status"] == "RUNNING"
    sid = view["shipments"][0]["shipment_id"]
    out = answer_pick(api, sid, {})
    assert out["status"] == "PICKED"
    assert api.finish(picked["order_id"])["status"] == "COMPLETED"

    damaged = order_body()
    api.ok("POST", "/orders", damaged, want=(202,))
    view = api.wait(damaged["order_id"], lambda v: v["status"] == "FULFILLING" and v["shipments"])
    sid = view["shipments"][0]["shipment_id"]
    out = answer_pick(api, sid, {"damaged": "torn box"})
    assert out["error"] == "Pick.ItemDamaged"
    view = api.finish(damaged["order_id"])
    assert view["status"] == "CANCELLED" and view["failure"]["error"] == "Pick.ItemDamaged"
    same_on_both(request, api, picked["order_id"], "picked")
    same_on_both(request, api, damaged["order_id"], "damaged")



@pytest.mark.parametrize("activity,error,stops_at", [
    ("cancel_shipment", "Shipment.InTransit", "CancelShipment"),
    ("restock", "Shipment.InTransit", "RestockShipment"),
    ("refund", "Payment.RefundRejected", "RefundPayment"),
    ("release", "Order.NotFound", "ReleaseInventory"),
])
def test_a_permanent_failure_of_any_compensation_is_finished_by_a_retry(request, api, activity, error, stops_at):
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
    assert not {"Prepare", "ShipShipment"} & set(preview["will_run_again"])
    api.ok("DELETE", "/admin/faults")
    api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
    view = api.wait(body["order_id"], lambda v: v["status"] == "CANCELLED")
    balanced(api, view, before)
    same_on_both(request, api, body["order_id"])



@pytest.mark.parametrize("timeout_s,heartbeat_s,error", [
    (1, 60, "States.Timeout"),
    (60, 1, "States.HeartbeatTimeout"),
])
def test_a_pick_the_warehouse_never_answers_times_out_and_compensates(request, manual_api, timeout_s,
                                                                      heartbeat_s, error):
    api = manual_api
    before = api.stock()
    body = order_body(options={"pick_timeout_seconds": timeout_s, "pick_heartbeat_seconds": heartbeat_s})
    api.ok("POST", "/orders", body, want=(202,))
    view = api.finish(body["order_id"], timeout=30)
    assert view["status"] == "CANCELLED", view
    assert view["failure"]["error"] == error
    balanced(api, view, before)
    same_on_both(request, api, body["order_id"])
