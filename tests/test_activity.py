"""SocketActivity on its own: subscriber counts from a Socket.IO server's rooms, and the ring buffer of events."""

import json

from app.realtime.activity import Snapshot, SocketActivity, merge_figures
from app.realtime.engine import SocketServer
from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE, room_for


def activity_with_rooms(rooms, kept=3):
    """A SocketActivity over a server (no network) whose sockets are in ``rooms``: {namespace: {room: [sid]}}."""
    sio = SocketServer(async_mode="gevent")
    sids = {}
    for namespace, by_room in rooms.items():
        for room, names in by_room.items():
            for name in names:
                if (namespace, name) not in sids:
                    sids[namespace, name] = sio.manager.pre_connect(f"eio-{name}", namespace)
                    sio.manager.connect(sids[namespace, name], namespace)
                sio.enter_room(sids[namespace, name], room, namespace=namespace)
    return SocketActivity(sio, kept=kept)


def test_counts_each_namespace_connection_once_across_the_dashboards_entities():
    rooms = {
        DASHBOARD_NAMESPACE: {
            room_for("t1", "a"): ["s1", "s2"],
            room_for("t1", "b"): ["s1"],  # s1 follows both entities: one socket
            room_for("t2", "a"): ["s9"],  # another tenant's entity of the same id
        },
        UPDATES_NAMESPACE: {room_for("t1", "a"): ["u1"]},
    }
    activity = activity_with_rooms(rooms)
    assert activity.subscriber_count("t1", ["a", "b"]) == 3
    assert activity.subscriber_count("t1", ["b"]) == 1
    assert activity.subscriber_count("t2", ["a"]) == 1
    assert activity.subscriber_count("t1", []) == 0


def test_keeps_the_last_events_per_entity_newest_first_without_duplicates():
    activity = activity_with_rooms({}, kept=3)
    for n in range(5):
        activity.record("t1", ["a"], "metric:update", f"m = {n}", 1)
    activity.record("t1", ["a", "b"], "dashboard:update", "added, version 2", 2)
    activity.record("t2", ["a"], "metric:update", "other tenant", 1)

    events = activity.recent("t1", ["a", "b"])
    assert [e["summary"] for e in events] == ["added, version 2", "m = 4", "m = 3"]
    assert activity.recent("t1", ["a", "b"], limit=1)[0]["recipients"] == 2
    assert [e["summary"] for e in activity.recent("t2", ["a"])] == ["other tenant"]


# --- sharing between workers: snapshots, and merging them --------------------------------------------------------


def subscribed(rooms, kept=3):
    """``activity_with_rooms``, each subscription recorded as ``on_subscribe`` records it (``dashboard:initial``)."""
    activity = activity_with_rooms(rooms, kept)
    for by_room in rooms.values():
        for room, names in by_room.items():
            tenant_id, entity_id = json.loads(room)
            for _ in names:
                activity.record(tenant_id, [entity_id], "dashboard:initial", "2 tiles, version 1", 1)
    return activity


def snapshot_of(activity, worker="other-worker", **caps):
    """What another worker reads of ``activity``'s snapshot."""
    return Snapshot.parse(json.dumps(activity.snapshot(**caps)).encode(), worker)


def test_a_snapshot_counts_each_socket_once_per_dashboard_as_the_live_count_does():
    rooms = {
        DASHBOARD_NAMESPACE: {
            room_for("t1", "a"): ["s1", "s2", "s3"],
            room_for("t1", "b"): ["s1", "s4"],  # s1 follows both
            room_for("t1", "c"): ["s5"],
            room_for("t2", "a"): ["s9"],
        },
        UPDATES_NAMESPACE: {room_for("t1", "a"): ["s1"]},  # another connection: counts again
    }
    activity = subscribed(rooms)
    snapshot = snapshot_of(activity)
    for tenant_id, entity_ids in [("t1", {"a", "b"}), ("t1", {"a"}), ("t1", {"b", "c"}), ("t2", {"a"}), ("t1", set())]:
        assert snapshot.subscribers(tenant_id, entity_ids) == activity.subscriber_count(tenant_id, entity_ids)
    assert snapshot.subscribers("t1", {"a", "b", "c"}) == 6


def test_merging_sums_subscribers_and_the_recipients_of_one_change_but_not_per_socket_events():
    here = subscribed({DASHBOARD_NAMESPACE: {room_for("t1", "a"): ["s1", "s2"]}}, kept=10)
    there = subscribed({DASHBOARD_NAMESPACE: {room_for("t1", "a"): ["s3"], room_for("t1", "b"): ["s4"]}}, kept=10)
    # The same change, sent by both workers to their own sockets; another one only here.
    there.record("t1", ["a"], "metric:update", "sold = 1", 1, seq=41)
    here.record("t1", ["a"], "metric:update", "sold = 1", 2, seq=41)
    here.record("t1", ["a"], "metric:update", "sold = 2", 2, seq=42)
    there.record("t1", ["a", "b"], "dashboard:update", "added, version 2", 2, seq=43)
    there.record("t2", ["a"], "metric:update", "another tenant", 5, seq=44)
    snapshot = snapshot_of(there)

    merged = merge_figures(
        "t1",
        ["a", "b"],
        here.subscriber_count("t1", ["a", "b"]),
        here.recent("t1", ["a", "b"], None),
        [snapshot],
        20,
        scope="node",
    )

    assert merged["subscribers"] == 4
    assert merged["workers"] == 2 and merged["scope"] == "node"
    assert merged["asOf"] == snapshot.at
    by_change = {(e["event"], e["seq"]): e["recipients"] for e in merged["events"] if e["seq"] is not None}
    assert by_change == {("metric:update", 41): 3, ("metric:update", 42): 2, ("dashboard:update", 43): 2}
    assert [e["event"] for e in merged["events"]].count("dashboard:initial") == 4  # one per socket, never merged
    assert [e["at"] for e in merged["events"]] == sorted((e["at"] for e in merged["events"]), reverse=True)
    assert len(merge_figures("t1", ["a"], 0, [], [snapshot], 2, scope="node")["events"]) == 2


def test_a_snapshot_is_bounded_keeping_the_largest_rooms_and_the_latest_entities():
    rooms = {DASHBOARD_NAMESPACE: {room_for("t1", f"e{n}"): [f"s{n}-{i}" for i in range(n % 3 + 1)] for n in range(30)}}
    activity = subscribed(rooms, kept=3)
    activity.record("t1", ["e0"], "metric:update", "latest", 1, seq=7)

    data = activity.snapshot(max_groups=10, max_refs=5)

    assert data["truncated"] is True
    assert len(data["subscriptions"]) == 10 and all(n == 3 for _, _, n in data["subscriptions"])
    assert sum(len(ids) for _, _, ids in data["recent"]) == 5
    assert data["recent"][0][1] == "e0"  # the entity that sent last comes first
    assert not activity.snapshot()["truncated"]
