"""The browser dashboard in headless Chromium: live values, charts, connection state, errors, resume, token refresh.

What the page shows does not depend on the database: these run on SQLite only. Its reconnect after a server
restart is checked with the other clients' in tests/test_resilience.py; a lost connection is made here with a
TCP proxy between the browser and the server, so the page and its socket are left as they are.
"""

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from testkit import ROOT, mint_token, servers_on, unique
from tests.browser import PHONE, DashboardPage
from tests.proxy import TcpProxy

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


# --- a lost connection: resume from the last seq ---------------------------------------------------------------


def subscribes(browser_page):
    """The ``subscribe`` payloads the page sends, on every websocket it opens, in order."""
    sent = []

    def frame(payload):
        # A Socket.IO event in an Engine.IO message: 42/dashboard,["subscribe",{...}]
        match = re.match(r"^42/dashboard,\d*(\[.*\])$", payload if isinstance(payload, str) else "", re.S)
        if match and json.loads(match[1])[0] == "subscribe":
            sent.append(json.loads(match[1])[1])

    browser_page.on("websocket", lambda ws: ws.on("framesent", frame))
    return sent


def test_after_a_lost_connection_the_page_resumes_with_what_it_missed(
    live_server, tenant, line_entity, admin_api, new_page
):
    entity_id, dashboard = line_entity
    admin_api.ingest((entity_id, "ticketsSold", 1200), (entity_id, "checkIns", 10))
    with TcpProxy("127.0.0.1", live_server.port) as proxy:
        browser_page = new_page()
        sent = subscribes(browser_page)
        page = DashboardPage(browser_page, f"http://127.0.0.1:{proxy.port}", entity_id)
        page.open(mint_token(tenant)).wait_ready()
        page.mark()
        chart = page.tile("Check-ins").locator("svg.chart")
        expect(chart).to_have_attribute("data-points", "1")
        seq = int(page.root.get_attribute("data-seq"))

        proxy.cut()  # the websocket drops, and reconnection attempts are refused until restore()
        expect(page.connection).to_have_attribute("data-state", "reconnecting")
        admin_api.ingest((entity_id, "ticketsSold", 1234), (entity_id, "checkIns", 14))
        tile = {"title": "Queue", "metricName": "queue", "kind": "number"}
        admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=tile)
        proxy.restore()

        expect(page.connection).to_have_attribute("data-state", "connected")
        expect(page.root).to_have_attribute("data-resumes", "1")
        expect(page.titles).to_have_text(["Tickets", "Check-ins", "Occupancy", "Queue"])
        expect(page.tile("Tickets").locator(".tile-value")).to_have_text(re.compile(r"^1,?234$"))
        expect(page.tile("Check-ins").locator(".tile-value")).to_have_text("14/min")
        expect(chart).to_have_attribute("data-points", "2")  # appended to what the chart held
        expect(page.page.locator("#version")).to_have_text(str(dashboard["version"] + 1))
        expect(page.root).to_have_attribute("data-initials", "1")  # no fresh snapshot was drawn
        assert int(page.root.get_attribute("data-seq")) > seq
        assert sent == [
            {"entityId": entity_id, "entityType": "event"},
            {"entityId": entity_id, "entityType": "event", "sinceSeq": seq},
        ]

        admin_api.ingest((entity_id, "queue", 7))  # the live stream goes on after the resume
        expect(page.tile("Queue").locator(".tile-value")).to_have_text("7")
        assert page.was_not_reloaded()


# --- token expiry: the page's getToken hook and auth:refresh ----------------------------------------------------

WARNING = 3


@pytest.fixture(scope="module")
def expiring_server(tmp_path_factory, live_server):
    """A server of the session's database that warns 3 s before a token expires and allows no leeway."""
    with servers_on(
        live_server.env["DATABASE_URL"],
        [tmp_path_factory.mktemp("expiring")],
        TOKEN_EXPIRY_WARNING=str(WARNING),
        JWT_LEEWAY_SECONDS="0",
    ) as (running,):
        yield running


def test_a_page_with_a_token_hook_outlives_its_first_token_and_reconnects_with_the_fresh_one(
    expiring_server, tenant, line_entity, admin_api, new_page
):
    entity_id, _ = line_entity
    browser_page = new_page()
    # The page's identity provider: each call mints a token of 8 s, so that its own warning comes after the first
    # token (5 s) has expired.
    browser_page.expose_function("freshToken", lambda: mint_token(tenant, ttl=8))
    browser_page.add_init_script("window.analyticsDashboard = { getToken: () => window.freshToken() };")
    with TcpProxy("127.0.0.1", expiring_server.port) as proxy:
        first_expiry = int(time.time()) + 5
        page = DashboardPage(browser_page, f"http://127.0.0.1:{proxy.port}", entity_id)
        page.open(mint_token(tenant, ttl=5)).wait_ready()
        page.mark()

        expect(page.root).to_have_attribute("data-refreshes", "1")
        expect(page.root).to_have_attribute("data-refreshes", "2", timeout=15_000)  # the second token's warning
        assert time.time() > first_expiry
        expect(page.connection).to_have_attribute("data-state", "connected")
        expect(page.notice).to_be_hidden()
        expect(page.session).to_be_hidden()
        admin_api.ingest((entity_id, "ticketsSold", 42))
        expect(page.tile("Tickets").locator(".tile-value")).to_have_text("42")

        # A reconnection presents the refreshed token: the first one would be refused as expired.
        proxy.cut()
        expect(page.connection).to_have_attribute("data-state", "reconnecting")
        proxy.restore()
        expect(page.root).to_have_attribute("data-resumes", "1")
        expect(page.connection).to_have_attribute("data-state", "connected")
        expect(page.notice).to_be_hidden()
        assert page.was_not_reloaded()


@pytest.mark.parametrize(
    ("hook", "refused"),
    [(None, ""), (lambda tenant: mint_token(unique("other"), ttl=60), "ANALYTICS_1002")],
    ids=["no-hook", "token-of-another-tenant"],
)
def test_without_a_fresh_token_the_page_says_when_the_session_ends(
    expiring_server, tenant, entity, new_page, hook, refused
):
    entity_id, _ = entity
    browser_page = new_page()
    if hook is not None:
        token = json.dumps(hook(tenant))
        browser_page.add_init_script(f"window.analyticsDashboard = {{ getToken: async () => {token} }};")
    page = DashboardPage(browser_page, expiring_server.url, entity_id).open(mint_token(tenant, ttl=4)).wait_ready()

    expect(page.session).to_contain_text(re.compile(r"^Your session ends at "))
    expect(page.session).to_have_attribute("data-code", refused)
    expect(page.notice).to_be_hidden()  # a refused refresh is explained by the session notice alone
    assert page.root.get_attribute("data-refreshes") is None

    # At expiry the server ends the connection, as without any refresh.
    expect(page.notice).to_have_attribute("data-code", "ANALYTICS_1003")
    expect(page.notice).to_contain_text("Your token has expired")
    expect(page.session).to_be_hidden()
    expect(page.connection).to_have_attribute("data-state", "disconnected")
