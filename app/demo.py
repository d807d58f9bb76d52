"""Demo data and the metric simulator that keeps it moving."""

import fcntl
import os
import random

from flask import current_app
from sqlalchemy import select

from app.background import BackgroundLoop
from app.extensions import db
from app.models import Entity, MetricValue
from app.services import dashboards, entities, metrics
from app.services.metrics import MetricPoint
from app.validation import optional_timestamp

DEMO_EVENT_ID = "event-uuid-123"
DEMO_VENUE_ID = "venue-uuid-456"
DEMO_TILES = [
    {"title": "Tickets sold", "metricName": "ticketsSold", "kind": "number", "unit": ""},
    {"title": "Check-ins", "metricName": "checkIns", "kind": "line", "unit": "/min"},
    {
        "title": "Occupancy",
        "metricName": "occupancy",
        "kind": "gauge",
        "unit": "%",
        "thresholds": {"warning": 80, "critical": 95},
    },
    {"title": "Revenue", "metricName": "revenue", "kind": "number", "unit": "EUR"},
]
DEMO_START = {"ticketsSold": 1200.0, "checkIns": 40.0, "occupancy": 35.0, "revenue": 54000.0}


def seed_demo(tenant_id):
    """Create the demo event and venue with a dashboard and starting values; do nothing if present."""
    if db.session.scalar(select(Entity.id).where(Entity.tenant_id == tenant_id, Entity.entity_id == DEMO_EVENT_ID)):
        return False
    dashboard = dashboards.create_dashboard(tenant_id, "Event overview", [dashboards.parse_tile(t) for t in DEMO_TILES])
    entities.register_entity(tenant_id, DEMO_EVENT_ID, "event", "Demo Festival 2026", dashboard["id"])
    entities.register_entity(tenant_id, DEMO_VENUE_ID, "venue", "Demo Arena", None)
    now = optional_timestamp({}, "timestamp")
    points = [MetricPoint(DEMO_EVENT_ID, n, v, now) for n, v in DEMO_START.items()]
    metrics.record_metrics(tenant_id, points, current_app.config["MAX_METRICS_PER_ENTITY"])
    return True


def simulate_step(tenant_id, rng):
    """Move each demo metric a little, as one batch; return how many values were written."""
    current = dict(
        db.session.execute(
            select(MetricValue.metric_name, MetricValue.value).where(
                MetricValue.tenant_id == tenant_id, MetricValue.entity_id == DEMO_EVENT_ID
            )
        ).all()
    )
    db.session.rollback()
    if not current:
        return 0
    now = optional_timestamp({}, "timestamp")
    sold = current.get("ticketsSold", 0.0) + rng.randint(0, 5)
    points = [
        MetricPoint(DEMO_EVENT_ID, "ticketsSold", sold, now),
        MetricPoint(
            DEMO_EVENT_ID, "checkIns", max(0.0, round(current.get("checkIns", 40.0) + rng.uniform(-6, 6), 1)), now
        ),
        MetricPoint(
            DEMO_EVENT_ID,
            "occupancy",
            min(100.0, max(0.0, round(current.get("occupancy", 35.0) + rng.uniform(-2, 2.5), 1))),
            now,
        ),
        MetricPoint(
            DEMO_EVENT_ID,
            "revenue",
            round(current.get("revenue", 0.0) + (sold - current.get("ticketsSold", 0.0)) * 45.0, 2),
            now,
        ),
    ]
    metrics.record_metrics(tenant_id, points, current_app.config["MAX_METRICS_PER_ENTITY"])
    return len(points)


class MetricSimulator(BackgroundLoop):
    """Background writer for the demo tenant, through the same service as the REST API.

    With several workers (SERVER_RUN_DIR), one of them writes: the one holding
    the lock file ``simulator.lock`` there. When it dies the kernel lets go of
    its lock, and another worker takes over at its next round.
    """

    def __init__(self, app, sio):
        super().__init__(sio, app.config["SIMULATOR_INTERVAL"])
        self._app = app
        self._tenant_id = app.config["DEMO_TENANT"]
        self._rng = random.Random()
        run_dir = app.config["SERVER_RUN_DIR"]
        self._lock_path = os.path.join(run_dir, "simulator.lock") if run_dir else None
        self._lock = None

    def step(self):
        """Write one round of demo values (in the one worker holding the lock)."""
        if not self._holds_lock():
            return
        with self._app.app_context():
            simulate_step(self._tenant_id, self._rng)

    def _holds_lock(self):
        if self._lock_path is None or self._lock is not None:
            return True
        lock = open(self._lock_path, "a")  # noqa: SIM115 - held open for the life of the process
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self._lock = lock
        return True
