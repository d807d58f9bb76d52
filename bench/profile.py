"""Profile our gunicorn worker with py-spy under the fan-out scenario, and summarize where the time goes.

    .venv/bin/python -m bench.profile --clients 1000 --entities 2 --rate 40 --seconds 20

Starts ours (one worker, SQLite), connects the load generator, drives REST writes and runs
``py-spy record --nonblocking`` on the worker meanwhile. Writes to bench/results/:
``profile-<time>.txt`` (py-spy's collapsed stacks), ``profile-<time>.svg`` (flame graph, from
the same kind of run) and ``profile-<time>.json`` (the summary printed at the end: self time by
function, and inclusive time of the hot-path functions named in ``HOT``).
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench import harness
from bench.run import RESULTS, Session, measure_window

# Inclusive share of these frames ("function (file)" substrings) answers "where does the time go".
HOT = {
    "poller tick (read + deliver)": "tick (app/realtime/poller.py",
    "poll query (fetch_changes)": "fetch_changes (app/services/changes.py",
    "fan-out emit (python-socketio manager)": "emit (socketio/manager.py",
    "socket.io packet encode (JSON, once per emit)": "encode (socketio/packet.py",
    "engine.io Socket.send (per socket: queue put)": "send (engineio/socket.py",
    "engine.io writer greenlet (per socket: poll + ws.send)": "writer (engineio/socket.py",
    "engine.io Socket.poll (per socket: queue get)": "poll (engineio/socket.py",
    "gevent-websocket send_frame (per socket: frame + sendall)": "send_frame (geventwebsocket/websocket.py",
    "socket sendall (syscall)": "sendall (gevent/_socketcommon.py",
    "getsockopt(SO_SNDBUF) inside gevent sendall (a syscall per message)": "getsockopt (gevent/_socketcommon.py",
    "gevent Timeout objects (per queue get)": "(gevent/timeout.py",
    "REST ingest request (Flask)": "ingest_metrics (app/api/metrics.py",
    "JWT verification": "verify_token (app/auth.py",
    "Flask app context push/pop": "app_context (flask/app.py",
    "SQLAlchemy (all)": "sqlalchemy/",
    "gevent hub loop / greenlet switches": "run (gevent/hub.py",
    "websocket receive (pings, client frames)": "receive (geventwebsocket/websocket.py",
    "subscribe (poller lock, catch-up read, snapshot)": "subscribe (app/realtime/poller.py",
    "entity snapshot queries": "entity_snapshot (app/services/entities.py",
    "socket connect handler (JWT, session)": "on_connect (app/realtime/namespaces.py",
    "python-socketio get_rooms (scans every room)": "get_rooms (socketio/base_manager.py",
    "rate limiter (limits: hits and its MemoryStorage expiry timer)": "(limits/",
    "token expiry watch": "(app/realtime/expiry.py",
}


def summarize(collapsed_path):
    """Self and inclusive sample shares from py-spy's raw (collapsed) output."""
    self_counts, inclusive, total = Counter(), Counter(), 0
    for line in Path(collapsed_path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_counts[re.sub(r":\d+\)$", ")", frames[-1])] += n  # by function, not by line
        seen = set()
        for label, needle in HOT.items():
            if label not in seen and any(needle in f for f in frames):
                inclusive[label] += n
                seen.add(label)
    return {
        "samples": total,
        "inclusive_pct": {k: round(100 * inclusive[k] / total, 1) for k in HOT if total},
        "top_self_pct": [(f, round(100 * n / total, 1)) for f, n in self_counts.most_common(25)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--entities", type=int, default=2)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sample-rate", type=int, default=200)
    parser.add_argument("--phase", choices=("fanout", "connect"), default="fanout")
    parser.add_argument("--extra", type=int, default=2500, help="connect phase: clients connected while profiling")
    parser.add_argument("--resummarize", type=Path, help="recompute the summary of an existing profile JSON")
    opts = parser.parse_args()
    if opts.resummarize:
        data = json.loads(opts.resummarize.read_text())
        data.update(summarize(harness.ROOT / data["collapsed"]))
        opts.resummarize.write_text(json.dumps(data, indent=2) + "\n")
        return
    harness.install_cleanup()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    name = "profile" if opts.phase == "fanout" else "profile-connect"
    raw, svg = RESULTS / f"{name}-{stamp}.txt", RESULTS / f"{name}-{stamp}.svg"
    with tempfile.TemporaryDirectory() as tmp:
        session = Session("ours", tmp, opts.entities)
        try:
            ready = session.connect(opts.clients)
            worker = session.server.worker_procs()[0].pid
            writer = session.writer("rest")
            if opts.phase == "fanout":
                measure_window(session, writer, opts.rate, 2, ready["connected"])  # warm up
            results = {}
            if opts.phase == "connect":
                # Profile a connection storm: opts.extra more clients connecting while opts.clients are held.
                cmd = [py_spy, "record", "--pid", str(worker), "--duration", str(int(opts.seconds))]
                cmd += ["--rate", str(opts.sample_rate), "--nonblocking", "--format", "raw", "--output", str(raw)]
                spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                harness.CHILDREN.append(spy)
                t0 = time.monotonic()
                more = session.connect(opts.extra)
                results["raw"] = {"connected": more["connected"], "connect_seconds": round(time.monotonic() - t0, 1)}
                spy.wait(timeout=120)
            for fmt, path in (("raw", raw), ("flamegraph", svg)) if opts.phase == "fanout" else ():
                cmd = [py_spy, "record", "--pid", str(worker), "--duration", str(int(opts.seconds))]
                cmd += ["--rate", str(opts.sample_rate), "--nonblocking", "--format", fmt, "--output", str(path)]
                spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                harness.CHILDREN.append(spy)
                window = {}
                drive = threading.Thread(
                    target=lambda w=window: w.update(
                        measure_window(session, writer, opts.rate, opts.seconds, ready["connected"])
                    )
                )
                drive.start()
                drive.join()
                spy.wait(timeout=60)
                results[fmt] = window
        finally:
            session.close()
    summary = {
        "command": harness.command("profile"),
        "clients": ready["connected"],
        "entities": opts.entities,
        "rate": opts.rate,
        "window": results["raw"],
        "machine": harness.machine(),
        "collapsed": str(raw.relative_to(harness.ROOT)),
        "flamegraph": str(svg.relative_to(harness.ROOT)) if svg.exists() else None,
        **summarize(raw),
    }
    out = harness.save_result(name, summary, stamp)
    print(json.dumps({k: summary[k] for k in ("samples", "inclusive_pct", "top_self_pct")}, indent=2))
    print(out)


if __name__ == "__main__":
    main()
