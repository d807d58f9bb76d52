"""Before and after a change: fan-out of two or more checkouts of ours (and the peer), measured in turn.

    git worktree add /tmp/before <commit>
    .venv/bin/python -m bench.ab --checkouts before=/tmp/before,after=. --peer --rates 10,40 --rounds 6

Holds every server at once (by default 2,000 clients over 4 entities each) and measures one
fan-out window on each in turn, the order reversed every round (``bench.run``'s fan-out
scenario): the shared machine's speed drifts within minutes, and this way the drift falls on
every side alike, so a difference of a few percent shows after a few rounds. Each checkout's
server runs its own code and migrations with this checkout's virtualenv. Prints the median
messages per server CPU-second at each rate and its ratio to the first side; writes
bench/results/ab-<time>.json.
"""

import argparse
import time
from pathlib import Path

from bench import harness
from bench.run import log, scenario_fanout


def parse_checkouts(text):
    """``name=path,...`` -> ``{name: absolute path}``, in the order given."""
    checkouts = {}
    for item in text.split(","):
        name, _, path = item.partition("=")
        root = Path(path or ".").resolve()
        if name in ("", "ours", "peer") or not (root / "wsgi.py").is_file():
            raise SystemExit(f"--checkouts: {item!r} is not name=path of a checkout (names ours and peer are taken)")
        checkouts[name] = root
    return checkouts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", required=True, type=parse_checkouts, help="name=path,... (two or more)")
    parser.add_argument("--peer", action="store_true", help="hold and measure the Node.js peer too")
    parser.add_argument("--rates", default="10,40", type=lambda t: [int(v) for v in t.split(",") if v.strip()])
    parser.add_argument("--rounds", type=int, default=6, help="windows per rate and side (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one window")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--entities", type=int, default=4)
    parser.add_argument(
        "--writes",
        choices=("rest", "database"),
        default="rest",
        help="how ours is fed: REST writes, or rows written straight into its database (the peer takes REST)",
    )
    opts = parser.parse_args()
    opts.runs, opts.database_url = opts.rounds, None
    sides = [*opts.checkouts, *(["peer"] if opts.peer else [])]
    harness.install_cleanup()
    cfg = {
        "clients": opts.clients,
        "entities": opts.entities,
        "rates": opts.rates,
        "seconds": opts.seconds,
        "writes": opts.writes,
    }
    log(f"bench.ab: {', '.join(f'{n}={p}' for n, p in opts.checkouts.items())}")
    started = time.monotonic()
    results = scenario_fanout(sides, cfg, opts, roots=opts.checkouts, writes=opts.writes)
    first = sides[0]
    table = []
    for i, rate in enumerate(opts.rates):
        row = {"rate": rate}
        for name in sides:
            points = results[name]["points"]
            row[name] = points[i]["msgs_per_server_cpu_s"] if i < len(points) else None
        base = row[first]
        row["ratios"] = {n: round(row[n] / base, 3) for n in sides if row[n] and base}
        table.append(row)
        print(f"{rate:>5} writes/s  " + "  ".join(f"{n} {row[n]} ({row['ratios'].get(n)})" for n in sides))
    record = {
        "command": harness.command("ab"),
        "checkouts": {n: str(p) for n, p in opts.checkouts.items()},
        "machine": harness.machine(),
        "config": cfg,
        "rounds": opts.rounds,
        "seconds": round(time.monotonic() - started, 1),
        "table": table,
        "fanout": results,
    }
    print(harness.save_result("ab", record))


if __name__ == "__main__":
    main()
