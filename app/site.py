"""The landing page: what this server offers and where to read more."""

from flask import Blueprint, current_app, render_template

from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE

bp = Blueprint("site", __name__)


@bp.get("/")
def index():
    """Describe the service: namespaces, REST base and health endpoint."""
    return render_template(
        "site/index.html",
        namespaces=(DASHBOARD_NAMESPACE, UPDATES_NAMESPACE),
        entity_types=current_app.config["ENTITY_TYPES"],
    )
