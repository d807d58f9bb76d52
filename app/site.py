"""The landing page, the browser dashboard of one entity, and (in development) the REST API explorer."""

from flask import Blueprint, abort, current_app, render_template

from app.api.openapi import operations
from app.auth import mint_dev_token
from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE

bp = Blueprint("site", __name__)

SOCKET_IO_CLIENT = "vendor/socket.io-client-4.8.4/socket.io.min.js"
#: Lifetime of the viewer token pre-filled in development mode.
DEV_VIEWER_TOKEN_SECONDS = 12 * 3600


def _dev_mode():
    """True on a development server (ADMIN_DEV_LOGIN=1 with JWT_SECRET): demo links and a pre-filled token."""
    config = current_app.config
    return config["ADMIN_DEV_LOGIN"] and bool(config["JWT_SECRET"])


@bp.get("/")
def index():
    """Describe the service: namespaces, REST base, health endpoint, and the pages."""
    return render_template(
        "site/index.html",
        namespaces=(DASHBOARD_NAMESPACE, UPDATES_NAMESPACE),
        entity_types=current_app.config["ENTITY_TYPES"],
        admin_enabled=current_app.config["ADMIN_ENABLED"],
        dev_mode=_dev_mode(),
    )


@bp.get("/dashboards/<entity_type>/<path:entity_id>")
def dashboard(entity_type, entity_id):
    """The live dashboard of one entity; the browser connects and authenticates over Socket.IO itself."""
    config = current_app.config
    dev_token = None
    if _dev_mode():
        # A viewer token (no roles) of the demo tenant, only on a development server.
        dev_token = mint_dev_token(config, config["DEMO_TENANT"], "dev-viewer", [], DEV_VIEWER_TOKEN_SECONDS)
    return render_template(
        "site/dashboard.html",
        entity_type=entity_type,
        entity_id=entity_id,
        namespace=DASHBOARD_NAMESPACE,
        socket_io_client=SOCKET_IO_CLIENT,
        dev_token=dev_token,
        demo_tenant=config["DEMO_TENANT"],
    )


@bp.get("/api/explorer")
def api_explorer():
    """Development servers only: the REST API's operations, listed from its OpenAPI document (no script)."""
    if not _dev_mode():
        abort(404)
    return render_template("site/api.html", operations=operations())
