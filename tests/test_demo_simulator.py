"""The demo simulator under several workers: one worker of the server writes, another takes over when it stops."""

import pytest

from app.demo import MetricSimulator

pytestmark = pytest.mark.backends("sqlite")


class _NoSocketServer:
    """The simulator only asks its server to run and pace its loop, which these tests do not start."""


def test_one_simulator_per_server_run_dir_writes_and_another_takes_over(app, tmp_path):
    app.config["SERVER_RUN_DIR"] = str(tmp_path)
    try:
        first, second = MetricSimulator(app, _NoSocketServer()), MetricSimulator(app, _NoSocketServer())
    finally:
        app.config["SERVER_RUN_DIR"] = None
    assert first._holds_lock()
    assert not second._holds_lock()
    assert first._holds_lock()  # kept
    first._lock.close()  # what the kernel does when the first worker's process ends
    assert second._holds_lock()


def test_without_a_run_dir_every_simulator_writes(app):
    assert app.config["SERVER_RUN_DIR"] is None
    assert MetricSimulator(app, _NoSocketServer())._holds_lock()
