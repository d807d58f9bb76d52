"""The moving parts of a benchmark run: the two servers, the load generator, the writers.

Every process started here is registered in ``CHILDREN`` and ended on every exit path
(normal return, exception, SIGINT/SIGTERM, interpreter exit), by its own PID.
"""

import atexit
import json
import os
import platform
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing, suppress
from importlib.metadata import version
from pathlib import Path

import psutil
import requests

from testkit import JWT_SECRET, LiveServer, free_port, mint_token, server_env

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
NODE = shutil.which("node") or "node"
CLIENTS_PER_GENERATOR = 2500

CHILDREN = []  # subprocess.Popen of everything started here


def _end_children():
    live = [proc for proc in reversed(CHILDREN) if proc.poll() is None]
    for proc in live:
        with suppress(OSError):
            proc.terminate()
    deadline = time.monotonic() + 5
    for proc in live:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(OSError):
                proc.kill()
                proc.wait(timeout=5)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup():
    """End every child on exit and on SIGINT/SIGTERM; raise the open-files limit to the hard limit."""
    atexit.register(_end_children)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def database_procs():
    """This machine's PostgreSQL processes (the server and its backends), for the database's share of a run."""
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def cpu_seconds(procs):
    """User + system CPU seconds of the live processes in ``procs``."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_bytes(procs):
    """Resident set size of the live processes in ``procs``."""
    total = 0
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


class OurServer:
    """analytics-svc under gunicorn, exactly as testkit's LiveServer starts it."""

    name = "ours"

    def __init__(self, tmp_dir, workers=1, database_url=None, root=None, **env):
        overrides = {
            "WEB_CONCURRENCY": str(workers),
            "POLL_INTERVAL": "0.1",
            "LOG_LEVEL": "WARNING",
            "MAX_SUBSCRIPTIONS_PER_CONNECTION": "50",
            "SOCKET_RATE_LIMIT": "30/second",
            "WORKER_CONNECTIONS": "20000",
            # The load generator opens every connection from 127.0.0.1.
            "MAX_CONNECTIONS_PER_IP": "1000000",
        }
        if database_url:
            overrides["DATABASE_URL"] = database_url
        overrides.update(env)
        # ``root``: another checkout's code (bench.ab), run with this checkout's virtualenv.
        self.live = LiveServer(server_env(tmp_dir, **overrides), Path(tmp_dir) / "server.log", root=root or ROOT)
        self.url = self.live.url
        self.database_url = self.live.env["DATABASE_URL"]
        self.workers = workers

    def start(self):
        self.live.migrate()
        self.live.start()
        CHILDREN.append(self.live.proc)
        self._master = psutil.Process(self.live.proc.pid)
        deadline = time.monotonic() + 20
        while len(self.worker_procs()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def worker_procs(self):
        return self._master.children(recursive=True)

    def procs(self):
        return [self._master, *self.worker_procs()]

    def stop(self):
        self.live.stop()


class PeerServer:
    """The Node.js Socket.IO reference server of bench/peer (in memory)."""

    name = "peer"
    database_url = None
    workers = 1

    def __init__(self, tmp_dir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tmp_dir) / "peer.log"
        self.proc = None

    def start(self):
        env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", "JWT_SECRET": JWT_SECRET}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [NODE, str(BENCH / "peer" / "server.mjs")], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        CHILDREN.append(self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"peer exited: {self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("peer not ready")

    def worker_procs(self):
        return [psutil.Process(self.proc.pid)]

    def procs(self):
        return self.worker_procs()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def make_server(name, tmp_dir, workers=1, database_url=None, root=None, **env):
    """A stopped server: ``ours`` (``env``: extra environment, e.g. REDIS_URL; ``root``: a checkout) or ``peer``."""
    if name == "ours":
        return OurServer(tmp_dir, workers=workers, database_url=database_url, root=root, **env)
    return PeerServer(tmp_dir)


class Tenant:
    """One tenant's tokens and its registered entities on a server."""

    def __init__(self, server, tenant_id, entities):
        self.server = server
        self.tenant_id = tenant_id
        self.admin_token = mint_token(tenant_id, roles=("admin", "ingest"), ttl=6 * 3600)
        self.client_token = mint_token(tenant_id, ttl=6 * 3600)
        self.entities = [f"bench-entity-{i}" for i in range(entities)]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.admin_token}"
        base = server.url + "/api/v1"
        tiles = [{"title": "Bench", "metricName": "m0", "kind": "number"}]
        dashboard = session.post(base + "/dashboards", json={"name": "Bench", "tiles": tiles}, timeout=30)
        dashboard.raise_for_status()
        for entity in self.entities:
            body = {"entityType": "event", "name": entity, "dashboardId": dashboard.json()["id"]}
            session.put(f"{base}/entities/{entity}", json=body, timeout=30).raise_for_status()


#: A load generator's configuration larger than this goes through a file: Linux refuses one command-line argument
#: over 128 KiB (MAX_ARG_STRLEN), which 10,000 entity ids exceed ("Argument list too long").
MAX_INLINE_CONFIG_BYTES = 64 * 1024


class LoadGenerator:
    """N Node processes of bench/loadgen holding ``clients`` subscribed websocket connections.

    ``transports`` (``client="socketio"`` only): socket.io-client's, e.g. ``["polling"]``; websocket alone
    unless given. ``keep_alive``: each such client reuses its polling connections, as a browser does.
    """

    def __init__(
        self,
        url,
        token,
        entities,
        clients,
        client="raw",
        batch=200,
        per_process=CLIENTS_PER_GENERATOR,
        offset=0,
        since_seq=None,
        transports=None,
        keep_alive=False,
    ):
        self.procs = []
        self._lines = []
        self._config_files = []
        self.clients = clients
        end = offset + clients
        while offset < end:
            n = min(per_process, end - offset)
            cfg = {
                "url": url,
                "token": token,
                "clients": n,
                "entities": entities,
                "offset": offset,
                "batch": batch,
                "client": client,
                "sinceSeq": since_seq,
            }
            if transports:
                cfg["transports"] = list(transports)
            if keep_alive:
                cfg["keepAlive"] = True
            config = json.dumps(cfg)
            if len(config) > MAX_INLINE_CONFIG_BYTES:  # thousands of entity ids: through a file instead
                fd, path = tempfile.mkstemp(prefix="loadgen-", suffix=".json")
                with os.fdopen(fd, "w") as config_file:
                    config_file.write(config)
                self._config_files.append(path)
                config = "@" + path
            proc = subprocess.Popen(
                [NODE, str(BENCH / "loadgen" / "loadgen.mjs"), config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            CHILDREN.append(proc)
            lines = queue.Queue()
            threading.Thread(target=self._pump, args=(proc, lines), daemon=True).start()
            self.procs.append(proc)
            self._lines.append(lines)
            offset += n

    @staticmethod
    def _pump(proc, lines):
        for line in proc.stdout:
            lines.put(json.loads(line))
        lines.put({"event": "eof"})

    def _expect(self, index, event, timeout):
        msg = self._lines[index].get(timeout=timeout)
        if msg["event"] != event:
            raise RuntimeError(f"load generator {index}: expected {event}, got {msg}")
        return msg

    def wait_ready(self, timeout=600):
        """Wait until every process has connected and subscribed its clients; return the summary."""
        ready = [self._expect(i, "ready", timeout) for i in range(len(self.procs))]
        return {
            "connected": sum(r["connected"] for r in ready),
            "failed": sum(r["failed"] for r in ready),
            "first_error": next((r["firstError"] for r in ready if r["firstError"]), None),
            "seconds": max(r["seconds"] for r in ready),
        }

    def _command(self, cmd, event):
        for proc in self.procs:
            proc.stdin.write(json.dumps({"cmd": cmd}) + "\n")
            proc.stdin.flush()
        return [self._expect(i, event, 60) for i in range(len(self.procs))]

    def reset(self):
        self._command("reset", "reset")

    def report(self):
        """Merged counters and latency histogram of every process."""
        reports = self._command("report", "report")
        buckets = {}
        for r in reports:
            for b, count in r["buckets"]:
                buckets[b] = buckets.get(b, 0) + count
        return {
            "received": sum(r["received"] for r in reports),
            "open": sum(r["open"] for r in reports),
            "disconnects": sum(r["disconnects"] for r in reports),
            "errors": sum(r["errors"] for r in reports),
            "buckets": buckets,
            "bucket_ms": reports[0]["bucketMs"],
        }

    def psutil_procs(self):
        return [psutil.Process(p.pid) for p in self.procs if p.poll() is None]

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "close"}) + "\n")
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for path in self._config_files:
            with suppress(OSError):
                os.remove(path)


def percentiles(buckets, bucket_ms):
    """p50/p95/p99/max in milliseconds from ``{bucket: count}``; None when empty."""
    if not buckets:
        return None
    ordered = sorted(buckets.items())
    total = sum(c for _, c in ordered)
    marks = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
    result = {"n": total}
    seen = 0
    for b, count in ordered:
        seen += count
        for name, q in list(marks.items()):
            if seen >= q * total:
                result[name] = round(b * bucket_ms, 1)
                del marks[name]
    result["max"] = round(ordered[-1][0] * bucket_ms, 1)
    return result


class RestWriter:
    """Writes one metric per ``POST /api/v1/metrics``."""

    mode = "rest"

    def __init__(self, url, token):
        self.url = url + "/api/v1/metrics"
        self.token = token
        self._local = threading.local()

    def write(self, entity_id, metric_name, value):
        self._post({"entityId": entity_id, "metricName": metric_name, "value": value})

    def write_batch(self, points):
        """One request recording ``points``, (entity id, metric name, value) tuples."""
        self._post({"metrics": [{"entityId": e, "metricName": m, "value": v} for e, m, v in points]})

    def _post(self, body):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
        session.post(self.url, json=body, timeout=30).raise_for_status()

    def close(self):
        pass


class DatabaseWriter:
    """Inserts one ``change_log`` row per transaction, as the external-writer contract in docs/database.md says."""

    mode = "database"

    def __init__(self, database_url, tenant_id):
        from sqlalchemy import create_engine, event, text

        self.tenant_id = tenant_id
        self.engine = create_engine(database_url, pool_size=8)
        if database_url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):
                with closing(conn.cursor()) as cursor:
                    cursor.execute("PRAGMA foreign_keys=ON")
                    cursor.execute("PRAGMA busy_timeout=10000")

        self._sql = text(
            "INSERT INTO change_log (tenant_id, kind, entity_id, metric_name, value) "
            "VALUES (:tenant, 'metric', :entity, :metric, :value)"
        )

    def write(self, entity_id, metric_name, value):
        with self.engine.begin() as conn:
            conn.execute(
                self._sql, {"tenant": self.tenant_id, "entity": entity_id, "metric": metric_name, "value": value}
            )

    def close(self):
        self.engine.dispose()


def drive_writes(writer, entities, rate, seconds, threads=8):
    """Write at ``rate`` per second for ``seconds``, round-robin over ``entities``; return what was done.

    Each value is the send time in Unix milliseconds, which the load generator turns into latency.
    Metric names cycle per entity so that no two writes in one poll tick hit the same metric
    (our poller conflates those, which would make deliveries uncountable).
    """
    total = max(1, int(rate * seconds))
    start = time.monotonic() + 0.05
    per_entity = {}
    errors = []
    lock = threading.Lock()

    def worker(k):
        for i in range(k, total, threads):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            entity = entities[i % len(entities)]
            try:
                writer.write(entity, f"m{(i // len(entities)) % 256}", time.time() * 1000.0)
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                per_entity[entity] = per_entity.get(entity, 0) + 1

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - start
    return {"writes": sum(per_entity.values()), "per_entity": per_entity, "seconds": elapsed, "errors": errors[:3]}


def subscribers_per_entity(clients, entities):
    """How many of ``clients`` (assigned round-robin) subscribe to each entity."""
    counts = dict.fromkeys(entities, 0)
    for i in range(clients):
        counts[entities[i % len(entities)]] += 1
    return counts


def command(tool):
    """How bench tool ``tool`` (``bench.<tool>``) was run, for its result record."""
    return " ".join([f".venv/bin/python -m bench.{tool}", *sys.argv[1:]])


def save_result(name, record, stamp=None):
    """Write a result record to bench/results/<name>-<stamp>.json (``stamp``: now) and return its path."""
    path = RESULTS / f"{name}-{stamp or time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def machine():
    """The machine and software the figures were taken on."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node_version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu_model": model,
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": node_version,
        "packages": {
            p: version(p) for p in ("python-socketio", "python-engineio", "gevent", "gevent-websocket", "gunicorn")
        },
        "socket.io (peer)": json.loads((BENCH / "peer" / "node_modules" / "socket.io" / "package.json").read_text())[
            "version"
        ],
        "load_average": os.getloadavg(),
    }
