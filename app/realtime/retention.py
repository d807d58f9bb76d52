"""The retention worker of one process: reports its poller's position, and prunes when no other process is."""

import logging
import os
import secrets
import socket
import time

from app.background import BackgroundLoop
from app.services import retention
from app.telemetry import observe_retention

log = logging.getLogger(__name__)

#: How often a process reports its poller's position (more often when RETENTION_INTERVAL is shorter).
REPORT_INTERVAL = 5.0
#: The shortest pause between two delete batches: a real sleep, so that the hub polls for I/O and requests
#: that arrived meanwhile run (``sleep(0)`` only lets greenlets already runnable in). It is longer when a batch
#: took longer: pruning never takes more than half of the database's time from writers and pollers.
BATCH_PAUSE = 0.01


class RetentionWorker(BackgroundLoop):
    """Tells the other processes how far this one has delivered; every RETENTION_INTERVAL, tries to run retention."""

    def __init__(self, app, sio, poller):
        self._settings = retention.Retention.from_config(app.config)
        super().__init__(sio, min(self._settings.interval, REPORT_INTERVAL))
        self._app = app
        self._poller = poller
        self._next_run = 0.0
        self.process = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def step(self):
        """Report the position; when it is time, one retention run unless another process holds it."""
        with self._app.app_context():
            now = time.time()
            if self._poller.started:
                valid_until = now + retention.STALE_INTERVALS * self.interval
                retention.report_position(self.process, self._poller.position, valid_until)
            if now < self._next_run:
                return
            self._next_run = now + self._settings.interval
            pause = lambda took: self._sio.sleep(max(BATCH_PAUSE, took))  # noqa: E731
            removed = retention.run_once(self._settings, self.process, pause=pause)
            if removed is not None:
                observe_retention(removed, retention.oldest_ages(time.time()))

    def stop(self):
        """Stop, and take this process's position out of the reckoning."""
        super().stop()
        try:
            with self._app.app_context():
                retention.forget_position(self.process)
        except Exception:  # the database may be gone; the position goes stale by itself
            log.warning("could not remove the poller position of %s", self.process, exc_info=True)
