"""`oms load --check`, which `cargo xtask bench soak` runs: orders with transient faults,
latency per slice of the run, then the books audited through the Orders API. And
`oms up --bench-stock`, the soak's stock, received once per data dir."""

import json
import subprocess

import pytest

from conftest import Server, oms_bin
from helpers import Api

BENCH_UNITS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("load") / "data"
    data.mkdir()
    s = Server(data, extra_args=["--pick-delay-ms", "20", "--fault-injection",
                                 "--bench-stock", str(BENCH_UNITS)])
    s.start()
    yield s
    s.kill()


def held(api):
    """on hand + reserved + shipped, by (sku, warehouse)."""
    return {k: sum(v) for k, v in api.stock().items()}


def test_load_check_audits_the_books_and_reports_windows(server):
    before = held(Api(server.endpoint))
    p = subprocess.run([oms_bin(), "--endpoint", server.endpoint, "--output", "json", "load",
                        "--orders", "30", "--concurrency", "6", "--fault-rate", "0.2",
                        "--check", "--windows", "3"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout, p.stderr)
    out = json.loads(p.stdout)
    assert out["checked"] is True and out["violations"] == [], out
    assert set(out["outcomes"]) <= {"COMPLETED", "CANCELLED"}, out
    assert len(out["windows"]) == 3
    assert sum(w["orders"] for w in out["windows"]) == 30
    assert out["windows"][-1]["until_s"] == pytest.approx(out["seconds"])
    # The faults load set are cleared, and stock moved only from on hand to shipped.
    api = Api(server.endpoint)
    assert api.ok("GET", "/admin/faults") == {}
    assert held(api) == before


def test_load_refuses_bad_arguments_naming_them(server):
    for args, named in [(["--windows", "0"], "--windows"), (["--fault-rate", "2"], "--fault-rate"),
                        (["--orders", "0"], "--orders")]:
        p = subprocess.run([oms_bin(), "--endpoint", server.endpoint, "load", *args],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and named in p.stderr, (args, p.stderr)


def test_bench_stock_is_received_once_per_data_dir(server):
    api = Api(server.endpoint)
    # The demo seed has 15 x 250 caps at Dublin (activities::seed::DEMO_DEPTH); the
    # bench stock adds its units to every row.
    cap = api.stock()[("CAP-NAVY", "WH-IE")]
    assert sum(cap) == 15 * 250 + BENCH_UNITS
    before = held(api)
    server.kill()
    server.start()
    assert held(Api(server.endpoint)) == before
