"""Serving under gunicorn's gevent-websocket worker: the handler class, the WSGI callable, and the drain."""

import logging
import signal

import gevent

from app.realtime.engine.handler import connection_handler, serve_handed_over
from app.realtime.engine.handoff import Handoff

log = logging.getLogger(__name__)


def install(worker, realtime):
    """Serve ``worker``'s connections with our handler, start ``realtime``'s background work, and drain on stop.

    Called from gunicorn's ``post_worker_init`` hook: in the worker, after
    gevent's monkey-patching and the app's import, before the worker builds its
    server from ``worker.wsgi_handler`` and ``worker.wsgi`` (gunicorn 27.0.1
    ``GeventWorker.run``). The server calls the app's WSGI callable itself
    (``wsgi_app``), which is all ``Flask.__call__`` does: an object's
    ``__call__`` runs in a C frame of its own (Python 3.11), which the stack of
    every idle websocket's greenlet would keep. When the worker is told to stop
    (SIGTERM, or SIGHUP's restart), its sockets are closed at once: open
    websockets would otherwise hold the worker for ``graceful_timeout`` and then
    be cut; closed at once, their clients reconnect to another worker or node
    within a second, while this worker answers Socket.IO requests 503.

    With ``realtime.run_dir`` (SERVER_RUN_DIR, which gunicorn.conf.py makes
    for the server's workers), the sessions this worker opens name it, and a
    request of a session another worker opened is handed to that worker
    (``handoff.Handoff``); not under TLS, whose state cannot leave the process.

    An idle websocket is held without a greenlet (``websocket.WebSocketTransport``
    parks it; not under TLS either), so gunicorn's pool of ``worker_connections``
    greenlets no longer bounds how many a worker holds: new Socket.IO sessions
    are refused (503) once it holds ``worker_connections`` of them.
    """
    handoff = None
    if realtime.run_dir and not worker.cfg.is_ssl:
        handoff = Handoff(realtime.run_dir)
        realtime.sio.eio.sid_prefix = handoff.sid_prefix
    elif realtime.run_dir and worker.cfg.workers > 1:
        log.warning(
            "gunicorn terminates TLS itself with %d workers: a polling session's requests that reach another worker "
            "than its own are refused (terminate TLS in a proxy in front, or run one worker)",
            worker.cfg.workers,
        )
    worker.wsgi_handler = connection_handler(
        realtime.refuses_upgrade, realtime.header_timeout, handoff, realtime.session_of
    )
    worker.wsgi = worker.wsgi.wsgi_app
    # An idle websocket keeps no greenlet (websocket.py), so the pool no longer bounds them: sessions are bounded.
    realtime.sio.eio.connections.parking = not worker.cfg.is_ssl
    realtime.max_sessions = worker.worker_connections
    _quit_once(worker)
    if handoff is not None:
        handoff.start(serve_handed_over(worker.wsgi_handler), gevent.spawn)
        realtime.sio.handoff = handoff
    realtime.start()

    def drain_when_told_to_stop():
        while worker.alive:
            gevent.sleep(0.1)
        if handoff is not None:
            handoff.stop()
        realtime.drain()

    gevent.spawn(drain_when_told_to_stop)


def _quit_once(worker):
    """Let the first SIGINT or SIGQUIT stop the worker; ignore the ones after it.

    Ctrl-C in a terminal reaches the master and its workers alike, and the master
    then sends each worker a SIGQUIT as well. gunicorn's gevent worker handles
    each in a greenlet of its own that calls ``sys.exit(0)``; the second one runs
    while the interpreter shuts down and prints a ``SystemExit: 0`` traceback.
    """
    quit_now = worker.handle_quit
    quitting = []

    def quit_once(sig, frame):
        if not quitting:
            quitting.append(sig)
            quit_now(sig, frame)

    signal.signal(signal.SIGINT, quit_once)
    signal.signal(signal.SIGQUIT, quit_once)
