"""The admin page counts every worker: live gunicorn servers of several workers, websocket-only clients spread
across them, and the activity JSON the page polls (``GET /admin/dashboards/<id>/activity``).

Snapshots are shared every 0.5 s here (ACTIVITY_SHARE_INTERVAL), so waiting on a figure takes about that long.
"""

import time

import pytest
import redis
import requests

from testkit import (
    DEFAULT_TIMEOUT,
    REDIS_URL,
    RecordingClient,
    mint_token,
    require_redis,
    server_on,
    servers_on,
    tenant_with_entity,
    unique,
)
from tests.test_admin import forms_of
from tests.test_scaleout import sockets_held, wait_for_workers, worker_pids

# Several processes on one database, as in production.
pytestmark = pytest.mark.backends("postgresql")

ENTITY = "event-1"
SHARE_INTERVAL = "0.5"


class AdminActivity:
    """An admin signed in on ``server``'s admin page (a cookie of its own), reading a dashboard's activity JSON."""

    def __init__(self, server, tenant, dashboard_id):
        self.url = f"{server.url}/admin/dashboards/{dashboard_id}/activity"
        self.session = requests.Session()
        form = forms_of(self.session.get(f"{server.url}/admin", timeout=DEFAULT_TIMEOUT))["/admin/sign-in"]
        token = mint_token(tenant, roles=("admin",))
        signed_in = self.session.post(f"{server.url}/admin/sign-in", data={**form, "token": token}, timeout=10)
        assert signed_in.status_code == 200 and "sign-out" in signed_in.text, signed_in.text[:500]

    def get(self):
        answer = self.session.get(self.url, headers={"Accept": "application/json"}, timeout=DEFAULT_TIMEOUT)
        assert answer.status_code == 200, answer.text[:500]
        return answer.json()

    def wait_until(self, condition, what, timeout=DEFAULT_TIMEOUT):
        """The activity JSON once ``condition(json)`` holds; fail with the last one seen after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            figures = self.get()
            if condition(figures):
                return figures
            assert time.monotonic() < deadline, f"not {what} within {timeout}s: {figures}"
            time.sleep(0.1)


def subscribe_clients(servers, tenant, per_server):
    clients = []
    for server in servers:
        for _ in range(per_server):
            client = RecordingClient().connect(server.url, mint_token(tenant), transports=("websocket",))
            clients.append(client)
            client.subscribe(ENTITY)
    return clients


def events_of(figures, seq):
    return [e for e in figures["events"] if e["seq"] == seq]


def counted_once(seq, recipients):
    """True when the figures show the change ``seq`` once, sent to ``recipients`` sockets in all."""
    return lambda f: [(e["event"], e["recipients"]) for e in events_of(f, seq)] == [("metric:update", recipients)]


def test_the_admin_page_counts_the_sockets_and_events_of_all_four_workers(live_server, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    with server_on(
        live_server.env["DATABASE_URL"],
        tmp_path / "server",
        WEB_CONCURRENCY="4",
        SERVER_RUN_DIR=str(run_dir),
        ACTIVITY_SHARE_INTERVAL=SHARE_INTERVAL,
    ) as server:
        wait_for_workers(server)
        tenant, api = tenant_with_entity(server.url, ENTITY)
        dashboard_id = api.call("GET", f"/entities/{ENTITY}", 200)["dashboardId"]
        admin = AdminActivity(server, tenant, dashboard_id)
        clients = subscribe_clients([server], tenant, per_server=12)
        try:
            held = [sockets_held(pid, server.port) for pid in worker_pids(server)]
            assert sum(1 for n in held if n) >= 2, f"the connections did not spread across workers: {held}"

            figures = admin.wait_until(
                lambda f: f["subscribers"] == 12 and f["workers"] == 4, "12 sockets of 4 workers"
            )
            assert figures["scope"] == "node"
            assert figures["coverage"].startswith("4 workers of this server, as of ")
            assert time.time() - figures["asOf"] < 5

            seq = api.ingest((ENTITY, "ticketsSold", 5))["lastSeq"]
            for client in clients:
                client.wait_for("metric:update", lambda d: d["seq"] == seq)
            admin.wait_until(counted_once(seq, 12), f"change {seq} shown once, sent to 12")
            initial = [e for e in admin.get()["events"] if e["event"] == "dashboard:initial"]
            assert initial and all(e["recipients"] == 1 for e in initial)  # one socket each, never merged

            # A snapshot file that is not one leaves the figures of the others standing, on every worker.
            (run_dir / f"activity-{server.proc.pid}.json").write_bytes(b'{"v": 1, "at": "soon"}')
            for _ in range(8):
                figures = admin.get()
                assert (figures["subscribers"], figures["workers"], figures["unreadable"]) == (12, 4, 1)
        finally:
            for client in clients:
                client.disconnect()
        admin.wait_until(lambda f: f["subscribers"] == 0, "no sockets left")


def test_two_nodes_on_one_redis_count_each_others_sockets_and_events(live_server, tmp_path):
    require_redis()
    channel = unique("analytics-test")
    try:
        with servers_on(
            live_server.env["DATABASE_URL"],
            [tmp_path / "a", tmp_path / "b"],
            WEB_CONCURRENCY="2",
            REDIS_URL=REDIS_URL,
            REDIS_CHANNEL=channel,
            ACTIVITY_SHARE_INTERVAL=SHARE_INTERVAL,
        ) as (a, b):
            tenant, api_a = tenant_with_entity(a.url, ENTITY)
            dashboard_id = api_a.call("GET", f"/entities/{ENTITY}", 200)["dashboardId"]
            admin = AdminActivity(a, tenant, dashboard_id)
            clients = subscribe_clients([a, b], tenant, per_server=3)
            try:
                figures = admin.wait_until(lambda f: f["subscribers"] == 6, "6 sockets on two nodes")
                assert figures["scope"] == "cluster"
                assert figures["workers"] == 4
                assert figures["coverage"].startswith("4 workers of every server on this Redis")

                seq = api_a.ingest((ENTITY, "revenue", 7))["lastSeq"]
                for client in clients:
                    client.wait_for("metric:update", lambda d: d["seq"] == seq)
                admin.wait_until(counted_once(seq, 6), f"change {seq} shown once, sent to 6")
            finally:
                for client in clients:
                    client.disconnect()
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = [*client.scan_iter(match=f"{channel}:*"), *client.scan_iter(match=f"{channel}-*")]
        if keys:
            client.delete(*keys)
        client.close()
