"""Where the server memory of an idle websocket connection goes (tracemalloc, in one process).

    .venv/bin/python -m bench.memory --clients 2000

Runs the app ``wsgi:app``, served by gevent's WSGIServer with the
app's gevent-websocket handler, ``ConnectionHandler`` (what the gunicorn worker runs,
without gunicorn around it), in this process with tracemalloc on; connects ``clients`` subscribed websocket connections
from the Node load generator, and compares snapshots before and after. Writes
bench/results/memory-<time>.json: Python allocations per connection by source line,
against the RSS growth per connection (the rest is memory Python does not trace, and
allocator overhead).
"""

from gevent import monkey

monkey.patch_all()  # as wsgi.py does, before anything imports ssl

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402

from testkit import JWT_SECRET, flask_cli, free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=8, help="traceback depth kept by tracemalloc")
    opts = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite:///{Path(tmp.name) / 'analytics.db'}",
        "JWT_SECRET": JWT_SECRET,
        "SIMULATOR": "0",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "MAX_CONNECTIONS_PER_IP": "1000000",  # every connection comes from 127.0.0.1
    }
    result = flask_cli({**os.environ, **env}, "db", "upgrade")
    if result.returncode:
        sys.exit(result.stderr)
    os.environ.update(env)

    from gevent.pywsgi import WSGIServer

    from app.realtime.engine.handler import connection_handler  # after the environment is set
    from bench.harness import LoadGenerator, Tenant

    tracemalloc.start(opts.frames)
    from wsgi import app

    # As gunicorn.conf.py's post_worker_init sets up the worker (app/serving.py).
    realtime = app.extensions["realtime"]
    realtime.start()
    realtime.sio.eio.connections.parking = True  # idle websockets wait without a greenlet (gunicorn.install)
    handler = connection_handler(realtime.refuses_upgrade)
    server = WSGIServer(("127.0.0.1", port), app.wsgi_app, handler_class=handler, log=None)
    server.start()

    class Local:
        url = f"http://127.0.0.1:{port}"

    me = psutil.Process()
    tenant = Tenant(Local, "bench-tenant", 10)
    gc.collect()
    gevent.sleep(1)
    before, rss_before = tracemalloc.take_snapshot(), me.memory_info().rss
    gen = LoadGenerator(Local.url, tenant.client_token, tenant.entities, opts.clients)
    ready = gen.wait_ready()  # a gevent queue under monkey-patching: the server runs meanwhile
    gevent.sleep(2)
    gc.collect()
    after, rss_after = tracemalloc.take_snapshot(), me.memory_info().rss
    held = ready["connected"]
    by_line = after.compare_to(before, "lineno")
    by_file = after.compare_to(before, "filename")
    traced = sum(d.size_diff for d in by_line)
    report = {
        "command": " ".join([".venv/bin/python -m bench.memory", *sys.argv[1:]]),
        "held": held,
        "rss_kib_per_connection": round((rss_after - rss_before) / held / 1024, 1),
        "traced_kib_per_connection": round(traced / held / 1024, 1),
        "top_lines": [
            {
                "where": f"{d.traceback[0].filename.split('site-packages/')[-1]}:{d.traceback[0].lineno}",
                "bytes_per_connection": round(d.size_diff / held),
                "blocks_per_connection": round(d.count_diff / held, 2),
            }
            for d in by_line[:20]
        ],
        "top_files": [
            {
                "file": d.traceback[0].filename.split("site-packages/")[-1],
                "bytes_per_connection": round(d.size_diff / held),
            }
            for d in by_file[:12]
        ],
    }
    gen.close()
    server.stop(timeout=1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(out)
    tmp.cleanup()
    os._exit(0)  # the app's background greenlets would keep the hub alive


if __name__ == "__main__":
    main()
