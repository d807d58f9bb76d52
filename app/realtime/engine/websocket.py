"""engine.io's websocket transport for gevent-websocket: no writer greenlet per socket, one output buffer.

python-engineio hands every packet to a socket's own queue, and the socket's
writer greenlet wakes up, takes it off and writes it; every idle connection
keeps that greenlet and its queue. Here, once a websocket is up, its engine.io
queue is replaced by a ``PacketWriter`` that writes what is put on it at once,
and there is no writer greenlet. A polling socket, and one upgrading from
polling, keeps engine.io's queue.

Order per socket holds because every byte for a websocket, from either path
and from gevent-websocket itself (pong and close frames), goes through one
``OutputBuffer``: a write never yields, and what the connection will not take
now waits in the buffer, behind which later writes queue up. The packets
queued before the upgrade completes are written before the queue is replaced,
without yielding, so none is overtaken.
"""

import logging
import queue

import engineio.exceptions
from engineio import packet
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import Header, WebSocket

from app.logs import short_sid
from app.realtime.engine.frames import CLOSE_NORMAL, MessageReader
from app.realtime.engine.output import OutputBuffer

log = logging.getLogger(__name__)


def text_frame(eio_pkt):
    """The websocket frame carrying ``eio_pkt``, or None for a packet with binary data."""
    if eio_pkt.binary:
        return None
    payload = eio_pkt.encode().encode("utf-8")
    return Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0) + payload


class WebSocketTransport:
    """Serves one engine.io socket over a gevent-websocket websocket, writing through an ``OutputBuffer``.

    Same interface as ``engineio.async_drivers.gevent.WebSocketWSGI``, but it
    serves the engine.io socket itself instead of calling the socket's
    ``_websocket_handler``, which starts a writer greenlet per socket. Its
    output buffer is in the server's ``connections`` while packets may be
    written straight to it: from the end of the upgrade until ``close``. Every
    way the websocket or engine.io's socket closes ends in ``close`` without a
    yield in between: a close frame or read error ends the read loop, which
    closes engine.io's socket, which puts None on its queue; a failed write
    calls it. (While engine.io's socket runs its disconnect handler it is
    already "closing", and a packet sent meanwhile is written either way.)
    """

    __slots__ = ("_eio_socket", "_reader", "_ws", "output")

    def __init__(self, handler, server):
        self._eio_socket = handler.__self__  # the engine.io Socket whose _websocket_handler this stands in for
        self._ws = None
        self._reader = None
        self.output = None

    def serve(self, environ, start_response):
        """The WSGI application of the websocket request (engine.io calls it)."""
        if "wsgi.websocket" not in environ:
            raise RuntimeError("websocket requests need gevent-websocket's worker (GeventWebSocketWorker)")
        ws = environ["wsgi.websocket"]
        eio_socket = self._eio_socket
        connections = eio_socket.server.connections
        sid = eio_socket.sid
        output = OutputBuffer(ws.handler.socket, connections.waiting, sid)
        ws.raw_write = output.write  # frames, pongs and the close frame all take the buffer
        self._ws = ws
        self._reader = MessageReader(ws, eio_socket.server.max_http_buffer_size, connections.refused)
        self.output = output
        try:
            return self._serve()
        finally:
            connections.detach(sid)

    def _serve(self):
        """What ``Socket._websocket_handler`` does (python-engineio 4.15.1), with a ``PacketWriter`` for its writer."""
        eio_socket = self._eio_socket
        if eio_socket.connected:  # an upgrade from polling: the probe, then UPGRADE
            eio_socket.upgrading = True  # engine.io holds packets in the queue meanwhile
            probe = self._receive()
            if probe is None or probe.packet_type != packet.PING or probe.data != "probe":
                eio_socket.upgrading = False
                return []
            self._ws.send(packet.Packet(packet.PONG, data="probe").encode())
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
        self.replace_queue()
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
                log.exception("unexpected error handling a packet from socket %s", short_sid(eio_socket.sid))
                break
        eio_socket.queue.put(None)  # closes the websocket
        eio_socket.close(wait=False, abort=True, reason=eio_socket.server.reason.TRANSPORT_CLOSE)
        return []

    def replace_queue(self):
        """From here on packets are written as they are sent; those queued before go first.

        Nothing yields in between, so nothing can come between them. engine.io's
        queue is let go of.
        """
        eio_socket = self._eio_socket
        queued, eio_socket.queue = eio_socket.queue, PacketWriter(self)
        while not queued.empty():
            eio_socket.queue.put(queued.get_nowait())
        if not self._ws.closed:
            eio_socket.server.connections.attach(eio_socket.sid, self.output)

    def _receive(self):
        """The next engine.io packet from the client, or None once the websocket is closed."""
        data = self._reader.receive()  # within the size limit, refused by the frame header before it is read
        if data is None:
            return None
        return packet.Packet(encoded_packet=data)

    def write_packet(self, pkt):
        """Write one engine.io packet now; a failed connection is closed, so its reader ends."""
        try:
            if pkt.binary:
                self._ws.send(pkt.encode(), binary=True)
            else:
                self.output.write(text_frame(pkt))
        except (OSError, WebSocketError):
            self.close()

    def close(self):
        """Send the close frame (1000, normal closure) and let go of the websocket (once)."""
        self._eio_socket.server.connections.detach(self._eio_socket.sid)
        self._reader.close(CLOSE_NORMAL)


def websocket_driver(handler, server):
    """engine.io's websocket driver: the WSGI app serving one websocket.

    A bound method rather than an object with ``__call__``: engine.io calls it,
    and Python 3.11 runs a called Python method in its caller's C frame, an
    object's ``__call__`` in a new one, which every idle websocket's greenlet
    stack would keep.
    """
    return WebSocketTransport(handler, server).serve


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
