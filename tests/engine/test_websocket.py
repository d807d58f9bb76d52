"""The websocket transport and the server's direct writes, with a real engine.io socket and a fake websocket.

The fake websocket plays the client's side of an upgrade from polling (probe, UPGRADE, close); what the
server writes arrives as websocket frames on a socket pair, read back in order.
"""

import gevent
import gevent.event
import gevent.queue
import gevent.socket
import pytest
from engineio import packet
from engineio.socket import Socket

from app.realtime.engine.eio import EngineServer
from app.realtime.engine.server import SocketServer
from app.realtime.engine.websocket import PacketWriter, ReaderPool, SocketReader, WebSocketTransport, text_frame
from testkit import DEFAULT_TIMEOUT
from testkit.hostile import OPCODE_CLOSE, OPCODE_TEXT, frame


class ClientFrames:
    """The client's side of the websocket's input: each message put is written as a masked frame."""

    def __init__(self):
        self._server_side, self._client_side = gevent.socket.socketpair()
        self.stream = self._server_side.makefile("rb")

    def put(self, text):
        """Send ``text`` as one text frame, or a close frame for None."""
        if text is None:
            self._client_side.sendall(frame(OPCODE_CLOSE, b""))
        else:
            self._client_side.sendall(frame(OPCODE_TEXT, text))

    def close(self):
        self.stream.close()
        self._server_side.close()
        self._client_side.close()


class FakeWebSocket:
    """What the transport uses of gevent-websocket's WebSocket; the client's frames come from ``incoming``.

    Its handler cannot let go of the connection, so the transport never parks it.
    """

    def __init__(self, sock):
        self.handler = type("Handler", (), {"socket": sock})()
        self.incoming = ClientFrames()
        self.stream = self.incoming.stream
        self.closed = False


def read_frames(sock, count):
    """``count`` unmasked text frames from ``sock``, as strings."""
    buffer = b""
    frames = []
    with gevent.Timeout(DEFAULT_TIMEOUT):
        while len(frames) < count:
            while True:
                if len(buffer) >= 2:
                    length, start = buffer[1] & 0x7F, 2
                    if length == 126 and len(buffer) >= 4:
                        length, start = int.from_bytes(buffer[2:4], "big"), 4
                    if length != 126 and len(buffer) >= start + length:
                        assert buffer[0] == 0x81, "a final text frame"
                        frames.append(buffer[start : start + length].decode())
                        buffer = buffer[start + length :]
                        break
                chunk = sock.recv(65536)
                assert chunk, "connection closed"
                buffer += chunk
    return frames


def served_until(condition):
    """Let the transport's greenlet read what the client sent until ``condition()`` holds."""
    with gevent.Timeout(DEFAULT_TIMEOUT):
        while not condition():
            gevent.sleep(0.001)


def message(text):
    return packet.Packet(packet.MESSAGE, text)


@pytest.fixture
def upgrading():
    """A polling engine.io socket of a real EngineServer, a fake websocket on a socket pair: (eio_socket, ws, peer)."""
    eio = EngineServer(async_mode="gevent")
    eio_socket = Socket(eio, "sid-1")
    eio_socket.connected = True  # a polling session, about to upgrade
    eio.sockets[eio_socket.sid] = eio_socket
    server_side, peer = gevent.socket.socketpair()
    ws = FakeWebSocket(server_side)
    yield eio_socket, ws, peer
    ws.incoming.close()
    server_side.close()
    peer.close()


def test_packets_sent_before_during_and_after_the_upgrade_arrive_once_in_order(upgrading):
    eio_socket, ws, peer = upgrading
    eio_socket.send(message("before-1"))
    eio_socket.send(message("before-2"))
    transport = WebSocketTransport(eio_socket._websocket_handler, eio_socket.server)
    serving = gevent.spawn(transport.serve, {"wsgi.websocket": ws}, None)
    ws.incoming.put("2probe")
    assert read_frames(peer, 1) == ["3probe"]
    assert eio_socket.upgrading
    eio_socket.send(message("during"))  # held in engine.io's queue while upgrading
    assert eio_socket.server.connections.outputs == {}, "nothing is written directly before the upgrade completes"
    ws.incoming.put("5")  # UPGRADE
    served_until(lambda: not eio_socket.upgrading)
    assert isinstance(eio_socket.queue, PacketWriter)
    assert eio_socket.server.connections.outputs == {"sid-1": transport.output}
    eio_socket.send(message("after"))  # written at once, behind everything queued before
    frames = read_frames(peer, 5)
    # engine.io's NOOP ends the client's waiting poll; left in the queue, it goes out on the websocket.
    assert frames == ["4before-1", "4before-2", "6", "4during", "4after"]
    ws.incoming.put(None)  # the client closes
    serving.get(timeout=DEFAULT_TIMEOUT)
    assert eio_socket.closed
    assert eio_socket.server.connections.outputs == {}, "a closed websocket is forgotten"


def test_a_failed_probe_leaves_the_polling_session_and_its_queue_alone(upgrading):
    eio_socket, ws, _ = upgrading
    eio_socket.send(message("queued"))
    queue = eio_socket.queue
    transport = WebSocketTransport(eio_socket._websocket_handler, eio_socket.server)
    serving = gevent.spawn(transport.serve, {"wsgi.websocket": ws}, None)
    ws.incoming.put("2not-a-probe")
    assert serving.get(timeout=DEFAULT_TIMEOUT) == []
    assert not eio_socket.upgrading and not eio_socket.closed
    assert eio_socket.queue is queue and queue.qsize() == 1
    assert eio_socket.server.connections.outputs == {}


# --- what a parked websocket reads with ----------------------------------------------------------------------------


def test_a_socket_reader_returns_what_is_asked_keeps_the_rest_and_waits_for_the_missing_part():
    server_side, peer = gevent.socket.socketpair()
    reader = SocketReader(server_side)
    peer.sendall(b"hello world")
    assert reader.read(5) == b"hello"
    assert reader.buffered, "the rest of what one recv brought is kept"
    assert reader.read(6) == b" world"
    assert not reader.buffered
    waiting = gevent.spawn(reader.read, 4)
    peer.sendall(b"ab")
    gevent.sleep(0.01)
    assert not waiting.ready(), "a read waits for the whole size"
    peer.sendall(b"cd")
    assert waiting.get(timeout=DEFAULT_TIMEOUT) == b"abcd"
    payload = bytes(range(256)) * 12  # past one recv's worth: received into a buffer of its size, piece by piece
    waiting = gevent.spawn(reader.read, len(payload))
    for start in range(0, len(payload), 100):
        peer.sendall(payload[start : start + 100])
        gevent.sleep(0.001)
    assert waiting.get(timeout=DEFAULT_TIMEOUT) == payload
    assert not reader.buffered
    peer.sendall(b"xy")
    peer.close()
    assert reader.read(4) == b"xy", "fewer bytes only at the end of the connection"
    assert reader.read(4) == b""
    server_side.close()


def test_the_reader_pool_hands_wake_ups_to_a_waiting_greenlet_and_keeps_at_most_its_limit():
    pool = ReaderPool(keep=2)
    readers = []

    class Woken:
        def __init__(self, block=None):
            self.block = block

        def wake(self):
            readers.append(gevent.getcurrent())
            if self.block is not None:
                self.block.wait()

    def wake_from_the_loop(transport):  # the pool is called from the event loop (a watcher's callback)
        gevent.get_hub().loop.run_callback(pool.wake, transport)
        gevent.sleep(0.01)

    wake_from_the_loop(Woken())
    wake_from_the_loop(Woken())
    assert len(readers) == 2 and readers[0] is readers[1], "the second wake-up reused the first reader"
    blocked = gevent.event.Event()
    for _ in range(3):  # three at once: two new readers beside the waiting one
        wake_from_the_loop(Woken(blocked))
    assert len(set(readers)) == 3
    blocked.set()
    gevent.sleep(0.01)
    assert pool.waiting == 2, "at most keep=2 wait for the next wake-up; the third ended"


# --- SocketServer: one frame per packet, one loop per change ---------------------------------------------------------


class RecordingOutput:
    """An output buffer that records the frame objects written to it."""

    def __init__(self):
        self.frames = []

    def cork(self):
        return False

    def write(self, frame):
        self.frames.append(frame)


def test_a_packet_sent_to_many_websockets_is_framed_once():
    sio = SocketServer(async_mode="gevent")
    outputs = {f"eio-{n}": RecordingOutput() for n in range(3)}
    for sid, output in outputs.items():
        sio.eio.connections.attach(sid, output)
    first, second = message('2["a",1]'), message('2["b",2]')
    for pkt in (first, second):
        for sid in outputs:
            sio._send_eio_packet(sid, pkt)  # what python-socketio's emit calls per recipient
    frames = [output.frames for output in outputs.values()]
    assert all(f == [text_frame(first), text_frame(second)] for f in frames)
    assert frames[0][0] is frames[1][0] is frames[2][0], "built once, written to every recipient"
    assert frames[0][1] is frames[2][1]
    assert sio.direct_writes == 6 and sio.queued_writes == 0


def connect(sio, namespace, eio_sid):
    """A socket connected to ``namespace``, through python-socketio's manager; its sid."""
    sid = sio.manager.pre_connect(eio_sid, namespace)
    sio.manager.connect(sid, namespace)
    return sid


def test_emit_local_reaches_each_member_of_the_rooms_once_with_one_frame():
    sio = SocketServer(async_mode="gevent")
    outputs = {}
    for name in ("in-a", "in-both", "elsewhere"):
        outputs[name] = RecordingOutput()
        sio.eio.connections.attach(f"eio-{name}", outputs[name])
        sid = connect(sio, "/dashboard", f"eio-{name}")
        for room in {"in-a": ["a"], "in-both": ["a", "b"], "elsewhere": ["c"]}[name]:
            sio.enter_room(sid, room, namespace="/dashboard")
    observed = []
    sio.emit_observer = lambda event, data, namespace: observed.append((event, namespace))
    sio.emit_local("metric:update", {"v": 1}, to=["a", "b"], namespace="/dashboard")
    assert [len(outputs[n].frames) for n in ("in-a", "in-both", "elsewhere")] == [1, 1, 0]
    assert outputs["in-a"].frames[0] is outputs["in-both"].frames[0]
    assert outputs["in-a"].frames[0].endswith(b'42/dashboard,["metric:update",{"v":1}]')
    assert observed == [("metric:update", "/dashboard")]
    assert sio.has_subscribers("/dashboard", "a") and not sio.has_subscribers("/dashboard", "nobody")
    assert sio.subscriber_count("/dashboard", "a") == 2
    assert sio.room_counts() == {}  # no namespace registered: nothing is counted
