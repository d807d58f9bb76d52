"""What a server costs doing nothing: CPU of ours and of the peer holding idle subscribed sockets, no writes.

    .venv/bin/python -m bench.idle --clients 0,1000,5000 --seconds 30

For each count (one socket per entity), starts ours (one worker, SQLite) and then the peer,
connects and subscribes the sockets, waits for them to settle, and reads each server
process's CPU over ``seconds`` of doing nothing but heartbeats and its own background work
(ours: the poller's rounds, the socket gauges, the watches). At 5 writes a second this is most
of what the fan-out grid's cells measure. Writes bench/results/idle-<time>.json.
"""

import argparse
import tempfile
import time

from bench import harness
from bench.run import Session, log

SETTLE_SECONDS = 3


def idle_cpu(kind, clients, seconds):
    """Percent of a core each of ``kind``'s server processes spent over ``seconds`` holding ``clients`` idle."""
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(kind, tmp, max(1, clients), 1, None)
        try:
            held = session.connect(clients)["connected"] if clients else 0
            time.sleep(SETTLE_SECONDS)
            procs = session.server.procs()
            before = [harness.cpu_seconds([p]) for p in procs]
            started = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - started
            shares = [round(100 * (harness.cpu_seconds([p]) - b) / wall, 3) for p, b in zip(procs, before, strict=True)]
        finally:
            session.close()
    return {"server": kind, "clients": held, "percent_of_a_core": round(sum(shares), 3), "per_process": shares}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="0,1000", type=lambda t: [int(v) for v in t.split(",") if v.strip()])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    harness.install_cleanup()
    rows = []
    for clients in args.clients:
        for kind in ("ours", "peer"):
            rows.append(idle_cpu(kind, clients, args.seconds))
            log(f"  {kind} {rows[-1]['clients']} idle sockets: {rows[-1]['percent_of_a_core']}% of a core")
    record = {
        "command": harness.command("idle"),
        "seconds": args.seconds,
        "rows": rows,
        "machine": harness.machine(),
    }
    print(harness.save_result("idle", record))


if __name__ == "__main__":
    main()
