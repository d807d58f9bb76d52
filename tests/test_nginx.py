"""deploy/nginx/analytics-svc.conf, run by Debian's nginx in front of two server processes on one database.

The shipped file is used as it is, but for the lines its header names (backend addresses,
listen port, access log path), replaced by ``render_site_config``, which fails when it does
not find each of them exactly as often as expected.
"""

import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from app.logs import short_sid
from testkit import (
    DEFAULT_TIMEOUT,
    ROOT,
    Api,
    RecordingClient,
    mint_token,
    require_service,
    server_on,
    tenant_with_entity,
)

# What nginx does with the traffic does not depend on the database: SQLite only.
pytestmark = pytest.mark.backends("sqlite")

SITE_CONFIG = ROOT / "deploy" / "nginx" / "analytics-svc.conf"
BACKEND_LINE = re.compile(r"^(\s*server\s+)(\S+:\d+)(\s[^;{]*)?;", re.MULTILINE)
LISTEN_LINE = re.compile(r"^(\s*listen\s+)80;", re.MULTILINE)
ACCESS_LOG_LINE = re.compile(r"^(\s*access_log\s+)(\S+)(\s+analytics_svc;)", re.MULTILINE)
HASH_LINE = re.compile(r"^\s*hash \$remote_addr consistent;\n", re.MULTILINE)


def nginx_binary():
    """Path of Debian's nginx, or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


@pytest.fixture(scope="module", autouse=True)
def nginx_installed():
    require_service("nginx", nginx_binary() is not None, "no nginx binary; `make test` installs Debian's as root")


def _replace_exactly(pattern, replacement, text, count, what):
    new_text, found = pattern.subn(replacement, text)
    assert found == count, f"{SITE_CONFIG.name}: expected {count} {what}, found {found}"
    return new_text


def render_site_config(listen_port, backends, access_log, sticky=True):
    """The shipped site config with only the test's addresses, port and log path put in."""
    text = SITE_CONFIG.read_text()
    addresses = iter(backends)
    text = _replace_exactly(
        BACKEND_LINE, lambda m: f"{m[1]}{next(addresses)}{m[3] or ''};", text, len(backends), "upstream servers"
    )
    text = _replace_exactly(LISTEN_LINE, rf"\g<1>127.0.0.1:{listen_port};", text, 1, "`listen 80;` lines")
    text = _replace_exactly(ACCESS_LOG_LINE, rf"\g<1>{access_log}\g<3>", text, 1, "access_log lines")
    if not sticky:
        text = _replace_exactly(HASH_LINE, "", text, 1, "`hash $remote_addr consistent;` lines")
    return text


class Nginx:
    """nginx as a child process of the test: its own prefix, config, logs and temp files under one directory."""

    def __init__(self, directory, backends, sticky=True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        (self.dir / "analytics-svc.conf").write_text(
            render_site_config(self.port, backends, self.access_log, sticky=sticky)
        )
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.dir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # One worker: round robin (the negative case) then alternates strictly between the backends.
        # `user`: workers as ourselves, so they can reach the private temp directory (ignored unless root).
        (self.dir / "nginx.conf").write_text(
            f"user {getpass.getuser()};\nworker_processes 1;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n{temp_paths}\n    include analytics-svc.conf;\n}}\n"
        )
        self.command = [
            nginx_binary(),
            "-p",
            str(self.dir),
            "-c",
            str(self.dir / "nginx.conf"),
            "-g",
            f"daemon off; pid {self.dir / 'nginx.pid'}; error_log stderr;",
        ]
        self.proc = None

    def start(self):
        """Check the config (`nginx -t`), start nginx and wait until it accepts connections."""
        checked = subprocess.run([*self.command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"nginx -t refused the config:\n{checked.stderr}"
        with open(self.error_log, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.error_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx not listening after 15 s:\n{self.error_log.read_text()}") from None
                time.sleep(0.02)

    def stop(self):
        """Fast shutdown (SIGTERM closes open WebSockets at once), SIGKILL if it does not end."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_entries(self):
        """Every access log entry written so far (one per finished request; a WebSocket's when it closes)."""
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]

    def wait_for_log(self, predicate, what, timeout=DEFAULT_TIMEOUT):
        """The entries satisfying ``predicate``, once there is at least one.

        nginx writes an entry after the response has gone out, so the client can be a step ahead.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [entry for entry in self.log_entries() if predicate(entry)]
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no access log entry for {what} within {timeout}s: {self.log_entries()[-10:]}")
            time.sleep(0.02)


def logged_sid(sid):
    """What the access log keeps of a polling session id (deploy/nginx: $analytics_sid_prefix), as our logs do."""
    return short_sid(sid)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_nginx(directory, backends, sticky=True):
    """nginx in front of ``backends`` (LiveServers), stopped on exit."""
    nginx = Nginx(directory, [f"127.0.0.1:{server.port}" for server in backends], sticky=sticky)
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


def second_backend(directory, live_server):
    """Another server process on the session server's SQLite database (as tests/test_multiprocess.py runs two)."""
    return server_on(live_server.env["DATABASE_URL"], directory, GRACEFUL_TIMEOUT=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, live_server):
    """The session's server and a second process on its database, behind the sticky nginx: ``(nginx, backends)``.

    The last test of the module may stop the second process.
    """
    tmp = tmp_path_factory.mktemp("nginx-cluster")
    with second_backend(tmp / "b", live_server) as other, running_nginx(tmp / "nginx", [live_server, other]) as nginx:
        yield nginx, [live_server, other]


def backend_of(nginx, backends, request_id):
    """The backend that answered the request with this X-Request-ID, by nginx's access log.

    ``upstream`` lists every backend tried, comma-separated; the last one answered.
    """
    (entry,) = nginx.wait_for_log(lambda e: e["request_id"] == request_id, f"request {request_id}")
    answered = entry["upstream"].split(", ")[-1]
    (server,) = [s for s in backends if answered == f"127.0.0.1:{s.port}"]
    return server


def view_of(events):
    """A client's metric values after ``(event, data)`` in order: its last snapshot plus later updates.

    Fails on an update the client already had (in its snapshot, or delivered before): nothing twice.
    """
    metrics, seq = None, None
    for name, data in events:
        if name == "dashboard:initial":
            metrics, seq = dict(data["metrics"]), data["seq"]
        elif name == "metric:update":
            assert data["seq"] > seq, f"update {data} arrived after seq {seq}: delivered twice"
            metrics[data["metricName"]] = data["value"]
            seq = data["seq"]
    return metrics


# --- (a) polling, then upgrade, through the sticky upstream ---------------------------------------------


@pytest.mark.parametrize(
    ("transports", "methods", "final_transport"),
    [(("polling",), {"GET", "POST"}, "polling"), (("polling", "websocket"), {"GET"}, "websocket")],
    ids=["polling-only", "polling-then-upgrade"],
)
def test_python_client_session_stays_on_one_backend(cluster, transports, methods, final_transport):
    nginx, _ = cluster
    tenant, api = tenant_with_entity(nginx.url)
    client = RecordingClient().connect(nginx.url, mint_token(tenant), transports=transports)
    try:
        sid = client.client.eio.sid
        # python-engineio tries the upgrade right after the handshake, before connect() returns.
        assert client.client.transport() == final_transport
        client.subscribe("event-1")
        seq = api.ingest(("event-1", "ticketsSold", 5))["lastSeq"]
        update = client.wait_for("metric:update")
        assert (update["metricName"], update["value"], update["seq"]) == ("ticketsSold", 5.0, seq)
    finally:
        client.disconnect()
    # Polls and posts (namespace connect, subscribe, disconnect) carry the session id, and so does
    # the upgrade, whose entry is written when the WebSocket closes. Every one went to one backend.
    last_status = 101 if final_transport == "websocket" else 200
    nginx.wait_for_log(lambda e: e["sid"] == logged_sid(sid) and e["status"] == last_status, "the last request")
    session = [e for e in nginx.log_entries() if e["sid"] == logged_sid(sid)]
    assert {e["method"] for e in session} == methods, session
    assert len({e["upstream"] for e in session}) == 1, session
    statuses = [e["status"] for e in session]
    if final_transport == "polling":
        # python-engineio polls once more after posting its close packet; the backend, which has
        # just ended the session, answers that one poll 400. Every request before it got 200.
        statuses = statuses[:-1] if statuses[-1] == 400 else statuses
        assert set(statuses) == {200}, session
    else:
        assert statuses == [101], session


def polling_connect(url, token):
    """Open a polling session and connect /dashboard by hand, as engine.io-client does first.

    Returns the HTTP statuses of the handshake, the CONNECT post and the poll that answers it,
    and the last body; stops at the first status other than 200.
    """
    base = url + "/socket.io/?EIO=4&transport=polling"
    handshake = requests.get(base, timeout=DEFAULT_TIMEOUT)
    assert handshake.status_code == 200, handshake.text
    sid = json.loads(handshake.text[1:])["sid"]  # "0{...}": the OPEN packet
    statuses = [handshake.status_code]
    steps = [
        ("POST", "40/dashboard," + json.dumps({"token": token})),  # the namespace CONNECT packet
        ("GET", None),  # the poll that brings the answer to it
    ]
    for method, body in steps:
        response = requests.request(method, f"{base}&sid={sid}", data=body, timeout=DEFAULT_TIMEOUT)
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
    return sid, statuses, response.text


@pytest.mark.parametrize("sticky", [True, False], ids=["hash", "round-robin"])
def test_a_polling_session_needs_the_hash_line(cluster, tmp_path, sticky):
    """The shipped config, and the same without its `hash` line (round robin)."""
    _, backends = cluster
    with running_nginx(tmp_path / "nginx", backends, sticky=sticky) as nginx:
        tenant, _ = tenant_with_entity(nginx.url)
        sid, statuses, last_body = polling_connect(nginx.url, mint_token(tenant))
        session = nginx.wait_for_log(lambda e: e["sid"] == logged_sid(sid), "the session's requests")
        handshake = [e for e in nginx.log_entries() if e["uri"].startswith("/socket.io/") and not e["sid"]]
        if sticky:
            assert statuses == [200, 200, 200]
            assert last_body.startswith("40/dashboard,{")  # connected
            assert {e["upstream"] for e in session + handshake} == {handshake[0]["upstream"]}
        else:
            # The CONNECT went to the other backend, which has never heard of this session.
            assert statuses == [200, 400]
            assert json.loads(last_body) == f"Invalid session {sid}"
            assert session[0]["upstream"] != handshake[0]["upstream"]
            # WebSocket-only clients need no stickiness: one connection, one backend.
            websocket_only = RecordingClient().connect(nginx.url, mint_token(tenant))
            try:
                assert websocket_only.subscribe("event-1")["entityId"] == "event-1"
            finally:
                websocket_only.disconnect()


def test_node_client_polls_then_upgrades_through_nginx(cluster, node_client):
    nginx, _ = cluster
    tenant, api = tenant_with_entity(nginx.url)
    node = node_client(nginx.url, "event-1", mint_token(tenant), "default")
    assert node.wait_for("open") == {"transport": "polling"}
    node.wait_for("ready")
    assert node.wait_for("upgrade") == {"transport": "websocket"}
    seq = api.ingest(("event-1", "ticketsSold", 7))["lastSeq"]
    update = node.wait_for("metric:update")
    assert (update["metricName"], update["value"], update["seq"]) == ("ticketsSold", 7, seq)
    node.send("cleanup")
    assert node.wait_exit() == 0, node.describe()
    assert node.of("connect_error") == []
    assert node.of("error") == []


# --- (b) WebSocket only, (c) a metric written through nginx reaches each client exactly once ---------


def test_websocket_only_clients_get_each_metric_written_through_nginx_exactly_once(cluster, node_client):
    nginx, _ = cluster
    tenant, api = tenant_with_entity(nginx.url)
    python = RecordingClient().connect(nginx.url, mint_token(tenant))
    try:
        python.subscribe("event-1")
        node = node_client(nginx.url, "event-1", mint_token(tenant), "websocket")
        assert node.wait_for("open") == {"transport": "websocket"}
        node.wait_for("ready")

        first = api.ingest(("event-1", "ticketsSold", 1))["lastSeq"]
        # A second metric after it: once that has arrived, a repeat of the first would have too.
        last = api.ingest(("event-1", "revenue", 2))["lastSeq"]
        python.wait_for("metric:update", lambda u: u["seq"] == last)
        node.wait_for("metric:update", lambda u: u["seq"] == last)
        expected = [("ticketsSold", 1.0, first), ("revenue", 2.0, last)]
        assert [(u["metricName"], u["value"], u["seq"]) for u in python.of("metric:update")] == expected
        assert [(u["metricName"], u["value"], u["seq"]) for u in node.of("metric:update")] == expected
        node.send("cleanup")
        assert node.wait_exit() == 0, node.describe()
    finally:
        python.disconnect()


# --- (e) REST and health checks with X-Forwarded-For, request ids and the body limit -----------------


def test_rest_and_healthz_through_nginx_with_forwarded_for_and_request_ids(cluster):
    nginx, backends = cluster
    tenant, api = tenant_with_entity(nginx.url)
    forwarded = {"X-Forwarded-For": "203.0.113.7"}

    health = requests.get(nginx.url + "/healthz", headers=forwarded, timeout=DEFAULT_TIMEOUT)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "checks": {"process": "ok"}}
    ready = requests.get(nginx.url + "/readyz", timeout=DEFAULT_TIMEOUT)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}
    request_id = health.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's own, as the caller sent none
    (entry,) = nginx.wait_for_log(lambda e: e["request_id"] == request_id, "the health check")
    assert entry["x_forwarded_for"] == "203.0.113.7"
    assert entry["upstream"] in {f"127.0.0.1:{s.port}" for s in backends}

    # A caller's request id (another proxy's) is kept and handed back.
    written = api.call(
        "POST",
        "/metrics",
        headers={**forwarded, "X-Request-ID": "req-from-the-edge"},
        json={"metrics": [{"entityId": "event-1", "metricName": "ticketsSold", "value": 3}]},
    )
    assert written.status_code == 201, written.text
    assert written.headers["X-Request-ID"] == "req-from-the-edge"
    read = api.call("GET", "/entities/event-1", 200, headers=forwarded)
    assert read["entityId"] == "event-1"
    (entry,) = nginx.wait_for_log(lambda e: e["request_id"] == "req-from-the-edge", "the ingest request")
    assert (entry["method"], entry["status"], entry["x_forwarded_for"]) == ("POST", 201, "203.0.113.7")

    # nginx's body limit equals the app's MAX_REQUEST_BYTES, and answers in the app's shape.
    too_large = api.call(
        "POST", "/metrics", data=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert too_large.status_code == 413
    assert too_large.json() == {"code": "ANALYTICS_1203", "message": "payload too large"}
    direct = Api(backends[0].url, mint_token(tenant, roles=("ingest",)))
    from_app = direct.call(
        "POST", "/metrics", data=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert (from_app.status_code, from_app.json()["code"]) == (413, "ANALYTICS_1203")
    at_limit = api.call("POST", "/metrics", data=b" " * (1024 * 1024), headers={"Content-Type": "application/json"})
    assert at_limit.status_code == 400  # passed by nginx; the app finds no JSON in it
    assert at_limit.json()["code"] != "ANALYTICS_1203"


# --- (d) one backend stops: clients come back through nginx on the other and converge ---------------
# (keep last: it may stop the cluster's second backend)


def test_when_a_backend_stops_clients_reconnect_through_nginx_to_the_other_and_converge(
    cluster, live_server, tmp_path, node_client
):
    # Two backends of the test's own (either may be stopped): the cluster's second one and a third.
    _, (_, second) = cluster
    with (
        second_backend(tmp_path / "c", live_server) as third,
        running_nginx(tmp_path / "nginx", [second, third]) as nginx,
    ):
        backends = [second, third]
        tenant, api = tenant_with_entity(nginx.url)
        api.ingest(("event-1", "ticketsSold", 1))

        # The seed's client in Python: reconnect by itself, subscribe again on every connect.
        python = RecordingClient(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
        python.client.on(
            "connect",
            lambda: python.emit("subscribe", {"entityId": "event-1", "entityType": "event"}),
            namespace="/dashboard",
        )
        python.connect(nginx.url, mint_token(tenant), transports=("polling", "websocket"))
        node = node_client(nginx.url, "event-1", mint_token(tenant), "default")
        try:
            assert python.wait_for("dashboard:initial")["metrics"] == {"ticketsSold": 1.0}
            first_on_node = node.wait_for("dashboard:initial")
            assert first_on_node["metrics"] == {"ticketsSold": 1}

            # Every client here comes from 127.0.0.1, so the hash puts them all on one backend.
            probe = requests.get(nginx.url + "/healthz", timeout=DEFAULT_TIMEOUT)
            serving = backend_of(nginx, backends, probe.headers["X-Request-ID"])
            (other,) = [s for s in backends if s is not serving]

            serving.stop()
            python.wait_until(lambda c: len(c.disconnects) == 1, what="disconnect from the stopped backend")
            node.wait_for("disconnect")
            # Written through nginx as the clients come back: it lands on the other backend. A client
            # back before it gets it as an update, one back after it in its new snapshot.
            body = {"metrics": [{"entityId": "event-1", "metricName": "ticketsSold", "value": 2}]}
            api.call("POST", "/metrics", 201, json=body, headers={"X-Request-ID": "while-one-is-down"})
            assert backend_of(nginx, backends, "while-one-is-down") is other

            # Back through nginx, on the other backend: a second snapshot each.
            python.wait_until(lambda c: len(c.of("dashboard:initial")) == 2, 30, "a fresh dashboard:initial")
            node.wait_for("dashboard:initial", lambda d: d is not first_on_node, timeout=30)  # a later line
            assert python.client.connected

            # Live again: once the next write has arrived, each client's view is the database's.
            last = api.ingest(("event-1", "revenue", 3))["lastSeq"]
            python.wait_for("metric:update", lambda u: u["seq"] == last)
            node.wait_for("metric:update", lambda u: u["seq"] == last)
            current = {"ticketsSold": 2, "revenue": 3}
            assert view_of(python.events) == current
            assert view_of((line["event"], line.get("data")) for line in node.events) == current
            assert python.connect_errors == []
            node.send("cleanup")
            assert node.wait_exit() == 0, node.describe()
        finally:
            python.disconnect()


def test_the_access_log_keeps_no_polling_sid_and_no_token(cluster, tmp_path):
    _, backends = cluster
    with running_nginx(tmp_path / "nginx", backends) as nginx:
        base = nginx.url + "/socket.io/?EIO=4&transport=polling"
        session = requests.Session()
        opened = session.get(base + "&token=secret-in-the-url", timeout=DEFAULT_TIMEOUT)
        sid = json.loads(opened.text[1:])["sid"]
        session.post(f"{base}&sid={sid}", data="40/dashboard,", timeout=DEFAULT_TIMEOUT)
        session.close()
        entry = nginx.wait_for_log(lambda e: e["sid"] == logged_sid(sid), "the session's post")[0]
        assert (entry["uri"], entry["transport"]) == ("/socket.io/", "polling")
        text = nginx.access_log.read_text()
        assert sid not in text and "secret-in-the-url" not in text


def test_one_address_flooding_requests_is_answered_429_by_nginx(cluster, tmp_path):
    _, backends = cluster

    def ask(count):
        with requests.Session() as session:
            return [session.get(nginx.url + "/healthz", timeout=DEFAULT_TIMEOUT).status_code for _ in range(count)]

    with running_nginx(tmp_path / "nginx", backends) as nginx, ThreadPoolExecutor(8) as pool:
        statuses = [status for batch in pool.map(ask, [100] * 8) for status in batch]
    # 50 requests a second with a burst of 200 (deploy/nginx): 800 at once are far more than that.
    assert statuses.count(200) >= 200
    assert statuses.count(429) >= 100 and set(statuses) == {200, 429}
