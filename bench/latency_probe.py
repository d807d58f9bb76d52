"""Write-to-client latency of one server: REST writes and direct database writes.

Starts a real gunicorn server (one gevent worker, SQLite) like the test suite
does, subscribes N python-socketio websocket clients to one entity, writes
values one at a time and records, for every client, the time from the write to
the receipt of its ``metric:update``. Prints JSON with percentiles.

    .venv/bin/python -m bench.latency_probe --clients 100 --writes 200

The clients run in this process (threads), so at high client counts they, not
the server, may set the pace: compare runs of the same setup only.
"""

import argparse
import json
import platform
import sqlite3
import tempfile
import threading
import time
from contextlib import closing

from testkit import Api, RecordingClient, mint_token, running_server, unique


def percentiles(samples):
    """p50/p95/p99/max in milliseconds."""
    ordered = sorted(samples)

    def pick(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": pick(1.0)}


def run(clients, writes, poll_interval):
    """Measure one configuration; return a dict of results."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(tmp, POLL_INTERVAL=poll_interval, LOG_LEVEL="WARNING") as server,
    ):
        tenant = unique("bench")
        api = Api(server.url, mint_token(tenant, roles=("ingest", "admin")))
        api.put_entity("event-1", "event", api.create_dashboard()["id"])
        receivers = [RecordingClient().connect(server.url, mint_token(tenant)) for _ in range(clients)]
        arrivals = {}  # value -> list of arrival times
        lock = threading.Lock()
        for receiver in receivers:

            def on_update(data):
                with lock:
                    arrivals.setdefault(data["value"], []).append(time.perf_counter())

            receiver.client.on("metric:update", on_update, namespace="/dashboard")
            receiver.subscribe("event-1")

        results = {}
        db_path = server.database_path
        for mode in ("rest", "database"):
            sent = {}
            base = 1_000_000 if mode == "database" else 0
            with closing(sqlite3.connect(db_path, timeout=10)) as conn:
                for i in range(writes):
                    value = float(base + i)
                    start = time.perf_counter()
                    if mode == "rest":
                        api.ingest(("event-1", "probe", value))
                    else:
                        with conn:
                            conn.execute(
                                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
                                (tenant, "event-1", "probe", value),
                            )
                    sent[value] = start
                    # One write in flight at a time: wait until every client has it.
                    deadline = time.monotonic() + 10
                    while len(arrivals.get(value, ())) < clients and time.monotonic() < deadline:
                        time.sleep(0.0005)
            latencies = [t - sent[v] for v, times in arrivals.items() if v in sent for t in times]
            delivered = sum(len(arrivals.get(v, ())) for v in sent)
            results[mode] = {**percentiles(latencies), "delivered": delivered, "expected": clients * writes}
        for receiver in receivers:
            receiver.disconnect()
        return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--poll-interval", default="0.1")
    args = parser.parse_args()
    report = {
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version()},
        "clients": args.clients,
        "writes": args.writes,
        "poll_interval_s": float(args.poll_interval),
        "results_ms": run(args.clients, args.writes, args.poll_interval),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
