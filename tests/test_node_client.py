"""The seed document's socket.io-client 4.x example, run with Node against the live server.

tests/node/seed_example.mjs is the seed's own code (connect, subscribe, listen, cleanup),
changed only in URL, token and in printing one JSON line per event; these tests drive it
over stdin/stdout and check what a JavaScript client of the documented API really sees.
"""

import re
from datetime import datetime

import pytest

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
EXIT_DONE, EXIT_REFUSED = 0, 2


@pytest.fixture
def seed_example(live_server, node_client):
    """Start seed_example.mjs: ``seed_example(entity_id, token=None, transports="websocket")``.

    ``token=None`` connects without ``auth``. Every run started here is killed at teardown.
    """

    def start(entity_id, token=None, transports="websocket"):
        return node_client(live_server.url, entity_id, token, transports)

    return start


@pytest.mark.parametrize(
    ("transports", "first_transport"),
    [("websocket", "websocket"), ("default", "polling")],
    ids=["websocket", "default-polling-upgrade"],
)
def test_seed_example_receives_snapshot_metrics_and_layout_changes(
    admin_api, entity, token_for, tenant, seed_example, transports, first_transport
):
    entity_id, dashboard = entity
    admin_api.ingest((entity_id, "ticketsSold", 10), (entity_id, "revenue", 450.5))
    node = seed_example(entity_id, token_for(tenant), transports)

    assert node.wait_for("open") == {"transport": first_transport}
    node.wait_for("connect")
    initial = node.wait_for("dashboard:initial")
    node.wait_for("ready")
    assert initial["entityId"] == entity_id
    assert initial["entityType"] == "event"
    assert initial["metrics"] == {"ticketsSold": 10, "revenue": 450.5}
    assert [t["id"] for t in initial["tiles"]] == [t["id"] for t in dashboard["tiles"]]
    assert [t["metricName"] for t in initial["tiles"]] == ["ticketsSold", "revenue"]
    assert isinstance(initial["seq"], int)

    written = admin_api.ingest((entity_id, "ticketsSold", 11), (entity_id, "revenue", 512.25))
    tickets = node.wait_for("metric:update", lambda d: d["metricName"] == "ticketsSold")
    revenue = node.wait_for("metric:update", lambda d: d["metricName"] == "revenue")
    assert tickets["value"] == 11
    assert revenue["value"] == 512.25
    for update in (tickets, revenue):
        assert update["entityId"] == entity_id
        assert ISO_UTC.match(update["timestamp"]), update["timestamp"]
        assert datetime.fromisoformat(update["timestamp"]).utcoffset().total_seconds() == 0
        assert initial["seq"] < update["seq"] <= written["lastSeq"]

    added = admin_api.call(
        "POST",
        f"/dashboards/{dashboard['id']}/tiles",
        201,
        json={"title": "Visitors", "metricName": "visitors", "kind": "number"},
    )
    update = node.wait_for("dashboard:update")
    assert update["dashboardId"] == dashboard["id"]
    assert update["action"] == "added"
    assert update["tile"] == added["tile"]
    assert update["tile"]["title"] == "Visitors"
    assert update["tile"]["metricName"] == "visitors"
    assert update["tile"]["kind"] == "number"
    assert update["version"] == added["version"]

    if first_transport == "polling":
        assert node.wait_for("upgrade") == {"transport": "websocket"}

    node.send("cleanup")
    assert node.wait_exit() == EXIT_DONE, node.describe()
    assert node.of("disconnect") == ["io client disconnect"]
    assert node.events[-1] == {"event": "done"}
    assert node.of("error") == []
    assert node.of("connect_error") == []
    assert len(node.of("dashboard:initial")) == 1


@pytest.mark.parametrize(
    ("token", "message", "code"),
    [
        ("bad", "invalid token: malformed", "ANALYTICS_1002"),
        ({"key": "another-secret-" + "x" * 32}, "invalid token: Signature verification failed", "ANALYTICS_1002"),
        ({"ttl": -60}, "token expired", "ANALYTICS_1003"),
        (None, "missing token", "ANALYTICS_1001"),
    ],
    ids=["bad", "wrong-key", "expired", "no-auth"],
)
def test_seed_example_is_told_why_it_was_refused(entity, token_for, tenant, seed_example, token, message, code):
    """``token`` is sent as is, or minted with these arguments when a dict; None connects without ``auth``."""
    entity_id, _ = entity
    if isinstance(token, dict):
        token = token_for(tenant, **token)
    node = seed_example(entity_id, token)

    error = node.wait_for("connect_error")
    assert node.wait_exit() == EXIT_REFUSED, node.describe()
    assert error["message"] == message
    assert error["data"] == {"code": code, "message": message}
    # A refused namespace is final: the seed's reconnection options do not retry it.
    assert error["active"] is False
    assert len(node.of("connect_error")) == 1
    assert node.of("connect") == []
    assert node.of("dashboard:initial") == []


def test_seed_example_follows_a_replaced_dashboard_and_hears_of_a_removed_entity(
    admin_api, entity, token_for, tenant, seed_example
):
    entity_id, _ = entity
    new = admin_api.create_dashboard("New", [{"title": "Gate", "metricName": "gate", "kind": "gauge", "unit": "%"}])
    node = seed_example(entity_id, token_for(tenant))
    node.wait_for("ready")

    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": new["id"]})
    replaced = node.wait_for("dashboard:update")
    assert replaced == {
        "entityId": entity_id,
        "dashboardId": new["id"],
        "action": "replaced",
        "tiles": new["tiles"],
        "version": 1,
        "history": {},
        "seq": replaced["seq"],
    }

    admin_api.call("DELETE", f"/entities/{entity_id}", 204)
    assert node.wait_for("error") == {"code": "ANALYTICS_1101", "message": f"entity {entity_id!r} was removed"}
    node.send("cleanup")
    assert node.wait_exit() == EXIT_DONE, node.describe()
    assert node.of("disconnect") == ["io client disconnect"]
