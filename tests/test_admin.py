"""The admin page in headless Chromium against the live server: sign-in, tile changes seen live, refusals."""

import re

import pytest
from playwright.sync_api import expect

from testkit import flask_cli, mint_token, running_server
from tests.browser import AdminPage, DashboardPage


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


def test_admin_lists_entities_and_dashboards(entity, admin):
    entity_id, dashboard = entity
    expect(admin.page.locator("#dashboards")).to_contain_text(dashboard["name"])
    expect(admin.page.locator("#entities")).to_contain_text(entity_id)
    cookie = next(c for c in admin.page.context.cookies() if c["name"] == "analytics_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    headers = admin.page.request.get(admin.base + "/admin").headers
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"


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


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"title": "   ", "metric": "queue"}, "title", "Title must not be empty"),
        ({"title": "x" * 201, "metric": "queue"}, "title", "Title must be at most 200 characters"),
        ({"title": "Queue", "metric": ""}, "metric_name", "Metric name must not be empty"),
        ({"title": "Queue", "metric": "queue", "critical": "lots"}, "critical", "Not a valid float value"),
        ({"title": "Queue", "metric": "queue", "warning": "inf"}, "warning", "Warning at must be a finite number"),
    ],
    ids=["blank-title", "long-title", "no-metric", "threshold-not-a-number", "infinite-threshold"],
)
def test_bad_tile_input_shows_its_error_and_saves_nothing(admin, entity, admin_api, fields, field, message):
    _, dashboard = entity
    admin.open_dashboard(dashboard["id"])
    # Browsers keep letters out of a number input; an old browser or a script would send them anyway.
    admin.page.locator("#add-tile input[type=number]").evaluate_all("inputs => inputs.forEach(i => i.type = 'text')")
    admin.add_tile(**fields)
    expect(admin.page.locator(f'.field-error[data-field="{field}"]')).to_contain_text(message)
    expect(admin.page.locator("#add-tile").get_by_label("Metric name")).to_have_value(fields["metric"])
    assert admin_api.dashboard(dashboard["id"])["version"] == dashboard["version"]


@pytest.mark.parametrize("csrf", [None, "forged-token", "IjBhYmMi.ZzZz.forged"], ids=["missing", "garbage", "forged"])
def test_form_without_a_valid_csrf_token_is_refused(admin, entity, admin_api, csrf):
    _, dashboard = entity
    admin.open_dashboard(dashboard["id"])
    form = {"expected_version": str(dashboard["version"]), "title": "Sneaky", "metric_name": "x", "kind": "number"}
    if csrf is not None:
        form["csrf_token"] = csrf
    # The browser context's own request client sends the admin's session cookie, as a forged form post would.
    response = admin.page.request.post(f"{admin.base}/admin/dashboards/{dashboard['id']}/tiles", form=form)
    assert response.status == 400
    assert "CSRF" in response.text()
    assert admin_api.dashboard(dashboard["id"])["version"] == dashboard["version"]


def test_csrf_token_removed_from_the_page_form_is_refused(admin, entity, admin_api):
    _, dashboard = entity
    admin.open_dashboard(dashboard["id"])
    admin.page.locator('#add-tile input[name="csrf_token"]').evaluate("input => input.remove()")
    admin.add_tile(title="Sneaky", metric="x")
    expect(admin.page.locator("#error-page")).to_contain_text("The CSRF token is missing")
    assert admin_api.dashboard(dashboard["id"])["version"] == dashboard["version"]


@pytest.mark.parametrize(
    ("roles", "ttl", "message"),
    [
        (("ingest",), 3600, "does not have the admin role"),
        ((), 3600, "does not have the admin role"),
        (("admin",), -3600, "Token expired"),
    ],
    ids=["ingest-only", "no-roles", "expired-admin"],
)
def test_token_that_is_not_a_valid_admin_cannot_sign_in(live_server, tenant, new_page, roles, ttl, message):
    admin = AdminPage(new_page(), live_server.url).sign_in(mint_token(tenant, roles=roles, ttl=ttl))
    expect(admin.page.locator(".flash-error")).to_contain_text(message)
    admin.page.goto(f"{live_server.url}/admin")
    expect(admin.page.get_by_role("button", name="Sign in")).to_be_visible()
    assert not [c for c in admin.page.context.cookies() if c["name"] == "analytics_admin" and "admin" in c["value"]]


def test_garbage_token_is_refused_and_admin_pages_need_a_session(live_server, entity, new_page):
    _, dashboard = entity
    admin = AdminPage(new_page(), live_server.url).sign_in("not-a-jwt")
    expect(admin.page.locator(".flash-error")).to_contain_text("Invalid token")
    admin.page.goto(f"{live_server.url}/admin/dashboards/{dashboard['id']}")
    expect(admin.page).to_have_url(f"{live_server.url}/admin")
    expect(admin.page.get_by_role("button", name="Sign in")).to_be_visible()


def test_another_tenants_dashboard_is_not_found(admin, live_server, admin_api):
    other = admin_api.__class__(live_server.url, mint_token("someone-else-" + admin.page.url[-6:], roles=("admin",)))
    foreign = other.create_dashboard(name="Not yours")
    response = admin.page.goto(f"{live_server.url}/admin/dashboards/{foreign['id']}")
    assert response.status == 404
    expect(admin.page.locator("#error-page")).to_contain_text(f"unknown dashboard {foreign['id']}")


def test_sign_out_ends_the_session(admin, entity):
    _, dashboard = entity
    admin.page.get_by_role("button", name="Sign out").click()
    expect(admin.flash("info")).to_contain_text("Signed out")
    admin.page.goto(f"{admin.base}/admin/dashboards/{dashboard['id']}")
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


def test_no_dev_sign_in_or_prefilled_token_without_dev_mode(live_server, entity, new_page):
    entity_id, _ = entity
    page = new_page()
    page.goto(live_server.url + "/admin")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#dev-sign-in")).to_have_count(0)
    assert page.request.post(live_server.url + "/admin/dev-sign-in").status == 400  # no CSRF token, no session
    page.goto(f"{live_server.url}/dashboards/event/{entity_id}")
    expect(page.locator("#token")).to_have_value("")
    expect(page.locator("#dev-token-note")).to_have_count(0)
