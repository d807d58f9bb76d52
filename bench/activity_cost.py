"""CPU of one round of the admin page's activity sharing, full and idle, in process (no server, no network).

    .venv/bin/python -m bench.activity_cost --entities 5000 --events 3

Builds a Socket.IO server object with one socket subscribed to each of ``entities`` entities
(one tenant) and ``events`` events sent per entity, then times ``ActivityShare.publish``
writing its snapshot to a run directory: in full (what a worker shares while an admin page
wants figures) and idle (what it shares otherwise), and ``step`` with nobody asking.
"""

import argparse
import json
import tempfile
import timeit

from app.realtime.activity import SocketActivity
from app.realtime.activity_share import ActivityShare
from app.realtime.engine import SocketServer
from app.realtime.rooms import DASHBOARD_NAMESPACE, room_for


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=5000)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    sio = SocketServer(async_mode="gevent")
    activity = SocketActivity(sio)
    for i in range(args.entities):
        sid = sio.manager.pre_connect(f"eio-{i}", DASHBOARD_NAMESPACE)
        sio.manager.connect(sid, DASHBOARD_NAMESPACE)
        sio.enter_room(sid, room_for("t1", f"e{i}"), namespace=DASHBOARD_NAMESPACE)
        for k in range(args.events):
            activity.record("t1", [f"e{i}"], "metric:update", f"m = {k}", 1, seq=i * args.events + k + 1)
    with tempfile.TemporaryDirectory() as run_dir:
        config = {"ACTIVITY_SHARE_INTERVAL": 2.0, "SERVER_RUN_DIR": run_dir, "REDIS_URL": None, "REDIS_CHANNEL": "b"}
        share = ActivityShare(config, sio, activity)
        times = {
            "full_ms": timeit.timeit(lambda: share.publish(full=True), number=args.rounds),
            "idle_ms": timeit.timeit(lambda: share.publish(full=False), number=args.rounds),
            "step_nobody_asking_ms": timeit.timeit(share.step, number=args.rounds),
        }
    result = {"entities": args.entities, "events_per_entity": args.events}
    result.update({name: round(1000 * seconds / args.rounds, 2) for name, seconds in times.items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
