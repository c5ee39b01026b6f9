"""Order amendments (PATCH /orders/{id}, activities/src/amend.rs, statemachines/
order-amend.asl.json) against a real `oms up` whose warehouse picks only when told
(--manual-picking), so every order waits before picking for as long as a test needs.

Each case amends an order, waits for its amendment to end, then has the warehouse pick
and ship it: the order completes with what the amendment made of it, the gateway's
charges minus refunds are its total, and the stock moved is exactly its lines (nothing
is left reserved). A refused or failed amendment leaves the order as it was."""

import json
import re
import subprocess

import pytest

from conftest import Server, oms_bin

from helpers import ADDRESS, Api, order_body

BOSTON = dict(ADDRESS)
# WH-NJ stocks T-shirts, mugs and socks (activities/src/seed.rs): a Boston order's one
# shipment comes from there, and an amendment adds units only at its warehouses.
PRICES = {"TSHIRT-BLK-M": 1999, "MUG-WHITE": 1250, "SOCKS-3PK": 899}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("amend") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--manual-picking"])
    s.start()
    yield s
    s.kill()


@pytest.fixture
def api(server):
    return Api(server.endpoint)


def waiting(api, lines):
    """A new order, FULFILLING: its saga waits for the warehouse to pick."""
    body = order_body(lines=lines)
    api.ok("POST", "/orders", body, want=(202,))
    return api.wait(body["order_id"], lambda v: v["status"] == "FULFILLING" and all(
        s.get("status") == "RESERVED" for s in v["shipments"]) and v["shipments"])


def amend(api, view, by="assoc-7", **change):
    status, out = api.call("PATCH", f"/orders/{view['order_id']}",
                           {"version": view["version"], **change}, headers={"X-Oms-Associate": by})
    assert status == 202, out
    assert out["status"] == "RUNNING"
    return ended(api, view["order_id"], out["amendment_id"])


def ended(api, order_id, amendment_id):
    def done(v):
        a = [a for a in v["amendments"] if a["amendment_id"] == amendment_id]
        return a and a[0]["status"] != "RUNNING"
    return api.wait(order_id, done, timeout=30)


def pick_all(api, view):
    for s in view["shipments"]:
        if s["status"] != "RESERVED":
            continue
        for _ in range(200):
            status, out = api.call("POST", f"/shipments/{s['shipment_id']}/picked", {})
            if status == 200:
                break
            assert status in (409, 503), out  # the saga's request has not arrived yet
            api.wait(view["order_id"], lambda v: True)
        else:
            pytest.fail(f"{s['shipment_id']} was never picked")
    return api.finish(view["order_id"])


def units(lines):
    return {l["sku"]: l["quantity"] for l in lines}


def completed_as_amended(api, view, stock_before):
    """Picks and ships the order: it completes with its amended lines, money adds up,
    and the stock moved is what it holds."""
    done = pick_all(api, view)
    assert done["status"] == "COMPLETED", done
    assert done["charged_cents"] - done["refunded_cents"] == done["total_cents"]
    assert done["total_cents"] == sum(PRICES[l["sku"]] * l["quantity"] for l in done["lines"])
    shipped = {}
    for s in done["shipments"]:
        for l in s["lines"]:
            shipped[l["sku"]] = shipped.get(l["sku"], 0) + l["quantity"]
    assert shipped == units(done["lines"])
    after = api.stock()
    for (sku, wh), (on_hand, reserved, moved) in after.items():
        was = stock_before[(sku, wh)]
        assert reserved == was[1], (sku, wh, "nothing stays reserved")
        assert was[0] - on_hand == moved - was[2]
    total_shipped = {}
    for (sku, wh), (_, _, moved) in after.items():
        total_shipped[sku] = total_shipped.get(sku, 0) + moved - stock_before[(sku, wh)][2]
    assert {k: v for k, v in total_shipped.items() if v} == units(done["lines"])
    return done


def reserved_at(api, sku, warehouse="WH-NJ"):
    return api.stock()[(sku, warehouse)][1]


# ---- amendments that apply ---------------------------------------------------------

CASES = {
    "address": dict(start=[("TSHIRT-BLK-M", 1)], ship_to=dict(BOSTON, line1="9 Elm St", name="Ada L."),
                    lines=None),
    "quantity_up": dict(start=[("TSHIRT-BLK-M", 1)], ship_to=None, lines=[("TSHIRT-BLK-M", 3)]),
    "quantity_down": dict(start=[("TSHIRT-BLK-M", 4)], ship_to=None, lines=[("TSHIRT-BLK-M", 1)]),
    "add_line": dict(start=[("TSHIRT-BLK-M", 1)], ship_to=None,
                     lines=[("TSHIRT-BLK-M", 1), ("MUG-WHITE", 2)]),
    "remove_line": dict(start=[("TSHIRT-BLK-M", 1), ("SOCKS-3PK", 2)], ship_to=None,
                        lines=[("SOCKS-3PK", 2)]),
    "swap_and_readdress": dict(start=[("TSHIRT-BLK-M", 2)], ship_to=dict(BOSTON, city="Cambridge"),
                               lines=[("MUG-WHITE", 1), ("SOCKS-3PK", 5)]),
}


def as_lines(pairs):
    return [{"sku": s, "quantity": q} for s, q in pairs]


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_amendment_before_picking_applies_and_the_books_add_up(api, case):
    c = CASES[case]
    before = api.stock()
    view = waiting(api, as_lines(c["start"]))
    old_total = view["total_cents"]
    reserved_before = {sku: reserved_at(api, sku) for sku in PRICES}
    change = {}
    if c["ship_to"]:
        change["ship_to"] = c["ship_to"]
    if c["lines"]:
        change["lines"] = as_lines(c["lines"])
    after = amend(api, view, **change)
    a = after["amendments"][-1]
    assert a["status"] == "APPLIED", a
    assert a["by"] == "assoc-7" and a["at"] and "target" not in a
    assert after["version"] > view["version"]
    want_lines = units(as_lines(c["lines"] or c["start"]))
    assert units(after["lines"]) == want_lines
    assert after["ship_to"] == (c["ship_to"] or view["ship_to"])
    if c["ship_to"]:
        assert a["changes"]["ship_to"] == {"from": view["ship_to"], "to": c["ship_to"]}
    new_total = sum(PRICES[s] * q for s, q in want_lines.items())
    assert after["total_cents"] == new_total
    # Stock: the units added are reserved, the units taken off are released, now.
    old_units = units(as_lines(c["start"]))
    for sku in PRICES:
        delta = want_lines.get(sku, 0) - old_units.get(sku, 0)
        assert reserved_at(api, sku) - reserved_before[sku] == delta, sku
    if new_total != old_total:
        # Charged anew for the new total, the old charge refunded.
        assert a["changes"]["total_cents"] == {"from": old_total, "to": new_total}
        assert after["charged_cents"] == old_total + new_total
        assert after["refunded_cents"] == old_total
    else:
        assert (after["charged_cents"], after["refunded_cents"]) == (old_total, 0)
    completed_as_amended(api, after, before)


def test_two_amendments_in_a_row_each_need_the_version_the_last_one_left(api):
    before = api.stock()
    view = waiting(api, as_lines([("SOCKS-3PK", 1)]))
    first = amend(api, view, lines=as_lines([("SOCKS-3PK", 2)]))
    status, out = api.call("PATCH", f"/orders/{view['order_id']}",
                           {"version": view["version"], "lines": as_lines([("SOCKS-3PK", 3)])})
    assert status == 409 and out["code"] == "Order.VersionStale", out
    assert f"version {first['version']}" in out["message"]
    second = amend(api, first, by="api", lines=as_lines([("SOCKS-3PK", 3)]))
    assert [a["amendment_id"] for a in second["amendments"]] == ["amd-1", "amd-2"]
    assert second["amendments"][1]["changes"]["lines"] == [{"sku": "SOCKS-3PK", "from": 2, "to": 3}]
    done = completed_as_amended(api, second, before)
    assert done["charged_cents"] == 899 * (1 + 2 + 3) and done["refunded_cents"] == 899 * (1 + 2)


# ---- amendments that are refused or fail ------------------------------------------


def test_once_a_shipment_is_picked_the_order_cannot_be_amended(api):
    # No warehouse has both: two shipments, one picked while the other waits.
    view = waiting(api, as_lines([("HOODIE-GRY-L", 1), ("CAP-NAVY", 1)]))
    assert len(view["shipments"]) == 2, view["shipments"]
    sid = view["shipments"][0]["shipment_id"]
    for _ in range(100):
        status, out = api.call("POST", f"/shipments/{sid}/picked", {})
        if status == 200:
            break
        api.wait(view["order_id"], lambda v: True)
    assert status == 200, out
    status, out = api.call("PATCH", f"/orders/{view['order_id']}",
                           {"version": view["version"], "ship_to": dict(BOSTON, line1="2 Oak St")})
    assert status == 409 and out["code"] == "Order.NotAmendable", out
    # Picked, or already shipped (ShipShipment follows the pick at once).
    assert re.search(rf"shipment {sid} is (PICKED|SHIPPED): an order is amended only before any "
                     r"shipment is picked", out["message"]), out
    done = pick_all(api, api.ok("GET", f"/orders/{view['order_id']}"))
    assert done["status"] == "COMPLETED" and done["ship_to"] == view["ship_to"]
    assert done["amendments"] == []


def test_a_finished_order_cannot_be_amended(api):
    view = waiting(api, as_lines([("SOCKS-3PK", 1)]))
    done = pick_all(api, view)
    status, out = api.call("PATCH", f"/orders/{view['order_id']}",
                           {"version": done["version"], "lines": as_lines([("SOCKS-3PK", 2)])})
    assert status == 409 and out["code"] == "Order.NotAmendable", out
    assert "COMPLETED" in out["message"], out


@pytest.mark.parametrize("lines,ship_to,error", [
    # The carrier refuses the new address after the units were reserved and charged:
    # both are undone, in reverse.
    ([("TSHIRT-BLK-M", 3)], dict(BOSTON, postal_code="00000"), "Ship.AddressRejected"),
    # Hoodies are not stocked at WH-NJ: an amendment adds no warehouse.
    ([("TSHIRT-BLK-M", 1), ("HOODIE-GRY-L", 1)], None, "Inventory.OutOfStock"),
])
def test_a_failing_step_compensates_and_the_order_is_as_it_was(api, lines, ship_to, error):
    before = api.stock()
    view = waiting(api, as_lines([("TSHIRT-BLK-M", 1)]))
    reserved = reserved_at(api, "TSHIRT-BLK-M")
    change = {"lines": as_lines(lines)}
    if ship_to:
        change["ship_to"] = ship_to
    after = amend(api, view, **change)
    a = after["amendments"][-1]
    assert a["status"] == "FAILED" and a["reason"].startswith(error), a
    assert units(after["lines"]) == {"TSHIRT-BLK-M": 1}
    assert after["ship_to"] == view["ship_to"] and after["total_cents"] == view["total_cents"]
    assert reserved_at(api, "TSHIRT-BLK-M") == reserved
    # What the amendment charged it refunded: the order's net is unchanged.
    assert after["charged_cents"] - after["refunded_cents"] == view["total_cents"]
    steps = {(s["step"], s.get("shipment_id")): s["status"] for s in after["steps"]}
    if error == "Ship.AddressRejected":
        assert steps[("amend_reserve", "amd-1")] == "COMPENSATED"
        assert steps[("amend_charge", "amd-1")] == "COMPENSATED"
        assert steps[("amend_apply", "amd-1")] == "FAILED"
    # The lock is released: the order can be amended again, and completes.
    again = amend(api, after, lines=as_lines([("TSHIRT-BLK-M", 2)]))
    assert again["amendments"][-1]["status"] == "APPLIED"
    completed_as_amended(api, again, before)


@pytest.mark.parametrize("body,field", [
    ({"lines": [{"sku": "TSHIRT-BLK-M", "quantity": 0}]}, "lines[0].quantity"),
    ({"lines": [{"sku": "NOPE", "quantity": 1}]}, "lines[0].sku"),
    ({"lines": []}, "lines"),
    ({"ship_to": dict(BOSTON, country="ZZ")}, "ship_to.country"),
    ({"color": "red"}, "color"),
    ({"version": -1}, "version"),
    ({"version": "3"}, "version"),
])
def test_bad_fields_are_400_naming_the_field_and_change_nothing(api, body, field):
    view = waiting(api, as_lines([("SOCKS-3PK", 1)]))
    status, out = api.call("PATCH", f"/orders/{view['order_id']}", {"version": view["version"], **body})
    assert status == 400, out
    assert field in [f["field"] for f in out["fields"]], out
    status, out = api.call("PATCH", f"/orders/{view['order_id']}", {"version": view["version"]})
    assert status == 400 and "changes nothing" in out["message"], out
    status, out = api.call("PATCH", f"/orders/{view['order_id']}", {"version": view["version"],
                           "ship_to": BOSTON}, headers={"X-Oms-Associate": "bad name!"})
    assert status == 400 and out["fields"][0]["field"] == "X-Oms-Associate", out
    assert api.call("PATCH", "/orders/no-such-order", {"version": 1, "ship_to": BOSTON})[0] == 404
    after = pick_all(api, view)
    assert after["amendments"] == [] and after["version"] > view["version"]


def test_the_cli_amends_and_prints_a_line_or_json(server, api):
    before = api.stock()
    view = waiting(api, as_lines([("TSHIRT-BLK-M", 1)]))
    oid = view["order_id"]

    def oms(*args):
        p = subprocess.run([oms_bin(), "--endpoint", server.endpoint, *args],
                           capture_output=True, text=True, timeout=60)
        return p

    p = oms("orders", "amend", oid, "--line", "MUG-WHITE=1", "--ship-to-city", "Quincy", "--by", "cli-1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"order {oid}  amendment amd-1  RUNNING"
    after = ended(api, oid, "amd-1")
    a = after["amendments"][0]
    assert a["status"] == "APPLIED" and a["by"] == "cli-1"
    assert units(after["lines"]) == {"TSHIRT-BLK-M": 1, "MUG-WHITE": 1}
    assert after["ship_to"]["city"] == "Quincy"
    p = oms("--output", "json", "orders", "amend", oid, "--version", str(view["version"]),
            "--line", "MUG-WHITE=0")
    assert p.returncode != 0 and "Order.VersionStale (409)" in p.stderr, (p.stdout, p.stderr)
    p = oms("--output", "json", "orders", "amend", oid, "--line", "MUG-WHITE=0")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"order_id": oid, "amendment_id": "amd-2", "status": "RUNNING"}
    p = oms("orders", "amend", oid, "--line", "MUG-WHITE")
    assert p.returncode != 0 and "--line MUG-WHITE: SKU=QTY" in p.stderr, p.stderr
    after = ended(api, oid, "amd-2")
    completed_as_amended(api, after, before)
