"""Disconnecting sockets that stopped reading, so their backlog stays bounded."""

import logging

from app.background import BackgroundLoop
from app.logs import short_sid
from app.telemetry import set_output_backlog

log = logging.getLogger(__name__)


class BacklogWatch(BackgroundLoop):
    """Every ``interval`` seconds, closes the sockets with more than ``limit`` packets or ``byte_limit`` bytes unsent.

    A socket's packets wait in its engine.io queue or its websocket's output
    buffer while the client does not read; other sockets are not held up, but
    that backlog would grow without bound. Closing the socket takes it out of its
    rooms at once, so nothing more is queued for it, and its connection is shut
    down, so the client sees it drop and reconnects, getting a fresh
    ``dashboard:initial``. Only the sockets that had something waiting since the
    last look are visited (``Connections.waiting``), not every socket held.
    """

    def __init__(self, sio, limit, byte_limit, interval=1.0):
        super().__init__(sio, interval)
        self._limit = limit
        self._byte_limit = byte_limit
        self.disconnected = 0

    def step(self):
        """Close every socket over the limit; report what the others still have buffered."""
        eio = self._sio.eio
        connections = eio.connections
        still_buffered = 0
        for sid in list(connections.waiting):
            socket = eio.sockets.get(sid)
            in_buffer = connections.buffered(sid)
            queued = (socket.queue.qsize() if socket is not None else 0) + in_buffer
            if socket is None or socket.closed or not queued:
                connections.waiting.discard(sid)  # added again when something waits for it again
                continue
            in_bytes = connections.buffered_bytes(sid)
            if queued <= self._limit and in_bytes <= self._byte_limit:
                still_buffered += in_buffer
                continue
            log.warning(
                "socket %s is not reading (%d packets queued, limit %d; %d bytes buffered, limit %d); disconnecting",
                short_sid(sid),
                queued,
                self._limit,
                in_bytes,
                self._byte_limit,
            )
            output = connections.outputs.get(sid)
            # abort: do not wait for the queue to drain, it never would.
            socket.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
            if output is not None:
                output.discard()
            if eio.sockets.get(sid) is socket:
                del eio.sockets[sid]
            connections.waiting.discard(sid)
            self.disconnected += 1
        # Here rather than in telemetry's sampler: this sweep already visits every socket with a backlog.
        set_output_backlog(still_buffered)
