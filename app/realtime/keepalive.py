"""Engine.IO pings from one greenlet per process instead of one sleeping greenlet per socket.

python-engineio schedules each socket's next ping by starting a background task
that sleeps ``ping_interval`` and then sends PING (``Socket._send_ping``, started
by ``Socket.schedule_ping`` on connect and on every PONG). A sleeping greenlet
costs a few KiB per idle connection (docs/benchmarks.md, memory). Every socket
waits the same interval, so the sockets to ping form a queue in due order, and
one loop can serve them all.
"""

import collections
import time

import engineio
from engineio import packet
from engineio.socket import Socket


class PingScheduler:
    """Sends each queued socket its PING ``interval`` seconds after it was queued, as ``Socket._send_ping`` does."""

    def __init__(self, eio):
        self._eio = eio
        self._due = collections.deque()  # (monotonic due time, engine.io socket), in due order
        self._wake = None
        self._task = None

    def add(self, socket):
        """Ping ``socket`` one ping interval from now (unless it is closing by then)."""
        self._due.append((time.monotonic() + self._eio.ping_interval, socket))
        if self._task is None:
            self._wake = self._eio.create_event()
            self._task = self._eio.start_background_task(self._run)
        elif len(self._due) == 1:
            self._wake.set()

    def _run(self):
        while True:
            if not self._due:
                self._wake.clear()
                self._wake.wait()
                continue
            due, socket = self._due[0]
            delay = due - time.monotonic()
            if delay > 0:
                self._eio.sleep(delay)
                continue
            self._due.popleft()
            self._ping(socket)

    @staticmethod
    def _ping(socket):
        # What engine.io's Socket._send_ping does after its sleep (python-engineio 4.15.1).
        if not socket.closing and not socket.closed:
            socket.last_ping = time.time()
            socket.send(packet.Packet(packet.PING))


class EngineServer(engineio.Server):
    """``engineio.Server`` whose per-socket ping tasks are handed to a ``PingScheduler``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pings = PingScheduler(self)

    def start_background_task(self, target, *args, **kwargs):
        if getattr(target, "__func__", None) is Socket._send_ping and not args and not kwargs:
            self.pings.add(target.__self__)
            return None  # engine.io ignores the task of a scheduled ping
        return super().start_background_task(target, *args, **kwargs)
