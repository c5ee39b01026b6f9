"""An older oms kept the order store and the event log in files of their own, orders.db
and events.db, beside oms.sqlite3. This one keeps both in oms.sqlite3, so that one WAL
orders them with the runtime's steps (docs/store.md, "One WAL"). `oms up` on an older
data dir moves them in at start and removes the files; its orders read and run as
before, and the event stream goes on from the older log's sequence."""

import contextlib
import json
import sqlite3
import time

from conftest import Server
from helpers import Api, order_body, read_stream


@contextlib.contextmanager
def older_database(path):
    """A SQLite file in WAL mode as an older oms made it, written in one transaction."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
    finally:
        db.close()


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
    with older_database(path) as db:
        db.execute("CREATE TABLE items (pk TEXT NOT NULL, sk TEXT NOT NULL, version INTEGER NOT NULL,"
                   " doc NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID")
        db.execute("INSERT INTO items VALUES (?, 'ORDER', 3, ?)",
                   (f"ORDER#{body['order_id']}", json.dumps(record)))


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


def older_event_log(path, events):
    """An events.db as an older oms left it: `events` logged (sequences 1 to n) and one
    webhook subscription."""
    with older_database(path) as db:
        db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, body TEXT NOT NULL)")
        db.execute("CREATE TABLE event_blocks (first_seq INTEGER PRIMARY KEY,"
                   " last_seq INTEGER NOT NULL, data BLOB NOT NULL)")
        db.execute("CREATE TABLE subscriptions (id TEXT PRIMARY KEY, url TEXT NOT NULL,"
                   " types TEXT NOT NULL, secret TEXT NOT NULL,"
                   " delivered_through INTEGER NOT NULL, created_at TEXT NOT NULL)")
        db.execute("CREATE TABLE dead_letters (subscription TEXT NOT NULL, seq INTEGER NOT NULL,"
                   " attempts INTEGER NOT NULL, last_error TEXT NOT NULL, at TEXT NOT NULL,"
                   " replaying INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (subscription, seq))")
        for e in events:
            db.execute("INSERT INTO events (id, type, body) VALUES (?, ?, ?)",
                       (e["id"], e["type"], json.dumps(e)))
        # Delivered through the last event, as the test checks it still is.
        db.execute("INSERT INTO subscriptions VALUES ('older-sub', 'http://127.0.0.1:9/hook',"
                   " '[\"order.status_changed\"]', 'whsec_older', ?, '2026-01-01T00:00:00.000Z')",
                   (len(events),))


def test_an_older_data_dirs_event_log_moves_in_and_its_sequence_goes_on(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    older = [{"specversion": "1.0", "id": f"older-{i}", "type": "order.status_changed",
              "source": "oms", "subject": f"older-order-{i}", "data": {"sequence": 1}}
             for i in range(1, 4)]
    older_event_log(data / "events.db", older)
    server = Server(data, extra_args=["--pick-delay-ms", "20"])
    server.start()
    try:
        assert "moved the event log (3 event(s)) of events.db into oms.sqlite3" in server.log_text(), \
            server.log_text()
        leftovers = sorted(p.name for p in data.iterdir() if p.name.startswith("events.db"))
        assert leftovers == [], leftovers
        logged = read_stream(server.endpoint, want=3, after=0)
        assert [(seq, data["id"]) for seq, _, data in logged] == \
            [(1, "older-1"), (2, "older-2"), (3, "older-3")], logged
        subs = Api(server.endpoint).ok("GET", "/subscriptions")["subscriptions"]
        assert [(s["id"], s["delivered_through"]) for s in subs] == [("older-sub", 3)], subs
        body = order_body()
        api = Api(server.endpoint)
        api.ok("POST", "/orders", body, want=(201, 202))
        assert api.finish(body["order_id"])["status"] == "COMPLETED"
        (seq, _, first_new), = read_stream(server.endpoint, want=1, after=3)
        assert seq == 4 and first_new["subject"] == body["order_id"], (seq, first_new)
    finally:
        server.kill()
