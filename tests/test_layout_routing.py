"""Which entities a layout change reaches: those that showed its dashboard at its seq (``poller.layout_recipients``).

First plain data in, plain data out (the database snapshot given as the entities showing each
dashboard now and the entity changes after the first layout change); then one poller tick over
a real database, where the order of the changes in one batch is certain.
"""

import contextlib
import threading
from types import SimpleNamespace

from app.realtime.poller import ChangePoller, layout_recipients
from app.services import dashboards, entities
from app.services.changes import EntityMove

T = "tenant"


def layout(seq, dashboard_id):
    return SimpleNamespace(seq=seq, dashboard_id=dashboard_id)


def move(seq, entity_id, previous, current):
    return EntityMove(seq, T, entity_id, previous, current)


def pairs(*entity_ids):
    return sorted((T, e) for e in entity_ids)


def test_without_moves_every_entity_showing_the_dashboard_gets_it():
    showing = {1: pairs("a", "b"), 2: pairs("c")}
    assert layout_recipients([layout(10, 1), layout(11, 2)], showing, []) == {10: pairs("a", "b"), 11: pairs("c")}


def test_an_entity_moved_away_gets_the_old_dashboards_changes_before_its_move_only():
    # a left dashboard 1 for 2 at seq 12.
    showing = {1: pairs("b"), 2: pairs("a")}
    changes = [layout(10, 1), layout(11, 2), layout(13, 1), layout(14, 2)]
    assert layout_recipients(changes, showing, [move(12, "a", 1, 2)]) == {
        10: pairs("a", "b"),
        11: [],
        13: pairs("b"),
        14: pairs("a"),
    }


def test_moves_after_the_batch_count_too():
    # The snapshot already holds a's move at seq 50, beyond this batch's layout change.
    showing = {2: pairs("a")}
    assert layout_recipients([layout(10, 1), layout(11, 2)], showing, [move(50, "a", 1, 2)]) == {
        10: pairs("a"),
        11: [],
    }


def test_several_moves_of_one_entity_are_undone_newest_first():
    # a: 1 -> none (seq 12) -> 2 (seq 14) -> 1 (seq 16); it shows 1 now.
    showing = {1: pairs("a")}
    moves = [move(12, "a", 1, None), move(14, "a", None, 2), move(16, "a", 2, 1)]
    changes = [layout(11, 1), layout(13, 1), layout(15, 2), layout(15.5, 1), layout(17, 1)]
    assert layout_recipients(changes, showing, moves) == {
        11: pairs("a"),
        13: [],
        15: pairs("a"),
        15.5: [],
        17: pairs("a"),
    }


def test_a_removed_entity_gets_changes_before_its_removal():
    moves = [move(12, "gone", 1, None)]
    assert layout_recipients([layout(11, 1), layout(13, 1)], {1: pairs("b")}, moves) == {
        11: pairs("b", "gone"),
        13: pairs("b"),
    }


def test_a_deleted_dashboards_changes_reach_who_showed_it_then():
    # Dashboard 1 was deleted at seq 20: both its entities were detached then; nobody shows it now.
    moves = [move(20, "a", 1, None), move(20.5, "b", 1, None)]
    assert layout_recipients([layout(19, 1)], {}, moves) == {19: pairs("a", "b")}


# --- the poller's read of one batch, on a real database ---------------------------------------------------------


class RecordingFanOut:
    """Stands in for FanOut: records what the poller asks it to send."""

    def __init__(self):
        self.sent = []

    @contextlib.contextmanager
    def batch(self):
        yield

    def metric(self, change):
        self.sent.append(("metric", change.entity_id))

    def dashboard(self, change, users):
        self.sent.append(("layout", change.dashboard_id, [entity for _, entity in users]))

    def entity(self, change, history=None):
        self.sent.append(("entity", change.entity_id, change.payload["dashboardId"]))


def test_one_batch_with_moves_and_layout_changes_routes_each_by_its_seq(app, tenant):
    """The changes land in one tick: routing by the entities' dashboards now would send B's change to ``moving``."""
    sio = SimpleNamespace(eio=SimpleNamespace(create_event=threading.Event))
    fanout = RecordingFanOut()
    poller = ChangePoller(app, sio, fanout)
    with app.app_context():
        old = dashboards.create_dashboard(tenant, "Old", [])
        new = dashboards.create_dashboard(tenant, "New", [])
        for entity_id in ("moving", "staying"):
            entities.register_entity(tenant, entity_id, "event", "", old["id"])
        poller.tick()  # starts at the head of the log

        tile = {"title": "T", "metric_name": "m", "kind": "number", "unit": "", "thresholds": None}
        dashboards.add_tile(tenant, new["id"], tile)  # before the move: not for `moving`
        dashboards.add_tile(tenant, old["id"], tile)  # before the move: for both
        entities.attach_dashboard(tenant, "moving", new["id"])
        dashboards.add_tile(tenant, old["id"], tile)  # after: `staying` only
        dashboards.add_tile(tenant, new["id"], tile)  # after: `moving`
        entities.delete_entity(tenant, "staying")
        dashboards.add_tile(tenant, old["id"], tile)  # nobody shows it any more
        poller.tick()

    assert fanout.sent == [
        ("layout", new["id"], []),
        ("layout", old["id"], ["moving", "staying"]),
        ("entity", "moving", new["id"]),
        ("layout", old["id"], ["staying"]),
        ("layout", new["id"], ["moving"]),
        ("entity", "staying", None),
        ("layout", old["id"], []),
    ]
