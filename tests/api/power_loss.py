"""The power-loss campaign: `oms up` runs its SQLite stores on the power-loss VFS
(powerloss/, docs/store.md), which keeps every write in memory until its file is
synced, and at a chosen sync cuts the power: what was not synced is lost (with a seed,
a seeded part of it lands and one write is torn) and the process ends at once.

First a run without a cut counts the syncs a round makes (start, orders, their sagas
to the end); each crash point then cuts at a sync drawn from that range, so the cuts
fall at start, among submissions and in the sagas' steps. For each crash point:

- start `oms up` armed, submit orders until the power goes, and record each order the
  Orders API acknowledged (202);
- restart it normally on the same data dir (the plain unix VFS reads what the cut left)
  and resubmit, as a client would, each order whose answer it never got;
- every acknowledged order exists, every order ends COMPLETED or CANCELLED, and the
  books balance (chaos.py's invariants: nothing reserved, on hand + shipped per SKU as
  at the start, a COMPLETED order charged its total, a CANCELLED one refunded);
- every event `GET /events` sent before the cut is in the log after it, under the same
  sequence (the stream tells only of events on disk), and no event id is logged twice.

Run by `tests/api/test_power_loss.py` (a few cuts) and `cargo xtask chaos --power-loss`
(50):
    python power_loss.py --crash-points 50 --orders 30 --seed 7
"""

import argparse
import http.client
import json
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chaos import Campaign, Down, chaos_server_args  # noqa: E402
from conftest import Server  # noqa: E402
from helpers import read_stream  # noqa: E402

# powerloss::EXIT_CODE: the status of a process whose power was cut.
POWER_CUT_EXIT = 86
# `oms up` prints the syncs counted when it stops (--power-loss-at-sync 0 only counts).
SYNCS_AT_STOP = re.compile(r"^oms: power-loss VFS: (\d+) syncs$", re.M)
# Rounds submit up to this many times their orders while waiting for the cut.
MORE_ORDERS = 4


class PowerLossCampaign(Campaign):
    """chaos.py's campaign for its orders, HTTP and invariants; power cuts for kills."""

    def __init__(self, data_dir, crash_points, orders_per_point, seed, rate_per_s=20.0, extra_args=()):
        super().__init__(data_dir, orders=0, kills=0, pauses=0, fault_rate=0.0, rate_per_s=rate_per_s,
                         seed=seed, extra_args=extra_args)
        self.data_dir = data_dir
        # Stock enough that orders get past their reservation: cuts then land in every step.
        self.server_args = ["--pick-delay-ms", "20", "--bench-stock", "1000000", *extra_args]
        self.crash_points = crash_points
        self.per_point = orders_per_point
        self.bodies = {}  # every order submitted, by id
        self.acknowledged = set()
        self.streamed = {}  # every event GET /events sent: its id by global sequence
        self.counts = {"crash_points": 0, "cut_at_start": 0, "landed_seeds": 0, "acknowledged": 0,
                       "resubmitted": 0, "cuts": []}

    def launch(self, *power_loss):
        """Starts `oms up` on the data dir; False when its power was cut before it served."""
        self.server = Server(self.data_dir, extra_args=[*self.server_args, *power_loss])
        try:
            self.server.start(timeout=60)
        except pytest.fail.Exception:
            if self.server.proc is None or self.server.proc.returncode != POWER_CUT_EXIT:
                raise
            return False
        self.endpoint = self.server.endpoint
        return True

    def submit(self, n, skus):
        """Submits n new orders at the campaign's rate; False once the server is gone."""
        for _ in range(n):
            i = len(self.bodies)
            body = self.order(i, skus)
            self.bodies[body["order_id"]] = body
            try:
                status, out = self.call("POST", "/orders", body)
            except Down:
                return False
            if status == 202:
                self.acknowledged.add(body["order_id"])
            elif status < 500:
                self.violations.append(f"{body['order_id']} refused: {status} {out}")
            time.sleep(self.interval_s)
        return True

    def calibrate(self, skus):
        """A round without a cut on the counting server: the syncs it makes, start
        included, over which the cuts are spread."""
        self.submit(self.per_point, skus)
        self.wait_all_ended(list(self.bodies), timeout_s=300)
        self.server.kill(sig=15)  # SIGTERM: `oms up` stops and prints its count
        counted = SYNCS_AT_STOP.findall(self.server.log_text())
        if not counted:
            raise AssertionError("oms up printed no sync count:\n" + self.server.log_text()[-4000:])
        return int(counted[-1])

    def cut_once(self, budget, skus):
        """Arms a cut at a sync drawn from 1..budget and submits orders until it comes."""
        cut = self.rng.randint(1, budget)
        seed = self.rng.randrange(2**32) if self.rng.random() < 0.5 else None
        flags = ["--power-loss-at-sync", str(cut)]
        if seed is not None:
            flags += ["--power-loss-seed", str(seed)]
            self.counts["landed_seeds"] += 1
        self.counts["cuts"].append(cut)
        follower = None
        if not self.launch(*flags):
            self.counts["cut_at_start"] += 1
        else:
            follower = threading.Thread(target=follow_events,
                                        args=(self.endpoint, max(self.streamed, default=0), self.streamed),
                                        daemon=True)
            follower.start()
            for _ in range(MORE_ORDERS):
                if not self.submit(self.per_point, skus):
                    break
            deadline = time.monotonic() + 30
            while self.server.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        code = self.server.proc.poll()
        log = self.server.log_text()
        self.server.kill()
        if follower is not None:
            follower.join(timeout=30)
        if code is None:
            self.violations.append(f"the power cut at sync {cut} never came")
        elif code != POWER_CUT_EXIT or "powerloss: the power is cut at sync" not in log:
            self.violations.append(f"oms up armed at sync {cut} ended with {code}:\n{log[-3000:]}")

    def recover_and_check(self, stock_before):
        """Restarts normally, resubmits what was never answered, checks the books."""
        if not self.launch():
            raise AssertionError("oms up without a power cut exited with the cut's status")
        for order_id, body in self.bodies.items():
            if order_id not in self.acknowledged:
                self.patiently("POST", "/orders", body, want=(202,))
                self.acknowledged.add(order_id)
                self.counts["resubmitted"] += 1
        present = []
        for order_id in sorted(self.acknowledged):
            status, _ = self.call("GET", f"/orders/{order_id}")
            if status == 200:
                present.append(order_id)
            else:
                self.violations.append(f"acknowledged order {order_id} lost: GET says {status}")
        views = self.wait_all_ended(present, timeout_s=300)
        self.check(views, stock_before)
        self.check_events()
        self.server.kill()

    def check_events(self):
        """What the stream told before a cut is still logged, each event once."""
        if not self.streamed:
            return
        try:
            logged = read_stream(self.endpoint, want=max(self.streamed), after=0)
        except OSError as e:
            self.violations.append(f"the log after the cut has fewer than {max(self.streamed)} events: {e}")
            return
        by_seq = {seq: data["id"] for seq, _, data in logged}
        for seq, event_id in sorted(self.streamed.items()):
            if by_seq.get(seq) != event_id:
                self.violations.append(f"event {seq} ({event_id}) was streamed before a power cut "
                                       f"and is {by_seq.get(seq)} after it")
        ids = [data["id"] for _, _, data in logged]
        if len(set(ids)) != len(ids):
            self.violations.append("an event id is logged twice")
        self.counts["events_streamed"] = len(self.streamed)

    def run(self):
        self.launch("--power-loss-at-sync", "0")
        stock_before = self.stock()
        skus = sorted({sku for sku, _ in stock_before})
        budget = self.calibrate(skus)
        self.counts["budget_syncs"] = budget
        for _ in range(self.crash_points):
            self.cut_once(budget, skus)
            self.recover_and_check(stock_before)
            self.counts["crash_points"] += 1
        self.counts["acknowledged"] = len(self.acknowledged)
        return self.report()

    def report(self):
        return {**self.counts, "orders": len(self.bodies), "violations": self.violations}


def follow_events(endpoint, after, seen):
    """Records the id of every event GET /events sends, by sequence, until the server
    goes (its power cut)."""
    frame = {}
    try:
        with urllib.request.urlopen(f"{endpoint}/events?after={after}", timeout=60) as r:
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line == "":
                    if "id" in frame and "data" in frame:
                        seen[int(frame["id"])] = json.loads(frame["data"])["id"]
                    frame = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    frame[key] = value[1:] if value.startswith(" ") else value
    except (OSError, http.client.HTTPException):
        pass  # the power went, mid-stream or before it began


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crash-points", type=int, default=50)
    p.add_argument("--orders", type=int, default=30, help="orders per crash point (more while the cut waits)")
    p.add_argument("--rate", type=float, default=20.0, help="orders submitted per second")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="oms-power-loss-")) / "data"
    data.mkdir(parents=True, exist_ok=True)
    report = PowerLossCampaign(data, args.crash_points, args.orders, args.seed, args.rate,
                               extra_args=chaos_server_args()).run()
    report["seed"] = args.seed
    print(json.dumps(report, indent=1))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
