"""The seed document's socket.io-client example (tests/node/seed_example.mjs), run with Node by the tests."""

import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

from testkit import DEFAULT_TIMEOUT, ROOT

NODE_DIR = ROOT / "tests" / "node"
SCRIPT = NODE_DIR / "seed_example.mjs"
_EOF = object()


def start_seed_example(url, entity_id, token, transports, stderr_path, extra_env=None):
    """Start seed_example.mjs against ``url``; ``token=None`` connects without ``auth``.

    ``extra_env`` adds to Node's environment (``NODE_EXTRA_CA_CERTS`` to trust a test certificate).
    """
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests run the seed's JavaScript client (CI has Node 18+)")
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"socket.io-client is not installed in {NODE_DIR}: run `make install`")
    env = {k: v for k, v in os.environ.items() if k not in ("TOKEN", "DEBUG", "NODE_OPTIONS")}
    env.update(SERVER_URL=url, ENTITY_ID=entity_id, TRANSPORTS=transports, **(extra_env or {}))
    if token is not None:
        env["TOKEN"] = token
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
    return SeedExample(proc, stderr_path)


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
