"""The power-loss campaign (power_loss.py), a few cuts long for every run of the suite:
`oms up` on the power-loss VFS loses its unsynced writes at syncs drawn by a fixed
seed, and no acknowledged order is lost, nor any event the stream sent. `cargo xtask chaos --power-loss` runs 50."""

from chaos import chaos_server_args
from power_loss import PowerLossCampaign


def test_power_cuts_lose_no_acknowledged_order_and_the_books_balance(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    report = PowerLossCampaign(data, crash_points=8, orders_per_point=10, seed=5,
                               extra_args=chaos_server_args()).run()
    print(report)
    assert report["crash_points"] == 8
    # The VFS saw the stores' syncs: each order commits several steps.
    assert report["budget_syncs"] > 10 * 5, report
    assert report["acknowledged"] == report["orders"] > 0, report
    # The stream was followed up to each cut: its events were checked after it.
    assert report.get("events_streamed", 0) > 0, report
    assert report["violations"] == [], report
