"""Server CPU per REST metric write (``POST /api/v1/metrics``), with nobody subscribed.

    .venv/bin/python -m bench.ingest --writes 3000 --threads 4
    .venv/bin/python -m bench.ingest --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python -m bench.ingest --writes 6000 --runs 1 --profile

With ``--profile``, py-spy samples the worker during the first run and the summary of
``bench.profile`` (self time by function, inclusive time of its hot-path frames) is written
to bench/results/profile-write-<time>.json, with the collapsed stacks beside it.

Starts ours (one worker; its own SQLite file unless ``--database-url``), registers a few
entities, then posts ``writes`` single-metric writes from ``threads`` threads as fast as
they are answered, and reports the server's CPU milliseconds per write (all its
processes, psutil), writes per second and request latency. Writes
bench/results/ingest-<time>.json.
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench import harness
from bench.profile import summarize


def post_writes(url, token, entities, writes, threads, batch=1):
    """Post ``writes`` requests of ``batch`` metrics each from ``threads`` threads; return each request's seconds."""
    writer = harness.RestWriter(url, token)
    durations = []
    lock = threading.Lock()

    def work(k):
        mine = []
        for n in range(k, writes, threads):
            started = time.perf_counter()
            if batch == 1:
                writer.write(entities[n % len(entities)], f"m{n % 256}", float(n))
            else:
                points = [(entities[(n + j) % len(entities)], f"m{j % 64}", float(n + j)) for j in range(batch)]
                writer.write_batch(points)
            mine.append(time.perf_counter() - started)
        with lock:
            durations.extend(mine)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return durations


def profile_path(stamp, suffix):
    return harness.RESULTS / f"profile-write-{stamp}.{suffix}"


def start_profile(server, stamp):
    """py-spy recording the worker (collapsed stacks) until it is sent SIGINT."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    worker = server.worker_procs()[0].pid
    cmd = [py_spy, "record", "--pid", str(worker), "--rate", "200", "--nonblocking", "--format", "raw"]
    spy = subprocess.Popen([*cmd, "--output", str(profile_path(stamp, "txt"))], stdout=subprocess.DEVNULL)
    harness.CHILDREN.append(spy)
    time.sleep(1)  # py-spy attaches
    return spy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="metrics per request (batch ingestion)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="DATABASE_URL for ours (default: a fresh SQLite file)")
    parser.add_argument("--root", help="serve another checkout's code (git worktree add /tmp/before <commit>)")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the first run")
    args = parser.parse_args()
    harness.install_cleanup()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        server = harness.make_server("ours", tmp, database_url=args.database_url, root=args.root).start()
        try:
            tenant = harness.Tenant(server, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=4)
            post_writes(server.url, tenant.admin_token, tenant.entities, 200, args.threads)  # warm up
            runs = []
            for run in range(args.runs):
                spy = start_profile(server, stamp) if args.profile and run == 0 else None
                database = harness.database_procs() if args.database_url else []
                database_before = harness.cpu_seconds(database)
                cpu_before = harness.cpu_seconds(server.procs())
                started = time.monotonic()
                durations = post_writes(
                    server.url, tenant.admin_token, tenant.entities, args.writes, args.threads, args.batch
                )
                durations.sort()
                elapsed = time.monotonic() - started
                cpu = harness.cpu_seconds(server.procs()) - cpu_before
                database_cpu = harness.cpu_seconds(database) - database_before
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                    spy.wait(timeout=60)
                runs.append(
                    {
                        "cpu_ms_per_write": round(1000 * cpu / args.writes, 3),
                        "points_per_cpu_s": round(args.writes * args.batch / cpu),
                        # PostgreSQL's own processes (its backends run the triggers); 0 on SQLite, which runs in ours.
                        "database_cpu_ms_per_write": round(1000 * database_cpu / args.writes, 3),
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
        "command": harness.command("ingest"),
        "database": "postgresql" if args.database_url else "sqlite",
        "writes": args.writes,
        "threads": args.threads,
        "batch": args.batch,
        "root": args.root,
        "runs": runs,
        "median": median,
        "machine": harness.machine(),
    }
    path = harness.save_result("ingest", result, stamp)
    if args.profile:
        raw = profile_path(stamp, "txt")
        summary = {"command": result["command"], "collapsed": str(raw.relative_to(harness.ROOT)), **summarize(raw)}
        profile_path(stamp, "json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: summary[k] for k in ("samples", "inclusive_pct", "top_self_pct")}, indent=2))
    print(json.dumps(median))
    print(path)


if __name__ == "__main__":
    main()
