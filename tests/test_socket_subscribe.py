"""subscribe / unsubscribe, dashboard:initial, metric:update and dashboard:update over real sockets."""

import pytest

from testkit import unique

TRANSPORTS = [("websocket",), ("polling", "websocket"), ("polling",)]


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling-upgrade", "polling-only"])
def test_subscribe_sends_snapshot_then_live_updates(
    live_server, admin_api, entity, token_for, tenant, sio_client, transports
):
    entity_id, dashboard = entity
    admin_api.ingest((entity_id, "ticketsSold", 10), (entity_id, "revenue", 450.5))
    client = sio_client(token_for(tenant), transports=transports)

    initial = client.subscribe(entity_id)

    assert initial["entityId"] == entity_id
    assert initial["entityType"] == "event"
    assert initial["metrics"] == {"ticketsSold": 10.0, "revenue": 450.5}
    assert [t["metricName"] for t in initial["tiles"]] == ["ticketsSold", "revenue"]
    assert [t["id"] for t in initial["tiles"]] == [t["id"] for t in dashboard["tiles"]]
    assert isinstance(initial["seq"], int)

    written = admin_api.ingest((entity_id, "ticketsSold", 11))
    update = client.wait_for("metric:update", lambda d: d["value"] == 11.0)
    assert update["entityId"] == entity_id
    assert update["metricName"] == "ticketsSold"
    assert update["timestamp"].endswith("Z")
    assert update["seq"] == written["lastSeq"]
    assert update["seq"] > initial["seq"]


def test_unsubscribe_stops_updates_for_that_entity_only(admin_api, entity, token_for, tenant, sio_client):
    entity_id, dashboard = entity
    other = unique("event")
    admin_api.put_entity(other, "event", dashboard["id"])
    client = sio_client(token_for(tenant))
    client.subscribe(entity_id)
    client.subscribe(other)

    assert client.call("unsubscribe", {"entityId": entity_id}) == {"ok": True}
    admin_api.ingest((entity_id, "ticketsSold", 1))
    admin_api.ingest((other, "ticketsSold", 2))

    # Changes go out in seq order on one socket: once the later one is here, the earlier one would be too.
    client.wait_for("metric:update", lambda d: d["entityId"] == other)
    assert [d for d in client.of("metric:update") if d["entityId"] == entity_id] == []


def test_subscribing_twice_is_harmless(admin_api, entity, token_for, tenant, sio_client):
    entity_id, _ = entity
    client = sio_client(token_for(tenant))
    client.subscribe(entity_id)
    client.subscribe(entity_id)
    admin_api.ingest((entity_id, "revenue", 5))
    client.wait_for("metric:update", lambda d: d["value"] == 5.0)
    admin_api.ingest((entity_id, "revenue", 6))
    client.wait_for("metric:update", lambda d: d["value"] == 6.0)
    assert [d["value"] for d in client.of("metric:update")] == [5.0, 6.0]
    assert len(client.of("dashboard:initial")) == 2
