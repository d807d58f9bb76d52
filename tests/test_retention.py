"""Retention on live servers with short settings: what goes, what stays, one run at a time, and gaps kept.

The rules themselves are checked in process (tests/api/test_retention.py).
"""

import itertools
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testkit import Api, RecordingClient, log_size, mint_token, servers_on, unique, wait_for_metric

RUN = re.compile(rb"retention run by (\S+) from ([\d.]+) to ([\d.]+):")
# POLL_GAP_TIMEOUT: on PostgreSQL a new poller waits for the seq holes below its start as gaps, and its
# position, which holds change-log pruning back, stays under them until they time out.
SHORT = {
    "HISTORY_RETENTION": "2",
    "CHANGE_LOG_RETENTION": "1",
    "ROLLUP_RETENTION": "1d",
    "RETENTION_INTERVAL": "0.2",
    "POLL_GAP_TIMEOUT": "2",
}


def iso(moment):
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def runs(*servers, after=0):
    """Every retention run the servers logged: ``[(holder, start, end)]``."""
    found = []
    for server in servers:
        with open(server.log_path, "rb") as log:
            log.seek(after)
            found += [(m[1].decode(), float(m[2]), float(m[3])) for m in RUN.finditer(log.read())]
    return found


def wait_for_runs(servers, count, after=0, timeout=30):
    deadline = time.monotonic() + timeout
    while len(runs(*servers, after=after)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} retention runs within {timeout}s"
        time.sleep(0.05)
    return runs(*servers, after=after)


def wait_until_old_enough(database, seq, retention, timeout=30):
    """Wait until a retention mark says ``seq`` was written more than ``retention`` seconds ago."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM change_log_marks WHERE seq >= ? AND at <= ?"
    while not database.scalar(query, (seq, time.time() - retention)):
        assert time.monotonic() < deadline, f"seq {seq} never marked older than {retention}s"
        time.sleep(0.05)


def assert_one_at_a_time(found):
    ordered = sorted(found, key=lambda r: r[1])
    for (holder, _, end), (other, start, _) in itertools.pairwise(ordered):
        assert end <= start, f"{holder} ran until {end:.6f}, {other} started at {start:.6f}"


@pytest.fixture
def short_retention(tmp_path, live_server):
    """A node of two workers with retention every 0.2 s, raw points kept 2 s, change-log rows 1 s."""
    with servers_on(live_server.env["DATABASE_URL"], [tmp_path / "short"], WEB_CONCURRENCY="2", **SHORT) as (server,):
        yield server


def test_old_points_go_rollups_and_current_values_stay_and_writers_lose_nothing(short_retention):
    server = short_retention
    tenant = unique("tenant")
    api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
    api.put_entity("venue-1", "venue")
    old = datetime.now(UTC) - timedelta(hours=1)
    api.call(
        "POST", "/metrics", 201, json=[{"entityId": "venue-1", "metricName": "m", "value": 1, "timestamp": iso(old)}]
    )
    client = RecordingClient().connect(server.url, mint_token(tenant))
    client.subscribe("venue-1", "venue")

    stop = threading.Event()
    written = {}

    def writer(name):
        count = 0
        while not stop.is_set():
            count += 1
            api.ingest(("venue-1", name, count))
            written[name] = count

    writers = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
    for thread in writers:
        thread.start()
    history = f"/entities/venue-1/metrics/m/history?from={iso(old - timedelta(minutes=1))}"
    try:
        deadline = time.monotonic() + 20
        while api.call("GET", history, 200)["points"]:
            assert time.monotonic() < deadline, "the old raw point was never pruned"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in writers:
            thread.join()

    # The minute's rollup stays (ROLLUP_RETENTION is a day), and so does the current value.
    assert [p["last"] for p in api.call("GET", f"{history}&step=60", 200)["points"]] == [1.0]
    current = api.call("GET", "/entities/venue-1/metrics", 200)["metrics"]
    assert current["m"]["value"] == 1.0
    # Every write was acknowledged, is the current value, and reached the subscriber.
    for name, count in written.items():
        assert current[name]["value"] == count
        client.wait_for("metric:update", lambda u, n=name, c=count: u["metricName"] == n and u["value"] == c)
    client.disconnect()
    wait_for_metric(server.url, "analytics_retention_pruned_rows_total", 1, at_least=True, table="metric_points")
    # Change-log rows go once every live poller has passed them: on PostgreSQL the session's own server
    # may be waiting (POLL_GAP_TIMEOUT, 30 s there) for a seq an earlier test's refused insert used up.
    wait_for_metric(
        server.url, "analytics_retention_pruned_rows_total", 1, at_least=True, table="change_log", timeout=60
    )


@pytest.mark.backends("postgresql")
def test_two_nodes_of_two_workers_never_prune_at_once(tmp_path, live_server):
    tmp = Path(tmp_path)
    with servers_on(live_server.env["DATABASE_URL"], [tmp / "a", tmp / "b"], WEB_CONCURRENCY="2", **SHORT) as nodes:
        tenant = unique("tenant")
        api = Api(nodes[0].url, mint_token(tenant, roles=("admin", "ingest")))
        api.put_entity("venue-1", "venue")
        offsets = [log_size(node) for node in nodes]
        for i in range(50):
            api.ingest(("venue-1", "m", i))
        found = []
        for node, offset in zip(nodes, offsets, strict=True):
            found += wait_for_runs([node], 6, after=offset)
    assert len({holder for holder, _, _ in found}) >= 2
    assert_one_at_a_time(found)


@pytest.mark.backends("sqlite")
def test_two_workers_on_one_sqlite_file_never_prune_at_once(short_retention):
    offset = log_size(short_retention)
    found = wait_for_runs([short_retention], 12, after=offset)
    assert_one_at_a_time(found)


@pytest.mark.backends("postgresql")
def test_a_slow_transaction_holding_a_gap_is_delivered_after_pruning_ran(short_retention):
    server = short_retention
    tenant = unique("tenant")
    api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
    api.put_entity("venue-1", "venue")
    clients = [RecordingClient().connect(server.url, mint_token(tenant)) for _ in range(4)]  # on both workers
    for client in clients:
        client.subscribe("venue-1", "venue")
    with server.database.transaction() as slow:
        slow.execute(
            "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, 'venue-1', 'slow', 1)",
            (tenant,),
        )
        gap = slow.execute("SELECT max(seq) FROM change_log").fetchone()[0]
        after = api.ingest(("venue-1", "fast", 2))["lastSeq"]
        for client in clients:
            client.wait_for("metric:update", lambda u: u["seq"] == after)
        # Runs pass while the gap is open after `after` is old enough to go by the marks: rows above
        # the gap are kept all the same, because no poller has delivered past it.
        wait_until_old_enough(server.database, after, float(SHORT["CHANGE_LOG_RETENTION"]))
        wait_for_runs([server], 4, after=log_size(server))
        assert server.database.scalar("SELECT count(*) FROM change_log WHERE seq = ?", (after,)) == 1
    for client in clients:
        assert client.wait_for("metric:update", lambda u: u["metricName"] == "slow")["seq"] == gap
        client.disconnect()
