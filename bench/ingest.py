"""Server CPU per REST metric write (``POST /api/v1/metrics``), with nobody subscribed.

    .venv/bin/python -m bench.ingest --writes 3000 --threads 4
    .venv/bin/python -m bench.ingest --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

Starts ours (one worker; its own SQLite file unless ``--database-url``), registers a few
entities, then posts ``writes`` single-metric writes from ``threads`` threads as fast as
they are answered, and reports the server's CPU milliseconds per write (all its
processes, psutil), writes per second and request latency. Writes
bench/results/ingest-<time>.json.
"""

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid

from bench import harness


def post_writes(url, token, entities, writes, threads):
    """Post ``writes`` writes from ``threads`` threads; return each request's seconds."""
    writer = harness.RestWriter(url, token)
    durations = []
    lock = threading.Lock()

    def work(k):
        mine = []
        for n in range(k, writes, threads):
            started = time.perf_counter()
            writer.write(entities[n % len(entities)], f"m{n % 256}", float(n))
            mine.append(time.perf_counter() - started)
        with lock:
            durations.extend(mine)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return durations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="DATABASE_URL for ours (default: a fresh SQLite file)")
    args = parser.parse_args()
    harness.install_cleanup()

    with tempfile.TemporaryDirectory() as tmp:
        server = harness.make_server("ours", tmp, database_url=args.database_url).start()
        try:
            tenant = harness.Tenant(server, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=4)
            post_writes(server.url, tenant.admin_token, tenant.entities, 200, args.threads)  # warm up
            runs = []
            for _ in range(args.runs):
                cpu_before = harness.cpu_seconds(server.procs())
                started = time.monotonic()
                durations = post_writes(server.url, tenant.admin_token, tenant.entities, args.writes, args.threads)
                durations.sort()
                elapsed = time.monotonic() - started
                cpu = harness.cpu_seconds(server.procs()) - cpu_before
                runs.append(
                    {
                        "cpu_ms_per_write": round(1000 * cpu / args.writes, 3),
                        "writes_per_s": round(args.writes / elapsed, 1),
                        "server_cpu_cores": round(cpu / elapsed, 3),
                        "p50_ms": round(1000 * durations[len(durations) // 2], 2),
                        "p99_ms": round(1000 * durations[int(len(durations) * 0.99)], 2),
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
        finally:
            server.stop()

    median = {key: sorted(run[key] for run in runs)[len(runs) // 2] for key in runs[0]}
    result = {
        "command": " ".join([".venv/bin/python -m bench.ingest", *sys.argv[1:]]),
        "database": "postgresql" if args.database_url else "sqlite",
        "writes": args.writes,
        "threads": args.threads,
        "runs": runs,
        "median": median,
        "machine": harness.machine(),
    }
    path = harness.BENCH / "results" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(median))
    print(path)


if __name__ == "__main__":
    main()
