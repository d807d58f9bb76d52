"""Entry points. gevent patches the standard library before anything else is imported.

* gunicorn: ``wsgi:serve()`` builds the app and starts its background work;
* Flask CLI: ``flask --app wsgi ...`` finds ``create_app`` and starts nothing.
"""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402


def serve():
    """Build the app for a serving process and start its poller and other background work."""
    app = create_app()
    if not app.config["JWT_ALGORITHMS"]:
        app.logger.warning("neither JWT_SECRET nor JWT_PUBLIC_KEY is set: every connection will be refused")
    if not app.config["ADMIN_ENABLED"]:
        app.logger.warning("SECRET_KEY is not set: the admin page /admin is off")
    app.extensions["realtime"].start()
    return app


__all__ = ["create_app", "serve"]
