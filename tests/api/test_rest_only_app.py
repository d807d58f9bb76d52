"""The REST-only app (``create_app(realtime=False)``, served as ``wsgi_api:api``) in this process, beside the full one.

Live, under gunicorn's sync worker and beside a full server: tests/test_rest_only.py.
"""

import pytest

from app import create_app
from testkit import mint_token, server_env
from tests.api.conftest import Api, assert_error
from tests.conftest import environment

#: Blueprints of the full server only: the landing page, the live dashboard page and the admin page need Socket.IO.
PAGES = ("site.", "admin.")


@pytest.fixture(scope="module")
def rest_only_app(app, tmp_path_factory):
    """The REST-only app on the database of the in-process full app."""
    env = server_env(tmp_path_factory.mktemp("rest-only"), DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"])
    with environment(env):
        return create_app(realtime=False)


def test_it_serves_every_route_of_the_full_app_but_the_pages(app, rest_only_app):
    full = {(rule.rule, rule.endpoint, frozenset(rule.methods)) for rule in app.url_map.iter_rules()}
    rest_only = {(rule.rule, rule.endpoint, frozenset(rule.methods)) for rule in rest_only_app.url_map.iter_rules()}
    assert rest_only == {route for route in full if not route[1].startswith(PAGES)}
    assert {"/api/v1/metrics", "/healthz", "/readyz", "/metrics"} <= {route[0] for route in rest_only}


def test_it_has_no_socket_io_server(rest_only_app):
    assert "realtime" not in rest_only_app.extensions
    response = rest_only_app.test_client().get("/socket.io/?EIO=4&transport=polling")
    assert_error(response, 404, "ANALYTICS_1201")


def test_readiness_checks_the_database_and_has_no_draining_state(rest_only_app):
    response = rest_only_app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok"}}


def test_its_writes_are_the_full_apps_data(app, rest_only_app, tenant):
    token = mint_token(tenant, roles=("admin", "ingest"))
    writer, reader = Api(rest_only_app.test_client(), token), Api(app.test_client(), token)
    writer.put_entity("event-1", "event")
    writer.ingest(("event-1", "ticketsSold", 5))
    assert reader.call("GET", "/entities/event-1/metrics", 200)["metrics"]["ticketsSold"]["value"] == 5.0
