"""Admission: server CPU and wall time to connect and subscribe many websocket clients at once, against the peer.

    .venv/bin/python -m bench.admission --clients 10000 --entities 100 --rounds 2
    .venv/bin/python -m bench.admission --root /path/to/another/checkout   # that checkout's code as "before"

For each server in turn (the order reversed every round): start it (ours: one worker, its own
SQLite file; with ``--root``, also ours from that checkout; the Node.js peer), register
``entities`` entities, then let the load generator (raw Socket.IO client, batches of 200 per
process) connect ``clients`` websockets, each subscribing to one entity
(``clients / entities`` per entity), and measure the server's CPU (every process) and the wall
time until every client has its snapshot. With ``--rate``, a REST writer puts that many
values a second (round robin over the entities) during the storm, as a live system would, so
that snapshots go stale while clients subscribe; its writes and their fan-out count in the
server's CPU. Writes bench/results/admission-<time>.json.
"""

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid

from bench import harness


def write_until(stop, url, token, entities, rate):
    """Write one value every 1/``rate`` seconds, round robin over ``entities``, until ``stop`` is set."""
    writer = harness.RestWriter(url, token)
    n = 0
    while not stop.wait(1 / rate):
        writer.write(entities[n % len(entities)], f"m{n % 7}", float(n))
        n += 1
    writer.close()


def admit(name, root, clients, entities, rate=0):
    """One storm against a fresh server: ``{cpu_s, ms_per_socket, seconds, connected}``."""
    with tempfile.TemporaryDirectory() as tmp:
        server = harness.make_server(name, tmp, root=root).start()
        try:
            tenant = harness.Tenant(server, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=entities)
            time.sleep(1)  # let start-up work settle
            stop = threading.Event()
            writer = threading.Thread(
                target=write_until, args=(stop, server.url, tenant.admin_token, tenant.entities, rate), daemon=True
            )
            cpu_before = harness.cpu_seconds(server.procs())
            started = time.monotonic()
            if rate:
                writer.start()
            load = harness.LoadGenerator(server.url, tenant.client_token, tenant.entities, clients)
            try:
                ready = load.wait_ready()
                wall = time.monotonic() - started
                cpu = harness.cpu_seconds(server.procs()) - cpu_before
            finally:
                stop.set()
                if rate:
                    writer.join(timeout=30)
                load.close()
        finally:
            server.stop()
    return {
        "connected": ready["connected"],
        "failed": ready["failed"],
        "cpu_s": round(cpu, 2),
        "ms_per_socket": round(1000 * cpu / clients, 3),
        "seconds": round(wall, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", help="another checkout, measured as ours-before beside this one")
    parser.add_argument("--rate", type=float, default=0, help="REST writes per second during the storm")
    args = parser.parse_args()
    harness.install_cleanup()
    servers = [("ours", None, "ours")]
    if args.root:
        servers.append(("ours", args.root, "ours-before"))
    servers.append(("peer", None, "peer"))
    result = {"command": harness.command("admission"), "machine": harness.machine()}
    runs = {label: [] for _, _, label in servers}
    for round_ in range(args.rounds):
        for name, root, label in servers if round_ % 2 == 0 else servers[::-1]:
            run = admit(name, root, args.clients, args.entities, args.rate)
            runs[label].append(run)
            print(f"{label:>11} round {round_}: {json.dumps(run)}", flush=True)
    result["runs"] = runs
    result["median_ms_per_socket"] = {
        label: statistics.median(r["ms_per_socket"] for r in rs) for label, rs in runs.items()
    }
    path = harness.save_result("admission", result)
    print(json.dumps(result["median_ms_per_socket"]))
    print(path)


if __name__ == "__main__":
    main()
