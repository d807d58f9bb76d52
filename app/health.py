"""Liveness with database reachability."""

import logging

from flask import Blueprint
from sqlalchemy import text

from app import errors
from app.errors import AppError
from app.extensions import db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """200 with ``{"status": "ok", "database": "ok"}``, or 503 (ANALYTICS_1300) when the database does not answer."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        log.exception("health check: database unreachable")
        return {"status": "degraded", "database": "unreachable", **AppError(errors.UNAVAILABLE).to_dict()}, 503
    return {"status": "ok", "database": "ok"}
