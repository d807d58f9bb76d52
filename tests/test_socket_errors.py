"""Bad input on a socket gets ``error {code, message}`` and never costs the connection.

What these check (validation, unknown entities, the per-connection cap, the rate limit) does not depend on SQL
behaviour: SQLite only.
"""

import pytest

from testkit import Api, unique

pytestmark = pytest.mark.backends("sqlite")

BAD_SUBSCRIBES = [
    pytest.param(None, "payload must be an object", id="no-payload"),
    pytest.param("event-1", "payload must be an object", id="string"),
    pytest.param(42, "payload must be an object", id="number"),
    pytest.param(["event-1", "event"], "payload must be an object", id="list"),
    pytest.param({}, "entityId is required", id="empty-object"),
    pytest.param({"entityType": "event"}, "entityId is required", id="missing-id"),
    pytest.param({"entityId": "", "entityType": "event"}, "entityId must not be empty", id="empty-id"),
    pytest.param({"entityId": "   ", "entityType": "event"}, "entityId must not be empty", id="blank-id"),
    pytest.param({"entityId": 123, "entityType": "event"}, "entityId must be a string", id="numeric-id"),
    pytest.param({"entityId": {"$ne": 1}, "entityType": "event"}, "entityId must be a string", id="object-id"),
    pytest.param({"entityId": "x" * 129, "entityType": "event"}, "entityId must be at most 128", id="oversized-id"),
    pytest.param({"entityId": "a\x00b", "entityType": "event"}, "entityId must not contain control", id="control"),
    pytest.param({"entityId": "event-1"}, "entityType must be one of", id="missing-type"),
    pytest.param({"entityId": "event-1", "entityType": "planet"}, "entityType must be one of", id="unknown-type"),
    pytest.param({"entityId": "event-1", "entityType": None}, "entityType must be one of", id="null-type"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_SUBSCRIBES)
def test_bad_subscribe_payload_is_refused_and_connection_survives(
    entity, token_for, tenant, sio_client, payload, message
):
    client = sio_client(token_for(tenant))
    answer = client.call("subscribe", payload)
    error = client.wait_for("error")
    assert error["code"] == "ANALYTICS_1100"
    assert error["message"].startswith(message)
    assert answer == {"ok": False, "error": error}
    # The same connection still works.
    assert client.subscribe(entity[0])["entityId"] == entity[0]


@pytest.mark.parametrize(
    "payload",
    [None, "x", [], {}, {"entityId": ""}, {"entityId": 5}, {"entityId": "y" * 200}],
    ids=["none", "string", "list", "empty", "empty-id", "numeric-id", "oversized"],
)
def test_bad_unsubscribe_payload_is_refused(token_for, tenant, sio_client, payload):
    client = sio_client(token_for(tenant))
    client.emit("unsubscribe", payload)
    assert client.wait_for("error")["code"] == "ANALYTICS_1100"
    assert client.client.connected


def test_unknown_entity_and_wrong_type_read_alike(admin_api, entity, token_for, tenant, sio_client):
    client = sio_client(token_for(tenant))
    client.emit("subscribe", {"entityId": "no-such-entity", "entityType": "event"})
    missing = client.wait_for("error")
    client.emit("subscribe", {"entityId": entity[0], "entityType": "venue"})
    wrong_type = client.wait_for("error", lambda e: entity[0] in e["message"])
    assert missing == {"code": "ANALYTICS_1101", "message": "unknown entity 'no-such-entity'"}
    assert wrong_type == {"code": "ANALYTICS_1101", "message": f"unknown entity {entity[0]!r}"}


def test_unknown_event_is_answered_with_an_error(token_for, tenant, sio_client):
    client = sio_client(token_for(tenant))
    client.emit("drop_tables", {"all": True})
    assert client.wait_for("error") == {"code": "ANALYTICS_1104", "message": "unknown event 'drop_tables'"}
    assert client.client.connected


def test_client_event_named_connect_cannot_reauthenticate(live_server, token_for, tenant, sio_client):
    victim = unique("victim")
    victim_api = Api(live_server.url, token_for(victim, roles=("admin",)))
    victim_api.put_entity("secret-event", "event")
    client = sio_client(token_for(tenant))

    client.client.emit("connect", ({}, {"token": token_for(victim)}), namespace="/dashboard")
    assert client.wait_for("error")["code"] == "ANALYTICS_1104"

    client.emit("subscribe", {"entityId": "secret-event", "entityType": "event"})
    assert client.wait_for("error", lambda e: e["code"] != "ANALYTICS_1104")["code"] == "ANALYTICS_1101"
    assert client.of("dashboard:initial") == []


def test_subscription_cap_per_connection(admin_api, entity, token_for, tenant, sio_client):
    # The test server allows 5 subscriptions per connection.
    dashboard_id = entity[1]["id"]
    ids = [entity[0]] + [unique("event") for _ in range(5)]
    for entity_id in ids[1:]:
        admin_api.put_entity(entity_id, "event", dashboard_id)
    client = sio_client(token_for(tenant))
    for entity_id in ids[:5]:
        client.subscribe(entity_id)

    assert client.call("subscribe", {"entityId": ids[5], "entityType": "event"})["ok"] is False
    assert client.wait_for("error")["code"] == "ANALYTICS_1102"
    # Re-subscribing to one it already has is fine, and unsubscribing frees a place.
    client.subscribe(ids[0])
    client.call("unsubscribe", {"entityId": ids[0]})
    assert client.subscribe(ids[5])["entityId"] == ids[5]


def test_flood_of_events_is_rate_limited_without_disconnect(token_for, tenant, sio_client):
    # The test server allows 200 events a second per socket.
    client = sio_client(token_for(tenant))
    for _ in range(400):
        client.emit("unsubscribe", {"entityId": "nothing"})
    assert client.wait_for("error", lambda e: e["code"] == "ANALYTICS_1103")["message"]
    assert client.client.connected
