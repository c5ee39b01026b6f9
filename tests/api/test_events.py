"""Order events out of a real `oms up` (docs/events.md): a webhook receiver that is
killed and restarted mid-stream still gets every event it subscribed to, at least once,
in order per order, each signed; dead letters are kept and replayed; the live stream
(GET /events, Server-Sent Events) resumes after a sequence number."""

import datetime
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.request

import pytest

from conftest import Server, _free_port

from helpers import Api, order_body, read_stream

# Retries fast enough for a test, many enough to outlast the receiver's outage.
PATIENT = ["--webhook-retry-base-ms", "50", "--webhook-retry-max-ms", "400",
           "--webhook-max-attempts", "200", "--webhook-jitter-seed", "7", "--pick-delay-ms", "20"]


class Receiver:
    """A webhook receiver on a fixed port that can be stopped and started again; it
    answers `status` and records every request it took (or refused)."""

    def __init__(self):
        self.port = _free_port()
        self.got = []  # (headers, body) of every request answered 2xx, in arrival order
        self.refused = 0
        self.status = 204
        self.lock = threading.Lock()
        self.httpd = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    status = outer.status
                    if status < 300:
                        outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    else:
                        outer.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self):
        with self.lock:
            return list(self.got)


def verified(secret, headers, body):
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-oms-signature"], want)


def seen_events(got):
    return [json.loads(body) for _, body in got]


def iso_seconds(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_for(what, check, timeout=45):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def served(tmp_path):
    s = Server(tmp_path, extra_args=PATIENT)
    s.start()
    yield s, Api(s.endpoint)
    s.kill()


def test_a_receiver_killed_mid_stream_gets_every_event_in_order(served):
    server, api = served
    receiver = Receiver()
    receiver.start()
    sub = api.ok("POST", "/subscriptions", {"url": receiver.url, "types": ["oms.order.*", "oms.shipment.*"]},
                 want=(201,))
    assert sub["secret"].startswith("whsec_") and sub["types"] == ["oms.order.*", "oms.shipment.*"]
    assert "secret" not in api.ok("GET", "/subscriptions")["subscriptions"][0]
    ids = []
    for i in range(6):
        if i == 2:
            # Killed with deliveries in flight; orders go on being placed meanwhile.
            wait_for("a first delivery", lambda: receiver.events())
            receiver.stop()
            stopped = time.time()
        ids.append(api.ok("POST", "/orders", order_body())["order_id"])
    time.sleep(1.0)
    restarted = time.time()
    receiver.start()
    for order_id in ids:
        assert api.finish(order_id)["status"] == "COMPLETED"

    def completed_everywhere():
        done = {json.loads(b)["subject"] for _, b in receiver.events() if json.loads(b)["type"] == "oms.order.completed"}
        return done >= set(ids)

    wait_for("every order's completion at the receiver", completed_everywhere)
    got = receiver.events()
    assert all(verified(sub["secret"], h, b) for h, b in got), "a signature does not verify"
    # Deduplicated by event id (at least once may repeat), each order's events arrive
    # in its sequence order, 1, 2, 3... with none missing.
    seen, by_order = set(), {}
    for headers, body in got:
        event = json.loads(body)
        assert headers["x-oms-event-id"] == event["id"]
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        by_order.setdefault(event["subject"], []).append(event)
    assert set(by_order) >= set(ids)
    # Events made while the receiver was down arrived after it came back: the retries
    # bridged the outage. (At least the four orders placed meanwhile: POST /orders
    # writes the order, and its oms.order.pending, before it answers.)
    made_while_down = [e for e in seen_events(got) if stopped < iso_seconds(e["time"]) < restarted]
    assert len(made_while_down) >= 4, "the receiver was never down while events were made"
    for order_id in ids:
        events = by_order[order_id]
        seqs = [e["data"]["sequence"] for e in events]
        assert seqs == sorted(seqs), (order_id, seqs)
        types = [e["type"] for e in events]
        assert types[0] == "oms.order.pending" and types[-1] == "oms.order.completed", types
        assert {"oms.shipment.reserved", "oms.shipment.picked", "oms.shipment.shipped"} <= set(types)
    # Every event of the log (the stream's) arrived: 8 per order, each with one
    # shipment (pending, reserved twice, charged, fulfilling, picked, shipped, completed).
    logged = read_stream(server.endpoint, want=8 * len(ids), after=0)
    assert {d["id"] for _, _, d in logged} == seen


def test_the_stream_resumes_after_a_sequence(served):
    server, api = served
    order_id = api.ok("POST", "/orders", order_body())["order_id"]
    assert api.finish(order_id)["status"] == "COMPLETED"
    # pending, reserved (order and shipment), charged, fulfilling, picked, shipped, completed
    first = read_stream(server.endpoint, want=8)
    assert [seq for seq, _, _ in first] == list(range(1, 9))
    assert [d["data"]["sequence"] for _, _, d in first] == list(range(1, 9))
    for seq, kind, data in first:
        assert data["specversion"] == "1.0" and data["source"] == "oms" and data["type"] == kind
        assert data["subject"] == order_id and data["datacontenttype"] == "application/json"
    assert first[-1][1] == "oms.order.completed"
    resumed = read_stream(server.endpoint, want=3, after=5)
    assert resumed == first[5:8]
    assert read_stream(server.endpoint, want=2, last_event_id=6) == first[6:8]
    status, out = api.call("GET", "/events?after=minus-one")
    assert status == 400 and out["fields"][0]["field"] == "after", out


def test_dead_letters_are_kept_and_replayed(tmp_path):
    server = Server(tmp_path, extra_args=["--webhook-retry-base-ms", "10", "--webhook-retry-max-ms", "20",
                                          "--webhook-max-attempts", "3", "--webhook-jitter-seed", "1",
                                          "--pick-delay-ms", "20"])
    server.start()
    try:
        api = Api(server.endpoint)
        receiver = Receiver()
        receiver.status = 500
        receiver.start()
        sub = api.ok("POST", "/subscriptions", {"url": receiver.url, "types": ["oms.order.completed"]},
                     want=(201,))
        order_id = api.ok("POST", "/orders", order_body())["order_id"]
        assert api.finish(order_id)["status"] == "COMPLETED"
        dead_path = f"/subscriptions/{sub['id']}/dead-letters"
        wait_for("a dead letter", lambda: api.ok("GET", dead_path)["dead_letters"])
        [dead] = api.ok("GET", dead_path)["dead_letters"]
        assert dead["type"] == "oms.order.completed" and dead["attempts"] == 3, dead
        assert "500" in dead["last_error"] and receiver.refused == 3
        receiver.status = 200
        assert api.ok("POST", dead_path + "/replay", want=(202,)) == {"replaying": 1}
        wait_for("the replay", lambda: receiver.events())
        wait_for("the dead letter to go", lambda: not api.ok("GET", dead_path)["dead_letters"])
        [(headers, body)] = receiver.events()
        assert headers["x-oms-event-id"] == dead["event_id"] and verified(sub["secret"], headers, body)
        # Bad subscriptions name the field; a deleted one is gone.
        for bad, field in [({"types": ["oms.order.*"]}, "url"), ({"url": "ftp://x/", "types": ["oms.*"]}, "url"),
                           ({"url": receiver.url, "types": []}, "types"),
                           ({"url": receiver.url, "types": ["order.*"]}, "types[0]"),
                           ({"url": receiver.url, "types": ["oms.*.x"]}, "types[0]")]:
            status, out = api.call("POST", "/subscriptions", bad)
            assert status == 400 and out["fields"][0]["field"] == field, (bad, out)
        assert api.call("DELETE", f"/subscriptions/{sub['id']}")[0] == 204
        status, out = api.call("DELETE", f"/subscriptions/{sub['id']}")
        assert status == 404 and out["code"] == "Subscription.NotFound", out
        receiver.stop()
    finally:
        server.kill()
