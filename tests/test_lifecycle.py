"""Dashboard and entity lifecycle as subscribers see it, on real servers with real clients.

``replaced`` when an entity shows another dashboard (or none), ``error`` ANALYTICS_1101 when it
is removed: on both namespaces, once per socket, in change-log order with everything else, on
several workers and nodes; and never a layout change of a dashboard the entity no longer shows.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testkit import Api, RecordingClient, mint_token, servers_on, unique
from testkit.hostile import Bystander
from tests.api.conftest import NEW_TILE

UPDATES = "/analytics/dashboard"
GATE = [{"title": "Gate", "metricName": "gate", "kind": "gauge", "unit": "%"}]


@pytest.fixture
def clients():
    """Factory ``connect(server, tenant, namespace="/dashboard", *entity_ids)``; all disconnected at teardown."""
    made = []

    def connect(server, tenant, namespace="/dashboard", *entity_ids):
        client = RecordingClient(namespace).connect(server.url, mint_token(tenant))
        made.append(client)
        for entity_id in entity_ids:
            client.subscribe(entity_id)
        return client

    yield connect
    for client in made:
        client.disconnect()


def layout_updates(client, action=None):
    return [u for u in client.of("dashboard:update") if action is None or u["action"] == action]


def add_tile(api, dashboard_id, title="Queue"):
    return api.call("POST", f"/dashboards/{dashboard_id}/tiles", 201, json={**NEW_TILE, "title": title})


def test_replace_and_detach_reach_both_namespaces_once_and_only_the_new_dashboard_follows(
    live_server, tenant, admin_api, entity, clients
):
    entity_id, old = entity
    new = admin_api.create_dashboard("New", GATE)
    metrics = clients(live_server, tenant, "/dashboard", entity_id)
    layout = clients(live_server, tenant, UPDATES, entity_id)

    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": new["id"]})
    for client in (metrics, layout):
        replaced = client.wait_for("dashboard:update", lambda u: u["action"] == "replaced")
        assert replaced == {
            "entityId": entity_id,
            "dashboardId": new["id"],
            "action": "replaced",
            "tiles": new["tiles"],
            "version": 1,
            "history": {},
            "seq": replaced["seq"],
        }

    # The old dashboard's change reaches nobody; the new one's, changed after it, reaches both.
    add_tile(admin_api, old["id"], "Old")
    added = add_tile(admin_api, new["id"], "New")
    for client in (metrics, layout):
        update = client.wait_for("dashboard:update", lambda u: u["action"] == "added")
        assert (update["dashboardId"], update["tile"], update["version"]) == (new["id"], added["tile"], 2)

    # A later subscribe sees the new state.
    fresh = clients(live_server, tenant, "/dashboard")
    initial = fresh.subscribe(entity_id)
    assert (initial["dashboardId"], initial["version"]) == (new["id"], 2)
    assert initial["tiles"] == admin_api.dashboard(new["id"])["tiles"]

    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": None})
    for client in (metrics, layout, fresh):
        detached = client.wait_for("dashboard:update", lambda u: u["dashboardId"] is None)
        assert (detached["action"], detached["tiles"], detached["version"]) == ("replaced", [], None)
    add_tile(admin_api, new["id"], "After")
    fence = admin_api.ingest((entity_id, "ticketsSold", 1))["lastSeq"]
    metrics.wait_for("metric:update", lambda u: u["seq"] == fence)
    for client in (metrics, layout):
        assert [(u["action"], u["dashboardId"]) for u in layout_updates(client)] == [
            ("replaced", new["id"]),
            ("added", new["id"]),
            ("replaced", None),
        ]
    seqs = [u["seq"] for u in layout_updates(metrics)]
    assert seqs == sorted(seqs) and seqs == [u["seq"] for u in layout_updates(layout)]


def test_deleting_a_dashboard_leaves_each_of_its_entities_subscribers_with_none(
    live_server, tenant, admin_api, clients
):
    shared = admin_api.create_dashboard("Shared")
    first, second = unique("event"), unique("event")
    for entity_id in (first, second):
        admin_api.put_entity(entity_id, "event", shared["id"])
    both = clients(live_server, tenant, "/dashboard", first, second)
    layout = clients(live_server, tenant, UPDATES, second)

    # A socket subscribed to two entities of one dashboard gets each layout change once.
    add_tile(admin_api, shared["id"])
    for client in (both, layout):
        client.wait_for("dashboard:update")

    admin_api.call("DELETE", f"/dashboards/{shared['id']}", 200)
    both.wait_until(lambda c: len(layout_updates(c, "replaced")) == 2, what="two replaced")
    assert sorted((u["entityId"], u["dashboardId"]) for u in layout_updates(both, "replaced")) == sorted(
        [(first, None), (second, None)]
    )
    layout.wait_until(lambda c: layout_updates(c, "replaced"), what="replaced")
    assert [(u["entityId"], u["dashboardId"]) for u in layout_updates(layout, "replaced")] == [(second, None)]
    assert len(layout_updates(both, "added")) == 1


def test_two_entities_of_one_dashboard_on_one_socket_after_one_moves(live_server, tenant, admin_api, clients):
    old = admin_api.create_dashboard("Old")
    new = admin_api.create_dashboard("New", GATE)
    moving, staying = unique("event"), unique("event")
    for entity_id in (moving, staying):
        admin_api.put_entity(entity_id, "event", old["id"])
    client = clients(live_server, tenant, UPDATES, moving, staying)

    admin_api.call("PUT", f"/entities/{moving}", 200, json={"entityType": "event", "dashboardId": new["id"]})
    add_tile(admin_api, old["id"], "Old")  # still shown by `staying`
    add_tile(admin_api, new["id"], "New")  # shown by `moving` now
    client.wait_until(lambda c: len(layout_updates(c)) == 3, what="three updates")
    assert [(u["action"], u["dashboardId"], u.get("entityId")) for u in layout_updates(client)] == [
        ("replaced", new["id"], moving),
        ("added", old["id"], None),
        ("added", new["id"], None),
    ]


def test_removing_an_entity_tells_its_subscribers_and_unsubscribes_them(
    live_server, tenant, admin_api, entity, clients
):
    entity_id, dashboard = entity
    other = unique("venue")
    admin_api.put_entity(other, "venue", dashboard["id"])
    metrics = clients(live_server, tenant, "/dashboard")
    metrics.subscribe(entity_id)
    metrics.subscribe(other, "venue")
    layout = clients(live_server, tenant, UPDATES, entity_id)

    admin_api.call("DELETE", f"/entities/{entity_id}", 204)
    for client in (metrics, layout):
        assert client.wait_for("error") == {"code": "ANALYTICS_1101", "message": f"entity {entity_id!r} was removed"}

    # Still connected and subscribed to the other entity; the removed one's room is left: registered
    # again (on first write), its values reach nobody until a socket subscribes again.
    fence = admin_api.ingest((other, "ticketsSold", 1))["lastSeq"]
    assert metrics.wait_for("metric:update")["seq"] == fence
    body = {"entityId": entity_id, "entityType": "event", "metricName": "ticketsSold", "value": 2}
    admin_api.call("POST", "/metrics", 201, json=body)
    add_tile(admin_api, dashboard["id"])  # shown by `other` only
    metrics.wait_for("dashboard:update")
    fence = admin_api.ingest((other, "ticketsSold", 3))["lastSeq"]
    metrics.wait_for("metric:update", lambda u: u["seq"] == fence)
    assert [u["entityId"] for u in metrics.of("metric:update")] == [other, other]
    assert layout_updates(layout) == []
    assert len(metrics.of("error")) == len(layout.of("error")) == 1

    again = metrics.subscribe(entity_id)
    assert (again["dashboardId"], again["metrics"]) == (None, {"ticketsSold": 2.0})


def assert_follows_one_dashboard_at_a_time(client, first_dashboard, first_version):
    """Every layout change the client got is of the dashboard its entity showed then, each version once, in order."""
    showing, version = first_dashboard, first_version
    for update in layout_updates(client):
        if update["action"] == "replaced":
            showing, version = update["dashboardId"], update["version"]
            continue
        assert update["dashboardId"] == showing, (
            f"a change of dashboard {update['dashboardId']} while showing {showing}"
        )
        assert update["version"] == version + 1, (update, version)
        version = update["version"]


def test_replacing_while_both_dashboards_are_edited_never_mixes_them(live_server, tenant, admin_api, entity, clients):
    entity_id, first = entity
    second = admin_api.create_dashboard("Second", GATE)
    watchers = [clients(live_server, tenant, namespace, entity_id) for namespace in ("/dashboard", UPDATES)]
    stop = threading.Event()
    errors = []

    def edit(dashboard):
        tile_id = dashboard["tiles"][0]["id"]
        count = 0
        while not stop.is_set():
            count += 1
            response = admin_api.call(
                "PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json={"title": f"T{count}"}
            )
            if response.status_code != 200:
                errors.append(response.text)

    editors = [threading.Thread(target=edit, args=(d,), daemon=True) for d in (first, second)]
    for editor in editors:
        editor.start()
    try:
        for turn in range(8):
            target = second if turn % 2 == 0 else first
            admin_api.call(
                "PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": target["id"]}
            )
            for client in watchers:
                client.wait_until(lambda c, n=turn + 1: len(layout_updates(c, "replaced")) == n, what="replaced")
    finally:
        stop.set()
        for editor in editors:
            editor.join()
    assert not errors, errors[:3]
    # The last change of each dashboard, then a fence: everything before it has arrived.
    fence = add_tile(admin_api, first["id"], "Fence")
    for client in watchers:
        client.wait_until(lambda c: any(u.get("tile") == fence["tile"] for u in layout_updates(c)), what="the fence")
        assert len(layout_updates(client, "replaced")) == 8
        assert_follows_one_dashboard_at_a_time(client, first["id"], 1)


@pytest.mark.backends("sqlite", "postgresql")
def test_batches_registering_the_same_new_entities_at_once_make_one_entity_each(live_server, tenant, admin_api):
    entity_ids = [unique("venue") for _ in range(20)]

    def write(job):
        entity_id, metric = job
        body = {"entityId": entity_id, "entityType": "venue", "metricName": metric, "value": 1}
        return admin_api.call("POST", "/metrics", json=body).status_code

    jobs = [(entity_id, metric) for entity_id in entity_ids for metric in ("a", "b")]
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(write, jobs)) == {201}
    registered = [e["entityId"] for e in admin_api.call("GET", "/entities", 200)["entities"]]
    assert registered == sorted(entity_ids)
    for entity_id in entity_ids:
        assert set(admin_api.call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"]) == {"a", "b"}


def test_registering_entities_in_a_flood_stops_at_the_limit_and_a_bystander_is_served(tmp_path, live_server):
    with servers_on(live_server.env["DATABASE_URL"], [tmp_path / "limited"], MAX_ENTITIES_PER_TENANT="50") as (server,):
        tenant = unique("tenant")
        attacker = Api(server.url, mint_token(tenant, roles=("ingest",)))
        with Bystander(server.url) as bystander:

            def register(batch):
                body = {
                    "metrics": [
                        {"entityId": f"e{i}", "entityType": "event", "metricName": "m", "value": 1} for i in batch
                    ]
                }
                return attacker.call("POST", "/metrics", json=body).status_code

            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(register, [range(i, i + 10) for i in range(0, 400, 10)]))
            bystander.check()
        assert statuses.count(201) == 5 and set(statuses) == {201, 409}
        assert len(attacker.call("GET", "/entities", 200)["entities"]) == 50


# --- several workers and nodes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, live_server):
    """Two nodes of two workers each on the session server's database."""
    tmp = Path(tmp_path_factory.mktemp("lifecycle-nodes"))
    with servers_on(live_server.env["DATABASE_URL"], [tmp / "a", tmp / "b"], WEB_CONCURRENCY="2") as both:
        yield both


@pytest.mark.backends("postgresql")
def test_every_worker_and_node_delivers_replaced_and_removed_once(nodes, clients):
    a, b = nodes
    tenant = unique("tenant")
    token = mint_token(tenant, roles=("admin", "ingest"))
    api = Api(a.url, token)
    old = api.create_dashboard("Old")
    new = api.create_dashboard("New", GATE)
    entity_id = unique("event")
    api.put_entity(entity_id, "event", old["id"])
    watchers = [
        clients(server, tenant, namespace, entity_id)
        for server in (a, b)
        for namespace in ("/dashboard", UPDATES)
        for _ in range(3)
    ]

    Api(b.url, token).call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": new["id"]})
    added = add_tile(api, new["id"])
    for client in watchers:
        client.wait_for("dashboard:update", lambda u: u.get("tile") == added["tile"])
        assert [u["action"] for u in layout_updates(client)] == ["replaced", "added"]

    api.call("DELETE", f"/entities/{entity_id}", 204)
    for client in watchers:
        client.wait_for("error")
    # A fence each watcher's own worker delivers after anything it could still send twice.
    api.put_entity(entity_id, "event", new["id"])
    for client in watchers:
        client.subscribe(entity_id)
    fence = add_tile(api, new["id"], "Fence")
    for client in watchers:
        client.wait_for("dashboard:update", lambda u: u.get("tile") == fence["tile"])
        assert len(client.of("error")) == 1
        assert [u["action"] for u in layout_updates(client)] == ["replaced", "added", "added"]
