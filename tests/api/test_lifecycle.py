"""Dashboard and entity lifecycle over REST: attach, replace, detach, rename, copy, delete, register on first write.

What the change log records for subscribers is checked here row by row; that the rows
reach sockets (once, in order, on every worker and node) is tests/test_lifecycle.py's.
Writes that lock or race run on both backends; input refused before any SQL on SQLite only.
"""

import json
import threading
import time

import pytest

from testkit import unique
from tests.api.conftest import NEW_TILE, assert_error, good, metrics_of

sqlite_only = pytest.mark.backends("sqlite")


def entity_changes(database, tenant):
    """The tenant's entity changes in the change log: ``[(entity_id, payload)]`` in seq order."""
    rows = database.execute(
        "SELECT entity_id, payload FROM change_log WHERE tenant_id = ? AND kind = 'entity' ORDER BY seq", (tenant,)
    )
    # psycopg parses a json column; sqlite3 gives its text.
    return [(entity_id, json.loads(payload) if isinstance(payload, str) else payload) for entity_id, payload in rows]


def change_log_size(database, tenant):
    return database.scalar("SELECT count(*) FROM change_log WHERE tenant_id = ?", (tenant,))


def put(api, entity_id, expect=None, **body):
    return api.call("PUT", f"/entities/{entity_id}", expect, json={"entityType": "event", **body})


# --- attach, replace, detach ---------------------------------------------------------------------------------------


def test_attach_replace_and_detach_an_existing_entity(admin_api, database, tenant):
    first = admin_api.create_dashboard("First")
    second = admin_api.create_dashboard("Second", [{"title": "Gate", "metricName": "gate", "kind": "gauge"}])
    entity_id = unique("venue")
    put(admin_api, entity_id, 201, name="Arena")

    attached = put(admin_api, entity_id, 200, dashboardId=first["id"])
    assert attached == {"entityId": entity_id, "entityType": "event", "name": "Arena", "dashboardId": first["id"]}
    replaced = put(admin_api, entity_id, 200, dashboardId=second["id"])
    assert replaced["dashboardId"] == second["id"]
    kept = put(admin_api, entity_id, 200, name="Arena 2")  # no dashboardId: the dashboard stays
    assert kept == {**replaced, "name": "Arena 2"}
    detached = put(admin_api, entity_id, 200, dashboardId=None)
    assert detached["dashboardId"] is None
    assert admin_api.call("GET", f"/entities/{entity_id}", 200) == detached

    assert entity_changes(database, tenant) == [
        (
            entity_id,
            {
                "action": "replaced",
                "previousDashboardId": None,
                "dashboardId": first["id"],
                "version": 1,
                "tiles": first["tiles"],
            },
        ),
        (
            entity_id,
            {
                "action": "replaced",
                "previousDashboardId": first["id"],
                "dashboardId": second["id"],
                "version": 1,
                "tiles": second["tiles"],
            },
        ),
        (
            entity_id,
            {
                "action": "replaced",
                "previousDashboardId": second["id"],
                "dashboardId": None,
                "version": None,
                "tiles": [],
            },
        ),
    ]


def test_attaching_the_dashboard_it_shows_already_logs_nothing(admin_api, database, tenant, entity):
    entity_id, dashboard = entity
    before = change_log_size(database, tenant)
    assert (
        put(admin_api, entity_id, 200, dashboardId=dashboard["id"], name="Test entity")["dashboardId"]
        == dashboard["id"]
    )
    assert change_log_size(database, tenant) == before


def test_replace_carries_the_new_dashboards_current_tiles_and_version(admin_api, database, tenant, entity):
    entity_id, _ = entity
    other = admin_api.create_dashboard("Other")
    admin_api.call("POST", f"/dashboards/{other['id']}/tiles", 201, json=NEW_TILE)
    current = admin_api.dashboard(other["id"])

    put(admin_api, entity_id, 200, dashboardId=other["id"])

    (_, payload), *_ = entity_changes(database, tenant)
    assert (payload["version"], payload["tiles"]) == (2, current["tiles"])


@pytest.mark.parametrize(
    ("dashboard_id", "status", "code"),
    [
        (999999999, 404, "ANALYTICS_1201"),
        ("2", 400, "ANALYTICS_1200"),
        (1.5, 400, "ANALYTICS_1200"),
        (True, 400, "ANALYTICS_1200"),
    ],
    ids=["unknown", "string", "float", "bool"],
)
def test_a_failed_attach_leaves_the_old_dashboard_and_logs_nothing(
    admin_api, database, tenant, entity, dashboard_id, status, code
):
    entity_id, dashboard = entity
    before = change_log_size(database, tenant)
    response = admin_api.call(
        "PUT", f"/entities/{entity_id}", json={"entityType": "event", "name": "Renamed", "dashboardId": dashboard_id}
    )
    assert_error(response, status, code, "dashboardId" if status == 400 else str(dashboard_id))
    assert admin_api.call("GET", f"/entities/{entity_id}", 200) == {
        "entityId": entity_id,
        "entityType": "event",
        "name": "Test entity",  # the rename in the same request did not happen either
        "dashboardId": dashboard["id"],
    }
    assert change_log_size(database, tenant) == before


def test_another_tenants_dashboard_cannot_be_attached(admin_api, other_api, database, tenant, entity):
    entity_id, dashboard = entity
    theirs = other_api.create_dashboard("Theirs")
    response = put(admin_api, entity_id, dashboardId=theirs["id"])
    assert_error(response, 404, "ANALYTICS_1201", str(theirs["id"]))
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] == dashboard["id"]
    assert entity_changes(database, tenant) == []


@sqlite_only
def test_unknown_entity_fields_are_refused(admin_api):
    response = put(admin_api, unique("event"), dashboardId=None, colour="red")
    assert_error(response, 400, "ANALYTICS_1200", "colour")


# --- rename and copy -----------------------------------------------------------------------------------------------


def test_rename_keeps_version_and_tiles(admin_api, entity):
    _, dashboard = entity
    renamed = admin_api.call("PATCH", f"/dashboards/{dashboard['id']}", 200, json={"name": "Renamed"})
    assert renamed == {**dashboard, "name": "Renamed"}
    assert admin_api.dashboard(dashboard["id"]) == renamed


def test_stale_rename_is_409_and_changes_nothing(admin_api, entity):
    _, dashboard = entity
    admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    for how in (
        {"json": {"name": "Mine", "expectedVersion": 1}},
        {"json": {"name": "Mine"}, "headers": {"If-Match": '"1"'}},
    ):
        assert_error(
            admin_api.call("PATCH", f"/dashboards/{dashboard['id']}", **how), 409, "ANALYTICS_1202", "version 2"
        )
    assert admin_api.dashboard(dashboard["id"])["name"] == "Overview"
    current = admin_api.call(
        "PATCH", f"/dashboards/{dashboard['id']}", 200, json={"name": "Mine", "expectedVersion": 2}
    )
    assert current["name"] == "Mine"


@sqlite_only
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "name is required"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"name": "X", "tiles": []}, "tiles"),
        (["X"], "object"),
    ],
    ids=["no-name", "empty", "over-200", "not-string", "unknown-field", "list-body"],
)
def test_bad_rename_is_400(admin_api, entity, body, fragment):
    _, dashboard = entity
    assert_error(admin_api.call("PATCH", f"/dashboards/{dashboard['id']}", json=body), 400, "ANALYTICS_1200", fragment)
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_copy_of_a_dashboard_has_its_tiles_as_they_are_now(admin_api, entity):
    _, dashboard = entity
    admin_api.call(
        "PATCH",
        f"/dashboards/{dashboard['id']}/tiles/{dashboard['tiles'][0]['id']}",
        200,
        json={"thresholds": {"warning": 5}},
    )
    source = admin_api.dashboard(dashboard["id"])
    copy = admin_api.call("POST", "/dashboards", 201, json={"name": "Copy", "copyOf": dashboard["id"]})

    assert (copy["name"], copy["version"]) == ("Copy", 1)
    assert copy["id"] != dashboard["id"]
    strip = lambda tiles: [{k: v for k, v in t.items() if k != "id"} for t in tiles]  # noqa: E731
    assert strip(copy["tiles"]) == strip(source["tiles"])
    assert not {t["id"] for t in copy["tiles"]} & {t["id"] for t in source["tiles"]}


def test_copy_of_another_tenants_dashboard_is_404(admin_api, other_api):
    theirs = other_api.create_dashboard("Theirs")
    response = admin_api.call("POST", "/dashboards", json={"name": "Copy", "copyOf": theirs["id"]})
    assert_error(response, 404, "ANALYTICS_1201", str(theirs["id"]))
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}


@sqlite_only
@pytest.mark.parametrize(
    ("body", "fragment"),
    [({"name": "C", "copyOf": "1"}, "copyOf"), ({"name": "C", "copyOf": 1, "tiles": []}, "not both")],
    ids=["copy-of-string", "copy-and-tiles"],
)
def test_bad_copy_is_400(admin_api, body, fragment):
    assert_error(admin_api.call("POST", "/dashboards", json=body), 400, "ANALYTICS_1200", fragment)


# --- delete --------------------------------------------------------------------------------------------------------


def test_delete_dashboard_detaches_its_entities_then_removes_it(admin_api, database, tenant, entity):
    entity_id, dashboard = entity
    second = unique("venue")
    admin_api.put_entity(second, "venue", dashboard["id"])
    elsewhere = unique("event")
    other = admin_api.create_dashboard("Other")
    admin_api.put_entity(elsewhere, "event", other["id"])

    answer = admin_api.call("DELETE", f"/dashboards/{dashboard['id']}", 200)

    assert answer == {"id": dashboard["id"], "detached": sorted([entity_id, second])}
    assert_error(admin_api.call("GET", f"/dashboards/{dashboard['id']}"), 404, "ANALYTICS_1201")
    assert [d["id"] for d in admin_api.call("GET", "/dashboards", 200)["dashboards"]] == [other["id"]]
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] is None
    assert admin_api.call("GET", f"/entities/{elsewhere}", 200)["dashboardId"] == other["id"]
    changes = [(e, p["previousDashboardId"], p["dashboardId"]) for e, p in entity_changes(database, tenant)]
    assert sorted(changes) == sorted([(entity_id, dashboard["id"], None), (second, dashboard["id"], None)])
    assert database.scalar("SELECT count(*) FROM tiles WHERE dashboard_id = ?", (dashboard["id"],)) == 0
    assert_error(admin_api.call("DELETE", f"/dashboards/{dashboard['id']}"), 404, "ANALYTICS_1201")


def test_stale_delete_dashboard_is_409_and_changes_nothing(admin_api, entity):
    entity_id, dashboard = entity
    admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    response = admin_api.call("DELETE", f"/dashboards/{dashboard['id']}", headers={"If-Match": '"1"'})
    assert_error(response, 409, "ANALYTICS_1202", "version 2")
    assert admin_api.dashboard(dashboard["id"])["version"] == 2
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] == dashboard["id"]
    admin_api.call("DELETE", f"/dashboards/{dashboard['id']}", 200, headers={"If-Match": '"2"'})


def test_delete_entity_removes_it_and_its_values(admin_api, database, tenant, entity):
    entity_id, dashboard = entity
    admin_api.ingest((entity_id, "ticketsSold", 5))

    assert admin_api.call("DELETE", f"/entities/{entity_id}", 204) is None

    for path in (f"/entities/{entity_id}", f"/entities/{entity_id}/metrics"):
        assert_error(admin_api.call("GET", path), 404, "ANALYTICS_1101")
    assert database.scalar("SELECT count(*) FROM metric_values WHERE tenant_id = ?", (tenant,)) == 0
    assert entity_changes(database, tenant)[-1] == (
        entity_id,
        {"action": "deleted", "previousDashboardId": dashboard["id"], "dashboardId": None},
    )
    assert admin_api.dashboard(dashboard["id"]) == dashboard  # the dashboard stays
    assert_error(admin_api.call("DELETE", f"/entities/{entity_id}"), 404, "ANALYTICS_1101")
    assert_error(admin_api.call("POST", "/metrics", json=good(entity_id)), 404, "ANALYTICS_1101")

    # Registered again, it starts with no values.
    admin_api.put_entity(entity_id, "event", dashboard["id"])
    assert metrics_of(admin_api, entity_id) == {}


def test_another_tenants_ids_are_404_as_if_missing(admin_api, other_api, entity):
    entity_id, dashboard = entity
    # (method, collection, their id, a missing id, body, code): each id is put in its own path and message, so no
    # id can be found inside another (a dashboard id 71 is part of an entity id "event-971c...").
    attempts = [
        ("DELETE", "dashboards", str(dashboard["id"]), "999999999", None, "ANALYTICS_1201"),
        ("PATCH", "dashboards", str(dashboard["id"]), "999999999", {"name": "Mine"}, "ANALYTICS_1201"),
        ("DELETE", "entities", entity_id, "nothing", None, "ANALYTICS_1101"),
    ]
    for method, collection, their_id, missing_id, body, code in attempts:
        theirs = assert_error(other_api.call(method, f"/{collection}/{their_id}", json=body), 404, code)
        missing = assert_error(other_api.call(method, f"/{collection}/{missing_id}", json=body), 404, code)
        assert their_id in theirs["message"]
        assert theirs["message"].replace(their_id, "X") == missing["message"].replace(missing_id, "X")
    assert admin_api.dashboard(dashboard["id"]) == dashboard
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] == dashboard["id"]


# --- register on first write ---------------------------------------------------------------------------------------


def test_a_write_naming_its_entity_type_registers_an_unknown_entity(admin_api, database, tenant):
    entity_id = unique("venue")
    body = {"metrics": [{**good(entity_id, 3), "entityType": "venue"}, {**good(entity_id, 4), "metricName": "other"}]}
    assert admin_api.call("POST", "/metrics", 201, json=body)["accepted"] == 2
    assert admin_api.call("GET", f"/entities/{entity_id}", 200) == {
        "entityId": entity_id,
        "entityType": "venue",
        "name": "",
        "dashboardId": None,
    }
    assert {name: m["value"] for name, m in metrics_of(admin_api, entity_id).items()} == {"ticketsSold": 3, "other": 4}
    assert entity_changes(database, tenant) == []  # nobody can be subscribed to an entity that did not exist


def test_without_an_entity_type_an_unknown_entity_stays_404(admin_api):
    entity_id = unique("event")
    assert_error(admin_api.call("POST", "/metrics", json=good(entity_id)), 404, "ANALYTICS_1101", entity_id)
    assert_error(admin_api.call("GET", f"/entities/{entity_id}"), 404, "ANALYTICS_1101")


def test_auto_registration_off_restores_404(app, admin_api, monkeypatch):
    monkeypatch.setitem(app.config, "AUTO_REGISTER_ENTITIES", False)
    entity_id = unique("event")
    response = admin_api.call("POST", "/metrics", json={**good(entity_id), "entityType": "event"})
    assert_error(response, 404, "ANALYTICS_1101", entity_id)
    assert admin_api.call("GET", "/entities", 200) == {"entities": []}


@pytest.mark.parametrize(
    "batch",
    [
        # A registered entity of another type: the whole batch is refused, the new entity too.
        lambda known, new: [{**good(new), "entityType": "venue"}, {**good(known), "entityType": "venue"}],
        # One new entity named with two types.
        lambda known, new: [{**good(new), "entityType": "venue"}, {**good(new), "entityType": "event"}],
        # A later point of the batch for an unknown entity without a type.
        lambda known, new: [{**good(new), "entityType": "venue"}, good(unique("nothing"))],
    ],
    ids=["type-of-registered-differs", "two-types-for-one-new", "unknown-without-type"],
)
def test_a_refused_batch_registers_and_writes_nothing(admin_api, database, tenant, entity, batch):
    known, _ = entity
    new = unique("venue")
    before = change_log_size(database, tenant)
    assert_error(admin_api.call("POST", "/metrics", json={"metrics": batch(known, new)}), 404, "ANALYTICS_1101")
    assert [e["entityId"] for e in admin_api.call("GET", "/entities", 200)["entities"]] == [known]
    assert change_log_size(database, tenant) == before


@sqlite_only
def test_an_entity_type_outside_entity_types_is_400(admin_api):
    body = {"metrics": [good(unique("x")) | {"entityType": "event"}, good(unique("x")) | {"entityType": "concert"}]}
    assert_error(admin_api.call("POST", "/metrics", json=body), 400, "ANALYTICS_1200", "metrics[1]: entityType")
    assert admin_api.call("GET", "/entities", 200) == {"entities": []}


def test_registration_stops_at_max_entities_per_tenant(app, admin_api, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_ENTITIES_PER_TENANT", 3)
    admin_api.put_entity(unique("event"), "event")
    batch = [{**good(unique("event")), "entityType": "event"} for _ in range(3)]
    assert_error(admin_api.call("POST", "/metrics", json={"metrics": batch}), 409, "ANALYTICS_1206", "3")
    admin_api.call("POST", "/metrics", 201, json={"metrics": batch[:2]})
    assert len(admin_api.call("GET", "/entities", 200)["entities"]) == 3
    response = admin_api.call("PUT", f"/entities/{unique('event')}", json={"entityType": "event"})
    assert_error(response, 409, "ANALYTICS_1206", "MAX_ENTITIES_PER_TENANT")


def test_two_batches_registering_one_entity_at_once_give_one_entity_and_both_writes(app, admin_api, database, tenant):
    """On PostgreSQL the second registration waits for the first's row, then finds it; on SQLite writers take turns."""
    for _ in range(5):
        entity_id = unique("venue")
        barrier = threading.Barrier(2)
        statuses = []

        def write(metric, entity_id=entity_id, barrier=barrier, statuses=statuses):
            client = app.test_client()
            barrier.wait()
            response = client.post(
                "/api/v1/metrics",
                json={"entityId": entity_id, "entityType": "venue", "metricName": metric, "value": 1},
                headers=admin_api.headers,
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=write, args=(m,)) for m in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [201, 201]
        assert (
            database.scalar("SELECT count(*) FROM entities WHERE tenant_id = ? AND entity_id = ?", (tenant, entity_id))
            == 1
        )
        assert set(metrics_of(admin_api, entity_id)) == {"a", "b"}


@pytest.mark.backends("postgresql")  # SQLite writers take turns: none can run while another holds the write lock
def test_a_registration_waits_for_a_concurrent_uncommitted_one_and_uses_its_entity(app, admin_api, database, tenant):
    """The PostgreSQL race made certain: another transaction has inserted the entity and not committed yet."""
    entity_id = unique("venue")
    statuses = []
    client = app.test_client()
    writer = threading.Thread(
        target=lambda: statuses.append(
            client.post(
                "/api/v1/metrics",
                json={"entityId": entity_id, "entityType": "venue", "metricName": "m", "value": 1},
                headers=admin_api.headers,
            ).status_code
        )
    )
    with database.transaction() as holder:
        holder.execute(
            "INSERT INTO entities (tenant_id, entity_id, entity_type, name) VALUES (?, ?, 'venue', 'held')",
            (tenant, entity_id),
        )
        writer.start()
        wait_for_a_lock_waiter(database)
    writer.join()
    assert statuses == [201]
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["name"] == "held"
    assert metrics_of(admin_api, entity_id)["m"]["value"] == 1


def wait_for_a_lock_waiter(database, timeout=10):
    """Wait until some PostgreSQL backend waits for a lock (the writer, on the held row)."""
    deadline = time.monotonic() + timeout
    while not database.scalar("SELECT count(*) FROM pg_locks WHERE NOT granted"):
        assert time.monotonic() < deadline, "the writer never waited for the held registration"
        time.sleep(0.01)
