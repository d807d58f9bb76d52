"""Engine.IO heartbeat from one greenlet per process: pings, and the timeouts of unanswered ones.

python-engineio schedules each socket's next ping by starting a background task
that sleeps ``ping_interval`` and then sends PING (``Socket._send_ping``, started
by ``Socket.schedule_ping`` on connect and on every PONG). A sleeping greenlet
costs a few KiB per idle connection (docs/benchmarks.md, memory). Its service
task then checks every socket for a missed PONG, waking once per socket per
``ping_timeout`` (most of a worker's idle CPU with thousands of connections).
Every socket waits the same interval and the same timeout, so the sockets to
ping and the pings to check each form a queue in due order, and one loop
serves them all.
"""

import collections
import logging
import time

import engineio
from engineio import packet
from engineio.socket import Socket

log = logging.getLogger(__name__)


class PingScheduler:
    """Pings each queued socket ``ping_interval`` after it was queued; closes it if no PONG came ``ping_timeout`` on.

    What ``Socket._send_ping`` and ``Server._service_task`` do (python-engineio 4.15.1).
    A closed socket met on the way leaves ``eio.sockets``, as the service task did.
    """

    def __init__(self, eio):
        self._eio = eio
        self._pings = collections.deque()  # (monotonic due time, socket), in due order
        self._checks = collections.deque()  # (monotonic due time, socket, its last_ping), in due order
        self._wake = None
        self._task = None

    def add(self, socket):
        """Ping ``socket`` one ping interval from now (unless it is closing by then)."""
        self._queue(self._pings, (time.monotonic() + self._eio.ping_interval, socket))

    def _queue(self, queue, entry):
        queue.append(entry)
        if self._task is None:
            self._wake = self._eio.create_event()
            self._task = self._eio.start_background_task(self._run)
        elif len(queue) == 1:
            self._wake.set()  # the loop may be waiting on the other queue alone, or on nothing

    def _run(self):
        while True:
            now = time.monotonic()
            while self._pings and self._pings[0][0] <= now:
                self._ping(self._pings.popleft()[1])
            while self._checks and self._checks[0][0] <= now:
                self._check(*self._checks.popleft()[1:])
            due = [queue[0][0] for queue in (self._pings, self._checks) if queue]
            self._wake.clear()
            self._wake.wait(timeout=max(0.0, min(due) - time.monotonic()) if due else None)

    def _ping(self, socket):
        if socket.closing or socket.closed:
            self._forget(socket)
            return
        socket.last_ping = time.time()
        socket.send(packet.Packet(packet.PING))
        self._checks.append((time.monotonic() + self._eio.ping_timeout, socket, socket.last_ping))

    def _check(self, socket, pinged_at):
        if socket.closing or socket.closed:  # closed, or being closed by someone else meanwhile
            self._forget(socket)
        elif socket.last_ping == pinged_at:  # no PONG since (a PONG clears last_ping)
            log.info("socket %s did not answer its ping within %s s; closing it", socket.sid, self._eio.ping_timeout)
            # abort=False: a CLOSE packet goes out, as engine.io does, for a half-open connection.
            socket.close(wait=False, abort=False, reason=self._eio.reason.PING_TIMEOUT)
            self._forget(socket)

    def _forget(self, socket):
        if self._eio.sockets.get(socket.sid) is socket:
            del self._eio.sockets[socket.sid]


class EngineServer(engineio.Server):
    """``engineio.Server`` whose heartbeat is one ``PingScheduler``: no ping task per socket, no service task."""

    def __init__(self, *args, **kwargs):
        kwargs["monitor_clients"] = False  # the PingScheduler checks the timeouts
        super().__init__(*args, **kwargs)
        self.pings = PingScheduler(self)
        # The sockets whose packets may be waiting (a websocket's output buffer, a polling
        # socket's queue), added by app/realtime/transport.py, swept by BacklogWatch.
        self.backed_up = set()
        # sid -> the OutputBuffer of the socket's open websocket, while packets are written
        # to it at once; kept by app/realtime/transport.py (BufferedWebSocketWSGI).
        self.websocket_outputs = {}

    def start_background_task(self, target, *args, **kwargs):
        if getattr(target, "__func__", None) is Socket._send_ping and not args and not kwargs:
            self.pings.add(target.__self__)
            return None  # engine.io ignores the task of a scheduled ping
        return super().start_background_task(target, *args, **kwargs)
