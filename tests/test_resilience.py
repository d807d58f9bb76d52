"""A client whose server restarts reconnects, re-subscribes and gets a fresh snapshot."""

import sqlite3
import threading
import time
from contextlib import closing

import pytest
import socketio

from tests.support import DEFAULT_TIMEOUT, Api, LiveServer, RecordingClient, mint_token, server_env, unique


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, so that restarting it disturbs nobody else."""
    server = LiveServer(server_env(tmp_path), tmp_path / "server.log")
    server.migrate()
    server.start()
    yield server
    server.stop()


def test_client_resubscribes_after_server_restart(own_server):
    tenant = unique("tenant")
    api = Api(own_server.url, mint_token(tenant, roles=("admin", "ingest")))
    dashboard = api.create_dashboard()
    api.put_entity("event-uuid-123", "event", dashboard["id"])
    api.ingest(("event-uuid-123", "ticketsSold", 1))

    # The seed's client: reconnect on, and subscribe again on every 'connect'.
    client = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
    initials = []
    lost = threading.Event()
    cond = threading.Condition()

    @client.on("connect", namespace="/dashboard")
    def on_connect():
        client.emit("subscribe", {"entityId": "event-uuid-123", "entityType": "event"}, namespace="/dashboard")

    @client.on("dashboard:initial", namespace="/dashboard")
    def on_initial(data):
        with cond:
            initials.append(data)
            cond.notify_all()

    @client.on("disconnect", namespace="/dashboard")
    def on_disconnect(reason=None):
        lost.set()

    client.connect(
        own_server.url,
        namespaces=["/dashboard"],
        auth={"token": mint_token(tenant)},
        transports=["websocket"],
        wait_timeout=DEFAULT_TIMEOUT,
    )
    try:
        with cond:
            assert cond.wait_for(lambda: len(initials) == 1, DEFAULT_TIMEOUT)
        assert initials[0]["metrics"] == {"ticketsSold": 1.0}

        own_server.stop()
        assert lost.wait(DEFAULT_TIMEOUT)
        # Written while the server is down, straight into the database.
        path = own_server.env["DATABASE_URL"].removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
                (tenant, "event-uuid-123", "ticketsSold", 2),
            )
        own_server.start()

        with cond:
            assert cond.wait_for(lambda: len(initials) == 2, 30), "no fresh dashboard:initial after restart"
        assert initials[1]["metrics"] == {"ticketsSold": 2.0}
        assert initials[1]["seq"] > initials[0]["seq"]
        assert initials[1]["tiles"] == initials[0]["tiles"]
    finally:
        client.disconnect()


def wait_for_log(server, text, timeout=DEFAULT_TIMEOUT):
    """Wait until the server's log contains ``text`` (bounded)."""
    deadline = time.monotonic() + timeout
    while text not in server.log_tail(400):
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout}s:\n{server.log_tail()}"
        time.sleep(0.05)


def test_poller_survives_database_errors_and_delivers_what_was_written_meanwhile(tmp_path):
    server = LiveServer(server_env(tmp_path, POLL_MAX_BACKOFF="0.3"), tmp_path / "server.log")
    server.migrate()
    server.start()
    try:
        tenant = unique("tenant")
        api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
        api.put_entity("event-1", "event", api.create_dashboard()["id"])
        client = RecordingClient().connect(server.url, mint_token(tenant))
        client.subscribe("event-1")

        path = server.env["DATABASE_URL"].removeprefix("sqlite:///")
        with closing(sqlite3.connect(path, timeout=10)) as conn:
            conn.execute("ALTER TABLE change_log RENAME TO change_log_away")
            wait_for_log(server, "change poll failed")
            # A writer that knows the table under its other name keeps writing meanwhile.
            with conn:
                conn.execute(
                    "INSERT INTO change_log_away (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
                    (tenant, "event-1", "ticketsSold", 77),
                )
            conn.execute("ALTER TABLE change_log_away RENAME TO change_log")

        assert client.wait_for("metric:update")["value"] == 77.0
        assert client.client.connected
        api.ingest(("event-1", "ticketsSold", 78))
        client.wait_for("metric:update", lambda d: d["value"] == 78.0)
        assert [u["value"] for u in client.of("metric:update")] == [77.0, 78.0]
        client.disconnect()
    finally:
        server.stop()


def test_subscribe_catches_up_a_backlog_of_many_batches_before_its_snapshot(tmp_path):
    # The poller reads 2 rows a batch and sleeps 30 s: direct writes pile up unread.
    server = LiveServer(server_env(tmp_path, POLL_BATCH_SIZE="2", POLL_INTERVAL="30"), tmp_path / "server.log")
    server.migrate()
    server.start()
    try:
        tenant = unique("tenant")
        api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
        api.put_entity("event-1", "event", api.create_dashboard()["id"])
        path = server.env["DATABASE_URL"].removeprefix("sqlite:///")
        with closing(sqlite3.connect(path, timeout=10)) as conn, conn:
            conn.executemany(
                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
                [(tenant, "event-1", "ticketsSold", float(v)) for v in range(1, 8)],
            )
        client = RecordingClient().connect(server.url, mint_token(tenant))
        initial = client.subscribe("event-1")
        assert initial["metrics"] == {"ticketsSold": 7.0}

        api.ingest(("event-1", "barrier", 1))  # a REST write wakes the poller at once
        client.wait_for("metric:update", lambda d: d["metricName"] == "barrier")
        assert [u["metricName"] for u in client.of("metric:update")] == ["barrier"]
        client.disconnect()
    finally:
        server.stop()
