"""The browser dashboard in headless Chromium: live values, charts, connection state, errors.

What the page shows does not depend on the database: these run on SQLite only. Its reconnect after a server
restart is checked with the other clients' in tests/test_resilience.py.
"""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from testkit import ROOT, mint_token, unique
from tests.browser import PHONE, DashboardPage

VENDOR = ROOT / "app" / "static" / "vendor"

pytestmark = pytest.mark.backends("sqlite")


@pytest.fixture
def line_entity(admin_api):
    """An entity whose dashboard has a number, a line and a gauge tile."""
    dashboard = admin_api.create_dashboard(
        tiles=[
            {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
            {"title": "Check-ins", "metricName": "checkIns", "kind": "line", "unit": "/min"},
            {
                "title": "Occupancy",
                "metricName": "occupancy",
                "kind": "gauge",
                "unit": "%",
                "thresholds": {"warning": 80, "critical": 95},
            },
        ]
    )
    entity_id = unique("event")
    admin_api.put_entity(entity_id, "event", dashboard["id"])
    return entity_id, dashboard


def write_minutes(api, entity_id, metric, values, before=1):
    """Write ``values`` one a minute (oldest first) with past timestamps, the last ``before`` minutes before this one.

    Each lands in a minute bucket of its own, so the chart history has one point per value.
    """
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    body = [
        {
            "entityId": entity_id,
            "metricName": metric,
            "value": value,
            "timestamp": (now - timedelta(minutes=len(values) - 1 - i + before, seconds=-20)).isoformat(),
        }
        for i, value in enumerate(values)
    ]
    api.call("POST", "/metrics", 201, json={"metrics": body})


def chart_points(chart):
    """The ``(x, y)`` points of a chart's polyline."""
    return [tuple(map(float, p.split(","))) for p in chart.locator("polyline").get_attribute("points").split()]


def test_metrics_written_through_rest_show_up_with_a_highlight(live_server, tenant, line_entity, admin_api, new_page):
    entity_id, _ = line_entity
    admin_api.ingest((entity_id, "ticketsSold", 1200))
    page = DashboardPage(new_page(), live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    page.mark()
    tickets = page.tile("Tickets")
    expect(tickets.locator(".tile-value")).to_have_text(re.compile(r"^1,?200$"))

    admin_api.ingest((entity_id, "ticketsSold", 1234), (entity_id, "occupancy", 97))
    expect(tickets.locator(".tile-value")).to_have_text(re.compile(r"^1,?234$"))
    expect(tickets).to_have_class(re.compile(r"\bupdated\b"))
    expect(page.tile("Occupancy").locator(".tile-value")).to_have_text("97%")
    expect(page.tile("Occupancy")).to_have_attribute("data-level", "critical")

    chart = page.tile("Check-ins").locator("svg.chart")
    for value in (10, 14, 9):
        admin_api.ingest((entity_id, "checkIns", value))
        expect(page.tile("Check-ins").locator(".tile-value")).to_have_text(f"{value}/min")
    expect(chart).to_have_attribute("data-points", "3")
    points = chart.locator("polyline").get_attribute("points").split()
    assert len(points) == 3
    assert page.was_not_reloaded()


def test_a_line_chart_is_drawn_from_the_history_at_once_also_after_a_reload(
    live_server, tenant, line_entity, admin_api, new_page
):
    entity_id, _ = line_entity
    write_minutes(admin_api, entity_id, "checkIns", [10, 14, 9, 20, 12])
    page = DashboardPage(new_page(), live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    tile = page.tile("Check-ins")
    chart = tile.locator("svg.chart")

    for _ in range(2):
        expect(chart).to_have_attribute("data-points", "5")  # before any live value
        expect(tile.locator(".tile-value")).to_have_text("12/min")
        points = chart_points(chart)
        assert len(points) == 5
        assert [x for x, _ in points] == [0, 25, 50, 75, 100]
        assert points[3][1] == min(y for _, y in points)  # 20 is the highest value: at the top
        expect(chart).to_have_attribute("aria-label", re.compile(r"^Last 5 values, from 9 to 20$"))
        page.page.reload()  # the token is in sessionStorage: the page connects again by itself
        page.wait_ready()

    page.mark()
    admin_api.ingest((entity_id, "checkIns", 30))
    expect(chart).to_have_attribute("data-points", "6")
    expect(tile.locator(".tile-value")).to_have_text("30/min")
    assert chart_points(chart)[-1][1] == min(y for _, y in chart_points(chart))
    assert page.was_not_reloaded()


def test_a_layout_change_through_rest_is_applied_live(live_server, tenant, entity, admin_api, new_page):
    entity_id, dashboard = entity
    page = DashboardPage(new_page(), live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    page.mark()
    added = admin_api.call(
        "POST", f"/dashboards/{dashboard['id']}/tiles", 201, json={"title": "Queue", "metricName": "q", "kind": "line"}
    )
    expect(page.titles).to_have_text(["Tickets", "Revenue", "Queue"])
    order = [added["tile"]["id"], *[t["id"] for t in dashboard["tiles"]]]
    admin_api.call("PUT", f"/dashboards/{dashboard['id']}/tiles/order", 200, json={"tileIds": order})
    expect(page.titles).to_have_text(["Queue", "Tickets", "Revenue"])
    expect(page.page.locator("#version")).to_have_text(str(dashboard["version"] + 2))
    assert page.was_not_reloaded()

    page.page.locator("#disconnect").click()
    expect(page.connection).to_have_attribute("data-state", "disconnected")
    expect(page.page.locator("#token")).to_be_visible()


def test_another_dashboard_through_rest_is_drawn_whole_and_a_removed_entity_says_so(
    live_server, tenant, line_entity, admin_api, new_page
):
    entity_id, first = line_entity
    # Tickets is a number tile here: the snapshot carries no history for it, the page keeps its current value.
    write_minutes(admin_api, entity_id, "ticketsSold", [1000, 1100, 1150, 1200], before=4)
    page = DashboardPage(new_page(), live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    page.mark()
    for value, before in ((10, 3), (14, 2)):
        write_minutes(admin_api, entity_id, "checkIns", [value], before=before)
        expect(page.tile("Check-ins").locator(".tile-value")).to_have_text(f"{value}/min")
    second = admin_api.create_dashboard(
        "Second",
        tiles=[
            {"title": "Arrivals", "metricName": "checkIns", "kind": "line", "unit": "/min"},
            {"title": "Sales", "metricName": "ticketsSold", "kind": "line"},
        ],
    )

    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": second["id"]})

    expect(page.titles).to_have_text(["Arrivals", "Sales"])
    arrivals = page.tile("Arrivals")
    expect(arrivals.locator(".tile-value")).to_have_text("14/min")  # the values received so far stay
    expect(arrivals.locator("svg.chart")).to_have_attribute("data-points", "2")
    # replaced carries the history of the new line tiles: Sales is drawn whole at once.
    expect(page.tile("Sales").locator("svg.chart")).to_have_attribute("data-points", "4")
    # The first dashboard's layout changes no longer reach the page; the second's do.
    admin_api.call("DELETE", f"/dashboards/{first['id']}/tiles/{first['tiles'][0]['id']}", 200)
    tile = {"title": "Q", "metricName": "q", "kind": "number"}
    admin_api.call("POST", f"/dashboards/{second['id']}/tiles", 201, json=tile)
    expect(page.titles).to_have_text(["Arrivals", "Sales", "Q"])
    expect(page.page.locator("#version")).to_have_text("2")

    admin_api.call("DELETE", f"/entities/{entity_id}", 204)

    expect(page.removed).to_contain_text(f"This event (“{entity_id}”) was removed")
    expect(page.titles).to_have_count(0)
    expect(page.page.locator("#empty")).to_be_hidden()
    expect(page.connection).to_have_attribute("data-state", "connected")
    assert page.was_not_reloaded()


@pytest.mark.parametrize(
    ("token", "code", "text"),
    [
        (lambda tenant: mint_token(tenant, ttl=-3600), "ANALYTICS_1003", "Your token has expired"),
        (lambda tenant: "not-a-token", "ANALYTICS_1002", "This token was not accepted"),
        (lambda tenant: mint_token(tenant, tenantId=None), "ANALYTICS_1004", "has no tenant"),
    ],
    ids=["expired", "garbage", "no-tenant"],
)
def test_a_refused_token_is_explained(live_server, tenant, entity, new_page, token, code, text):
    entity_id, _ = entity
    page = DashboardPage(new_page(), live_server.url, entity_id).open(token(tenant))
    expect(page.notice).to_have_attribute("data-code", code)
    expect(page.notice).to_contain_text(text)
    expect(page.connection).to_have_attribute("data-state", "disconnected")
    expect(page.page.locator("#token")).to_be_visible()
    expect(page.page.locator("#disconnect")).to_be_hidden()


def test_an_unknown_entity_is_a_friendly_error_event(live_server, tenant, new_page):
    page = DashboardPage(new_page(), live_server.url, "no-such-event").open(mint_token(tenant))
    expect(page.notice).to_have_attribute("data-code", "ANALYTICS_1101")
    expect(page.notice).to_contain_text("There is no event “no-such-event”")
    expect(page.connection).to_have_attribute("data-state", "connected")


def test_an_entity_without_a_dashboard_says_so(live_server, tenant, admin_api, new_page):
    entity_id = unique("venue")
    admin_api.put_entity(entity_id, "venue")
    page = DashboardPage(new_page(), live_server.url, entity_id, "venue").open(mint_token(tenant)).wait_ready()
    expect(page.page.locator("#empty")).to_have_text("This entity has no dashboard yet.")
    expect(page.titles).to_have_count(0)


def test_fits_a_phone_screen(live_server, tenant, line_entity, new_page):
    entity_id, _ = line_entity
    page = DashboardPage(new_page(PHONE), live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    expect(page.titles).to_have_count(3)
    assert page.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_vendored_socket_io_client_is_the_pinned_version(live_server):
    lock = json.loads((ROOT / "tests" / "node" / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/socket.io-client"]["version"]
    bundle = VENDOR / f"socket.io-client-{version}" / "socket.io.min.js"
    assert f"Socket.IO v{version}" in bundle.read_text()[:200]
    assert (bundle.parent / "LICENSE").exists()
    template = (ROOT / "app" / "site.py").read_text()
    assert f"vendor/socket.io-client-{version}/socket.io.min.js" in template


def test_the_page_runs_under_its_content_security_policy_and_upgrades_to_a_websocket(
    live_server, tenant, entity, new_page
):
    entity_id, _ = entity
    browser_page = new_page()
    refused = []
    browser_page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    with browser_page.expect_websocket() as websocket:
        page = DashboardPage(browser_page, live_server.url, entity_id).open(mint_token(tenant)).wait_ready()
    assert websocket.value.url.startswith(live_server.url.replace("http", "ws", 1) + "/socket.io/")
    expect(page.tile("Tickets")).to_be_visible()
    assert refused == []
