"""analytics-svc: real-time analytics dashboards over Socket.IO."""

from pathlib import Path

from flask import Flask

from app.config import load_config
from app.database import configure_engine, end_outages_on_checkout, outage_trackers
from app.extensions import CookieSessions, csrf, db, migrate
from app.logs import configure_logging, with_request_ids

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config=None, realtime=True):
    """Build the Flask app with its database, HTTP API, CLI and, unless ``realtime`` is false, Socket.IO.

    ``config`` overrides what the environment gives. The full server (``realtime``)
    also has the pages, the admin page and the Socket.IO server; its background work
    (poller, expiry watch, simulator) is created here but only started by
    ``app.serving``. ``realtime=False`` builds the REST-only app (``wsgi_api.py``):
    the same HTTP API, health and metrics, no Socket.IO and no background work.
    """
    app = Flask(__name__, instance_relative_config=True, template_folder=str(PROJECT_ROOT / "templates"))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if config:
        app.config.from_mapping(config)
    app.session_interface = CookieSessions()
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    with app.app_context():
        configure_engine(db.engine)
        end_outages_on_checkout(db.engine, app)

    from app.api import bp as api_bp
    from app.api.errors import register_error_handlers
    from app.cli import register_cli
    from app.graphql import bp as graphql_bp
    from app.headers import init_security_headers
    from app.health import bp as health_bp
    from app.telemetry import count_unavailable, init_telemetry

    app.extensions.update(outage_trackers(count_unavailable))
    # The HTTP API: every blueprint registered here is served by the full server and the REST-only app alike.
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(graphql_bp)
    app.register_blueprint(health_bp)
    if realtime:
        _add_pages(app, api_bp)
    register_error_handlers(app)
    register_cli(app)
    init_security_headers(app)

    server = _add_realtime(app) if realtime else None
    init_telemetry(app, server)
    app.wsgi_app = with_request_ids(server.wsgi_app(app.wsgi_app) if server else app.wsgi_app)
    return app


def _add_pages(app, api_bp):
    """The landing page, the live dashboard page and the admin page: they need the Socket.IO server."""
    from app.site import bp as site_bp

    app.register_blueprint(site_bp)
    if app.config["ADMIN_ENABLED"]:
        from app.admin import bp as admin_bp

        # Forms carry a CSRF token; the REST API authenticates with Bearer tokens, never cookies.
        csrf.init_app(app)
        csrf.exempt(api_bp)
        app.register_blueprint(admin_bp)


def _add_realtime(app):
    """The Socket.IO server and the background work of a worker process (``app.extensions["realtime"]``)."""
    from app.demo import MetricSimulator
    from app.realtime.server import Realtime

    realtime = Realtime(app)
    if app.config["SIMULATOR"]:
        realtime.add_background(MetricSimulator(app, realtime.sio))
    app.extensions["realtime"] = realtime
    return realtime
