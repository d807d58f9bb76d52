"""Health and routing: /healthz, unknown routes and wrong methods answer in the one error shape."""

import pytest

from testkit import mint_token
from tests.api.conftest import assert_error, bearer, send

pytestmark = pytest.mark.backends("sqlite")


def test_healthz_is_liveness_only(client):
    response = send(client, "GET", "/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"process": "ok"}}


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v1/dashboards/not-a-number"])
def test_unknown_route_is_404_json(client, path):
    assert_error(send(client, "GET", path), 404, "ANALYTICS_1201")


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/api/v1/dashboards"), ("POST", "/api/v1/entities"), ("GET", "/api/v1/metrics"), ("POST", "/healthz")],
)
def test_wrong_method_is_405(client, tenant, method, path):
    response = send(client, method, path, headers=bearer(mint_token(tenant, roles=("admin",))))
    assert_error(response, 405, "ANALYTICS_1204")


def test_wrong_method_names_the_allowed_methods(client, tenant):
    response = send(client, "DELETE", "/api/v1/dashboards", headers=bearer(mint_token(tenant)))
    assert response.status_code == 405
    assert {m.strip() for m in response.headers.get("Allow", "").split(",")} >= {"GET", "POST"}
