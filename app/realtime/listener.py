"""PostgreSQL LISTEN: wake the poller as soon as a change-log transaction commits.

Migration 0002 makes every INSERT into ``change_log`` send a NOTIFY on commit,
from this service and from external writers alike. The listener holds one
connection of its own per worker. It only wakes the poller, which reads the
rows as usual: a lost notification or a dropped connection delays a change to
the next poll tick at worst, it never loses one.
"""

import json
import logging
import time

import psycopg

from app.database import first_line
from app.services.changes import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

#: Without a notification for this long, the connection is checked with a query.
IDLE_CHECK_SECONDS = 15.0


def listener_dsn(engine_url, connect_args):
    """A libpq connection string for the engine's database, with keepalives that notice a dead peer."""
    url = engine_url.set(drivername="postgresql")
    return psycopg.conninfo.make_conninfo(
        url.render_as_string(hide_password=False),
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        **connect_args,
    )


class ChangeListener:
    """One greenlet per worker: LISTEN, wake the poller on each notification, reconnect on failure.

    Reconnecting is tried every ``retry_interval`` (POLL_INTERVAL or
    POLL_MAX_BACKOFF, whichever is shorter, at least 0.05 s), without backing
    off: connecting again is what ends the poller's back-off when the database
    is back (the poller is woken then), so dashboards
    are live again within about one poll interval of the database answering. An
    attempt against a database that is down costs a refused connection; one
    against a host that does not answer waits out DATABASE_CONNECT_TIMEOUT. The
    first failure of an outage is told to ``outage`` (logged once), and so is
    the connection that ends it.
    """

    def __init__(self, sio, dsn, wake, retry_interval, observe_lag=None, outage=None):
        self._sio = sio
        self._dsn = dsn
        self._wake = wake
        self._retry_interval = max(retry_interval, 0.05)
        self._observe_lag = observe_lag
        self._outage = outage
        self._running = False
        self.connected = False

    def start(self):
        """Start listening in a background task."""
        self._running = True
        self._sio.start_background_task(self._run)

    def stop(self):
        """Stop after the current wait (at most a second)."""
        self._running = False

    def _run(self):
        while self._running:
            try:
                self._listen()
            except Exception as exc:  # the database went away: the poll keeps delivering meanwhile
                if self._outage is not None:
                    self._outage.failed("listener", exc)
                if self.connected:
                    log.warning("change listener lost its connection (%s); reconnecting", first_line(exc))
                self.connected = False
                self._sio.sleep(self._retry_interval)

    def _listen(self):
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.connected = True
            log.info("change listener: listening on %s", NOTIFY_CHANNEL)
            if self._outage is not None:
                self._outage.recovered("listener")
            # Changes committed while nobody listened are read now, not at the next tick.
            self._wake()
            last_heard = time.monotonic()
            while self._running:
                heard = False
                for notify in conn.notifies(timeout=1.0):
                    heard = True
                    self._on_notify(notify.payload)
                now = time.monotonic()
                if heard:
                    last_heard = now
                elif now - last_heard > IDLE_CHECK_SECONDS:
                    conn.execute("SELECT 1")  # raises on a connection that died silently
                    last_heard = now
        self.connected = False

    def _on_notify(self, payload):
        try:
            notice = json.loads(payload)
            seq, sent_at = int(notice["seq"]), float(notice["at"])
        except (ValueError, KeyError, TypeError):
            self._wake()  # a NOTIFY on our channel from someone else: waking is harmless
            return
        self._wake(seq)  # the poller skips what it delivered already (this worker's own REST writes)
        if self._observe_lag is not None:
            self._observe_lag(max(time.time() - sent_at, 0.0))
