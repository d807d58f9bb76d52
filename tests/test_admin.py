"""The admin page: its forms in process with Flask's test client, what only a browser shows in headless Chromium.

In process (``admin_client``): the forms are read out of the rendered pages and sent back as a
browser would send them, CSRF token included, so bad input, forged forms, tokens that cannot
sign in, other tenants' dashboards, sign-out and every tile change are checked in milliseconds. In the browser,
against the live server: pages render, changes reach a second page live, drag and drop, the
concurrent-save message, and the development server's one-click sign-in.
"""

import html
import re
from html.parser import HTMLParser

import pytest
from playwright.sync_api import expect

from app.services import admin_sessions
from testkit import flask_cli, mint_token, running_server, server_env, unique
from tests.api.conftest import Api
from tests.browser import AdminPage, DashboardPage
from tests.conftest import app_from_env

# The admin views call the services the REST tests run on both backends; nothing here depends on SQL behaviour.
pytestmark = pytest.mark.backends("sqlite")


# --- reading pages as a browser does -------------------------------------------------------------------------------


class _FormReader(HTMLParser):
    """Collects each form's fields as a browser would submit them: ``{form id: {name: value}}``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = {}
        self._form = None
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._form = self.forms.setdefault(attrs.get("id") or attrs.get("action"), {})
        elif self._form is None:
            return
        elif tag == "input" and "name" in attrs and attrs.get("type") not in ("submit", "button"):
            self._form[attrs["name"]] = attrs.get("value") or ""
        elif tag == "select":
            self._select = attrs["name"]
        elif tag == "option" and self._select is not None:
            # The selected option, else the first one.
            if self._select not in self._form or "selected" in attrs:
                self._form[self._select] = attrs.get("value", "")
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self._form[self._textarea] = ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._form[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def forms_of(response):
    """The forms of a page, by id (or action when they have none), each as ``{field name: value}``."""
    reader = _FormReader()
    reader.feed(response.text)
    return reader.forms


def field_errors(response):
    """The messages shown next to form fields: ``{field name: [message, ...]}``."""
    errors = {}
    for name, message in re.findall(r'<p class="field-error" data-field="([^"]+)">(.*?)</p>', response.text):
        errors.setdefault(name, []).append(html.unescape(message))
    return errors


def flashes(response, category):
    """The text of the page's flash messages of ``category`` (success, error, info)."""
    found = re.findall(rf'<(?:div|p) class="flash flash-{category}"[^>]*>(.*?)</(?:div|p)>', response.text, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split()) for text in found]


def is_sign_in_page(response):
    """True when the page is the sign-in form (no admin session)."""
    return response.status_code == 200 and "/admin/sign-in" in forms_of(response)


def sign_in(client, token):
    """Post ``token`` through the sign-in form of ``/admin``; return the answer, redirects followed."""
    form = forms_of(client.get("/admin"))["/admin/sign-in"]
    return client.post("/admin/sign-in", data={**form, "token": token}, follow_redirects=True)


def session_id(client):
    """The admin session id in the client's session cookie, or None."""
    with client.session_transaction() as session:
        return session.get("admin")


def signed_in_session(client):
    """The live admin session the client's cookie names ``{tenant, subject, expires_at}``, or None."""
    with client.application.app_context():
        return admin_sessions.admin_session(session_id(client))


# --- in process ----------------------------------------------------------------------------------------------------


@pytest.fixture
def rest(app, tenant):
    """REST client (admin+ingest) of this test's tenant, with a cookie jar of its own."""
    return Api(app.test_client(), mint_token(tenant, roles=("admin", "ingest")))


@pytest.fixture
def dashboard(rest):
    """A two-tile dashboard of this test's tenant, used by an event entity."""
    created = rest.create_dashboard()
    rest.put_entity(unique("event"), "event", created["id"])
    return created


@pytest.fixture
def admin_client(client, tenant):
    """The test client, signed in on the admin page with an admin token of this test's tenant."""
    signed_in = sign_in(client, mint_token(tenant, roles=("admin",)))
    assert signed_in.status_code == 200 and signed_in_session(client)["tenant"] == tenant
    return client


def add_tile_form(client, dashboard_id):
    """The add-tile form of the dashboard's page, as the page fills it in."""
    page = client.get(f"/admin/dashboards/{dashboard_id}")
    assert page.status_code == 200, page.text
    return forms_of(page)["add-tile"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"title": "   ", "metric_name": "queue"}, "title", "Title must not be empty"),
        ({"title": "x" * 201, "metric_name": "queue"}, "title", "Title must be at most 200 characters"),
        ({"title": "Queue", "metric_name": ""}, "metric_name", "Metric name must not be empty"),
        ({"title": "Queue", "metric_name": "queue", "critical": "lots"}, "critical", "Not a valid float value"),
        ({"title": "Queue", "metric_name": "queue", "warning": "inf"}, "warning", "Warning at must be a finite number"),
    ],
    ids=["blank-title", "long-title", "no-metric", "threshold-not-a-number", "infinite-threshold"],
)
def test_bad_tile_input_shows_its_error_and_saves_nothing(admin_client, rest, dashboard, fields, field, message):
    # Browsers keep letters out of a number input; an old browser or a script sends them anyway.
    form = {**add_tile_form(admin_client, dashboard["id"]), **fields}

    response = admin_client.post(f"/admin/dashboards/{dashboard['id']}/tiles", data=form)

    assert response.status_code == 400
    assert any(message in shown for shown in field_errors(response)[field]), field_errors(response)
    assert forms_of(response)["add-tile"]["metric_name"] == fields["metric_name"]  # what was typed is kept
    assert rest.dashboard(dashboard["id"]) == dashboard


@pytest.mark.parametrize("csrf", [None, "forged-token", "IjBhYmMi.ZzZz.forged"], ids=["missing", "garbage", "forged"])
def test_form_without_a_valid_csrf_token_is_refused(admin_client, rest, dashboard, csrf):
    form = {"expected_version": str(dashboard["version"]), "title": "Sneaky", "metric_name": "x", "kind": "number"}
    if csrf is not None:
        form["csrf_token"] = csrf
    # Sent with the admin's session cookie, as a forged form posted from another site would be.
    response = admin_client.post(f"/admin/dashboards/{dashboard['id']}/tiles", data=form)
    assert response.status_code == 400
    assert "CSRF" in response.text
    assert rest.dashboard(dashboard["id"]) == dashboard


def test_csrf_token_removed_from_the_page_form_is_refused(admin_client, rest, dashboard):
    form = {**add_tile_form(admin_client, dashboard["id"]), "title": "Sneaky", "metric_name": "x"}
    del form["csrf_token"]

    response = admin_client.post(f"/admin/dashboards/{dashboard['id']}/tiles", data=form)

    assert response.status_code == 400
    assert 'id="error-page"' in response.text
    assert any("The CSRF token is missing" in shown for shown in flashes(response, "error")), response.text
    assert rest.dashboard(dashboard["id"]) == dashboard


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        (lambda tenant: mint_token(tenant, roles=("ingest",)), 403, "does not have the admin role"),
        (lambda tenant: mint_token(tenant), 403, "does not have the admin role"),
        (lambda tenant: mint_token(tenant, roles=("admin",), ttl=-3600), 401, "Token expired"),
        (lambda tenant: "not-a-jwt", 401, "Invalid token"),
    ],
    ids=["ingest-only", "no-roles", "expired-admin", "garbage"],
)
def test_token_that_is_not_a_valid_admin_cannot_sign_in(client, tenant, dashboard, token, status, message):
    response = sign_in(client, token(tenant))

    assert response.status_code == status
    assert any(message in shown for shown in flashes(response, "error")), response.text
    assert signed_in_session(client) is None
    assert is_sign_in_page(client.get("/admin"))
    # Admin pages send a visitor without a session to the sign-in page.
    refused = client.get(f"/admin/dashboards/{dashboard['id']}")
    assert refused.status_code == 302 and refused.headers["Location"] == "/admin"


def test_another_tenants_dashboard_is_not_found(admin_client, app):
    foreign = Api(app.test_client(), mint_token(unique("someone-else"), roles=("admin",))).create_dashboard("Not yours")

    for path in (f"/admin/dashboards/{foreign['id']}", f"/admin/dashboards/{foreign['id']}/activity"):
        response = admin_client.get(path)
        assert response.status_code == 404
        assert 'id="error-page"' in response.text
        assert f"unknown dashboard {foreign['id']}" in flashes(response, "error")
        assert "Not yours" not in response.text


def test_sign_out_ends_the_session(admin_client, dashboard):
    page = admin_client.get("/admin")
    sign_out = forms_of(page)["/admin/sign-out"]

    signed_out = admin_client.post("/admin/sign-out", data=sign_out, follow_redirects=True)

    assert "Signed out." in flashes(signed_out, "info")
    assert is_sign_in_page(signed_out)
    assert signed_in_session(admin_client) is None
    refused = admin_client.get(f"/admin/dashboards/{dashboard['id']}", follow_redirects=True)
    assert is_sign_in_page(refused)


def test_only_a_request_with_the_session_cookie_builds_its_signer(app, admin_client, rest, monkeypatch):
    # extensions.CookieSessions: REST requests never carry the cookie; a signed-in page does, and is checked.
    built = []
    build = type(app.session_interface).get_signing_serializer
    monkeypatch.setattr(
        type(app.session_interface), "get_signing_serializer", lambda s, a: built.append(1) or build(s, a)
    )
    rest.call("GET", "/dashboards", 200)
    assert built == []
    assert admin_client.get("/admin").status_code == 200 and built
    tampered = copy_of_cookie(admin_client)
    tampered.set_cookie(app.config["SESSION_COOKIE_NAME"], "not-signed")
    assert is_sign_in_page(tampered.get("/admin", follow_redirects=True))


def copy_of_cookie(client):
    """A new test client of the same app carrying a copy of ``client``'s session cookie (as an attacker would)."""
    copy = client.application.test_client()
    cookie = client.get_cookie(client.application.config["SESSION_COOKIE_NAME"])
    copy.set_cookie(cookie.key, cookie.value)
    return copy


def test_a_session_cookie_copied_before_sign_out_is_refused_after_it(admin_client, dashboard):
    stolen = copy_of_cookie(admin_client)
    assert stolen.get(f"/admin/dashboards/{dashboard['id']}").status_code == 200  # the copy works while signed in
    admin_client.post("/admin/sign-out", data=forms_of(admin_client.get("/admin"))["/admin/sign-out"])
    refused = stolen.get(f"/admin/dashboards/{dashboard['id']}", follow_redirects=True)
    assert is_sign_in_page(refused)


def test_signing_in_again_ends_every_copy_of_the_earlier_cookie_but_not_other_browsers(
    admin_client, tenant, dashboard, app
):
    earlier = copy_of_cookie(admin_client)
    elsewhere = app.test_client()  # the same admin in another browser
    assert sign_in(elsewhere, mint_token(tenant, roles=("admin",))).status_code == 200
    csrf = forms_of(admin_client.get("/admin"))["/admin/sign-out"]  # the session's CSRF token
    again = admin_client.post("/admin/sign-in", data={**csrf, "token": mint_token(tenant, roles=("admin",))})
    assert again.status_code == 303
    assert is_sign_in_page(earlier.get(f"/admin/dashboards/{dashboard['id']}", follow_redirects=True))
    assert admin_client.get(f"/admin/dashboards/{dashboard['id']}").status_code == 200
    assert elsewhere.get(f"/admin/dashboards/{dashboard['id']}").status_code == 200


def test_no_dev_sign_in_or_prefilled_token_without_dev_mode(client):
    sign_in_page = client.get("/admin")
    assert is_sign_in_page(sign_in_page)
    assert 'id="dev-sign-in"' not in sign_in_page.text
    assert client.post("/admin/dev-sign-in").status_code == 400  # no CSRF token, no session
    viewer = client.get(f"/dashboards/event/{unique('event')}")
    assert viewer.status_code == 200
    assert forms_of(viewer)["token-form"]["token"] == ""
    assert 'id="dev-token-note"' not in viewer.text


# --- changes made on the page, in process --------------------------------------------------------------------------


def dashboard_page(client, dashboard_id):
    """The admin page of one dashboard (asserts 200)."""
    page = client.get(f"/admin/dashboards/{dashboard_id}")
    assert page.status_code == 200, page.text
    return page


def tile_titles(page):
    """The tile titles of a dashboard's admin page, in order."""
    return [html.unescape(t) for t in re.findall(r'<strong class="tile-title">(.*?)</strong>', page.text)]


def test_index_lists_the_tenants_dashboards_and_entities(admin_client, rest, dashboard):
    entity_id = unique("venue")
    rest.put_entity(entity_id, "venue", dashboard["id"], name="Arena")
    other = Api(rest.client, mint_token(unique("other"), roles=("admin",))).create_dashboard("Theirs")

    page = admin_client.get("/admin")

    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    assert f'href="/admin/dashboards/{dashboard["id"]}">Overview</a>' in page.text
    assert f"<code>{entity_id}</code>" in page.text
    assert f"/admin/dashboards/{other['id']}" not in page.text


def test_add_tile_from_the_page(admin_client, rest, dashboard):
    form = {**add_tile_form(admin_client, dashboard["id"]), "title": "Queue", "metric_name": "queue"}
    form.update(kind="gauge", unit="min", warning="5", critical="10")

    added = admin_client.post(f"/admin/dashboards/{dashboard['id']}/tiles", data=form, follow_redirects=True)

    assert added.status_code == 200
    assert "Added tile \u201cQueue\u201d." in flashes(added, "success")
    assert tile_titles(added) == ["Tickets", "Revenue", "Queue"]
    saved = rest.dashboard(dashboard["id"])
    assert saved["version"] == dashboard["version"] + 1
    assert saved["tiles"][2] | {"id": None} == {
        "id": None,
        "position": 2,
        "title": "Queue",
        "metricName": "queue",
        "kind": "gauge",
        "unit": "min",
        "thresholds": {"warning": 5.0, "critical": 10.0},
    }


def test_edit_tile_shows_it_and_keeps_other_thresholds(admin_client, rest, dashboard):
    tile = dashboard["tiles"][1]
    path = f"/admin/dashboards/{dashboard['id']}/tiles/{tile['id']}"
    rest.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"thresholds": {"low": 1}})

    form = forms_of(admin_client.get(f"{path}/edit"))["edit-tile"]
    assert {k: form[k] for k in ("title", "metric_name", "kind", "unit", "expected_version")} == {
        "title": "Revenue",
        "metric_name": "revenue",
        "kind": "number",
        "unit": "EUR",
        "expected_version": "2",
    }
    saved = admin_client.post(f"{path}/edit", data={**form, "title": "Takings", "warning": "100"})

    assert saved.status_code == 303 and saved.headers["Location"] == f"/admin/dashboards/{dashboard['id']}"
    assert "Saved tile \u201cTakings\u201d." in flashes(admin_client.get(saved.headers["Location"]), "success")
    after = rest.dashboard(dashboard["id"])
    assert after["tiles"][1] == {**tile, "title": "Takings", "thresholds": {"low": 1.0, "warning": 100.0}}
    assert after["version"] == 3


def test_stale_edit_is_refused_and_keeps_what_was_typed(admin_client, rest, dashboard):
    tile = dashboard["tiles"][0]
    path = f"/admin/dashboards/{dashboard['id']}/tiles/{tile['id']}/edit"
    form = forms_of(admin_client.get(path))["edit-tile"]
    rest.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"title": "Tickets sold"})

    refused = admin_client.post(path, data={**form, "title": "Tickets left"})

    assert refused.status_code == 409
    assert any("someone else changed this dashboard" in shown for shown in flashes(refused, "error"))
    assert forms_of(refused)["edit-tile"]["title"] == "Tickets left"
    assert rest.dashboard(dashboard["id"])["tiles"][0]["title"] == "Tickets sold"


@pytest.mark.parametrize("form_id", ["edit-tile", "add-tile"])
def test_saving_again_after_a_refused_save_is_accepted(admin_client, rest, dashboard, form_id):
    tile = dashboard["tiles"][0]
    page = f"/admin/dashboards/{dashboard['id']}/tiles/{tile['id']}/edit" if form_id == "edit-tile" else None
    path = page or f"/admin/dashboards/{dashboard['id']}/tiles"
    form = forms_of(admin_client.get(page or f"/admin/dashboards/{dashboard['id']}"))[form_id]
    form.update(title="Mine", metric_name="mine")
    rest.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"unit": "x"})
    refused = admin_client.post(path, data=form)
    assert refused.status_code == 409

    # The admin has seen the current tiles and saves the form shown again.
    again = admin_client.post(path, data=forms_of(refused)[form_id])

    assert again.status_code == 303, flashes(again, "error")
    assert rest.dashboard(dashboard["id"])["version"] == 3


def test_unknown_tile_pages_are_not_found(admin_client, dashboard):
    for path in ("edit", "remove"):
        response = admin_client.get(f"/admin/dashboards/{dashboard['id']}/tiles/999999999/{path}")
        assert response.status_code == 404
        assert "unknown tile 999999999" in flashes(response, "error")


def test_remove_tile_asks_first(admin_client, rest, dashboard):
    tile = dashboard["tiles"][0]
    path = f"/admin/dashboards/{dashboard['id']}/tiles/{tile['id']}/remove"
    confirm = admin_client.get(path)
    assert confirm.status_code == 200
    assert 'id="confirm-remove"' in confirm.text
    assert rest.dashboard(dashboard["id"]) == dashboard

    removed = admin_client.post(path, data=forms_of(confirm)[path], follow_redirects=True)

    assert "Removed tile \u201cTickets\u201d." in flashes(removed, "success")
    assert tile_titles(removed) == ["Revenue"]
    assert [t["title"] for t in rest.dashboard(dashboard["id"])["tiles"]] == ["Revenue"]


def test_stale_remove_is_refused(admin_client, rest, dashboard):
    tile = dashboard["tiles"][0]
    path = f"/admin/dashboards/{dashboard['id']}/tiles/{tile['id']}/remove"
    form = forms_of(admin_client.get(path))[path]
    rest.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"unit": "x"})

    refused = admin_client.post(path, data=form, follow_redirects=True)

    assert any("someone else changed this dashboard" in shown for shown in flashes(refused, "error"))
    assert tile_titles(refused) == ["Tickets", "Revenue"]


@pytest.mark.parametrize(
    ("tile", "direction", "titles"),
    [(1, "up", ["Revenue", "Tickets"]), (0, "down", ["Revenue", "Tickets"]), (0, "up", ["Tickets", "Revenue"])],
    ids=["second-up", "first-down", "first-up-stays"],
)
def test_move_tile(admin_client, rest, dashboard, tile, direction, titles):
    tile_id = dashboard["tiles"][tile]["id"]
    path = f"/admin/dashboards/{dashboard['id']}/tiles/{tile_id}/move"
    form = {**forms_of(dashboard_page(admin_client, dashboard["id"]))[path], "direction": direction}

    moved = admin_client.post(path, data=form)

    assert moved.status_code == 303
    assert tile_titles(dashboard_page(admin_client, dashboard["id"])) == titles
    assert [t["title"] for t in rest.dashboard(dashboard["id"])["tiles"]] == titles


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"direction": "sideways"}, "That move was not understood"),
        ({"expected_version": "0"}, "someone else changed this dashboard"),
    ],
    ids=["unknown-direction", "stale"],
)
def test_move_that_cannot_be_made_changes_nothing(admin_client, rest, dashboard, change, message):
    path = f"/admin/dashboards/{dashboard['id']}/tiles/{dashboard['tiles'][1]['id']}/move"
    form = {**forms_of(dashboard_page(admin_client, dashboard["id"]))[path], "direction": "up", **change}

    refused = admin_client.post(path, data=form, follow_redirects=True)

    assert any(message in shown for shown in flashes(refused, "error")), refused.text
    assert rest.dashboard(dashboard["id"]) == dashboard


@pytest.mark.parametrize(
    ("tile_ids", "message"),
    [
        (lambda a, b: f"{b},{a}", None),
        (lambda a, b: f"{a},x", "That order was not understood"),
        (lambda a, b: f"{a}", "tileIds must list every tile"),
    ],
    ids=["reversed", "not-ids", "missing-tile"],
)
def test_reorder_form(admin_client, rest, dashboard, tile_ids, message):
    a, b = (t["id"] for t in dashboard["tiles"])
    form = {**forms_of(dashboard_page(admin_client, dashboard["id"]))["reorder-form"], "tile_ids": tile_ids(a, b)}

    answer = admin_client.post(f"/admin/dashboards/{dashboard['id']}/order", data=form, follow_redirects=True)

    titles = [t["title"] for t in rest.dashboard(dashboard["id"])["tiles"]]
    if message is None:
        assert titles == ["Revenue", "Tickets"]
        assert tile_titles(answer) == ["Revenue", "Tickets"]
    else:
        assert any(message in shown for shown in flashes(answer, "error")), answer.text
        assert titles == ["Tickets", "Revenue"]


def test_activity_names_the_entities_that_show_the_dashboard(admin_client, rest, dashboard):
    entity_id = unique("event")
    rest.put_entity(entity_id, "event", dashboard["id"], name="Festival")
    rest.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{dashboard['tiles'][0]['id']}", 200, json={"unit": "x"})

    activity = admin_client.get(f"/admin/dashboards/{dashboard['id']}/activity")

    assert activity.status_code == 200
    assert activity.json["version"] == 2
    assert {"entityId": entity_id, "entityType": "event", "name": "Festival", "dashboardId": dashboard["id"]} in (
        activity.json["entities"]
    )
    # Nothing turns changes into events in this process: no sockets, nothing sent.
    assert activity.json["subscribers"] == 0
    assert activity.json["events"] == []
    assert (activity.json["workers"], activity.json["scope"]) == (1, "process")
    assert activity.json["coverage"] == "Counted in this server process only."


# --- in the browser ------------------------------------------------------------------------------------------------


@pytest.fixture
def admin(live_server, tenant, new_page):
    """An admin page signed in with an admin token of this test's tenant."""
    return AdminPage(new_page(), live_server.url).sign_in(mint_token(tenant, roles=("admin",)))


@pytest.fixture
def viewer(live_server, tenant, entity, new_page):
    """A second page showing the entity's live dashboard with a plain (no role) token."""
    entity_id, _ = entity
    page = DashboardPage(new_page(), live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    page.mark()
    return page


def test_admin_lists_entities_and_dashboards_until_signed_out(entity, admin):
    entity_id, dashboard = entity
    expect(admin.page.locator("#dashboards")).to_contain_text(dashboard["name"])
    expect(admin.page.locator("#entities")).to_contain_text(entity_id)
    cookie = next(c for c in admin.page.context.cookies() if c["name"] == "analytics_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    headers = admin.page.request.get(admin.base + "/admin").headers
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"

    admin.page.get_by_role("button", name="Sign out").click()
    expect(admin.flash("info")).to_contain_text("Signed out")
    admin.page.goto(f"{admin.base}/admin/dashboards/{dashboard['id']}")
    expect(admin.page.get_by_role("button", name="Sign in")).to_be_visible()


def test_add_edit_reorder_remove_appear_live_in_a_second_page(admin, viewer, entity, admin_api):
    _, dashboard = entity
    expect(viewer.titles).to_have_text(["Tickets", "Revenue"])
    admin.open_dashboard(dashboard["id"])
    expect(admin.page.locator("#subscriber-count")).to_have_text("1")

    admin.add_tile(title="Occupancy", metric="occupancy", kind="gauge", unit="%", warning=80, critical=95)
    expect(admin.flash("success")).to_contain_text("Added tile “Occupancy”")
    expect(admin.tile_titles()).to_have_text(["Tickets", "Revenue", "Occupancy"])
    expect(viewer.titles).to_have_text(["Tickets", "Revenue", "Occupancy"])
    expect(viewer.tile("Occupancy")).to_have_class(re.compile(r"\bkind-gauge\b"))

    admin.edit_tile("Revenue", title="Takings", unit="USD")
    expect(admin.flash("success")).to_contain_text("Saved tile “Takings”")
    expect(viewer.titles).to_have_text(["Tickets", "Takings", "Occupancy"])

    admin.move("Occupancy", "up")
    expect(admin.tile_titles()).to_have_text(["Tickets", "Occupancy", "Takings"])
    expect(viewer.titles).to_have_text(["Tickets", "Occupancy", "Takings"])

    admin.remove("Tickets")
    expect(admin.flash("success")).to_contain_text("Removed tile “Tickets”")
    expect(viewer.titles).to_have_text(["Occupancy", "Takings"])

    assert viewer.was_not_reloaded()
    saved = admin_api.dashboard(dashboard["id"])
    assert [t["title"] for t in saved["tiles"]] == ["Occupancy", "Takings"]
    assert saved["tiles"][0]["thresholds"] == {"warning": 80.0, "critical": 95.0}
    assert saved["version"] == dashboard["version"] + 4
    # The activity panel lists what the viewer was sent (it refreshes itself every 2 s).
    expect(admin.page.locator("#recent-events")).to_contain_text("dashboard:update")
    expect(admin.page.locator("#recent-events")).to_contain_text("dashboard:initial")


def test_drag_and_drop_reorders(admin, viewer, entity):
    _, dashboard = entity
    admin.open_dashboard(dashboard["id"])
    rows = admin.page.locator("#tile-list .tile-row")
    rows.nth(1).drag_to(rows.nth(0), target_position={"x": 20, "y": 2})
    expect(admin.tile_titles()).to_have_text(["Revenue", "Tickets"])
    expect(viewer.titles).to_have_text(["Revenue", "Tickets"])


def test_bad_tile_input_is_shown_next_to_its_field(admin, entity, admin_api):
    _, dashboard = entity
    admin.open_dashboard(dashboard["id"])
    admin.add_tile(title="   ", metric="queue")
    expect(admin.page.locator('.field-error[data-field="title"]')).to_contain_text("Title must not be empty")
    expect(admin.page.locator("#add-tile").get_by_label("Metric name")).to_have_value("queue")
    assert admin_api.dashboard(dashboard["id"])["version"] == dashboard["version"]


def test_garbage_token_is_refused_and_admin_pages_need_a_session(live_server, entity, new_page):
    _, dashboard = entity
    admin = AdminPage(new_page(), live_server.url).sign_in("not-a-jwt")
    expect(admin.page.locator(".flash-error")).to_contain_text("Invalid token")
    admin.page.goto(f"{live_server.url}/admin/dashboards/{dashboard['id']}")
    expect(admin.page).to_have_url(f"{live_server.url}/admin")
    expect(admin.page.get_by_role("button", name="Sign in")).to_be_visible()


def test_second_concurrent_save_is_refused_with_a_clear_message(live_server, tenant, entity, new_page, admin_api):
    _, dashboard = entity
    token = mint_token(tenant, roles=("admin",))
    alice = AdminPage(new_page(), live_server.url).sign_in(token).open_dashboard(dashboard["id"])
    bob = AdminPage(new_page(), live_server.url).sign_in(token).open_dashboard(dashboard["id"])
    alice.page.get_by_role("link", name="Edit Tickets", exact=True).click()
    bob.page.get_by_role("link", name="Edit Tickets", exact=True).click()

    alice.fill_tile("#edit-tile", title="Tickets sold")
    alice.page.get_by_role("button", name="Save tile").click()
    expect(alice.flash("success")).to_be_visible()

    bob.fill_tile("#edit-tile", title="Tickets left")
    bob.page.get_by_role("button", name="Save tile").click()
    expect(bob.flash("error")).to_contain_text("someone else changed this dashboard")
    expect(bob.page.get_by_label("Title", exact=True)).to_have_value("Tickets left")  # the input is kept

    saved = admin_api.dashboard(dashboard["id"])
    assert saved["tiles"][0]["title"] == "Tickets sold"
    assert saved["version"] == dashboard["version"] + 1

    # A stale move from a page opened before both edits is refused too.
    bob.open_dashboard(dashboard["id"])
    alice.open_dashboard(dashboard["id"])
    alice.move("Revenue", "up")
    expect(alice.tile_titles()).to_have_text(["Revenue", "Tickets sold"])
    bob.move("Revenue", "up")
    expect(bob.flash("error")).to_contain_text("someone else changed this dashboard")
    assert [t["title"] for t in admin_api.dashboard(dashboard["id"])["tiles"]] == ["Revenue", "Tickets sold"]


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """A development server: ADMIN_DEV_LOGIN=1 and the demo data."""
    with running_server(tmp_path_factory.mktemp("dev"), ADMIN_DEV_LOGIN="1") as server:
        result = flask_cli(server.env, "seed-demo")
        assert result.returncode == 0, result.stderr
        yield server


def test_dev_sign_in_and_prefilled_token_on_a_dev_server(dev_server, new_page):
    page = new_page()
    page.goto(dev_server.url + "/admin")
    page.locator("#dev-sign-in").click()
    expect(page.get_by_test_id("tenant")).to_have_text("demo")
    expect(page.locator("#dashboards")).to_contain_text("Event overview")

    viewer = DashboardPage(new_page(), dev_server.url, "event-uuid-123").open().wait_ready()
    expect(viewer.titles).to_have_text(["Tickets sold", "Check-ins", "Occupancy", "Revenue"])
    expect(viewer.page.locator("#dev-token-note")).to_be_attached()
    expect(viewer.page.locator("#token")).to_have_value(re.compile(r"^eyJ"))


def test_failed_sign_ins_are_limited_per_address_and_successes_are_not_counted(tmp_path, app, tenant):
    limited = app_from_env(
        server_env(tmp_path, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], ADMIN_SIGN_IN_RATE_LIMIT="3/minute")
    )
    good = mint_token(tenant, roles=("admin",))
    for _ in range(4):  # successes do not count
        assert sign_in(limited.test_client(), good).status_code == 200
    attacker = limited.test_client()
    for attempt in range(3):
        assert sign_in(attacker, f"guess-{attempt}").status_code == 401
    refused = sign_in(attacker, good)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    elsewhere = limited.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    assert sign_in(elsewhere, good).status_code == 200  # another address is not held up
