"""Surviving trouble: a server restart under connected clients (the seed's and the browser page), a database outage,
a backlog."""

import threading

import pytest
import socketio
from playwright.sync_api import expect

from testkit import (
    DEFAULT_TIMEOUT,
    RecordingClient,
    log_size,
    mint_token,
    running_server,
    server_on,
    tenant_with_entity,
    wait_for_log,
)
from tests.browser import RECONNECTION_DELAY_MAX_MS, DashboardPage


@pytest.fixture(scope="module")
def own_server(tmp_path_factory, backend):
    """A server of this module's own on ``backend``, so that restarting or breaking it disturbs no other module.

    After a failed poll it polls again within 0.3 s (POLL_MAX_BACKOFF).
    """
    with running_server(tmp_path_factory.mktemp(f"resilience-{backend}"), backend, POLL_MAX_BACKOFF="0.3") as server:
        yield server


@pytest.mark.backends("sqlite")
def test_clients_subscribe_again_after_a_server_restart(own_server, new_page):
    """The seed's Python client and the browser page, both connected while the server restarts."""
    entity_id = "event-uuid-123"
    tenant, api = tenant_with_entity(own_server.url, entity_id)
    api.ingest((entity_id, "ticketsSold", 1))

    # The seed's client: reconnect on, and subscribe again on every 'connect'.
    client = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
    initials = []
    lost = threading.Event()
    cond = threading.Condition()

    @client.on("connect", namespace="/dashboard")
    def on_connect():
        client.emit("subscribe", {"entityId": entity_id, "entityType": "event"}, namespace="/dashboard")

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
    # The browser page, its timers on a clock the test can move forward (Playwright's clock: time still flows).
    tab = new_page()
    tab.clock.install()
    page = DashboardPage(tab, own_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    page.mark()
    try:
        with cond:
            assert cond.wait_for(lambda: len(initials) == 1, DEFAULT_TIMEOUT)
        assert initials[0]["metrics"] == {"ticketsSold": 1.0}

        own_server.stop()
        assert lost.wait(DEFAULT_TIMEOUT)
        expect(page.connection).to_have_attribute("data-state", "reconnecting")
        # Written while the server is down, straight into the database.
        own_server.insert_changes([(tenant, entity_id, "ticketsSold", 2)])
        own_server.start()
        # While the server was away, the page's back-off grew to up to 5 s between attempts: jump past the
        # pending wait, as a laptop woken from sleep would, instead of sitting it out.
        tab.clock.fast_forward(RECONNECTION_DELAY_MAX_MS)

        with cond:
            assert cond.wait_for(lambda: len(initials) == 2, 30), "no fresh dashboard:initial after restart"
        assert initials[1]["metrics"] == {"ticketsSold": 2.0}
        assert initials[1]["seq"] > initials[0]["seq"]
        assert initials[1]["tiles"] == initials[0]["tiles"]

        expect(page.connection).to_have_attribute("data-state", "connected")
        expect(page.tile("Tickets").locator(".tile-value")).to_have_text("2")  # its resume after the restart
        api.ingest((entity_id, "revenue", 321))  # only a new subscription on the new server gets this
        expect(page.tile("Revenue").locator(".tile-value")).to_have_text("321 EUR")
        assert page.was_not_reloaded()
    finally:
        client.disconnect()
        if own_server.proc.poll() is not None:  # stopped and not started again: the next test needs it
            own_server.start()


def test_poller_survives_database_errors_and_delivers_what_was_written_meanwhile(own_server):
    server = own_server
    tenant, api = tenant_with_entity(server.url)
    client = RecordingClient().connect(server.url, mint_token(tenant))
    client.subscribe("event-1")

    database = server.database
    offset = log_size(server)
    database.execute("ALTER TABLE change_log RENAME TO change_log_away")
    try:
        wait_for_log(server, "change poll failed", after=offset)
        # A writer that knows the table under its other name keeps writing meanwhile.
        database.execute(
            "INSERT INTO change_log_away (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
            (tenant, "event-1", "ticketsSold", 77),
        )
    finally:
        database.execute("ALTER TABLE change_log_away RENAME TO change_log")

    assert client.wait_for("metric:update")["value"] == 77.0
    assert client.client.connected
    api.ingest(("event-1", "ticketsSold", 78))
    client.wait_for("metric:update", lambda d: d["value"] == 78.0)
    assert [u["value"] for u in client.of("metric:update")] == [77.0, 78.0]
    client.disconnect()


def test_subscribe_catches_up_a_backlog_of_many_batches_before_its_snapshot(live_server, tmp_path):
    # The poller reads 2 rows a batch and sleeps 30 s: direct writes pile up unread. (A server of the test's own,
    # on the session server's database.)
    settings = {"POLL_BATCH_SIZE": "2", "POLL_INTERVAL": "30", "CHANGE_NOTIFY": "0"}
    with server_on(live_server.env["DATABASE_URL"], tmp_path, **settings) as server:
        tenant, api = tenant_with_entity(server.url)
        server.insert_changes([(tenant, "event-1", "ticketsSold", float(v)) for v in range(1, 8)])
        client = RecordingClient().connect(server.url, mint_token(tenant))
        initial = client.subscribe("event-1")
        assert initial["metrics"] == {"ticketsSold": 7.0}

        api.ingest(("event-1", "barrier", 1))  # a REST write wakes the poller at once
        client.wait_for("metric:update", lambda d: d["metricName"] == "barrier")
        assert [u["metricName"] for u in client.of("metric:update")] == ["barrier"]
        client.disconnect()
