"""Observability: /metrics (multi-process under gunicorn), /healthz, /readyz and logs, against real servers where
only they can show it (several workers, a dependency that hangs, log lines); in process where nothing needs one.
"""

import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest
import requests
import socketio
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from testkit import (
    REDIS_URL,
    Api,
    RecordingClient,
    free_port,
    metric_value,
    mint_token,
    require_redis,
    scrape_metrics,
    server_env,
    server_on,
    unique,
    wait_for_metric,
)
from tests.proxy import TcpProxy

# The module's servers share the session server's SQLite database; the in-process checks use SQLite too.
pytestmark = pytest.mark.backends("sqlite")

SOCKETS = "analytics_socketio_connected_sockets"
SUBSCRIPTIONS = "analytics_socketio_subscriptions"
EMITS = "analytics_socketio_emits_total"
ERRORS = "analytics_errors_total"
HTTP_REQUESTS = "analytics_http_requests_total"
WAIT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_server):
    """Two gunicorn workers on one port, JSON logs, the default per-server metrics directory.

    On the session server's (SQLite) database: nothing here depends on what else is in it.
    """
    database = live_server.env["DATABASE_URL"]
    with server_on(database, tmp_path_factory.mktemp("observability"), WEB_CONCURRENCY=2, LOG_FORMAT="json") as live:
        yield live


@pytest.fixture
def clients():
    """Factory of connected /dashboard clients (websocket transport), all disconnected at teardown."""
    made = []

    def connect(server, token):
        client = RecordingClient()
        made.append(client)
        return client.connect(server.url, token)

    yield connect
    for client in made:
        client.disconnect()


def scrape(server):
    """Every sample of /metrics as ``{(name, sorted label items): value}``."""
    return scrape_metrics(server.url)


def value(server, name, **labels):
    """One sample's value, 0 when the series does not exist yet."""
    return metric_value(server.url, name, **labels)


def wait_for_value(server, name, expected, at_least=False, **labels):
    """Wait until the sample equals ``expected`` (or reaches it); gauges are sampled once a second per worker."""
    wait_for_metric(server.url, name, expected, at_least=at_least, timeout=WAIT, **labels)


def wait_for_values(server, expected, **labels):
    """Wait until every gauge ``name: value`` of ``expected`` (with ``labels``) shows its value in one scrape."""
    key = tuple(sorted(labels.items()))
    deadline = time.monotonic() + WAIT
    while True:
        samples = scrape(server)
        current = {name: samples.get((name, key), 0.0) for name in expected}
        if current == expected:
            return
        assert time.monotonic() < deadline, f"{labels}: {current}, expected {expected}"
        time.sleep(0.05)


def log_records(server):
    """The JSON lines of the server's log, parsed."""
    records = []
    for line in Path(server.log_path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def wait_for_record(server, predicate):
    """Wait until a JSON log line satisfies ``predicate``; return it."""
    deadline = time.monotonic() + WAIT
    while True:
        found = [record for record in log_records(server) if predicate(record)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no such log line; last lines:\n{server.log_tail()}"
        time.sleep(0.05)


def sockets_per_worker(server):
    """``{worker pid: connected /dashboard sockets}`` read from each worker's own metrics file."""
    directory = Path(tempfile.gettempdir()) / f"analytics-svc-metrics-{server.proc.pid}"
    counts = {}
    for path in directory.glob("gauge_livesum_*.db"):
        pid = int(re.fullmatch(r"gauge_livesum_(\d+)\.db", path.name).group(1))
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == SOCKETS and sample.labels.get("namespace") == "/dashboard":
                    counts[pid] = sample.value
    return counts


def entity_of(server, tenant):
    """Register an event entity with a dashboard in ``tenant``; return its id."""
    api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
    entity_id = unique("event")
    api.put_entity(entity_id, "event", api.create_dashboard()["id"])
    return entity_id


# --- /metrics ------------------------------------------------------------------------------------------------------


def test_metrics_has_the_expected_families(server):
    requests.get(server.url + "/healthz", timeout=5)
    families = {family.name for family in text_string_to_metric_families(requests.get(server.url + "/metrics").text)}
    assert families >= {
        "analytics_http_requests",
        "analytics_http_request_duration_seconds",
        "analytics_poll_duration_seconds",
        "analytics_poll_rows",
        "analytics_poll_failures",
        "analytics_poll_skips",
        "analytics_poll_announced",
        "analytics_notification_lag_seconds",
        "analytics_change_age_at_emit_seconds",
        "analytics_socketio_packets_written",
        "analytics_socket_output_backlog",
    }
    wait_for_value(server, SOCKETS, 0.0, namespace="/dashboard")
    wait_for_value(server, SOCKETS, 0.0, namespace="/analytics/dashboard")
    assert value(server, "analytics_poll_duration_seconds_count") > 0  # both pollers tick all the time


def test_socket_gauges_follow_connects_subscriptions_and_disconnects(server, clients, tenant):
    entity_id = entity_of(server, tenant)
    wait_for_value(server, SOCKETS, 0.0, namespace="/dashboard")
    first, second = clients(server, mint_token(tenant)), clients(server, mint_token(tenant))
    first.subscribe(entity_id)
    second.subscribe(entity_id)
    wait_for_values(server, {SOCKETS: 2.0, SUBSCRIPTIONS: 2.0}, namespace="/dashboard")
    assert value(server, SOCKETS, namespace="/analytics/dashboard") == 0

    # One socket leaves its entity but stays, the other goes: one socket and no subscription are left.
    first.call("unsubscribe", {"entityId": entity_id})
    second.disconnect()
    wait_for_values(server, {SOCKETS: 1.0, SUBSCRIPTIONS: 0.0}, namespace="/dashboard")


def test_a_metric_write_counts_its_emit_and_change_age(server, clients, tenant):
    entity_id = entity_of(server, tenant)
    subscriber = clients(server, mint_token(tenant))
    subscriber.subscribe(entity_id)
    emits = value(server, EMITS, namespace="/dashboard", event="metric:update")
    ages = value(server, "analytics_change_age_at_emit_seconds_count")
    rows = value(server, "analytics_poll_rows_sum")
    announced = value(server, "analytics_poll_announced_total")

    Api(server.url, mint_token(tenant, roles=("ingest",))).ingest((entity_id, "ticketsSold", 7))
    assert subscriber.wait_for("metric:update")["value"] == 7
    # One subscriber: one worker emits once. Only that worker has a subscriber, so only it emits.
    wait_for_value(server, EMITS, emits + 1, namespace="/dashboard", event="metric:update")
    assert value(server, "analytics_change_age_at_emit_seconds_count") == ages + 1
    # Each worker's poller takes it: the one that wrote it as announced, without a query; the other reads it.
    wait_for_value(server, "analytics_poll_rows_sum", rows + 2, at_least=True)
    wait_for_value(server, "analytics_poll_announced_total", announced + 1, at_least=True)


def test_an_idle_sqlite_poller_skips_its_query_yet_sees_a_row_written_straight_into_the_database(
    server, clients, tenant
):
    entity_id = entity_of(server, tenant)
    subscriber = clients(server, mint_token(tenant))
    subscriber.subscribe(entity_id)
    skips = value(server, "analytics_poll_skips_total")
    wait_for_value(server, "analytics_poll_skips_total", skips + 20, at_least=True)  # nothing committed meanwhile

    server.insert_changes([(tenant, entity_id, "gate", 3)])  # another process's commit: no wake-up, only the probe
    assert subscriber.wait_for("metric:update")["value"] == 3


def test_socket_errors_and_refusals_are_counted_by_code(server, clients, tenant):
    unknown = value(server, ERRORS, code="ANALYTICS_1104", source="socket")
    invalid = value(server, ERRORS, code="ANALYTICS_1100", source="socket")
    refused = value(server, ERRORS, code="ANALYTICS_1002", source="connect")
    error_emits = value(server, EMITS, namespace="/dashboard", event="error")
    client = clients(server, mint_token(tenant))

    client.emit("no-such-event", {})
    assert client.wait_for("error")["code"] == "ANALYTICS_1104"
    client.emit("subscribe", "not an object")
    client.wait_for("error", lambda body: body["code"] == "ANALYTICS_1100")
    with pytest.raises(socketio.exceptions.ConnectionError):
        clients(server, "not-a-jwt")

    assert value(server, ERRORS, code="ANALYTICS_1104", source="socket") == unknown + 1
    assert value(server, ERRORS, code="ANALYTICS_1100", source="socket") == invalid + 1
    assert value(server, ERRORS, code="ANALYTICS_1002", source="connect") == refused + 1
    assert value(server, EMITS, namespace="/dashboard", event="error") == error_emits + 2


def test_http_requests_are_counted_by_route_template_and_status(server, tenant):
    unmatched = value(server, HTTP_REQUESTS, method="GET", route="unmatched", status="404")
    not_found = value(server, ERRORS, code="ANALYTICS_1201", source="http")
    entity_route = {"method": "GET", "route": "/api/v1/entities/<entity_id>", "status": "404"}
    unknown_entity = value(server, HTTP_REQUESTS, **entity_route)

    assert requests.get(server.url + "/no/such/page", timeout=5).status_code == 404
    missing = unique("missing-entity")
    api = Api(server.url, mint_token(tenant))
    assert api.call("GET", f"/entities/{missing}").status_code == 404

    samples = scrape(server)
    assert samples[(HTTP_REQUESTS, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == unmatched + 1
    assert samples[(HTTP_REQUESTS, tuple(sorted(entity_route.items())))] == unknown_entity + 1
    assert samples[(ERRORS, (("code", "ANALYTICS_1201"), ("source", "http")))] == not_found + 1
    duration = ("analytics_http_request_duration_seconds_count", tuple(sorted(entity_route.items())))
    assert samples[duration] >= 1
    assert not any(missing in str(labels) or "/no/such/page" in str(labels) for _, labels in samples)


# --- /healthz and /readyz -------------------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_ok(server):
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok", "checks": {"process": "ok"}}
    response = requests.get(server.url + "/readyz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


#: How long /readyz may take before the test gives up on it: a check without its own bound (READINESS_TIMEOUT)
#: on a dependency that never answers would hold it forever.
READYZ_BOUND = 10


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory, live_server):
    """A server whose Redis is behind a proxy the test can cut or make hang, readiness checks bounded by 0.5 s:
    ``(server, proxy)``. On the session server's database."""
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    with (
        TcpProxy(host, int(port)) as proxy,
        server_on(
            live_server.env["DATABASE_URL"],
            tmp_path_factory.mktemp("redis"),
            REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
            REDIS_CHANNEL=unique("observability"),
            READINESS_TIMEOUT=0.5,
        ) as live,
    ):
        yield live, proxy


def assert_redis_unavailable(live):
    response = requests.get(live.url + "/readyz", timeout=READYZ_BOUND)
    body = response.json()
    assert response.status_code == 503, body
    assert body["code"] == "ANALYTICS_1300"
    assert body["checks"] == {"database": "ok", "redis": "unreachable"}
    assert body["message"] == "service unavailable: redis not ready"
    assert requests.get(live.url + "/healthz", timeout=5).status_code == 200  # liveness does not follow
    assert value(live, ERRORS, code="ANALYTICS_1300", source="http") >= 1


def test_readyz_checks_redis_when_configured(redis_server):
    require_redis()
    live, _ = redis_server
    response = requests.get(live.url + "/readyz", timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_is_503_naming_redis_when_redis_refuses(redis_server):
    live, proxy = redis_server
    proxy.cut()  # nothing listens on the configured port any more: connections are refused
    try:
        assert_redis_unavailable(live)
    finally:
        proxy.restore()


def test_readyz_is_503_within_its_timeout_when_redis_hangs(redis_server):
    live, proxy = redis_server
    proxy.hang()  # connections are accepted and never answered
    try:
        assert_redis_unavailable(live)  # within READYZ_BOUND: the check gave up after its 0.5 s
    finally:
        proxy.restore()


@pytest.fixture
def app_with(tmp_path, monkeypatch):
    """``app_with(**overrides)``: the app in this process, built from a server's environment with ``overrides``.

    Nothing is started, and the database is not touched until a request does: for dependencies that refuse
    at once (one that hangs needs gevent's patched sockets, in a server).
    """

    def build(**overrides):
        for name in list(os.environ):
            monkeypatch.delenv(name)
        for name, setting in server_env(tmp_path, **overrides).items():
            monkeypatch.setenv(name, setting)
        return create_app()

    return build


def assert_unavailable_in_process(client, checks, names):
    response = client.get("/readyz")
    assert response.status_code == 503, response.json
    assert response.json["code"] == "ANALYTICS_1300"
    assert response.json["checks"] == checks
    assert response.json["message"] == f"service unavailable: {', '.join(names)} not ready"
    assert client.get("/healthz").status_code == 200  # liveness does not follow
    errors = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == ERRORS
    }
    assert errors[(("code", "ANALYTICS_1300"), ("source", "http"))] >= 1


def test_readyz_is_503_when_postgresql_refuses(app_with):
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (psycopg) is not installed")
    app = app_with(DATABASE_URL=f"postgresql+psycopg://test@127.0.0.1:{free_port()}/test")
    assert_unavailable_in_process(app.test_client(), {"database": "unreachable"}, ["database"])


def test_readyz_names_every_dependency_that_is_not_ready(app_with, tmp_path):
    app = app_with(
        DATABASE_URL=f"sqlite:///{tmp_path / 'no-such-directory' / 'analytics.db'}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    checks = {"database": "unreachable", "redis": "unreachable"}
    assert_unavailable_in_process(app.test_client(), checks, ["database", "redis"])


# --- logs -----------------------------------------------------------------------------------------------------------


def test_json_logs_carry_the_incoming_request_id(server):
    request_id = unique("req")
    response = requests.get(server.url + "/no/such/page", headers={"X-Request-ID": request_id}, timeout=5)
    assert response.headers["X-Request-ID"] == request_id
    record = wait_for_record(server, lambda r: r.get("request_id") == request_id)
    assert {"timestamp", "level", "logger", "message", "process"} <= record.keys()
    assert "/no/such/page" in record["message"]
    assert any(r.get("logger") == "gunicorn.error" for r in log_records(server))  # gunicorn's own lines too


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 129, "semi;colon", 'quote"d'])
def test_a_missing_or_unsafe_request_id_is_replaced(client, incoming):
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    response = client.get("/healthz", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_socket_event_errors_log_sid_and_namespace(server, clients, tenant):
    client = clients(server, mint_token(tenant))
    client.emit("no-such-event", {})
    client.wait_for("error")
    sid = client.client.get_sid("/dashboard")
    record = wait_for_record(server, lambda r: r.get("sid") == sid)
    assert record["namespace"] == "/dashboard"
    assert "ANALYTICS_1104" in record["message"]


def test_text_logs_carry_the_request_id(live_server):
    request_id = unique("req")
    requests.get(live_server.url + "/healthz", headers={"X-Request-ID": request_id}, timeout=5)
    deadline = time.monotonic() + WAIT
    while f"[request_id={request_id}]" not in Path(live_server.log_path).read_text(errors="replace"):
        assert time.monotonic() < deadline, live_server.log_tail()
        time.sleep(0.05)


# --- several workers (keep last: it kills a worker of the module's server) ----------------------------------------


def test_sockets_on_every_worker_are_counted_and_a_dead_workers_leave(server, clients, tenant):
    wait_for_value(server, SOCKETS, 0.0, namespace="/dashboard")
    connected = []
    for _ in range(5):  # the kernel spreads connections over the workers; bounded tries until both have some
        connected += [clients(server, mint_token(tenant)) for _ in range(4)]
        wait_for_value(server, SOCKETS, float(len(connected)), namespace="/dashboard")
        per_worker = sockets_per_worker(server)
        if sum(1 for count in per_worker.values() if count > 0) >= 2:
            break
    else:
        pytest.fail(f"every socket landed on one worker: {per_worker}")
    assert sum(per_worker.values()) == len(connected)

    victim, lost = next((pid, count) for pid, count in per_worker.items() if count > 0)
    os.kill(victim, signal.SIGKILL)
    # gunicorn's child_exit hook drops the dead worker's gauges; the other worker's remain.
    wait_for_value(server, SOCKETS, float(len(connected) - lost), namespace="/dashboard")
    assert victim not in sockets_per_worker(server)
