"""More server processes on a database another server has migrated already (often the session's ``live_server``).

``testkit.running_server`` migrates the database it is given: ``flask db upgrade`` in a process of its own, some
2.5 s of imports even when there is nothing to upgrade. A server added beside one that is running needs none of it.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from testkit import LiveServer, server_env


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
