"""Writing Engine.IO packets to websockets without a greenlet per socket or a hop per packet.

python-engineio hands every packet to a socket's own queue, and the socket's
writer greenlet wakes up, takes it off and writes it. For a broadcast to
thousands of sockets that hop is most of the cost (docs/benchmarks.md,
"Profile"), and every idle connection keeps that greenlet and its queue.
Here, once a websocket is up, its engine.io queue is replaced by a
``PacketWriter`` that writes what is put on it at once, and there is no writer
greenlet (``BufferedWebSocketWSGI``); a broadcast builds its websocket frame
once per emit (``DirectServer``). A polling socket, and one upgrading from
polling, keeps engine.io's queue.

Order per socket holds because every byte for a websocket, from either path
and from gevent-websocket itself (pong and close frames), goes through one
``OutputBuffer``: a write never yields, and what the kernel will not take now
waits in the buffer, behind which later writes queue up, for one flusher
greenlet. The packets queued before the upgrade completes are written before
the queue is replaced, without yielding, so none is overtaken.
"""

import contextlib
import logging
import queue
import socket

import engineio.exceptions
import gevent
import socketio
from engineio import packet
from gevent.pywsgi import WSGIHandler
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket
from socketio import packet as socketio_packet

from app.realtime.keepalive import EngineServer

# The attribute under which an engine.io socket carries its BufferedWebSocketWSGI while the websocket is open.
TRANSPORT_ATTRIBUTE = "analytics_websocket"

log = logging.getLogger(__name__)


#: A corked buffer holds at most this many writes before it sends them anyway.
CORK_LIMIT = 64


class OutputBuffer:
    """An ordered, never-blocking writer for one TCP socket.

    ``write`` sends what the kernel accepts at once and keeps the rest, in
    order, for a flusher greenlet that waits until the socket can take more.
    Between ``cork`` and ``uncork`` writes are collected and sent as one.
    """

    __slots__ = ("_backed_up", "_corked", "_error", "_flusher", "_key", "_pending", "_send_now", "_sock", "backlog")

    def __init__(self, sock, backed_up=None, key=None):
        self._sock = sock
        # ``key`` joins the set ``backed_up`` whenever writes start waiting here (for BacklogWatch).
        self._backed_up = backed_up
        self._key = key
        # The OS socket under gevent's (non-blocking): a first try needs none of gevent's waiting.
        self._send_now = sock._sock.send
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
            sent = self._send_now(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._error = exc
            raise
        if sent < len(data):
            self._pending.append(memoryview(data)[sent:])
            self.backlog += 1
            self._flusher = gevent.spawn(self._flush)
            if self._backed_up is not None:
                self._backed_up.add(self._key)

    def cork(self):
        """Hold writes until ``uncork``; return False if already corked."""
        if self._corked is not None:
            return False
        self._corked = []
        return True

    def uncork(self):
        """Send the writes held since ``cork`` as one, and stop holding.

        Does not raise: a failed socket keeps its error, which the next write raises
        (``BufferedWebSocketWSGI.write_packet`` then closes the websocket).
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


class BufferedWebSocketWSGI:
    """engine.io's websocket driver for gevent-websocket, writing through an ``OutputBuffer`` without a writer greenlet.

    Same interface as ``engineio.async_drivers.gevent.WebSocketWSGI``, but it
    serves the engine.io socket itself instead of calling the socket's
    ``_websocket_handler``: that handler starts a writer greenlet per socket,
    waiting on the socket's queue for its whole life (about 8 KiB per idle
    connection, docs/benchmarks.md). Here, once the websocket is up, the
    socket's queue is replaced by a ``PacketWriter``, and whatever engine.io
    sends is written at once by the greenlet sending it. It puts itself on the
    engine.io socket it serves (for ``BacklogWatch``), and its output buffer in
    the engine.io server's ``websocket_outputs`` while packets may be written
    straight to it (for ``DirectServer``): from the end of the upgrade until
    ``close``. Every way the websocket or engine.io's socket closes ends in
    ``close`` without a yield in between: a close frame or read error ends the
    read loop, which closes engine.io's socket, which puts None on its queue;
    a failed write calls it. (While engine.io's socket runs its disconnect
    handler it is already "closing", and a packet sent meanwhile is written
    either way.)
    """

    __slots__ = ("_eio_socket", "_sock", "output")

    def __init__(self, handler, server):
        self._eio_socket = handler.__self__  # the engine.io Socket whose _websocket_handler this stands in for

    def __call__(self, environ, start_response):
        if "wsgi.websocket" not in environ:
            raise RuntimeError("websocket requests need gevent-websocket's worker (GeventWebSocketWorker)")
        ws = environ["wsgi.websocket"]
        eio_socket = self._eio_socket
        output = OutputBuffer(ws.handler.socket, eio_socket.server.backed_up, eio_socket)
        ws.raw_write = output.write  # frames, pongs and the close frame all take the buffer
        self._sock = ws
        self.output = output
        setattr(eio_socket, TRANSPORT_ATTRIBUTE, self)
        try:
            return self._serve()
        finally:
            eio_socket.server.websocket_outputs.pop(eio_socket.sid, None)
            setattr(eio_socket, TRANSPORT_ATTRIBUTE, None)

    def _serve(self):
        """What ``Socket._websocket_handler`` does (python-engineio 4.15.1), with a ``PacketWriter`` for its writer."""
        eio_socket = self._eio_socket
        if eio_socket.connected:  # an upgrade from polling: the probe, then UPGRADE
            eio_socket.upgrading = True  # engine.io holds packets in the queue meanwhile
            probe = self._receive()
            if probe is None or probe.packet_type != packet.PING or probe.data != "probe":
                eio_socket.upgrading = False
                return []
            self.send(packet.Packet(packet.PONG, data="probe").encode())
            eio_socket.queue.put(packet.Packet(packet.NOOP))  # ends the client's waiting poll
            upgrade = self._receive()
            if upgrade is None or upgrade.packet_type != packet.UPGRADE:
                eio_socket.upgraded = False
                eio_socket.upgrading = False
                return []
            eio_socket.upgraded = True
            eio_socket.upgrading = False
        else:
            eio_socket.connected = True
            eio_socket.upgraded = True
        self._replace_queue()
        while True:
            try:
                pkt = self._receive()
            except Exception:  # engine.io ends the connection on any read error too
                break
            if pkt is None:  # closed by the client
                break
            try:
                eio_socket.receive(pkt)
            except engineio.exceptions.UnknownPacketError:
                pass
            except engineio.exceptions.SocketIsClosedError:
                break
            except Exception:  # as engine.io: log it and end the connection properly
                log.exception("unexpected error handling a packet from socket %s", eio_socket.sid)
                break
        eio_socket.queue.put(None)  # closes the websocket
        eio_socket.close(wait=False, abort=True, reason=eio_socket.server.reason.TRANSPORT_CLOSE)
        return []

    def _replace_queue(self):
        """From here on packets are written as they are sent; those queued before go first.

        Nothing yields in between, so nothing can come between them. engine.io's
        queue is let go of (about 2.5 KiB per connection).
        """
        eio_socket = self._eio_socket
        queued, eio_socket.queue = eio_socket.queue, PacketWriter(self)
        while not queued.empty():
            eio_socket.queue.put(queued.get_nowait())
        if not self._sock.closed:
            eio_socket.server.websocket_outputs[eio_socket.sid] = self.output

    def _receive(self):
        """The next engine.io packet from the client, or None once the websocket is closed."""
        data = self._sock.receive()
        if data is None:
            return None
        if len(data) > self._eio_socket.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return packet.Packet(encoded_packet=data)

    def write_packet(self, pkt):
        """Write one engine.io packet now; a failed connection is closed, so its reader ends."""
        try:
            if pkt.binary:
                self._sock.send(pkt.encode(), binary=True)
            else:
                self.output.write(text_frame(pkt))
        except (OSError, WebSocketError):
            self.close()

    def close(self):
        """Send the close frame and let go of the websocket (once)."""
        self._eio_socket.server.websocket_outputs.pop(self._eio_socket.sid, None)
        if not self._sock.closed:
            self._sock.close()

    def send(self, message):
        return self._sock.send(message)


def websocket_driver(handler, server):
    """engine.io's websocket driver: the WSGI app serving one websocket.

    A bound method rather than the object: engine.io calls it, and Python 3.11 runs a
    called Python method in its caller's C frame, an object's ``__call__`` in a new one,
    which every idle websocket's greenlet stack would keep (about 750 bytes).
    """
    return BufferedWebSocketWSGI(handler, server).__call__


class PacketWriter:
    """Stands in for an upgraded engine.io socket's queue: a packet put on it is written at once.

    engine.io puts a socket's outgoing packets on its queue (``Socket.send``),
    and None to end the transport (``Socket.close``); its writer greenlet took
    them off. Nothing waits for this queue: it is always empty.
    """

    __slots__ = ("_transport",)

    def __init__(self, transport):
        self._transport = transport

    def put(self, pkt, block=True, timeout=None):
        if pkt is None:
            self._transport.close()
        else:
            self._transport.write_packet(pkt)

    def qsize(self):
        return 0

    def empty(self):
        return True

    def join(self):
        """Nothing to wait for: every packet was handed to the output buffer when put."""

    def task_done(self):
        """Nothing is taken off this queue."""

    def get(self, block=True, timeout=None):
        raise queue.Empty

    get_nowait = get


class ConnectionHandler(WebSocketHandler):
    """gevent-websocket's per-connection handler, lighter per connection, with no upgrade the app would refuse.

    A 1 KiB read buffer instead of 8 KiB: a connection keeps its reader for its
    whole life, and a websocket client only sends small messages (subscribe,
    pong); longer request lines are still read whole, the buffer refilling.
    Once the websocket runs, it lets go of what only the HTTP request needed.

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

    def run_websocket(self):
        # Not read again once the websocket runs (the environ keeps the request headers
        # as HTTP_* keys): the parsed request headers, an email.message object, and the
        # 101's header list, about 2 KiB per connection.
        self.headers = None
        self.response_headers = None
        return super().run_websocket()

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
        self.eio._async = dict(self.eio._async, websocket=websocket_driver)
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

    def emit_local(self, event, data, to, namespace):
        """``emit(event, data, to=to, namespace=namespace, ignore_queue=True)``, in one loop over the recipients.

        ``to`` is a room or a list of rooms; a socket in several gets the event
        once. The packet is encoded and framed once. This is the change feed's
        emit: python-socketio's emit loop pays a generator step, a skip list and
        a method call per recipient, a fifth of our Python per message
        (docs/benchmarks.md, "Optimizations made").
        """
        rooms = self.manager.rooms.get(namespace)
        if not rooms:
            return
        if isinstance(to, str):
            members = rooms.get(to)
            recipients = list(members.values()) if members else ()
        else:
            participants = {}
            for room in to:
                members = rooms.get(room)
                if members:
                    participants.update(members.items())
            recipients = list(participants.values())
        if not recipients:
            return
        encoded = self.packet_class(socketio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
        if isinstance(encoded, list):  # binary attachments: several packets per recipient
            self.manager.emit(event, data, namespace, room=to, ignore_queue=True)
            return
        eio_pkt = packet.Packet(packet.MESSAGE, encoded)
        self._write(recipients, eio_pkt, text_frame(eio_pkt))

    def _send_eio_packet(self, eio_sid, eio_pkt):
        if eio_pkt is not self._frame_packet:  # python-socketio's emit sends one packet to each recipient
            self._frame_packet, self._frame = eio_pkt, text_frame(eio_pkt)
        self._write((eio_sid,), eio_pkt, self._frame)

    def _write(self, eio_sids, eio_pkt, frame):
        """Send ``eio_pkt`` to each socket: ``frame`` straight to an open websocket, else through engine.io."""
        outputs = self.eio.websocket_outputs if frame is not None else {}
        corked = self._corked
        direct = 0
        for eio_sid in eio_sids:
            output = outputs.get(eio_sid)
            if output is not None:
                if corked is not None and output.cork():
                    corked.append(output)
                try:
                    output.write(frame)
                except OSError:
                    pass  # nothing was written; engine.io's send below meets the error and closes the websocket
                else:
                    direct += 1
                    continue
            self.queued_writes += 1
            super()._send_eio_packet(eio_sid, eio_pkt)
            eio_socket = self.eio.sockets.get(eio_sid)
            if eio_socket is not None and eio_socket.queue.qsize():  # polling, or mid-upgrade: waits for a poll
                self.eio.backed_up.add(eio_socket)
        self.direct_writes += direct

    def _engineio_server_class(self):
        return EngineServer  # pings from one greenlet, not one per socket (app/realtime/keepalive.py)
