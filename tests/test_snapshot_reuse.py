"""A subscriber storm reuses the entity's snapshot, or its resume from one seq, while the entity does not change
(``ChangePoller._kept_snapshot``, ``_kept_resume``).

In process on a real database, with the poller's Socket.IO side recorded: the second subscriber of an entity costs
no snapshot query, and a change (or time) makes the next one read the database again.
"""

import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import event

from app.errors import AppError
from app.extensions import db
from app.realtime import poller as poller_module
from app.realtime.poller import ChangePoller
from app.services import dashboards, entities, metrics
from app.services.metrics import MetricPoint
from app.validation import optional_timestamp
from tests.test_layout_routing import RecordingFanOut

pytestmark = pytest.mark.backends("sqlite")

TILE = {"title": "T", "metric_name": "m", "kind": "line", "unit": "", "thresholds": None}


def now():
    """The time of a write that gives none, as the REST API takes it."""
    return optional_timestamp({}, "timestamp")


class RecordingSockets:
    """The part of the Socket.IO server the poller's subscribe uses: every socket connected, every emit kept."""

    def __init__(self):
        self.eio = SimpleNamespace(create_event=threading.Event)
        self.emitted = []

    def is_connected(self, sid, namespace):
        return True

    def enter_room(self, sid, room, namespace):
        pass

    def has_subscribers(self, namespace, room):
        return True

    def emit(self, event_name, data, to, namespace, ignore_queue):
        self.emitted.append((to, event_name, data))


@pytest.fixture
def setup(app, tenant):
    """``(poller, sockets, statements)``: an entity with a line tile and a value, the poller at the log's head."""
    sockets = RecordingSockets()
    poller = ChangePoller(app, sockets, RecordingFanOut())
    statements = []
    with app.app_context():
        dashboard = dashboards.create_dashboard(tenant, "D", [TILE])
        entities.register_entity(tenant, "e1", "event", "", dashboard["id"])
        metrics.record_metrics(tenant, [MetricPoint("e1", "m", 1.0, now())], 100)
        poller.tick()
        engine = db.engine

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield poller, sockets, statements
    event.remove(engine, "before_cursor_execute", count)


def subscribe(poller, sid, tenant):
    return poller.subscribe(sid, "/dashboard", tenant, "e1", "event")[1]


def test_the_next_subscriber_gets_the_same_snapshot_without_reading_it_again(setup, tenant):
    poller, _, statements = setup
    first = subscribe(poller, "s1", tenant)
    read_first = len(statements)
    statements.clear()
    second = subscribe(poller, "s2", tenant)
    assert second == first
    assert second is not first and second["metrics"] is first["metrics"]  # shared parts, a dict of its own
    assert len(statements) < read_first, statements  # only the catch-up read
    assert not any("metric_values" in s or "tiles" in s for s in statements), statements


def test_a_change_or_time_makes_the_next_subscriber_read_again(setup, app, tenant, monkeypatch):
    poller, _, _ = setup
    assert subscribe(poller, "s1", tenant)["metrics"] == {"m": 1.0}
    with app.app_context():
        seq = metrics.record_metrics(tenant, [MetricPoint("e1", "m", 2.0, now())], 100)["lastSeq"]
    # Before the poller reads the change, a subscriber gets the state it has reached (seq below the change),
    # and the change reaches the room at the tick.
    before_tick = subscribe(poller, "s2", tenant)
    assert before_tick["metrics"] == {"m": 1.0} and before_tick["seq"] < seq
    poller.tick()
    assert poller._fanout.sent[-1] == ("metric", "e1")
    after_change = subscribe(poller, "s2", tenant)
    assert after_change["metrics"] == {"m": 2.0} and after_change["seq"] == seq
    assert after_change["history"]["m"][-1]["value"] == 2.0
    with app.app_context():
        dashboards.add_tile(tenant, after_change["dashboardId"], {**TILE, "metric_name": "n", "kind": "number"})
    poller.tick()
    assert [t["metricName"] for t in subscribe(poller, "s3", tenant)["tiles"]] == ["m", "n"]

    monkeypatch.setattr(poller_module, "SNAPSHOT_REUSE_SECONDS", 0.0)
    with app.app_context():  # written behind the change log's back: only a new read shows it
        db.session.execute(db.text("UPDATE metric_values SET value = 3 WHERE tenant_id = :t"), {"t": tenant})
        db.session.commit()
    assert subscribe(poller, "s4", tenant)["metrics"] == {"m": 3.0}


def test_an_unknown_entity_is_refused_every_time(setup, tenant):
    poller, _, _ = setup
    for sid in ("s1", "s2"):
        with pytest.raises(AppError):
            poller.subscribe(sid, "/dashboard", tenant, "nothing", "event")


def test_changes_of_other_entities_keep_the_snapshot_and_its_own_changes_drop_it(setup, app, tenant):
    poller, _, statements = setup
    with app.app_context():
        other = dashboards.create_dashboard(tenant, "Other", [])
        entities.register_entity(tenant, "e2", "event", "", other["id"])
    poller.tick()
    first = subscribe(poller, "s1", tenant)
    with app.app_context():  # the log moves on, for another entity and another dashboard
        metrics.record_metrics(tenant, [MetricPoint("e2", "m", 5.0, now())], 100)
        dashboards.add_tile(tenant, other["id"], TILE)
    poller.tick()
    statements.clear()
    assert subscribe(poller, "s2", tenant)["metrics"] == first["metrics"]
    assert statements == []  # nothing read: e1 did not change

    with app.app_context():  # e1 now shows the other dashboard: an entity change of its own
        entities.attach_dashboard(tenant, "e1", other["id"])
    poller.tick()
    moved = subscribe(poller, "s3", tenant)
    assert moved["dashboardId"] == other["id"] and [t["metricName"] for t in moved["tiles"]] == ["m"]


def resume(poller, sid, tenant, since_seq):
    return poller.subscribe(sid, "/dashboard", tenant, "e1", "event", since_seq)


def test_the_next_resume_from_the_same_seq_reads_nothing_until_the_entity_changes(setup, app, tenant):
    poller, _, statements = setup
    since = poller.position
    with app.app_context():
        metrics.record_metrics(tenant, [MetricPoint("e1", "m", 2.0, now())], 100)
    poller.tick()
    event, first = resume(poller, "s1", tenant, since)
    assert event == "dashboard:resume" and first["metrics"] == {"m": 2.0} and first["fromSeq"] == since
    statements.clear()
    event, second = resume(poller, "s2", tenant, since)
    assert event == "dashboard:resume" and second == first and second is not first
    assert statements == [], "the same resume, read again"

    head = poller.position
    event, from_head = resume(poller, "s3", tenant, head)  # another seq: read, and kept instead
    assert event == "dashboard:resume" and from_head["metrics"] == {} and statements

    with app.app_context():  # the log moves on for another entity: the resume stays
        other = dashboards.create_dashboard(tenant, "Other", [])
        entities.register_entity(tenant, "e2", "event", "", other["id"])
        metrics.record_metrics(tenant, [MetricPoint("e2", "m", 9.0, now())], 100)
    poller.tick()
    statements.clear()
    event, kept = resume(poller, "s4", tenant, head)
    assert event == "dashboard:resume" and kept["metrics"] == {} and kept["seq"] == poller.position > head
    assert statements == [], "e1 did not change: nothing read"

    with app.app_context():  # a change of e1 itself: the next resume reads it
        metrics.record_metrics(tenant, [MetricPoint("e1", "m", 3.0, now())], 100)
    poller.tick()
    event, after_change = resume(poller, "s6", tenant, since)
    assert event == "dashboard:resume" and after_change["metrics"] == {"m": 3.0}
