"""The admin dashboard page's sparklines: recent values of every tile's metric for one entity, as inline SVG.

In process: the page is read as HTML. The history itself (buckets, steps, the current value
as the last point) is checked in tests/test_chart_history.py and tests/api/test_history.py;
here, that each tile draws it with one polyline point per point, for the right entity of the
right tenant.
"""

import html
import re

import pytest
from playwright.sync_api import expect

from app.admin.sparklines import HEIGHT, MARGIN, WIDTH, duration, metric_value, sparkline
from testkit import mint_token, unique
from tests.api.conftest import Api
from tests.browser import AdminPage
from tests.test_admin import sign_in, signed_in_session
from tests.test_dashboard_page import write_minutes

pytestmark = pytest.mark.backends("sqlite")

TILES = [
    {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
    {"title": "Check-ins", "metricName": "checkIns", "kind": "line", "unit": "/min"},
    {"title": "Occupancy", "metricName": "occupancy", "kind": "gauge", "unit": "%"},
]


@pytest.fixture
def rest(app, tenant):
    """REST client (admin+ingest) of this test's tenant."""
    return Api(app.test_client(), mint_token(tenant, roles=("admin", "ingest")))


@pytest.fixture
def admin_client(client, tenant):
    """The test client, signed in on the admin page as admin of this test's tenant."""
    assert sign_in(client, mint_token(tenant, roles=("admin",))).status_code == 200
    assert signed_in_session(client)["tenant"] == tenant
    return client


def sparklines_of(page):
    """``{metricName: (data-points, [(x, y), ...] of the polyline, current value text)}`` of a dashboard page."""
    found = {}
    rows = re.findall(r'<div class="sparkline" data-metric="([^"]*)" data-points="(\d+)">(.*?)</div>', page.text, re.S)
    for metric, count, inner in rows:
        line = re.search(r'<polyline points="([^"]*)"', inner)
        points = [tuple(map(float, p.split(","))) for p in line.group(1).split()] if line else []
        last = re.search(r'<span class="sparkline-last"[^>]*>(.*?)</span>', inner)
        found[html.unescape(metric)] = (int(count), points, html.unescape(last.group(1)) if last else None)
    return found


def shows_number(page, number):
    """Whether the page shows `number` on its own, not inside an id such as `event-3b6805558a`."""
    return re.search(rf"\b{number}\b", page.text) is not None


def page_of(client, dashboard_id, **query):
    return client.get(f"/admin/dashboards/{dashboard_id}", query_string=query)


@pytest.fixture
def watched(rest):
    """A dashboard of three tiles shown by two entities with different values: ``(dashboard, first, second)``."""
    dashboard = rest.create_dashboard("Sparks", TILES)
    first, second = sorted(unique("event") for _ in range(2))
    for entity_id in (first, second):
        rest.put_entity(entity_id, "event", dashboard["id"], name=f"Name of {entity_id}")
    write_minutes(rest, first, "checkIns", [10, 14, 9, 20, 12])
    write_minutes(rest, first, "ticketsSold", [1000, 1200, 1234])
    write_minutes(rest, second, "checkIns", [3, 4])
    return dashboard, first, second


def test_every_tile_draws_the_first_entitys_history_one_point_per_value(admin_client, watched):
    dashboard, first, _ = watched

    page = page_of(admin_client, dashboard["id"])

    assert page.status_code == 200
    lines = sparklines_of(page)
    assert set(lines) == {"ticketsSold", "checkIns", "occupancy"}  # every tile kind, not only line tiles
    count, points, last = lines["checkIns"]
    assert count == len(points) == 5
    assert last == "12/min"
    xs = [x for x, _ in points]
    assert xs == sorted(xs) and xs[0] == 0 and xs[-1] == WIDTH
    ys = [y for _, y in points]  # 20 is the highest (top), 9 the lowest (bottom)
    assert ys[3] == MARGIN and ys[2] == HEIGHT - MARGIN
    assert lines["ticketsSold"][0] == len(lines["ticketsSold"][1]) == 3
    assert lines["ticketsSold"][2] == "1,234"
    assert lines["occupancy"] == (0, [], None)  # no values: no polyline
    assert f'<option value="{first}" selected>' in page.text
    assert f'href="/admin/dashboards/{dashboard["id"]}" id="refresh"' in page.text
    assert "Values of the last 1 h for" in page.text


def test_entity_in_the_query_string_switches_the_sparklines(admin_client, watched):
    dashboard, _, second = watched

    page = page_of(admin_client, dashboard["id"], entity=second)

    assert page.status_code == 200
    lines = sparklines_of(page)
    assert lines["checkIns"][0] == len(lines["checkIns"][1]) == 2
    assert lines["checkIns"][2] == "4/min"
    assert lines["ticketsSold"][0] == 0
    assert f'<option value="{second}" selected>' in page.text
    assert f'href="/admin/dashboards/{dashboard["id"]}?entity={second}" id="refresh"' in page.text


def test_the_same_entity_id_of_another_tenant_never_shows(admin_client, app, watched):
    dashboard, first, _ = watched
    theirs = Api(app.test_client(), mint_token(unique("other"), roles=("admin", "ingest")))
    their_dashboard = theirs.create_dashboard("Theirs", TILES)
    theirs.put_entity(first, "event", their_dashboard["id"])
    write_minutes(theirs, first, "checkIns", [777, 778, 779, 780, 781, 782, 783])

    for page in (page_of(admin_client, dashboard["id"]), page_of(admin_client, dashboard["id"], entity=first)):
        assert page.status_code == 200
        assert sparklines_of(page)["checkIns"][0] == 5
        assert not shows_number(page, 783) and not shows_number(page, 777)
    assert page_of(admin_client, their_dashboard["id"], entity=first).status_code == 404


@pytest.mark.parametrize("which", ["unknown", "other tenant", "other dashboard"])
def test_an_entity_that_does_not_show_the_dashboard_is_not_found(admin_client, app, rest, watched, which):
    dashboard, _, _ = watched
    entity_id = unique("event")
    if which == "other tenant":
        theirs = Api(app.test_client(), mint_token(unique("other"), roles=("admin", "ingest")))
        theirs.put_entity(entity_id, "event")
        write_minutes(theirs, entity_id, "checkIns", [555])
    elif which == "other dashboard":
        rest.put_entity(entity_id, "event", rest.create_dashboard("Elsewhere", TILES)["id"])

    page = page_of(admin_client, dashboard["id"], entity=entity_id)

    assert page.status_code == 404
    assert f"entity &#39;{entity_id}&#39; does not show this dashboard" in page.text
    assert not shows_number(page, 555) and "<polyline" not in page.text


def test_a_bad_entity_id_is_refused(admin_client, watched):
    dashboard, _, _ = watched
    assert page_of(admin_client, dashboard["id"], entity="").status_code == 400
    assert page_of(admin_client, dashboard["id"], entity="a\x01b").status_code == 400


def test_a_dashboard_no_entity_shows_has_no_sparklines_and_says_so(admin_client, rest):
    dashboard = rest.create_dashboard("Unused", TILES)

    page = page_of(admin_client, dashboard["id"])

    assert page.status_code == 200
    assert sparklines_of(page) == {}
    assert "No entity shows this dashboard, so there are no values to draw." in page.text
    assert page_of(admin_client, dashboard["id"], entity="anything").status_code == 404


def test_one_entity_is_named_without_a_choice(admin_client, rest):
    dashboard = rest.create_dashboard("Single", TILES)
    entity_id = unique("event")
    rest.put_entity(entity_id, "event", dashboard["id"], name="Arena")

    page = page_of(admin_client, dashboard["id"])

    assert '<strong class="small">Arena</strong>' in page.text
    assert 'name="entity"' not in page.text


# --- in the browser ------------------------------------------------------------------------------------------------


def test_the_page_draws_sparklines_under_its_csp_and_choosing_an_entity_switches_them(
    live_server, tenant, admin_api, new_page
):
    dashboard = admin_api.create_dashboard("Sparks", TILES)
    first, second = sorted(unique("event") for _ in range(2))
    for entity_id, values in ((first, [10, 14, 9]), (second, [3, 4, 5, 6])):
        admin_api.put_entity(entity_id, "event", dashboard["id"], name=None)
        write_minutes(admin_api, entity_id, "checkIns", values)
    browser_page = new_page()
    refused = []
    browser_page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    admin = AdminPage(browser_page, live_server.url).sign_in(mint_token(tenant, roles=("admin",)))
    admin.open_dashboard(dashboard["id"])
    chart = browser_page.locator('.sparkline[data-metric="checkIns"]')
    expect(chart).to_have_attribute("data-points", "3")
    expect(chart.locator("polyline")).to_be_visible()
    expect(chart.locator("svg")).to_have_attribute(
        "aria-label", "Check-ins: 3 values in the last 1 h, from 9/min to 14/min"
    )

    browser_page.get_by_label("Values of the last 1 h for").select_option(second)  # submits itself

    expect(browser_page).to_have_url(re.compile(rf"\?entity={second}$"))
    expect(chart).to_have_attribute("data-points", "4")
    expect(chart.locator(".sparkline-last")).to_have_text("6/min")
    assert refused == []


# --- the helpers ---------------------------------------------------------------------------------------------------


def points(*values):
    return [{"t": f"2026-01-01T00:{i:02d}:00.000Z", "value": v} for i, v in enumerate(values)]


def test_sparkline_scales_into_its_view_box():
    line = sparkline(points(5, 15, 10))
    assert line.points == f"0.00,{HEIGHT - MARGIN:.2f} 50.00,{MARGIN:.2f} 100.00,{HEIGHT / 2:.2f}"
    assert (line.count, line.low, line.high, line.last) == (3, 5, 15, 10)
    assert line.view_box == f"0 0 {WIDTH} {HEIGHT}"


def test_sparkline_of_one_value_a_flat_series_and_none():
    assert sparkline(points(7)).points == f"{WIDTH / 2:.2f},{HEIGHT - MARGIN:.2f}"
    assert {p.split(",")[1] for p in sparkline(points(3, 3, 3)).points.split()} == {f"{HEIGHT - MARGIN:.2f}"}
    assert sparkline([]).count == 0 and sparkline([]).points == ""


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(1234, "", "1,234"), (12.345, "/min", "12.35/min"), (97, "%", "97%"), (54000.5, "EUR", "54,000.5 EUR")],
)
def test_metric_value(value, unit, text):
    assert metric_value(value, unit) == text


@pytest.mark.parametrize(("seconds", "text"), [(3600, "1 h"), (86400 * 7, "7 d"), (5400, "90 min"), (90, "90 s")])
def test_duration(seconds, text):
    assert duration(seconds) == text
