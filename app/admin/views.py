"""Admin views: each validates a form, calls one service function, and renders or redirects.

Tile changes go through app/services/dashboards.py like the REST API's, so
every saved change reaches subscribed dashboards as ``dashboard:update``.
"""

import functools
import time

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError
from limits import parse as parse_rate
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app import errors
from app.addresses import client_address
from app.admin import bp
from app.admin.forms import MoveTileForm, PlainForm, ReorderForm, SignInForm, TileForm, VersionedForm
from app.auth import mint_dev_token, verify_token
from app.errors import AppError
from app.services import admin_sessions, dashboards, entities

SESSION_KEY = "admin"
DEV_SUBJECT = "dev-admin"
#: Events shown in the activity panel.
RECENT_EVENTS = 8


# --- session ------------------------------------------------------------------------------------------------------


def signed_in_admin():
    """The signed-in admin ``{tenant, subject, expires_at}``, or None (an ended or expired session is cleared).

    The cookie holds only the session's id; the session itself is a row
    (``app.services.admin_sessions``), so signing out ends it on every worker.
    """
    session_id = session.get(SESSION_KEY)
    if not session_id:
        return None
    admin = admin_sessions.admin_session(session_id)
    if admin is None:
        session.pop(SESSION_KEY, None)
        flash("Your admin session has ended. Sign in again.", "info")
        return None
    return admin


def admin_required(view):
    """Send visitors without an admin session to the sign-in page."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        admin = signed_in_admin()
        if admin is None:
            return redirect(url_for("admin.index"))
        return view(admin, *args, **kwargs)

    return wrapper


def _start_session(principal):
    if not principal.has_any_role("admin"):
        raise AppError(errors.PERMISSION_DENIED, "this token does not have the admin role")
    earlier = session.get(SESSION_KEY)
    session.clear()
    hours = current_app.config["ADMIN_SESSION_HOURS"]
    expires_at = min(principal.expires_at, time.time() + hours * 3600)
    session[SESSION_KEY] = admin_sessions.start_admin_session(
        principal.tenant_id, principal.subject, expires_at, replacing=earlier
    )


def _dev_login_enabled():
    return current_app.config["ADMIN_DEV_LOGIN"] and bool(current_app.config["JWT_SECRET"])


@bp.context_processor
def _sign_out_form():
    """Every admin page's header has a sign-out button, which is a form with a CSRF token."""
    return {"sign_out": PlainForm()}


# --- sign-in ------------------------------------------------------------------------------------------------------


@bp.get("")
def index():
    """Signed in: the tenant's dashboards and entities. Otherwise: the sign-in page."""
    admin = signed_in_admin()
    if admin is None:
        return _sign_in_page(SignInForm())
    return render_template(
        "admin/index.html",
        admin=admin,
        dashboards=dashboards.list_dashboards(admin["tenant"]),
        entities=entities.list_entities(admin["tenant"]),
    )


def _sign_in_page(form, error=None, status=200):
    return (
        render_template(
            "admin/sign_in.html",
            form=form,
            dev_form=PlainForm() if _dev_login_enabled() else None,
            demo_tenant=current_app.config["DEMO_TENANT"],
            error=error,
        ),
        status,
    )


def _failed_sign_ins():
    """``(allowed, count_one)`` for this client address's failed sign-ins (ADMIN_SIGN_IN_RATE_LIMIT, per worker).

    Only failures count: guessing tokens is what the limit is for.
    """
    config = current_app.config
    limiter = current_app.extensions.get("admin_sign_in_limiter")
    if limiter is None:
        limiter = current_app.extensions["admin_sign_in_limiter"] = (
            MovingWindowRateLimiter(MemoryStorage()),
            parse_rate(config["ADMIN_SIGN_IN_RATE_LIMIT"]),
        )
    window, rate = limiter
    address = client_address(request.environ, config["TRUSTED_PROXIES"])
    return window.test(rate, "admin-sign-in", address), lambda: window.hit(rate, "admin-sign-in", address)


@bp.post("/sign-in")
def sign_in():
    """Verify the pasted token as the API does and require the admin role."""
    allowed, count_failure = _failed_sign_ins()
    if not allowed:
        return _sign_in_page(
            SignInForm(),
            error=AppError(errors.RATE_LIMITED, "too many failed sign-ins from this address; wait a minute"),
            status=429,
        )
    form = SignInForm()
    if not form.validate_on_submit():
        return _sign_in_page(form, status=400)
    try:
        _start_session(verify_token((form.token.data or "").strip(), current_app.config))
    except AppError as exc:
        count_failure()
        return _sign_in_page(form, error=exc, status=exc.status)
    return redirect(url_for("admin.index"), 303)


@bp.post("/dev-sign-in")
def dev_sign_in():
    """One click, development only (ADMIN_DEV_LOGIN=1 with JWT_SECRET): admin of the demo tenant."""
    if not _dev_login_enabled():
        return _error_page(AppError(errors.NOT_FOUND, "the dev sign-in is off on this server"))
    form = PlainForm()
    if not form.validate_on_submit():
        return _sign_in_page(SignInForm(), status=400)
    config = current_app.config
    hours = config["ADMIN_SESSION_HOURS"]
    token = mint_dev_token(config, config["DEMO_TENANT"], DEV_SUBJECT, ["admin"], int(hours * 3600))
    _start_session(verify_token(token, config))
    return redirect(url_for("admin.index"), 303)


@bp.post("/sign-out")
def sign_out():
    """Forget the admin session."""
    PlainForm().validate_on_submit()  # CSRFProtect has already refused a forged request
    admin_sessions.end_admin_session(session.get(SESSION_KEY))
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("admin.index"), 303)


# --- one dashboard ------------------------------------------------------------------------------------------------


def _dashboard_page(admin, dashboard_id, tile_form=None, status=200):
    tenant = admin["tenant"]
    dashboard = dashboards.get_dashboard(tenant, dashboard_id)
    if tile_form is None:
        tile_form = TileForm(formdata=None, expected_version=dashboard["version"])
    else:
        tile_form.show_version(dashboard["version"])
    return (
        render_template(
            "admin/dashboard.html",
            admin=admin,
            dashboard=dashboard,
            tile_form=tile_form,
            version_form=VersionedForm(formdata=None, expected_version=dashboard["version"]),
            activity=_activity(tenant, dashboard_id),
        ),
        status,
    )


def _activity(tenant, dashboard_id):
    users = entities.entities_of_dashboard(tenant, dashboard_id)
    entity_ids = [e["entityId"] for e in users]
    tracker = current_app.extensions["realtime"].activity
    return {
        "entities": users,
        "subscribers": tracker.subscriber_count(tenant, entity_ids),
        "events": tracker.recent(tenant, entity_ids, RECENT_EVENTS),
    }


def _conflict_message(exc):
    return (
        "Not saved: someone else changed this dashboard while you were looking at it. "
        "The page now shows the current tiles; check them and make your change again."
        if exc.error is errors.CONFLICT
        else exc.message
    )


@bp.get("/dashboards/<int:dashboard_id>")
@admin_required
def dashboard(admin, dashboard_id):
    """The dashboard's ordered tiles, the add form, and who is watching it."""
    return _dashboard_page(admin, dashboard_id)


@bp.get("/dashboards/<int:dashboard_id>/activity")
@admin_required
def activity(admin, dashboard_id):
    """Subscribed sockets and recent events as JSON, for the page's live panel."""
    version = dashboards.get_dashboard(admin["tenant"], dashboard_id)["version"]
    return {"version": version, **_activity(admin["tenant"], dashboard_id)}


@bp.post("/dashboards/<int:dashboard_id>/tiles")
@admin_required
def add_tile(admin, dashboard_id):
    """Append a tile."""
    form = TileForm()
    if form.validate_on_submit():
        try:
            fields = dashboards.parse_tile(form.payload())
            change = dashboards.add_tile(admin["tenant"], dashboard_id, fields, form.expected_version.data)
        except AppError as exc:
            return _refused(admin, dashboard_id, form, exc)
        flash(f"Added tile “{change['tile']['title']}”.", "success")
        return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)
    return _dashboard_page(admin, dashboard_id, form, 400)


def _refused(admin, dashboard_id, form, exc):
    """Show the form again with the service's message on its field, or on top of the page."""
    _show_error(exc, form)
    return _dashboard_page(admin, dashboard_id, form, exc.status)


def _show_error(exc, form=None):
    """Tell the admin why the service refused: on the form field it names, else as a flash message.

    NOT_FOUND is not shown here: it propagates and answers 404.
    """
    if exc.error is errors.NOT_FOUND:
        raise exc
    if form is None or exc.error is errors.CONFLICT or not form.attach_error(exc.message):
        flash(_conflict_message(exc), "error")


@bp.route("/dashboards/<int:dashboard_id>/tiles/<int:tile_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_tile(admin, dashboard_id, tile_id):
    """Change a tile's title, metric, kind, unit or thresholds."""
    tenant = admin["tenant"]
    current = dashboards.get_dashboard(tenant, dashboard_id)
    tile = _tile_of(current, tile_id)
    form = TileForm()
    status = 200
    if request.method == "GET":
        form.fill_from(tile)
        form.expected_version.data = current["version"]
    elif form.validate_on_submit():
        try:
            fields = dashboards.parse_tile(form.payload(tile.get("thresholds")))
            dashboards.update_tile(tenant, dashboard_id, tile_id, fields, form.expected_version.data)
        except AppError as exc:
            _show_error(exc, form)
            status = exc.status
            # Saving again now is a decision made with the current tile in view.
            form.show_version(current["version"])
        else:
            flash(f"Saved tile “{fields['title']}”.", "success")
            return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)
    else:
        status = 400
    return (
        render_template("admin/edit_tile.html", admin=admin, dashboard=current, tile=tile, form=form),
        status,
    )


def _tile_of(dashboard, tile_id):
    for tile in dashboard["tiles"]:
        if tile["id"] == tile_id:
            return tile
    raise AppError(errors.NOT_FOUND, f"unknown tile {tile_id}")


@bp.route("/dashboards/<int:dashboard_id>/tiles/<int:tile_id>/remove", methods=["GET", "POST"])
@admin_required
def remove_tile(admin, dashboard_id, tile_id):
    """Ask for confirmation (GET), then remove the tile (POST)."""
    tenant = admin["tenant"]
    current = dashboards.get_dashboard(tenant, dashboard_id)
    tile = _tile_of(current, tile_id)
    form = VersionedForm(expected_version=current["version"]) if request.method == "GET" else VersionedForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            dashboards.remove_tile(tenant, dashboard_id, tile_id, form.expected_version.data)
        except AppError as exc:
            _show_error(exc)
            return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)
        flash(f"Removed tile “{tile['title']}”.", "success")
        return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)
    return render_template("admin/remove_tile.html", admin=admin, dashboard=current, tile=tile, form=form)


@bp.post("/dashboards/<int:dashboard_id>/tiles/<int:tile_id>/move")
@admin_required
def move_tile(admin, dashboard_id, tile_id):
    """Move a tile one place up or down."""
    form = MoveTileForm()
    if not form.validate_on_submit():
        flash("That move was not understood; try again.", "error")
    else:
        offset = -1 if form.direction.data == "up" else 1
        try:
            dashboards.move_tile(admin["tenant"], dashboard_id, tile_id, offset, form.expected_version.data)
        except AppError as exc:
            _show_error(exc)
    return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)


@bp.post("/dashboards/<int:dashboard_id>/order")
@admin_required
def reorder_tiles(admin, dashboard_id):
    """Save a whole new order (what drag and drop sends)."""
    form = ReorderForm()
    tile_ids = form.ids() if form.validate_on_submit() else None
    if tile_ids is None:
        flash("That order was not understood; try again.", "error")
    else:
        try:
            dashboards.reorder_tiles(admin["tenant"], dashboard_id, tile_ids, form.expected_version.data)
        except AppError as exc:
            _show_error(exc)
    return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)


@bp.after_request
def _private_pages(response):
    """Admin pages hold CSRF tokens and tenant data: never cached (app.headers keeps them from being framed)."""
    response.headers["Cache-Control"] = "no-store"
    return response


# --- errors -------------------------------------------------------------------------------------------------------


def _error_page(exc, title=None):
    return render_template("admin/error.html", error=exc, title=title, admin=signed_in_admin()), exc.status


@bp.errorhandler(AppError)
def _app_error(exc):
    return _error_page(exc)


@bp.errorhandler(CSRFError)
def _csrf_error(exc):
    message = (
        f"{exc.description} The form was not sent from this admin page, or it is too old. "
        "Go back, reload the page and try again."
    )
    return _error_page(AppError(errors.VALIDATION_FAILED, message), title="Form refused")
