"""CPU per change-log row with and without the history trigger, straight in SQLite (no server).

    .venv/bin/python -m bench.trigger_cost --rows 20000

Migrates a fresh SQLite file, then inserts ``rows`` metric rows into ``change_log``, one
transaction each (as REST writes commit), with the history trigger dropped and as
migrated, twice each in turn, and prints the process CPU microseconds per row.
"""

import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

from bench import harness

INSERT = (
    "INSERT INTO change_log (tenant_id, kind, entity_id, metric_name, value, recorded_at) "
    "VALUES ('t', 'metric', 'e', ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))"
)


def cpu_per_row(path, rows, without_trigger):
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    if without_trigger:
        conn.execute("DROP TRIGGER change_log_history")
    started = time.process_time()
    for n in range(rows):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, (f"m{n % 256}", float(n)))
        conn.execute("COMMIT")
    conn.close()
    return 1e6 * (time.process_time() - started) / rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base.db")
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{base}"}
        flask = str(harness.ROOT / ".venv" / "bin" / "flask")
        subprocess.run([flask, "--app", "wsgi", "db", "upgrade"], env=env, check=True, capture_output=True)
        conn = sqlite3.connect(base, isolation_level=None)  # the one entity the rows are for
        conn.execute("INSERT INTO entities (tenant_id, entity_id, entity_type, name) VALUES ('t', 'e', 'event', '-')")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # into the file itself: the copies below take the file only
        conn.close()
        for turn in range(2):
            for without in (True, False):
                path = os.path.join(tmp, f"{turn}-{without}.db")
                shutil.copy(base, path)
                label = "without the trigger" if without else "with the trigger"
                print(f"{label}: {cpu_per_row(path, args.rows, without):.1f} µs CPU per row", flush=True)


if __name__ == "__main__":
    main()
