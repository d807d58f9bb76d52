"""Benchmark scenarios of issue 5, against analytics-svc ("ours") and the Node.js reference ("peer").

    .venv/bin/python -m bench.run --profile quick            # make bench: a few minutes
    .venv/bin/python -m bench.run --profile full             # make bench-full
    .venv/bin/python -m bench.run --profile smoke            # make bench-smoke: seconds, checks the tools
    .venv/bin/python -m bench.run --scenarios fanout --servers ours,peer

Each scenario runs ours and the peer in the same run, so compare their ratio rather than
absolute figures across runs. Fan-out holds both at once and measures them in turn, window
by window, so that the shared machine's drift falls on both alike. Results go to
bench/results/<profile>-<time>.json; ``python -m bench.render`` turns them into
docs/benchmarks.md and its plots.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import harness
from bench.harness import LoadGenerator, RestWriter, Tenant, make_server

RESULTS = harness.RESULTS
CLIENT = "raw"  # load-generator client, --client

PROFILES = {
    "smoke": {
        "runs": 1,
        "capacity": {"steps": [50]},
        "fanout": {"clients": 40, "entities": 2, "rates": [20], "seconds": 1.0},
        "latency": {"subscribers": [20], "rate": 10, "seconds": 1.0, "modes": ["rest", "database"]},
        "pollcost": {"rows": [1000, 5000], "subscriptions": [0, 100], "ticks": 5},
        "workers": {"workers": [1, 2], "clients": 40, "entities": 2, "rate": 10, "seconds": 1.0},
    },
    "quick": {
        "runs": 3,
        "capacity": {"steps": [1000, 2500]},
        "fanout": {"clients": 1000, "entities": 2, "rates": [10, 20, 40, 80, 160, 320], "seconds": 3.0},
        "latency": {"subscribers": [100, 1000], "rate": 5, "seconds": 4.0, "modes": ["rest", "database"]},
        "pollcost": {"rows": [10_000, 100_000], "subscriptions": [0, 1000, 10_000], "ticks": 30},
        "workers": {"workers": [1, 2], "clients": 1000, "entities": 2, "rate": 40, "seconds": 3.0},
    },
    "full": {
        "runs": 3,
        "capacity": {"steps": [1000, 5000, 10_000, 15_000]},
        "fanout": {"clients": 2000, "entities": 4, "rates": [10, 20, 40, 80, 160, 320, 640], "seconds": 5.0},
        "latency": {"subscribers": [100, 1000, 5000], "rate": 5, "seconds": 6.0, "modes": ["rest", "database"]},
        "pollcost": {"rows": [10_000, 100_000, 1_000_000], "subscriptions": [0, 1000, 10_000], "ticks": 50},
        "workers": {"workers": [1, 2], "clients": 2000, "entities": 4, "rate": 80, "seconds": 5.0},
    },
}
DEFAULT_SCENARIOS = {
    "smoke": "capacity,fanout,latency,pollcost",
    "quick": "capacity,fanout,latency,pollcost",
    "full": "capacity,fanout,latency,pollcost,workers",
}


def median_of(runs):
    """Median of every numeric field over ``runs`` (dicts of the same shape); other fields from the first."""
    merged = {}
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(value, bool) or not all(isinstance(v, int | float) for v in values):
            merged[key] = median_of([v for v in values if v]) if isinstance(value, dict) and all(values) else value
        else:
            merged[key] = round(statistics.median(values), 3)
    return merged


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


class Session:
    """One server, one tenant and its entities, and the load generator connected to it."""

    def __init__(self, server_name, tmp, entities, workers=1, database_url=None, root=None, **env):
        server = make_server(server_name, tmp, workers=workers, database_url=database_url, root=root, **env)
        self.server = server.start()
        self.tenant = Tenant(self.server, "bench-tenant", entities)
        self.generators = []

    def connect(self, clients, client=None):
        """Connect and subscribe ``clients`` more, one generator process after the other (each connects
        in batches of 200), so the server never sees more than 200 handshakes at once."""
        total = {"connected": 0, "failed": 0, "first_error": None, "seconds": 0.0}
        while clients > 0:
            n = min(clients, harness.CLIENTS_PER_GENERATOR)
            offset = sum(g.clients for g in self.generators)
            tenant = self.tenant
            gen = LoadGenerator(
                self.server.url, tenant.client_token, tenant.entities, n, client=client or CLIENT, offset=offset
            )
            self.generators.append(gen)
            ready = gen.wait_ready()
            total["connected"] += ready["connected"]
            total["failed"] += ready["failed"]
            total["first_error"] = total["first_error"] or ready["first_error"]
            total["seconds"] += ready["seconds"]
            clients -= n
        if total["failed"]:
            log(f"  {total['failed']} connections failed: {total['first_error']}")
        return total

    def reset(self):
        for gen in self.generators:
            gen.reset()

    def report(self):
        reports = [gen.report() for gen in self.generators]
        buckets = {}
        for r in reports:
            for b, count in r["buckets"].items():
                buckets[b] = buckets.get(b, 0) + count
        return {
            "received": sum(r["received"] for r in reports),
            "open": sum(r["open"] for r in reports),
            "errors": sum(r["errors"] for r in reports),
            "latency_ms": harness.percentiles(buckets, reports[0]["bucket_ms"]),
        }

    def generator_procs(self):
        return [p for gen in self.generators for p in gen.psutil_procs()]

    def writer(self, mode):
        if mode == "rest":
            return RestWriter(self.server.url, self.tenant.admin_token)
        return harness.DatabaseWriter(self.server.database_url, self.tenant.tenant_id)

    def close(self):
        for gen in self.generators:
            gen.close()
        self.server.stop()


def measure_window(session, writer, rate, seconds, clients):
    """Drive writes for ``seconds`` and wait for the deliveries; return what was delivered and what it cost."""
    counts = harness.subscribers_per_entity(clients, session.tenant.entities)
    session.reset()
    server_procs, gen_procs = session.server.procs(), session.generator_procs()
    me = [harness.psutil.Process()]
    cpu0 = harness.cpu_seconds(server_procs), harness.cpu_seconds(gen_procs), harness.cpu_seconds(me)
    t0 = time.monotonic()
    done = harness.drive_writes(writer, session.tenant.entities, rate, seconds)
    expected = sum(n * counts[e] for e, n in done["per_entity"].items())
    # Drain: wait until everything arrived, or nothing more arrives for a second (max 10 s).
    deadline, last, still = time.monotonic() + 10, -1, time.monotonic()
    while time.monotonic() < deadline:
        received = session.report()["received"]
        if received >= expected:
            break
        if received != last:
            last, still = received, time.monotonic()
        elif time.monotonic() - still > 1.0:
            break
        time.sleep(0.2)
    report = session.report()
    wall = time.monotonic() - t0
    server_cpu = harness.cpu_seconds(server_procs) - cpu0[0]
    gen_cpu = harness.cpu_seconds(gen_procs) - cpu0[1]
    writer_cpu = harness.cpu_seconds(me) - cpu0[2]
    received = report["received"]
    return {
        "rate_target": rate,
        "writes": done["writes"],
        "write_rate": round(done["writes"] / done["seconds"], 1),
        "write_errors": len(done["errors"]),
        "expected": expected,
        "received": received,
        "delivered_ratio": round(received / expected, 4) if expected else None,
        "msgs_per_s": round(received / done["seconds"], 1),
        "server_cpu_cores": round(server_cpu / wall, 3),
        "msgs_per_server_cpu_s": round(received / server_cpu, 1) if server_cpu > 0 else None,
        "generator_cpu_cores": round(gen_cpu / wall, 3),
        "writer_cpu_cores": round(writer_cpu / wall, 3),
        "latency_ms": report["latency_ms"],
        "first_error": done["errors"][0] if done["errors"] else None,
    }


def keeps_up(point):
    """Delivery kept up: (nearly) every message arrived, writes went at the asked rate, p99 under a second."""
    latency = point.get("latency_ms") or {}
    return (
        (point.get("delivered_ratio") or 0) >= 0.98
        and point["write_rate"] >= 0.9 * point["rate_target"]
        and latency.get("p99", 1e9) < 1000
    )


def scenario_capacity(server_name, cfg, opts):
    """Idle subscribed websocket connections held by one worker, and server RSS per connection."""
    steps = []
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(server_name, tmp, entities=10, database_url=opts.database_url)
        try:
            workers = session.server.worker_procs()
            time.sleep(1)
            base_rss = harness.rss_bytes(workers)
            held = 0
            for target in cfg["steps"]:
                t0 = time.monotonic()
                ready = session.connect(target - held)
                connect_s = time.monotonic() - t0
                held += ready["connected"]
                time.sleep(2)
                rss = harness.rss_bytes(workers)
                gen_rss = harness.rss_bytes(session.generator_procs())
                cpu0 = harness.cpu_seconds(workers)
                time.sleep(3)
                idle_cpu = (harness.cpu_seconds(workers) - cpu0) / 3
                t1 = time.monotonic()
                healthy = requests.get(session.server.url + "/healthz", timeout=30).status_code == 200
                health_ms = (time.monotonic() - t1) * 1000
                # One write per entity reaches every held connection?
                session.reset()
                writer = session.writer("rest")
                t2 = time.monotonic()
                for entity in session.tenant.entities:
                    writer.write(entity, "capacity", time.time() * 1000.0)
                deadline, received = time.monotonic() + 30, 0
                while time.monotonic() < deadline:
                    received = session.report()["received"]
                    if received >= held:
                        break
                    time.sleep(0.1)
                broadcast_s = time.monotonic() - t2
                step = {
                    "target": target,
                    "held": held,
                    "failed": ready["failed"],
                    "connect_seconds": round(connect_s, 2),
                    "connects_per_s": round(ready["connected"] / connect_s, 1),
                    "server_rss_mib": round(rss / 2**20, 1),
                    "server_rss_base_mib": round(base_rss / 2**20, 1),
                    "server_kib_per_connection": round((rss - base_rss) / held / 1024, 1) if held else None,
                    "generator_rss_mib": round(gen_rss / 2**20, 1),
                    "idle_server_cpu_cores": round(idle_cpu, 3),
                    "healthz_ms": round(health_ms, 1),
                    "healthy": healthy,
                    "broadcast_delivered": received,
                    "broadcast_seconds": round(broadcast_s, 2),
                }
                log(f"  {server_name} capacity {step}")
                steps.append(step)
                if ready["failed"] or received < held:
                    break  # it no longer holds
        finally:
            session.close()
    return {"steps": steps}


def scenario_fanout(server_names, cfg, opts, workers=1, roots=None, writes="rest", **env):
    """N clients over E entities on each server, writes at rising rates until delivery falls behind.

    The servers are held at once and measured in turn, one window each, ``opts.runs`` rounds per
    rate (the order reversed every round): the shared machine's speed drifts within minutes, and
    this way the drift falls on every server alike. Each server's CPU counts its own processes
    only; the others sit idle meanwhile (ours at 1,000 to 5,000 held: under 1% of a core).

    A name other than ``ours`` and ``peer`` is ours run from the checkout ``roots[name]`` (bench.ab).
    ``writes="database"`` feeds ours by rows written straight into its database (the peer, which
    has none, still takes REST writes).
    """
    points = {name: [] for name in server_names}
    with contextlib.ExitStack() as stack:
        held = {}
        for name in server_names:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            kind, root = ("peer", None) if name == "peer" else ("ours", (roots or {}).get(name))
            session = Session(kind, tmp, cfg["entities"], workers, opts.database_url, root=root, **env)
            stack.callback(session.close)
            writer = session.writer("rest" if kind == "peer" else writes)
            stack.callback(writer.close)
            held[name] = (session, writer, session.connect(cfg["clients"])["connected"])
        active = list(server_names)
        for rate in cfg.get("rates", [cfg.get("rate")]):
            runs = {name: [] for name in active}
            for k in range(opts.runs):
                for name in active if k % 2 == 0 else active[::-1]:
                    session, writer, clients = held[name]
                    runs[name].append(measure_window(session, writer, rate, cfg["seconds"], clients))
            for name in active:
                point = median_of(runs[name])
                point["runs"] = len(runs[name])
                point["keeps_up"] = keeps_up(point)
                log(
                    f"  {name} fanout rate={rate}/s msgs/s={point['msgs_per_s']} "
                    f"ratio={point['delivered_ratio']} cpu={point['server_cpu_cores']} "
                    f"msgs/cpu-s={point['msgs_per_server_cpu_s']} gen={point['generator_cpu_cores']} "
                    f"p99={(point['latency_ms'] or {}).get('p99')}"
                )
                points[name].append(point)
            # Two rates in a row fell behind: one alone may be noise from the shared machine.
            active = [n for n in active if len(points[n]) < 2 or points[n][-1]["keeps_up"] or points[n][-2]["keeps_up"]]
            if not active:
                break
        clients = {name: held[name][2] for name in server_names}
    return {
        name: {
            "clients": clients[name],
            "entities": cfg["entities"],
            "workers": workers,
            "measured_in_turn": server_names,  # one window each, in turn (older results: one server after the other)
            "points": points[name],
        }
        for name in server_names
    }


#: Databases the latency scenario can run ours on (``--databases``), with the environment each needs.
DATABASES = {
    "sqlite": {},
    "postgresql-poll": {"CHANGE_NOTIFY": "0"},
    "postgresql-notify": {"CHANGE_NOTIFY": "1"},
}


@contextlib.contextmanager
def database_for(server_name, variant, opts):
    """``(DATABASE_URL or None, extra environment)`` for one server on ``variant``; a fresh PostgreSQL database."""
    if server_name != "ours" or variant == "sqlite":
        yield opts.database_url, {}
        return
    from testkit import postgres_database

    with postgres_database() as url:
        yield url, DATABASES[variant]


def scenario_latency(server_name, cfg, opts):
    """Write -> client latency percentiles at a steady write rate, all subscribers on one entity."""
    rows = []
    variants = opts.databases if server_name == "ours" else ["none"]
    for variant in variants:
        for subscribers in cfg["subscribers"]:
            with tempfile.TemporaryDirectory() as tmp, database_for(server_name, variant, opts) as (url, env):
                session = Session(server_name, tmp, entities=1, database_url=url, **env)
                try:
                    ready = session.connect(subscribers)
                    for mode in cfg["modes"]:
                        if mode == "database" and server_name != "ours":
                            continue  # the peer has no database
                        writer = session.writer(mode)
                        runs = [
                            measure_window(session, writer, cfg["rate"], cfg["seconds"], ready["connected"])
                            for _ in range(opts.runs)
                        ]
                        writer.close()
                        row = median_of(runs)
                        row.update(subscribers=ready["connected"], mode=mode, runs=len(runs), database=variant)
                        log(f"  {server_name} latency {variant} subs={subscribers} {mode} {row['latency_ms']}")
                        rows.append(row)
                finally:
                    session.close()
    return {"rate": cfg["rate"], "database": ",".join(variants), "rows": rows}


def scenario_workers(server_name, cfg, opts):
    """Fan-out with 1 and 2 gunicorn workers (ours only).

    With ``--redis-url`` the workers use python-socketio's Redis manager; either way each
    worker polls the database and serves its own sockets.
    """
    if server_name != "ours":
        return None
    env = {"REDIS_URL": opts.redis_url} if opts.redis_url else {}
    results = []
    for workers in cfg["workers"]:
        one_rate = {**cfg, "rates": [cfg["rate"]]}
        results.append(scenario_fanout([server_name], one_rate, opts, workers=workers, **env)[server_name])
    queue = "redis" if opts.redis_url else "none (each worker polls the database)"
    return {"message_queue": queue, "runs": results}


def scenario_pollcost(cfg, opts):
    """Poll cost as the change log grows (a subprocess of its own: it imports the app)."""
    import subprocess

    args = [
        sys.executable,
        "-m",
        "bench.pollcost",
        "--rows",
        ",".join(map(str, cfg["rows"])),
        "--subscriptions",
        ",".join(map(str, cfg["subscriptions"])),
        "--ticks",
        str(cfg["ticks"]),
    ]
    proc = subprocess.run(args, cwd=harness.ROOT, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--scenarios", help="comma-separated: capacity,fanout,latency,pollcost,workers")
    parser.add_argument("--servers", default="ours,peer")
    parser.add_argument("--runs", type=int, help="repeats of each measurement (median reported)")
    parser.add_argument("--database-url", help="DATABASE_URL for ours (default: a fresh SQLite file per server)")
    parser.add_argument(
        "--databases",
        default="sqlite",
        type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        help=f"latency scenario: databases to run ours on, comma-separated, of {', '.join(DATABASES)}"
        " (PostgreSQL: a fresh database on TEST_POSTGRES_URL's server)",
    )
    parser.add_argument(
        "--client", choices=("raw", "socketio"), default="raw", help="load-generator client (default: raw over ws)"
    )
    parser.add_argument("--redis-url", help="REDIS_URL for ours in the workers scenario")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        help="fan-out scenario: write rates to measure, comma-separated (default: the profile's)",
    )
    parser.add_argument("--out", help="results file (default bench/results/<profile>-<time>.json)")
    opts = parser.parse_args()
    profile = PROFILES[opts.profile]
    if opts.rates:
        profile = {**profile, "fanout": {**profile["fanout"], "rates": opts.rates}}
    opts.runs = opts.runs or profile["runs"]
    global CLIENT
    CLIENT = opts.client
    scenarios = (opts.scenarios or DEFAULT_SCENARIOS[opts.profile]).split(",")
    servers = opts.servers.split(",")
    fd_limit = harness.install_cleanup()
    results = {
        "profile": opts.profile,
        "command": harness.command("run"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": harness.machine(),
        "open_files_limit": fd_limit,
        "runs_per_point": opts.runs,
        "client": opts.client,
        "config": {s: profile[s] for s in scenarios},
        "scenarios": {},
    }
    started = time.monotonic()
    for scenario in scenarios:
        log(f"scenario {scenario}")
        if scenario == "pollcost":
            results["scenarios"][scenario] = scenario_pollcost(profile[scenario], opts)
            continue
        if scenario == "fanout":  # all servers at once, measured in turn
            results["scenarios"][scenario] = scenario_fanout(servers, profile[scenario], opts)
            continue
        run = globals()[f"scenario_{scenario}"]
        results["scenarios"][scenario] = {name: run(name, profile[scenario], opts) for name in servers}
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = Path(opts.out) if opts.out else RESULTS / f"{opts.profile}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out} in {results['seconds']} s")
    print(out)


if __name__ == "__main__":
    main()
