"""engine.io's websocket transport for gevent-websocket: no writer greenlet per socket, no reader one while idle.

python-engineio hands every packet to a socket's own queue, and the socket's
writer greenlet wakes up, takes it off and writes it; every idle connection
keeps that greenlet and its queue. Here, once a websocket is up, its engine.io
queue is replaced by a ``PacketWriter`` that writes what is put on it at once,
and there is no writer greenlet. A polling socket, and one upgrading from
polling, keeps engine.io's queue.

Nor does an idle websocket keep a greenlet to read its client's next message:
a parked greenlet holds its saved stack and a page of Python frames, about
12 KiB, more than everything else an idle connection keeps. Once the client
has sent nothing more than what was handled, the transport *parks*: it takes
the connection over from gevent's request handler (``ConnectionHandler.let_go``),
whose greenlet then ends, and waits for the connection to become readable with
an event-loop watcher alone; a reader greenlet (kept between wake-ups,
``ReaderPool``) reads and handles what arrives, and the transport parks again
once nothing more is buffered. Not on
a TLS connection (the TLS session may hold decrypted bytes the socket does not
show), nor where the handler cannot let go (another server than gunicorn's).

Order per socket holds because every byte for a websocket, from either path,
goes through one ``OutputBuffer``: a write never yields, and what the
connection will not take now waits in the buffer, behind which later writes
queue up. The packets queued before the upgrade completes are written before
the queue is replaced, without yielding, so none is overtaken.
"""

import contextlib
import logging
import queue
import socket

import engineio.exceptions
import gevent
from engineio import packet
from gevent.hub import Waiter
from geventwebsocket.websocket import Header, WebSocket

from app.logs import short_sid
from app.realtime.engine.frames import CLOSE_NORMAL, MessageReader
from app.realtime.engine.handler import ConnectionHandler, peek_now
from app.realtime.engine.output import OutputBuffer

log = logging.getLogger(__name__)

#: The most a woken websocket reads at once (what ``ConnectionHandler`` reads requests with).
READ_BUFFER_BYTES = ConnectionHandler.READ_BUFFER_BYTES

#: Seconds a closing parked websocket waits for what it still has to send to leave, before its connection closes.
CLOSE_FLUSH_SECONDS = 5.0

#: What a closing parked websocket reads out of its connection at most before closing it (see ``_close_read_out``).
CLOSE_READ_OUT_BYTES = 64 * 1024


def text_frame(eio_pkt):
    """The websocket frame carrying ``eio_pkt``, or None for a packet with binary data."""
    if eio_pkt.binary:
        return None
    payload = eio_pkt.encode().encode("utf-8")
    return Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0) + payload


class Wire:
    """A websocket after its handshake, as ``MessageReader`` and the transport use it.

    Frames in from ``stream`` (anything with ``read(n)``), frames out through
    ``output`` (an ``OutputBuffer``), and ``closed`` once the close frame went
    out or the connection ended.
    """

    __slots__ = ("closed", "output", "stream")

    def __init__(self, stream, output):
        self.stream = stream
        self.output = output
        self.closed = False

    def send_frame(self, payload, opcode):
        """Write one final frame (``payload`` bytes or text); raises ``OSError`` once the connection failed."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.output.write(Header.encode_header(True, opcode, b"", len(payload), 0) + payload)


class WebSocketTransport:
    """Serves one engine.io socket over a websocket upgraded by gevent-websocket, writing through an ``OutputBuffer``.

    Same interface as ``engineio.async_drivers.gevent.WebSocketWSGI``, but it
    serves the engine.io socket itself instead of calling the socket's
    ``_websocket_handler``, which starts a writer greenlet per socket. Its
    output buffer is in the server's ``connections`` while packets may be
    written straight to it: from the end of the upgrade until ``close``. Every
    way the websocket or engine.io's socket closes ends in ``close`` without a
    yield in between: a close frame or read error ends the reading, which
    closes engine.io's socket, which puts None on its queue; a failed write
    calls it. (While engine.io's socket runs its disconnect handler it is
    already "closing", and a packet sent meanwhile is written either way.)

    Parked (see the module), it holds the connection itself (``_sock``), an
    event-loop watcher on it (``_watcher``, started), and no greenlet.
    """

    __slots__ = ("_eio_socket", "_let_go", "_reader", "_rfile", "_sock", "_watcher", "_wire", "output")

    def __init__(self, handler, server):
        self._eio_socket = handler.__self__  # the engine.io Socket whose _websocket_handler this stands in for
        self._wire = None
        self._reader = None
        self._rfile = None  # what is read from: the request handler's reader, then a SocketReader
        self._sock = None  # the connection (the request handler's socket object until it lets go), when it may park
        self._watcher = None  # while parked: the event-loop watcher waiting for the connection to be readable
        self._let_go = None  # ConnectionHandler.let_go of the request handler, while it holds the connection
        self.output = None

    def serve(self, environ, start_response):
        """The WSGI application of the websocket request (engine.io calls it)."""
        if "wsgi.websocket" not in environ:
            raise RuntimeError("websocket requests need gevent-websocket's worker (GeventWebSocketWorker)")
        ws = environ["wsgi.websocket"]
        handler = ws.handler
        eio_socket = self._eio_socket
        connections = eio_socket.server.connections
        sid = eio_socket.sid
        output = OutputBuffer(handler.socket, connections.waiting, sid)
        self._wire = Wire(ws.stream, output)
        self._reader = MessageReader(self._wire, eio_socket.server.max_http_buffer_size, connections.refused)
        self.output = output
        self._let_go = getattr(handler, "let_go", None) if connections.parking and not output.encrypted else None
        if self._let_go is not None:
            self._sock, self._rfile = handler.socket, handler.rfile
        ws.closed = True  # gevent-websocket's WebSocket writes nothing of its own (nor a close frame when collected)
        parked = False
        try:
            parked = self._serve()
        finally:
            if not parked:  # ended here: the request handler closes the connection
                self._let_go = self._sock = self._rfile = None
                connections.detach(sid)
        return []

    def _serve(self):
        """What ``Socket._websocket_handler`` does (python-engineio 4.15.1), with a ``PacketWriter`` for its writer.

        Returns True once parked, False once the websocket ended.
        """
        eio_socket = self._eio_socket
        if eio_socket.connected:  # an upgrade from polling: the probe, then UPGRADE
            eio_socket.upgrading = True  # engine.io holds packets in the queue meanwhile
            probe = self._receive()
            if probe is None or probe.packet_type != packet.PING or probe.data != "probe":
                eio_socket.upgrading = False
                return False
            self._wire.send_frame(packet.Packet(packet.PONG, data="probe").encode(), WebSocket.OPCODE_TEXT)
            eio_socket.queue.put(packet.Packet(packet.NOOP))  # ends the client's waiting poll
            upgrade = self._receive()
            if upgrade is None or upgrade.packet_type != packet.UPGRADE:
                eio_socket.upgraded = False
                eio_socket.upgrading = False
                return False
            eio_socket.upgraded = True
            eio_socket.upgrading = False
        else:
            eio_socket.connected = True
            eio_socket.upgraded = True
        self.replace_queue()
        return self._read_until_idle(park_first=True)

    def _read_until_idle(self, park_first):
        """Handle the client's packets until nothing more is buffered (then park: True) or the end (False).

        ``park_first``: park before reading if nothing is buffered yet. Woken up,
        the transport reads first: the connection is readable, with data or
        with its end, which a look at what is buffered cannot tell apart.
        """
        eio_socket = self._eio_socket
        while True:
            if park_first and self._park_if_idle():
                return True
            park_first = True
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
        return False

    def replace_queue(self):
        """From here on packets are written as they are sent; those queued before go first.

        Nothing yields in between, so nothing can come between them. engine.io's
        queue is let go of.
        """
        eio_socket = self._eio_socket
        queued, eio_socket.queue = eio_socket.queue, PacketWriter(self)
        while not queued.empty():
            eio_socket.queue.put(queued.get_nowait())
        if not self._wire.closed:
            eio_socket.server.connections.attach(eio_socket.sid, self.output)

    def _receive(self):
        """The next engine.io packet from the client, or None once the websocket is closed."""
        data = self._reader.receive()  # within the size limit, refused by the frame header before it is read
        if data is None:
            return None
        return packet.Packet(encoded_packet=data)

    # --- parking ------------------------------------------------------------------------------------------------

    def _park_if_idle(self):
        """Park when the transport may and nothing the client sent waits to be read; True when parked."""
        reader = self._rfile
        if reader is None or self._wire.closed:
            return False
        if self._let_go is not None:  # the request handler still holds the connection: take it over
            if _buffered(reader, self._sock) or not self.output.idle:
                return False  # (its flusher writes through the handler's socket object: park once it is done)
            self._sock = self._let_go()
            self._let_go = None
            self.output.move_to(self._sock)
            reader.close()
            self._rfile = self._wire.stream = SocketReader(self._sock)
            self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        elif reader.buffered:
            return False
        self._eio_socket.server.connections.parked.add(self._eio_socket.sid)
        self._watcher.start(self._readable)
        return True

    def _unpark(self):
        """Stop waiting for the connection to be readable; True if it was parked."""
        watcher = self._watcher
        if watcher is None or not watcher.active:
            return False
        watcher.stop()
        self._eio_socket.server.connections.parked.discard(self._eio_socket.sid)
        return True

    def _readable(self):
        """The event loop found the parked connection readable: a reader greenlet takes it (not the loop)."""
        self._unpark()
        READERS.wake(self)

    def wake(self):
        """Read and handle what arrived, then park again, or end the connection (in a reader greenlet)."""
        try:
            if not self._wire.closed and self._read_until_idle(park_first=False):
                return
        except Exception:  # a reader greenlet outlives any one connection
            log.exception("unexpected error reading socket %s", short_sid(self._eio_socket.sid))
        self._end()

    def _end(self):
        """The websocket ended while the transport held the connection: let engine.io forget it, close the connection.

        What the request handler and engine.io's ``handle_request`` did when
        the request of an unparked websocket returned.
        """
        eio_socket = self._eio_socket
        server = eio_socket.server
        # Closed already unless a failed write ended it: engine.io's socket then closes here, as the reader
        # of an unparked websocket closed it once its next read failed.
        eio_socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        server.connections.detach(eio_socket.sid)
        if server.sockets.get(eio_socket.sid) is eio_socket and eio_socket.closed:
            del server.sockets[eio_socket.sid]
        self.output.flushed(CLOSE_FLUSH_SECONDS)
        sock, self._sock = self._sock, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        self._rfile = self._wire.stream = None
        _close_read_out(sock)

    def write_packet(self, pkt):
        """Write one engine.io packet now; a failed connection is closed, so its reader ends."""
        try:
            if pkt.binary:
                self._wire.send_frame(pkt.encode(), WebSocket.OPCODE_BINARY)
            else:
                self.output.write(text_frame(pkt))
        except OSError:
            self.close()

    def close(self):
        """Send the close frame (1000, normal closure) and let go of the websocket (once).

        A parked websocket then ends at once, in a greenlet of its own: no reader
        is waiting for the client's answer.
        """
        self._eio_socket.server.connections.detach(self._eio_socket.sid)
        self._reader.close(CLOSE_NORMAL)
        if self._unpark():
            gevent.spawn(self._end)


class SocketReader:
    """A parked websocket's input: ``read(n)`` as a file's, buffering only what one ``recv`` brought past ``n``.

    Nothing is allocated per wake-up, and ``buffered`` tells without a system
    call whether bytes wait here, which the connection's readiness does not show.
    """

    __slots__ = ("_buffer", "_sock")

    def __init__(self, sock):
        self._sock = sock
        self._buffer = b""

    @property
    def buffered(self):
        return bool(self._buffer)

    def read(self, size):
        """``size`` bytes, fewer only at the end of the connection; waits (cooperatively) for them.

        With nothing kept, one ``recv`` of up to READ_BUFFER_BYTES usually brings
        a whole small message (what is past ``size`` is kept). What is still
        missing then is received into one buffer of ``size`` bytes, never past
        it: a payload arriving a byte at a time costs its length, not its square.
        """
        data = self._buffer
        if not data and size <= READ_BUFFER_BYTES:
            data = self._sock.recv(READ_BUFFER_BYTES)
        if 0 < len(data) < size:
            data = self._receive_rest(data, size)
        elif not data and size:
            data = self._receive_rest(b"", size)
        self._buffer = data[size:]
        return data[:size]

    def _receive_rest(self, start, size):
        buffer = bytearray(size)
        have = len(start)
        buffer[:have] = start
        view = memoryview(buffer)
        while have < size:
            received = self._sock.recv_into(view[have:])
            if not received:
                break
            have += received
        return bytes(view[:have])


class ReaderPool:
    """The greenlets that read woken websockets: one is kept for the next wake-up instead of spawning one each time.

    A new greenlet costs several times the switch to a waiting one (its frame
    stack is allocated and freed with it). At most ``keep`` wait; a wake-up
    finding none spawns a new one.
    """

    def __init__(self, keep):
        self._keep = keep
        self._idle = []  # the Waiters of the greenlets waiting for a connection to read

    @property
    def waiting(self):
        """Greenlets waiting for the next wake-up."""
        return len(self._idle)

    def wake(self, transport):
        """Have ``transport`` read by a waiting greenlet, or a new one (called from the event loop)."""
        if self._idle:
            self._idle.pop().switch(transport)
        else:
            gevent.spawn(self._read, transport)

    def _read(self, transport):
        waiter = Waiter()
        while True:
            transport.wake()
            if len(self._idle) >= self._keep:
                return
            self._idle.append(waiter)
            transport = waiter.get()


#: The reader greenlets of this process.
READERS = ReaderPool(keep=64)


def _buffered(rfile, sock):
    """True when ``rfile`` holds bytes read from ``sock`` and not yet taken, or the kernel has some for it now."""
    try:
        return bool(peek_now(rfile, sock))
    except OSError:  # the connection failed: not idle, the next read meets it and ends the websocket
        return True


def _close_read_out(sock):
    """Close ``sock`` after reading out what the client sent meanwhile, so the kernel ends it with FIN, not RST.

    An RST could make the client's system drop the last frames it was sent and
    has not read yet. At most ``CLOSE_READ_OUT_BYTES`` are read: a client that
    keeps sending gets its RST.
    """
    with contextlib.suppress(OSError):
        sock.settimeout(0.0)
        for _ in range(CLOSE_READ_OUT_BYTES // 16384):
            if not sock.recv(16384):
                break
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


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
