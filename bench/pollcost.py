"""Scenario 4, poll cost: time and rows of an idle and a busy poller tick as the change log grows.

    .venv/bin/python -m bench.pollcost --rows 10000,100000,1000000 --subscriptions 0,1000,10000

Runs the app's own ``ChangePoller.tick()`` in this process (nothing under app/ is changed or
started: no gunicorn, no sockets) against a migrated SQLite file grown to each size, with
``subscriptions`` sockets entered into the rooms of 100 entities. The sockets are
placeholders in python-socketio's room table, so a busy tick pays for the query, the
conflation, the room look-ups and one packet encoding per emit, but not the per-socket
send (the fan-out scenario measures that). Also times the poll query alone, the
``CommitProbe`` check that lets the running poller skip an idle tick on SQLite, and records
SQLite's query plan for the query. Prints JSON.
"""

from gevent import monkey

monkey.patch_all()  # as wsgi.py does, before anything imports ssl

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import closing  # noqa: E402
from pathlib import Path  # noqa: E402

from testkit import JWT_SECRET, flask_cli  # noqa: E402

TENANT = "bench-tenant"
ENTITIES = [f"bench-entity-{i}" for i in range(100)]
BUSY_ROWS = 100


def stats_ms(samples):
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 3),
        "n": len(ordered),
    }


def grow(db_path, target):
    """Append metric rows (10 metrics per entity, round-robin) until the change log holds ``target`` rows."""
    with closing(sqlite3.connect(db_path)) as conn:
        have = conn.execute("SELECT count(*) FROM change_log").fetchone()[0]
        while have < target:
            n = min(50_000, target - have)
            rows = [
                (TENANT, ENTITIES[i % len(ENTITIES)], f"m{(i // len(ENTITIES)) % 10}", float(i))
                for i in range(have, have + n)
            ]
            with conn:
                conn.executemany(
                    "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)", rows
                )
            have += n


def insert_busy(db_path, start):
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
            [
                (TENANT, ENTITIES[i % len(ENTITIES)], f"busy{i // len(ENTITIES)}", float(start + i))
                for i in range(BUSY_ROWS)
            ],
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000")
    parser.add_argument("--subscriptions", default="0,1000,10000")
    parser.add_argument("--ticks", type=int, default=30)
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.rows.split(","))
    subscriptions = sorted(int(x) for x in args.subscriptions.split(","))

    tmp = tempfile.TemporaryDirectory()
    db_path = Path(tmp.name) / "analytics.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "JWT_SECRET": JWT_SECRET,
        "SIMULATOR": "0",
        "LOG_LEVEL": "WARNING",
    }
    result = flask_cli(env, "db", "upgrade")
    if result.returncode:
        sys.exit(result.stderr)
    os.environ.update(env)
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO entities (tenant_id, entity_id, entity_type, name) VALUES (?, ?, 'event', '')",
            [(TENANT, e) for e in ENTITIES],
        )

    from app.database import CommitProbe  # after the environment is set
    from app.realtime.fanout import FanOut
    from app.realtime.poller import ChangePoller
    from app.realtime.rooms import DASHBOARD_NAMESPACE, room_for
    from app.services import changes
    from wsgi import create_app

    logging.getLogger("engineio.server").setLevel(logging.CRITICAL)
    app = create_app()
    sio = app.extensions["realtime"].sio
    with app.app_context():
        plan = [
            " ".join(str(c) for c in row)
            for row in app.extensions["sqlalchemy"]
            .engine.raw_connection()
            .execute(
                "EXPLAIN QUERY PLAN SELECT seq, tenant_id, kind, entity_id, metric_name, value, recorded_at, "
                "dashboard_id, payload FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (0, 5000),
            )
        ]
    points = []
    for size in sizes:
        t0 = time.monotonic()
        grow(db_path, size)
        grow_s = time.monotonic() - t0
        sio.manager.rooms.pop(DASHBOARD_NAMESPACE, None)  # placeholders of the previous size
        subscribed = 0
        for target in subscriptions:
            while subscribed < target:
                room = room_for(TENANT, ENTITIES[subscribed % len(ENTITIES)])
                sid = f"bench-sid-{subscribed}"
                sio.manager.enter_room(sid, DASHBOARD_NAMESPACE, room, eio_sid=f"eio-{subscribed}")
                subscribed += 1
            poller = ChangePoller(app, sio, FanOut(sio))
            poller.tick()  # first tick: takes the head of the log
            idle = []
            for _ in range(args.ticks):
                t = time.perf_counter()
                poller.tick()
                idle.append(time.perf_counter() - t)
            with app.app_context():
                probe = CommitProbe(app.extensions["sqlalchemy"].engine)
            probe.changed()  # the first look
            probes = []
            for _ in range(args.ticks):
                t = time.perf_counter()
                changed = probe.changed()
                probes.append(time.perf_counter() - t)
                assert not changed
            probe.close()
            query = []
            with app.app_context():
                head = changes.latest_seq()
                for _ in range(args.ticks):
                    t = time.perf_counter()
                    rows = changes.fetch_changes(head, (), 5000)
                    query.append(time.perf_counter() - t)
                assert not rows
            busy = []
            for k in range(max(3, args.ticks // 3)):
                insert_busy(db_path, k * BUSY_ROWS)
                t = time.perf_counter()
                poller.tick()
                busy.append(time.perf_counter() - t)
            with closing(sqlite3.connect(db_path)) as conn:
                total = conn.execute("SELECT count(*) FROM change_log").fetchone()[0]
            point = {
                "rows": size,
                "rows_actual": total,
                "subscriptions": subscribed,
                "idle_tick": {**stats_ms(idle), "rows_read": 0},
                "idle_query": stats_ms(query),
                "idle_probe": stats_ms(probes),
                "busy_tick": {**stats_ms(busy), "rows_read": BUSY_ROWS},
                "busy_us_per_row": round(statistics.median(busy) * 1e6 / BUSY_ROWS, 1),
                "grow_seconds": round(grow_s, 1),
            }
            print(json.dumps(point), file=sys.stderr, flush=True)
            points.append(point)
            grow_s = 0.0
    summary = {"busy_rows_per_tick": BUSY_ROWS, "entities": len(ENTITIES), "query_plan": plan, "points": points}
    json.dump(summary, sys.stdout)
    tmp.cleanup()


if __name__ == "__main__":
    main()
