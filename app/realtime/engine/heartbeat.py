"""Engine.IO heartbeat from one greenlet per process: pings, and the timeouts of unanswered ones.

python-engineio schedules each socket's next ping by starting a background task
that sleeps ``ping_interval`` and then sends PING (``Socket._send_ping``, started
by ``Socket.schedule_ping`` on connect and on every PONG); a sleeping greenlet
per idle connection costs memory. Its service task then checks every socket for
a missed PONG, waking once per socket per ``ping_timeout``, which grows with the
connections held. Every socket waits the same interval and the same timeout, so
the sockets to ping and the pings to check each form a queue in due order, and
one loop serves them all.
"""

import collections
import logging
import time

from engineio import packet

from app.logs import short_sid

log = logging.getLogger(__name__)


class PingScheduler:
    """Pings each queued socket ``ping_interval`` after it was queued; closes it if no PONG came ``ping_timeout`` on.

    What ``Socket._send_ping`` and ``Server._service_task`` do (python-engineio 4.15.1,
    see ``compat.py``). A closed socket met on the way leaves ``eio.sockets``, as the
    service task did. ``clock`` is ``time.monotonic`` (a test may pass its own).
    """

    def __init__(self, eio, clock=time.monotonic):
        self._eio = eio
        self._clock = clock
        self._pings = collections.deque()  # (due time, socket), in due order
        self._checks = collections.deque()  # (due time, socket, its last_ping), in due order
        self._wake = None
        self._task = None

    def add(self, socket):
        """Ping ``socket`` one ping interval from now (unless it is closing by then)."""
        self._queue(self._pings, (self._clock() + self._eio.ping_interval, socket))

    def _queue(self, queue, entry):
        queue.append(entry)
        if self._task is None:
            self._wake = self._eio.create_event()
            self._task = self._eio.start_background_task(self._run)
        elif len(queue) == 1:
            self._wake.set()  # the loop may be waiting on the other queue alone, or on nothing

    def _run(self):
        while True:
            delay = self.run_due()
            self._wake.clear()
            self._wake.wait(timeout=delay)

    def run_due(self):
        """Send the pings and check the timeouts that are due; return the seconds until the next (None: none)."""
        now = self._clock()
        while self._pings and self._pings[0][0] <= now:
            self._ping(self._pings.popleft()[1])
        while self._checks and self._checks[0][0] <= now:
            self._check(*self._checks.popleft()[1:])
        due = [queue[0][0] for queue in (self._pings, self._checks) if queue]
        return max(0.0, min(due) - self._clock()) if due else None

    def _ping(self, socket):
        if socket.closing or socket.closed:
            self._forget(socket)
            return
        socket.last_ping = time.time()
        socket.send(packet.Packet(packet.PING))
        self._checks.append((self._clock() + self._eio.ping_timeout, socket, socket.last_ping))

    def _check(self, socket, pinged_at):
        if socket.closing or socket.closed:  # closed, or being closed by someone else meanwhile
            self._forget(socket)
        elif socket.last_ping == pinged_at:  # no PONG since (a PONG clears last_ping)
            log.info(
                "socket %s did not answer its ping within %s s; closing it",
                short_sid(socket.sid),
                self._eio.ping_timeout,
            )
            # abort=False: a CLOSE packet goes out, as engine.io does, for a half-open connection.
            socket.close(wait=False, abort=False, reason=self._eio.reason.PING_TIMEOUT)
            self._forget(socket)

    def _forget(self, socket):
        if self._eio.sockets.get(socket.sid) is socket:
            del self._eio.sockets[socket.sid]
