"""Direct websocket writes (app/realtime/engine/): order, completeness and slow readers, on real sockets."""

import http.client
import json
import signal
import threading
import time

import websocket

from testkit import (
    DEFAULT_TIMEOUT,
    Api,
    RecordingClient,
    metric_value,
    mint_token,
    running_server,
    wait_for_metric,
)

PACKETS = "analytics_socketio_packets_written_total"


# --- On a live server -----------------------------------------------------------------------------------------------


def written(server, path):
    return metric_value(server.url, PACKETS, path=path)


def test_websocket_updates_are_written_directly_and_polling_ones_queued_both_complete(
    live_server, admin_api, entity, tenant
):
    entity_id, _ = entity
    websocket = RecordingClient().connect(live_server.url, mint_token(tenant), transports=("websocket",))
    polling = RecordingClient().connect(live_server.url, mint_token(tenant), transports=("polling",))
    try:
        websocket.subscribe(entity_id)
        polling.subscribe(entity_id)
        direct_before, queued_before = written(live_server, "direct"), written(live_server, "queued")
        writes = 50
        last = None
        for value in range(writes):
            last = admin_api.ingest((entity_id, "ticketsSold", value))["lastSeq"]
        for client in (websocket, polling):
            client.wait_for("metric:update", lambda d: d["seq"] == last)
            values = [u["value"] for u in client.of("metric:update") if u["metricName"] == "ticketsSold"]
            seqs = [u["seq"] for u in client.of("metric:update")]
            assert seqs == sorted(set(seqs))
            assert values[-1] == writes - 1
        direct = direct_before + len(websocket.of("metric:update"))
        queued = queued_before + len(polling.of("metric:update"))
        wait_for_metric(live_server.url, PACKETS, direct, at_least=True, path="direct")
        wait_for_metric(live_server.url, PACKETS, queued, at_least=True, path="queued")
    finally:
        websocket.disconnect()
        polling.disconnect()


def test_a_client_upgrading_from_polling_while_updates_flow_gets_them_all_in_order(live_server, entity, tenant):
    entity_id, _ = entity
    api = Api(live_server.url, mint_token(tenant, roles=("ingest",)))  # the writer thread's own session
    stop = threading.Event()
    last_seq = []

    def write_steadily():
        value = 0
        while not stop.is_set():
            last_seq.append(api.ingest((entity_id, "revenue", value))["lastSeq"])
            value += 1

    writer = threading.Thread(target=write_steadily)
    writer.start()
    clients = []
    try:
        for _ in range(5):
            client = RecordingClient()
            clients.append(client)
            client.connect(live_server.url, mint_token(tenant), transports=("polling", "websocket"))
            client.subscribe(entity_id)
            client.wait_until(lambda c: c.client.transport() == "websocket", what="upgraded to websocket")
            client.wait_for("metric:update", after=len(client.events))
    finally:
        stop.set()
        writer.join()
    try:
        for client in clients:
            client.wait_for("metric:update", lambda d: d["seq"] == last_seq[-1])
            seqs = [u["seq"] for u in client.of("metric:update")]
            assert seqs == sorted(set(seqs)), "an update came twice or out of order across the upgrade"
            assert set(seqs) <= set(last_seq)
    finally:
        for client in clients:
            client.disconnect()


# --- Websocket requests the server refuses get a plain HTTP answer, never a 101 and a close ----------------------

WEBSOCKET_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def send(connection, path, headers=None):
    """``(status, body)`` of one request on a kept-alive ``http.client`` connection."""
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_a_websocket_for_a_session_the_server_does_not_hold_is_refused_400_without_upgrading(live_server):
    """As Node's engine.io answers; gevent-websocket alone would answer 101, then close."""
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=DEFAULT_TIMEOUT)
    try:
        status, body = send(connection, "/socket.io/?EIO=4&transport=websocket&sid=not-a-session", WEBSOCKET_HEADERS)
        assert status == 400, f"{status} {body!r}"
        assert json.loads(body) == "Invalid session not-a-session"
        # The connection is still an HTTP one, and a websocket without a sid still upgrades.
        assert send(connection, "/healthz")[0] == 200
    finally:
        connection.close()
    ws_url = live_server.url.replace("http", "ws", 1)
    opened = websocket.create_connection(ws_url + "/socket.io/?EIO=4&transport=websocket")
    try:
        assert opened.recv().startswith("0{")  # engine.io's OPEN packet
    finally:
        opened.close()


def test_a_draining_server_answers_every_socketio_request_503_and_upgrades_none(tmp_path):
    """Told to stop, the worker refuses what a proxy can retry elsewhere: new sessions, and requests for
    sessions it does not hold (a proxy's hash can still send a session's requests here while it drains).
    """
    with running_server(tmp_path, GRACEFUL_TIMEOUT=30) as server:
        # Opened and used before the stop, so the draining worker still reads it (it accepts no new ones).
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEFAULT_TIMEOUT)
        try:
            assert send(connection, "/readyz")[0] == 200
            server.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + DEFAULT_TIMEOUT
            while send(connection, "/readyz")[0] != 503:
                assert time.monotonic() < deadline, "the server never started draining"
            requests = [
                ("/socket.io/?EIO=4&transport=websocket", WEBSOCKET_HEADERS),
                ("/socket.io/?EIO=4&transport=websocket&sid=held-elsewhere", WEBSOCKET_HEADERS),
                ("/socket.io/?EIO=4&transport=polling", None),
                ("/socket.io/?EIO=4&transport=polling&sid=held-elsewhere", None),
            ]
            for path, headers in requests:
                status, body = send(connection, path, headers)
                assert status == 503, f"{path}: {status} {body!r}"
                assert json.loads(body)["code"] == "ANALYTICS_1300", path
        finally:
            connection.close()
