"""Servers shared between tests: more processes on a database already migrated, and what a server logged lately.

``testkit.running_server`` migrates the database it is given: ``flask db upgrade`` in a process of its own, some
2.5 s of imports even when there is nothing to upgrade. A server added beside one that is running (often the
session's ``live_server``) needs none of it. A server that several tests share has logged for each of them: a test
looks only at what it logged after the test began (``log_size``, ``wait_for_log_after``).
"""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from testkit import DEFAULT_TIMEOUT, LiveServer, server_env


@contextmanager
def servers_on(database_url, tmp_dirs, **overrides):
    """Servers (``server_env`` overrides), one per directory of ``tmp_dirs``, on ``database_url``, which is migrated
    already; started together and stopped together on exit. Yields the list of them."""
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


def log_size(server):
    """How much the server has logged so far: where ``logged_after`` and ``wait_for_log_after`` start looking."""
    return Path(server.log_path).stat().st_size


def logged_after(server, offset, text):
    """True when ``text`` is in what the server logged after ``offset`` (``log_size``)."""
    with open(server.log_path, "rb") as log:
        log.seek(offset)
        return text.encode() in log.read()


def wait_for_log_after(server, offset, text, timeout=DEFAULT_TIMEOUT):
    """Wait until ``text`` appears in what the server logged after ``offset``: this test's doing, not an earlier's."""
    deadline = time.monotonic() + timeout
    while not logged_after(server, offset, text):
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout}s:\n{server.log_tail()}"
        time.sleep(0.05)
