"""A REST write hands its change to the worker's poller with its announcement (``ChangePoller._on_commit``).

In process on a real database, the poller's Socket.IO side recorded: the change the write announces is what a read
of the log gives, it is delivered without a read when it continues the stream, and otherwise the tick reads the log
(a change committed elsewhere before it, one delivered already), never delivering anything twice or out of order.
"""

import pytest
from sqlalchemy import event

from app.extensions import db
from app.realtime import poller as poller_module
from app.realtime.poller import ChangePoller
from app.serializers import metric_update
from app.services import changes as change_log
from app.services import entities, metrics
from app.services.metrics import MetricPoint
from app.validation import optional_timestamp
from tests.test_layout_routing import RecordingFanOut
from tests.test_snapshot_reuse import RecordingSockets


class Announced:
    """What the poller was handed by the writes of this process (the change_committed signal's ``changes``)."""

    def __init__(self, poller):
        self.poller = poller
        self.changes = []

    def __call__(self, sender=None, changes=(), **kwargs):
        self.changes.extend(changes)
        self.poller._on_commit(sender, changes=changes, **kwargs)


@pytest.fixture
def setup(app, tenant, monkeypatch):
    """``(poller, announced, statements)``: two entities, the poller at the log's head, its announcements kept.

    The head is a write of this test's own: on PostgreSQL the sequence may have handed out seqs that never
    committed (other tests' refused writes), which a poller would wait for as gaps, and read meanwhile.
    """
    monkeypatch.setattr(poller_module, "STARTUP_GAP_WINDOW", 0)
    statements = []
    with app.app_context():
        for entity_id in ("e1", "e2"):
            entities.register_entity(tenant, entity_id, "event", "", None)
        metrics.record_metrics(tenant, [MetricPoint("e2", "warm", 0.0, optional_timestamp({}, "timestamp"))], 100)
        poller = ChangePoller(app, RecordingSockets(), RecordingFanOut())
        poller.tick()
        engine = db.engine
    announced = Announced(poller)
    change_log.change_committed.connect(announced)

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield poller, announced, statements
    event.remove(engine, "before_cursor_execute", count)
    change_log.change_committed.disconnect(announced)


def write(app, tenant, entity_id, value, timestamp=None):
    """A REST write of one point (``timestamp`` as a client gives it); return its seq."""
    recorded_at = optional_timestamp({"timestamp": timestamp} if timestamp else {}, "timestamp")
    with app.app_context():
        result = metrics.record_metrics(tenant, [MetricPoint(entity_id, "m", value, recorded_at)], 100)
    return result["lastSeq"]


def delivered(poller):
    return [entity_id for kind, entity_id in poller._fanout.sent if kind == "metric"]


def test_the_announced_change_is_the_row_a_read_gives_and_is_delivered_without_reading(setup, app, tenant):
    poller, announced, statements = setup
    seq = write(app, tenant, "e1", 0.1 + 0.2, timestamp="2026-12-05T23:59:59.123456+05:30")
    with app.app_context():
        read = change_log.fetch_changes(seq - 1, (), 10)
    # The same event on the wire (SQLite gives the time back without its zone, which means UTC everywhere).
    assert [metric_update(c) for c in announced.changes] == [metric_update(c) for c in read]
    assert metric_update(read[0])["timestamp"] == "2026-12-05T18:29:59.123Z"
    statements.clear()
    poller.tick(read=False)
    assert statements == []
    assert delivered(poller) == ["e1"] and poller.position == seq


def test_a_change_committed_elsewhere_before_it_makes_the_tick_read(setup, app, tenant):
    poller, announced, statements = setup
    change_log.change_committed.disconnect(announced)  # as another process's write: nothing announced here
    write(app, tenant, "e2", 1.0)
    change_log.change_committed.connect(announced)
    seq = write(app, tenant, "e1", 2.0)
    statements.clear()
    poller.tick(read=False)
    assert any("change_log" in s for s in statements), statements
    assert delivered(poller) == ["e2", "e1"] and poller.position == seq


def test_a_change_a_read_delivered_already_is_not_delivered_again_nor_read(setup, app, tenant):
    poller, _, statements = setup
    seq = write(app, tenant, "e1", 1.0)
    poller.tick()  # a read (a subscribe's catch-up would do the same) delivers it first
    statements.clear()
    poller.tick(read=False)
    assert statements == [] and delivered(poller) == ["e1"] and poller.position == seq


def test_announced_changes_in_a_row_are_delivered_in_order_and_conflated(setup, app, tenant):
    poller, _, statements = setup
    seqs = [write(app, tenant, entity_id, n) for n, entity_id in enumerate(["e2", "e1", "e2"])]
    statements.clear()
    poller.tick(read=False)
    assert statements == []
    assert delivered(poller) == ["e1", "e2"] and poller.position == seqs[-1]  # e2's newest value only, as a read


def test_a_wake_up_that_asks_for_a_read_is_not_answered_by_the_announcement(setup, app, tenant):
    poller, _, _ = setup
    write(app, tenant, "e1", 1.0)
    poller.wake()  # a NOTIFY, say: the loop reads (tick() with read), whatever was announced
    assert poller._must_read
    poller.tick()
    assert not poller._must_read and delivered(poller) == ["e1"]


def test_a_batch_is_read_back(setup, app, tenant):
    poller, announced, _ = setup
    with app.app_context():
        points = [MetricPoint(e, "m", 1.0, optional_timestamp({}, "timestamp")) for e in ("e1", "e2")]
        metrics.record_metrics(tenant, points, 100)
    assert announced.changes == [] and poller._must_read


def test_a_notify_of_changes_delivered_already_wakes_nobody(setup, app, tenant):
    # PostgreSQL's NOTIFY of this worker's own write arrives after the write's announcement was delivered.
    poller, _, _ = setup
    seq = write(app, tenant, "e1", 1.0)
    poller.tick(read=False)
    poller.wake(seq)
    assert not poller._must_read
    poller.wake(seq + 1)  # a change this worker has not seen (another worker's write)
    assert poller._must_read
