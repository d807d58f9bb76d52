"""Writer processes for tests/test_concurrency.py: each hammers a tenant's metrics, via REST or straight into the
database (SQLite or PostgreSQL).

They run in processes of their own (forks of multiprocessing's ``forkserver``, which imports this module once), so
this module imports nothing from the app or the fixtures (only testkit's Database). Every writer gets ready, waits
at a barrier so that all of them start at once, then writes until it has written ``Plan.count`` points,
``Plan.seconds`` have passed or the test sets ``stop``. It reports one dict on the ``results`` queue:
``{"name", "ok": True, "points", "batches", "stopped_by", "last_seqs"}`` or ``{"name", "ok": False, "error"}``.
"""

import random
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from testkit import Database

#: How long a writer waits at the start barrier for the others and the test.
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Plan:
    """What one writer writes: up to ``count`` points on ``targets`` for up to ``seconds``, ``pause`` s apart."""

    name: str
    tenant_id: str
    targets: tuple  # ((entity_id, metric_name), ...)
    count: int
    seconds: float
    seed: int
    pause: float = 0.0


class RandomPoints:
    """Random ``(entity_id, metric_name, value)`` points; a metric never gets the same value twice in a row."""

    def __init__(self, plan):
        self.rng = random.Random(plan.seed)
        self._targets = plan.targets
        self._last = {}

    def take(self, n):
        """The next ``n`` points."""
        points = []
        for _ in range(n):
            target = self.rng.choice(self._targets)
            value = self._last.get(target)
            while value == self._last.get(target):
                value = self.rng.randrange(-(10**9), 10**9) / 1000
            self._last[target] = value
            points.append((*target, value))
        return points


def _run(plan, points, batch_size, write, ready, stop, results):
    """Wait at the barrier, call ``write(batch)`` until a bound is reached, report on ``results``."""
    ready.wait(READY_TIMEOUT)
    started = time.monotonic()
    deadline = started + plan.seconds
    written = batches = 0
    last_seqs = []
    stopped_by = "count"
    while written < plan.count:
        if stop.is_set():
            stopped_by = "stop"
            break
        if time.monotonic() >= deadline:
            stopped_by = "time"
            break
        batch = points.take(min(batch_size(), plan.count - written))
        last_seq = write(batch)
        if last_seq is not None:
            last_seqs.append((last_seq, batch))
        written += len(batch)
        batches += 1
        if plan.pause:
            stop.wait(plan.pause)  # pacing, and a prompt exit once the test says stop
    results.put(
        {
            "name": plan.name,
            "ok": True,
            "points": written,
            "batches": batches,
            "stopped_by": stopped_by,
            "seconds": round(time.monotonic() - started, 2),
            "last_seqs": last_seqs,
        }
    )


def _report_failure(plan, results):
    results.put({"name": plan.name, "ok": False, "error": traceback.format_exc()})
    raise SystemExit(1)


def rest_writer(plan, base_url, token, ready, stop, results):
    """POST /api/v1/metrics: single points and batches of 1-20; a batch's ``lastSeq`` is kept for the test."""
    try:
        points = RandomPoints(plan)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        url = base_url + "/api/v1/metrics"

        def batch_size():
            return 1 if points.rng.random() < 0.4 else points.rng.randint(1, 20)

        def write(batch):
            items = [{"entityId": e, "metricName": m, "value": v} for e, m, v in batch]
            body = items[0] if len(items) == 1 and points.rng.random() < 0.5 else {"metrics": items}
            response = session.post(url, json=body, timeout=30)
            if response.status_code != 201:
                raise RuntimeError(f"POST /metrics answered {response.status_code}: {response.text[:500]}")
            return response.json()["lastSeq"]

        _run(plan, points, batch_size, write, ready, stop, results)
    except BaseException:
        _report_failure(plan, results)


def db_writer(plan, database_url, ready, stop, results):
    """INSERT INTO change_log, as an external writer would: one to eight rows per transaction."""
    try:
        points = RandomPoints(plan)
        database = Database(database_url)

        def batch_size():
            return 1 if points.rng.random() < 0.5 else points.rng.randint(2, 8)

        with database.connection() as connection:

            def write(batch):
                with connection.transaction():  # one transaction: commits, or rolls back on error
                    # In key order, as docs/database.md asks of writers (no deadlocks on PostgreSQL).
                    for entity_id, metric_name, value in sorted(batch, key=lambda point: point[:2]):
                        if points.rng.random() < 0.25:  # recorded_at is optional: the column default fills it
                            connection.execute(
                                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value) VALUES (?, ?, ?, ?)",
                                (plan.tenant_id, entity_id, metric_name, value),
                            )
                        else:
                            recorded_at = datetime.now(UTC)
                            if database.backend == "sqlite":  # SQLite stores UTC timestamps as text
                                recorded_at = recorded_at.strftime("%Y-%m-%d %H:%M:%S.%f")
                            connection.execute(
                                "INSERT INTO change_log (tenant_id, entity_id, metric_name, value, recorded_at)"
                                " VALUES (?, ?, ?, ?, ?)",
                                (plan.tenant_id, entity_id, metric_name, value, recorded_at),
                            )
                return None

            _run(plan, points, batch_size, write, ready, stop, results)
    except BaseException:
        _report_failure(plan, results)
