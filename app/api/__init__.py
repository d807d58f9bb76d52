"""REST API under /api/v1: validate, call a service, serialize."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from app.api import dashboards, entities, metrics, openapi  # noqa: E402,F401  (routes register on import)
