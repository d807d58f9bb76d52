"""Two server processes on one database: a change made through either reaches sockets held by both."""

import pytest

from testkit import Api, RecordingClient, mint_token, server_on, unique


@pytest.fixture
def two_servers(tmp_path, live_server):
    """Servers A and B, separate processes sharing one database: the session's server and one more on its database."""
    with server_on(live_server.env["DATABASE_URL"], tmp_path) as b:
        yield live_server, b


def test_changes_made_through_one_process_reach_sockets_of_the_other(two_servers):
    a, b = two_servers
    tenant = unique("tenant")
    api_a = Api(a.url, mint_token(tenant, roles=("admin", "ingest")))
    api_b = Api(b.url, mint_token(tenant, roles=("admin", "ingest")))
    dashboard = api_a.create_dashboard()
    api_a.put_entity("event-1", "event", dashboard["id"])
    on_a = RecordingClient().connect(a.url, mint_token(tenant))
    on_b = RecordingClient().connect(b.url, mint_token(tenant))
    layout_on_b = RecordingClient("/analytics/dashboard").connect(b.url, mint_token(tenant))
    try:
        for client in (on_a, on_b, layout_on_b):
            client.subscribe("event-1")

        first = api_a.ingest(("event-1", "ticketsSold", 1))["lastSeq"]
        # Another metric: the same one twice could be conflated into one update, by design.
        second = api_b.ingest(("event-1", "revenue", 2))["lastSeq"]
        added = api_a.call(
            "POST",
            f"/dashboards/{dashboard['id']}/tiles",
            201,
            json={"title": "Gate", "metricName": "g", "kind": "gauge"},
        )
        for client in (on_a, on_b):
            client.wait_for("dashboard:update")
            updates = [(u["metricName"], u["value"], u["seq"]) for u in client.of("metric:update")]
            assert updates == [("ticketsSold", 1.0, first), ("revenue", 2.0, second)]
            assert [u["tile"] for u in client.of("dashboard:update")] == [added["tile"]]
        assert layout_on_b.wait_for("dashboard:update")["tile"] == added["tile"]
        assert layout_on_b.of("metric:update") == []
    finally:
        for client in (on_a, on_b, layout_on_b):
            client.disconnect()
