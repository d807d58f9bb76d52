"""MessageReader on a gevent-websocket WebSocket over an in-memory stream: limits checked on the frame header."""

import io
import struct
from collections import Counter

import gevent
import pytest
from geventwebsocket.websocket import WebSocket

from app.realtime.engine.frames import YIELD_EVERY_BYTES, MessageReader, unmask
from testkit.hostile import OPCODE_BINARY, OPCODE_CLOSE, OPCODE_CONTINUATION, OPCODE_PING, OPCODE_TEXT, frame_header

LIMIT = 1024


class Stream:
    """What gevent-websocket reads frames from and writes frames to."""

    def __init__(self, data):
        self.input = io.BytesIO(data)
        self.read = self.input.read
        self.written = []
        self.write = self.written.append


def masked(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    """A client frame: ``payload`` masked with ``mask``."""
    if isinstance(payload, str):
        payload = payload.encode()
    return frame_header(opcode, len(payload), fin, mask) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def reader_over(data, limit=LIMIT):
    stream = Stream(data)
    ws = WebSocket({}, stream, handler=None)
    refused = Counter()
    return MessageReader(ws, limit, refused), stream, refused


def close_code(stream):
    """The status code of the close frame written last."""
    sent = stream.written[-1]
    assert sent[0] == 0x80 | OPCODE_CLOSE, sent
    return struct.unpack("!H", sent[2:4])[0]


def test_unmask_is_the_xor_with_the_repeated_key():
    payload = bytes(range(256)) * 3 + b"xyz"
    mask = b"\xa1\xb2\xc3\xd4"
    assert unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert unmask(b"", mask) == b""
    assert unmask(b"\x00\x00", mask) == b"\xa1\xb2"  # trailing zero bytes survive (little-endian ints)


def test_a_text_message_split_in_frames_with_a_ping_between():
    data = masked(OPCODE_TEXT, "hel", fin=False) + masked(OPCODE_PING, "p") + masked(OPCODE_CONTINUATION, "lo é")
    reader, stream, refused = reader_over(data)
    assert reader.receive() == "hello é"
    assert stream.written == [bytes([0x80 | 0xA, 1]) + b"p"]  # the pong
    assert not refused


def test_a_frame_over_the_limit_is_refused_before_its_payload_is_read():
    header = frame_header(OPCODE_TEXT, 20 * 1024 * 1024, mask=b"\x01\x02\x03\x04")
    reader, stream, refused = reader_over(header + b"x" * 100)
    assert reader.receive() is None
    assert close_code(stream) == 1009
    assert stream.input.tell() == len(header)  # not one byte of the payload read
    assert refused == {"too_large": 1}
    assert reader.receive() is None  # closed


def test_continuation_frames_count_together():
    half = masked(OPCODE_TEXT, "a" * (LIMIT // 2), fin=False)
    data = half + masked(OPCODE_CONTINUATION, "a" * (LIMIT // 2), fin=False) + masked(OPCODE_CONTINUATION, "a")
    reader, stream, _ = reader_over(data)
    assert reader.receive() is None
    assert close_code(stream) == 1009


def test_exactly_the_limit_is_served():
    reader, _, _ = reader_over(masked(OPCODE_TEXT, "a" * LIMIT))
    assert reader.receive() == "a" * LIMIT


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (frame_header(OPCODE_TEXT, 2, mask=None) + b"40", 1002, "protocol"),
        (masked(OPCODE_BINARY, b"\x00\x01"), 1003, "binary"),
        (masked(OPCODE_TEXT, b"\xff\xfe"), 1007, "utf8"),
        (masked(OPCODE_CONTINUATION, "a"), 1002, "protocol"),
        (masked(OPCODE_TEXT, "a", fin=False) + masked(OPCODE_TEXT, "b"), 1002, "protocol"),
        (masked(0x3, "a"), 1002, "protocol"),
        (masked(OPCODE_PING, "a", fin=False), 1002, "protocol"),
        (bytes([0x80 | 0x40 | OPCODE_TEXT, 0x80 | 1]) + b"\x00\x00\x00\x00a", 1002, "protocol"),
    ],
    ids=["unmasked", "binary", "not-utf8", "stray-continuation", "text-in-text", "bad-opcode", "split-ping", "rsv"],
)
def test_frames_against_the_protocol_are_refused_with_a_code(data, code, reason):
    reader, stream, refused = reader_over(data)
    assert reader.receive() is None
    assert close_code(stream) == code
    assert refused == {reason: 1}


def test_a_close_frame_is_answered_with_its_code():
    reader, stream, refused = reader_over(masked(OPCODE_CLOSE, struct.pack("!H", 1001) + b"bye"))
    assert reader.receive() is None
    assert close_code(stream) == 1001
    assert not refused


def test_the_connection_ending_inside_a_frame_ends_the_reader():
    reader, _, refused = reader_over(masked(OPCODE_TEXT, "abcdef")[:-2])
    assert reader.receive() is None
    assert not refused


def test_the_reader_yields_while_a_fast_client_sends():
    """With everything already buffered, other greenlets still run every YIELD_EVERY_BYTES received."""
    message = masked(OPCODE_TEXT, "a" * 1000)
    count = 4 * YIELD_EVERY_BYTES // len(message)
    reader, _, _ = reader_over(message * count)
    ran = []
    other = gevent.spawn(lambda: ran.append(len(read)))
    read = []
    while len(read) < count:
        read.append(reader.receive())
    other.join()
    assert ran and ran[0] <= YIELD_EVERY_BYTES // len(message) + 1, ran
