"""Engine.IO heartbeat on a live server: every socket is pinged each interval, a silent client is dropped."""

import itertools
import json
import time

import pytest
import websocket

from testkit import DEFAULT_TIMEOUT, mint_token, running_server, unique

INTERVAL = 1  # SOCKET_PING_INTERVAL and SOCKET_PING_TIMEOUT of this module's server, in seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("keepalive"),
        SOCKET_PING_INTERVAL=str(INTERVAL),
        SOCKET_PING_TIMEOUT=str(INTERVAL),
    ) as live:
        yield live


def open_socket(server):
    """A raw Engine.IO websocket connected to /dashboard; returns it and the Engine.IO open packet's data."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=DEFAULT_TIMEOUT
    )
    opened = ws.recv()
    assert opened.startswith("0"), opened
    ws.send("40/dashboard," + json.dumps({"token": mint_token(unique("tenant"))}))
    assert ws.recv().startswith("40/dashboard,")
    return ws, json.loads(opened[1:])


def test_the_heartbeat_settings_reach_the_client(server):
    ws, opened = open_socket(server)
    try:
        assert opened["pingInterval"] == INTERVAL * 1000
        assert opened["pingTimeout"] == INTERVAL * 1000
    finally:
        ws.close()


def test_every_socket_is_pinged_each_interval_and_one_that_answers_stays(server):
    sockets = [open_socket(server)[0] for _ in range(5)]
    try:
        pinged = {index: [] for index in range(len(sockets))}
        # Four intervals, twice as long as interval + timeout: a socket not answered would be gone.
        for _ in range(4):
            for index, ws in enumerate(sockets):
                assert ws.recv() == "2"  # PING, and nothing else is sent to these sockets
                pinged[index].append(time.monotonic())
                ws.send("3")  # PONG
        for times in pinged.values():
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert min(gaps) > INTERVAL * 0.8, gaps  # one ping per interval, not more
    finally:
        for ws in sockets:
            ws.close()


def test_a_client_that_stops_answering_pings_is_dropped(server):
    ws, _ = open_socket(server)
    try:
        assert ws.recv() == "2"  # the first ping, left unanswered
        received = []
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                received.append(ws.recv())
        assert "1" in received or received == [""], received  # Engine.IO CLOSE, or the close frame alone
    finally:
        ws.close()
