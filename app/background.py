"""Owned, stoppable background loops run as Socket.IO background tasks."""

import logging

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Calls ``step()`` every ``interval`` seconds until stopped; a failing step is logged, never fatal."""

    def __init__(self, sio, interval):
        self._sio = sio
        self.interval = interval
        self._running = False

    def step(self):
        """One round of work; subclasses define it."""
        raise NotImplementedError

    def start(self):
        """Start the loop in a background task."""
        self._running = True
        self._sio.start_background_task(self._run)

    def stop(self):
        """Stop after the current step."""
        self._running = False

    def _run(self):
        failing = 0  # steps failed in a row: a database outage fails every step, logged once
        while self._running:
            try:
                self.step()
            except Exception:
                failing += 1
                if failing == 1:
                    log.exception("%s step failed (later failures in a row are not logged)", type(self).__name__)
            else:
                if failing:
                    log.info("%s works again after %d failed steps", type(self).__name__, failing)
                failing = 0
            self._sio.sleep(self.interval)
