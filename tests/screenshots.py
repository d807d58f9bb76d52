"""Regenerate the screenshots in docs/img/ (``make screenshots``).

Starts a development server of its own on 127.0.0.1 (demo data, simulator,
ADMIN_DEV_LOGIN=1), opens the live dashboard and the admin page in headless
Chromium, and saves what a person would see.
"""

import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from testkit import ROOT, flask_cli, running_server
from tests.browser import LAPTOP, PHONE, AdminPage, DashboardPage, launch

OUT = ROOT / "docs" / "img"
DEMO_EVENT = "event-uuid-123"


def take_screenshots(out=OUT):
    """Write admin.png, dashboard.png and dashboard-phone.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(tmp, ADMIN_DEV_LOGIN="1", SIMULATOR="1", SIMULATOR_INTERVAL="0.5") as server,
        sync_playwright() as playwright,
    ):
        result = flask_cli(server.env, "seed-demo")
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        browser = launch(playwright)
        viewer = DashboardPage(browser.new_page(viewport=LAPTOP), server.url, DEMO_EVENT).open().wait_ready()
        # Let the line chart collect some history from the simulator.
        expect(viewer.tile("Check-ins").locator("svg.chart")).to_have_attribute(
            "data-points", re.compile(r"^(1[2-9]|[2-9]\d)$"), timeout=30_000
        )

        admin = AdminPage(browser.new_page(viewport=LAPTOP), server.url)
        admin.page.goto(server.url + "/admin")
        admin.page.locator("#dev-sign-in").click()
        admin.page.get_by_role("link", name="Event overview").click()
        admin.add_tile(title="Queue length", metric="queueLength", kind="number", unit="people")
        expect(viewer.titles).to_have_count(5)
        expect(admin.page.locator("#recent-events")).to_contain_text("dashboard:update")
        expect(admin.page.locator("#recent-events")).to_contain_text("metric:update")

        paths = [out / "admin.png", out / "dashboard.png", out / "dashboard-phone.png"]
        admin.page.screenshot(path=paths[0], full_page=True)
        viewer.page.screenshot(path=paths[1], full_page=True)
        phone = DashboardPage(browser.new_page(viewport=PHONE), server.url, DEMO_EVENT).open().wait_ready()
        expect(phone.tile("Check-ins").locator("svg.chart")).to_have_attribute(
            "data-points", re.compile(r"^([4-9]|[1-9]\d)$"), timeout=30_000
        )
        phone.page.screenshot(path=paths[2], full_page=True)
        browser.close()
    return paths


if __name__ == "__main__":
    for path in take_screenshots(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
