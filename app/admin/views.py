"""Admin views: each validates a form, calls one service function, and renders or redirects.

Dashboard, tile and entity changes go through app/services like the REST API's,
so every saved change reaches subscribed dashboards as ``dashboard:update`` (or,
for a removed entity, ``error`` ANALYTICS_1101). The tenant is always the admin
session's; ids from a form or URL are only ever looked up within it.
"""

import functools
import logging
import time

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError
from limits import parse as parse_rate
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.exc import SQLAlchemyError

from app import errors
from app.addresses import client_address
from app.admin import bp
from app.admin.forms import (
    DashboardForm,
    EntityDashboardForm,
    EntityForm,
    MoveTileForm,
    PlainForm,
    RenameDashboardForm,
    ReorderForm,
    SignInForm,
    TileForm,
    VersionedForm,
)
from app.admin.sparklines import duration, metric_value, sparkline
from app.auth import mint_dev_token, verify_token
from app.database import database_outage, is_unavailable
from app.errors import AppError
from app.serializers import entity_to_dict
from app.services import admin_sessions, dashboards, entities
from app.services.history import chart_history
from app.validation import optional_text, require_choice, require_id

log = logging.getLogger(__name__)

SESSION_KEY = "admin"
DEV_SUBJECT = "dev-admin"
#: Events shown in the activity panel.
RECENT_EVENTS = 8
#: The longest dashboard or entity name, as the REST API checks it (app/api/dashboards.py, app/api/entities.py).
NAME_LENGTH = 200


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


for _filter in (sparkline, metric_value, duration):
    bp.add_app_template_filter(_filter)


@bp.context_processor
def _sign_out_form():
    """Every admin page's header has a sign-out button, which is a form with a CSRF token."""
    return {"sign_out": PlainForm()}


# --- sign-in ------------------------------------------------------------------------------------------------------


@bp.get("")
def index():
    """Signed in: the tenant's dashboards and entities, with their forms. Otherwise: the sign-in page."""
    admin = signed_in_admin()
    if admin is None:
        return _sign_in_page(SignInForm())
    return _index_page(admin)


def _index_page(admin, dashboard_form=None, entity_form=None, status=200):
    tenant = admin["tenant"]
    all_dashboards = dashboards.list_dashboards(tenant)
    if dashboard_form is None:
        dashboard_form = DashboardForm(formdata=None)
    if entity_form is None:
        entity_form = EntityForm(formdata=None)
    return (
        render_template(
            "admin/index.html",
            admin=admin,
            dashboards=all_dashboards,
            entities=entities.list_entities(tenant),
            dashboard_form=dashboard_form.with_dashboards(all_dashboards),
            entity_form=entity_form.with_choices(current_app.config["ENTITY_TYPES"], all_dashboards),
            row_form=EntityDashboardForm(formdata=None),
        ),
        status,
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


def _dashboard_page(admin, dashboard_id, tile_form=None, status=200, rename_form=None):
    """The dashboard's page; a form given was refused and is shown again as typed, against the current version."""
    tenant = admin["tenant"]
    dashboard = dashboards.get_dashboard(tenant, dashboard_id)
    users = entities.entities_of_dashboard(tenant, dashboard_id)
    shown = _sparkline_entity(users)
    if tile_form is None:
        tile_form = TileForm(formdata=None, expected_version=dashboard["version"])
    else:
        tile_form.show_version(dashboard["version"])
    if rename_form is None:
        rename_form = RenameDashboardForm(formdata=None, name=dashboard["name"], expected_version=dashboard["version"])
    else:
        rename_form.show_version(dashboard["version"])
    return (
        render_template(
            "admin/dashboard.html",
            admin=admin,
            dashboard=dashboard,
            tile_form=tile_form,
            rename_form=rename_form,
            version_form=VersionedForm(formdata=None, expected_version=dashboard["version"]),
            activity=_activity(tenant, dashboard_id, users),
            sparklines=_sparklines(tenant, dashboard, shown),
        ),
        status,
    )


def _sparkline_entity(users):
    """The entity whose values the sparklines show: ``?entity=`` among ``users`` (the dashboard's), else the first.

    None when no entity shows the dashboard. An id that is not among them (unknown, of
    another tenant, or showing another dashboard) answers 404, the same for all three.
    """
    if "entity" not in request.args:
        return users[0] if users else None
    entity_id = require_id(request.args, "entity", current_app.config["MAX_ID_LENGTH"])
    for user in users:
        if user["entityId"] == entity_id:
            return user
    raise AppError(errors.UNKNOWN_ENTITY, f"entity {entity_id!r} does not show this dashboard")


def _sparklines(tenant, dashboard, entity):
    """``{entity, window, history}``: the recent values of every tile's metric (all kinds) of ``entity``.

    The same history as the live page's charts (HISTORY_WINDOW, HISTORY_POINTS),
    read in one call for all the tiles.
    """
    config = current_app.config
    window = config["HISTORY_WINDOW"]
    if entity is None:
        return {"entity": None, "window": window, "history": {}}
    names = [tile["metricName"] for tile in dashboard["tiles"]]
    return {"entity": entity, "window": window, "history": chart_history(tenant, entity["entityId"], names, config)}


def _activity(tenant, dashboard_id, users=None):
    """The live panel: the entities, sockets subscribed, last events sent, and what those figures cover."""
    if users is None:
        users = entities.entities_of_dashboard(tenant, dashboard_id)
    entity_ids = [e["entityId"] for e in users]
    figures = current_app.extensions["realtime"].activity.figures(tenant, entity_ids, RECENT_EVENTS)
    return {"entities": users, **figures, "coverage": _coverage(figures)}


def _coverage(figures):
    """One sentence on whose sockets the panel counts and how old the figures are (docs/admin.md)."""
    problem = f" {figures['problem']}: other servers are not counted." if figures["problem"] else ""
    if figures["scope"] == "process":
        return "Counted in this server process only." + problem
    workers = f"{figures['workers']} worker{'' if figures['workers'] == 1 else 's'}"
    age = max(0, round(time.time() - figures["asOf"]))
    text = f"{workers} of {'this server' if figures['scope'] == 'node' else 'every server on this Redis'}, "
    text += f"as of {age} s ago." if age else "as of now."
    text += problem
    if figures["unreadable"]:
        text += f" {figures['unreadable']} unreadable snapshot{'' if figures['unreadable'] == 1 else 's'} left out."
    if figures["truncated"]:
        text += " A busy worker shared only its largest rooms and latest events."
    if figures["idle"]:
        text += f" {figures['idle']} of them not counted yet (sharing from now on: refresh in a few seconds)."
    return text


#: What a refused change against an older version of the dashboard says (ANALYTICS_1202).
STALE_CHANGE = (
    "Not saved: someone else changed this dashboard while you were looking at it. "
    "The page now shows the current tiles; check them and make your change again."
)
STALE_DELETE = (
    "Not deleted: someone else changed this dashboard while you were looking at it. "
    "The page now shows it as it is; delete it again if you still want to."
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


def _show_error(exc, form=None, stale=STALE_CHANGE):
    """Tell the admin why the service refused: on the form field it names, else as a flash message.

    A stale version (CONFLICT) is explained with ``stale``. NOT_FOUND and
    UNKNOWN_ENTITY are not shown here: they propagate and answer 404.
    """
    if exc.status == 404:
        raise exc
    if exc.error is errors.CONFLICT:
        flash(stale, "error")
    elif form is None or not form.attach_error(exc.message):
        flash(exc.message, "error")


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


# --- dashboards ---------------------------------------------------------------------------------------------------


@bp.post("/dashboards")
@admin_required
def create_dashboard(admin):
    """Create a dashboard, empty or with a copy of another one's tiles; then open it."""
    form = DashboardForm()
    if not form.validate_on_submit():
        return _index_page(admin, dashboard_form=form, status=400)
    try:
        name = require_id({"name": form.name.data}, "name", NAME_LENGTH)
        created = dashboards.create_dashboard(admin["tenant"], name, [], copy_of=form.copy_of.data)
    except AppError as exc:
        _show_error(exc, form)
        return _index_page(admin, dashboard_form=form, status=exc.status)
    copied = ""
    if form.copy_of.data is not None:
        count = len(created["tiles"])
        copied = f", with a copy of {count} tile{'' if count == 1 else 's'}"
    flash(f"Created dashboard “{created['name']}”{copied}.", "success")
    return redirect(url_for("admin.dashboard", dashboard_id=created["id"]), 303)


@bp.post("/dashboards/<int:dashboard_id>/rename")
@admin_required
def rename_dashboard(admin, dashboard_id):
    """Rename a dashboard (its version, which counts layout changes, stays)."""
    form = RenameDashboardForm()
    if not form.validate_on_submit():
        return _dashboard_page(admin, dashboard_id, rename_form=form, status=400)
    try:
        name = require_id({"name": form.name.data}, "name", NAME_LENGTH)
        renamed = dashboards.rename_dashboard(admin["tenant"], dashboard_id, name, form.expected_version.data)
    except AppError as exc:
        _show_error(exc, form)
        return _dashboard_page(admin, dashboard_id, rename_form=form, status=exc.status)
    flash(f"Renamed the dashboard to “{renamed['name']}”.", "success")
    return redirect(url_for("admin.dashboard", dashboard_id=dashboard_id), 303)


@bp.route("/dashboards/<int:dashboard_id>/delete", methods=["GET", "POST"])
@admin_required
def delete_dashboard(admin, dashboard_id):
    """Ask for confirmation, naming the entities that will show no dashboard (GET); then delete it (POST)."""
    tenant = admin["tenant"]
    current = dashboards.get_dashboard(tenant, dashboard_id)
    form = VersionedForm(expected_version=current["version"]) if request.method == "GET" else VersionedForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                deleted = dashboards.delete_dashboard(tenant, dashboard_id, form.expected_version.data)
            except AppError as exc:
                _show_error(exc, stale=STALE_DELETE)
                status = exc.status
            else:
                flash(_deleted_message(current, deleted["detached"]), "success")
                return redirect(url_for("admin.index"), 303)
        else:
            flash("That form was not understood; confirm again.", "error")
            status = 400
        form.show_version(current["version"])
    return (
        render_template(
            "admin/delete_dashboard.html",
            admin=admin,
            dashboard=current,
            users=entities.entities_of_dashboard(tenant, dashboard_id),
            form=form,
        ),
        status,
    )


def _deleted_message(dashboard, detached):
    message = f"Deleted dashboard “{dashboard['name']}”."
    if detached:
        message += f" Now showing no dashboard: {', '.join(detached)}."
    return message


# --- entities -----------------------------------------------------------------------------------------------------


def _entity_id_of_request():
    """The entity id the URL names (``?entity_id=``), checked like the REST API's; the tenant is the session's."""
    return require_id(request.args, "entity_id", current_app.config["MAX_ID_LENGTH"])


@bp.post("/entities")
@admin_required
def register_entity(admin):
    """Register an entity (an existing one is updated with what was filled in, as PUT does)."""
    form = EntityForm()
    if not form.validate_on_submit():
        return _index_page(admin, entity_form=form, status=400)
    config = current_app.config
    payload = form.payload()
    try:
        entity, created = entities.register_entity(
            admin["tenant"],
            require_id(payload, "entityId", config["MAX_ID_LENGTH"]),
            require_choice(payload, "entityType", config["ENTITY_TYPES"]),
            optional_text(payload, "name", NAME_LENGTH, default=None),
            payload.get("dashboardId", entities.KEEP),
            max_entities=config["MAX_ENTITIES_PER_TENANT"],
        )
    except AppError as exc:
        if exc.status == 404:
            raise
        if not form.attach_error(exc.message):
            flash(f"Not registered: {exc.message}.", "error")
        return _index_page(admin, entity_form=form, status=exc.status)
    done = "Registered" if created else "Updated the existing"
    flash(f"{done} {entity['entityType']} “{entity['entityId']}”.", "success")
    return redirect(url_for("admin.index"), 303)


@bp.post("/entities/dashboard")
@admin_required
def attach_dashboard(admin):
    """Show the chosen dashboard on an entity, or none; its open live pages follow at once."""
    entity_id = _entity_id_of_request()
    form = EntityDashboardForm()
    if not form.validate_on_submit():
        flash("That dashboard choice was not understood; choose one from the list.", "error")
        return redirect(url_for("admin.index"), 303)
    try:
        entity = entities.attach_dashboard(admin["tenant"], entity_id, form.dashboard_id.data)
    except AppError as exc:
        if exc.status == 404:
            raise
        flash(f"Not saved: {exc.message}.", "error")
        return redirect(url_for("admin.index"), 303)
    shows = f"dashboard #{entity['dashboardId']}" if entity["dashboardId"] is not None else "no dashboard"
    flash(f"“{entity_id}” now shows {shows}.", "success")
    return redirect(url_for("admin.index"), 303)


@bp.route("/entities/delete", methods=["GET", "POST"])
@admin_required
def delete_entity(admin):
    """Ask for confirmation, naming the entity (GET); then delete it and its current values (POST).

    An entity the tenant does not have (UNKNOWN_ENTITY) answers 404, on either.
    """
    tenant = admin["tenant"]
    entity_id = _entity_id_of_request()
    form = PlainForm()
    if request.method == "POST" and form.validate_on_submit():
        entities.delete_entity(tenant, entity_id)
        flash(f"Deleted entity “{entity_id}”.", "success")
        return redirect(url_for("admin.index"), 303)
    entity = entity_to_dict(entities.find_entity(tenant, entity_id))
    dashboard = None
    if entity["dashboardId"] is not None:
        dashboard = dashboards.get_dashboard(tenant, entity["dashboardId"])
    return render_template("admin/delete_entity.html", admin=admin, entity=entity, dashboard=dashboard, form=form)


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


@bp.errorhandler(SQLAlchemyError)
def _database_error(exc):
    """The database is not answering: a page that says so (503, Retry-After), not a 500; logged once per outage.

    The page is rendered without asking who is signed in, which would ask the database again.
    """
    if not is_unavailable(exc):
        log.exception("unhandled error")
        return _error_page(AppError(errors.INTERNAL))
    database_outage().failed("admin", exc)
    error = AppError(
        errors.UNAVAILABLE,
        "The database is not answering right now, so this page cannot be shown or saved. "
        "Nothing you sent was changed. Try again in a moment.",
    )
    page = render_template("admin/error.html", error=error, title="Database unavailable", admin=None)
    return page, 503, {"Retry-After": "1"}


@bp.errorhandler(CSRFError)
def _csrf_error(exc):
    message = (
        f"{exc.description} The form was not sent from this admin page, or it is too old. "
        "Go back, reload the page and try again."
    )
    return _error_page(AppError(errors.VALIDATION_FAILED, message), title="Form refused")
