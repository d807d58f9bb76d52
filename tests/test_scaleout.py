"""Production shape: PostgreSQL with NOTIFY, several workers on several nodes, with and without Redis, and faults.

Every test ends the same way: each client's view (its last ``dashboard:initial`` overlaid with the updates after
it) equals the database, and no client got any change twice.

Servers are shared per module where a test does not need a configuration of its own: each test has a tenant of its
own, closes what it opened, and looks only at what the server logged after it began (``wait_for_log_after``).
"""

import json
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
import requests
import socketio
import websocket

from app.logs import short_sid
from app.realtime.rooms import room_for
from testkit import (
    DEFAULT_TIMEOUT,
    REDIS_URL,
    Api,
    Database,
    RecordingClient,
    log_size,
    logged,
    mint_token,
    require_redis,
    server_on,
    servers_on,
    unique,
    wait_for_log,
)
from tests.proxy import TcpProxy

# PostgreSQL throughout (NOTIFY, several processes on one database). The module's servers are processes of its own
# on the session server's database.
pytestmark = pytest.mark.backends("postgresql")

ENTITY = "event-1"


def setup_tenant(server):
    """A tenant with one event on a dashboard: ``(tenant, admin Api)``."""
    tenant = unique("tenant")
    api = Api(server.url, mint_token(tenant, roles=("admin", "ingest")))
    api.put_entity(ENTITY, "event", api.create_dashboard()["id"])
    return tenant, api


def connect_clients(servers, tenant, per_server, reconnecting=False):
    clients = []
    for server in servers:
        for _ in range(per_server):
            client = RecordingClient(reconnecting=reconnecting).connect(server.url, mint_token(tenant))
            client.subscribe(ENTITY)
            clients.append(client)
    return clients


def view(client):
    """The client's current values: its last snapshot overlaid with the updates received after it."""
    values = {}
    for name, data in list(client.events):
        if name == "dashboard:initial":
            values = dict(data["metrics"])
        elif name == "metric:update":
            values[data["metricName"]] = data["value"]
    return values


def database_values(database, tenant):
    rows = database.execute("SELECT metric_name, value FROM metric_values WHERE tenant_id = ?", (tenant,))
    return dict(rows)


def assert_converged(clients, database, tenant, timeout=DEFAULT_TIMEOUT):
    """Every client ends on the database's values and got no change twice."""
    truth = database_values(database, tenant)
    for client in clients:
        client.wait_until(lambda c: view(c) == truth, timeout, what=f"values {truth}")
        seqs = [update["seq"] for update in client.of("metric:update")]
        assert len(seqs) == len(set(seqs)), f"a change delivered twice: {sorted(seqs)}"


def disconnect_all(clients):
    """Disconnect the clients, for good (no reconnecting)."""
    for client in clients:
        client.client.reconnection = False
        client.disconnect()


def worker_pids(server):
    return [child.pid for child in psutil.Process(server.proc.pid).children()]


def sockets_held(pid, port):
    """Established client connections a worker process holds on ``port``."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def server_holds_connection_from(server, port):
    """True while a worker of ``server`` has an established TCP connection from local port ``port``."""
    workers = psutil.Process(server.proc.pid).children()
    return any(
        connection.status == psutil.CONN_ESTABLISHED and connection.raddr and connection.raddr.port == port
        for worker in workers
        for connection in worker.net_connections(kind="tcp")
    )


def wait_for_workers(server):
    """Wait until the server has all its workers and each has started serving (logged "realtime started").

    gunicorn logs "Booting worker" for each worker it forks, a replacement too; the app logs
    "realtime started" once the worker serves.
    """
    workers = int(server.env["WEB_CONCURRENCY"])
    deadline = time.monotonic() + 30
    while True:
        log = Path(server.log_path).read_text(errors="replace")
        booted, serving = log.count("Booting worker with pid"), log.count("realtime started")
        if booted == serving and len(worker_pids(server)) == workers:
            return
        assert time.monotonic() < deadline, f"{serving} of {booted} workers serving after 30 s:\n{server.log_tail()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_server):
    """One worker polling every 30 s, closing sockets with more than 10 packets waiting.

    REST writes wake the poller at once (in process); a row written straight into the database
    arrives sooner than the 30 s poll only through LISTEN/NOTIFY.
    """
    with server_on(
        live_server.env["DATABASE_URL"],
        tmp_path_factory.mktemp("scaleout"),
        POLL_INTERVAL="30",
        POLL_MAX_BACKOFF="0.2",
        SOCKET_MAX_BACKLOG="10",
    ) as live:
        yield live


def listener_backends(server, database):
    """The PostgreSQL backends (pids) of the server's LISTEN connections, found by their client ports."""
    ports = {
        connection.laddr.port
        for pid in worker_pids(server)
        for connection in psutil.Process(pid).net_connections(kind="tcp")
        if connection.raddr and connection.raddr.port == 5432
    }
    rows = database.execute(
        "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()"
        " AND starts_with(query, 'LISTEN')"
    )
    return [pid for pid, client_port in rows if client_port in ports]


def two_nodes(live_server, tmp_dir, **settings):
    """Two nodes of two workers each on the session server's database, started and stopped together."""
    tmp_dir = Path(tmp_dir)
    return servers_on(live_server.env["DATABASE_URL"], [tmp_dir / "a", tmp_dir / "b"], WEB_CONCURRENCY="2", **settings)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, live_server):
    """Two nodes of two workers each, no Redis, 30 s of graceful time."""
    with two_nodes(live_server, tmp_path_factory.mktemp("nodes"), GRACEFUL_TIMEOUT="30") as both:
        yield both


# --- PostgreSQL NOTIFY ------------------------------------------------------------------------------------------


def test_notify_delivers_direct_writes_at_once_and_a_dropped_listener_loses_nothing(server):
    # A 30 s poll: whatever arrives sooner came through LISTEN/NOTIFY.
    tenant, _ = setup_tenant(server)
    client = RecordingClient().connect(server.url, mint_token(tenant))
    client.subscribe(ENTITY)
    seq = server.insert_changes([(tenant, ENTITY, "ticketsSold", 1)])
    assert client.wait_for("metric:update", timeout=5)["seq"] == seq

    # Kill the listener's connection, write while it is gone: the reconnect reads what it missed.
    database = server.database
    offset = log_size(server)
    (listener,) = listener_backends(server, database)  # its one worker's one listener
    assert database.scalar("SELECT pg_terminate_backend(?)", (listener,))
    seq = server.insert_changes([(tenant, ENTITY, "ticketsSold", 2)])
    wait_for_log(server, "change listener lost its connection", after=offset)
    assert client.wait_for("metric:update", lambda d: d["seq"] == seq, timeout=10)["value"] == 2.0
    seq = server.insert_changes([(tenant, ENTITY, "ticketsSold", 3)])
    assert client.wait_for("metric:update", lambda d: d["seq"] == seq, timeout=5)["value"] == 3.0
    assert_converged([client], database, tenant)
    client.disconnect()


# --- Several workers on several nodes --------------------------------------------------------------------------


def deliver_every_change_once(a, b, redis_channel=None):
    """Four clients on each node: changes through either node and straight into the database reach each once."""
    tenant, api_a = setup_tenant(a)
    api_b = Api(b.url, mint_token(tenant, roles=("admin", "ingest")))
    clients = connect_clients((a, b), tenant, per_server=4)
    try:
        api_a.ingest((ENTITY, "ticketsSold", 1))
        api_b.ingest((ENTITY, "revenue", 2))
        a.insert_changes([(tenant, ENTITY, "checkIns", 3)])
        # A metric of its own: two values of one metric read in one tick are one update, by design.
        fence = api_b.ingest((ENTITY, "queueLength", 4))["lastSeq"]
        for client in clients:
            client.wait_for("metric:update", lambda d, fence=fence: d["seq"] == fence)
        assert_converged(clients, a.database, tenant)
        assert all(len(c.of("metric:update")) == 4 for c in clients)

        dashboard_id = api_a.call("GET", f"/entities/{ENTITY}", 200)["dashboardId"]
        tile = {"title": "Queue", "metricName": "queueLength", "kind": "number"}
        api_b.call("POST", f"/dashboards/{dashboard_id}/tiles", 201, json=tile)
        for client in clients:
            update = client.wait_for("dashboard:update")
            assert (update["action"], update["tile"]["metricName"]) == ("added", "queueLength")

        if redis_channel:
            # An emit from outside (another service on the same Redis) reaches the sockets of every process.
            external = socketio.RedisManager(REDIS_URL, channel=redis_channel, write_only=True)
            notice = {"entityId": ENTITY, "metricName": "announcement", "value": 1, "timestamp": None, "seq": 0}
            external.emit("metric:update", notice, room=room_for(tenant, ENTITY), namespace="/dashboard")
            for client in clients:
                client.wait_for("metric:update", lambda d: d["metricName"] == "announcement")
        for client in clients:
            assert len(client.of("dashboard:update")) == 1
            assert len(client.of("metric:update")) == 4 + bool(redis_channel)
    finally:
        disconnect_all(clients)


def test_two_nodes_of_two_workers_deliver_every_change_once_without_redis(nodes):
    deliver_every_change_once(*nodes)


def test_two_nodes_of_two_workers_deliver_every_change_once_with_redis(live_server, tmp_path):
    require_redis()
    channel = unique("analytics-test")
    with two_nodes(live_server, tmp_path, REDIS_URL=REDIS_URL, REDIS_CHANNEL=channel) as (a, b):
        deliver_every_change_once(a, b, redis_channel=channel)


# --- Faults ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outages(tmp_path_factory, live_server):
    """A server on the session server's database whose PostgreSQL and Redis are each behind a proxy the test can
    cut: ``(server, database proxy, Redis proxy, Redis channel, direct database URL)``."""
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    channel = unique("analytics-test")
    direct_url = live_server.env["DATABASE_URL"]
    with TcpProxy("127.0.0.1", 5432) as database_proxy, TcpProxy(host, int(port)) as redis_proxy:
        proxied_url = direct_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{database_proxy.port}/")
        with server_on(
            proxied_url,
            tmp_path_factory.mktemp("outages"),
            POLL_MAX_BACKOFF="0.5",
            REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
            REDIS_CHANNEL=channel,
        ) as server:
            yield server, database_proxy, redis_proxy, channel, direct_url


def test_database_outage_keeps_sockets_and_delivers_what_was_committed_meanwhile(outages):
    server, proxy, _, _, direct_url = outages
    tenant, api = setup_tenant(server)
    clients = connect_clients([server], tenant, per_server=3)
    try:
        api.ingest((ENTITY, "ticketsSold", 1))
        database = Database(direct_url)
        assert_converged(clients, database, tenant)

        offset = log_size(server)
        proxy.cut()
        wait_for_log(server, "database unavailable", after=offset)
        for value in range(2, 12):  # another writer still reaches the database
            database.execute(
                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
                (tenant, ENTITY, "ticketsSold" if value % 2 else "revenue", value),
            )
        proxy.restore()

        assert_converged(clients, database, tenant, timeout=20)
        assert all(c.client.connected and not c.disconnects for c in clients)
    finally:
        proxy.restore()  # for the next test, whatever happened in this one
        disconnect_all(clients)


def test_redis_outage_changes_nothing_for_the_change_feed_and_redis_comes_back(outages):
    require_redis()
    server, _, proxy, channel, direct_url = outages
    tenant, api = setup_tenant(server)
    clients = connect_clients([server], tenant, per_server=2)
    try:
        proxy.cut()
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 503
        api.ingest((ENTITY, "ticketsSold", 1))
        assert_converged(clients, Database(direct_url), tenant)

        proxy.restore()
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
        # The server's Redis listener reconnects with a backoff: announce until heard (bounded).
        external = socketio.RedisManager(REDIS_URL, channel=channel, write_only=True)
        notice = {"entityId": ENTITY, "metricName": "announcement", "value": 1, "timestamp": None, "seq": 0}

        def heard(client):
            return any(u["metricName"] == "announcement" for u in client.of("metric:update"))

        for _ in range(60):  # 30 s at most
            external.emit("metric:update", notice, room=room_for(tenant, ENTITY), namespace="/dashboard")
            try:
                for client in clients:
                    client.wait_until(heard, timeout=0.5, what="the announcement")
                break
            except AssertionError:
                continue
        else:
            pytest.fail("emits through Redis never arrived after it came back")
    finally:
        proxy.restore()
        disconnect_all(clients)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_worker_stopped_hands_its_clients_to_the_other_and_they_converge(nodes, sig):
    # Each signal stops a worker of a node of its own, whose two workers both serve. 30 s of graceful time:
    # with SIGTERM the clients must be back long before it ends (they are closed at once).
    server = nodes[0] if sig == signal.SIGKILL else nodes[1]
    wait_for_workers(server)
    tenant, api = setup_tenant(server)
    clients = connect_clients([server], tenant, per_server=6, reconnecting=True)
    try:
        api.ingest((ENTITY, "ticketsSold", 1))
        assert_converged(clients, server.database, tenant)
        held = {pid: sockets_held(pid, server.port) for pid in worker_pids(server)}
        victim = max(held, key=held.get)
        assert held[victim] > 0, held

        os.kill(victim, sig)
        for value in range(2, 8):
            api.ingest((ENTITY, "ticketsSold", value))
        moved = [c for c in clients if c.disconnects]
        deadline = time.monotonic() + 10
        while len(moved) < held[victim]:
            assert time.monotonic() < deadline, f"only {len(moved)} of {held[victim]} clients were let go"
            time.sleep(0.05)
            moved = [c for c in clients if c.disconnects]
        for client in moved:
            client.wait_until(lambda c: c.connects >= 2, timeout=10, what="reconnected")
        assert_converged(clients, server.database, tenant)
    finally:
        disconnect_all(clients)


def test_a_client_that_stops_reading_is_cut_off_and_does_not_hold_up_the_others(server):
    tenant, api = setup_tenant(server)
    reader = RecordingClient().connect(server.url, mint_token(tenant))
    reader.subscribe(ENTITY)

    # A raw Engine.IO/Socket.IO client that subscribes, then never reads again. Its receive buffer is tiny, and so
    # are its TCP segments (536 bytes): the kernel grows the server's send buffer by segments, so it stays at a few
    # hundred kB instead of megabytes, and the socket's own queue grows after some thousand updates, not ten thousand.
    stalled = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket",
        sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096), (socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)],
        timeout=DEFAULT_TIMEOUT,
    )
    try:
        opened = stalled.recv()
        assert opened.startswith("0")  # Engine.IO open
        sid = json.loads(opened[1:])["sid"]
        stalled.send("40/dashboard," + json.dumps({"token": mint_token(tenant)}))
        assert stalled.recv().startswith("40/dashboard,")
        stalled.send("42/dashboard," + json.dumps(["subscribe", {"entityId": ENTITY, "entityType": "event"}]))
        assert "dashboard:initial" in stalled.recv()

        # Enough to fill the kernel's buffers on both sides, then the socket's queue: rows written straight into
        # the change log (NOTIFY wakes the poller), a thousand in one statement, each thousand once the reader has
        # the one before, until the server says it cut the socket off.
        offset = log_size(server)
        written = 0
        for batch in range(16):
            mark = len(reader.events)
            last = server.database.scalar(
                "WITH written AS (INSERT INTO change_log (tenant_id, entity_id, metric_name, value)"
                " SELECT ?, ?, rpad(? || i || '-', 128, 'm'), i FROM generate_series(0, 999) AS i RETURNING seq)"
                " SELECT max(seq) FROM written",
                (tenant, ENTITY, f"{batch}-"),
            )
            written += 1000
            reader.wait_for("metric:update", lambda d, last=last: d["seq"] == last, after=mark)
            if logged(server, f"socket {short_sid(sid)} is not reading", after=offset):
                break
        # A name the entity has (it has far more than MAX_METRICS_PER_ENTITY: the rows above bypass the REST cap).
        fence = api.ingest((ENTITY, "0-0-".ljust(128, "m"), -1))["lastSeq"]
        reader.wait_for("metric:update", lambda d: d["seq"] == fence)
        assert len(reader.of("metric:update")) == written + 1
        wait_for_log(server, f"socket {short_sid(sid)} is not reading", after=offset)
        # The server lets go of the connection at once, while its client still does not read...
        port = stalled.sock.getsockname()[1]
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while server_holds_connection_from(server, port):
            assert time.monotonic() < deadline, "the stalled client's connection is still established"
            time.sleep(0.05)
        # ...so the client sees it end when it reads again.
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                stalled.recv()
    finally:
        stalled.close()
        reader.disconnect()


def test_a_polling_client_that_stops_polling_is_cut_off_past_the_limit(server):
    """Its packets wait in its engine.io queue; past SOCKET_MAX_BACKLOG the session is closed."""
    tenant, api = setup_tenant(server)
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    session = requests.Session()
    sid = json.loads(session.get(base, timeout=DEFAULT_TIMEOUT).text[1:])["sid"]  # "0{...}": OPEN
    url = f"{base}&sid={sid}"

    def post(text):
        assert session.post(url, data=text, timeout=DEFAULT_TIMEOUT).status_code == 200

    def poll():
        return session.get(url, timeout=DEFAULT_TIMEOUT)

    try:
        post("40/dashboard," + json.dumps({"token": mint_token(tenant)}))
        assert "40/dashboard," in poll().text
        post("42/dashboard," + json.dumps(["subscribe", {"entityId": ENTITY, "entityType": "event"}]))
        assert "dashboard:initial" in poll().text

        # It stops polling; a write of 20 metrics queues 20 updates for it.
        offset = log_size(server)
        api.ingest(*[(ENTITY, f"metric-{i}", float(i)) for i in range(20)])
        wait_for_log(server, f"socket {short_sid(sid)} is not reading", after=offset)
        refused = poll()
        assert (refused.status_code, refused.json()) == (400, f"Invalid session {sid}")
    finally:
        session.close()
