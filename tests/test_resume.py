"""Resuming from a seq: ``subscribe {..., sinceSeq}`` answers ``dashboard:resume`` with only what changed.

Real servers and clients: the missed values and layout changes, then the live stream with nothing
lost or repeated; the cases that fall back to ``dashboard:initial`` with ``recovered: false``; another
worker and another node; many clients resuming while writers run.
"""

import threading
import time
from pathlib import Path

import pytest

from testkit import Api, Database, RecordingClient, mint_token, servers_on, unique
from tests.api.conftest import NEW_TILE

UPDATES = "/analytics/dashboard"


def subscribe(client, entity_id, since_seq=None, entity_type="event"):
    """Send ``subscribe`` (with ``sinceSeq`` when given); return ``(event, payload, ack)``."""
    mark = len(client.events)
    payload = {"entityId": entity_id, "entityType": entity_type}
    if since_seq is not None:
        payload["sinceSeq"] = since_seq
    ack = client.call("subscribe", payload)
    for event, data in client.events[mark:]:
        if event in ("dashboard:initial", "dashboard:resume") and data["entityId"] == entity_id:
            return event, data, ack
    raise AssertionError(f"no state for {entity_id}: {client.events[mark:]}")


@pytest.fixture
def connect(live_server):
    made = []

    def make(tenant, server=None, namespace="/dashboard"):
        client = RecordingClient(namespace).connect((server or live_server).url, mint_token(tenant))
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def test_resume_sends_only_what_changed_then_the_live_stream(live_server, tenant, admin_api, entity, connect):
    entity_id, dashboard = entity
    first = connect(tenant)
    subscribe(first, entity_id)
    applied = admin_api.ingest((entity_id, "ticketsSold", 1), (entity_id, "revenue", 10))["lastSeq"]
    first.wait_until(lambda c: len(c.of("metric:update")) == 2, what="both values")
    first.disconnect()
    # The client resumes from the last seq it applied (a snapshot's seq is a watermark that a
    # PostgreSQL gap can hold back: values after it would come again, harmlessly).
    initial = {"seq": applied}

    admin_api.ingest((entity_id, "ticketsSold", 2))
    admin_api.ingest((entity_id, "ticketsSold", 3), (entity_id, "checkIns", 7))
    added = admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    tile_id = added["tile"]["id"]
    updated = admin_api.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", 200, json={"title": "Queue"})

    clients = []
    for namespace in ("/dashboard", UPDATES):
        client = connect(tenant, namespace=namespace)
        event, resumed, ack = subscribe(client, entity_id, since_seq=initial["seq"])
        assert event == "dashboard:resume"
        assert ack == {"ok": True, "seq": resumed["seq"], "recovered": True}
        # `seq` is the watermark, as a snapshot's (on PostgreSQL a gap below can hold it under fromSeq).
        assert resumed["fromSeq"] == initial["seq"]
        assert (resumed["entityId"], resumed["entityType"], resumed["recovered"]) == (entity_id, "event", True)
        assert resumed["metrics"] == {"ticketsSold": 3.0, "checkIns": 7.0}  # not revenue: it did not change
        assert [(u["action"], u["version"], u["tile"]) for u in resumed["updates"]] == [
            ("added", 2, added["tile"]),
            ("updated", 3, updated["tile"]),
        ]
        clients.append(client)

    # Live from here on, nothing repeated.
    later = admin_api.ingest((entity_id, "ticketsSold", 4))["lastSeq"]
    admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", 200)
    for client in clients:
        removed = client.wait_for("dashboard:update")
        assert (removed["action"], removed["version"]) == ("removed", 4)
        assert len(client.of("dashboard:update")) == 1
    assert [(u["value"], u["seq"]) for u in clients[0].of("metric:update")] == [(4.0, later)]


def test_a_resume_from_the_current_position_is_empty(live_server, tenant, admin_api, entity, connect):
    entity_id, _ = entity
    client = connect(tenant)
    _, initial, _ = subscribe(client, entity_id)
    event, resumed, _ = subscribe(connect(tenant), entity_id, since_seq=initial["seq"])
    assert event == "dashboard:resume"
    assert (resumed["metrics"], resumed["updates"]) == ({}, [])


def test_what_cannot_be_resumed_gets_a_full_initial_with_recovered_false(
    live_server, tenant, admin_api, entity, connect
):
    entity_id, _ = entity
    client = connect(tenant)
    _, initial, _ = subscribe(client, entity_id)

    # Ahead of the log.
    event, state, ack = subscribe(connect(tenant), entity_id, since_seq=initial["seq"] + 10**9)
    assert (event, state["recovered"], ack["recovered"]) == ("dashboard:initial", False, False)
    assert state["tiles"] and "history" in state

    # Its dashboard replaced in between.
    other = admin_api.create_dashboard("Other")
    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": other["id"]})
    event, state, _ = subscribe(connect(tenant), entity_id, since_seq=initial["seq"])
    assert (event, state["recovered"], state["dashboardId"]) == ("dashboard:initial", False, other["id"])


@pytest.mark.parametrize(
    "since", [-1, "5", 1.5, True, [], 2**64], ids=["negative", "string", "float", "bool", "list", "huge"]
)
def test_a_bad_since_seq_is_1100(live_server, tenant, entity, connect, since):
    entity_id, _ = entity
    client = connect(tenant)
    ack = client.call("subscribe", {"entityId": entity_id, "entityType": "event", "sinceSeq": since})
    assert ack == {
        "ok": False,
        "error": {"code": "ANALYTICS_1100", "message": "sinceSeq must be a non-negative integer"},
    }
    assert client.wait_for("error")["code"] == "ANALYTICS_1100"
    assert not client.of("dashboard:initial") and not client.of("dashboard:resume")


@pytest.fixture
def limited(tmp_path, live_server):
    """A node of two workers that sends resumes of at most 3 changes."""
    with servers_on(
        live_server.env["DATABASE_URL"], [tmp_path / "limited"], WEB_CONCURRENCY="2", RESUME_MAX_CHANGES="3"
    ) as (server,):
        yield server


@pytest.fixture
def pruning(tmp_path, live_server):
    """A node whose retention keeps change-log rows 1 s and runs every 0.2 s."""
    settings = {
        "CHANGE_LOG_RETENTION": "1",
        "RETENTION_INTERVAL": "0.2",
        "POLL_GAP_TIMEOUT": "2",  # a new PostgreSQL poller's start-up gaps would hold pruning back for 30 s
    }
    with servers_on(live_server.env["DATABASE_URL"], [tmp_path / "pruning"], **settings) as (server,):
        yield server


def applied_seq(api, client, entity_id, metric):
    """Write a value and wait for the client to apply it; return its seq (where the client would resume from)."""
    seq = api.ingest((entity_id, metric, 0))["lastSeq"]
    client.wait_for("metric:update", lambda u: u["seq"] == seq)
    return seq


def test_more_than_resume_max_changes_is_not_recovered(limited, connect):
    tenant = unique("tenant")
    api = Api(limited.url, mint_token(tenant, roles=("admin", "ingest")))
    api.put_entity("event-1", "event", api.create_dashboard()["id"])
    first = connect(tenant, server=limited)
    subscribe(first, "event-1")
    since = applied_seq(api, first, "event-1", "start")
    api.ingest(("event-1", "a", 1), ("event-1", "b", 2))
    resumer = connect(tenant, server=limited)
    event, resumed, _ = subscribe(resumer, "event-1", since_seq=since)
    assert (event, set(resumed["metrics"])) == ("dashboard:resume", {"a", "b"})

    last = api.ingest(("event-1", "c", 3), ("event-1", "d", 4))["lastSeq"]  # four changes since: over the limit of 3
    # Once the server has read them: until then the resume from `since` read above is still the state its stream
    # has reached, and is sent again (ChangePoller._kept_resume), the new changes following as updates. It is kept
    # by the worker that served `resumer`, which need not be `first`'s: each worker reads the log on its own.
    for client in (first, resumer):
        client.wait_for("metric:update", lambda u: u["seq"] == last)
    event, state, _ = subscribe(connect(tenant, server=limited), "event-1", since_seq=since)
    assert (event, state["recovered"]) == ("dashboard:initial", False)
    assert state["metrics"] == {"start": 0.0, "a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}


def test_a_pruned_range_is_not_recovered(pruning, connect):
    tenant = unique("tenant")
    api = Api(pruning.url, mint_token(tenant, roles=("admin", "ingest")))
    api.put_entity("event-1", "event", api.create_dashboard()["id"])
    first = connect(tenant, server=pruning)
    subscribe(first, "event-1")
    since = applied_seq(api, first, "event-1", "start")
    api.ingest(("event-1", "e", 5))
    database = pruning.database
    wait_until(lambda: (database.scalar("SELECT min(seq) FROM change_log") or since + 2) > since + 1, what="pruning")
    event, state, _ = subscribe(connect(tenant, server=pruning), "event-1", since_seq=since)
    assert (event, state["recovered"]) == ("dashboard:initial", False)
    assert state["metrics"] == {"start": 0.0, "e": 5.0}


def wait_until(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, live_server):
    tmp = Path(tmp_path_factory.mktemp("resume-nodes"))
    with servers_on(live_server.env["DATABASE_URL"], [tmp / "a", tmp / "b"], WEB_CONCURRENCY="2") as both:
        yield both


@pytest.mark.backends("postgresql")
def test_a_resume_on_another_worker_or_node_gets_the_same_answer(nodes, connect):
    a, b = nodes
    tenant = unique("tenant")
    api = Api(a.url, mint_token(tenant, roles=("admin", "ingest")))
    dashboard = api.create_dashboard()
    api.put_entity("event-1", "event", dashboard["id"])
    first = connect(tenant, server=a)
    subscribe(first, "event-1")
    applied = api.ingest(("event-1", "ticketsSold", 4))["lastSeq"]
    first.wait_for("metric:update", lambda u: u["seq"] == applied)  # the last seq this client applied
    api.ingest(("event-1", "ticketsSold", 5))
    added = api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    answers = []
    for server in (a, a, b, b):
        event, resumed, _ = subscribe(connect(tenant, server=server), "event-1", since_seq=applied)
        assert event == "dashboard:resume"
        answers.append((resumed["metrics"], [(u["action"], u["tile"]) for u in resumed["updates"]]))
    # Every worker's poller has read the change before the resume: it is in the answer, wherever it is asked.
    assert answers == [({"ticketsSold": 5.0}, [("added", added["tile"])])] * 4


def view(client, entity_id):
    """Metric values the client holds: its last state, then every update after it."""
    values = {}
    for event, data in list(client.events):
        if event == "dashboard:initial" and data["entityId"] == entity_id:
            values = dict(data["metrics"])
        elif event == "dashboard:resume" and data["entityId"] == entity_id:
            values.update(data["metrics"])
        elif event == "metric:update" and data["entityId"] == entity_id:
            values[data["metricName"]] = data["value"]
    return values


def last_seq(client):
    """The highest seq among the events the client applied."""
    seqs = [data["seq"] for event, data in client.events if isinstance(data, dict) and "seq" in data]
    return max(seqs)


def test_fifty_clients_resuming_while_writers_run_end_equal_to_the_database(
    live_server, tenant, admin_api, entity, connect
):
    entity_id, _ = entity
    database = Database(live_server.env["DATABASE_URL"])
    clients = [connect(tenant) for _ in range(50)]
    for client in clients:
        subscribe(client, entity_id)
    stop = threading.Event()

    def write():
        n = 0
        while not stop.is_set():
            n += 1
            admin_api.ingest((entity_id, f"m{n % 7}", n))

    writers = [threading.Thread(target=write) for _ in range(3)]
    for thread in writers:
        thread.start()
    try:
        # Each client has applied a live value before it goes: the seq it resumes from is a row of the log
        # (a snapshot's seq is a watermark, which a gap can hold below rows an earlier test pruned).
        for client in clients:
            client.wait_for("metric:update")
        resumed = []
        for client in clients:
            since = last_seq(client)
            client.disconnect()
            client.connect(live_server.url, mint_token(tenant))
            _, _, ack = subscribe(client, entity_id, since_seq=since)
            resumed.append(ack["recovered"])
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    fence = admin_api.ingest((entity_id, "fence", 1))["lastSeq"]
    rows = database.execute(
        "SELECT metric_name, value FROM metric_values WHERE tenant_id = ? AND entity_id = ?", (tenant, entity_id)
    )
    expected = dict(rows)
    for client in clients:
        client.wait_for("metric:update", lambda u: u["seq"] == fence)
        assert view(client, entity_id) == expected
    assert all(resumed), "every client resumed"
