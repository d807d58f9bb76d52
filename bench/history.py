"""History queries with 10 million rows, and what a pruning run of 1 million rows costs writers and pollers.

    .venv/bin/python -m bench.history                         # SQLite
    .venv/bin/python -m bench.history --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

1. Fills ``metric_points`` with ``--rows`` rows (one series of a point a second over the
   last day, the rest spread over other series) and their 1-minute rollups, straight in
   SQL, then times ``GET .../history?from=<a day ago>&step=60`` (rollups) and a raw page
   (``limit=1000``) ``--queries`` times each, sequentially: p50 and p99.
2. Adds ``--prune-rows`` raw points older than HISTORY_RETENTION, starts one server with
   retention every second, and measures REST writes from 4 threads (request latency) and
   poll ticks (``analytics_poll_duration_seconds`` from ``/metrics``) while the run prunes
   them, against the same measure with nothing to prune.

Writes bench/results/history-<time>.json.
"""

import argparse
import json
import math
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa

from bench import harness
from testkit.clients import scrape_metrics

DAY_MS = 86_400_000
SERIES = "latency"


def fill(engine, tenant, rows, now_ms):
    """``rows`` points: the queried series a point a second over the last day, the rest in 99 other series."""
    per_other = max(0, (rows - 86_400) // 99)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "INSERT INTO metric_points (tenant_id, entity_id, metric_name, t, seq, value) "
                    "SELECT :tenant, 'bench-entity-0', CASE WHEN g < 86400 THEN :series ELSE 'other-' || (g % 99) END, "
                    ":now - CASE WHEN g < 86400 THEN g * 1000 ELSE (g % 86400) * 1000 + g % 997 END, "
                    "1000000000 + g, (g % 1000)::float FROM generate_series(0, :last) g"
                ),
                {"tenant": tenant, "series": SERIES, "now": now_ms, "last": 86_400 + per_other * 99 - 1},
            )
        else:
            conn.execute(
                sa.text(
                    "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < :last) "
                    "INSERT INTO metric_points (tenant_id, entity_id, metric_name, t, seq, value) "
                    "SELECT :tenant, 'bench-entity-0', CASE WHEN n < 86400 THEN :series ELSE 'other-' || (n % 99) END, "
                    ":now - CASE WHEN n < 86400 THEN n * 1000 ELSE (n % 86400) * 1000 + n % 997 END, "
                    "1000000000 + n, CAST(n % 1000 AS REAL) FROM g"
                ),
                {"tenant": tenant, "series": SERIES, "now": now_ms, "last": 86_400 + per_other * 99 - 1},
            )
        minute = "t / 60000"
        conn.execute(
            sa.text(
                "INSERT INTO metric_rollups (tenant_id, entity_id, metric_name, minute, min_value, max_value, "
                "sum_value, point_count, last_value, last_t, last_seq) "
                f"SELECT tenant_id, entity_id, metric_name, {minute}, min(value), max(value), sum(value), count(*), "
                "max(value), max(t), max(seq) FROM metric_points WHERE tenant_id = :tenant "
                f"GROUP BY tenant_id, entity_id, metric_name, {minute}"
            ),
            {"tenant": tenant},
        )
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
        return conn.scalar(sa.text("SELECT count(*) FROM metric_points"))


def time_queries(url, token, path, count):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.get(url + path, timeout=60).raise_for_status()  # warm
    durations = []
    points = 0
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url + path, timeout=60)
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
        points = len(response.json()["points"])
    durations.sort()
    return {
        "p50_ms": round(1000 * durations[len(durations) // 2], 2),
        "p99_ms": round(1000 * durations[min(len(durations) - 1, int(len(durations) * 0.99))], 2),
        "points": points,
    }


def poll_ticks(url):
    """``(count, {le: cumulative count})`` of the poll-duration histogram."""
    samples = scrape_metrics(url)
    buckets = {}
    count = 0
    for (name, labels), value in samples.items():
        if name == "analytics_poll_duration_seconds_bucket":
            buckets[dict(labels)["le"]] = value
        elif name == "analytics_poll_duration_seconds_count":
            count = value
    return count, buckets


def tick_p99(before, after):
    """The 99th percentile bucket bound of the poll ticks between two scrapes."""
    total = after[0] - before[0]
    if not total:
        return None
    for le in sorted(after[1], key=lambda b: math.inf if b == "+Inf" else float(b)):
        if after[1][le] - before[1].get(le, 0) >= 0.99 * total:
            return le
    return "+Inf"


def add_old_points(engine, tenant, rows, t):
    """``rows`` points of series ``old-*`` at time ``t`` (older than HISTORY_RETENTION): what a run will prune."""
    generate = (
        "SELECT g AS n FROM generate_series(0, :last) g"
        if engine.dialect.name == "postgresql"
        else "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < :last) SELECT n FROM g"
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO metric_points (tenant_id, entity_id, metric_name, t, seq, value) "
                "SELECT :tenant, 'bench-entity-1', 'old-' || (n % 100), :t - n, 2000000000 + n, 1.0 "
                f"FROM ({generate}) AS s"
            ),
            {"tenant": tenant, "t": t, "last": rows - 1},
        )


def writes_during(url, token, entities, seconds, stop=None):
    """REST writes from 4 threads for ``seconds`` (or until the event ``stop``); latency percentiles in ms."""
    writer = harness.RestWriter(url, token)
    durations = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work(k):
        mine = []
        n = k
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            started = time.perf_counter()
            writer.write(entities[n % len(entities)], f"m{n % 64}", float(n))
            mine.append(time.perf_counter() - started)
            n += 4
        with lock:
            durations.extend(mine)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    durations.sort()
    return {
        "writes": len(durations),
        "p50_ms": round(1000 * durations[len(durations) // 2], 2),
        "p99_ms": round(1000 * durations[int(len(durations) * 0.99)], 2),
        "max_ms": round(1000 * durations[-1], 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--prune-rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database-url", help="DATABASE_URL for ours (default: a fresh SQLite file)")
    args = parser.parse_args()
    harness.install_cleanup()
    result = {"command": harness.command("history"), "machine": harness.machine()}

    with tempfile.TemporaryDirectory() as tmp:
        server = harness.make_server("ours", tmp, database_url=args.database_url, RETENTION_INTERVAL="1")
        server.start()
        try:
            tenant = harness.Tenant(server, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=4)
            engine = sa.create_engine(server.database_url)
            now = datetime.now(UTC)
            now_ms = int(now.timestamp() * 1000)
            started = time.monotonic()
            result["rows_in_database"] = fill(engine, tenant.tenant_id, args.rows, now_ms)
            result["fill_seconds"] = round(time.monotonic() - started, 1)
            print(json.dumps({"rows": result["rows_in_database"], "fill_seconds": result["fill_seconds"]}), flush=True)

            base = f"/api/v1/entities/bench-entity-0/metrics/{SERIES}/history"
            day_ago = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
            result["one_day_step_60"] = time_queries(
                server.url, tenant.admin_token, f"{base}?from={day_ago}&step=60", args.queries
            )
            result["one_day_step_3600"] = time_queries(
                server.url, tenant.admin_token, f"{base}?from={day_ago}&step=3600", args.queries
            )
            result["raw_page_1000"] = time_queries(
                server.url, tenant.admin_token, f"{base}?from={day_ago}&limit=1000", args.queries
            )
            print(
                json.dumps({k: result[k] for k in ("one_day_step_60", "one_day_step_3600", "raw_page_1000")}),
                flush=True,
            )

            # Pruning: writes and ticks with nothing to prune, then while a run prunes prune-rows old points.
            before = poll_ticks(server.url)
            result["writes_without_pruning"] = writes_during(server.url, tenant.admin_token, tenant.entities, 10)
            result["poll_tick_p99_without_pruning"] = tick_p99(before, poll_ticks(server.url))
            old = now_ms - 8 * DAY_MS
            add_old_points(engine, tenant.tenant_id, args.prune_rows, old)
            done = threading.Event()

            def watch():
                while not done.is_set():
                    with engine.connect() as conn:
                        left = conn.scalar(sa.text("SELECT count(*) FROM metric_points WHERE t <= :old"), {"old": old})
                    if left == 0:
                        done.set()
                    done.wait(0.5)

            watcher = threading.Thread(target=watch, daemon=True)
            before = poll_ticks(server.url)
            started = time.monotonic()
            watcher.start()
            result["writes_while_pruning"] = writes_during(server.url, tenant.admin_token, tenant.entities, 600, done)
            result["pruning_seconds"] = round(time.monotonic() - started, 1)
            result["poll_tick_p99_while_pruning"] = tick_p99(before, poll_ticks(server.url))
            result["pruned_all"] = done.is_set()
            print(json.dumps({k: result[k] for k in result if "prun" in k}), flush=True)
        finally:
            server.stop()

    result["database"] = "postgresql" if args.database_url else "sqlite"
    print(harness.save_result("history", result))


if __name__ == "__main__":
    main()
