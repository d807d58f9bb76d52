"""A real gunicorn server of the project in a subprocess, on a port and database of its own."""

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

from testkit.clients import DEFAULT_TIMEOUT, JWT_SECRET
from testkit.services import Database, database_url_for

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
def running_server(tmp_dir, backend=None, tls=None, **overrides):
    """A migrated, started server of its own (``server_env`` overrides), stopped on exit.

    With ``backend``, the server gets a fresh database of that kind (unless
    ``DATABASE_URL`` is among the overrides); with ``tls`` (``(certfile, keyfile)``),
    gunicorn terminates TLS itself.
    """
    with ExitStack() as stack:
        if backend is not None and "DATABASE_URL" not in overrides:
            overrides["DATABASE_URL"] = stack.enter_context(database_url_for(backend, tmp_dir))
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        server = LiveServer(server_env(tmp_dir, **overrides), Path(tmp_dir) / "server.log", tls=tls)
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
