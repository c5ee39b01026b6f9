"""Feeds in: POST /imports and `oms import` load the catalog, warehouses and stock
from CSV or NDJSON, idempotent by feed id, every bad row reported and none applied,
and a stock count never breaking what orders hold reserved."""

import json
import subprocess

import pytest

from conftest import Server, oms_bin
from helpers import Api, order_body
from test_orders import answer_pick

CATALOG = "sku,name,price_cents\nFEED-LAMP,\"Lamp, brass\",4500\nFEED-RUG,Rug,12000\n"
WAREHOUSES = '{"warehouse_id":"WH-FEED","name":"Feed Park","country":"US","lat":40.0,"lon":-75.0}\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("imports") / "data"
    data.mkdir()
    # Manual picking: an order holds its reservation until it is picked or cancelled.
    s = Server(data, extra_args=["--manual-picking"])
    s.start()
    api = Api(s.endpoint)
    assert api.import_feed("catalog", CATALOG)[0] == 200
    assert api.import_feed("warehouses", WAREHOUSES, "application/x-ndjson")[0] == 200
    yield s
    s.kill()


def rows(api, sku):
    return {r["warehouse_id"]: r for r in api.ok("GET", "/inventory")["inventory"] if r["sku"] == sku}


def test_a_stock_feed_applies_once_and_says_so_the_second_time(server):
    api = Api(server.endpoint)
    feed = "warehouse_id,sku,on_hand\nWH-FEED,FEED-LAMP,40\nWH-NJ,FEED-LAMP,7\n"
    status, first = api.import_feed("stock", feed)
    assert status == 200 and first["status"] == "applied", first
    assert (first["rows"], first["applied"], first["refused"]) == (2, 2, 0)
    assert first["feed_id"] == "stock-" + first["sha256"]
    status, again = api.import_feed("stock", feed)
    assert status == 200 and again["status"] == "already_applied", again
    lamp = rows(api, "FEED-LAMP")
    assert (lamp["WH-FEED"]["on_hand"], lamp["WH-NJ"]["on_hand"]) == (40, 7)
    # Deltas under a client's feed id: the id, not the contents, names the feed.
    delta = "warehouse_id,sku,delta\nWH-NJ,FEED-LAMP,3\n"
    assert api.import_feed("stock", delta, feed_id="delivery-1")[1]["status"] == "applied"
    assert api.import_feed("stock", delta, feed_id="delivery-1")[1]["status"] == "already_applied"
    assert api.import_feed("stock", delta, feed_id="delivery-2")[1]["status"] == "applied"
    assert rows(api, "FEED-LAMP")["WH-NJ"]["on_hand"] == 7 + 3 + 3
    status, err = api.import_feed("stock", "warehouse_id,sku,delta\nWH-NJ,FEED-LAMP,4\n", feed_id="delivery-1")
    assert status == 409 and err["code"] == "Feed.Conflict", err


def test_every_bad_row_is_reported_and_none_applied(server):
    api = Api(server.endpoint)
    before = rows(api, "FEED-RUG")
    feed = ("warehouse_id,sku,on_hand\n"
            "WH-FEED,FEED-RUG,5\n"
            "WH-FEED,FEED-RUG,-1\n"
            "WH-MOON,FEED-RUG,5\n"
            "WH-FEED,NOPE,5\n"
            "WH-FEED,FEED-RUG,99999999999999999999\n")
    status, err = api.import_feed("stock", feed)
    assert status == 422 and err["code"] == "Feed.Invalid", err
    assert err["error_count"] == 4 and err["rows"] == 5
    assert [(e["line"], e["field"]) for e in err["errors"]] == [
        (3, "on_hand"), (4, "warehouse_id"), (5, "sku"), (6, "on_hand")]
    assert "0 to 1000000000" in err["errors"][0]["rule"]
    assert rows(api, "FEED-RUG") == before
    # The request itself: its kind and its media type are named when wrong.
    status, err = api.call("POST", "/imports?kind=prices", b"x", {"Content-Type": "text/csv"})
    assert status == 400 and err["fields"][0]["field"] == "kind", err
    status, err = api.call("POST", "/imports?kind=stock", b"x", {"Content-Type": "text/plain"})
    assert status == 415 and "text/csv" in err["message"], err


def test_a_count_below_what_orders_hold_is_refused(server):
    api = Api(server.endpoint)
    api.import_feed("stock", "warehouse_id,sku,on_hand\nWH-FEED,FEED-RUG,10\n")
    body = order_body(lines=[{"sku": "FEED-RUG", "quantity": 6}])
    api.ok("POST", "/orders", body, want=(202,))
    api.wait(body["order_id"], lambda v: v["status"] == "FULFILLING")
    rug = rows(api, "FEED-RUG")["WH-FEED"]
    assert (rug["on_hand"], rug["reserved"], rug["available"]) == (10, 6, 4), rug
    feed = "warehouse_id,sku,on_hand\nWH-FEED,FEED-RUG,4\n"
    status, report = api.import_feed("stock", feed)
    assert status == 200 and (report["applied"], report["refused"]) == (0, 1), report
    refusal = report["refusals"][0]
    assert (refusal["line"], refusal["field"]) == (2, "on_hand")
    assert "6 units orders hold reserved" in refusal["rule"], refusal
    status, report = api.import_feed("stock", "warehouse_id,sku,delta\nWH-FEED,FEED-RUG,-5\n")
    assert report["refused"] == 1, report
    # Down to exactly what is reserved is allowed; the order still completes.
    assert api.import_feed("stock", "warehouse_id,sku,on_hand\nWH-FEED,FEED-RUG,6\n")[1]["applied"] == 1
    rug = rows(api, "FEED-RUG")["WH-FEED"]
    assert (rug["on_hand"], rug["reserved"], rug["available"]) == (6, 6, 0), rug
    view = api.ok("GET", f"/orders/{body['order_id']}")
    for s in view["shipments"]:
        answer_pick(api, s["shipment_id"], {})
    view = api.wait(body["order_id"], lambda v: v["status"] == "COMPLETED")
    rug = rows(api, "FEED-RUG")["WH-FEED"]
    assert (rug["on_hand"], rug["reserved"], rug["shipped"]) == (0, 0, 6), rug


def oms(server, *args):
    return subprocess.run([oms_bin(), "--endpoint", server.endpoint, *args],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_imports_a_file_and_reports_bad_rows(server, tmp_path):
    good = tmp_path / "stock.csv"
    good.write_text("warehouse_id,sku,delta\n" + "WH-FEED,FEED-LAMP,1\n" * 250)
    p = oms(server, "import", "stock", str(good))
    assert p.returncode == 0, p.stderr
    assert "applied: 250 rows, 250 applied, 0 unchanged, 0 refused" in p.stdout, p.stdout
    # Not a terminal: no progress bar drawn.
    assert p.stderr == "", p.stderr
    p = oms(server, "--output", "json", "import", "stock", str(good))
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "already_applied", p.stdout
    bad = tmp_path / "stock.ndjson"
    bad.write_text('{"warehouse_id":"WH-FEED","sku":"FEED-LAMP","delta":1}\n{"warehouse_id":"WH-FEED","sku":"FEED-LAMP"}\n')
    p = oms(server, "import", "stock", str(bad))
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "line 2: on_hand: exactly one of on_hand (absolute) or delta" in p.stdout, p.stdout
    p = oms(server, "import", "stock", str(tmp_path / "stock.txt"))
    assert p.returncode == 2 and ".csv, .ndjson or .jsonl" in p.stderr, p.stderr
