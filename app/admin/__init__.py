"""Admin web page under /admin: sign in with a JWT, then edit the tenant's dashboard tiles."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from app.admin import views  # noqa: E402,F401  (routes register on import)
