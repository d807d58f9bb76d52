"""Socket.IO server setup: one ``socketio.Server`` wrapped around the Flask app."""

import functools
import json
import logging
from urllib.parse import parse_qs

import socketio

from app import errors
from app.addresses import client_address
from app.database import database_outage
from app.errors import AppError
from app.extensions import db
from app.realtime.activity import SocketActivity
from app.realtime.engine import BacklogWatch, ConnectWatch, SocketServer
from app.realtime.engine.server import CLIENT_ADDRESS_KEY
from app.realtime.expiry import TokenExpiryWatch
from app.realtime.fanout import FanOut
from app.realtime.namespaces import namespaces_for, unsubscribe_all
from app.realtime.poller import ChangePoller
from app.realtime.retention import RetentionWorker
from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE
from app.telemetry import observe_notification_lag

log = logging.getLogger(__name__)

#: The WSGI environ key under which a Socket.IO request's ``sid`` is kept once parsed.
SID_KEY = "analytics.sid"

SOCKETIO_PATH = "/socket.io/"


def client_manager(config):
    """python-socketio's Redis manager when ``REDIS_URL`` is set, else the in-process default (None).

    With Redis, an emit that is not marked local (``ignore_queue``) reaches the
    sockets of every process on the same Redis: emits from other nodes or from
    an external process (``socketio.RedisManager(url, write_only=True)``), and
    disconnects of sockets held elsewhere. The change feed does not go through
    it: every process reads the change log itself and emits locally.
    """
    url = config["REDIS_URL"]
    if not url:
        return None
    return socketio.RedisManager(url, channel=config["REDIS_CHANNEL"])


class Realtime:
    """The Socket.IO server and the background work of one worker process."""

    def __init__(self, app):
        config = app.config
        self.sio = SocketServer(
            async_mode="gevent",
            client_manager=client_manager(config),
            cors_allowed_origins=config["CORS_ALLOWED_ORIGINS"],
            # Events of one socket run in arrival order (subscribe before unsubscribe).
            async_handlers=False,
            # Only our namespaces: python-socketio also accepts "/" unless told otherwise.
            namespaces=[DASHBOARD_NAMESPACE, UPDATES_NAMESPACE],
            # Clients only send small subscribe/unsubscribe messages; a larger one closes the connection.
            max_http_buffer_size=config["SOCKET_MAX_MESSAGE_BYTES"],
            ping_interval=config["SOCKET_PING_INTERVAL"],
            ping_timeout=config["SOCKET_PING_TIMEOUT"],
            logger=False,
            engineio_logger=False,
        )
        self.draining = False
        self.max_sessions = None  # Socket.IO sessions this process may hold (gunicorn.install: worker_connections)
        self._max_connections_per_ip = config["MAX_CONNECTIONS_PER_IP"]
        self._trusted_proxies = frozenset(config["TRUSTED_PROXIES"])
        self._warned_forwarders = set()
        self._bind_to_address = config["SOCKET_BIND_TO_ADDRESS"]
        self.header_timeout = config["HTTP_HEADER_TIMEOUT"]
        self.run_dir = config["SERVER_RUN_DIR"]
        self.activity = SocketActivity(self.sio)
        fanout = FanOut(self.sio, self.activity, functools.partial(unsubscribe_all, self.sio))
        self.poller = ChangePoller(app, self.sio, fanout)
        self.expiry = TokenExpiryWatch(self.sio, config["TOKEN_EXPIRY_WARNING"])
        self.backlog = BacklogWatch(self.sio, config["SOCKET_MAX_BACKLOG"], config["SOCKET_MAX_BACKLOG_BYTES"])
        self.connect_watch = ConnectWatch(self.sio, config["SOCKET_CONNECT_TIMEOUT"])
        for namespace in namespaces_for(config, self.poller, self.expiry):
            namespace.activity = self.activity
            self.sio.register_namespace(namespace)
        self.retention = RetentionWorker(app, self.sio, self.poller)
        self._background = [self.poller, self.expiry, self.backlog, self.connect_watch, self.retention]
        self.listener = None
        if config["CHANGE_NOTIFY"]:
            self.listener = _change_listener(app, self.sio, self.poller)
            self._background.append(self.listener)
        self.add_background(self.activity.sharing(config))  # the admin page counts every worker (activity_share.py)

    def add_background(self, worker):
        """Run ``worker`` (an object with ``start()``/``stop()``) with the others."""
        self._background.append(worker)

    def wsgi_app(self, flask_wsgi_app):
        """The WSGI application: Socket.IO under ``/socket.io/``, Flask for the rest.

        While draining, every Socket.IO request is answered 503: a new session's,
        so the client retries (and reaches another worker or node) instead of
        settling here, and one of a session held elsewhere that a proxy sent here,
        so the proxy retries it where that session lives (nginx does, for GETs).
        """
        handle_socketio = self.sio.handle_request  # what socketio.WSGIApp does, without a __call__ frame (logs.py)

        def app(environ, start_response):
            if not _is_socketio(environ):
                return flask_wsgi_app(environ, start_response)
            if self.draining:
                return _refuse(start_response, "503 Service Unavailable", errors.UNAVAILABLE, "server is shutting down")
            if self._full(environ):
                return _refuse(
                    start_response,
                    "503 Service Unavailable",
                    errors.UNAVAILABLE,
                    "this worker holds as many connections as it may (WORKER_CONNECTIONS)",
                )
            if self._over_connection_cap(environ):
                return _refuse(
                    start_response,
                    "429 Too Many Requests",
                    errors.RATE_LIMITED,
                    "too many connections from this address (MAX_CONNECTIONS_PER_IP)",
                )
            if self._from_elsewhere(environ):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"Invalid session"]  # what engine.io answers for a session it does not know
            return handle_socketio(environ, start_response)

        return app

    def _client_address(self, environ):
        """The request's client address, worked out once and kept in the environ (``CLIENT_ADDRESS_KEY``).

        The engine layer counts a new session under it.
        """
        address = environ.get(CLIENT_ADDRESS_KEY)
        if address is None:
            address = environ[CLIENT_ADDRESS_KEY] = client_address(environ, self._trusted_proxies)
            if address == environ.get("REMOTE_ADDR") and "HTTP_X_FORWARDED_FOR" in environ:
                self._warn_untrusted_forwarder(address)
        return address

    def _over_connection_cap(self, environ):
        """A request opening a new session from an address that holds MAX_CONNECTIONS_PER_IP here already."""
        address = self._client_address(environ)
        if _sid_of(environ) is not None:
            return False  # a request of a session that exists: counted when it opened
        return self.sio.connections_from(address) >= self._max_connections_per_ip

    def _full(self, environ):
        """A request opening a new session while this process holds ``max_sessions`` sessions already.

        gunicorn's pool of ``worker_connections`` greenlets no longer bounds the
        websockets a worker holds, since an idle one keeps no greenlet
        (``engine.websocket``): sessions are bounded here instead.
        """
        return (
            self.max_sessions is not None and _sid_of(environ) is None and self.sio.session_count() >= self.max_sessions
        )

    def _from_elsewhere(self, environ):
        """A request for an existing session from another client address than the one that opened it.

        A polling session id is all a request needs to read and act as that
        session; one that leaked (a log, a shared screen) is refused from any
        other address (SOCKET_BIND_TO_ADDRESS), answered as an unknown session.
        """
        sid = _sid_of(environ)
        if not self._bind_to_address or sid is None:
            return False
        opened_from = self.sio.address_of(sid)
        return opened_from is not None and opened_from != self._client_address(environ)

    def _warn_untrusted_forwarder(self, address):
        """Say once per peer (a few peers at most) that its X-Forwarded-For was not believed."""
        if address in self._trusted_proxies or len(self._warned_forwarders) >= 16 or address in self._warned_forwarders:
            return
        self._warned_forwarders.add(address)
        log.warning(
            "X-Forwarded-For from %s ignored: it is not in TRUSTED_PROXIES, so its clients count as its own "
            "address towards MAX_CONNECTIONS_PER_IP (set TRUSTED_PROXIES to your proxies' addresses)",
            address,
        )

    def refuses_upgrade(self, environ):
        """Whether a websocket request gets a plain HTTP answer instead of an upgrade.

        Socket.IO requests while draining (503, above), new sessions while the
        process is full (503) or over MAX_CONNECTIONS_PER_IP (429), and those for a session this process does
        not hold or that another address opened (400 "Invalid session"); see
        ``engine.handler.ConnectionHandler``.
        """
        if not _is_socketio(environ):
            return False
        if self.draining or self._full(environ) or self._over_connection_cap(environ) or self._from_elsewhere(environ):
            return True
        sid = _sid_of(environ)
        return sid is not None and not self.sio.holds_session(sid)

    @staticmethod
    def session_of(target):
        """The Engine.IO session id in a request target (``/socket.io/?...&sid=...``); None for any other target."""
        path, _, query = target.partition("?")
        if not path.startswith(SOCKETIO_PATH) or "sid=" not in query:
            return None
        values = parse_qs(query).get("sid")
        return values[0] if values else None

    def start(self):
        """Start the background work of this process."""
        for worker in self._background:
            worker.start()
        log.info("realtime started: %s", ", ".join(type(w).__name__ for w in self._background))

    def stop(self):
        """Stop the background work of this process."""
        for worker in self._background:
            worker.stop()

    def drain(self):
        """Shutting down: refuse new sockets, close the open ones so their clients reconnect elsewhere, stop."""
        if self.draining:
            return
        self.draining = True
        # Without a Socket.IO or Engine.IO close packet: clients take that as a lost
        # connection and reconnect by themselves (SocketServer.drop_connections).
        log.info("draining: closed %d sockets", self.sio.drop_connections())
        self.stop()


def _is_socketio(environ):
    return environ.get("PATH_INFO", "").startswith(SOCKETIO_PATH)


def _sid_of(environ):
    """The ``sid`` query parameter of a Socket.IO request (None for a new session), parsed once per request."""
    if SID_KEY not in environ:
        values = parse_qs(environ.get("QUERY_STRING", "")).get("sid")
        environ[SID_KEY] = values[0] if values else None
    return environ[SID_KEY]


def _refuse(start_response, status, error, message):
    """Answer a Socket.IO request over plain HTTP with the ``{code, message}`` shape."""
    body = json.dumps(AppError(error, message).to_dict()).encode()
    start_response(status, [("Content-Type", "application/json"), ("Retry-After", "1")])
    return [body]


def _change_listener(app, sio, poller):
    from app.realtime.listener import ChangeListener, listener_dsn

    with app.app_context():
        url = db.engine.url
    connect_args = app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {})
    return ChangeListener(
        sio,
        listener_dsn(url, connect_args),
        poller.wake,
        min(app.config["POLL_INTERVAL"], app.config["POLL_MAX_BACKOFF"]),
        observe_notification_lag,
        database_outage(app),
    )
