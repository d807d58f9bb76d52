"""gunicorn settings, read from the environment; no application logic here."""

import os

bind = os.environ.get("BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '4004')}"
# gevent-websocket's worker serves both transports; plain "gevent" breaks websockets.
worker_class = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Each open socket holds one of these: keep it well above the expected connections.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "20000"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
keepalive = int(os.environ.get("KEEPALIVE", "5"))
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
# gunicorn 27's control socket under ~/.gunicorn is shared by every instance on the machine.
control_socket_disable = True
