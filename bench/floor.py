"""The floor under a REST metric write: server CPU per request of ours and of apps doing less (bench/floor_apps.py).

    .venv/bin/python -m bench.floor --writes 3000 --rounds 3

Starts ours (one worker, its own SQLite file, a tenant with 4 entities) and, beside it, one
gunicorn per floor app with gevent-websocket's worker (one worker, ``-k
geventwebsocket.gunicorn.workers.GeventWebSocketWorker``, as ours's gunicorn.conf.py names it),
the ``*_sqlite`` ones writing into ours's database file. Then, round by round, posts ``writes``
single-metric writes to each in turn, one at a time, with the same client as ``bench.ingest``
(requests, keep-alive), and reports each server's CPU milliseconds per write (the median of the
rounds; psutil, all its processes). Ours also checks the token and the write, hands the change
to its poller and counts it; the floors show what the HTTP server, Flask and the SQLite commit
cost by themselves. Writes bench/results/floor-<time>.json.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import requests

from bench import harness
from bench.ingest import post_writes
from testkit import free_port

FLOORS = ("wsgi", "wsgi_sqlite", "flask", "flask_sqlite")


class FloorServer:
    """gunicorn serving ``bench.floor_apps:<app>``, one worker."""

    def __init__(self, app, tmp_dir, database, tenant_id):
        self.name = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tmp_dir) / f"floor-{app}.log"
        self.env = {**os.environ, "FLOOR_DATABASE": database, "FLOOR_TENANT": tenant_id}
        self.app = app
        self.proc = None

    def start(self):
        gunicorn = Path(sys.executable).parent / "gunicorn"
        cmd = [
            str(gunicorn),
            "-k",
            "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
            "-w",
            "1",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
            "--pythonpath",
            str(harness.ROOT),
            f"bench.floor_apps:{self.app}",
        ]
        with open(self.log_path, "ab") as log:
            # Run from the temporary directory: gunicorn would read ours's ./gunicorn.conf.py.
            self.proc = subprocess.Popen(cmd, cwd=self.log_path.parent, env=self.env, stdout=log, stderr=log)
        harness.CHILDREN.append(self.proc)
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"floor app {self.app} did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def procs(self):
        master = psutil.Process(self.proc.pid)
        return [master, *master.children(recursive=True)]


def cpu_ms_per_write(server, token, entities, writes):
    """Post ``writes`` single-metric writes one at a time; return the server's CPU milliseconds per write."""
    before = harness.cpu_seconds(server.procs())
    post_writes(server.url, token, entities, writes, threads=1)
    return 1000 * (harness.cpu_seconds(server.procs()) - before) / writes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    harness.install_cleanup()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        ours = harness.make_server("ours", tmp).start()
        try:
            tenant = harness.Tenant(ours, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=4)
            database = ours.database_url.removeprefix("sqlite:///")
            servers = [ours, *(FloorServer(app, tmp, database, tenant.tenant_id).start() for app in FLOORS)]
            for server in servers:  # warm up
                post_writes(server.url, tenant.admin_token, tenant.entities, 200, threads=1)
            runs = {server.name: [] for server in servers}
            for k in range(args.rounds):
                for server in servers if k % 2 == 0 else servers[::-1]:
                    runs[server.name].append(
                        round(cpu_ms_per_write(server, tenant.admin_token, tenant.entities, args.writes), 3)
                    )
                    print(f"  {server.name}: {runs[server.name][-1]} ms", flush=True)
        finally:
            ours.stop()
    median = {name: sorted(values)[len(values) // 2] for name, values in runs.items()}
    for name, value in median.items():
        print(f"{name:>14} {value:.3f} ms of server CPU per write")
    result = {
        "command": harness.command("floor"),
        "writes": args.writes,
        "rounds": args.rounds,
        "cpu_ms_per_write": runs,
        "median": median,
        "machine": harness.machine(),
    }
    print(harness.save_result("floor", result, stamp))


if __name__ == "__main__":
    main()
