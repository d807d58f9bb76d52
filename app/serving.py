"""Serving the app in a gunicorn worker: what the ``post_worker_init`` hook of gunicorn.conf.py calls."""

from app.realtime.engine import install


def start_worker(worker):
    """Start serving ``worker.wsgi`` (the app ``wsgi:app``): our connection handler, background work, drain on stop.

    Called once per worker process, after gevent's monkey-patching and the app's
    import; the Flask CLI never gets here, so its commands start nothing.
    """
    app = worker.wsgi
    if not app.config["JWT_ALGORITHMS"]:
        app.logger.warning("neither JWT_SECRET nor JWT_PUBLIC_KEY is set: every connection will be refused")
    if not app.config["ADMIN_ENABLED"]:
        app.logger.warning("SECRET_KEY is not set: the admin page /admin is off")
    install(worker, app.extensions["realtime"])
