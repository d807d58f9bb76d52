"""ActivityShare in process: snapshots written to real files in a run directory and to the test Redis, read back,
merged, withdrawn; stale, foreign and hostile snapshots left out. Several workers live: tests/test_activity_live.py.

Two shares in this process have one pid, and a worker never reads its own file: a file meant as another
worker's is named after a process that exists (``other_pids``).
"""

import json
import logging
import os
import stat
import subprocess
import sys

import pytest
import redis

from app.realtime.activity import MAX_SNAPSHOT_BYTES, Snapshot
from app.realtime.activity_share import STALE_INTERVALS, WANTED_FILE, WANTED_INTERVALS
from app.realtime.rooms import DASHBOARD_NAMESPACE, room_for
from testkit import REDIS_URL, free_port, mint_token, require_redis, server_env, unique
from tests.conftest import app_from_env
from tests.test_activity import subscribed
from tests.test_admin import sign_in

INTERVAL = 2.0


def worker(rooms, run_dir=None, redis_url=None, channel="analytics-test", interval=INTERVAL):
    """A worker's SocketActivity over ``rooms`` (each subscription recorded) and its ActivityShare."""
    activity = subscribed(rooms, kept=10)
    config = {
        "ACTIVITY_SHARE_INTERVAL": interval,
        "SERVER_RUN_DIR": str(run_dir) if run_dir else None,
        "REDIS_URL": redis_url,
        "REDIS_CHANNEL": channel,
    }
    return activity, activity.sharing(config)


def viewers(tenant, entity, count, prefix="s"):
    return {DASHBOARD_NAMESPACE: {room_for(tenant, entity): [f"{prefix}{i}" for i in range(count)]}}


@pytest.fixture
def run_dir(tmp_path):
    """A private run directory, as gunicorn.conf.py makes one."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def other_pids():
    """Pids of two processes that exist for the test's length (other workers, as far as a reader can tell)."""
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    yield [p.pid for p in sleepers]
    for sleeper in sleepers:
        sleeper.kill()
        sleeper.wait()


def published_as(share, run_dir, pid):
    """Share ``share``'s full snapshot once and move its file to where worker ``pid`` keeps its own."""
    share.publish()
    own = run_dir / f"activity-{os.getpid()}.json"
    target = run_dir / f"activity-{pid}.json"
    os.replace(own, target)
    return target


@pytest.fixture
def channel():
    """A Redis channel of this test's own; its activity keys are removed afterwards."""
    require_redis()
    name = unique("analytics-test")
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*")) + list(client.scan_iter(match=f"{name}-*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_without_a_run_dir_or_redis_only_this_process_is_counted():
    activity, share = worker(viewers("t1", "a", 2))
    assert not share.enabled
    share.start()  # nothing to share: no background task either
    assert activity.figures("t1", ["a"])["subscribers"] == 2
    assert activity.figures("t1", ["a"])["scope"] == "process"
    assert activity.figures("t1", ["a"])["workers"] == 1
    share.stop()


def test_the_workers_of_a_node_count_each_other_through_their_files(run_dir, other_pids):
    here, share = worker(viewers("t1", "a", 2), run_dir)
    there, their_share = worker(viewers("t1", "a", 3, prefix="x"), run_dir)
    there.record("t1", ["a"], "metric:update", "sold = 1", 3, seq=5)
    here.record("t1", ["a"], "metric:update", "sold = 1", 2, seq=5)

    file = published_as(their_share, run_dir, other_pids[0])

    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert [p.name for p in run_dir.iterdir()] == [file.name]  # no temporary file left behind
    figures = here.figures("t1", ["a"])
    assert (figures["subscribers"], figures["workers"], figures["scope"]) == (5, 2, "node")
    assert [(e["event"], e["recipients"]) for e in figures["events"] if e["seq"] == 5] == [("metric:update", 5)]
    assert figures["asOf"] == pytest.approx(file.stat().st_mtime, abs=1)

    share.step()  # its own file is never read back as another worker's
    assert here.figures("t1", ["a"])["workers"] == 2
    share.start()
    share.stop()  # withdraws this worker's file
    assert not (run_dir / f"activity-{os.getpid()}.json").exists()


def test_a_file_not_refreshed_or_of_a_process_that_is_gone_is_not_counted_and_removed(run_dir, other_pids):
    here, _ = worker(viewers("t1", "a", 1), run_dir)
    _, their_share = worker(viewers("t1", "a", 3), run_dir)
    stale = published_as(their_share, run_dir, other_pids[0])
    old = stale.stat().st_mtime - STALE_INTERVALS * INTERVAL - 1
    os.utime(stale, (old, old))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead = published_as(their_share, run_dir, int(gone.stdout))

    figures = here.figures("t1", ["a"])

    assert (figures["subscribers"], figures["workers"]) == (1, 1)
    assert not stale.exists() and not dead.exists()


def test_a_worker_shares_its_figures_in_full_only_while_they_are_wanted_and_another_worker_reads_them(
    run_dir, other_pids
):
    here, share = worker(viewers("t1", "a", 2), run_dir)
    here.record("t1", ["a"], "metric:update", "sold = 1", 2, seq=5)
    own = run_dir / f"activity-{os.getpid()}.json"

    def shared():
        share.step()
        return Snapshot.parse(own.read_bytes(), "here")

    share.want()  # an admin page asks, but nobody else is here to read this worker's figures
    alone = shared()
    assert (alone.groups, alone.recent, alone.events, alone.truncated, alone.idle) == ((), {}, {}, False, True)

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    _, their_share = worker(viewers("t1", "a", 3, prefix="x"), run_dir)
    dead = published_as(their_share, run_dir, int(gone.stdout))
    assert shared().idle  # the file of a worker that is gone does not count
    dead.unlink()
    published_as(their_share, run_dir, other_pids[0])

    full = shared()  # another worker is here, and the figures are wanted

    assert not full.idle
    assert full.groups == (("t1", frozenset({"a"}), 2),)
    assert [e["seq"] for e in full.events.values() if e["event"] == "metric:update"] == [5]

    marker = run_dir / WANTED_FILE
    long_ago = marker.stat().st_mtime - WANTED_INTERVALS * INTERVAL - 1
    os.utime(marker, (long_ago, long_ago))
    assert shared().idle  # no admin page asked for a while
    here.figures("t1", ["a"])  # the admin page asks again
    assert not shared().idle


def test_the_figures_say_how_many_workers_are_not_counted_yet(run_dir, other_pids):
    here, _ = worker(viewers("t1", "a", 2), run_dir)
    _, their_share = worker(viewers("t1", "a", 3, prefix="x"), run_dir)
    file = run_dir / f"activity-{other_pids[0]}.json"
    their_share.publish(full=False)
    os.replace(run_dir / f"activity-{os.getpid()}.json", file)

    figures = here.figures("t1", ["a"])

    assert (figures["subscribers"], figures["workers"], figures["idle"]) == (2, 2, 1)
    published_as(their_share, run_dir, other_pids[0])
    figures = here.figures("t1", ["a"])
    assert (figures["subscribers"], figures["workers"], figures["idle"]) == (5, 2, 0)


HOSTILE = {
    "not-json": b"\x00\xff{{{",
    "oversized": b'{"v": 1, "pad": "' + b"x" * MAX_SNAPSHOT_BYTES + b'"}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "another-version": json.dumps({"v": 2, "at": 1.0}).encode(),
    "count-as-bool": None,  # built from a real snapshot below
    "negative-count": None,
    "huge-count": None,
    "long-tenant": None,
    "event-not-a-dict": None,
    "infinite-time": None,
}


def hostile_blob(kind, genuine):
    """A snapshot file's content of ``kind``: garbage, or ``genuine`` (a real snapshot) spoiled in one place."""
    if HOSTILE[kind] is not None:
        return HOSTILE[kind]
    data = json.loads(genuine)
    group = data["subscriptions"][0]
    if kind == "count-as-bool":
        group[2] = True
    elif kind == "negative-count":
        group[2] = -5
    elif kind == "huge-count":
        group[2] = 10**30
    elif kind == "long-tenant":
        group[0] = "t" * 100_000
    elif kind == "event-not-a-dict":
        data["events"].append("metric:update")
    elif kind == "infinite-time":
        return genuine.replace(b'"at":', b'"at":Infinity,"was":', 1)
    return json.dumps(data).encode()


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_malformed_or_oversized_snapshot_is_left_out_and_logged_once(run_dir, other_pids, caplog, kind):
    here, _ = worker(viewers("t1", "a", 1), run_dir)
    _, their_share = worker(viewers("t1", "a", 3), run_dir)
    published_as(their_share, run_dir, other_pids[0])  # one good snapshot
    genuine = their_share.encode()
    (run_dir / f"activity-{other_pids[1]}.json").write_bytes(hostile_blob(kind, genuine))

    with caplog.at_level(logging.WARNING, logger="app.realtime.activity_share"):
        first = here.figures("t1", ["a"])
        second = here.figures("t1", ["a"])

    assert (first["subscribers"], first["workers"], first["unreadable"]) == (4, 2, 1)
    assert second == {**first, "events": second["events"], "asOf": second["asOf"]}
    warnings = [r.getMessage() for r in caplog.records if "ignoring the snapshot" in r.getMessage()]
    assert len(warnings) == 1 and len(warnings[0]) < 400, warnings


def test_what_is_not_a_regular_file_is_never_opened(run_dir, other_pids):
    here, _ = worker(viewers("t1", "a", 1), run_dir)
    os.mkfifo(run_dir / f"activity-{other_pids[0]}.json")  # opening it to read would block a reader
    (run_dir / f"activity-{other_pids[1]}.json").symlink_to("/etc/hostname")
    (run_dir / "activity-not-a-pid.json").write_text("{}")

    figures = here.figures("t1", ["a"])

    assert (figures["subscribers"], figures["workers"], figures["unreadable"]) == (1, 1, 0)


def test_a_worker_with_too_much_to_share_shares_its_largest_rooms_within_the_size_limit():
    tenant = "t" * 128
    rooms = {DASHBOARD_NAMESPACE: {room_for(tenant, f"{n:05d}" + "e" * 120): [f"s{n}"] for n in range(2_500)}}
    rooms[DASHBOARD_NAMESPACE][room_for(tenant, "big")] = ["b1", "b2", "b3"]
    _, share = worker(rooms, run_dir="/nonexistent")

    blob = share.encode()

    assert len(blob) <= MAX_SNAPSHOT_BYTES
    snapshot = Snapshot.parse(blob, "busy")
    assert snapshot.truncated
    assert snapshot.subscribers(tenant, {"big"}) == 3


def test_workers_on_the_same_redis_count_each_other_and_a_stopped_one_withdraws(run_dir, channel, other_pids):
    here, share = worker(viewers("t1", "a", 2), run_dir, REDIS_URL, channel)
    _, their_share = worker(viewers("t1", "a", 3, prefix="x"), None, REDIS_URL, channel)
    # A node's own files are not read when Redis answers: Redis covers this node too.
    published_as(worker(viewers("t1", "a", 7), run_dir)[1], run_dir, other_pids[0])
    client = redis.Redis.from_url(REDIS_URL)
    share.want()  # an admin page asked: through Redis, every worker shares in full, on every node
    assert 0 < client.pttl(f"{channel}:activity-wanted") <= WANTED_INTERVALS * INTERVAL * 1000
    their_share.step()
    share.step()

    figures = here.figures("t1", ["a"])
    assert (figures["subscribers"], figures["workers"], figures["scope"]) == (5, 2, "cluster")
    ttl = client.pttl(f"{channel}:activity:{their_share.worker}")
    assert 0 < ttl <= STALE_INTERVALS * INTERVAL * 1000

    their_share.start()
    their_share.stop()
    assert not client.exists(f"{channel}:activity:{their_share.worker}")
    assert client.zscore(f"{channel}:activity-workers", their_share.worker) is None
    assert here.figures("t1", ["a"])["workers"] == 1
    client.close()


def test_a_hostile_redis_snapshot_is_left_out_and_only_its_first_bytes_are_read(channel, caplog):
    here, _ = worker(viewers("t1", "a", 1), None, REDIS_URL, channel)
    client = redis.Redis.from_url(REDIS_URL)
    client.zadd(f"{channel}:activity-workers", {"evil": 1e12, "x" * 10_000: 1e12})
    client.set(f"{channel}:activity:evil", b"[" * (4 * MAX_SNAPSHOT_BYTES), ex=60)
    client.close()

    with caplog.at_level(logging.WARNING, logger="app.realtime.activity_share"):
        figures = here.figures("t1", ["a"])

    assert (figures["subscribers"], figures["workers"], figures["unreadable"]) == (1, 1, 1)
    assert any("longer than" in r.getMessage() for r in caplog.records)


def test_when_redis_does_not_answer_the_nodes_files_are_counted_and_the_page_says_so(run_dir, other_pids, caplog):
    down = f"redis://127.0.0.1:{free_port()}/0"
    here, share = worker(viewers("t1", "a", 1), run_dir, down)
    _, their_share = worker(viewers("t1", "a", 2), run_dir, down)

    with caplog.at_level(logging.WARNING, logger="app.realtime.activity_share"):
        published_as(their_share, run_dir, other_pids[0])  # the file is written though Redis is down
        their_share.step()
        figures = here.figures("t1", ["a"])
        here.figures("t1", ["a"])

    assert (figures["subscribers"], figures["workers"], figures["scope"]) == (3, 2, "node")
    assert figures["problem"] == "Redis did not answer"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis did not answer" in m for m in messages) == 1
    assert sum("cannot share this worker's snapshot (redis)" in m for m in messages) == 1
    share.stop()


@pytest.mark.backends("sqlite")
def test_the_admin_page_answers_with_a_malformed_snapshot_in_the_run_dir(app, tmp_path, run_dir, other_pids, tenant):
    env = server_env(tmp_path, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SERVER_RUN_DIR=str(run_dir))
    served = app_from_env(env)
    (run_dir / f"activity-{other_pids[0]}.json").write_bytes(b'{"v": 1, "subscriptions": "all of them"}')
    client = served.test_client()
    assert sign_in(client, mint_token(tenant, roles=("admin",))).status_code == 200
    rest = {"Authorization": f"Bearer {mint_token(tenant, roles=('admin',))}"}
    dashboard = client.post("/api/v1/dashboards", json={"name": "Live", "tiles": []}, headers=rest).json

    activity = client.get(f"/admin/dashboards/{dashboard['id']}/activity")
    page = client.get(f"/admin/dashboards/{dashboard['id']}")

    assert activity.status_code == 200 and page.status_code == 200
    assert (activity.json["subscribers"], activity.json["workers"], activity.json["unreadable"]) == (0, 1, 1)
    assert activity.json["coverage"] == "1 worker of this server, as of now. 1 unreadable snapshot left out."
    assert "1 unreadable snapshot left out." in page.text


@pytest.mark.backends("sqlite")
def test_the_admin_page_asks_the_workers_for_their_figures_and_says_who_is_not_counted_yet(
    app, tmp_path, run_dir, other_pids, tenant
):
    env = server_env(tmp_path, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SERVER_RUN_DIR=str(run_dir))
    served = app_from_env(env)
    _, their_share = worker(viewers("t1", "a", 3), run_dir)
    their_share.publish(full=False)  # a worker that nobody asked for its figures yet
    os.replace(run_dir / f"activity-{os.getpid()}.json", run_dir / f"activity-{other_pids[0]}.json")
    client = served.test_client()
    assert sign_in(client, mint_token(tenant, roles=("admin",))).status_code == 200
    rest = {"Authorization": f"Bearer {mint_token(tenant, roles=('admin',))}"}
    dashboard = client.post("/api/v1/dashboards", json={"name": "Live", "tiles": []}, headers=rest).json
    assert not (run_dir / WANTED_FILE).exists()

    activity = client.get(f"/admin/dashboards/{dashboard['id']}/activity")

    assert (activity.json["workers"], activity.json["idle"]) == (2, 1)
    assert activity.json["coverage"] == (
        "2 workers of this server, as of now."
        " 1 of them not counted yet (sharing from now on: refresh in a few seconds)."
    )
    assert (run_dir / WANTED_FILE).exists()  # every worker of the node shares in full from its next round
