"""A real gunicorn server of the project in a subprocess, on a port and database of its own."""

import atexit
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

import psycopg
import requests

from testkit.clients import DEFAULT_TIMEOUT, JWT_SECRET
from testkit.services import (
    POSTGRES_URL,
    Database,
    drop_postgres_database,
    postgres_base_url,
    postgres_database,
    require_postgres,
)

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent

SECRET_KEY = "admin-session-key-for-the-suite-only-0123456789"


def free_port():
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flask_cli(env, *args, root=ROOT):
    """Run ``flask --app wsgi ARGS`` with ``env`` in the checkout ``root``; return the completed process."""
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


class LiveServer:
    """gunicorn with the gevent-websocket worker and gunicorn.conf.py, on its own port and database.

    ``root`` is the checkout whose code it runs (this one unless a benchmark compares two).
    ``tls``: ``(certfile, keyfile)`` for gunicorn to terminate TLS itself (its ``--certfile``
    and ``--keyfile``); the server is then at ``https://`` and ``verify`` is the certificate.
    """

    def __init__(self, env, log_path, root=ROOT, tls=None):
        self.env = env
        self.root = root
        self.port = int(env["PORT"])
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.verify = str(tls[0]) if tls else True
        self.log_path = log_path
        self.proc = None

    def migrate(self):
        """Create or migrate the database."""
        result = flask_cli(self.env, "db", "upgrade", root=self.root)
        assert result.returncode == 0, result.stderr

    def start(self, *gunicorn_args, own_process_group=False):
        """Start gunicorn (with ``gunicorn_args`` after ``-c gunicorn.conf.py``) and wait until /healthz answers 200.

        ``own_process_group``: as a terminal runs it, so a signal to the group reaches the master and its
        workers alike (``os.killpg(server.proc.pid, ...)``) and not this process.
        """
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the subprocess)
        tls_args = ["--certfile", str(self.tls[0]), "--keyfile", str(self.tls[1])] if self.tls else []
        # A checkout from before gunicorn.conf.py named the app (bench.ab compares old ones) serves wsgi:serve().
        named = "wsgi_app" in (Path(self.root) / "gunicorn.conf.py").read_text()
        app_args = [] if named else ["wsgi:serve()"]
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", *tls_args, *app_args, *gunicorn_args],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_process_group,
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
                if requests.get(self.url + "/healthz", timeout=2, verify=self.verify).status_code == 200:
                    return
            except requests.RequestException:  # refused, or accepted before the worker booted
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after 30 s:\n{self.log_tail()}")

    def stop(self):
        """Stop gunicorn quickly (SIGQUIT: its workers exit at once), then SIGKILL if it is still there.

        A test of the graceful stop (SIGTERM: sockets closed, requests answered 503 meanwhile) sends it itself.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
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


_templates = {}  # (backend, checkout root) -> a migrated template: SQLite file path or PostgreSQL database name


def _template(backend, root):
    """A database of ``backend`` migrated by ``flask db upgrade`` of checkout ``root``, once per process."""
    key = (backend, str(root))
    if key not in _templates:
        directory = Path(tempfile.mkdtemp(prefix="analytics-template-"))
        atexit.register(shutil.rmtree, directory, True)
        if backend == "postgresql":
            require_postgres()
            name = f"analytics_template_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            atexit.register(drop_postgres_database, name)
            url = f"{postgres_base_url()}/{name}"
        else:
            name = directory / "analytics.db"
            url = f"sqlite:///{name}"
        migrated = flask_cli(server_env(directory, DATABASE_URL=url), "db", "upgrade", root=root)
        assert migrated.returncode == 0, migrated.stderr
        if backend == "sqlite":
            with closing(sqlite3.connect(name)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole database in the one file copied
        _templates[key] = name
    return _templates[key]


@contextmanager
def migrated_database(backend, tmp_dir, root=ROOT):
    """A fresh database of ``backend`` already migrated (a copy of a template migrated once); yields its URL.

    ``flask db upgrade`` costs a process and seconds of imports: each test server's
    database is a copy instead (the SQLite file, or PostgreSQL's ``CREATE DATABASE ...
    TEMPLATE``). PostgreSQL databases are dropped on exit.
    """
    template = _template(backend, root)
    if backend == "postgresql":
        with postgres_database(template) as url:
            yield url
    else:
        path = Path(tmp_dir) / "analytics.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"


@contextmanager
def running_server(tmp_dir, backend=None, tls=None, **overrides):
    """A migrated, started server of its own (``server_env`` overrides), stopped on exit.

    The server gets a fresh, migrated database of ``backend`` (SQLite unless said), unless
    ``DATABASE_URL`` is among the overrides (then it is migrated first); with ``tls``
    (``(certfile, keyfile)``), gunicorn terminates TLS itself.
    """
    with ExitStack() as stack:
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        migrated = "DATABASE_URL" not in overrides
        if migrated:
            overrides["DATABASE_URL"] = stack.enter_context(migrated_database(backend or "sqlite", tmp_dir))
        server = LiveServer(server_env(tmp_dir, **overrides), Path(tmp_dir) / "server.log", tls=tls)
        if not migrated:
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
            # The suite's grids of bad tokens all sign in from 127.0.0.1; tests of the limit set their own.
            "ADMIN_SIGN_IN_RATE_LIMIT": "1000/minute",
            "GRACEFUL_TIMEOUT": "3",
            # One worker unless a test asks for more (gunicorn.conf.py's default is one per core).
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def log_size(server):
    """How much the server has logged so far: where ``logged`` and ``wait_for_log`` may start looking."""
    return Path(server.log_path).stat().st_size


def logged(server, text, after=0):
    """True when ``text`` is in what the server logged after offset ``after`` (``log_size``)."""
    with open(server.log_path, "rb") as log:
        log.seek(after)
        return text.encode() in log.read()


def wait_for_log(server, text, timeout=DEFAULT_TIMEOUT, after=0):
    """Wait until ``text`` appears in what the server logged after offset ``after``.

    A server that several tests share has logged for each of them: a test passes
    ``after=log_size(server)`` taken when it began, to see only what it caused.
    """
    deadline = time.monotonic() + timeout
    while not logged(server, text, after):
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout}s:\n{server.log_tail()}"
        time.sleep(0.05)


@contextmanager
def servers_on(database_url, tmp_dirs, **overrides):
    """Servers (``server_env`` overrides), one per directory of ``tmp_dirs``, on ``database_url``, which is migrated
    already (a server added beside a running one needs no ``flask db upgrade``); started together and stopped
    together on exit. Yields the list of them."""
    servers = []
    for tmp_dir in tmp_dirs:
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        env = server_env(tmp_dir, DATABASE_URL=database_url, **overrides)
        servers.append(LiveServer(env, Path(tmp_dir) / "server.log"))

    def each(method):
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(method, servers))

    with ExitStack() as stack:
        stack.callback(each, LiveServer.stop)  # also those started when another one failed to start
        each(LiveServer.start)
        yield servers


@contextmanager
def server_on(database_url, tmp_dir, **overrides):
    """One server (``server_env`` overrides) on ``database_url``, which is migrated already; stopped on exit."""
    with servers_on(database_url, [tmp_dir], **overrides) as (server,):
        yield server


#: gunicorn arguments (after ``-c gunicorn.conf.py``) of the REST-only app under the synchronous worker.
REST_ONLY_ARGS = ("-k", "sync", "wsgi_api:api")


@contextmanager
def rest_only_server_on(database_url, tmp_dir, workers=2, **overrides):
    """The REST-only app (``wsgi_api:api``) under gunicorn's sync worker with ``workers`` workers (``server_env``
    overrides), on ``database_url``, which is migrated already; stopped on exit.

    As docs/deployment.md runs it: ``gunicorn -c gunicorn.conf.py -k sync -w N wsgi_api:api``.
    """
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    server = LiveServer(server_env(tmp_dir, DATABASE_URL=database_url, **overrides), Path(tmp_dir) / "server.log")
    try:
        server.start(*REST_ONLY_ARGS, "-w", str(workers))
        yield server
    finally:
        server.stop()
