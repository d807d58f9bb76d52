"""Retention rules in process, on both databases: what a run removes, what it keeps, and one run at a time.

The background worker and several processes are tests/test_retention.py's.
"""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from app.services import retention
from testkit import unique
from tests.api.conftest import metrics_of

DAY = 86400


def settings(history=7 * DAY, rollups=400 * DAY, change_log=DAY, interval=60):
    return retention.Retention(history, rollups, change_log, interval)


def iso(moment):
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def count(database, table, tenant):
    return database.scalar(f"SELECT count(*) FROM {table} WHERE tenant_id = ?", (tenant,))


@pytest.fixture
def venue(admin_api):
    entity_id = unique("venue")
    admin_api.put_entity(entity_id, "venue")
    return entity_id


def write_at(api, entity_id, *moments):
    body = [{"entityId": entity_id, "metricName": "m", "value": i, "timestamp": iso(t)} for i, t in enumerate(moments)]
    return api.call("POST", "/metrics", 201, json={"metrics": body})["lastSeq"]


@pytest.fixture
def run(app):
    """``run(settings, now=None, dry_run=False)``: one retention run in the app, as a process named for the test."""

    def run_once(rules, now=None, dry_run=False):
        with app.app_context(), retention.single_run(f"test-{unique('p')}", time.time()) as mine:
            assert mine
            return retention.prune(rules, now or time.time(), dry_run=dry_run, batch=7)

    return run_once


def test_old_points_and_rollups_go_current_values_and_recent_history_stay(admin_api, database, tenant, venue, run):
    now = datetime.now(UTC)
    write_at(admin_api, venue, now - timedelta(days=10), now - timedelta(days=10, minutes=1), now - timedelta(hours=1))
    write_at(admin_api, venue, *[now - timedelta(days=500, seconds=s) for s in range(20)])  # 20 points, one minute

    counted = run(settings(), dry_run=True)
    assert counted["metric_points"] >= 22 and counted["metric_rollups"] >= 1
    assert count(database, "metric_points", tenant) == 23  # a dry run removes nothing

    removed = run(settings())
    assert removed["metric_points"] >= 22  # other tests' old points may go too: the tables are shared
    assert count(database, "metric_points", tenant) == 1
    # Rollups of the last 400 days stay (the two minutes 10 days ago, and the hour ago); the one of 500 days goes.
    assert count(database, "metric_rollups", tenant) == 3
    assert metrics_of(admin_api, venue)["m"]["value"] == 19  # current values are never touched


def test_change_log_rows_go_once_old_enough_and_delivered_by_every_live_poller(app, admin_api, database, venue, run):
    first = write_at(admin_api, venue, datetime.now(UTC))
    start = time.time()
    run(settings(), now=start)  # notes `first` as the newest at `start`
    later = write_at(admin_api, venue, datetime.now(UTC))
    with app.app_context():
        retention.report_position("slow-poller", first - 1, start + 300)  # has not delivered `first` yet

    run(settings(change_log=5), now=start + 10)
    assert database.scalar("SELECT count(*) FROM change_log WHERE seq = ?", (first,)) == 1

    with app.app_context():
        retention.report_position("slow-poller", later, start + 300)
    run(settings(change_log=15), now=start + 20)  # cut off at start + 5 again
    assert database.scalar("SELECT count(*) FROM change_log WHERE seq <= ?", (first,)) == 0
    assert database.scalar("SELECT count(*) FROM change_log WHERE seq = ?", (later,)) == 1  # noted later: too young

    # A position not renewed in time belongs to a process that is gone: it no longer holds rows back.
    with app.app_context():
        retention.report_position("gone-poller", 0, start + 300)
    run(settings(change_log=5), now=start + 400)
    assert database.scalar("SELECT count(*) FROM poller_positions WHERE process = 'gone-poller'") == 0
    with app.app_context():
        retention.forget_position("slow-poller")


def test_a_second_process_skips_its_turn_while_a_run_holds_the_lock(app):
    inside, done = threading.Event(), threading.Event()
    seen = []

    def holder():
        with app.app_context(), retention.single_run("first", time.time()) as mine:
            seen.append(("first", mine))
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(10)
    with app.app_context():
        assert retention.run_once(settings(), "second") is None
    done.set()
    thread.join()
    with app.app_context():
        assert retention.run_once(settings(), "second") is not None
    assert seen == [("first", True)]


def test_prune_command_prints_what_it_removed(cli_runner, admin_api, venue):
    write_at(admin_api, venue, datetime.now(UTC) - timedelta(days=30))
    dry = cli_runner.invoke(args=["prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "metric_points: would remove" in dry.output
    done = cli_runner.invoke(args=["prune"])
    assert done.exit_code == 0, done.output
    assert [line.split(":")[0] for line in done.output.splitlines()] == [
        "metric_points",
        "metric_rollups",
        "change_log",
    ]
