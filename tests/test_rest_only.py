"""The REST-only deployment (``wsgi_api:api`` under gunicorn's sync worker) beside a full server, on one database.

Writes through the REST-only app reach sockets held by the full server through the change log alone: on
PostgreSQL its NOTIFY wakes the full server (which polls only every 30 s here), on SQLite its poll finds them.
"""

import psutil
import pytest
import requests

from testkit import (
    Api,
    RecordingClient,
    mint_token,
    rest_only_server_on,
    scrape_metrics,
    server_on,
    unique,
)

ENTITY = "event-1"


@pytest.fixture(scope="module")
def full_server(tmp_path_factory, live_server, backend):
    """A full server on the session server's database; on PostgreSQL it polls every 30 s (NOTIFY must wake it)."""
    poll = "30" if backend == "postgresql" else "0.05"
    with server_on(
        live_server.env["DATABASE_URL"], tmp_path_factory.mktemp("full"), POLL_INTERVAL=poll, POLL_MAX_BACKOFF="0.2"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def rest_only(tmp_path_factory, live_server):
    """The REST-only app, two sync workers, on the same database."""
    with rest_only_server_on(live_server.env["DATABASE_URL"], tmp_path_factory.mktemp("rest-only")) as server:
        yield server


def test_writes_through_the_rest_only_app_reach_a_socket_on_the_full_server(full_server, rest_only):
    tenant = unique("tenant")
    api = Api(rest_only.url, mint_token(tenant, roles=("admin", "ingest")))
    dashboard = api.create_dashboard()
    api.put_entity(ENTITY, "event", dashboard["id"])
    client = RecordingClient().connect(full_server.url, mint_token(tenant))
    try:
        initial = client.subscribe(ENTITY)
        assert initial["dashboardId"] == dashboard["id"]

        seq = api.ingest((ENTITY, "ticketsSold", 7))["lastSeq"]
        update = client.wait_for("metric:update", lambda d: d["seq"] == seq, timeout=10)
        assert (update["metricName"], update["value"]) == ("ticketsSold", 7.0)

        tile = {"title": "Queue", "metricName": "queueLength", "kind": "number"}
        change = api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=tile)
        added = client.wait_for("dashboard:update", lambda d: d["action"] == "added", timeout=10)
        assert added["tile"] == change["tile"] and added["version"] == change["version"]
    finally:
        client.disconnect()


def test_health_readiness_and_metrics_answer_without_socket_gauges(rest_only):
    assert requests.get(rest_only.url + "/healthz", timeout=5).json() == {"status": "ok", "checks": {"process": "ok"}}
    ready = requests.get(rest_only.url + "/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}  # no draining state to report

    samples = scrape_metrics(rest_only.url)
    assert samples[("analytics_http_requests_total", (("method", "GET"), ("route", "/readyz"), ("status", "200")))]
    # No socket gauges; the unlabelled series of the realtime parts exist (prometheus_client makes them) but stay 0.
    prefixes = ("analytics_socket", "analytics_poll")
    realtime = {key: value for key, value in samples.items() if key[0].startswith(prefixes)}
    assert not [name for name, _ in realtime if name.startswith("analytics_socketio_")], realtime
    assert not any(realtime.values()), realtime


def test_socket_io_and_the_pages_are_not_there(rest_only):
    for path in ("/socket.io/?EIO=4&transport=polling", "/", "/admin", f"/dashboards/event/{ENTITY}"):
        response = requests.get(rest_only.url + path, timeout=5)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "ANALYTICS_1201"
    assert requests.get(rest_only.url + "/api/v1/openapi.json", timeout=5).json()["openapi"].startswith("3.1.")


def test_it_runs_synchronous_workers_that_start_nothing(rest_only):
    workers = psutil.Process(rest_only.proc.pid).children()
    assert len(workers) == 2
    # A sync worker serves one request at a time on its one thread: no poller, listener or watch beside it.
    assert [worker.num_threads() for worker in workers] == [1, 1]
    log = rest_only.log_tail(200)
    assert "Using worker: sync" in log
    assert "realtime started" not in log and "Traceback" not in log, log
