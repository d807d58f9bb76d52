"""The seed document's socket.io-client 4.x example, run with Node against the live server.

tests/node/seed_example.mjs is the seed's own code (connect, subscribe, listen, cleanup),
changed only in URL, token and in printing one JSON line per event; these tests drive it
over stdin/stdout and check what a JavaScript client of the documented API really sees.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime

import pytest

from tests.support import DEFAULT_TIMEOUT, ROOT

NODE_DIR = ROOT / "tests" / "node"
SCRIPT = NODE_DIR / "seed_example.mjs"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
EXIT_DONE, EXIT_REFUSED = 0, 2
_EOF = object()


class SeedExample:
    """One run of seed_example.mjs: its stdout read line by line on a thread, waited on with deadlines."""

    def __init__(self, proc, stderr_path):
        self.proc = proc
        self.stderr_path = stderr_path
        self.events = []
        self._lines = queue.Queue()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="seed-example-stdout", daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self._lines.put(json.loads(line))
            except json.JSONDecodeError:
                self._lines.put({"event": "unparsed", "data": line.rstrip("\n")})
        self._lines.put(_EOF)

    def _take(self, deadline):
        """Move one line from the reader to ``events``; False at EOF or when the deadline passed."""
        if self._eof:
            return False
        try:
            item = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            return False
        if item is _EOF:
            self._eof = True
            return False
        self.events.append(item)
        return True

    def wait_for(self, name, predicate=None, timeout=DEFAULT_TIMEOUT):
        """Return the data of the first line ``name`` whose data satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            for line in self.events[index:]:
                if line["event"] == name and (predicate is None or predicate(line.get("data"))):
                    return line.get("data")
            index = len(self.events)
            if not self._take(deadline):
                why = "the script ended" if self._eof else f"none within {timeout}s"
                raise AssertionError(f"no {name!r} line from seed_example.mjs ({why}).\n{self.describe()}")

    def of(self, name):
        """The data of every line ``name`` read so far."""
        return [line.get("data") for line in self.events if line["event"] == name]

    def send(self, line):
        """Write one line to the script's stdin."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        """Read every remaining line, then return the exit code."""
        deadline = time.monotonic() + timeout
        while self._take(deadline):
            pass
        if not self._eof:
            raise AssertionError(f"seed_example.mjs still running after {timeout}s.\n{self.describe()}")
        self._reader.join(timeout=max(deadline - time.monotonic(), 1))
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 1))

    def describe(self):
        """What the script printed so far, for assertion messages."""
        stderr = self.stderr_path.read_text(errors="replace")[-2000:]
        lines = "\n".join(json.dumps(line) for line in self.events[-20:])
        return f"stdout:\n{lines}\nstderr:\n{stderr}"

    def stop(self):
        """Kill the script if it still runs, and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def seed_example(live_server, tmp_path):
    """Start seed_example.mjs: ``seed_example(entity_id, token=None, transports="websocket")``.

    ``token=None`` connects without ``auth``. Every run started here is killed at teardown.
    """
    runs = []

    def start(entity_id, token=None, transports="websocket"):
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not on PATH: these tests run the seed's JavaScript client (CI has Node 18+)")
        if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
            pytest.fail(f"socket.io-client is not installed in {NODE_DIR}: run `make install`")
        env = {k: v for k, v in os.environ.items() if k not in ("TOKEN", "DEBUG", "NODE_OPTIONS")}
        env.update(SERVER_URL=live_server.url, ENTITY_ID=entity_id, TRANSPORTS=transports)
        if token is not None:
            env["TOKEN"] = token
        stderr_path = tmp_path / f"seed-example-{len(runs)}.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [node, SCRIPT.name],
                cwd=NODE_DIR,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
            )
        run = SeedExample(proc, stderr_path)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


@pytest.mark.parametrize(
    ("transports", "first_transport"),
    [("websocket", "websocket"), ("default", "polling")],
    ids=["websocket", "default-polling-upgrade"],
)
def test_seed_example_receives_snapshot_metrics_and_layout_changes(
    admin_api, entity, token_for, tenant, seed_example, transports, first_transport
):
    entity_id, dashboard = entity
    admin_api.ingest((entity_id, "ticketsSold", 10), (entity_id, "revenue", 450.5))
    node = seed_example(entity_id, token_for(tenant), transports)

    assert node.wait_for("open") == {"transport": first_transport}
    node.wait_for("connect")
    initial = node.wait_for("dashboard:initial")
    node.wait_for("ready")
    assert initial["entityId"] == entity_id
    assert initial["entityType"] == "event"
    assert initial["metrics"] == {"ticketsSold": 10, "revenue": 450.5}
    assert [t["id"] for t in initial["tiles"]] == [t["id"] for t in dashboard["tiles"]]
    assert [t["metricName"] for t in initial["tiles"]] == ["ticketsSold", "revenue"]
    assert isinstance(initial["seq"], int)

    written = admin_api.ingest((entity_id, "ticketsSold", 11), (entity_id, "revenue", 512.25))
    tickets = node.wait_for("metric:update", lambda d: d["metricName"] == "ticketsSold")
    revenue = node.wait_for("metric:update", lambda d: d["metricName"] == "revenue")
    assert tickets["value"] == 11
    assert revenue["value"] == 512.25
    for update in (tickets, revenue):
        assert update["entityId"] == entity_id
        assert ISO_UTC.match(update["timestamp"]), update["timestamp"]
        assert datetime.fromisoformat(update["timestamp"]).utcoffset().total_seconds() == 0
        assert initial["seq"] < update["seq"] <= written["lastSeq"]

    added = admin_api.call(
        "POST",
        f"/dashboards/{dashboard['id']}/tiles",
        201,
        json={"title": "Visitors", "metricName": "visitors", "kind": "number"},
    )
    update = node.wait_for("dashboard:update")
    assert update["dashboardId"] == dashboard["id"]
    assert update["action"] == "added"
    assert update["tile"] == added["tile"]
    assert update["tile"]["title"] == "Visitors"
    assert update["tile"]["metricName"] == "visitors"
    assert update["tile"]["kind"] == "number"
    assert update["version"] == added["version"]

    if first_transport == "polling":
        assert node.wait_for("upgrade") == {"transport": "websocket"}

    node.send("cleanup")
    assert node.wait_exit() == EXIT_DONE, node.describe()
    assert node.of("disconnect") == ["io client disconnect"]
    assert node.events[-1] == {"event": "done"}
    assert node.of("error") == []
    assert node.of("connect_error") == []
    assert len(node.of("dashboard:initial")) == 1


@pytest.mark.parametrize(
    ("token", "message", "code"),
    [
        ("bad", "invalid token: malformed", "ANALYTICS_1002"),
        ({"key": "another-secret-" + "x" * 32}, "invalid token: Signature verification failed", "ANALYTICS_1002"),
        ({"ttl": -60}, "token expired", "ANALYTICS_1003"),
        (None, "missing token", "ANALYTICS_1001"),
    ],
    ids=["bad", "wrong-key", "expired", "no-auth"],
)
def test_seed_example_is_told_why_it_was_refused(entity, token_for, tenant, seed_example, token, message, code):
    """``token`` is sent as is, or minted with these arguments when a dict; None connects without ``auth``."""
    entity_id, _ = entity
    if isinstance(token, dict):
        token = token_for(tenant, **token)
    node = seed_example(entity_id, token)

    error = node.wait_for("connect_error")
    assert node.wait_exit() == EXIT_REFUSED, node.describe()
    assert error["message"] == message
    assert error["data"] == {"code": code, "message": message}
    # A refused namespace is final: the seed's reconnection options do not retry it.
    assert error["active"] is False
    assert len(node.of("connect_error")) == 1
    assert node.of("connect") == []
    assert node.of("dashboard:initial") == []
