"""A database that stops answering, in process: REST, the admin page and /readyz answer 503 ANALYTICS_1300 with
Retry-After, logged once per outage; everything answers again once it is back.

The app runs on a PostgreSQL database reached through a TCP proxy this test cuts (tests/proxy.py): a real
database going away, as a restart or a network failure takes it. The live fault test (subscribers, writers, a
stop in the middle) is tests/test_outages.py.
"""

import logging

import pytest
from sqlalchemy import exc as sa_exc

from app.database import is_unavailable
from testkit import mint_token, server_env, unique
from tests.api.conftest import Api, Gql
from tests.conftest import app_from_env
from tests.proxy import TcpProxy
from tests.test_admin import sign_in

pytestmark = pytest.mark.backends("postgresql")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, app):
    """``(app, proxy)``: an app of its own on the session app's database, through a proxy the test can cut."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        through = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        assert through != url
        env = server_env(tmp_path_factory.mktemp("outage-app"), DATABASE_URL=through, DATABASE_CONNECT_TIMEOUT="2")
        application = app_from_env(env)
        yield application, proxy
        with application.app_context():
            from app.extensions import db

            db.engine.dispose()


@pytest.fixture
def down(proxied):
    """The proxied app with its database cut off for the test; forwarded again afterwards."""
    application, proxy = proxied
    proxy.cut()
    yield application
    proxy.restore()
    assert application.test_client().get("/readyz").status_code == 200  # ends the outage


def outage_lines(caplog, text):
    return [r for r in caplog.records if r.name == "app.database" and text in r.getMessage()]


REQUESTS = [
    ("GET", "/dashboards", None),
    ("GET", "/entities/event-1", None),
    ("POST", "/metrics", {"entityId": "event-1", "metricName": "m", "value": 1}),
    ("PUT", "/entities/event-1", {"entityType": "event", "name": "E"}),
    ("GET", "/entities/event-1/metrics/m/history", None),
    ("POST", "/dashboards", {"name": "D", "tiles": []}),
]


def test_rest_answers_503_with_retry_after_and_logs_the_outage_once(down, caplog):
    api = Api(down.test_client(), mint_token(unique("tenant"), roles=("admin", "ingest")))
    caplog.set_level(logging.INFO)
    for method, path, body in REQUESTS * 2:
        status, answer, response = api.request(method, path, json=body)
        assert status == 503, (method, path, answer)
        assert answer["code"] == "ANALYTICS_1300"
        assert "try again" in answer["message"]
        assert response.headers["Retry-After"] == "1"
    assert len(outage_lines(caplog, "database unavailable")) == 1
    assert not [r for r in caplog.records if r.exc_info]  # no traceback per request


def test_graphql_answers_1300_with_503_when_it_is_every_error_and_200_among_others(down):
    gql = Gql(down.test_client(), mint_token(unique("tenant"), roles=("admin", "ingest")))
    response = gql.post("{ entities { name } dashboards { id } }")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert {e["extensions"]["code"] for e in response.json["errors"]} == {"ANALYTICS_1300"}
    assert "refused" not in response.text  # the driver's message stays in the log
    mixed = gql.post('{ entity(entityId: "") { name } entities { name } }')
    codes = sorted(e["extensions"]["code"] for e in mixed.json["errors"])
    assert (mixed.status_code, codes) == (200, ["ANALYTICS_1200", "ANALYTICS_1300"])


def test_readyz_answers_503_with_retry_after_and_recovers_when_the_database_is_back(proxied, caplog):
    application, proxy = proxied
    client = application.test_client()
    caplog.set_level(logging.INFO)
    proxy.cut()
    try:
        for _ in range(3):
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json["checks"]["database"] == "unreachable"
            assert response.headers["Retry-After"] == "1"
    finally:
        proxy.restore()
    assert client.get("/readyz").status_code == 200
    assert len(outage_lines(caplog, "database unavailable")) == 1
    assert len(outage_lines(caplog, "database available again")) == 1
    # Writes answer again at once.
    api = Api(client, mint_token(unique("tenant"), roles=("admin", "ingest")))
    status, dashboard, _ = api.request("POST", "/dashboards", json={"name": "Back", "tiles": []})
    assert (status, dashboard["name"]) == (201, "Back")


def test_the_admin_page_shows_a_page_that_says_the_database_is_not_answering(proxied):
    application, proxy = proxied
    client = application.test_client()
    tenant = unique("tenant")
    assert sign_in(client, mint_token(tenant, roles=("admin",))).status_code == 200
    proxy.cut()
    try:
        for path in ("/admin", "/admin/dashboards/1"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.status_code)
            assert b"The database is not answering right now" in response.data
            assert b"ANALYTICS_1300" in response.data
            assert response.headers["Retry-After"] == "1"
    finally:
        proxy.restore()
    assert client.get("/admin").status_code == 200


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        (sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")), True),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")), True),
        (sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_which_errors_mean_the_database_is_unavailable(error, unavailable):
    assert is_unavailable(error) is unavailable


def test_sqlite_errors_in_a_statement_are_not_outages():
    import sqlite3

    schema = sa_exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))
    locked = sa_exc.OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))
    assert not is_unavailable(schema)
    assert is_unavailable(locked)
