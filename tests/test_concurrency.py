"""Many writers at once: every subscriber ends on the database's values, and no change reaches it twice.

Writer processes (tests/writers.py) hammer one tenant's metrics through ``POST /api/v1/metrics`` and straight into
the change log while Socket.IO clients are subscribed. Afterwards the database is the truth: each client's last
seen value of every metric it follows ("dashboard:initial" overlaid with "metric:update" in arrival order) must be
the database's, every update must be the change-log row its ``seq`` names, and per client no ``seq`` comes twice,
each metric's ``seq`` only grows, and no update is older than the snapshot it follows (app/realtime/poller.py).
"""

import multiprocessing
import queue
import time

import pytest

from testkit import unique
from tests import writers

#: Metric names of the three entities the writers hammer.
METRICS = (
    ("ticketsSold", "revenue", "checkIns", "capacityUsed"),
    ("ticketsSold", "revenue", "checkIns"),
    ("ticketsSold", "revenue", "queueLength"),
)
#: Points per REST writer and per direct writer (some 50 requests and 330 transactions each, all four writers at
#: once), and the direct writers' pause between transactions. Unpaced, two direct writers commit ~8,000 rows a
#: second and a REST write waits seconds for the SQLite write lock; that wait blocks the whole gevent worker (sqlite3
#: does not yield), so every socket stalls and the test measures nothing.
REST_POINTS = 300
DB_POINTS = 1000
DB_PAUSE = 0.002
WRITE_SECONDS = 20.0
CONVERGE_TIMEOUT = 20.0


class Subscriber:
    """A recording client, the entities it follows and a label for failure messages."""

    def __init__(self, sio_client, token, label, transports, entity_ids):
        self.label = f"{label} {'+'.join(transports)}"
        self.entity_ids = list(entity_ids)
        self.client = sio_client(token, transports=transports)

    def subscribe(self, *extra):
        """Subscribe to the entities, then to ``extra`` ones (fences)."""
        for entity_id in [*self.entity_ids, *extra]:
            self.client.subscribe(entity_id)
        return self

    def events(self):
        """Every event so far, in arrival order."""
        return list(self.client.events)

    def last_seen(self):
        """``{entity_id: {metric: value}}``: each snapshot overlaid with the updates after it."""
        view = {}
        for name, data in self.events():
            if name == "dashboard:initial":
                view[data["entityId"]] = dict(data["metrics"])
            elif name == "metric:update":
                view.setdefault(data["entityId"], {})[data["metricName"]] = data["value"]
        return {entity_id: view.get(entity_id) for entity_id in self.entity_ids}


def writer_context():
    """multiprocessing's ``forkserver`` context, its server started with tests/writers.py imported.

    Each writer is a fork of that one clean process (no threads of the test's clients): it starts at once, where a
    ``spawn``ed one would import Python's and the suite's modules anew, every writer of every test.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([writers.__name__])
    return context


class WriterGroup:
    """Writer processes started together at a barrier; any left running at exit are stopped, then terminated."""

    def __init__(self, live_server, tenant_id, token, targets, rest_points, db_points, seconds=WRITE_SECONDS):
        context = writer_context()
        database_url = live_server.env["DATABASE_URL"]
        kinds = [("rest", rest_points, 0.0)] * 2 + [("db", db_points, DB_PAUSE)] * 2
        self.ready = context.Barrier(len(kinds) + 1)
        self.stop_event = context.Event()
        self.results = context.Queue()
        self.processes = []
        for index, (kind, count, pause) in enumerate(kinds):
            plan = writers.Plan(f"{kind}-{index}", tenant_id, targets, count, seconds, seed=index, pause=pause)
            if kind == "rest":
                target, args = writers.rest_writer, (plan, live_server.url, token)
            else:
                target, args = writers.db_writer, (plan, database_url)
            args = (*args, self.ready, self.stop_event, self.results)
            self.processes.append(context.Process(target=target, args=args, name=plan.name, daemon=True))

    def __enter__(self):
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)

    def start(self):
        """Release every writer at once (they are all started and connected by then)."""
        self.ready.wait(timeout=60)

    def stop(self):
        """Ask the writers to stop after their current batch."""
        self.stop_event.set()

    def alive(self):
        """How many writers are still writing."""
        return sum(process.is_alive() for process in self.processes)

    def finish(self, timeout):
        """Wait for every writer's report and exit; assert they all succeeded; return the reports."""
        deadline = time.monotonic() + timeout
        reports = []
        for _ in self.processes:  # drain the queue before joining: a child exits only once its report is sent
            try:
                reports.append(self.results.get(timeout=max(deadline - time.monotonic(), 0.1)))
            except queue.Empty:
                exits = {p.name: p.exitcode for p in self.processes}
                pytest.fail(f"writers did not all report within {timeout}s: got {reports}, exit codes {exits}")
        for process in self.processes:
            process.join(timeout=max(deadline - time.monotonic(), 0.1))
        failures = [r["error"] for r in reports if not r["ok"]]
        assert not failures, "\n".join(failures)
        assert [p.exitcode for p in self.processes] == [0] * len(self.processes)
        assert all(r["points"] > 0 for r in reports), reports
        return reports


def read_database(live_server, tenant_id):
    """The truth, read-only: ``(metric_values, change_rows, max_seq)`` for the tenant.

    ``metric_values`` is ``{entity_id: {metric: (value, seq)}}``, ``change_rows`` is
    ``{seq: (entity_id, metric, value)}`` for the tenant's metric changes.
    """
    database = live_server.database
    values = {}
    rows = database.execute(
        "SELECT entity_id, metric_name, value, seq FROM metric_values WHERE tenant_id = ?", (tenant_id,)
    )
    for entity_id, metric_name, value, seq in rows:
        values.setdefault(entity_id, {})[metric_name] = (value, seq)
    changes = database.execute(
        "SELECT seq, entity_id, metric_name, value FROM change_log WHERE tenant_id = ? AND kind = 'metric'",
        (tenant_id,),
    )
    change_rows = {seq: (entity_id, metric_name, value) for seq, entity_id, metric_name, value in changes}
    max_seq = database.scalar("SELECT MAX(seq) FROM change_log")
    return values, change_rows, max_seq


def check_database(values, change_rows, reports):
    """Every point the writers reported is in the change log, and metric_values holds each metric's newest row."""
    assert len(change_rows) == sum(r["points"] for r in reports)
    newest = {}
    for seq, (entity_id, metric_name, value) in sorted(change_rows.items()):
        newest.setdefault(entity_id, {})[metric_name] = (value, seq)
    assert values == newest
    for report in reports:
        for last_seq, batch in report["last_seqs"]:  # lastSeq is the highest seq of one of the batch's rows
            assert list(change_rows[last_seq]) in [list(point) for point in batch], (report["name"], last_seq)


def snapshot_problems(where, snapshot, history):
    """A snapshot must hold each metric's newest change at or below the snapshot's seq (or a newer change).

    ``history`` is ``{(entity_id, metric): [(seq, value), ...]}`` in seq order.
    """
    problems = []
    entity_id, seq, held = snapshot["entityId"], snapshot["seq"], snapshot["metrics"]
    metrics = {m for e, m in history if e == entity_id} | set(held)
    for metric in sorted(metrics):
        changes = history.get((entity_id, metric), [])
        due = [s for s, _ in changes if s <= seq]
        holding = [s for s, v in changes if v == held.get(metric)]
        if metric not in held:
            if due:
                problems.append(f"{where}: lacks {metric}, changed at seq {due[-1]} <= its seq {seq}")
        elif not holding:
            problems.append(f"{where}: {metric} = {held[metric]}, a value never written")
        elif due and holding[-1] < due[-1]:
            problems.append(f"{where}: {metric} is seq {holding[-1]}'s value, but seq {due[-1]} <= its seq {seq}")
    return problems


def delivery_problems(subscriber, change_rows, max_seq):
    """Everything a subscriber received that breaks the delivery guarantees, as readable lines."""
    history = {}
    for seq, (entity_id, metric_name, value) in sorted(change_rows.items()):
        history.setdefault((entity_id, metric_name), []).append((seq, value))
    problems = []
    snapshot_seq, last_seq, first_arrival = {}, {}, {}
    for index, (name, data) in enumerate(subscriber.events()):
        if name == "dashboard:initial":
            snapshot_seq[data["entityId"]] = data["seq"]
            where = f"event #{index} dashboard:initial {data['entityId']} seq {data['seq']}"
            problems += snapshot_problems(where, data, history)
            continue
        if name != "metric:update":
            problems.append(f"event #{index}: unexpected {name} {data}")
            continue
        entity_id, metric_name, seq = data["entityId"], data["metricName"], data["seq"]
        where = f"event #{index} seq {seq} {entity_id}/{metric_name}"
        if seq in first_arrival:
            problems.append(f"{where}: delivered twice (first as event #{first_arrival[seq]})")
        first_arrival.setdefault(seq, index)
        if entity_id not in snapshot_seq:
            problems.append(f"{where}: arrived before dashboard:initial of its entity (or was never subscribed)")
        elif seq <= snapshot_seq[entity_id]:
            problems.append(f"{where}: not newer than the entity's dashboard:initial seq {snapshot_seq[entity_id]}")
        previous = last_seq.get((entity_id, metric_name))
        if previous is not None and seq <= previous:
            problems.append(f"{where}: arrived after seq {previous} of the same metric")
        last_seq[(entity_id, metric_name)] = seq
        if change_rows.get(seq) != (entity_id, metric_name, data["value"]):
            problems.append(f"{where}: value {data['value']} but the change log has {change_rows.get(seq)}")
        if seq > max_seq:
            problems.append(f"{where}: above MAX(seq) {max_seq}")
    return problems


def expected_view(subscriber, values):
    """What a converged subscriber shows: the database's value of each metric of its entities."""
    return {
        entity_id: {metric: value for metric, (value, _) in values.get(entity_id, {}).items()}
        for entity_id in subscriber.entity_ids
    }


def wait_for_convergence(subscriber, values):
    """Wait, re-checking on every event, until the subscriber shows the database's values."""
    expected = expected_view(subscriber, values)
    try:
        subscriber.client.wait_until(
            lambda _: subscriber.last_seen() == expected, timeout=CONVERGE_TIMEOUT, what="convergence"
        )
    except AssertionError:
        seen = subscriber.last_seen()
        wrong = {
            f"{e}/{m}": {"seen": (seen.get(e) or {}).get(m), "database": values.get(e, {}).get(m)}
            for e in expected
            for m in set(expected[e]) | set(seen.get(e) or {})
            if (seen.get(e) or {}).get(m) != expected[e].get(m)
        }
        client = subscriber.client
        pytest.fail(
            f"{subscriber.label} did not converge within {CONVERGE_TIMEOUT}s: {wrong}; connected="
            f"{client.client.connected} disconnects={client.disconnects} updates={len(client.of('metric:update'))}"
        )


def settle_and_check(admin_api, live_server, tenant, subscribers, fence, reports):
    """Converge every subscriber, fence off stragglers, then check the delivery guarantees of each."""
    values, change_rows, max_seq = read_database(live_server, tenant)
    check_database(values, change_rows, reports)
    for subscriber in subscribers:
        wait_for_convergence(subscriber, values)
    # A last change everyone follows: changes reach a socket in seq order, so once it is there, any late duplicate
    # of an earlier change would be there too.
    fence_seq = admin_api.ingest((fence, "ticketsSold", 1))["lastSeq"]
    for subscriber in subscribers:
        subscriber.client.wait_for("metric:update", lambda d: d["seq"] == fence_seq)
    _, change_rows, max_seq = read_database(live_server, tenant)
    problems = {s.label: delivery_problems(s, change_rows, max_seq) for s in subscribers}
    report = [f"{label} ({len(lines)} problems): " + "; ".join(lines[:8]) for label, lines in problems.items() if lines]
    assert not report, "\n".join(report)
    # Nothing arrived after the fence, which is no longer needed in the views.
    for subscriber in subscribers:
        assert subscriber.events()[-1][1]["seq"] == fence_seq


@pytest.fixture
def scene(admin_api):
    """Three entities on one dashboard with 3-4 metrics each, plus a fence entity: ``(entities, targets, fence)``."""
    names = sorted({m for metrics in METRICS for m in metrics})
    dashboard = admin_api.create_dashboard(
        tiles=[{"title": name, "metricName": name, "kind": "number"} for name in names]
    )
    entities = []
    for _ in METRICS:
        entities.append(unique("event"))
        admin_api.put_entity(entities[-1], "event", dashboard["id"])
    fence = unique("fence")
    admin_api.put_entity(fence, "event", dashboard["id"])
    targets = tuple((e, m) for e, metrics in zip(entities, METRICS, strict=True) for m in metrics)
    return entities, targets, fence


def test_every_subscriber_converges_on_the_database_and_gets_no_change_twice(
    live_server, admin_api, tenant, token_for, sio_client, scene
):
    entities, targets, fence = scene
    token = token_for(tenant)
    subscribers = [
        Subscriber(sio_client, token, "A all", ("websocket",), entities),
        Subscriber(sio_client, token, "B all", ("polling", "websocket"), entities),
        Subscriber(sio_client, token, "C subset", ("websocket",), entities[1:]),
        Subscriber(sio_client, token, "D subset", ("polling",), entities[::2]),
    ]
    for subscriber in subscribers:
        subscriber.subscribe(fence)
    assert all(s.client.of("dashboard:initial")[0]["metrics"] == {} for s in subscribers)

    ingest_token = token_for(tenant, roles=("ingest",))
    with WriterGroup(live_server, tenant, ingest_token, targets, rest_points=REST_POINTS, db_points=DB_POINTS) as group:
        group.start()
        reports = group.finish(timeout=WRITE_SECONDS + 30)

    settle_and_check(admin_api, live_server, tenant, subscribers, fence, reports)
    updates = [len(s.client.of("metric:update")) for s in subscribers]
    assert all(updates), updates


def test_clients_subscribing_mid_stream_converge_and_get_no_change_twice(
    live_server, admin_api, tenant, token_for, sio_client, scene
):
    entities, targets, fence = scene
    token = token_for(tenant)
    watcher = Subscriber(sio_client, token, "watcher", ("websocket",), entities).subscribe(fence)
    late_plans = [
        ("late 1", ("websocket",), entities),
        ("late 2", ("polling", "websocket"), entities[::-1]),
        ("late 3", ("polling",), entities[1:]),
    ]

    def watcher_saw(count):
        watcher.client.wait_until(lambda c: len(c.of("metric:update")) >= count, what=f"{count} updates")

    late, writing = [], []
    ingest_token = token_for(tenant, roles=("ingest",))
    # Bounded by time, and by counts they do not reach: the test stops them once the late clients are in.
    with WriterGroup(live_server, tenant, ingest_token, targets, rest_points=20_000, db_points=40_000) as group:
        group.start()
        for label, transports, entity_ids in late_plans:
            watcher_saw(len(watcher.client.of("metric:update")) + 40)
            late.append(Subscriber(sio_client, token, label, transports, entity_ids).subscribe(fence))
            writing.append(group.alive())
        watcher_saw(len(watcher.client.of("metric:update")) + 150)
        group.stop()
        reports = group.finish(timeout=30)

    assert writing == [len(group.processes)] * len(late), "writers had stopped before the late clients were in"
    settle_and_check(admin_api, live_server, tenant, [watcher, *late], fence, reports)
    for subscriber in late:
        snapshots = subscriber.client.of("dashboard:initial")
        assert any(d["metrics"] for d in snapshots), f"{subscriber.label}: every snapshot was taken before any write"
        updated = {d["entityId"] for d in subscriber.client.of("metric:update")} - {fence}
        assert updated == set(subscriber.entity_ids), f"{subscriber.label}: an entity got no update after its snapshot"
