"""Entities under /api/v1/entities: register, rename, and the changes that are refused.

What is stored and the conflicts checked against stored rows run on both backends;
input refused before any SQL runs on SQLite only.
"""

import pytest

from testkit import unique
from tests.api.conftest import ENTITY_TYPE_ERROR, assert_error

sqlite_only = pytest.mark.backends("sqlite")


def test_put_entity_creates_then_renames(admin_api):
    dashboard = admin_api.create_dashboard()
    entity_id = unique("event")

    created = admin_api.call(
        "PUT",
        f"/entities/{entity_id}",
        201,
        json={"entityType": "event", "name": "Festival", "dashboardId": dashboard["id"]},
    )
    assert created == {"entityId": entity_id, "entityType": "event", "name": "Festival", "dashboardId": dashboard["id"]}

    renamed = admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "name": "Festival 2"})
    assert renamed == {**created, "name": "Festival 2"}

    same = admin_api.call(
        "PUT",
        f"/entities/{entity_id}",
        200,
        json={"entityType": "event", "name": "  Festival 3 ", "dashboardId": dashboard["id"]},
    )
    assert same == {**created, "name": "Festival 3"}
    assert admin_api.call("GET", f"/entities/{entity_id}", 200) == same


def test_put_entity_without_dashboard(admin_api):
    entity_id = unique("venue")
    created = admin_api.call("PUT", f"/entities/{entity_id}", 201, json={"entityType": "venue"})
    assert created == {"entityId": entity_id, "entityType": "venue", "name": "", "dashboardId": None}


# Refused before anything is written; the one lookup (an unknown dashboard) runs on both backends
# in test_tenant_isolation.py, where the dashboard is another tenant's.
BAD_ENTITY_BODIES = [
    # (id, body, status, code, message fragment)
    ("unknown-type", {"entityType": "concert"}, 400, "ANALYTICS_1200", ENTITY_TYPE_ERROR),
    ("missing-type", {"name": "no type"}, 400, "ANALYTICS_1200", ENTITY_TYPE_ERROR),
    ("type-wrong-case", {"entityType": "EVENT"}, 400, "ANALYTICS_1200", ENTITY_TYPE_ERROR),
    ("name-not-string", {"entityType": "event", "name": 5}, 400, "ANALYTICS_1200", "name"),
    ("name-over-200", {"entityType": "event", "name": "n" * 201}, 400, "ANALYTICS_1200", "name"),
    ("dashboard-id-string", {"entityType": "event", "dashboardId": "1"}, 400, "ANALYTICS_1200", "dashboardId"),
    ("dashboard-id-bool", {"entityType": "event", "dashboardId": True}, 400, "ANALYTICS_1200", "dashboardId"),
    ("unknown-dashboard", {"entityType": "event", "dashboardId": 999999999}, 404, "ANALYTICS_1201", "999999999"),
    ("list-body", ["event"], 400, "ANALYTICS_1200", "object"),
]


@sqlite_only
@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [c[1:] for c in BAD_ENTITY_BODIES],
    ids=[c[0] for c in BAD_ENTITY_BODIES],
)
def test_put_entity_with_a_bad_body_creates_nothing(admin_api, body, status, code, fragment):
    entity_id = unique("event")
    assert_error(admin_api.call("PUT", f"/entities/{entity_id}", json=body), status, code, fragment)
    assert_error(admin_api.call("GET", f"/entities/{entity_id}"), 404, "ANALYTICS_1101")
    assert admin_api.call("GET", "/entities", 200) == {"entities": []}


def test_entity_id_over_128_characters_is_refused(admin_api):
    response = admin_api.call("PUT", f"/entities/{'e' * 129}", json={"entityType": "event"})
    assert_error(response, 400, "ANALYTICS_1200", "entityId")
    assert admin_api.call("PUT", f"/entities/{'e' * 128}", 201, json={"entityType": "event"})["entityId"] == "e" * 128


@sqlite_only
def test_blank_entity_id_is_refused(admin_api):
    response = admin_api.call("PUT", "/entities/%20%20", json={"entityType": "event"})
    assert_error(response, 400, "ANALYTICS_1200", "entityId")


def test_changing_the_type_of_an_entity_is_409(admin_api, entity):
    entity_id, _ = entity
    response = admin_api.call("PUT", f"/entities/{entity_id}", json={"entityType": "venue", "name": "x"})
    assert_error(response, 409, "ANALYTICS_1202", "event")
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["entityType"] == "event"


def test_list_entities_shows_only_the_tenants_own(admin_api, other_api, entity):
    entity_id, dashboard = entity
    venue = unique("venue")
    admin_api.put_entity(venue, "venue", name="Arena")
    other_api.put_entity(unique("theirs"), "event")

    listed = admin_api.call("GET", "/entities", 200)["entities"]

    assert sorted(listed, key=lambda e: e["entityId"]) == listed
    assert {e["entityId"]: e for e in listed} == {
        entity_id: {
            "entityId": entity_id,
            "entityType": "event",
            "name": "Test entity",
            "dashboardId": dashboard["id"],
        },
        venue: {"entityId": venue, "entityType": "venue", "name": "Arena", "dashboardId": None},
    }
