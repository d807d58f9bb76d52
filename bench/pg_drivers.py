"""Compare PostgreSQL drivers under gevent: psycopg 3 (cooperative by itself) and psycopg2 + psycogreen.

Run: .venv/bin/pip install psycopg2-binary==2.9.11 psycogreen==1.0.2   (not project dependencies)
     .venv/bin/python -m bench.pg_drivers [--dsn postgresql://postgres@127.0.0.1:5432/test]

Per driver: (1) cooperation: while one greenlet waits in ``pg_sleep(0.5)``, how many 10 ms
ticks does another greenlet get (50 means it never blocked); (2) throughput: 20 greenlets,
one connection each, running ``SELECT 1`` and a one-row INSERT ... RETURNING, queries/s.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

GREENLETS = 20
QUERIES = 300


def psycopg3_connect(dsn):
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def psycopg2_connect(dsn):
    import psycogreen.gevent
    import psycopg2

    psycogreen.gevent.patch_psycopg()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def cooperation(connect, dsn):
    conn = connect(dsn)
    ticks = 0

    def ticker():
        nonlocal ticks
        for _ in range(50):
            gevent.sleep(0.01)
            ticks += 1

    sleeper = gevent.spawn(lambda: conn.cursor().execute("SELECT pg_sleep(0.5)"))
    tick = gevent.spawn(ticker)
    gevent.joinall([sleeper, tick])
    conn.close()
    return ticks


def throughput(connect, dsn):
    conns = [connect(dsn) for _ in range(GREENLETS)]
    with conns[0].cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_driver (id bigserial PRIMARY KEY, v float8)")

    def work(conn):
        cur = conn.cursor()
        for i in range(QUERIES):
            cur.execute("SELECT 1")
            cur.fetchone()
            cur.execute("INSERT INTO bench_driver (v) VALUES (%s) RETURNING id", (float(i),))
            cur.fetchone()

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(work, c) for c in conns])
    elapsed = time.perf_counter() - started
    with conns[0].cursor() as cur:
        cur.execute("DROP TABLE bench_driver")
    for c in conns:
        c.close()
    return round(GREENLETS * QUERIES * 2 / elapsed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, connect in (("psycopg 3", psycopg3_connect), ("psycopg2 + psycogreen", psycopg2_connect)):
        rates = sorted(throughput(connect, args.dsn) for _ in range(args.runs))
        results[name] = {"ticks_during_pg_sleep": cooperation(connect, args.dsn), "queries_per_s_median": rates[1]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
