"""SocketActivity on its own: subscriber counts from a Socket.IO server's rooms, and the ring buffer of events."""

from app.realtime.activity import SocketActivity
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
