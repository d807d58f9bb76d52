"""One tenant never reads, writes or even learns of another tenant's dashboards, entities and metrics.

Every query is scoped by tenant in SQL: both backends.
"""

from testkit import unique
from tests.api.conftest import NEW_TILE, assert_error, good, metrics_of


def test_other_tenant_cannot_read_entity_metrics(admin_api, other_api, entity):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 5))

    theirs = other_api.call("GET", f"/entities/{entity_id}/metrics")
    body = assert_error(theirs, 404, "ANALYTICS_1101")

    # Exactly what an entity that exists nowhere gets, apart from the id it names.
    nowhere = unique("event")
    unknown = assert_error(other_api.call("GET", f"/entities/{nowhere}/metrics"), 404, "ANALYTICS_1101")
    assert body["message"].replace(entity_id, "<id>") == unknown["message"].replace(nowhere, "<id>")
    assert_error(other_api.call("GET", f"/entities/{entity_id}"), 404, "ANALYTICS_1101")


def test_other_tenant_cannot_ingest_into_entity(admin_api, other_api, entity):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 5))
    before = metrics_of(admin_api, entity_id)

    response = other_api.call("POST", "/metrics", json=good(entity_id, 1))

    assert_error(response, 404, "ANALYTICS_1101", entity_id)
    assert metrics_of(admin_api, entity_id) == before


def test_same_entity_id_in_two_tenants_stays_apart(admin_api, other_api, entity):
    entity_id, _ = entity
    assert other_api.call("PUT", f"/entities/{entity_id}", 201, json={"entityType": "venue", "name": "Theirs"})
    admin_api.ingest((entity_id, "ticketsSold", 5))
    other_api.ingest((entity_id, "ticketsSold", 6))

    assert metrics_of(admin_api, entity_id)["ticketsSold"]["value"] == 5.0
    assert metrics_of(other_api, entity_id)["ticketsSold"]["value"] == 6.0
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["entityType"] == "event"
    assert other_api.call("GET", f"/entities/{entity_id}", 200)["entityType"] == "venue"


def test_other_tenant_does_not_see_dashboards_or_entities(admin_api, other_api, entity):
    _, dashboard = entity
    assert other_api.call("GET", "/dashboards", 200) == {"dashboards": []}
    assert other_api.call("GET", "/entities", 200) == {"entities": []}
    assert [d["id"] for d in admin_api.call("GET", "/dashboards", 200)["dashboards"]] == [dashboard["id"]]


def test_other_tenant_gets_404_for_dashboard_and_tiles(admin_api, other_api, entity):
    _, dashboard = entity
    dashboard_id = dashboard["id"]
    tile_ids = [t["id"] for t in dashboard["tiles"]]
    attempts = [
        ("GET", f"/dashboards/{dashboard_id}", None),
        ("POST", f"/dashboards/{dashboard_id}/tiles", NEW_TILE),
        ("PATCH", f"/dashboards/{dashboard_id}/tiles/{tile_ids[0]}", {"title": "Mine now"}),
        ("DELETE", f"/dashboards/{dashboard_id}/tiles/{tile_ids[0]}", None),
        ("PUT", f"/dashboards/{dashboard_id}/tiles/order", {"tileIds": tile_ids[::-1]}),
    ]
    unknown = assert_error(other_api.call("GET", "/dashboards/999999999"), 404, "ANALYTICS_1201")
    for method, path, body in attempts:
        response = other_api.call(method, path, json=body)
        error = assert_error(response, 404, "ANALYTICS_1201")
        assert error["message"] == unknown["message"].replace("999999999", str(dashboard_id)), (method, path)
    assert admin_api.call("GET", f"/dashboards/{dashboard_id}", 200) == dashboard


def test_other_tenant_cannot_attach_entity_to_dashboard(admin_api, other_api, entity):
    _, dashboard = entity
    response = other_api.call(
        "PUT", f"/entities/{unique('event')}", json={"entityType": "event", "dashboardId": dashboard["id"]}
    )
    assert_error(response, 404, "ANALYTICS_1201")
    assert other_api.call("GET", "/entities", 200) == {"entities": []}
