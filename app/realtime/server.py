"""Socket.IO server setup: one ``socketio.Server`` wrapped around the Flask app."""

import logging

import socketio

from app.realtime.activity import SocketActivity
from app.realtime.expiry import TokenExpiryWatch
from app.realtime.fanout import FanOut
from app.realtime.namespaces import namespaces_for
from app.realtime.poller import ChangePoller

log = logging.getLogger(__name__)


class Realtime:
    """The Socket.IO server and the background work of one worker process."""

    def __init__(self, app):
        config = app.config
        self.sio = socketio.Server(
            async_mode="gevent",
            cors_allowed_origins=config["CORS_ALLOWED_ORIGINS"],
            # Events of one socket run in arrival order (subscribe before unsubscribe).
            async_handlers=False,
            # Clients only send small subscribe/unsubscribe messages; a larger one closes the connection.
            max_http_buffer_size=config["SOCKET_MAX_MESSAGE_BYTES"],
            logger=False,
            engineio_logger=False,
        )
        self.activity = SocketActivity(self.sio)
        self.poller = ChangePoller(app, self.sio, FanOut(self.sio, self.activity))
        self.expiry = TokenExpiryWatch(self.sio)
        for namespace in namespaces_for(config, self.poller, self.expiry):
            namespace.activity = self.activity
            self.sio.register_namespace(namespace)
        self._background = [self.poller, self.expiry]

    def add_background(self, worker):
        """Run ``worker`` (an object with ``start()``/``stop()``) with the others."""
        self._background.append(worker)

    def start(self):
        """Start the background work of this process."""
        for worker in self._background:
            worker.start()
        log.info("realtime started: %s", ", ".join(type(w).__name__ for w in self._background))

    def stop(self):
        """Stop the background work of this process."""
        for worker in self._background:
            worker.stop()
