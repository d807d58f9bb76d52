"""A reconnect storm after a worker restart: clients resuming from a seq against the same clients taking a snapshot.

    .venv/bin/python -m bench.resume --clients 5000 --entities 50 --behind 30

Starts ours (one worker, SQLite unless ``--database-url``), registers ``entities`` entities on one
dashboard, notes the position, then writes for ``behind`` seconds at 10 writes per second (5
metrics per entity, round robin), so that every client is that far behind. Then, for each mode in
turn, twice: restarts the server and connects all ``clients`` at once (one batch per load-generator
process), each subscribing to one entity, with ``sinceSeq`` (resume) or without (snapshot), and
measures the server's CPU seconds and the wall time until every client has its answer.
Writes bench/results/resume-<time>.json.
"""

import argparse
import json
import tempfile
import time
import uuid

import requests

from bench import harness


def storm(server, tenant, clients, since_seq):
    cpu_before = harness.cpu_seconds(server.procs())
    started = time.monotonic()
    load = harness.LoadGenerator(
        server.url,
        tenant.client_token,
        tenant.entities,
        clients,
        batch=harness.CLIENTS_PER_GENERATOR,
        since_seq=since_seq,
    )
    try:
        ready = load.wait_ready()
        wall = time.monotonic() - started
        cpu = harness.cpu_seconds(server.procs()) - cpu_before
    finally:
        load.close()
    return {
        "connected": ready["connected"],
        "failed": ready["failed"],
        "seconds": round(wall, 2),
        "server_cpu_s": round(cpu, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--entities", type=int, default=50)
    parser.add_argument("--behind", type=float, default=30)
    parser.add_argument("--database-url", help="DATABASE_URL for ours (default: a fresh SQLite file)")
    args = parser.parse_args()
    harness.install_cleanup()
    result = {"command": harness.command("resume"), "machine": harness.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        server = harness.make_server("ours", tmp, database_url=args.database_url).start()
        try:
            tenant = harness.Tenant(server, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=args.entities)
            writer = harness.RestWriter(server.url, tenant.admin_token)
            first = requests.post(
                server.url + "/api/v1/metrics",
                json={"entityId": tenant.entities[0], "metricName": "m0", "value": 0.0},
                headers={"Authorization": f"Bearer {tenant.admin_token}"},
                timeout=30,
            )
            since = first.json()["lastSeq"]  # where every client left off
            deadline = time.monotonic() + args.behind
            n = 0
            while time.monotonic() < deadline:
                n += 1
                writer.write(tenant.entities[n % len(tenant.entities)], f"m{n % 5}", float(n))
                time.sleep(0.1)
            result["writes_behind"] = n
            runs = []
            for _ in range(2):
                for mode, since_seq in (("snapshot", None), ("resume", since)):
                    server.stop()
                    server.start()
                    run = storm(server, tenant, args.clients, since_seq)
                    run["mode"] = mode
                    print(json.dumps(run), flush=True)
                    runs.append(run)
            result["runs"] = runs
        finally:
            server.stop()
    print(harness.save_result("resume", result))


if __name__ == "__main__":
    main()
