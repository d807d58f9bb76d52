"""Health and routing: /healthz, unknown routes and wrong methods answer in the one error shape."""

import pytest

from testkit import mint_token
from tests.api.conftest import assert_error, bearer, send

pytestmark = pytest.mark.backends("sqlite")


def test_healthz_is_liveness_only(client):
    response = send(client, "GET", "/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"process": "ok"}}


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v1/dashboards/1/nothing-here"])
def test_unknown_route_is_404_json(client, path):
    assert_error(send(client, "GET", path), 404, "ANALYTICS_1201")


ID_ROUTES = [
    ("GET", "/api/v1/dashboards/{}", "dashboardId"),
    ("PATCH", "/api/v1/dashboards/{}", "dashboardId"),
    ("DELETE", "/api/v1/dashboards/{}", "dashboardId"),
    ("POST", "/api/v1/dashboards/{}/tiles", "dashboardId"),
    ("PUT", "/api/v1/dashboards/{}/tiles/order", "dashboardId"),
    ("PATCH", "/api/v1/dashboards/1/tiles/{}", "tileId"),
    ("DELETE", "/api/v1/dashboards/1/tiles/{}", "tileId"),
]


@pytest.mark.parametrize(("method", "path", "name"), ID_ROUTES)
@pytest.mark.parametrize("bad", ["not-a-number", "-1", "1.5", "1e3", "%D9%A3", " 7", "0x1f"])
def test_an_id_in_the_path_that_is_not_an_integer_is_400_naming_it(client, tenant, method, path, name, bad):
    response = send(client, method, path.format(bad), headers=bearer(mint_token(tenant, roles=("admin",))), json={})
    assert_error(response, 400, "ANALYTICS_1200", f"{name} must be a non-negative integer")


@pytest.mark.parametrize(("method", "path", "name"), ID_ROUTES)
def test_an_id_in_the_path_too_long_to_be_one_is_400_and_a_large_unknown_one_404(client, tenant, method, path, name):
    headers = bearer(mint_token(tenant, roles=("admin",)))
    assert_error(send(client, method, path.format("9" * 5000), headers=headers, json={}), 400, "ANALYTICS_1200")
    if (method, name) in (("GET", "dashboardId"), ("DELETE", "dashboardId")):  # the others check their body first
        assert_error(send(client, method, path.format(2**31), headers=headers), 404, "ANALYTICS_1201", "unknown")


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
