"""Hostile clients against a live server, each with a well-behaved bystander checked during the attack.

The attackers speak raw websocket frames (``testkit.hostile.RawWebSocket``):
python-socketio and socket.io-client refuse to send what these send. The
bystander (``testkit.hostile.Bystander``) is a subscriber in a tenant of its
own, getting a metric written every 50 ms, and a loop asking ``/healthz``:
after each attack, every value written must have arrived, in order, and neither
may have stopped for more than half a second.
"""

import base64
import json
import socket
import threading

import pytest
import requests
import socketio

from app.logs import short_sid
from testkit import (
    DEFAULT_TIMEOUT,
    RecordingClient,
    log_size,
    logged,
    metric_value,
    mint_token,
    running_server,
    tenant_with_entity,
    wait_for_log,
    wait_for_metric,
)
from testkit.hostile import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_CONTINUATION,
    OPCODE_TEXT,
    Bystander,
    RawWebSocket,
    frame,
    frame_header,
    websocket_when_there_is_room,
)

pytestmark = pytest.mark.backends("sqlite")

MESSAGE_LIMIT = 64 * 1024  # SOCKET_MAX_MESSAGE_BYTES's default

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009


REFUSED = "analytics_socket_refusals_total"


def stream_payload(ws, size, chunk=1024 * 1024):
    """Send ``size`` bytes of payload from a thread of its own, until done or the server closes."""

    def send():
        block = b"a" * chunk
        sent = 0
        try:
            while sent < size:
                ws.send(block[: size - sent])
                sent += chunk
        except OSError:
            pass  # the server closed the connection: what it should do

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_frame_over_the_limit_is_refused_by_its_header(live_server):
    with Bystander(live_server.url) as bystander:
        attacker = RawWebSocket(live_server.url)
        attacker.send(frame_header(OPCODE_TEXT, 20 * 1024 * 1024))
        sender = stream_payload(attacker, 20 * 1024 * 1024)
        assert attacker.close_code() == CLOSE_TOO_BIG
        sender.join()
        attacker.close()
        bystander.check()


def test_continuation_frames_count_towards_one_message(live_server):
    with Bystander(live_server.url) as bystander:
        attacker = RawWebSocket(live_server.url)
        piece = MESSAGE_LIMIT // 2
        attacker.send(frame(OPCODE_TEXT, b"4" + b"a" * (piece - 1), fin=False))
        attacker.send(frame(OPCODE_CONTINUATION, b"a" * piece, fin=False))
        attacker.send(frame_header(OPCODE_CONTINUATION, 10, fin=True))  # one frame over: refused on its header
        assert attacker.close_code() == CLOSE_TOO_BIG
        attacker.close()
        bystander.check()


def test_a_message_within_the_limit_split_in_frames_is_served(live_server):
    tenant, _ = tenant_with_entity(live_server.url)
    client = RawWebSocket(live_server.url)
    connect = "40/dashboard," + json.dumps({"token": mint_token(tenant)})
    half = len(connect) // 2
    client.send(frame(OPCODE_TEXT, connect[:half], fin=False))
    client.send(frame(OPCODE_CONTINUATION, connect[half:], fin=True))
    opcode, payload = client.read_frame()
    assert (opcode, payload[:14]) == (OPCODE_TEXT, b"40/dashboard,{"), payload
    client.close()


@pytest.mark.parametrize(
    ("attack", "code", "reason"),
    [
        (frame(OPCODE_TEXT, "40/dashboard,", masked=False), CLOSE_PROTOCOL_ERROR, "protocol"),
        (frame(OPCODE_BINARY, b"\x00" * 60_000), CLOSE_UNSUPPORTED_DATA, "binary"),
        (frame(OPCODE_TEXT, b"4\xff\xfe"), CLOSE_INVALID_DATA, "utf8"),
        (frame(OPCODE_CONTINUATION, b"a"), CLOSE_PROTOCOL_ERROR, "protocol"),
        (frame_header(OPCODE_TEXT, MESSAGE_LIMIT + 1), CLOSE_TOO_BIG, "too_large"),
    ],
    ids=["unmasked", "binary", "not-utf8", "continuation-first", "too-large"],
)
def test_frames_against_the_protocol_close_the_websocket_with_a_reason(live_server, attack, code, reason):
    before = metric_value(live_server.url, REFUSED, reason=reason)
    attacker = RawWebSocket(live_server.url)
    attacker.send(attack)
    assert attacker.close_code() == code
    attacker.close()
    wait_for_metric(live_server.url, REFUSED, before + 1, at_least=True, reason=reason)


def test_namespace_root_is_refused(live_server):
    attacker = RawWebSocket(live_server.url)
    attacker.send_text("40")
    _, payload = attacker.read_frame()
    assert payload == b'44"Unable to connect"'  # CONNECT_ERROR: only /dashboard and /analytics/dashboard exist
    attacker.send_text("40/elsewhere,")
    _, payload = attacker.read_frame()
    assert payload == b'44/elsewhere,"Unable to connect"'
    attacker.close()


def test_binary_events_without_a_token_end_the_connection(live_server):
    with Bystander(live_server.url) as bystander:
        attacker = RawWebSocket(live_server.url)
        attacker.send_text('451000000-["x",{"_placeholder":true,"num":0}]')
        sender = threading.Thread(target=_send_attachments, args=(attacker,), daemon=True)
        sender.start()
        assert attacker.close_code() is not None
        assert attacker.connected_until_closed()
        sender.join()
        attacker.close()
        bystander.check()


def test_binary_events_of_a_connected_client_end_its_connection(live_server):
    tenant, _ = tenant_with_entity(live_server.url)
    with Bystander(live_server.url) as bystander:
        attacker = RawWebSocket(live_server.url)
        attacker.send_text("40/dashboard," + json.dumps({"token": mint_token(tenant)}))
        _, payload = attacker.read_frame()
        assert payload.startswith(b"40/dashboard,{"), payload
        attacker.send_text('451-/dashboard,["subscribe",{"_placeholder":true,"num":0}]')
        assert attacker.close_code() is not None
        assert attacker.connected_until_closed()
        attacker.close()
        bystander.check()


def _send_attachments(ws, count=200):
    """60 KB binary frames, as many as the server takes (it should take none)."""
    try:
        for _ in range(count):
            ws.send(frame(OPCODE_BINARY, b"\x00" * 60_000))
    except OSError:
        pass


def _send_quietly(ws, data, count):
    """Send ``data`` ``count`` times, stopping when the server closes the connection."""
    try:
        for _ in range(count):
            ws.send(data)
    except OSError:
        pass


@pytest.mark.parametrize(
    "packet",
    ["42[", '42["a"', "42" + "[" * 10_000 + "]" * 10_000, '42/dashboard,[{"an":"object"}]', "42/dashboard,[]", "47"],
    ids=["cut-json", "unclosed-list", "nested-10000-deep", "event-name-object", "no-event-name", "unknown-type"],
)
def test_malformed_packets_close_the_connection_without_a_traceback(live_server, packet):
    mark = log_size(live_server)
    before = metric_value(live_server.url, REFUSED, reason="malformed")
    with Bystander(live_server.url) as bystander:
        attacker = RawWebSocket(live_server.url)
        _send_quietly(attacker, frame(OPCODE_TEXT, packet), 3000)
        assert attacker.close_code() is not None
        attacker.close()
        bystander.check()
    wait_for_metric(live_server.url, REFUSED, before + 1, at_least=True, reason="malformed")
    wait_for_log(live_server, "sent a malformed packet", after=mark)
    assert not logged(live_server, "Traceback", after=mark)


def test_binary_data_over_long_polling_ends_the_session(live_server):
    base = live_server.url + "/socket.io/?EIO=4&transport=polling"
    session = requests.Session()
    opened = session.get(base, timeout=DEFAULT_TIMEOUT)
    sid = json.loads(opened.text[1:])["sid"]
    url = f"{base}&sid={sid}"
    assert session.post(url, data="40/dashboard,", timeout=DEFAULT_TIMEOUT).status_code == 200
    assert session.post(url, data="bAAECAw==", timeout=DEFAULT_TIMEOUT).status_code == 200  # an attachment
    answers = [session.get(url, timeout=DEFAULT_TIMEOUT) for _ in range(3)]
    assert any(a.status_code == 400 for a in answers), [(a.status_code, a.text[:80]) for a in answers]
    session.close()


# --- what the logs keep of what a client sent ---------------------------------------------------------------------


def test_request_lines_keep_no_polling_sid_and_no_token(live_server):
    mark = log_size(live_server)
    base = live_server.url + "/socket.io/?EIO=4&transport=polling"
    session = requests.Session()
    sid = json.loads(session.get(base + "&token=secret-in-the-url", timeout=DEFAULT_TIMEOUT).text[1:])["sid"]
    session.post(f"{base}&sid={sid}", data="40/dashboard,", timeout=DEFAULT_TIMEOUT)
    session.close()
    wait_for_log(live_server, f"sid={short_sid(sid)}", after=mark)
    assert not logged(live_server, sid, after=mark)
    assert not logged(live_server, "secret-in-the-url", after=mark)


def test_a_newline_in_a_token_cannot_forge_a_log_line(live_server):
    mark = log_size(live_server)
    forged = "2026-01-01 00:00:00,000 CRITICAL app: forged"
    header = base64.urlsafe_b64encode(json.dumps({"alg": f"HS256\n{forged}", "typ": "JWT"}).encode()).rstrip(b"=")
    token = header.decode() + ".e30.c2ln"
    answer = requests.get(
        live_server.url + "/api/v1/dashboards", headers={"Authorization": f"Bearer {token}"}, timeout=DEFAULT_TIMEOUT
    )
    assert answer.status_code == 401
    with pytest.raises(socketio.exceptions.ConnectionError):
        RecordingClient().connect(live_server.url, token)
    wait_for_log(live_server, "forged", after=mark)
    with open(live_server.log_path, encoding="utf-8", errors="replace") as log:
        log.seek(mark)
        assert not [line for line in log if line.startswith(forged)]


# --- connections that never connect a namespace -------------------------------------------------------------------


def test_connections_without_a_namespace_are_closed_after_the_connect_timeout(tmp_path):
    with running_server(tmp_path, SOCKET_CONNECT_TIMEOUT="1") as server, Bystander(server.url) as bystander:
        before = metric_value(server.url, REFUSED, reason="connect_timeout")
        idle = [RawWebSocket(server.url) for _ in range(20)]
        refused = RawWebSocket(server.url)
        refused.send_text("40/dashboard," + json.dumps({"token": "not-a-token"}))
        _, payload = refused.read_frame()
        assert payload.startswith(b"44/dashboard,"), payload  # connect_error: the connection itself stays
        for attacker in [*idle, refused]:
            assert attacker.close_code() == 1000
            attacker.close()
        wait_for_metric(server.url, REFUSED, before + 21, at_least=True, reason="connect_timeout")
        bystander.check()  # connected in time: kept, and served throughout


def test_a_connection_retrying_connect_without_a_valid_token_is_closed_at_its_eleventh_packet(live_server):
    before = metric_value(live_server.url, REFUSED, reason="unconnected_flood")
    with Bystander(live_server.url) as bystander:
        attacker = RawWebSocket(live_server.url)
        for attempt in range(10):
            attacker.send_text("40/dashboard," + json.dumps({"token": f"forged-{attempt}"}))
            _, payload = attacker.read_frame()
            assert payload.startswith(b"44/dashboard,"), payload  # each refused, the connection kept
        _send_quietly(attacker, frame(OPCODE_TEXT, '40/dashboard,{"token":"forged"}'), 1000)
        assert attacker.close_code() == 1000
        attacker.close()
        bystander.check()
    wait_for_metric(live_server.url, REFUSED, before + 1, at_least=True, reason="unconnected_flood")


# --- connections per client address ---------------------------------------------------------------------------------


def test_one_address_holds_at_most_max_connections_per_ip_and_others_are_not_affected(tmp_path):
    attacker_address = {"X-Forwarded-For": "198.51.100.7"}  # forwarded by 127.0.0.1, the trusted proxy here
    with (
        running_server(tmp_path, MAX_CONNECTIONS_PER_IP="5", TRUSTED_PROXIES="127.0.0.1") as server,
        Bystander(server.url) as bystander,
    ):
        held = [RawWebSocket(server.url, headers=attacker_address) for _ in range(5)]
        refused = RawWebSocket(server.url, headers=attacker_address, expect_upgrade=False)
        assert refused.status == 429 and b"MAX_CONNECTIONS_PER_IP" in refused.body()
        refused.close()
        polling = requests.get(
            server.url + "/socket.io/?EIO=4&transport=polling", headers=attacker_address, timeout=DEFAULT_TIMEOUT
        )
        assert polling.status_code == 429 and polling.json()["code"] == "ANALYTICS_1103"
        # Another address, forwarded by the same proxy, and the proxy's own clients still connect.
        other = RawWebSocket(server.url, headers={"X-Forwarded-For": "198.51.100.8"})
        held[0].send(frame(OPCODE_CLOSE, b""))
        assert held[0].close_code() == 1000
        held[0].close()
        replacement = websocket_when_there_is_room(server.url, attacker_address)
        for ws in [*held[1:], other, replacement]:
            ws.close()
        bystander.check()


def test_x_forwarded_for_from_an_untrusted_peer_is_not_believed_and_is_reported(live_server):
    forged = RawWebSocket(live_server.url, headers={"X-Forwarded-For": "192.0.2.44"})
    wait_for_log(live_server, "X-Forwarded-For from 127.0.0.1 ignored: it is not in TRUSTED_PROXIES")
    forged.close()


# --- ambiguous request lengths (request smuggling through a proxy) and malformed headers ---------------------------


@pytest.mark.parametrize(
    "headers",
    [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 50\r\n",
        "Content-Length: 5\r\n folded: onto the line before\r\n",
        "Content-Length : 5\r\n",
        "Content-Length: 5\rX-Hidden: 1\r\n",
        "X-Many: 1\r\n" * 101,
    ],
    ids=[
        "transfer-encoding-and-content-length",
        "differing-content-lengths",
        "folded-line",
        "space-before-colon",
        "bare-cr",
        "101-headers",
    ],
)
def test_a_request_whose_length_is_ambiguous_or_whose_headers_are_malformed_is_refused(live_server, headers):
    with Bystander(live_server.url) as bystander:
        host, port = live_server.url.split("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=DEFAULT_TIMEOUT) as attacker:
            attacker.sendall(
                f"POST /api/v1/metrics HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}\r\n"
                "0\r\n\r\n".encode()
            )
            assert attacker.recv(65536).startswith(b"HTTP/1.1 400")
        bystander.check()


# --- a polling session id that leaked -------------------------------------------------------------------------------


def polling_session(url, address, token):
    """A long-polling session opened from ``address`` (forwarded by 127.0.0.1), its namespace connected."""
    base = url + "/socket.io/?EIO=4&transport=polling"
    headers = {"X-Forwarded-For": address}
    sid = json.loads(requests.get(base, headers=headers, timeout=DEFAULT_TIMEOUT).text[1:])["sid"]
    posted = requests.post(
        f"{base}&sid={sid}", data="40/dashboard," + json.dumps({"token": token}), headers=headers, timeout=5
    )
    assert posted.status_code == 200
    assert requests.get(f"{base}&sid={sid}", headers=headers, timeout=DEFAULT_TIMEOUT).text.startswith("40/dashboard,")
    return f"{base}&sid={sid}"


@pytest.mark.parametrize("bound", [True, False], ids=["bound", "not-bound"])
def test_a_polling_session_id_is_refused_from_another_address(tmp_path, bound):
    with (
        running_server(tmp_path, TRUSTED_PROXIES="127.0.0.1", SOCKET_BIND_TO_ADDRESS="1" if bound else "0") as server,
        Bystander(server.url) as bystander,
    ):
        tenant, _ = tenant_with_entity(server.url)
        session = polling_session(server.url, "198.51.100.7", mint_token(tenant))
        stolen = requests.post(
            session,
            data='42/dashboard,["unsubscribe",{"entityId":"event-1"}]',
            headers={"X-Forwarded-For": "203.0.113.9"},
            timeout=DEFAULT_TIMEOUT,
        )
        if bound:
            assert (stolen.status_code, stolen.text) == (400, "Invalid session")
        else:
            assert stolen.status_code == 200  # SOCKET_BIND_TO_ADDRESS=0: for clients whose address changes
        again = requests.post(session, data="3", headers={"X-Forwarded-For": "198.51.100.7"}, timeout=5)  # a pong
        assert again.status_code == 200  # its own client goes on
        bystander.check()


@pytest.mark.parametrize("body", ["2", "9", "6probe"], ids=["client-ping", "unknown-type", "noop"])
def test_a_polling_post_with_a_packet_the_server_does_not_take_is_answered_at_once(live_server, body):
    with Bystander(live_server.url) as bystander:
        base = live_server.url + "/socket.io/?EIO=4&transport=polling"
        sid = json.loads(requests.get(base, timeout=DEFAULT_TIMEOUT).text[1:])["sid"]
        refused = requests.post(f"{base}&sid={sid}", data=body, timeout=DEFAULT_TIMEOUT)
        assert refused.status_code == 400  # engine.io ends the session; the request was not held until a poll
        assert requests.get(f"{base}&sid={sid}", timeout=DEFAULT_TIMEOUT).status_code == 400
        bystander.check()


# --- slow and silent HTTP clients -----------------------------------------------------------------------------------


def test_connections_that_send_no_whole_request_in_time_are_closed(tmp_path):
    with running_server(tmp_path, HTTP_HEADER_TIMEOUT="1") as server, Bystander(server.url) as bystander:
        host, port = server.url.split("//", 1)[1].split(":")
        silent = [socket.create_connection((host, int(port)), timeout=DEFAULT_TIMEOUT) for _ in range(50)]
        slow = socket.create_connection((host, int(port)), timeout=DEFAULT_TIMEOUT)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        for connection in [*silent, slow]:
            answer = b""
            while chunk := connection.recv(1024):  # until the server closes it (a timeout here fails the test)
                answer += chunk
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer  # the slow one is told 400
            connection.close()
        bystander.check()  # its websocket and its kept-alive health checks, busy all along, were not cut


# --- an ingest token writing ever more metric names -----------------------------------------------------------------


def test_an_ingest_token_cannot_grow_an_entitys_snapshot_past_the_metric_names_cap(live_server):
    with Bystander(live_server.url) as bystander:
        tenant, api = tenant_with_entity(live_server.url, "crowded")
        for batch in range(2):  # 2,000 new names: the second batch is refused whole
            names = [("crowded", f"name-{batch}-{n}", n) for n in range(1000)]
            status, body, _ = api.request(
                "POST",
                "/metrics",
                json={"metrics": [{"entityId": e, "metricName": m, "value": v} for e, m, v in names]},
            )
            expected = (201, None) if batch == 0 else (409, "ANALYTICS_1205")
            assert (status, None if status == 201 else body["code"]) == expected
        viewer = RecordingClient().connect(live_server.url, mint_token(tenant))
        snapshot = viewer.subscribe("crowded", "event")
        assert len(snapshot["metrics"]) == 1000
        viewer.disconnect()
        bystander.check()
