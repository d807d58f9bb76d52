"""The services the live tests run against: throwaway PostgreSQL databases, Redis, and straight database access.

Shared by the test suite and the benchmarks (``bench/``), which never import ``tests/``.
"""

import os
import sqlite3
import uuid
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

#: The PostgreSQL server the suite makes its throwaway databases on (libpq URL).
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

#: The Redis server the suite uses (its tests use their own channel names).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BACKENDS = ("sqlite", "postgresql")


def require_service(name, available, reason):
    """Skip the calling test when ``name`` is not ``available``; fail instead when REQUIRE_SERVICES=1.

    ``.ci/run`` sets REQUIRE_SERVICES=1, so CI never passes by skipping what it must run;
    ``make test`` on a bare machine still passes, skipping with ``reason``.
    """
    if available:
        return
    message = f"{name} is not available: {reason}"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (REQUIRE_SERVICES=1: tests that need {name} must run)", pytrace=False)
    pytest.skip(message)


def postgres_problem():
    """None when the test PostgreSQL server answers, else why not."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{POSTGRES_URL}: {exc}".strip()
    return None


def require_postgres():
    """Skip (or, with REQUIRE_SERVICES=1, fail) unless the test PostgreSQL server answers."""
    problem = postgres_problem()
    require_service("PostgreSQL", problem is None, problem)


def require_redis():
    """Skip (or, with REQUIRE_SERVICES=1, fail) unless the test Redis server answers."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        require_service("Redis", False, f"{REDIS_URL}: {exc}")


@contextmanager
def postgres_database(template=None):
    """A new PostgreSQL database of this test's own, empty or a copy of ``template``; yields its URL, drops it after."""
    name = f"analytics_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield f"{postgres_base_url()}/{name}"
    finally:
        drop_postgres_database(name)


def postgres_base_url():
    """The SQLAlchemy URL of the test PostgreSQL server, without a database name."""
    return POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)


def drop_postgres_database(name):
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url_for(backend, tmp_dir):
    """A fresh database URL of ``backend`` ("sqlite" or "postgresql") for one server (or several sharing it)."""
    if backend == "postgresql":
        require_postgres()
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{Path(tmp_dir) / 'analytics.db'}"


class Database:
    """Straight access to a server's database, as an external writer or a check would have it.

    SQL is written with ``?`` placeholders for both backends.
    """

    def __init__(self, url):
        self.url = url
        self.backend = "postgresql" if url.startswith("postgresql") else "sqlite"
        self.IntegrityError = psycopg.IntegrityError if self.backend == "postgresql" else sqlite3.IntegrityError

    @contextmanager
    def connection(self):
        """A connection of its own; ``with conn.transaction():`` makes one transaction of a block."""
        if self.backend == "postgresql":
            with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
                yield _Connection(conn, "%s")
        else:
            with closing(sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10)) as conn:
                conn.execute("PRAGMA foreign_keys=ON")
                yield _Connection(conn, "?")

    @contextmanager
    def transaction(self):
        """A connection whose work commits at the end of the block, or rolls back on an error."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def execute(self, sql, params=()):
        """Run one statement in its own transaction; return its rows (empty for a statement without)."""
        with self.transaction() as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def scalar(self, sql, params=()):
        """The first column of the first row of a query."""
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None


class _Connection:
    def __init__(self, conn, placeholder):
        self._conn = conn
        self._placeholder = placeholder

    def transaction(self):
        # sqlite3's connection commits or rolls back as a context manager; psycopg's has transaction().
        return self._conn if self._placeholder == "?" else self._conn.transaction()

    def execute(self, sql, params=()):
        return self._conn.execute(sql.replace("?", self._placeholder), params)

    def executemany(self, sql, rows):
        if self._placeholder == "?":
            return self._conn.executemany(sql, rows)
        with self._conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", self._placeholder), rows)
