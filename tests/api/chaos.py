"""The chaos campaign: `oms up` takes orders at a steady rate with transient faults at
every activity and compensation, and is killed with SIGKILL (or frozen with SIGSTOP)
at random moments. Afterwards, through the Orders API alone:

- every order is COMPLETED or CANCELLED (a COMPENSATION_FAILED order is retried once
  its faults are cleared, and must then end CANCELLED);
- no stock is left reserved, and per SKU and warehouse on hand + shipped is what it was;
- a COMPLETED order was charged its total and refunded nothing; a CANCELLED one was
  refunded what it was charged; nothing was charged more than the order's total;
- every status a poller saw is one the order can pass through.

The orders are a mix: most pay, one in ten is declined (a compensation), one in five
gives the warehouse a 2 s heartbeat that every pause outlasts, one in four has two
lines (a Map of shipments). The first compensations fail hard (`fail_next`), so those
orders end COMPENSATION_FAILED and are redriven at the end. Kills are aimed: besides
random moments, one waits until an order is COMPENSATING, one until an order is
FULFILLING (its Map running), and one lands just after the redrives are sent; at 30
orders a second every kill also lands among the runtime's group commits.

With `--store dynamodb` the activities' store is AWS's DynamoDB Local behind a proxy
that throttles a share of the calls and drops the answers of others
(dynamodb_local.py).

Run by `tests/api/test_chaos.py` (short) and `cargo xtask chaos` (long):
    python chaos.py --orders 2000 --kills 20 --pauses 3 --seed 7
"""

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import Server  # noqa: E402
from helpers import make_client, task_errors  # noqa: E402
from dynamodb_local import CREDENTIALS, TABLE, DynamoDbLocal, ThrottlingProxy  # noqa: E402

ACTIVITIES = ["reserve", "charge", "pick", "ship", "release", "refund", "restock", "cancel_shipment"]
FINAL = {"COMPLETED", "CANCELLED"}
# Every status an order can show on its way (COMPENSATION_FAILED only while a
# compensation's faults outlast its retries).
KNOWN = {"PENDING", "RESERVED", "CHARGED", "FULFILLING", "COMPENSATING", "COMPENSATION_FAILED",
         "COMPLETED", "CANCELLED"}
ADDRESS = {"name": "Chaos", "line1": "1 Main St", "city": "Boston", "postal_code": "02101", "country": "US"}
# Longer than a pause lasts: a pick outstanding when the server is frozen times out.
SHORT_HEARTBEAT = {"pick_timeout_seconds": 120, "pick_heartbeat_seconds": 2}
PAUSE_S = (3.0, 5.0)
# The moments a kill aims at, in turn ("redrive" waits for the end of the campaign).
KILL_MOMENTS = ["any", "compensating", "fulfilling", "redrive"]
# The first compensations fail hard: their orders end COMPENSATION_FAILED until redriven.
HARD_COMPENSATION_FAILURES = 3


class Down(Exception):
    """The server did not answer (it is being killed or restarted)."""


class Campaign:
    def __init__(self, data_dir, orders, kills, pauses, fault_rate, rate_per_s, seed, extra_args=(), env=None):
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        # Picks take long enough that a pause finds some outstanding. Stock for every
        # order (at most 4 units each), so that a long campaign tests the saga under
        # faults, not the demo catalog running dry.
        self.server = Server(data_dir, extra_args=["--pick-delay-ms", "300", "--fault-injection",
                                                   "--bench-stock", str(4 * orders), *extra_args],
                             env=env)
        self.n_orders = orders
        self.kills_wanted = kills
        self.pauses_wanted = pauses
        self.fault_rate = fault_rate
        self.interval_s = 1.0 / rate_per_s
        self.lock = threading.Lock()
        self.endpoint = None
        self.seen = {}
        self.counts = {"orders": orders, "kills": 0, "pauses": 0, "resubmits": 0, "retries": 0}
        self.kill_moments = []
        self.redrive_kills = 0
        self.violations = []

    # ---- HTTP, tolerant of a server that is down for a moment --------------------------

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")
        except (OSError, ValueError) as e:
            raise Down(str(e))

    def patiently(self, method, path, body=None, want=(200, 202), timeout_s=120):
        """Calls until the server answers with a wanted status (it may be restarting)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                status, out = self.call(method, path, body)
                if status in want:
                    return out
                if status < 500 and status != 409:
                    raise AssertionError(f"{method} {path}: {status} {out}")
            except Down:
                self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no answer in {timeout_s} s")
            time.sleep(0.1)

    def check_alive(self):
        """A server that died on its own (not killed by the campaign) is a failure."""
        with self.lock:
            proc = self.server.proc
            # The campaign restarts the server under the lock: dead outside it is dead.
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"oms up exited with {proc.returncode}; its output:\n"
                                     + self.server.log_text()[-4000:])

    # ---- the campaign ------------------------------------------------------------------

    def start(self):
        self.server.start(timeout=60)
        self.endpoint = self.server.endpoint

    def faults(self, on):
        if on:
            plans = {a: {"transient_rate": self.fault_rate, "after_effect": a in ("charge", "reserve")}
                     for a in ACTIVITIES}
            # Not a retried error: the compensation fails and the execution with it.
            plans["release"].update(fail_next=HARD_COMPENSATION_FAILURES, error="Order.Conflict")
            self.patiently("PUT", "/admin/faults", plans)
        else:
            self.patiently("DELETE", "/admin/faults")

    def order(self, i, skus):
        lines = [{"sku": skus[i % len(skus)], "quantity": 1 + i % 3}]
        if i % 4 == 1:
            lines.append({"sku": skus[(i + 1) % len(skus)], "quantity": 1})
        body = {
            "order_id": f"chaos-{i}",
            "customer_id": f"chaos-{i % 7}",
            "lines": lines,
            "payment": {"token": "tok_declined" if i % 10 == 3 else "tok_visa"},
            "ship_to": dict(ADDRESS),
        }
        if i % 5 == 2:
            body["options"] = dict(SHORT_HEARTBEAT)
        return body

    def submit_all(self, skus):
        for i in range(self.n_orders):
            body = self.order(i, skus)
            while not self.stopped.is_set():
                try:
                    status, out = self.call("POST", "/orders", body)
                    if status == 202:
                        break
                    if status < 500:
                        self.violations.append(f"order {i} refused: {status} {out}")
                        break
                except Down:
                    pass
                # The server is down, or the submission failed half-way: the same order
                # again is idempotent.
                self.counts["resubmits"] += 1
                time.sleep(0.1)
            time.sleep(self.interval_s)

    def disrupt_all(self):
        """Kills and pauses the server at aimed or random moments until the orders are
        in; the kills aimed at a redrive wait for `retry_all`."""
        kills = [KILL_MOMENTS[k % len(KILL_MOMENTS)] for k in range(self.kills_wanted)]
        self.redrive_kills = kills.count("redrive")
        events = [k for k in kills if k != "redrive"] + ["pause"] * self.pauses_wanted
        self.rng.shuffle(events)
        expected_s = self.n_orders * self.interval_s
        for event in events:
            time.sleep(self.rng.uniform(0.2, 2 * expected_s / max(1, len(events))))
            if event == "pause":
                self.pause()
            else:
                self.kill(event, self.aim(event))

    def aim(self, moment, timeout_s=10.0):
        """Waits until some order shows the status the moment names; says what it saw."""
        status = {"compensating": "COMPENSATING", "fulfilling": "FULFILLING"}.get(moment)
        if status is None:
            return moment
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                code, page = self.call("GET", f"/orders?status={status}&limit=1")
            except Down:
                code, page = None, None
            if code == 200 and page["orders"]:
                return f"{moment}: {page['orders'][0]['order_id']}"
            time.sleep(0.02)
        return f"{moment}: none seen in {timeout_s:.0f} s"

    def kill(self, moment, seen):
        with self.lock:
            self.server.kill()
            self.counts["kills"] += 1
            self.kill_moments.append(seen)
            time.sleep(self.rng.uniform(0.0, 0.5))
            self.server.start(timeout=60)
            self.endpoint = self.server.endpoint

    def pause(self):
        # Frozen past the short heartbeats and the warehouse's answers.
        self.server.proc.send_signal(signal.SIGSTOP)
        time.sleep(self.rng.uniform(*PAUSE_S))
        self.server.proc.send_signal(signal.SIGCONT)
        self.counts["pauses"] += 1

    def poll_statuses(self, ids, until):
        while not until.is_set():
            for order_id in self.rng.sample(ids, min(20, len(ids))):
                try:
                    status, view = self.call("GET", f"/orders/{order_id}")
                except Down:
                    continue
                if status == 200:
                    self.seen.setdefault(order_id, set()).add(view["status"])
            time.sleep(0.05)

    def wait_all_ended(self, ids, timeout_s):
        deadline = time.monotonic() + timeout_s
        views = {}
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            still = []
            for order_id in pending:
                view = self.patiently("GET", f"/orders/{order_id}", want=(200,))
                if view["execution_status"] in (None, "RUNNING"):
                    still.append(order_id)
                else:
                    views[order_id] = view
            pending = still
            if pending:
                time.sleep(0.5)
        for order_id in pending:
            self.violations.append(f"{order_id} never ended")
        return views

    def run(self):
        self.start()
        stock_before = self.stock()
        skus = sorted({sku for sku, _ in stock_before})
        self.faults(True)
        ids = [f"chaos-{i}" for i in range(self.n_orders)]
        done = threading.Event()
        submitter = threading.Thread(target=self.submit_all, args=(skus,))
        poller = threading.Thread(target=self.poll_statuses, args=(ids, done))
        submitter.start()
        poller.start()
        # The server is restarted from this thread: it dies with the thread that
        # started it (conftest's PR_SET_PDEATHSIG), so that thread must outlive it.
        try:
            self.disrupt_all()
        except BaseException:
            # The campaign failed (a restart did not come up): the submitter must not
            # wait for a server that will not come back, or the test hangs.
            self.stopped.set()
            raise
        finally:
            submitter.join()
            done.set()
            poller.join()
        views = self.wait_all_ended(ids, timeout_s=300)
        self.faults(False)
        self.retry_all(views)
        views = self.wait_all_ended(ids, timeout_s=300)
        self.check(views, stock_before)
        self.counts["task_failures"] = self.task_failures(views)
        self.server.kill()
        return self.report()

    def task_failures(self, views):
        """The task failures the executions' histories record, by error: the faults
        injected (and heartbeats missed) that the saga retried past or compensated for."""
        sfn = make_client(self.endpoint)
        by_error = {}
        for view in views.values():
            for error in task_errors(sfn, view["execution_arn"]):
                by_error[error] = by_error.get(error, 0) + 1
        return dict(sorted(by_error.items()))

    def retry_all(self, views):
        """Retries (redrives) every order that did not end final, and kills the server
        while the redriven executions run, as many times as the campaign aims to."""
        stuck = [order_id for order_id, view in views.items() if view["status"] not in FINAL]
        for order_id in stuck:
            self.patiently("POST", f"/orders/{order_id}/retry", want=(200, 202))
            self.counts["retries"] += 1
        for _ in range(self.redrive_kills):
            time.sleep(self.rng.uniform(0.0, 0.3))
            self.kill("redrive", f"redrive: {len(stuck)} redriven")

    # ---- the invariants ----------------------------------------------------------------

    def stock(self):
        rows = self.patiently("GET", "/inventory", want=(200,))["inventory"]
        return {(r["sku"], r["warehouse_id"]): r for r in rows}

    def check(self, views, stock_before):
        bad = self.violations.append
        outcomes, failures = {}, {}
        for order_id, v in views.items():
            outcomes[v["status"]] = outcomes.get(v["status"], 0) + 1
            error = (v.get("failure") or {}).get("error")
            if error:
                failures[error] = failures.get(error, 0) + 1
            if v["status"] not in FINAL:
                bad(f"{order_id} ended {v['status']}")
            if v["charged_cents"] > v["total_cents"]:
                bad(f"{order_id} charged {v['charged_cents']} for a total of {v['total_cents']}")
            if v["status"] == "COMPLETED" and (v["charged_cents"], v["refunded_cents"]) != (v["total_cents"], 0):
                bad(f"{order_id} COMPLETED charged {v['charged_cents']} refunded {v['refunded_cents']}")
            if v["status"] == "CANCELLED" and v["charged_cents"] != v["refunded_cents"]:
                bad(f"{order_id} CANCELLED charged {v['charged_cents']} refunded {v['refunded_cents']}")
        for order_id, statuses in self.seen.items():
            if not statuses <= KNOWN:
                bad(f"{order_id} showed {statuses - KNOWN}")
        after = self.stock()
        for key, row in after.items():
            if row["reserved"] != 0:
                bad(f"{key} has {row['reserved']} reserved")
            was = stock_before.get(key)
            if was and row["on_hand"] + row["shipped"] != was["on_hand"] + was["shipped"]:
                bad(f"{key}: on hand {row['on_hand']} + shipped {row['shipped']} != {was['on_hand']} + {was['shipped']}")
        self.counts["outcomes"] = outcomes
        self.counts["failures"] = failures

    def report(self):
        return {**self.counts, "kill_moments": self.kill_moments, "violations": self.violations}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--pauses", type=int, default=3)
    p.add_argument("--fault-rate", type=float, default=0.05)
    p.add_argument("--rate", type=float, default=40.0, help="orders submitted per second")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--store", choices=["sqlite", "dynamodb"], default="sqlite",
                   help="the activities' store: the embedded SQLite, or DynamoDB Local behind a throttling proxy")
    p.add_argument("--throttle-rate", type=float, default=0.1, help="with --store dynamodb: calls throttled")
    p.add_argument("--drop-rate", type=float, default=0.02,
                   help="with --store dynamodb: calls applied whose answer is lost")
    args = p.parse_args()
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="oms-chaos-")) / "data"
    data.mkdir(parents=True, exist_ok=True)
    with store(args.store, args.throttle_rate, args.drop_rate, args.seed) as (store_args, env, proxy):
        report = Campaign(data, args.orders, args.kills, args.pauses, args.fault_rate, args.rate,
                          args.seed, extra_args=[*chaos_server_args(), *store_args], env=env).run()
        if proxy:
            report["dynamodb"] = dict(proxy.counts)
    report["seed"] = args.seed
    print(json.dumps(report, indent=1))
    return 1 if report["violations"] else 0


@contextlib.contextmanager
def store(kind, throttle_rate, drop_rate, seed):
    """The arguments and environment `oms up` needs for the activities' store `kind`,
    with the proxy in front of DynamoDB Local (None for SQLite)."""
    if kind == "sqlite":
        yield [], None, None
        return
    ddb = DynamoDbLocal()
    proxy = ThrottlingProxy(ddb.endpoint, throttle_rate, drop_rate, seed)
    try:
        yield ["--store", f"dynamodb:{TABLE}", "--dynamodb-endpoint", proxy.endpoint], CREDENTIALS, proxy
    finally:
        proxy.stop()
        ddb.stop()


def chaos_server_args():
    """What `oms up` needs for the campaign: fault injection, where it is a flag."""
    return os.environ.get("OMS_CHAOS_ARGS", "").split()


if __name__ == "__main__":
    sys.exit(main())
