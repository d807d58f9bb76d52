"""The database helpers against real SQLite files: what ``CommitProbe`` sees of other connections' commits."""

import sqlite3

from sqlalchemy import create_engine, text

from app.database import CommitProbe, configure_engine


def sqlite_engine(path):
    engine = create_engine(f"sqlite:///{path}")
    configure_engine(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


def test_commit_probe_sees_commits_of_other_processes_connections_and_of_the_engine(tmp_path):
    engine = sqlite_engine(tmp_path / "probe.db")
    probe = CommitProbe(engine)
    try:
        assert probe.changed()  # the first look: nothing to compare with
        assert not probe.changed()

        with sqlite3.connect(tmp_path / "probe.db") as other:  # as another process would
            other.execute("INSERT INTO t VALUES (1)")
        assert probe.changed()
        assert not probe.changed()

        with engine.begin() as conn:  # the engine's own pool: never the probe's connection
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert probe.changed()

        with engine.connect() as conn:  # a read, and a write rolled back, change nothing
            conn.execute(text("SELECT * FROM t")).all()
            conn.execute(text("INSERT INTO t VALUES (3)"))
            conn.rollback()
        assert not probe.changed()
    finally:
        probe.close()
        engine.dispose()


def test_commit_probe_cannot_tell_on_an_in_memory_database_and_always_says_changed():
    engine = create_engine("sqlite://")
    probe = CommitProbe(engine)
    assert probe.changed()
    assert probe.changed()
    probe.close()
