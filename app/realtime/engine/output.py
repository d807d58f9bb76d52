"""An ordered, never-blocking writer for one client connection: every byte of a websocket goes through it."""

import contextlib
import socket

import gevent
from gevent.ssl import SSLSocket

#: A corked buffer holds at most this many writes before it sends them anyway.
CORK_LIMIT = 64


class OutputBuffer:
    """An ordered, never-blocking writer for one TCP (or TLS) connection.

    ``write`` never yields: on a plain TCP connection it hands the kernel what
    it takes at once (the OS socket under gevent's, which is non-blocking) and
    keeps the rest, in order, for a flusher greenlet that waits until the
    connection can take more; later writes queue behind it. Between ``cork``
    and ``uncork`` writes are collected and sent as one.

    On a TLS connection nothing is written to the OS socket directly: its bytes
    must go through the TLS session, so every write is handed to the flusher,
    which sends through gevent's ``SSLSocket`` (the same order, one greenlet
    per burst of writes instead of none).

    ``key`` joins the set ``waiting`` whenever writes start waiting here (for
    ``BacklogWatch``).
    """

    __slots__ = (
        "_corked",
        "_error",
        "_flusher",
        "_key",
        "_pending",
        "_send_now",
        "_sock",
        "_waiting",
        "backlog",
        "backlog_bytes",
    )

    def __init__(self, sock, waiting=None, key=None):
        self._sock = sock
        self._waiting = waiting
        self._key = key
        # Plain TCP: the OS socket under gevent's; a first try needs none of gevent's waiting.
        # TLS: none, every write goes through the TLS session in the flusher.
        self._send_now = None if isinstance(sock, SSLSocket) else sock._sock.send
        self._pending = []  # a list: an empty deque costs every idle connection several times more
        self._flusher = None
        self._error = None
        self._corked = None  # writes held while corked, else None
        self.backlog = 0  # writes not yet wholly handed to the kernel
        self.backlog_bytes = 0  # their bytes

    @property
    def encrypted(self):
        """True on a TLS connection (every write goes through the flusher)."""
        return self._send_now is None

    @property
    def idle(self):
        """True when every write so far was handed to the kernel: no flusher, nothing corked."""
        return self._flusher is None and not self._corked

    def move_to(self, sock):
        """Write to ``sock`` from now on (the same TCP connection, held by another socket object); only when idle."""
        if not self.idle or self._send_now is None:
            raise RuntimeError("only an idle output buffer on plain TCP moves to another socket object")
        self._sock = sock
        self._send_now = sock._sock.send

    def flushed(self, timeout):
        """Wait up to ``timeout`` seconds for the flusher to hand what is pending to the kernel; True when it did."""
        flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout)
        return self._flusher is None

    def write(self, data):
        """Write ``data`` after everything written before; raise ``OSError`` once the connection has failed."""
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
            self.backlog_bytes += len(data)
            return
        if self._send_now is None:
            self._hand_to_flusher(data)
            return
        try:
            sent = self._send_now(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._error = exc
            raise
        if sent < len(data):
            self._hand_to_flusher(memoryview(data)[sent:])

    def _hand_to_flusher(self, data):
        self._pending.append(data)
        self.backlog += 1
        self.backlog_bytes += len(data)
        self._flusher = gevent.spawn(self._flush)
        if self._waiting is not None:
            self._waiting.add(self._key)

    def cork(self):
        """Hold writes until ``uncork``; return False if already corked."""
        if self._corked is not None:
            return False
        self._corked = []
        return True

    def uncork(self):
        """Send the writes held since ``cork`` as one, and stop holding.

        Does not raise: a failed connection keeps its error, which the next write
        raises (the websocket transport then closes the websocket).
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
                self.backlog_bytes -= len(chunk)
        except OSError as exc:
            self._error = exc
            self._pending.clear()
            self.backlog = 0
            self.backlog_bytes = 0
        finally:
            self._flusher = None

    def discard(self):
        """Drop what is still pending and shut the connection down, so a client that stopped reading is let go."""
        self._error = self._error or ConnectionAbortedError("output discarded")
        self._pending.clear()
        self.backlog = 0
        self.backlog_bytes = 0
        if self._flusher is not None:
            self._flusher.kill(block=False)
        with contextlib.suppress(OSError):  # already gone
            self._sock.shutdown(socket.SHUT_RDWR)  # also wakes this connection's reader
