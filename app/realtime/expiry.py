"""Warning sockets whose token is about to expire, and disconnecting them when it does."""

import heapq
import itertools
import time
from datetime import UTC, datetime

from app import errors
from app.background import BackgroundLoop
from app.errors import AppError
from app.serializers import iso_utc

_WARN, _EXPIRE = "warn", "expire"


class TokenExpiryWatch(BackgroundLoop):
    """One background task and a heap of deadlines, instead of timers per socket.

    ``warning`` seconds before a socket's token expires it gets ``auth:expiring
    {expiresAt, expiresIn}`` (at once when it is already closer); at expiry,
    ``error`` ANALYTICS_1003 and a disconnect. Watching a socket again (a
    refreshed token) replaces its deadlines.
    """

    def __init__(self, sio, warning=60.0, resolution=0.25):
        super().__init__(sio, resolution)
        self._warning = warning
        self._deadlines = []  # heap of (at, order, kind, sid, namespace); may hold replaced entries
        self._order = itertools.count()
        self._live = {}  # (sid, namespace) -> expires_at of the sockets still watched

    def watch(self, sid, namespace, expires_at):
        """Warn ``sid`` of ``namespace`` before ``expires_at`` (a Unix time) and disconnect it then."""
        self._live[(sid, namespace)] = expires_at
        for at, kind in ((expires_at - self._warning, _WARN), (expires_at, _EXPIRE)):
            heapq.heappush(self._deadlines, (at, next(self._order), kind, sid, namespace))

    def forget(self, sid, namespace):
        """Stop watching a socket that has gone; the heap is rebuilt once mostly stale."""
        self._live.pop((sid, namespace), None)
        if len(self._deadlines) > 4 * len(self._live) + 64:
            self._deadlines = []
            for (sid_, ns), at in self._live.items():
                for deadline, kind in ((at - self._warning, _WARN), (at, _EXPIRE)):
                    self._deadlines.append((deadline, next(self._order), kind, sid_, ns))
            heapq.heapify(self._deadlines)

    def step(self):
        """Warn and expire what is due now."""
        self.expire_due(time.time())

    def expire_due(self, now):
        """Send what is due: ``auth:expiring`` to sockets near expiry, ``error`` and a disconnect past it."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, kind, sid, namespace = heapq.heappop(self._deadlines)
            expires_at = self._live.get((sid, namespace))
            if expires_at is None or (kind == _EXPIRE and expires_at > now):
                continue  # gone, or refreshed since
            if kind == _WARN:
                if expires_at - self._warning > now or not self._sio.is_connected(sid, namespace):
                    continue  # refreshed since: its own warning is queued
                warning = {
                    "expiresAt": iso_utc(datetime.fromtimestamp(expires_at, UTC)),
                    "expiresIn": max(0, round(expires_at - now)),
                }
                self._sio.emit("auth:expiring", warning, to=sid, namespace=namespace, ignore_queue=True)
                continue
            del self._live[(sid, namespace)]
            if not self._sio.is_connected(sid, namespace):
                continue
            self._sio.emit(
                "error", AppError(errors.TOKEN_EXPIRED).to_dict(), to=sid, namespace=namespace, ignore_queue=True
            )
            self._sio.disconnect(sid, namespace=namespace, ignore_queue=True)
