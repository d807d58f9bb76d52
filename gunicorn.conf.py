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
