"""Test helpers: a real gunicorn server in a subprocess, a REST helper and a recording Socket.IO client."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

import jwt
import psycopg
import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JWT_SECRET = "test-secret-for-the-suite-only-0123456789abcdef"
SECRET_KEY = "admin-session-key-for-the-suite-only-0123456789"
DEFAULT_TIMEOUT = 15.0
#: The PostgreSQL server the suite makes its throwaway databases on (libpq URL).
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: The Redis server the suite uses (its tests use their own channel names).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ("sqlite", "postgresql")


def postgres_problem():
    """None when the test PostgreSQL server answers, else why not."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{POSTGRES_URL}: {exc}".strip()
    return None


def require_postgres():
    """Skip (or, with REQUIRE_SERVICES=1, fail) unless the test PostgreSQL server answers."""
    problem = postgres_problem()
    require_service("PostgreSQL", problem is None, problem)


@contextmanager
def postgres_database():
    """A new, empty PostgreSQL database of this test's own; yields its SQLAlchemy URL, drops it after."""
    name = f"analytics_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url_for(backend, tmp_dir):
    """A fresh database URL of ``backend`` ("sqlite" or "postgresql") for one server (or several sharing it)."""
    if backend == "postgresql":
        require_postgres()
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{Path(tmp_dir) / 'analytics.db'}"


class Database:
    """Straight access to a server's database, as an external writer or a check would have it.

    SQL is written with ``?`` placeholders for both backends.
    """

    def __init__(self, url):
        self.url = url
        self.backend = "postgresql" if url.startswith("postgresql") else "sqlite"
        self.IntegrityError = psycopg.IntegrityError if self.backend == "postgresql" else sqlite3.IntegrityError

    @contextmanager
    def connection(self):
        """A connection of its own; ``with conn.transaction():`` makes one transaction of a block."""
        if self.backend == "postgresql":
            with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
                yield _Connection(conn, "%s")
        else:
            with closing(sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10)) as conn:
                conn.execute("PRAGMA foreign_keys=ON")
                yield _Connection(conn, "?")

    @contextmanager
    def transaction(self):
        """A connection whose work commits at the end of the block, or rolls back on an error."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def execute(self, sql, params=()):
        """Run one statement in its own transaction; return its rows (empty for a statement without)."""
        with self.transaction() as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def scalar(self, sql, params=()):
        """The first column of the first row of a query."""
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None


class _Connection:
    def __init__(self, conn, placeholder):
        self._conn = conn
        self._placeholder = placeholder

    def transaction(self):
        # sqlite3's connection commits or rolls back as a context manager; psycopg's has transaction().
        return self._conn if self._placeholder == "?" else self._conn.transaction()

    def execute(self, sql, params=()):
        return self._conn.execute(sql.replace("?", self._placeholder), params)

    def executemany(self, sql, rows):
        if self._placeholder == "?":
            return self._conn.executemany(sql, rows)
        with self._conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", self._placeholder), rows)


def scrape_metrics(base_url):
    """Every sample of the server's ``/metrics`` as ``{(name, sorted label items): value}``."""
    response = requests.get(base_url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric_value(base_url, name, **labels):
    """One sample of the server's ``/metrics``, 0 when the series does not exist yet."""
    return scrape_metrics(base_url).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_metric(base_url, name, expected, at_least=False, timeout=DEFAULT_TIMEOUT, **labels):
    """Wait until the sample equals ``expected`` (or reaches it); gauges and counts are published once a second."""
    deadline = time.monotonic() + timeout
    while True:
        current = metric_value(base_url, name, **labels)
        if current == expected or (at_least and current >= expected):
            return
        assert time.monotonic() < deadline, f"{name}{labels} is {current}, expected {expected}"
        time.sleep(0.05)


def free_port():
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_service(name, available, reason):
    """Skip the calling test when ``name`` is not ``available``; fail instead when REQUIRE_SERVICES=1.

    ``.ci/run`` sets REQUIRE_SERVICES=1, so CI never passes by skipping what it must run;
    ``make test`` on a bare machine still passes, skipping with ``reason``.
    """
    if available:
        return
    message = f"{name} is not available: {reason}"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (REQUIRE_SERVICES=1: tests that need {name} must run)", pytrace=False)
    pytest.skip(message)


def unique(prefix):
    """Return ``prefix`` plus a short random suffix (tenants and entities per test)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mint_token(tenant_id="t1", roles=(), ttl=3600, algorithm="HS256", key=JWT_SECRET, **claims):
    """Sign a token the way an identity provider would."""
    now = int(time.time())
    body = {"sub": "tester", "tenantId": tenant_id, "roles": list(roles), "iat": now, "exp": now + ttl}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm)


def flask_cli(env, *args, root=ROOT):
    """Run ``flask --app wsgi ARGS`` with ``env`` in the checkout ``root``; return the completed process."""
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


class LiveServer:
    """gunicorn with the gevent-websocket worker and gunicorn.conf.py, on its own port and database.

    ``root`` is the checkout whose code it runs (this one unless a benchmark compares two).
    """

    def __init__(self, env, log_path, root=ROOT):
        self.env = env
        self.root = root
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = None

    def migrate(self):
        """Create or migrate the database."""
        result = flask_cli(self.env, "db", "upgrade", root=self.root)
        assert result.returncode == 0, result.stderr

    def start(self):
        """Start gunicorn and wait until /healthz answers 200."""
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the subprocess)
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:serve()"],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            self._wait_ready(deadline=time.monotonic() + 30)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def _wait_ready(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # refused, or accepted before the worker booted
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after 30 s:\n{self.log_tail()}")

    def stop(self):
        """Stop gunicorn (SIGTERM, then SIGKILL after its graceful timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    @property
    def database(self):
        """Straight access to the server's database."""
        return Database(self.env["DATABASE_URL"])

    @property
    def database_path(self):
        """Path of the server's SQLite file."""
        return self.env["DATABASE_URL"].removeprefix("sqlite:///")

    def insert_changes(self, rows):
        """Insert ``(tenant_id, entity_id, metric_name, value)`` rows into the change log in one
        transaction, as an external writer would; return the last ``seq``."""
        with self.database.transaction() as conn:
            conn.executemany(
                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)", rows
            )
            return conn.execute("SELECT MAX(seq) FROM change_log").fetchone()[0]

    def log_tail(self, lines=40):
        """The last lines of the server's log."""
        return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_server(tmp_dir, backend=None, **overrides):
    """A migrated, started server of its own (``server_env`` overrides), stopped on exit.

    With ``backend``, the server gets a fresh database of that kind (unless
    ``DATABASE_URL`` is among the overrides).
    """
    with ExitStack() as stack:
        if backend is not None and "DATABASE_URL" not in overrides:
            overrides["DATABASE_URL"] = stack.enter_context(database_url_for(backend, tmp_dir))
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        server = LiveServer(server_env(tmp_dir, **overrides), Path(tmp_dir) / "server.log")
        server.migrate()
        server.start()
        stack.callback(server.stop)
        yield server


def server_env(tmp_dir, **overrides):
    """Environment for a test server: its own SQLite file, fast polling, no simulator."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JWT_", "DATABASE_", "SIMULATOR", "SECRET_KEY", "ADMIN_"))
    }
    env.update(
        {
            "PORT": str(free_port()),
            "HOST": "127.0.0.1",
            "DATABASE_URL": f"sqlite:///{Path(tmp_dir) / 'analytics.db'}",
            "JWT_SECRET": JWT_SECRET,
            "SECRET_KEY": SECRET_KEY,
            "POLL_INTERVAL": "0.05",
            "SIMULATOR": "0",
            "MAX_SUBSCRIPTIONS_PER_CONNECTION": "5",
            "SOCKET_RATE_LIMIT": "200/second",
            "GRACEFUL_TIMEOUT": "3",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Api:
    """REST calls against a live server, with the token of one tenant."""

    def __init__(self, base_url, token):
        self.base = base_url + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method, path, expect=None, **kwargs):
        """Send a request; when ``expect`` is given, assert the status and return the JSON body."""
        response = self.session.request(method, self.base + path, timeout=DEFAULT_TIMEOUT, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.text)
            return response.json()
        return response

    def create_dashboard(self, name="Overview", tiles=None):
        """Create a dashboard with tiles (default: two number tiles)."""
        if tiles is None:
            tiles = [
                {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
                {"title": "Revenue", "metricName": "revenue", "kind": "number", "unit": "EUR"},
            ]
        return self.call("POST", "/dashboards", 201, json={"name": name, "tiles": tiles})

    def put_entity(self, entity_id, entity_type="event", dashboard_id=None, name="Test entity"):
        """Register an entity."""
        body = {"entityType": entity_type, "name": name}
        if dashboard_id is not None:
            body["dashboardId"] = dashboard_id
        return self.call("PUT", f"/entities/{entity_id}", json=body).json()

    def ingest(self, *points):
        """Record metric points ``(entityId, metricName, value)``; return the response body."""
        body = {"metrics": [{"entityId": e, "metricName": m, "value": v} for e, m, v in points]}
        return self.call("POST", "/metrics", 201, json=body)


class RecordingClient:
    """A python-socketio client that records every server event and lets a test wait for one."""

    EVENTS = ("dashboard:initial", "metric:update", "dashboard:update", "error")

    def __init__(self, namespace="/dashboard", reconnecting=False, **client_options):
        """``reconnecting``: like the seed's client, reconnect by itself and subscribe again on every connect.

        ``client_options`` go to ``socketio.Client``.
        """
        self.namespace = namespace
        options = {"reconnection": reconnecting, "reconnection_delay": 0.2, "reconnection_delay_max": 1}
        self.client = socketio.Client(**{**options, **client_options})
        self._record_in_wire_order()
        self.events = []
        self.connect_errors = []
        self.disconnects = []
        self.connects = 0
        self.subscriptions = {}
        self._cond = threading.Condition()
        for name in self.EVENTS:
            self.client.on(name, self._recorder(name), namespace=namespace)
        self.client.on("connect", self._record_connect, namespace=namespace)
        self.client.on("connect_error", self._record_connect_error, namespace=namespace)
        self.client.on("disconnect", self._record_disconnect, namespace=namespace)

    def _record_in_wire_order(self):
        """Handle the server's messages one by one, in the order they arrive.

        python-engineio's client runs each message handler in a thread of its
        own, so two events that arrive back to back could be recorded in either
        order; the tests check the order the server sent them in. There is no
        public switch for this, hence the wrapped private method.
        """
        eio = self.client.eio
        trigger = eio._trigger_event

        def trigger_in_order(event, *args, **kwargs):
            kwargs["run_async"] = False
            return trigger(event, *args, **kwargs)

        eio._trigger_event = trigger_in_order

    def _recorder(self, name):
        def record(*args):
            with self._cond:
                self.events.append((name, args[0] if len(args) == 1 else args))
                self._cond.notify_all()

        return record

    def _record_connect(self):
        with self._cond:
            self.connects += 1
            again = self.connects > 1
            self._cond.notify_all()
        if again:
            for entity_id, entity_type in list(self.subscriptions.items()):
                self.emit("subscribe", {"entityId": entity_id, "entityType": entity_type})

    def _record_connect_error(self, data=None):
        with self._cond:
            self.connect_errors.append(data)
            self._cond.notify_all()

    def _record_disconnect(self, reason=None):
        with self._cond:
            self.disconnects.append(reason)
            self._cond.notify_all()

    def connect(self, url, token, transports=("websocket",), wait=True):
        """Connect with ``auth.token``; raise socketio.exceptions.ConnectionError when refused."""
        self.client.connect(
            url,
            namespaces=[self.namespace],
            auth={"token": token} if token is not None else None,
            transports=list(transports),
            wait_timeout=DEFAULT_TIMEOUT,
        )
        return self

    def emit(self, event, data=None):
        """Send a client event."""
        self.client.emit(event, data, namespace=self.namespace)

    def call(self, event, data=None):
        """Send a client event and wait for its acknowledgement."""
        return self.client.call(event, data, namespace=self.namespace, timeout=DEFAULT_TIMEOUT)

    def subscribe(self, entity_id, entity_type="event"):
        """Subscribe and return the ``dashboard:initial`` for that entity."""
        mark = len(self.events)
        self.subscriptions[entity_id] = entity_type
        self.emit("subscribe", {"entityId": entity_id, "entityType": entity_type})
        return self.wait_for("dashboard:initial", lambda d: d["entityId"] == entity_id, after=mark)

    def of(self, name):
        """Every payload of event ``name`` received so far."""
        with self._cond:
            return [data for event, data in self.events if event == name]

    def wait_for(self, name, predicate=None, timeout=DEFAULT_TIMEOUT, after=0):
        """Wait for an event ``name`` (after index ``after``) whose payload satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event, data in self.events[after:]:
                    if event == name and (predicate is None or predicate(data)):
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {name!r} event within {timeout}s; got {self.events[-10:]}")
                self._cond.wait(remaining)

    def wait_until(self, condition, timeout=DEFAULT_TIMEOUT, what="condition"):
        """Wait until ``condition(self)`` is true, re-checked on every event received."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{what} not met within {timeout}s; last events {self.events[-10:]}")
                self._cond.wait(remaining)

    def disconnect(self):
        """Disconnect if connected."""
        if self.client.connected:
            self.client.disconnect()
