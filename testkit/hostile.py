"""Hostile clients and the well-behaved bystander watched while they attack.

The attacker speaks raw bytes over a socket, where a client library would
refuse to misbehave. The bystander is what every attack test checks: a
subscriber that must get every update written meanwhile, and a ``/healthz``
asked in a loop, neither with a gap over ``max_gap`` seconds.
"""

import base64
import itertools
import os
import socket
import struct
import threading
import time

import requests

from testkit.clients import DEFAULT_TIMEOUT, RecordingClient, mint_token, tenant_with_entity

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9


def frame_header(opcode, length, fin=True, mask=b"\x00\x00\x00\x00"):
    """A websocket frame header for a payload of ``length`` bytes, masked with ``mask`` unless it is None."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    return header + (mask or b"")


def frame(opcode, payload, fin=True, masked=True):
    """A whole frame; masked with a zero key (XOR 0 leaves the payload as it is), or not masked at all."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return frame_header(opcode, len(payload), fin, b"\x00\x00\x00\x00" if masked else None) + payload


class RawWebSocket:
    """An Engine.IO websocket spoken byte by byte: handshake, frames sent as given, frames read back."""

    def __init__(self, base_url, timeout=DEFAULT_TIMEOUT, headers=None, expect_upgrade=True):
        """Open the websocket (``headers`` added to the request); with ``expect_upgrade=False``, only send the
        request: ``status`` and ``head`` then hold the server's answer."""
        host, port = base_url.split("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        self._buffer = b""
        self.head = self._read_until(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1])
        if not expect_upgrade:
            return
        assert self.status == 101, self.head
        opcode, payload = self.read_frame()
        assert opcode == OPCODE_TEXT and payload.startswith(b"0{"), payload  # engine.io OPEN

    def _read_until(self, marker):
        while marker not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before {marker!r}; got {self._buffer[:200]!r}")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(marker, 1)
        return head

    def _read_exactly(self, size):
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a frame")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_frame(self):
        """The next frame from the server: ``(opcode, payload)`` (server frames are not masked)."""
        first, second = self._read_exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8))
        return first & 0x0F, self._read_exactly(length)

    def send(self, data):
        """Send raw bytes (frames built with ``frame`` or ``frame_header``)."""
        self.sock.sendall(data)

    def send_text(self, text):
        """One masked text frame."""
        self.send(frame(OPCODE_TEXT, text))

    def close_code(self):
        """Read frames until the server's close frame; return its status code (None if it carried none)."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == OPCODE_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def body(self):
        """The body of the server's plain HTTP answer (when it did not upgrade), by its Content-Length."""
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return self._read_exactly(int(value))
        raise AssertionError(f"no Content-Length in {self.head!r}")

    def connected_until_closed(self):
        """True once the server closed the TCP connection (reads what is left until EOF)."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()


def websocket_when_there_is_room(url, headers=None):
    """A ``RawWebSocket`` (with ``headers``), once the server has counted a closed connection out.

    Until then the server refuses it (429 past MAX_CONNECTIONS_PER_IP, 503 past
    WORKER_CONNECTIONS): the attempt is repeated until DEFAULT_TIMEOUT.
    """
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while True:
        attempt = RawWebSocket(url, headers=headers, expect_upgrade=False)
        if attempt.status == 101:
            attempt.read_frame()  # engine.io OPEN
            return attempt
        attempt.close()
        assert time.monotonic() < deadline, "the closed connection was never counted out"
        time.sleep(0.05)


class Bystander:
    """A well-behaved client of ``base_url``, watched during an attack.

    In a tenant of its own: a subscriber to an entity, a writer putting a metric
    value every ``period`` seconds through the REST API, and a loop asking
    ``/healthz``. ``check()`` then asserts that every value written arrived, in
    order, and that neither the updates nor the health answers stopped for more
    than ``max_gap`` seconds.
    """

    def __init__(self, base_url, period=0.05, max_gap=0.5, namespace="/dashboard"):
        self.base_url = base_url
        self.period = period
        self.max_gap = max_gap
        self.tenant, self.api = tenant_with_entity(base_url)
        self.client = RecordingClient(namespace)
        self.written = []
        self.errors = []
        self.health = []  # (monotonic time of the answer, status or the error)
        self._stop = threading.Event()
        self._threads = []

    def __enter__(self):
        self.client.connect(self.base_url, mint_token(self.tenant))
        self.client.subscribe("event-1")
        for target in (self._write, self._ask_health):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.client.wait_until(lambda c: len(c.of("metric:update")) >= 3, what="updates before the attack")
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join(DEFAULT_TIMEOUT)
        self.client.disconnect()

    def _write(self):
        count = 0
        while not self._stop.wait(self.period):
            count += 1
            # Names cycle, so that a poller tick never folds two writes of one metric into one update.
            try:
                self.api.ingest(("event-1", f"bystander-{count % 16}", count))
            except (AssertionError, requests.RequestException) as error:
                self.errors.append(repr(error))
                continue
            self.written.append(count)

    def _ask_health(self):
        session = requests.Session()
        while not self._stop.is_set():
            try:
                status = session.get(self.base_url + "/healthz", timeout=DEFAULT_TIMEOUT).status_code
            except requests.RequestException as error:
                status = repr(error)
            self.health.append((time.monotonic(), status))
            self._stop.wait(self.period)
        session.close()

    def check(self):
        """Stop, then assert nothing was lost and nothing stalled for more than ``max_gap``."""
        self._stop.set()
        for thread in self._threads:
            thread.join(DEFAULT_TIMEOUT)
        written = list(self.written)
        assert written, "the bystander wrote nothing"
        assert not self.errors, f"the bystander's writes failed: {self.errors[:3]}"

        def values(client):
            return [u["value"] for u in client.of("metric:update") if u["metricName"].startswith("bystander-")]

        self.client.wait_until(lambda c: values(c)[-1:] == written[-1:], what=f"the bystander's write {written[-1]}")
        assert values(self.client) == written, "the bystander missed or reordered updates"
        assert all(status == 200 for _, status in self.health), [s for _, s in self.health if s != 200][:3]
        health_gap = _longest_gap([at for at, _ in self.health])
        update_gap = _longest_gap(self.client.arrivals("metric:update"))
        assert health_gap <= self.max_gap, f"/healthz did not answer for {health_gap:.2f}s"
        assert update_gap <= self.max_gap, f"no update arrived for {update_gap:.2f}s"


def _longest_gap(times):
    return max((later - earlier for earlier, later in itertools.pairwise(times)), default=0.0)
