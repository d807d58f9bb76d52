"""Serving under gunicorn's gevent-websocket worker: the handler class, the WSGI callable, and the drain."""

import signal

import gevent

from app.realtime.engine.handler import connection_handler


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
    """
    worker.wsgi_handler = connection_handler(realtime.refuses_upgrade, realtime.header_timeout)
    worker.wsgi = worker.wsgi.wsgi_app
    _quit_once(worker)
    realtime.start()

    def drain_when_told_to_stop():
        while worker.alive:
            gevent.sleep(0.1)
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
