"""Writing Engine.IO packets to websockets without a greenlet hop per packet.

python-engineio hands every packet to a socket's own queue, and the socket's
writer greenlet wakes up, takes it off and writes it. For a broadcast to
thousands of sockets that hop is most of the cost (docs/benchmarks.md,
"Profile"). Here, a packet for an upgraded websocket whose queue is empty is
written at once by the emitting greenlet, as one websocket frame built once
per emit; anything else takes engine.io's usual path.

Order per socket holds because every byte for a websocket, from either path
and from gevent-websocket itself (pong and close frames), goes through one
``OutputBuffer``: a write never yields, and what the kernel will not take now
waits in the buffer, behind which later writes queue up, for one flusher
greenlet. A packet is written directly only while the socket's engine.io
queue is empty, and engine.io's writer takes packets off that queue and writes
them without yielding, so a queued packet is never overtaken.
"""

import contextlib
import socket

import gevent
import socketio
from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket

from app.realtime.keepalive import EngineServer

# The attribute under which an engine.io socket carries its BufferedWebSocketWSGI while the websocket is open.
TRANSPORT_ATTRIBUTE = "analytics_websocket"


#: A corked buffer holds at most this many writes before it sends them anyway.
CORK_LIMIT = 64


class OutputBuffer:
    """An ordered, never-blocking writer for one TCP socket.

    ``write`` sends what the kernel accepts at once and keeps the rest, in
    order, for a flusher greenlet that waits until the socket can take more.
    Between ``cork`` and ``uncork`` writes are collected and sent as one.
    """

    def __init__(self, sock):
        self._sock = sock
        self._pending = []  # a list: an empty deque would cost every idle connection 600 bytes
        self._flusher = None
        self._error = None
        self._corked = None  # writes held while corked, else None
        self.backlog = 0  # writes not yet wholly handed to the kernel

    def write(self, data):
        """Write ``data`` after everything written before; raise ``OSError`` once the socket has failed."""
        if self._error is not None:
            raise self._error
        if self._corked is not None:
            self._corked.append(data)
            if len(self._corked) >= CORK_LIMIT:
                self._write_corked()
            return
        if self._flusher is not None:
            self._pending.append(data)
            self.backlog += 1
            return
        try:
            sent = self._sock.send(data, 0, timeout=0.0)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._error = exc
            raise
        if sent < len(data):
            self._pending.append(memoryview(data)[sent:])
            self.backlog += 1
            self._flusher = gevent.spawn(self._flush)

    def cork(self):
        """Hold writes until ``uncork``; return False if already corked."""
        if self._corked is not None:
            return False
        self._corked = []
        return True

    def uncork(self):
        """Send the writes held since ``cork`` as one, and stop holding.

        Does not raise: a failed socket keeps its error, which the next write raises
        (engine.io's writer meets it and closes the socket).
        """
        try:
            self._write_corked()
        except OSError:
            pass
        finally:
            self._corked = None

    def _write_corked(self):
        held, self._corked = self._corked, None
        try:
            if held:
                self.write(held[0] if len(held) == 1 else b"".join(held))
        finally:
            self._corked = []

    def _flush(self):
        try:
            while self._pending:
                count = len(self._pending)
                chunk = b"".join(self._pending)
                self._pending.clear()
                self._sock.sendall(chunk)
                self.backlog -= count
        except OSError as exc:
            self._error = exc
            self._pending.clear()
            self.backlog = 0
        finally:
            self._flusher = None

    def discard(self):
        """Drop what is still pending and shut the socket down, so a client that stopped reading is let go."""
        self._error = self._error or ConnectionAbortedError("output discarded")
        self._pending.clear()
        self.backlog = 0
        if self._flusher is not None:
            self._flusher.kill(block=False)
        with contextlib.suppress(OSError):  # already gone
            self._sock.shutdown(socket.SHUT_RDWR)  # also wakes this connection's reader

    @property
    def failed(self):
        return self._error is not None


class BufferedWebSocketWSGI:
    """engine.io's websocket driver for gevent-websocket, with every write going through an ``OutputBuffer``.

    Same interface as ``engineio.async_drivers.gevent.WebSocketWSGI``; it also
    puts itself on the engine.io socket it serves, for ``DirectServer``.
    """

    def __init__(self, handler, server):
        self.app = handler
        self._eio_socket = handler.__self__  # the engine.io Socket whose _websocket_handler this is

    def __call__(self, environ, start_response):
        if "wsgi.websocket" not in environ:
            raise RuntimeError("websocket requests need gevent-websocket's worker (GeventWebSocketWorker)")
        ws = environ["wsgi.websocket"]
        output = OutputBuffer(ws.handler.socket)
        ws.raw_write = output.write  # frames, pongs and the close frame all take the buffer
        self._sock = ws  # the name engine.io looks under for a settimeout (gevent-websocket has none)
        self.environ = environ
        self.output = output
        setattr(self._eio_socket, TRANSPORT_ATTRIBUTE, self)
        try:
            return self.app(self)
        finally:
            setattr(self._eio_socket, TRANSPORT_ATTRIBUTE, None)

    def writable_now(self):
        """True when a packet may be written at once: upgraded, open, and nothing in the engine.io queue.

        The empty queue is what keeps order: engine.io's writer writes what it
        takes off the queue before it yields.
        """
        eio_socket = self._eio_socket
        return (
            eio_socket.upgraded
            and not eio_socket.upgrading
            and not eio_socket.closing
            and not eio_socket.closed
            and not self._sock.closed
            and not self.output.failed
            and eio_socket.queue.qsize() == 0
        )

    def close(self):
        return self._sock.close()

    def send(self, message):
        return self._sock.send(message)

    def wait(self):
        return self._sock.receive()


class ConnectionHandler(WebSocketHandler):
    """gevent-websocket's per-connection handler, with a smaller read buffer and no upgrade the app would refuse.

    A 1 KiB read buffer instead of 8 KiB: a connection keeps its reader for its
    whole life, and a websocket client only sends small messages (subscribe,
    pong); longer request lines are still read whole, the buffer refilling.

    gevent-websocket answers a websocket request ``101 Switching Protocols``
    before the application sees it. A request the application then refuses (a
    session this process does not hold, or any while it shuts down) would get a
    101 and a close frame: a proxy cannot retry that on another backend, and
    python-engineio's client, upgrading, takes the close frame for an empty
    packet and stays stuck in a connected state it never leaves (4.15.1). The
    requests ``refuses_upgrade(environ)`` names are answered over plain HTTP
    instead (400 "Invalid session", 503 while draining), as Node's engine.io
    does. The gunicorn worker uses ``connection_handler(...)`` (``post_worker_init``
    in gunicorn.conf.py).
    """

    READ_BUFFER_BYTES = 1024
    refuses_upgrade = None

    def __init__(self, sock, address, server, rfile=None):
        super().__init__(sock, address, server, rfile)
        if rfile is None:
            # Nothing has been read yet: swap the default 8 KiB reader for a small one.
            self.rfile = sock.makefile("rb", self.READ_BUFFER_BYTES)

    def run_application(self):
        refuses = self.refuses_upgrade
        if refuses is not None and "HTTP_UPGRADE" in self.environ and refuses(self.environ):
            return WSGIHandler.run_application(self)  # the application answers, without a 101 first
        return super().run_application()


def connection_handler(refuses_upgrade):
    """A ConnectionHandler class answering the websocket requests ``refuses_upgrade(environ)`` names over plain HTTP."""
    return type(ConnectionHandler.__name__, (ConnectionHandler,), {"refuses_upgrade": staticmethod(refuses_upgrade)})


def buffered(eio_socket):
    """Writes waiting in an engine.io socket's websocket output buffer (0 without a websocket)."""
    transport = getattr(eio_socket, TRANSPORT_ATTRIBUTE, None)
    return transport.output.backlog if transport is not None else 0


def discard_output(eio_socket):
    """Drop an engine.io socket's unsent websocket output and shut its connection down, if it has a websocket."""
    transport = getattr(eio_socket, TRANSPORT_ATTRIBUTE, None)
    if transport is not None:
        transport.output.discard()


def text_frame(eio_pkt):
    """The websocket frame carrying ``eio_pkt``, or None for a packet with binary data."""
    if eio_pkt.binary:
        return None
    payload = eio_pkt.encode().encode("utf-8")
    return Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0) + payload


class DirectServer(socketio.Server):
    """A ``socketio.Server`` that writes packets straight to idle websockets.

    python-socketio encodes an emit once and calls ``_send_eio_packet`` with the
    same packet for each recipient; the frame is built once for all of them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eio._async = dict(self.eio._async, websocket=BufferedWebSocketWSGI)
        self._frame_packet = None
        self._frame = None
        self._corked = None  # the OutputBuffers corked by ``batch``, while one runs
        self.direct_writes = 0
        self.queued_writes = 0

    @contextlib.contextmanager
    def batch(self):
        """Within this block, what is written directly to a socket leaves in one write at its end.

        For a poller tick that emits several changes: a socket subscribed to
        them gets one TCP write instead of one per change. Order is unchanged
        (anything else written to the socket meanwhile joins the same write).
        """
        if self._corked is not None:  # nested: the outer block sends
            yield
            return
        self._corked = []
        try:
            yield
        finally:
            corked, self._corked = self._corked, None
            for output in corked:
                output.uncork()

    def _send_eio_packet(self, eio_sid, eio_pkt):
        transport = getattr(self.eio.sockets.get(eio_sid), TRANSPORT_ATTRIBUTE, None)
        if transport is not None and transport.writable_now():
            if eio_pkt is not self._frame_packet:
                self._frame_packet, self._frame = eio_pkt, text_frame(eio_pkt)
            if self._frame is not None:
                output = transport.output
                if self._corked is not None and output.cork():
                    self._corked.append(output)
                try:
                    output.write(self._frame)
                except OSError:
                    pass  # nothing was written; engine.io's writer meets the error and closes the socket
                else:
                    self.direct_writes += 1
                    return
        self.queued_writes += 1
        super()._send_eio_packet(eio_sid, eio_pkt)

    def _engineio_server_class(self):
        return EngineServer  # pings from one greenlet, not one per socket (app/realtime/keepalive.py)
