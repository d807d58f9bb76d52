"""gunicorn settings, read from the environment; no application logic here."""

import os
import shutil
import tempfile


def _env(name, default):
    """The variable's value, or ``default`` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


# The application: ``gunicorn -c gunicorn.conf.py`` serves it without naming it (``wsgi:app`` works too).
wsgi_app = "wsgi:app"
bind = _env("BIND", f"{_env('HOST', '0.0.0.0')}:{_env('PORT', '4004')}")
# gevent-websocket's worker serves both transports; plain "gevent" breaks websockets.
worker_class = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
# One gevent worker per core this process may run on (a worker is one thread); WEB_CONCURRENCY overrides it.
workers = int(_env("WEB_CONCURRENCY", str(len(os.sched_getaffinity(0)))))
# Each open socket holds one of these: keep it well above the expected connections.
worker_connections = int(_env("WORKER_CONNECTIONS", "20000"))
timeout = int(_env("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(_env("GRACEFUL_TIMEOUT", "10"))
keepalive = int(_env("KEEPALIVE", "5"))
loglevel = _env("LOG_LEVEL", "info").lower()
accesslog = _env("ACCESS_LOG", None)
errorlog = "-"
# gunicorn 27's control socket under ~/.gunicorn is shared by every instance on the machine.
control_socket_disable = True

# Observability. prometheus_client reads PROMETHEUS_MULTIPROC_DIR when a worker first imports it:
# set it here, in the master, before any worker starts. The default is a directory of this server's own.
_METRICS_DIR_PREFIX = "analytics-svc-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(tempfile.gettempdir(), f"{_METRICS_DIR_PREFIX}{os.getpid()}")


# The workers' shared private directory on this node (SERVER_RUN_DIR): each worker's hand-off socket, through which
# a sibling passes it the connections of its sessions, and its activity snapshot for the admin page. Made here, in the
# master, so that every worker (and a worker started after a restart) finds the same one; mode 700.
_RUN_DIR_PREFIX = "analytics-svc-run-"
if not os.environ.get("SERVER_RUN_DIR", "").strip():
    os.environ["SERVER_RUN_DIR"] = tempfile.mkdtemp(prefix=_RUN_DIR_PREFIX)


def on_starting(_server):
    """Start from empty metrics: remove the files a previous run left in the metrics directory."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(_server, worker):
    """Drop a dead worker's live gauges (sockets, subscriptions) from the sums /metrics reports."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(_server):
    """Remove the metrics and run directories when they are the default ones made for this server."""
    for name, prefix in (("PROMETHEUS_MULTIPROC_DIR", _METRICS_DIR_PREFIX), ("SERVER_RUN_DIR", _RUN_DIR_PREFIX)):
        directory = os.environ[name]
        if os.path.basename(directory).startswith(prefix):
            shutil.rmtree(directory, ignore_errors=True)


# LOG_FORMAT=json: gunicorn's own lines are JSON too, with the fields the application's lines have.
if _env("LOG_FORMAT", "text").lower() == "json":
    logconfig_dict = {
        "root": {"level": loglevel.upper(), "handlers": []},  # the application installs its own handler
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
        },
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": True,
            }
        },
    }


def post_worker_init(worker):
    """Start serving in this worker: connection handler, background work, drain on stop (app/serving.py)."""
    from app.serving import start_worker

    start_worker(worker)
