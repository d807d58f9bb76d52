"""Disconnecting sockets whose token expires while they are connected."""

import heapq
import time

from app import errors
from app.background import BackgroundLoop
from app.errors import AppError


class TokenExpiryWatch(BackgroundLoop):
    """One background task and a heap of deadlines, instead of a timer per socket."""

    def __init__(self, sio, resolution=0.25):
        super().__init__(sio, resolution)
        self._deadlines = []  # heap of (expires_at, sid, namespace), may hold forgotten entries
        self._live = {}  # (sid, namespace) -> expires_at of the sockets still watched

    def watch(self, sid, namespace, expires_at):
        """Disconnect ``sid`` from ``namespace`` at ``expires_at`` (a Unix time)."""
        self._live[(sid, namespace)] = expires_at
        heapq.heappush(self._deadlines, (expires_at, sid, namespace))

    def forget(self, sid, namespace):
        """Stop watching a socket that has gone; the heap is rebuilt once mostly stale."""
        self._live.pop((sid, namespace), None)
        if len(self._deadlines) > 2 * len(self._live) + 64:
            self._deadlines = [(at, sid, ns) for (sid, ns), at in self._live.items()]
            heapq.heapify(self._deadlines)

    def step(self):
        """Expire what is due now."""
        self.expire_due(time.time())

    def expire_due(self, now):
        """Send ``error`` and disconnect every still-connected socket whose deadline has passed."""
        while self._deadlines and self._deadlines[0][0] <= now:
            expires_at, sid, namespace = heapq.heappop(self._deadlines)
            if self._live.get((sid, namespace)) != expires_at:
                continue
            del self._live[(sid, namespace)]
            if not self._sio.is_connected(sid, namespace):
                continue
            self._sio.emit(
                "error", AppError(errors.TOKEN_EXPIRED).to_dict(), to=sid, namespace=namespace, ignore_queue=True
            )
            self._sio.disconnect(sid, namespace=namespace, ignore_queue=True)
