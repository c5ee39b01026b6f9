"""The chaos campaign (chaos.py), short enough for every run of the suite: orders at a
steady rate, transient faults at every activity and compensation, kill -9 aimed at a
compensation, a Map of shipments and a redrive, SIGSTOP longer than the short
heartbeats, with a fixed seed; then the same against DynamoDB Local behind a
throttling proxy. `cargo xtask chaos` runs the long campaign."""

from chaos import HARD_COMPENSATION_FAILURES, Campaign, chaos_server_args, store


def test_a_short_campaign_ends_with_every_order_final_and_the_books_balanced(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    report = Campaign(data, orders=120, kills=4, pauses=1, fault_rate=0.05, rate_per_s=30,
                      seed=11, extra_args=chaos_server_args()).run()
    print(report)
    assert report["kills"] == 4 and report["pauses"] == 1
    assert [m.split(":")[0] for m in report["kill_moments"]].count("redrive") == 1, report
    # The hard compensation failures were redriven, and the redrives survived a kill.
    assert report["retries"] >= HARD_COMPENSATION_FAILURES, report
    # Faults were injected and ridden out: the transient ones and the hard ones.
    failures = report["task_failures"]
    assert failures.get("Activity.Unavailable", 0) > 0, report
    assert failures.get("Order.Conflict", 0) >= HARD_COMPENSATION_FAILURES, report
    assert sum(report["outcomes"].values()) == 120, report
    assert report["violations"] == [], report


def test_a_campaign_on_dynamodb_local_with_throttling_balances_too(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with store("dynamodb", throttle_rate=0.1, drop_rate=0.02, seed=5) as (args, env, proxy):
        report = Campaign(data, orders=40, kills=2, pauses=0, fault_rate=0.02, rate_per_s=10,
                          seed=5, extra_args=[*chaos_server_args(), *args], env=env).run()
        counts = dict(proxy.counts)
    print(report, counts)
    assert counts["throttled"] > 0 and counts["dropped"] > 0, counts
    assert report["kills"] == 2
    assert sum(report["outcomes"].values()) == 40, report
    assert report["violations"] == [], report
