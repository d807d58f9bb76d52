"""Engine tuning, the kinds of transaction the services use, the poller's commit probe, and database outages."""

import logging
import sqlite3
import time
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from app.extensions import db

log = logging.getLogger(__name__)

#: SQLite errors that are mistakes in a statement or the schema, not a database that cannot serve now.
_SQLITE_STATEMENT_ERRORS = ("no such ", "near ", "syntax error", "has no column", "table ")


def configure_engine(engine):
    """Tune a new engine for its dialect: on SQLite, WAL, a busy timeout and real foreign keys.

    pysqlite's own transaction handling is switched off so that we emit BEGIN
    ourselves: a write transaction starts with BEGIN IMMEDIATE and takes the
    write lock up front instead of failing on a lock upgrade under contention.
    """
    if engine.dialect.name == "postgresql":
        _require_cooperative_psycopg()
        return
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        immediate = connection.get_execution_options().get("write_lock", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _require_cooperative_psycopg():
    """Refuse to run psycopg with its blocking wait in a gevent-patched process.

    psycopg chooses how to wait for the server when it is first imported: imported
    before ``monkey.patch_all()`` it blocks the whole worker on every query.
    """
    from gevent import monkey
    from psycopg import waiting

    if monkey.is_module_patched("select") and waiting.wait is waiting.wait_c:
        raise RuntimeError("psycopg was imported before gevent monkey-patching; import wsgi (which patches) first")


@contextmanager
def write_transaction():
    """Run the block as one transaction that commits whole or rolls back whole."""
    session = db.session()
    if session.in_transaction():
        session.rollback()
    session.connection(execution_options={"write_lock": True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def write_connection():
    """``write_transaction`` on a Core connection, for statements that need no ORM session (REST metric writes)."""
    with db.engine.connect() as connection:
        connection.execution_options(write_lock=True)
        with connection.begin():
            yield connection


@contextmanager
def consistent_read():
    """Run the block's queries against one snapshot of the database, then end it."""
    session = db.session()
    if session.in_transaction():
        session.rollback()
    options = {}
    if session.get_bind().dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    session.connection(execution_options=options)
    try:
        yield session
    finally:
        session.rollback()


class CommitProbe:
    """Tells, without a query, whether another connection may have committed since it last looked.

    SQLite keeps a number per connection, ``PRAGMA data_version``, that changes
    when any other connection, in this process or another, commits to the
    database file. The probe holds a connection of its own (detached from the
    pool) for it. On other databases, and on an in-memory SQLite database, it
    cannot tell and always answers yes.
    """

    def __init__(self, engine):
        self._connection = None  # a pool connection, detached: ours alone, so nothing else commits through it
        self._execute = None  # its sqlite3 connection's execute
        self._version = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._connection = engine.raw_connection()
            self._execute = self._connection.driver_connection.execute
            self._connection.detach()

    def changed(self):
        """True unless this is SQLite and nothing was committed since the last call."""
        if self._connection is None:
            return True
        try:
            version = self._execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:  # a real query will meet it too, and report it
            self._version = None
            return True
        changed, self._version = version != self._version, version
        return changed

    def close(self):
        """Let go of the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = self._execute = None


def is_unavailable(exc):
    """True when ``exc`` means the database cannot serve now (down, restarting, unreachable, its pool exhausted).

    Such a request is answered 503 ``ANALYTICS_1300`` with ``Retry-After``, not 500:
    the same request succeeds once the database is back. Errors in a statement or
    the schema (SQLite's ``no such table``, ...) are not outages.
    """
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return not str(exc.orig).lower().startswith(_SQLITE_STATEMENT_ERRORS)
    return True


def first_line(exc):
    """The first line of an error's message (a driver's message runs over several)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def end_outages_on_checkout(engine, app):
    """A connection handed out by the pool ends a database outage of ``app``: the database answered.

    On PostgreSQL the pool pings a connection before handing it out
    (``pool_pre_ping``), and a new one is only made by reaching the server.
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(*_args):
        outage = app.extensions["database_outage"]
        if outage.since is not None:
            outage.recovered("a new or pinged connection")


def database_outage(app=None):
    """The app's database ``Outage`` (the current app's when ``app`` is None)."""
    return _extensions(app)["database_outage"]


def redis_outage(app=None):
    """The app's Redis ``Outage`` (the current app's when ``app`` is None)."""
    return _extensions(app)["redis_outage"]


def _extensions(app):
    if app is None:
        from flask import current_app

        app = current_app
    return app.extensions


def unavailable_error():
    """The AppError an operation that met an unavailable database answers (503 ANALYTICS_1300)."""
    from app import errors
    from app.errors import AppError

    return AppError(errors.UNAVAILABLE, "the database is not answering; try again in a moment")


class Outage:
    """One process's view of an outage of a dependency: one log line when it starts, one when it ends.

    Every request, subscribe and poll tick that meets the dependency down
    reports it (``failed``); the first one of an outage logs it, with what
    follows from it (``consequence``). The next success of a poll tick, of the
    change listener, of a readiness check or of a subscribe (``recovered``) ends
    it and says how long it lasted and how often it was met.
    """

    def __init__(self, name, consequence, on_failure=None):
        self.name = name
        self.consequence = consequence
        self.since = None
        self.refused = 0
        self._on_failure = on_failure  # on_failure(name, source): telemetry counts each

    @property
    def active(self):
        return self.since is not None

    def failed(self, source, exc):
        """``source`` ("http", "admin", "socket", "poll", "listener", "readiness") met the dependency down."""
        if self._on_failure is not None:
            self._on_failure(self.name, source)
        self.refused += 1
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "%s unavailable (%s), first seen by %s: %s", self.name, first_line(exc), source, self.consequence
            )

    def recovered(self, source):
        """The dependency answered ``source`` again: end the outage, if there was one."""
        if self.since is None:
            return
        lasted, refused = time.monotonic() - self.since, self.refused
        self.since, self.refused = None, 0
        log.warning(
            "%s available again (seen by %s) after %.1f s; met down %d times meanwhile",
            self.name,
            source,
            lasted,
            refused,
        )


def outage_trackers(on_failure=None):
    """The app's trackers of outages: ``{"database_outage": Outage, "redis_outage": Outage}`` for app.extensions."""
    return {
        "database_outage": Outage(
            "database",
            "requests, subscribes and admin pages that need it answer 503 ANALYTICS_1300 until it is back",
            on_failure,
        ),
        "redis_outage": Outage(
            "redis",
            "the change feed goes on without it (every server reads the change log); emits addressed to sockets "
            "of other servers, and those of external emitters, do not arrive until it is back",
            on_failure,
        ),
    }
