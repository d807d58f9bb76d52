"""Many gunicorn workers, no sticky proxy: every Socket.IO transport works, through a worker killed under load.

gunicorn's workers share one listening socket, so the requests of one polling session land on any of them; the
worker that gets a request of another worker's session hands it the connection (app/realtime/engine/handoff.py).
Each test ends the way the scale-out tests do: every client's view equals the database, no change arrived twice,
and no client saw another tenant's entity.
"""

import http.client
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from testkit import (
    DEFAULT_TIMEOUT,
    Api,
    RecordingClient,
    metric_value,
    mint_token,
    server_on,
    unique,
    wait_for_metric,
)
from testkit.hostile import Bystander
from tests.test_scaleout import assert_converged, disconnect_all, wait_for_workers, worker_pids

ENTITY = "event-1"
WORKERS = 4

#: What the seed's default client does (long-polling, then the upgrade to websocket), polling only, websocket only.
TRANSPORTS = {
    "default": ("polling", "websocket"),
    "polling": ("polling",),
    "websocket": ("websocket",),
}


@pytest.fixture(scope="module")
def workers(tmp_path_factory, live_server):
    """One server of four workers on the session server's database, with no proxy in front."""
    with server_on(
        live_server.env["DATABASE_URL"], tmp_path_factory.mktemp("workers"), WEB_CONCURRENCY=str(WORKERS)
    ) as server:
        wait_for_workers(server)
        yield server


def setup_tenant(server):
    tenant = unique("tenant")
    api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
    api.put_entity(ENTITY, "event", api.create_dashboard()["id"])
    return tenant, api


def connect(server, tenant, transports, count, reconnecting=False):
    clients = []
    for _ in range(count):
        client = RecordingClient(reconnecting=reconnecting).connect(server.url, mint_token(tenant), transports)
        client.subscribe(ENTITY)
        clients.append(client)
    return clients


def connect_spread(server, tenant, transports, count, limit=40):
    """At least ``count`` clients, connected one by one until their sessions live on more than one worker.

    Which worker accepts a connection is the kernel's choice among those waiting
    on the shared socket: an idle worker that just served the previous connect
    often wins the next one too.
    """
    clients = connect(server, tenant, transports, count)
    while len({worker_tag(client) for client in clients}) < 2:
        assert len(clients) < limit, f"{limit} sessions in a row landed on one worker"
        clients += connect(server, tenant, transports, 1)
    return clients


def worker_tag(client):
    """The worker a client's session lives on: the tag before the ``.`` of its Engine.IO sid."""
    return client.client.eio.sid.partition(".")[0]


def handoffs(server, result):
    return metric_value(server.url, "analytics_socketio_handoffs_total", result=result) or 0


def assert_only_own_entity(clients, entity_id=ENTITY):
    for client in clients:
        seen = {data["entityId"] for name, data in list(client.events) if isinstance(data, dict) and "entityId" in data}
        assert seen <= {entity_id}, seen


@pytest.mark.backends("sqlite")  # what `make run` serves: one box, SQLite, one worker per core
@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_every_transport_works_with_four_workers_and_no_proxy(workers, transport):
    tenant, api = setup_tenant(workers)
    bystander_tenant, bystander_api = setup_tenant(workers)
    handed_before = handoffs(workers, "sent")
    clients = connect_spread(workers, tenant, TRANSPORTS[transport], count=8)
    bystanders = connect(workers, bystander_tenant, ("websocket",), count=2)
    try:
        for value in range(1, 6):
            api.ingest((ENTITY, "ticketsSold", value), (ENTITY, "revenue", value * 10.5))
        bystander_api.ingest((ENTITY, "ticketsSold", 99))
        assert_converged(clients, workers.database, tenant)
        assert_converged(bystanders, workers.database, bystander_tenant)
        if transport != "websocket":
            # Four workers on one socket: a polling session's requests reach the others too, which handed them over.
            wait_for_metric(
                workers.url, "analytics_socketio_handoffs_total", handed_before + 1, at_least=True, result="sent"
            )
            assert {client.client.transport() for client in clients} == {TRANSPORTS[transport][-1]}
        assert_only_own_entity(clients)
    finally:
        disconnect_all(clients + bystanders)


@pytest.mark.backends("sqlite")
def test_the_seed_example_with_default_transports_works_on_every_connect(workers, node_client, token_for):
    tenant, api = setup_tenant(workers)
    runs = [node_client(workers.url, ENTITY, token_for(tenant), "default") for _ in range(4)]
    for run in runs:
        assert run.wait_for("open") == {"transport": "polling"}
        run.wait_for("dashboard:initial")
        run.wait_for("ready")
    api.ingest((ENTITY, "ticketsSold", 42))
    for run in runs:
        update = run.wait_for("metric:update", lambda d: d["metricName"] == "ticketsSold" and d["value"] == 42)
        assert update["entityId"] == ENTITY


@pytest.mark.backends("sqlite")
def test_a_burst_of_requests_on_new_connections_is_handed_over_without_losing_one(workers):
    """Many requests at once, each on a new connection: most reach another worker than their session's.

    An owner's hand-off queue holds few datagrams (net.unix.max_dgram_qlen, 10): a burst fills it, and a
    hand-off that did not wait for room was lost, its client's connection closed unanswered.
    """
    sessions = []
    for _ in range(40):
        status, body = _request(workers, "GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200, body
        sessions.append(json.loads(body[1:])["sid"])
    before = {result: handoffs(workers, result) for result in ("sent", "taken", "failed")}
    jobs = [sid for sid in sessions for _ in range(5)]
    pong = "/socket.io/?EIO=4&transport=polling&sid={}"
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda sid: _request(workers, "POST", pong.format(sid), "3"), jobs))
    assert all(answer == (200, "OK") for answer in answers), [a for a in answers if a != (200, "OK")][:5]
    # Each worker adds its counts to /metrics once a second, the sender's and the owner's at their own moments:
    # wait until every hand-off sent since the server started is counted as taken (earlier tests' included).
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while True:
        counts = {result: handoffs(workers, result) for result in before}
        if counts["sent"] >= before["sent"] + len(jobs) // 2 and counts["sent"] == counts["taken"]:
            break
        assert time.monotonic() < deadline, (before, counts)
        time.sleep(0.2)
    assert counts["failed"] == before["failed"]


@pytest.mark.backends("sqlite")
def test_a_flood_of_forged_session_ids_naming_real_workers_is_refused_and_a_bystander_goes_on(workers):
    """Sids that name live workers make the worker that gets each request hand it over: the owner answers 400."""
    tags = set()
    for _ in range(12):  # handshakes land on any worker: collect real tags
        status, body = _request(workers, "GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200, body
        tags.add(json.loads(body[1:])["sid"].partition(".")[0])
    forged = [f"/socket.io/?EIO=4&transport=polling&sid={tag}.forged{n}" for n in range(75) for tag in tags]
    with Bystander(workers.url) as bystander, ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda path: _request(workers, "GET", path), forged))
        bystander.check()
    assert all(status == 400 and "Invalid session" in body for status, body in answers), answers[:3]


def _request(server, method, path, body=None):
    """One request on a connection of its own (closed after it): ``(status, body text)``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEFAULT_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers={"Connection": "close", "Content-Type": "text/plain"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    except (OSError, http.client.HTTPException) as exc:  # a connection closed unanswered
        return None, repr(exc)
    finally:
        connection.close()


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    "request_line",
    [
        "GET /socket.io/?EIO=4&transport=polling&sid=00000000.forged HTTP/1.1",  # a tag no worker has
        "GET /socket.io/?EIO=4&transport=polling&sid=zzzzzzzz.forged HTTP/1.1",  # not a tag at all
        "GET /socket.io/?EIO=4&transport=websocket&sid=00000000.forged HTTP/1.1",
    ],
    ids=["unknown-worker", "malformed-tag", "websocket-unknown-worker"],
)
def test_a_forged_session_id_is_answered_as_an_unknown_session(workers, request_line):
    _, path, _ = request_line.split(" ")
    headers = {"Connection": "Upgrade", "Upgrade": "websocket"} if "websocket" in path else {}
    if headers:
        headers.update({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
    for _ in range(8):  # whichever worker each request reaches
        response = requests.get(workers.url + path, headers=headers, timeout=DEFAULT_TIMEOUT)
        assert response.status_code == 400
        assert "Invalid session" in response.text


@pytest.mark.backends("postgresql")
def test_a_worker_killed_under_load_loses_its_sessions_only_and_every_update_arrives_once(workers):
    wait_for_workers(workers)
    tenant, api = setup_tenant(workers)
    other_tenant, other_api = setup_tenant(workers)
    clients = []
    for transport in TRANSPORTS.values():
        clients += connect(workers, tenant, transport, count=4, reconnecting=True)
    others = connect(workers, other_tenant, ("polling", "websocket"), count=2, reconnecting=True)
    try:
        api.ingest((ENTITY, "ticketsSold", 1))
        assert_converged(clients, workers.database, tenant)
        by_tag = {}
        for client in clients:
            by_tag.setdefault(worker_tag(client), []).append(client)
        pids = worker_pids(workers)
        victim_tag, victims = max(by_tag.items(), key=lambda item: len(item[1]))
        victim = _worker_of(workers, pids, victim_tag)

        os.kill(victim, signal.SIGKILL)
        for value in range(2, 12):  # writes go on while the clients of the killed worker reconnect
            api.ingest((ENTITY, "ticketsSold", value), (ENTITY, "revenue", value * 1.5))
            other_api.ingest((ENTITY, "ticketsSold", -value))
        for client in victims:
            client.wait_until(lambda c: c.connects >= 2, timeout=15, what="reconnected")
            assert worker_tag(client) != victim_tag
        survivors = [client for client in clients if client not in victims]
        assert all(client.connects == 1 for client in survivors)  # the other workers' sessions went on
        wait_for_workers(workers)  # gunicorn started a replacement
        api.ingest((ENTITY, "revenue", 1000.25))
        assert_converged(clients, workers.database, tenant)
        assert_converged(others, workers.database, other_tenant)
        assert_only_own_entity(clients + others)
    finally:
        disconnect_all(clients + others)


def _worker_of(server, pids, tag):
    """The pid of the worker whose tag is ``tag``: the one listening on ``<SERVER_RUN_DIR>/<tag>.sock``."""
    for pid in pids:
        for connection in psutil.Process(pid).net_connections(kind="unix"):
            if connection.laddr.endswith(f"/{tag}.sock"):
                return pid
    raise AssertionError(f"no worker of {pids} listens for tag {tag}")
