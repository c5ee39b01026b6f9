"""An older oms kept the order store in a file of its own, orders.db, beside oms.sqlite3.
This one keeps the items in oms.sqlite3, so that one WAL orders them with the runtime's
steps (docs/store.md, "One WAL"). `oms up` on an older data dir moves the items in at
start, removes orders.db, and its orders read and run as before."""

import json
import sqlite3
import time

from conftest import Server
from helpers import Api, order_body


def older_order_store(path, body):
    """An orders.db as an older oms left it: the items table, one PENDING order whose
    saga never started, its document plain JSON (an oms before compressed documents)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    record = {
        "order_id": body["order_id"], "customer_id": body["customer_id"],
        "lines": [{"sku": "SOCKS-3PK", "quantity": 1, "unit_price_cents": 899, "line_total_cents": 899}],
        "total_cents": 899, "currency": "USD", "payment_token": "tok_visa", "ship_to": body["ship_to"],
        "status": "PENDING", "charged_cents": 0, "refunded_cents": 0, "cancel_requested": False,
        "created_at": now, "updated_at": now,
    }
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE items (pk TEXT NOT NULL, sk TEXT NOT NULL, version INTEGER NOT NULL,"
                       " doc NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID")
            db.execute("INSERT INTO items VALUES (?, 'ORDER', 3, ?)",
                       (f"ORDER#{body['order_id']}", json.dumps(record)))
    finally:
        db.close()


def test_an_older_data_dirs_order_store_moves_into_the_runtimes_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    body = order_body()
    older_order_store(data / "orders.db", body)
    server = Server(data, extra_args=["--pick-delay-ms", "20"])
    server.start()
    try:
        assert "moved 1 item(s) of orders.db into oms.sqlite3" in server.log_text(), server.log_text()
        leftovers = sorted(p.name for p in data.iterdir() if p.name.startswith("orders.db"))
        assert leftovers == [], leftovers
        api = Api(server.endpoint)
        view = api.ok("GET", f"/orders/{body['order_id']}", want=(200,))
        assert (view["status"], view["total_cents"]) == ("PENDING", 899), view
        started = api.ok("POST", f"/orders/{body['order_id']}/retry", want=(202,))
        assert started["started"] is True, started
        assert api.finish(body["order_id"])["status"] == "COMPLETED"
    finally:
        server.kill()
    db = sqlite3.connect(f"file:{data / 'oms.sqlite3'}?mode=ro", uri=True)
    try:
        (version,) = db.execute("SELECT version FROM items WHERE pk = ? AND sk = 'ORDER'",
                                (f"ORDER#{body['order_id']}",)).fetchone()
    finally:
        db.close()
    assert version > 3, "the moved order kept its version and went on from it"
