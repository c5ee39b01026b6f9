"""The chaos campaign (chaos.py), short enough for every run of the suite: orders at a
steady rate, transient faults at every activity and compensation, kill -9 and SIGSTOP
at moments chosen by a fixed seed. `cargo xtask chaos` runs the long campaign."""

from chaos import Campaign, chaos_server_args


def test_a_short_campaign_ends_with_every_order_final_and_the_books_balanced(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    report = Campaign(data, orders=120, kills=3, pauses=1, fault_rate=0.05, rate_per_s=30,
                      seed=11, extra_args=chaos_server_args()).run()
    print(report)
    assert report["kills"] == 3 and report["pauses"] == 1
    assert sum(report["outcomes"].values()) == 120, report
    assert report["violations"] == [], report
