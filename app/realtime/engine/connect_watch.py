"""Closing connections that never connect a namespace, so that a connection without a token costs nothing for long."""

import logging
import time

from app.background import BackgroundLoop
from app.logs import short_sid

log = logging.getLogger(__name__)


class ConnectWatch(BackgroundLoop):
    """Every ``interval`` seconds, closes the connections opened ``timeout`` seconds ago or more with no namespace.

    A client opens an Engine.IO connection, then connects a namespace with its
    token; one that never does (no token, a refused one, an attacker holding
    sockets open) would be kept as long as it answers pings. Connections are
    looked at once, in the order they were opened (``Connections.opened``), so a
    round costs what was opened since, not what is held.
    """

    def __init__(self, sio, timeout, interval=1.0):
        super().__init__(sio, interval)
        self._timeout = timeout
        self.closed = 0

    def step(self, now=None):
        """Close the connections past their timeout that have no namespace connected."""
        sio = self._sio
        opened = sio.eio.connections.opened
        deadline = (time.monotonic() if now is None else now) - self._timeout
        while opened and opened[0][0] <= deadline:
            _, sid = opened.popleft()
            socket = sio.eio.sockets.get(sid)
            if socket is None or socket.closed or sio.connected_to_a_namespace(sid):
                continue
            log.info("closed connection %s: no namespace connected within %s s", short_sid(sid), self._timeout)
            sio.close_connection(sid, "connect_timeout")
            self.closed += 1
