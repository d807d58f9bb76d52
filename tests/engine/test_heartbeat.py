"""Engine.IO heartbeat: the PingScheduler with fake sockets and a fake clock, then on a live server.

Every socket is pinged once per interval, a socket that answers stays, one that does not is closed.
"""

import itertools
import json
import time

import engineio
import gevent
import pytest
import websocket
from engineio import packet
from engineio.socket import Socket

from app.realtime.engine.eio import EngineServer
from app.realtime.engine.heartbeat import PingScheduler
from testkit import DEFAULT_TIMEOUT, mint_token, running_server, unique

# --- PingScheduler, with fake sockets and a clock the test moves ----------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeSocket:
    """What the scheduler uses of an engine.io socket; records what it was sent and how it was closed."""

    def __init__(self, eio, sid):
        self.eio = eio
        self.sid = sid
        self.closing = self.closed = False
        self.last_ping = None
        self.sent = []
        self.closed_with = None
        eio.sockets[sid] = self

    def send(self, pkt):
        self.sent.append(pkt.packet_type)

    def close(self, wait=True, abort=False, reason=None):
        self.closed, self.closed_with = True, (abort, reason)

    def pong(self, scheduler):
        """What engine.io does on a PONG (Socket.schedule_ping): clear last_ping, schedule the next ping."""
        self.last_ping = None
        scheduler.add(self)


class FakeEngine:
    ping_interval = 25
    ping_timeout = 20
    reason = engineio.Server.reason

    def __init__(self):
        self.sockets = {}
        self.tasks = []

    def create_event(self):
        return gevent.event.Event()

    def start_background_task(self, target):
        self.tasks.append(target)  # never run: the test calls run_due itself


@pytest.fixture
def heartbeat():
    eio, clock = FakeEngine(), Clock()
    return eio, clock, PingScheduler(eio, clock=clock)


def test_a_socket_is_pinged_one_interval_after_it_is_queued_and_not_before(heartbeat):
    eio, clock, scheduler = heartbeat
    socket = FakeSocket(eio, "a")
    scheduler.add(socket)
    assert len(eio.tasks) == 1, "one loop for every socket"
    assert scheduler.run_due() == pytest.approx(25)
    clock.now += 24.9
    scheduler.run_due()
    assert socket.sent == []
    clock.now += 0.1
    assert scheduler.run_due() == pytest.approx(20)  # next: the check of this ping
    assert socket.sent == [packet.PING]
    assert socket.last_ping is not None


def test_a_socket_that_answers_is_pinged_once_per_interval_and_stays(heartbeat):
    eio, clock, scheduler = heartbeat
    socket = FakeSocket(eio, "a")
    scheduler.add(socket)
    for _ in range(5):
        clock.now += 25
        scheduler.run_due()
        clock.now += 1
        socket.pong(scheduler)
        scheduler.run_due()
    clock.now += 19
    scheduler.run_due()
    assert socket.sent == [packet.PING] * 5
    assert not socket.closed
    assert eio.sockets == {"a": socket}


def test_a_socket_that_does_not_answer_is_closed_when_its_ping_times_out(heartbeat):
    eio, clock, scheduler = heartbeat
    silent, answering = FakeSocket(eio, "silent"), FakeSocket(eio, "answering")
    scheduler.add(silent)
    scheduler.add(answering)
    clock.now += 25
    scheduler.run_due()
    answering.pong(scheduler)
    clock.now += 19.9
    scheduler.run_due()
    assert not silent.closed
    clock.now += 0.1
    scheduler.run_due()
    # abort=False: engine.io sends CLOSE to a half-open connection, as its service task does.
    assert silent.closed_with == (False, engineio.Server.reason.PING_TIMEOUT)
    assert "silent" not in eio.sockets
    assert not answering.closed and "answering" in eio.sockets


def test_a_socket_closed_meanwhile_is_neither_pinged_nor_closed_again_and_is_forgotten(heartbeat):
    eio, clock, scheduler = heartbeat
    socket = FakeSocket(eio, "a")
    scheduler.add(socket)
    socket.closed = True
    clock.now += 25
    scheduler.run_due()
    assert socket.sent == [] and socket.closed_with is None
    assert eio.sockets == {}
    assert scheduler.run_due() is None  # nothing left to wait for


def test_engine_io_scheduling_a_ping_queues_the_socket_instead_of_starting_a_greenlet():
    """The hook on the real library: Socket.schedule_ping hands Socket._send_ping to start_background_task."""
    eio = EngineServer(async_mode="gevent")
    socket = Socket(eio, "sid-1")
    socket.schedule_ping()
    assert [entry[1] for entry in eio.pings._pings] == [socket]
    assert eio.start_service_task is False, "engine.io's own service task is switched off"


# --- On a live server -----------------------------------------------------------------------------------------------

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
