"""GraphQL mutations reach subscribed sockets of a real server as their REST twins' writes do."""

import pytest
import requests

from testkit import mint_token
from testkit.clients import DEFAULT_TIMEOUT

pytestmark = pytest.mark.backends("sqlite")


def graphql(server, tenant, query, variables=None):
    """POST /graphql to the live server with an admin+ingest token of ``tenant``; return ``data``."""
    response = requests.post(
        server.url + "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {mint_token(tenant, roles=('admin', 'ingest'))}"},
        timeout=DEFAULT_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.json()
    return response.json()["data"]


def test_record_metrics_and_add_tile_reach_a_subscriber(live_server, tenant, entity, token_for, sio_client):
    entity_id, dashboard = entity
    client = sio_client(token_for(tenant))
    client.subscribe(entity_id)

    recorded = graphql(
        live_server,
        tenant,
        'mutation($e: String!) { recordMetrics(metrics: [{entityId: $e, metricName: "ticketsSold", value: 7}]) '
        "{ accepted lastSeq } }",
        {"e": entity_id},
    )["recordMetrics"]
    update = client.wait_for("metric:update", lambda u: u["metricName"] == "ticketsSold")
    assert (update["entityId"], update["value"], update["seq"]) == (entity_id, 7, recorded["lastSeq"])

    added = graphql(
        live_server,
        tenant,
        'mutation($d: Int!) { addTile(dashboardId: $d, tile: {title: "Queue", metricName: "queue", kind: "gauge"}) '
        "{ action version tile { id position title metricName kind unit thresholds } } }",
        {"d": dashboard["id"]},
    )["addTile"]
    change = client.wait_for("dashboard:update", lambda u: u["action"] == "added")
    assert change["dashboardId"] == dashboard["id"]
    assert (change["tile"], change["version"]) == (added["tile"], added["version"])
