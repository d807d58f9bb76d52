"""How the service is started and stopped: gunicorn's entry points, the Flask CLI, Ctrl-C, make run's port check."""

import contextlib
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from testkit import (
    DEFAULT_TIMEOUT,
    ROOT,
    LiveServer,
    RecordingClient,
    flask_cli,
    migrated_database,
    mint_token,
    server_env,
    tenant_with_entity,
)

pytestmark = pytest.mark.backends("sqlite")


@pytest.fixture
def env(tmp_path):
    with migrated_database("sqlite", tmp_path) as url:
        yield server_env(tmp_path, DATABASE_URL=url)


def delivers_a_change(server):
    """A subscriber of the server gets a change written through REST: the worker's poller runs."""
    tenant, api = tenant_with_entity(server.url)
    client = RecordingClient().connect(server.url, mint_token(tenant))
    try:
        client.subscribe("event-1")
        seq = api.ingest(("event-1", "ticketsSold", 1))["lastSeq"]
        client.wait_for("metric:update", lambda d: d["seq"] == seq)
    finally:
        client.disconnect()


def test_gunicorn_naming_wsgi_app_serves_it_and_starts_the_background_work(env, tmp_path):
    server = LiveServer(env, tmp_path / "server.log")
    server.start("wsgi:app")
    try:
        delivers_a_change(server)
    finally:
        server.stop()
    assert "realtime started" in server.log_tail(200)


def test_gunicorn_with_its_config_alone_serves_and_a_ctrl_c_stops_master_and_workers_quietly(env, tmp_path):
    """``gunicorn -c gunicorn.conf.py`` (the config names the app); Ctrl-C signals the whole process group."""
    server = LiveServer(env, tmp_path / "server.log")
    server.start(own_process_group=True)
    try:
        delivers_a_change(server)
        (worker,) = psutil.Process(server.proc.pid).children()
        os.killpg(server.proc.pid, signal.SIGINT)
        # The master passes a quit of its own on to the worker; sent at once here, so that it always
        # lands while the worker is still stopping (as it does now and then after a real Ctrl-C).
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGQUIT)
        assert server.proc.wait(timeout=DEFAULT_TIMEOUT) == 0
    finally:
        server.stop()
    log = server.log_tail(500)
    assert "realtime started" in log and "Shutting down: Master" in log
    assert "Traceback" not in log and "SystemExit" not in log, log


def test_flask_cli_commands_build_the_app_and_start_nothing(env):
    result = flask_cli({**env, "LOG_LEVEL": "INFO"}, "routes")
    assert result.returncode == 0, result.stderr
    assert "realtime started" not in result.stderr + result.stdout


def make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_make_run_says_which_port_to_use_when_its_port_is_taken():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = make("port-free", f"PORT={port}")
    assert result.returncode != 0
    assert f"port {port} is in use: PORT={port + 1} make run" in result.stdout
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    assert make("port-free", f"PORT={free}").returncode == 0


def test_wsgi_api_builds_the_rest_only_app_without_gevent_patching_or_socket_io(env):
    """``wsgi_api:api`` is what a synchronous worker imports: nothing patched, no Socket.IO or realtime code loaded."""
    probe = (
        "import sys, wsgi_api; from gevent import monkey; "
        "print(monkey.is_module_patched('socket'), 'realtime' in wsgi_api.api.extensions, "
        "sorted(m for m in sys.modules if m.startswith(('socketio', 'engineio', 'geventwebsocket', 'app.realtime'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "[]"]
