"""Reading a client's websocket messages within a size limit, refusing what costs before it costs.

gevent-websocket's ``WebSocket.receive`` reads a whole frame, and every
continuation frame, into memory, unmasks it byte by byte in Python and checks
its UTF-8 the same way, without yielding, before any size limit of
python-engineio applies: one 20 MB message froze a worker for seconds. It also
takes unmasked client frames. ``MessageReader`` reads the same frames with
gevent-websocket's header parser, but:

- refuses a message by the length its frame headers announce, before reading
  the payload (close 1009), counting continuation frames together;
- refuses unmasked client frames (close 1002, RFC 6455 section 5.1) and binary
  messages (close 1003: our clients only send JSON text);
- unmasks with one big-integer XOR and checks UTF-8 with ``bytes.decode``
  (close 1007), both in C;
- yields to the other greenlets after every ``YIELD_EVERY_BYTES`` received, so
  a client that sends as fast as the network takes it shares the worker.
"""

import contextlib
import struct

import gevent
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, WebSocket

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

#: Received bytes between two yields of the reading greenlet.
YIELD_EVERY_BYTES = 64 * 1024


class MessageRefused(Exception):
    """A client's frame broke a limit or the protocol: the websocket closes with ``code``."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


#: What ``Connections.refused`` counts a refusal as, by close code.
REFUSAL_NAMES = {
    CLOSE_PROTOCOL_ERROR: "protocol",
    CLOSE_UNSUPPORTED_DATA: "binary",
    CLOSE_INVALID_DATA: "utf8",
    CLOSE_TOO_BIG: "too_large",
}


def unmask(payload, mask):
    """``payload`` XOR the 4-byte ``mask`` repeated, computed in C (one big-integer XOR)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class MessageReader:
    """Reads text messages from one websocket's ``wire``, at most ``max_bytes`` each.

    ``wire`` is what it needs of the websocket (``websocket.Wire``, or
    gevent-websocket's ``WebSocket``): ``stream.read(n)`` for the client's bytes,
    ``send_frame(payload, opcode)`` for pongs and the close frame, and ``closed``.

    ``receive()`` stands in for ``WebSocket.receive()``: the next text message
    as a ``str``, or None once the websocket is closed, by the client or
    because a frame was refused (the close frame carries the reason).
    """

    __slots__ = ("_max_bytes", "_refused", "_unyielded", "_wire")

    def __init__(self, wire, max_bytes, refused):
        self._wire = wire
        self._max_bytes = max_bytes
        self._refused = refused  # a Counter of refusals by reason
        self._unyielded = 0

    def receive(self):
        """The next text message, or None once the websocket is closed."""
        wire = self._wire
        if wire.closed:
            return None
        try:
            return self._read_message()
        except MessageRefused as refused:
            self._refused[REFUSAL_NAMES[refused.code]] += 1
            self.close(refused.code, refused.reason)
        except ProtocolError:  # gevent-websocket's header parser: a fragmented or oversized control frame
            self._refused["protocol"] += 1
            self.close(CLOSE_PROTOCOL_ERROR, "invalid control frame")
        except OSError:  # the connection ended, or ended inside a frame (WebSocketError is an OSError)
            self.close(CLOSE_NORMAL)
        return None

    def close(self, code, reason=""):
        """Send a close frame with ``code`` and ``reason`` (once), and mark the websocket closed.

        gevent-websocket's ``WebSocket.close`` (0.10.1) sends its close frame
        without the status code; the code is what tells a client why.
        """
        wire = self._wire
        if wire.closed:
            return
        with contextlib.suppress(OSError):  # the connection is gone (WebSocketError is an OSError): nobody to tell
            wire.send_frame(struct.pack("!H", code) + reason.encode("utf-8")[:120], WebSocket.OPCODE_CLOSE)
        wire.closed = True

    def _read_message(self):
        opcode = None
        parts = []
        size = 0
        while True:
            header = Header.decode_header(self._wire.stream)
            if header.flags:
                raise MessageRefused(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not header.mask:
                raise MessageRefused(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            frame_opcode = header.opcode
            if frame_opcode >= WebSocket.OPCODE_CLOSE:  # control frames: at most 125 bytes (checked by the parser)
                payload = self._read_payload(header)
                if frame_opcode == WebSocket.OPCODE_CLOSE:
                    self._answer_close(payload)
                    return None
                if frame_opcode == WebSocket.OPCODE_PING:
                    self._wire.send_frame(payload, WebSocket.OPCODE_PONG)
                elif frame_opcode != WebSocket.OPCODE_PONG:
                    raise MessageRefused(CLOSE_PROTOCOL_ERROR, "unknown control opcode")
                continue
            if frame_opcode == WebSocket.OPCODE_TEXT:
                if opcode is not None:
                    raise MessageRefused(CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one")
                opcode = frame_opcode
            elif frame_opcode == WebSocket.OPCODE_CONTINUATION:
                if opcode is None:
                    raise MessageRefused(CLOSE_PROTOCOL_ERROR, "a continuation frame without a message")
            elif frame_opcode == WebSocket.OPCODE_BINARY:
                raise MessageRefused(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")
            else:
                raise MessageRefused(CLOSE_PROTOCOL_ERROR, "unknown opcode")
            size += header.length
            if size > self._max_bytes:  # refused on the header: the payload is never read
                raise MessageRefused(CLOSE_TOO_BIG, f"messages are limited to {self._max_bytes} bytes")
            parts.append(self._read_payload(header))
            if header.fin:
                break
        try:
            return b"".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            raise MessageRefused(CLOSE_INVALID_DATA, "text messages must be UTF-8") from None

    def _read_payload(self, header):
        length = header.length
        payload = self._wire.stream.read(length) if length else b""
        if len(payload) != length:
            raise WebSocketError("the connection ended inside a frame")
        self._unyielded += length + 6
        if self._unyielded >= YIELD_EVERY_BYTES:
            self._unyielded = 0
            gevent.sleep(0)
            if self._wire.closed:  # closed meanwhile (the server shutting down, a backlog cut-off)
                raise WebSocketError("closed")
        return unmask(payload, header.mask)

    def _answer_close(self, payload):
        """The client closes: answer with its code (RFC 6455 section 5.5.1)."""
        if not payload:
            self.close(CLOSE_NORMAL)
            return
        if len(payload) < 2:
            raise MessageRefused(CLOSE_PROTOCOL_ERROR, "a close frame of one byte")
        (code,) = struct.unpack("!H", payload[:2])
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise MessageRefused(CLOSE_INVALID_DATA, "a close reason must be UTF-8") from None
        self.close(code if 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015) else CLOSE_PROTOCOL_ERROR)
