"""REST API under /api/v1: validate, call a service, serialize."""

from flask import Blueprint

from app.api.common import IdConverter

bp = Blueprint("api", __name__)
# Before the routes below are added: they name it.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("id", IdConverter))

from app.api import dashboards, entities, metrics, openapi  # noqa: E402,F401  (routes register on import)
