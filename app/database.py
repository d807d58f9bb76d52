"""Engine tuning, the kinds of transaction the services use, and the poller's commit probe."""

import sqlite3
from contextlib import contextmanager

from sqlalchemy import event

from app.extensions import db


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
