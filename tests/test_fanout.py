"""What reaches which socket: layout changes on both namespaces, tenant isolation, out-of-order commits."""

import sqlite3

import psycopg
import pytest

from testkit import Api, unique


def insert_change(server, tenant_id, entity_id, metric_name, value, seq=None):
    """Write a metric straight into the change log as an external writer would, optionally at a chosen seq."""
    columns, params = "tenant_id, entity_id, metric_name, value", (tenant_id, entity_id, metric_name, value)
    if seq is not None:
        columns, params = "seq, " + columns, (seq, *params)
    marks = ", ".join("?" * len(params))
    inserted = server.database.scalar(f"INSERT INTO change_log ({columns}) VALUES ({marks}) RETURNING seq", params)
    if seq is not None and server.database.backend == "postgresql":
        # The transactions "in flight" below seq took their numbers from the sequence: move it past seq.
        server.database.execute(
            "SELECT setval(pg_get_serial_sequence('change_log', 'seq'), GREATEST(?,"
            " COALESCE(pg_sequence_last_value(pg_get_serial_sequence('change_log', 'seq')::regclass), 0)))",
            (seq,),
        )
    return inserted


def max_seq(server):
    return server.database.scalar("SELECT COALESCE(MAX(seq), 0) FROM change_log")


def test_layout_changes_reach_both_namespaces(admin_api, entity, token_for, tenant, sio_client):
    entity_id, dashboard = entity
    metrics_socket = sio_client(token_for(tenant), namespace="/dashboard")
    layout_socket = sio_client(token_for(tenant), namespace="/analytics/dashboard")
    initial = metrics_socket.subscribe(entity_id)
    assert layout_socket.subscribe(entity_id)["tiles"] == initial["tiles"]
    base = f"/dashboards/{dashboard['id']}/tiles"

    added = admin_api.call("POST", base, 201, json={"title": "Gate", "metricName": "gate", "kind": "gauge"})
    tile_id = added["tile"]["id"]
    admin_api.call("PATCH", f"{base}/{tile_id}", 200, json={"title": "Gate A"})
    order = [tile_id] + [t["id"] for t in dashboard["tiles"]]
    admin_api.call("PUT", f"{base}/order", 200, json={"tileIds": order})
    admin_api.call("DELETE", f"{base}/{tile_id}", 200)
    admin_api.ingest((entity_id, "ticketsSold", 3))

    for client in (metrics_socket, layout_socket):
        client.wait_for("dashboard:update", lambda d: d["action"] == "removed")
        updates = client.of("dashboard:update")
        assert [u["action"] for u in updates] == ["added", "updated", "reordered", "removed"]
        assert all(u["dashboardId"] == dashboard["id"] for u in updates)
        assert updates[0]["tile"]["title"] == "Gate" and updates[0]["tile"]["position"] == 2
        assert updates[1]["tile"]["title"] == "Gate A"
        assert updates[2]["order"] == order and updates[2]["tile"] is None
        assert updates[3]["tile"]["id"] == tile_id
        assert [u["version"] for u in updates] == [2, 3, 4, 5]
        assert sorted(u["seq"] for u in updates) == [u["seq"] for u in updates]
    metrics_socket.wait_for("metric:update", lambda d: d["value"] == 3.0)
    # Metric values are for /dashboard only; the barrier is another layout change, sent after the metric.
    admin_api.call("POST", base, 201, json={"title": "Barrier", "metricName": "b", "kind": "number"})
    layout_socket.wait_for("dashboard:update", lambda d: d["tile"] and d["tile"]["title"] == "Barrier")
    assert layout_socket.of("metric:update") == []


def test_socket_on_two_entities_of_one_dashboard_gets_each_layout_change_once(
    admin_api, entity, token_for, tenant, sio_client
):
    entity_id, dashboard = entity
    sibling = unique("event")
    admin_api.put_entity(sibling, "event", dashboard["id"])
    client = sio_client(token_for(tenant))
    client.subscribe(entity_id)
    client.subscribe(sibling)
    admin_api.call(
        "POST", f"/dashboards/{dashboard['id']}/tiles", 201, json={"title": "T", "metricName": "m", "kind": "line"}
    )
    admin_api.ingest((entity_id, "revenue", 1))
    client.wait_for("metric:update")
    assert len(client.of("dashboard:update")) == 1


def test_tenants_never_see_each_other(live_server, token_for, sio_client):
    # Two tenants use the very same entity id.
    apis = {}
    clients = {}
    for name in ("a", "b"):
        tenant_id = unique(f"tenant-{name}")
        apis[name] = Api(live_server.url, token_for(tenant_id, roles=("admin", "ingest")))
        dashboard = apis[name].create_dashboard(name=f"board {name}")
        apis[name].put_entity("shared-id", "event", dashboard["id"])
        apis[name].ingest(("shared-id", "ticketsSold", 100 if name == "a" else 200))
        clients[name] = sio_client(token_for(tenant_id))
        apis[name].dashboard_id = dashboard["id"]

    assert clients["a"].subscribe("shared-id")["metrics"] == {"ticketsSold": 100.0}
    assert clients["b"].subscribe("shared-id")["metrics"] == {"ticketsSold": 200.0}

    apis["a"].ingest(("shared-id", "ticketsSold", 101))
    apis["a"].call(
        "POST",
        f"/dashboards/{apis['a'].dashboard_id}/tiles",
        201,
        json={"title": "A only", "metricName": "x", "kind": "number"},
    )
    apis["b"].ingest(("shared-id", "ticketsSold", 201))

    clients["b"].wait_for("metric:update", lambda d: d["value"] == 201.0)
    clients["a"].wait_for("dashboard:update")
    assert [u["value"] for u in clients["b"].of("metric:update")] == [201.0]
    assert clients["b"].of("dashboard:update") == []
    assert [u["value"] for u in clients["a"].of("metric:update")] == [101.0]


def test_late_commit_below_the_head_is_delivered_and_never_goes_backwards(
    live_server, admin_api, entity, token_for, tenant, sio_client
):
    """Rows that become visible out of seq order, as concurrent transactions on PostgreSQL can commit."""
    entity_id, _ = entity
    client = sio_client(token_for(tenant))
    initial = client.subscribe(entity_id)
    head = max_seq(live_server)

    # seq head+5 commits first; head+1..head+4 are still "in flight".
    insert_change(live_server, tenant, entity_id, "ticketsSold", 50, seq=head + 5)
    client.wait_for("metric:update", lambda d: d["seq"] == head + 5)
    # An older value of the same metric commits late: the database keeps the newer one and so does the client.
    insert_change(live_server, tenant, entity_id, "ticketsSold", 40, seq=head + 2)
    # A late change of another metric must still be delivered.
    insert_change(live_server, tenant, entity_id, "revenue", 7, seq=head + 3)
    barrier = insert_change(live_server, tenant, entity_id, "barrier", 1)
    client.wait_for("metric:update", lambda d: d["seq"] == barrier)

    seen = [(u["metricName"], u["value"], u["seq"]) for u in client.of("metric:update")]
    assert seen == [("ticketsSold", 50.0, head + 5), ("revenue", 7.0, head + 3), ("barrier", 1.0, barrier)]
    assert all(u["seq"] > initial["seq"] for u in client.of("metric:update"))
    current = admin_api.call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"]
    assert current["ticketsSold"]["value"] == 50.0


def test_changes_within_one_tick_are_conflated_to_the_latest(
    live_server, admin_api, entity, token_for, tenant, sio_client
):
    entity_id, _ = entity
    client = sio_client(token_for(tenant))
    client.subscribe(entity_id)
    # One batch commits 20 values of one metric at once: one poll reads them together.
    result = admin_api.ingest(*[(entity_id, "ticketsSold", float(v)) for v in range(20)])
    update = client.wait_for("metric:update")
    assert (update["value"], update["seq"]) == (19.0, result["lastSeq"])
    admin_api.ingest((entity_id, "barrier", 1))
    client.wait_for("metric:update", lambda d: d["metricName"] == "barrier")
    assert [u["metricName"] for u in client.of("metric:update")] == ["ticketsSold", "barrier"]


@pytest.mark.parametrize(
    ("value", "recorded_at"),
    [("abc", None), (1e999, None), (1.0, "yesterday"), (1.0, 2461000.5), (1.0, "2026-13-45 99:00:00")],
    ids=["text-value", "infinite-value", "word-time", "julian-time", "impossible-time"],
)
def test_external_writer_cannot_insert_a_row_the_feed_could_not_carry(
    live_server, entity, token_for, tenant, sio_client, value, recorded_at
):
    entity_id, _ = entity
    client = sio_client(token_for(tenant))
    client.subscribe(entity_id)
    database = live_server.database
    if database.backend == "postgresql" and recorded_at == "yesterday":
        pytest.skip("PostgreSQL reads 'yesterday' as a real timestamp (midnight UTC), which the feed carries")
    columns, params = "tenant_id, entity_id, metric_name, value", (tenant, entity_id, "poison", value)
    if recorded_at is not None:
        columns, params = columns + ", recorded_at", (*params, recorded_at)
    # SQLite's CHECK constraints refuse it; PostgreSQL's types (and its finite-value CHECK) do.
    refused = (
        (sqlite3.IntegrityError, "CHECK constraint failed") if database.backend == "sqlite" else (psycopg.Error, None)
    )
    with pytest.raises(refused[0], match=refused[1]):
        database.execute(f"INSERT INTO change_log ({columns}) VALUES ({', '.join('?' * len(params))})", params)
    # The feed keeps flowing, ISO-8601 timestamps with an offset included.
    database.execute(
        "INSERT INTO change_log (tenant_id, entity_id, metric_name, value, recorded_at) VALUES (?, ?, ?, ?, ?)",
        (tenant, entity_id, "good", 2, "2026-11-28T10:00:00.5+02:00"),
    )
    update = client.wait_for("metric:update")
    assert (update["metricName"], update["value"], update["timestamp"]) == ("good", 2.0, "2026-11-28T08:00:00.500Z")
