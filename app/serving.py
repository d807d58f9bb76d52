"""Serving the app in a gunicorn worker: what the ``post_worker_init`` hook of gunicorn.conf.py calls."""

import gc


def start_worker(worker):
    """Start serving ``worker.wsgi`` (the app ``wsgi:app``): our connection handler, background work, drain on stop.

    Called once per worker process, after gevent's monkey-patching and the app's
    import; the Flask CLI never gets here, so its commands start nothing. The
    REST-only app (``wsgi_api:api``, any worker class) has nothing to start.
    """
    app = worker.wsgi
    if not app.config["JWT_ALGORITHMS"]:
        app.logger.warning("neither JWT_SECRET nor JWT_PUBLIC_KEY is set: every connection will be refused")
    realtime = app.extensions.get("realtime")
    if realtime is None:
        return
    if not app.config["ADMIN_ENABLED"]:
        app.logger.warning("SECRET_KEY is not set: the admin page /admin is off")
    # Imported here: the REST-only app's synchronous workers never load the Socket.IO engine.
    from app.realtime.engine import install

    install(worker, realtime)
    # What the worker holds from here on lives as long as it: the garbage collector's full collections,
    # which come as the sockets held grow (a reconnect storm), need not walk it each time (150,000 objects).
    gc.collect()
    gc.freeze()
