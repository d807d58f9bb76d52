"""Idle websockets held without a greenlet (``websocket.WebSocketTransport`` parks them), on a live gunicorn server.

Each test reads the worker's ``analytics_socket_parked_websockets`` gauge to know
the sockets really were parked, then checks that a parked socket is still served
both ways and ends the way an unparked one would.
"""

import json

import pytest
import requests

from testkit import (
    DEFAULT_TIMEOUT,
    RecordingClient,
    mint_token,
    running_server,
    tenant_with_entity,
    wait_for_metric,
)
from testkit.hostile import OPCODE_CLOSE, OPCODE_TEXT, Bystander, RawWebSocket, frame, websocket_when_there_is_room

pytestmark = pytest.mark.backends("sqlite")

PARKED = "analytics_socket_parked_websockets"
REFUSED = "analytics_socket_refusals_total"
SOCKETS = "analytics_socketio_connected_sockets"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("parking")) as server:
        yield server


def test_parked_websockets_get_updates_and_are_woken_by_what_their_clients_send(server):
    tenant, api = tenant_with_entity(server.url)
    clients = [RecordingClient() for _ in range(10)]
    for client in clients:
        client.connect(server.url, mint_token(tenant))
        client.subscribe("event-1")
    wait_for_metric(server.url, PARKED, 10)

    api.ingest(("event-1", "visitors", 1))
    for client in clients:
        client.wait_for("metric:update", lambda u: u["value"] == 1)

    # Each client's messages wake its socket; the server answers, and parks it again.
    for client in clients:
        assert client.call("unsubscribe", {"entityId": "event-1", "entityType": "event"})["ok"]
        assert client.subscribe("event-1")["entityId"] == "event-1"
    wait_for_metric(server.url, PARKED, 10)
    api.ingest(("event-1", "visitors", 2))
    for client in clients:
        client.wait_for("metric:update", lambda u: u["value"] == 2)
        assert [u["value"] for u in client.of("metric:update")] == [1, 2]

    for client in clients[:4]:
        client.disconnect()  # a close frame from the client wakes its socket, which ends
    wait_for_metric(server.url, PARKED, 6)
    wait_for_metric(server.url, SOCKETS, 6, namespace="/dashboard")
    for client in clients[4:]:
        client.disconnect()
    wait_for_metric(server.url, PARKED, 0)


def test_a_parked_connection_dropped_by_its_client_is_ended(server):
    tenant, _ = tenant_with_entity(server.url)
    raw = RawWebSocket(server.url)
    raw.send_text("40/dashboard," + json.dumps({"token": mint_token(tenant)}))
    _, payload = raw.read_frame()
    assert payload.startswith(b"40/dashboard,"), payload
    wait_for_metric(server.url, PARKED, 1)
    raw.close()  # no close frame: the connection just ends
    wait_for_metric(server.url, SOCKETS, 0, namespace="/dashboard")
    wait_for_metric(server.url, PARKED, 0)


def test_a_parked_connection_the_server_closes_ends_without_waiting_for_the_clients_answer(tmp_path):
    with running_server(tmp_path, SOCKET_CONNECT_TIMEOUT="1") as server, Bystander(server.url) as bystander:
        silent = [RawWebSocket(server.url) for _ in range(5)]  # no namespace, and no answer to the close frame
        for ws in silent:
            assert ws.close_code() == 1000
            assert ws.connected_until_closed(), "the server let go of the connection"
            ws.close()
        bystander.check()
        wait_for_metric(server.url, REFUSED, 5, reason="connect_timeout")
        wait_for_metric(server.url, PARKED, 1)  # the bystander's


def test_a_parked_connection_answers_a_ping_frame_and_a_close_frame(server):
    raw = RawWebSocket(server.url)
    wait_for_metric(server.url, PARKED, 1)
    raw.send(frame(0x9, b"are you there"))  # a websocket PING
    assert raw.read_frame() == (0xA, b"are you there")
    raw.send(frame(OPCODE_CLOSE, (1001).to_bytes(2, "big")))
    assert raw.close_code() == 1001
    assert raw.connected_until_closed()
    raw.close()
    wait_for_metric(server.url, PARKED, 0)


def test_a_message_arriving_in_pieces_at_a_parked_connection_is_read_whole(server):
    tenant, _ = tenant_with_entity(server.url)
    raw = RawWebSocket(server.url)
    wait_for_metric(server.url, PARKED, 1)
    connect = frame(OPCODE_TEXT, "40/dashboard," + json.dumps({"token": mint_token(tenant)}))
    for start in range(0, len(connect), 7):  # each piece wakes the socket, the reader waits for the rest
        raw.send(connect[start : start + 7])
    _, payload = raw.read_frame()
    assert payload.startswith(b"40/dashboard,"), payload
    raw.send(frame(OPCODE_CLOSE, b""))
    assert raw.close_code() == 1000
    raw.close()
    wait_for_metric(server.url, PARKED, 0)


def test_beyond_worker_connections_new_sessions_are_refused_503_and_held_ones_kept(tmp_path):
    with running_server(tmp_path, WORKER_CONNECTIONS="4") as server, Bystander(server.url) as bystander:
        held = [RawWebSocket(server.url) for _ in range(3)]  # with the bystander's, four sessions
        refused = RawWebSocket(server.url, expect_upgrade=False)
        assert refused.status == 503 and b"WORKER_CONNECTIONS" in refused.body()
        refused.close()
        polling = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=DEFAULT_TIMEOUT)
        assert polling.status_code == 503 and polling.json()["code"] == "ANALYTICS_1300"
        assert requests.get(server.url + "/healthz", timeout=DEFAULT_TIMEOUT).status_code == 200
        held[0].send(frame(OPCODE_CLOSE, b""))
        assert held[0].close_code() == 1000
        held[0].close()
        replacement = websocket_when_there_is_room(server.url)
        for ws in [*held[1:], replacement]:
            ws.close()
        bystander.check()
