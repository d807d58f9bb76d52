"""The REST API in this process: a client of one tenant over Flask's test client, the error shape, shared data."""

import pytest

from testkit import Database, mint_token, unique
from testkit.clients import RestCalls

ENTITY_TYPE_ERROR = "entityType must be one of"
NEW_TILE = {"title": "Occupancy", "metricName": "occupancy", "kind": "gauge", "unit": "%"}
TILE = {"title": "T", "metricName": "m", "kind": "number"}


class Api(RestCalls):
    """``testkit.Api`` over Flask's test client: REST calls to the in-process app with the token of one tenant."""

    def __init__(self, client, token):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method, path, json=None, data=None, headers=None):
        response = self.client.open(
            "/api/v1" + path, method=method, json=json, data=data, headers={**self.headers, **(headers or {})}
        )
        return response.status_code, response.get_json(silent=True), response


def send(client, method, path, headers=None, **kwargs):
    """A request with exactly the headers given (no token unless the test puts one in)."""
    return client.open(path, method=method, headers=headers or {}, **kwargs)


def bearer(token):
    """The Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code, message=None):
    """The response is the one ``{code, message}`` error shape with this status and code; return the body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert message in body["message"], body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
    return body


def metrics_of(api, entity_id):
    """The entity's current metrics: ``{name: {value, timestamp, seq}}``."""
    return api.call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"]


def good(entity_id, value=999):
    """A valid metric item for ``entity_id``."""
    return {"entityId": entity_id, "metricName": "ticketsSold", "value": value}


@pytest.fixture
def database(app):
    """Straight access to the in-process app's database (``?`` placeholders on both backends)."""
    return Database(app.config["SQLALCHEMY_DATABASE_URI"])


@pytest.fixture
def admin_api(client, tenant):
    """REST client with an admin+ingest token of this test's tenant."""
    return Api(client, mint_token(tenant, roles=("admin", "ingest")))


@pytest.fixture
def other_api(client):
    """An admin+ingest client of a second tenant."""
    return Api(client, mint_token(unique("other"), roles=("admin", "ingest")))


@pytest.fixture
def api_with(client, tenant):
    """Factory: a client of this test's tenant holding exactly ``roles``."""
    return lambda *roles: Api(client, mint_token(tenant, roles=roles))


class Gql:
    """GraphQL over Flask's test client, with the token of one tenant (or none)."""

    def __init__(self, client, token=None):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, query, variables=None, headers=None, **kwargs):
        """POST /graphql; return the response."""
        body = {"query": query} if variables is None else {"query": query, "variables": variables}
        return self.client.post("/graphql", json=body, headers={**self.headers, **(headers or {})}, **kwargs)

    def data(self, query, variables=None):
        """The ``data`` of a query that must succeed (200, no errors)."""
        response = self.post(query, variables)
        assert response.status_code == 200, (response.status_code, response.text)
        assert "errors" not in response.json, response.json
        return response.json["data"]

    def error(self, query, variables=None, status=200):
        """The one error of a query that must fail with ``status``: ``(code, message, body)``."""
        response = self.post(query, variables)
        assert response.status_code == status, (response.status_code, response.text)
        errors = response.json["errors"]
        assert len(errors) == 1, errors
        return errors[0]["extensions"]["code"], errors[0]["message"], response.json


def assert_gql_error(response, status, code, message=None):
    """The response is a GraphQL error answer with this status whose every error has ``code``; return the body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json
    assert body["errors"], body
    for error in body["errors"]:
        assert error["extensions"] == {"code": code}, body
        assert isinstance(error["message"], str) and error["message"]
        if message is not None:
            assert message in error["message"], body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
    return body


@pytest.fixture
def gql(client, tenant):
    """GraphQL client with an admin+ingest token of this test's tenant."""
    return Gql(client, mint_token(tenant, roles=("admin", "ingest")))


@pytest.fixture
def gql_with(client, tenant):
    """Factory: a GraphQL client of this test's tenant holding exactly ``roles``."""
    return lambda *roles: Gql(client, mint_token(tenant, roles=roles))
