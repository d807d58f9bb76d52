"""Security headers on every answer, in process: a CSP that forbids framing and inline code, HSTS with HTTPS."""

import pytest

from app.headers import CONTENT_SECURITY_POLICY
from testkit import server_env
from tests.conftest import app_from_env

pytestmark = pytest.mark.backends("sqlite")

PAGES = ["/", "/dashboards/event/event-uuid-123", "/admin/sign-in", "/healthz", "/api/v1/dashboards", "/no/such/page"]


@pytest.mark.parametrize("path", PAGES)
def test_every_answer_carries_the_security_headers(client, path):
    headers = client.get(path).headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers  # plain HTTP here: SESSION_COOKIE_SECURE is off


def test_pages_need_no_inline_script_or_style(client):
    for path in ("/", "/dashboards/event/event-uuid-123", "/admin/sign-in"):
        html = client.get(path).get_data(as_text=True)
        assert "<style" not in html and " style=" not in html, path
        assert "<script>" not in html and "<script " not in html.replace('<script src="', ""), path


def test_hsts_when_session_cookies_are_https_only(tmp_path, app):
    secure = app_from_env(
        server_env(tmp_path, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SESSION_COOKIE_SECURE="1")
    )
    assert secure.test_client().get("/").headers["Strict-Transport-Security"] == "max-age=31536000"
