"""Headless Chromium for the end-to-end tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser downloads are never used (``make browser`` installs the
Debian package); the browser only ever talks to the test servers on 127.0.0.1.
"""

import re
from pathlib import Path

from playwright.sync_api import expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
#: How long expect() waits for a condition in the page.
EXPECT_TIMEOUT_MS = 15_000
#: socket.io-client's longest wait between two reconnection attempts (its reconnectionDelayMax default), in ms.
RECONNECTION_DELAY_MAX_MS = 5000

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def launch(playwright):
    """Start headless Chromium from the Debian package."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def option(dashboard):
    """A dashboard's label in the admin page's selects."""
    return f"{dashboard['name']} (#{dashboard['id']})"


class AdminPage:
    """The admin page of one browser context, driven as an admin would."""

    def __init__(self, page, base_url):
        self.page = page
        self.base = base_url

    def sign_in(self, token):
        """Paste ``token`` on the sign-in page and submit it."""
        self.page.goto(self.base + "/admin")
        self.page.get_by_label("Access token (JWT)").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        return self

    def open_dashboard(self, dashboard_id):
        """Open one dashboard's page."""
        self.page.goto(f"{self.base}/admin/dashboards/{dashboard_id}")
        expect(self.page.locator("#dashboard-version")).to_be_visible()
        return self

    def fill_tile(self, form, title=None, metric=None, kind=None, unit=None, warning=None, critical=None):
        """Fill the fields given in a tile form (``#add-tile`` or ``#edit-tile``)."""
        scope = self.page.locator(form)
        for label, value in (
            ("Title", title),
            ("Metric name", metric),
            ("Unit", unit),
            ("Warning at", warning),
            ("Critical at", critical),
        ):
            if value is not None:
                scope.get_by_label(label, exact=True).fill(str(value))
        if kind is not None:
            scope.get_by_label("Kind").select_option(kind)

    def add_tile(self, **fields):
        """Fill the add form and submit it."""
        self.fill_tile("#add-tile", **fields)
        self.page.locator("#add-tile").get_by_role("button", name="Add tile").click()

    def edit_tile(self, current_title, **fields):
        """Open the edit page of the tile called ``current_title``, change ``fields`` and save."""
        self.page.get_by_role("link", name=f"Edit {current_title}", exact=True).click()
        self.fill_tile("#edit-tile", **fields)
        self.page.get_by_role("button", name="Save tile").click()

    def move(self, title, direction):
        """Press ↑ or ↓ on a tile."""
        self.page.get_by_role("button", name=f"Move {title} {direction}", exact=True).click()

    def remove(self, title):
        """Remove a tile, confirming on the confirmation page."""
        self.page.get_by_role("link", name=f"Remove {title}", exact=True).click()
        expect(self.page.get_by_role("heading", name=re.compile(f"Remove “{re.escape(title)}”"))).to_be_visible()
        self.page.locator("#confirm-remove").click()

    def open_index(self):
        """Open the start page (dashboards and entities)."""
        self.page.goto(self.base + "/admin")
        expect(self.page.locator("#create-dashboard")).to_be_visible()
        return self

    def create_dashboard(self, name, copy_of=None):
        """Create a dashboard on the start page, empty or as a copy of ``copy_of`` (a dashboard dict)."""
        form = self.page.locator("#create-dashboard")
        form.get_by_label("Name").fill(name)
        form.get_by_label("Tiles").select_option(label=f"Copy of {option(copy_of)}" if copy_of else "Empty: no tiles")
        form.get_by_role("button", name="Create dashboard").click()

    def rename_dashboard(self, name):
        """Rename the dashboard whose page is open."""
        form = self.page.locator("#rename-dashboard")
        form.get_by_label("Name").fill(name)
        form.get_by_role("button", name="Rename").click()

    def delete_dashboard(self, confirm=True):
        """Press "Delete dashboard…" on the open dashboard's page; confirm unless told not to."""
        self.page.locator("#delete-dashboard").click()
        expect(self.page.get_by_role("heading", name=re.compile(r"^Delete dashboard “"))).to_be_visible()
        if confirm:
            self.page.locator("#confirm-delete").click()

    def register_entity(self, entity_id, entity_type="event", name=None, dashboard=None):
        """Register an entity on the start page, showing ``dashboard`` (a dashboard dict) when given."""
        form = self.page.locator("#register-entity")
        form.get_by_label("Entity id").fill(entity_id)
        form.get_by_label("Type").select_option(entity_type)
        if name is not None:
            form.get_by_label("Name").fill(name)
        if dashboard is not None:
            form.get_by_label("Dashboard").select_option(label=option(dashboard))
        form.get_by_role("button", name="Register entity").click()

    def choose_dashboard(self, entity_id, dashboard):
        """On the start page, show ``dashboard`` (a dashboard dict) on the entity; None clears it."""
        label = option(dashboard) if dashboard is not None else "No dashboard"
        self.page.get_by_label(f"Dashboard of {entity_id}", exact=True).select_option(label=label)
        self.page.get_by_role("button", name=f"Set the dashboard of {entity_id}", exact=True).click()

    def delete_entity(self, entity_id, confirm=True):
        """On the start page, press "Delete…" for the entity; confirm unless told not to."""
        self.page.get_by_role("link", name=f"Delete {entity_id}", exact=True).click()
        expect(self.page.get_by_role("heading", name=re.compile(f"“{re.escape(entity_id)}”"))).to_be_visible()
        if confirm:
            self.page.locator("#confirm-delete").click()

    def tile_titles(self):
        """Locator of the tile titles in order."""
        return self.page.locator("#tile-list .tile-title")

    def flash(self, category):
        """Locator of the flash messages of ``category`` (success, error, info)."""
        return self.page.locator(f".flash-{category}")


class DashboardPage:
    """The browser dashboard of one entity, opened in its own page."""

    def __init__(self, page, base_url, entity_id, entity_type="event"):
        self.page = page
        self.url = f"{base_url}/dashboards/{entity_type}/{entity_id}"

    def open(self, token=None):
        """Load the page, connect with ``token`` (unless it is pre-filled) and wait for the tiles."""
        self.page.goto(self.url)
        if token is not None:
            self.page.locator("#token").fill(token)
            self.page.locator("#connect").click()
        return self

    def wait_ready(self):
        """Wait for ``dashboard:initial`` to be rendered and the socket to be connected."""
        expect(self.page.locator("#tiles")).to_have_attribute("data-ready", "true")
        expect(self.connection).to_have_attribute("data-state", "connected")
        return self

    def mark(self):
        """Leave a marker in the page's JavaScript state; a reload would wipe it."""
        self.page.evaluate("window.__noReload = true")

    def was_not_reloaded(self):
        """True when the marker from :meth:`mark` is still there."""
        return self.page.evaluate("window.__noReload === true")

    @property
    def root(self):
        """The page's main element: ``data-seq``, ``data-initials``, ``data-resumes`` and ``data-refreshes``."""
        return self.page.locator("#live-dashboard")

    @property
    def session(self):
        """The notice that the session will end (no fresh token from the page's hook)."""
        return self.page.locator("#session")

    @property
    def connection(self):
        """The connection state badge (``data-state`` is connected, reconnecting or disconnected)."""
        return self.page.locator("#connection")

    @property
    def titles(self):
        """Locator of the tile titles in display order."""
        return self.page.locator("#tiles .tile-title")

    def tile(self, title):
        """Locator of the tile called ``title``."""
        return self.page.locator("#tiles .tile").filter(has=self.page.locator(".tile-title", has_text=title))

    @property
    def notice(self):
        """The error notice."""
        return self.page.locator("#notice")

    @property
    def empty(self):
        """The line shown instead of tiles (no dashboard, or a dashboard without tiles)."""
        return self.page.locator("#empty")

    @property
    def removed(self):
        """The notice shown when the entity was removed."""
        return self.page.locator("#removed")
