"""gunicorn settings, read from the environment; no application logic here."""

import os


def _env(name, default):
    """The variable's value, or ``default`` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


bind = _env("BIND", f"{_env('HOST', '0.0.0.0')}:{_env('PORT', '4004')}")
# gevent-websocket's worker serves both transports; plain "gevent" breaks websockets.
worker_class = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
workers = int(_env("WEB_CONCURRENCY", "1"))
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


def post_worker_init(worker):
    """When this worker is told to stop (SIGTERM, or SIGHUP's restart), close its sockets at once.

    Open websockets would otherwise hold the worker for ``graceful_timeout`` and
    then be cut; closed at once, their clients reconnect to another worker or
    node within a second, while this worker answers new ones 503.
    """
    import gevent

    realtime = worker.wsgi.extensions["realtime"]

    def drain_when_told_to_stop():
        while worker.alive:
            gevent.sleep(0.1)
        realtime.drain()

    gevent.spawn(drain_when_told_to_stop)
