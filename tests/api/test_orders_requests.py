"""The Orders API's answers to requests that are wrong, late or foreign, against a real
`oms up`: every error is the API's JSON error ({"code", "message"}) with a code that
says what is wrong and a message that names the field and the rule; the warehouse
callback answers with the shipment's real state; cursors and Idempotency-Keys are
checked; and a browser page of another origin cannot change anything."""

import http.client
import json

import pytest

from conftest import Server
from helpers import Api, order_body, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("requests") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--pick-delay-ms", "20", "--fault-injection"])
    s.start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def api(server):
    return Api(server.endpoint)


@pytest.fixture
def manual_api(tmp_path):
    """A server of its own whose warehouse does not pick by itself."""
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, extra_args=["--manual-picking", "--fault-injection"])
    s.start()
    yield Api(s.endpoint)
    s.kill()


def raw(endpoint, method, path, body=None, headers=None):
    """One request exactly as given (no Content-Type unless given): status, headers, body."""
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def json_error(endpoint, method, path, body=None, headers=None):
    """A request that must fail with the API's JSON error: its status and that error."""
    status, hdrs, data = raw(endpoint, method, path, body, headers)
    assert hdrs.get("Content-Type", "").startswith("application/json"), (status, hdrs, data)
    error = json.loads(data)
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), error
    return status, error


# ---- the warehouse callback -----------------------------------------------------------

def first_shipment(api, order_id, status="FULFILLING"):
    view = api.wait(order_id, lambda v: v["status"] == status and v["shipments"])
    return view["shipments"][0]["shipment_id"]


def test_a_repeated_pick_answer_is_idempotent_and_a_late_one_is_refused(manual_api):
    api = manual_api
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    sid = first_shipment(api, body["order_id"])
    # Shipping waits a while, so the shipment stays PICKED for the repeated answers.
    api.ok("PUT", "/admin/faults", {"ship": {"latency_ms": 3000}})
    first = api.ok("POST", f"/shipments/{sid}/picked", {})
    assert first["status"] == "PICKED", first
    status, again = api.call("POST", f"/shipments/{sid}/picked", {})
    assert status == 200 and again == first, again
    status, out = api.call("POST", f"/shipments/{sid}/picked", {"damaged": "torn box"})
    assert status == 409 and out["code"] == "Order.Conflict" and "PICKED" in out["message"], out

    view = api.finish(body["order_id"])
    assert view["status"] == "COMPLETED", view
    assert view["shipments"][0]["status"] == "SHIPPED"
    for answer in ({}, {"damaged": "torn box"}):
        status, out = api.call("POST", f"/shipments/{sid}/picked", answer)
        assert status == 409, (answer, out)
        assert out["code"] == "Order.Conflict" and "SHIPPED" in out["message"], out
    after = api.ok("GET", f"/orders/{body['order_id']}")
    assert after["shipments"] == view["shipments"], "a late answer changes nothing"


def test_a_pick_answer_for_a_cancelled_shipment_is_refused(manual_api):
    api = manual_api
    body = order_body()
    api.ok("POST", "/orders", body, want=(202,))
    sid = first_shipment(api, body["order_id"])
    out = api.ok("POST", f"/shipments/{sid}/picked", {"damaged": "torn box"})
    assert out["error"] == "Pick.ItemDamaged" and out["status"] == "RESERVED", out
    assert out["shipment_id"] == sid
    view = api.finish(body["order_id"])
    assert view["status"] == "CANCELLED" and view["shipments"][0]["status"] == "RELEASED", view
    status, out = api.call("POST", f"/shipments/{sid}/picked", {})
    assert status == 409 and "RELEASED" in out["message"], out


@pytest.mark.parametrize("answer,field", [
    (b"[]", "body"),
    (b'"picked"', "body"),
    (b'{"damaged": 5}', "damaged"),
    (b'{"damaged": null}', "damaged"),
    (b'{"damaged": ""}', "damaged"),
    (b'{"damaged": "torn\\u0007box"}', "damaged"),
    (b'{"picked": true}', "picked"),
])
def test_a_pick_answer_the_schema_refuses_is_a_400_naming_the_field(api, answer, field):
    # Checked before the shipment is looked up: no store read for a malformed answer.
    status, error = json_error(api.endpoint, "POST", "/shipments/nope-1/picked", answer,
                               {"Content-Type": "application/json"})
    assert status == 400, error
    assert error["code"] == "Request.Invalid"
    assert error["fields"][0]["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error


# ---- codes and messages ---------------------------------------------------------------

def test_a_fault_plan_that_is_not_json_is_a_faults_error(api):
    status, error = json_error(api.endpoint, "PUT", "/admin/faults", b"{nope",
                               {"Content-Type": "application/json"})
    assert status == 400 and error["code"] == "Faults.Invalid", error
    assert "not JSON" in error["message"]


def test_every_error_of_the_orders_api_is_json(api):
    e = api.endpoint
    # Just over the 1 MiB the server reads (axum's own limit, 2 MB, let it through).
    huge = b'{"customer_id": "' + b"x" * (1024 * 1024 + 1000) + b'"}'
    status, error = json_error(e, "POST", "/orders", huge, {"Content-Type": "application/json"})
    assert status == 413 and error["code"] == "Request.TooLarge", error
    status, error = json_error(e, "GET", "/no/such/route")
    assert status == 404 and error["code"] == "Route.NotFound", error
    assert "GET /no/such/route" in error["message"]
    status, hdrs, data = raw(e, "DELETE", "/orders")
    error = json.loads(data)
    assert status == 405 and error["code"] == "Route.MethodNotAllowed", error
    assert "DELETE /orders" in error["message"] and "POST" in hdrs["Allow"], (error, hdrs)
    status, error = json_error(e, "POST", "/orders", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in error["message"], error
    status, error = json_error(e, "POST", "/orders", b"{}", {"Content-Type": "text/plain"})
    assert status == 415 and error["code"] == "Request.UnsupportedMediaType", error


def test_the_step_functions_api_keeps_aws_error_shape(api):
    headers = {"Content-Type": "application/x-amz-json-1.0",
               "X-Amz-Target": "AWSStepFunctions.ListStateMachines"}
    status, _, data = raw(api.endpoint, "POST", "/no/such/route", b"{}", headers)
    assert status == 404 and json.loads(data)["__type"] == "UnknownOperationException"
    status, _, data = raw(api.endpoint, "POST", "/", b'{"maxResults": -1}', headers)
    error = json.loads(data)
    assert status == 400 and error["__type"] == "ValidationException", error
    assert "greater than or equal to 0" in error["message"], error
    status, _, data = raw(api.endpoint, "POST", "/", b'{"maxResults": 1001}', headers)
    assert "less than or equal to 1000" in json.loads(data)["message"]


def test_a_control_character_in_a_name_says_so(api):
    body = order_body()
    body["ship_to"]["name"] = "Ada\u0007"
    status, out = api.call("POST", "/orders", body)
    assert status == 400, out
    rules = {f["field"]: f["rule"] for f in out["fields"]}
    assert "control characters" in rules["ship_to.name"], rules
    status, _ = api.call("GET", f"/orders/{body['order_id']}")
    assert status == 404


@pytest.mark.parametrize("limit", ["-1", "0", "501", "ten"])
def test_a_bad_limit_names_the_rule(api, limit):
    status, out = api.call("GET", f"/orders?limit={limit}")
    assert status == 400 and out["message"] == "limit: an integer from 1 to 500", out


def test_cursors_must_be_ones_the_api_issued_for_the_same_filters(api):
    customer = unique("cust-cursor")
    for _ in range(2):
        api.ok("POST", "/orders", order_body(customer_id=customer), want=(202,))
    page = api.ok("GET", f"/orders?customer_id={customer}&limit=1")
    cursor = page["next_cursor"]
    assert cursor, page
    nxt = api.ok("GET", f"/orders?customer_id={customer}&limit=1&cursor={cursor}")
    assert len(nxt["orders"]) == 1 and nxt["orders"][0] != page["orders"][0]
    sk = f"{page['orders'][0]['created_at']}#{page['orders'][0]['order_id']}"
    forged = sk.encode().hex()
    for bad in ["", forged, cursor[:-2] + "00"]:
        status, out = api.call("GET", f"/orders?customer_id={customer}&limit=1&cursor={bad}")
        assert status == 400 and out["message"].startswith("cursor: "), (bad, out)
        assert out["fields"][0]["field"] == "cursor"
    # A cursor of one listing does not resume another.
    status, out = api.call("GET", f"/orders?sku=SOCKS-3PK&cursor={cursor}")
    assert status == 400 and "cursor" in out["message"], out


def test_a_reused_idempotency_key_does_not_reveal_the_other_order(api):
    key = {"Idempotency-Key": unique("key")}
    body = order_body()
    del body["order_id"]
    status, first = api.call("POST", "/orders", body, headers=key)
    assert status == 202, first
    status, again = api.call("POST", "/orders", body, headers=key)
    assert status == 202 and again["order_id"] == first["order_id"], "same key, same order"
    other = dict(body, lines=[{"sku": "TSHIRT-BLK-M", "quantity": 1}])
    status, out = api.call("POST", "/orders", other, headers=key)
    assert status == 422 and out["code"] == "IdempotencyKey.Reused", out
    assert first["order_id"] not in json.dumps(out), out


# ---- requests from other sites --------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_declared_json_is_a_415_and_places_nothing(api, content_type):
    body = order_body(customer_id="cust-415")
    headers = {"Content-Type": content_type} if content_type else {}
    status, error = json_error(api.endpoint, "POST", "/orders", json.dumps(body).encode(), headers)
    assert status == 415 and error["code"] == "Request.UnsupportedMediaType", error
    assert "application/json" in error["message"]
    assert api.call("GET", f"/orders/{body['order_id']}")[0] == 404
    status, error = json_error(api.endpoint, "PUT", "/admin/faults", b"{}", headers)
    assert status == 415, error


def test_a_state_change_from_another_origin_is_a_403(server, api):
    evil = {"Origin": "http://evil.example:8080"}
    body = order_body(customer_id="cust-403")
    for method, path, data in [("POST", "/orders", body),
                               ("POST", f"/orders/{body['order_id']}/cancel", None),
                               ("POST", f"/orders/{body['order_id']}/retry", None),
                               ("POST", "/shipments/x-1/picked", {}),
                               ("PUT", "/admin/faults", {}),
                               ("DELETE", "/admin/faults", None)]:
        status, out = api.call(method, path, data, headers=evil)
        assert status == 403 and out["code"] == "Request.CrossOrigin", (method, path, out)
    # A page of another port on the same host is another origin too; "null" (a
    # sandboxed page) is no origin.
    for origin in [f"http://127.0.0.1:{server.port + 1}", "null", f"http://localhost:{server.port}"]:
        status, out = api.call("POST", "/orders", body, headers={"Origin": origin})
        assert status == 403, (origin, out)
    assert api.call("GET", f"/orders/{body['order_id']}")[0] == 404
    # Reads are not refused, and neither is the server's own origin (the console).
    status, _ = api.call("GET", "/inventory", headers=evil)
    assert status == 200
    own = {"Origin": f"http://127.0.0.1:{server.port}"}
    status, out = api.call("POST", "/orders", body, headers=own)
    assert status == 202, out
    api.finish(body["order_id"])
