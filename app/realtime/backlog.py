"""Disconnecting sockets that stopped reading, so their backlog stays bounded."""

import logging

from app.background import BackgroundLoop
from app.realtime.transport import buffered, discard_output
from app.telemetry import set_output_backlog

log = logging.getLogger(__name__)


class BacklogWatch(BackgroundLoop):
    """Every ``interval`` seconds, closes the sockets with more than ``limit`` packets not yet sent.

    A socket's packets wait in its engine.io queue or its websocket's output
    buffer while the client does not read; other sockets are not held up, but
    that backlog would grow without bound. Closing the socket takes it out of its
    rooms at once, so nothing more is queued for it, and its connection is shut
    down, so the client sees it drop and reconnects, getting a fresh
    ``dashboard:initial``. Only the sockets that had something waiting since the
    last look are visited (``EngineServer.backed_up``), not every socket held.
    """

    def __init__(self, sio, limit, interval=1.0):
        super().__init__(sio, interval)
        self._limit = limit
        self.disconnected = 0

    def step(self):
        """Close every socket over the limit; report what the others still have buffered."""
        eio = self._sio.eio
        backed_up = eio.backed_up
        still_buffered = 0
        for socket in list(backed_up):
            in_buffer = buffered(socket)
            queued = socket.queue.qsize() + in_buffer
            if socket.closed or not queued:
                backed_up.discard(socket)  # added again when something waits for it again
                continue
            if queued <= self._limit:
                still_buffered += in_buffer
                continue
            log.warning(
                "socket %s is not reading (%d packets queued, limit %d); disconnecting", socket.sid, queued, self._limit
            )
            # abort: do not wait for the queue to drain, it never would.
            socket.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
            discard_output(socket)
            if eio.sockets.get(socket.sid) is socket:
                del eio.sockets[socket.sid]
            backed_up.discard(socket)
            self.disconnected += 1
        # Here rather than in telemetry's sampler: this sweep already visits every socket with a backlog.
        set_output_backlog(still_buffered)
