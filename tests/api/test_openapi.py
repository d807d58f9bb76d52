"""The OpenAPI document (app/api/openapi.json) against the code, so that it cannot drift.

Valid OpenAPI 3.1; the same routes and methods as the blueprint; the error codes of errors.py under their statuses;
the roles the views require; and a walk through every operation whose every answer is documented for that
operation and valid against the schema documented for its status (and whose valid requests fit the request schema).
"""

import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app import errors
from app.api.openapi import DOCUMENT_PATH
from testkit import mint_token, server_env
from tests.api.conftest import TILE, assert_error, bearer
from tests.conftest import app_from_env

DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
METHODS = ("get", "put", "post", "patch", "delete")
OPERATIONS = [(path, method) for path, item in DOCUMENT["paths"].items() for method in METHODS if method in item]


def operation(path, method):
    return DOCUMENT["paths"][path][method]


def resolve(node):
    """``node``, or what its ``$ref`` (local to the document) points at."""
    while "$ref" in node:
        node = pointer_target(node["$ref"])
    return node


def pointer_target(pointer):
    node = DOCUMENT
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def escape(part):
    return str(part).replace("~", "~0").replace("/", "~1")


def response_schema_pointer(path, method, status):
    """The JSON pointer of the schema documented for ``status``, or None for a response without a body."""
    response = operation(path, method)["responses"][status]
    base = f"#/paths/{escape(path)}/{method}/responses/{status}"
    while "$ref" in response:
        base, response = response["$ref"], pointer_target(response["$ref"])
    if "content" not in response:
        return None
    return f"{base}/content/application~1json/schema"


def validator(pointer):
    """A JSON Schema 2020-12 validator of the schema at ``pointer``, with the document's ``$ref``s resolvable."""
    return Draft202012Validator({"$ref": pointer, "paths": DOCUMENT["paths"], "components": DOCUMENT["components"]})


def documented_codes(response):
    """The error codes a documented error response allows (its ``code`` enum)."""
    schema = resolve(response)["content"]["application/json"]["schema"]
    return set(schema["properties"]["code"]["enum"])


def doc_path(rule):
    """``/api/v1/dashboards/<id('dashboardId'):dashboard_id>`` -> ``/dashboards/{dashboardId}``."""

    def camel(match):
        head, *rest = match.group(1).split("_")
        return "{" + head + "".join(word.title() for word in rest) + "}"

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", camel, rule.removeprefix("/api/v1"))


def api_routes(app):
    """``{(doc path, method): rule}`` of every /api/v1 route of ``app``."""
    return {
        (doc_path(rule.rule), method.lower()): rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


# --- the document itself ----------------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate(DOCUMENT)


def test_it_is_served_as_is_without_a_token(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == DOCUMENT_PATH.read_bytes()


# --- routes, parameters, error codes, roles ---------------------------------------------------------------------


def test_every_route_and_method_is_documented_and_nothing_else(app):
    routes = api_routes(app)
    assert sorted(routes) == sorted(OPERATIONS)


def test_path_parameters_have_the_types_of_the_route_converters(app):
    for (path, method), rule in api_routes(app).items():
        item = DOCUMENT["paths"][path]
        parameters = [resolve(p) for p in item.get("parameters", []) + operation(path, method).get("parameters", [])]
        in_path = {p["name"]: p["schema"]["type"] for p in parameters if p["in"] == "path"}
        assert set(in_path) == set(re.findall(r"{(\w+)}", path)), (path, method)
        for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", rule.rule):
            expected = "integer" if converter == "int" else "string"
            assert in_path[doc_path(f"<{name}>")[1:-1]] == expected, (path, name)


def test_the_error_codes_are_the_catalogue_each_under_its_status():
    catalogue = {entry.code: entry.status for entry in errors.CATALOGUE}
    assert DOCUMENT["components"]["schemas"]["ErrorCode"]["enum"] == list(catalogue)
    for path, method in OPERATIONS:
        for status, response in operation(path, method)["responses"].items():
            if int(status) >= 400:
                codes = documented_codes(response)
                assert codes and all(catalogue[code] == int(status) for code in codes), (path, method, status, codes)


def test_every_operation_says_its_roles_and_its_authentication_errors():
    for path, method in OPERATIONS:
        spec = operation(path, method)
        responses = spec["responses"]
        assert isinstance(spec["x-roles"], list), (path, method)
        assert ("403" in responses) == bool(spec["x-roles"]), (path, method)
        public = spec.get("security") == []
        assert ("401" in responses) != public, (path, method)


def concrete(path):
    """A URL for a documented path: ids that exist nowhere (roles are checked before anything is looked up)."""
    values = {"entityId": "no-such-entity", "metricName": "m", "dashboardId": "2147483647", "tileId": "2147483647"}
    return "/api/v1" + re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_the_documented_roles_are_those_the_view_requires(client, tenant, path, method):
    spec = operation(path, method)
    url, roles = concrete(path), spec["x-roles"]
    if spec.get("security") == []:
        assert client.open(url, method=method).status_code == 200
        return
    assert_error(client.open(url, method=method, json={}), 401, "ANALYTICS_1001")
    without_roles = client.open(url, method=method, json={}, headers=bearer(mint_token(tenant, roles=("viewer",))))
    if roles:
        assert_error(without_roles, 403, "ANALYTICS_1005")
    else:
        assert without_roles.status_code not in (401, 403), without_roles.json
    for role in roles:  # each documented role alone is enough
        response = client.open(url, method=method, json={}, headers=bearer(mint_token(tenant, roles=(role,))))
        assert response.status_code not in (401, 403), (role, response.json)


# --- every answer of a walk through the API is documented -----------------------------------------------------


class CheckedClient:
    """Flask's test client of one tenant, checking every exchange against the document.

    The answer's status must be documented for the operation the URL and method match, its body valid against the
    schema documented for that status (an error's code among those listed); a request answered 2xx must fit the
    documented request body. ``seen`` collects ``(path, method, status)``.
    """

    def __init__(self, app, client, tenant, seen, roles=("admin", "ingest")):
        self.app, self.client, self.seen = app, client, seen
        self.headers = bearer(mint_token(tenant, roles=roles))

    def __call__(self, method, url, expect, json=None, headers=None, raw=False, path=None, **kwargs):
        """Send, check, and return the JSON body (the response itself with ``raw``).

        ``path``: the documented path, for a URL that routing refuses before it matches one (a bad id).
        """
        response = self.client.open(
            "/api/v1" + url, method=method, json=json, headers={**self.headers, **(headers or {})}, **kwargs
        )
        assert response.status_code == expect, (method, url, response.status_code, response.get_json(silent=True))
        self.check(method.lower(), url, response, json, path)
        return response if raw else response.get_json(silent=True)

    def check(self, method, url, response, body, path=None):
        if path is None:
            rule, _ = self.app.url_map.bind("localhost").match("/api/v1" + url.split("?")[0], method, return_rule=True)
            path = doc_path(rule.rule)
        status = str(response.status_code)
        responses = operation(path, method)["responses"]
        assert status in responses, f"{method.upper()} {path} answered {status}, not documented"
        self.seen.add((path, method, status))
        pointer = response_schema_pointer(path, method, status)
        if pointer is None:
            assert not response.data, (path, method, status)
        else:
            validator(pointer).validate(response.get_json())
        if response.status_code < 300 and body is not None:
            validator(f"#/paths/{escape(path)}/{method}/requestBody/content/application~1json/schema").validate(body)


def test_every_answer_of_a_walk_through_every_operation_is_documented(app, client, tenant, monkeypatch):
    """Successes and every documented client error of every operation, each answer checked (``CheckedClient``).

    500 and 503 are not provoked here (tests/api/test_outages.py); 401 and 403 are seen for every operation by the
    role test above.
    """
    seen = set()
    call = CheckedClient(app, client, tenant, seen)
    walk_entities_and_metrics(call, app, monkeypatch)
    walk_dashboards_and_tiles(call, CheckedClient(app, client, tenant, seen, roles=()))
    for path, method in OPERATIONS:
        if "requestBody" in operation(path, method):
            oversize = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
            response = call(method, concrete(path)[len("/api/v1") :], 413, data=oversize, raw=True,
                            content_type="application/json")  # fmt: skip
            assert_error(response, 413, "ANALYTICS_1203")
    expected = {
        (path, method, status)
        for path, method in OPERATIONS
        for status in operation(path, method)["responses"]
        if int(status) < 500 and status not in ("401", "403") and path != "/openapi.json"
    }
    assert sorted(expected - seen - ONLY_IN_A_RACE) == []


#: Answers that only three lost races in a row on one entity give (services/entities.py, ``_retried``).
ONLY_IN_A_RACE = {("/entities/{entityId}", "delete", "409")}


def walk_entities_and_metrics(call, app, monkeypatch):
    assert call("GET", "/entities", 200) == {"entities": []}
    dashboard = call("POST", "/dashboards", 201, json={"name": "Overview", "tiles": [TILE]})
    call("PUT", "/entities/event-1", 201, json={"entityType": "event", "name": "Gala", "dashboardId": dashboard["id"]})
    call("PUT", "/entities/event-1", 200, json={"entityType": "event", "name": None})
    call("PUT", "/entities/event-1", 409, json={"entityType": "venue"})
    call("PUT", "/entities/event-1", 404, json={"entityType": "event", "dashboardId": 2147483647})
    call("PUT", "/entities/event-1", 400, json={"entityType": "event", "colour": "red"})
    call("GET", "/entities/event-1", 200)
    call("GET", "/entities/nobody", 404)
    call("GET", "/entities", 200)

    call("POST", "/metrics", 201, json={"entityId": "event-1", "metricName": "ticketsSold", "value": 1})
    call("POST", "/metrics", 201, json=[{"entityId": "event-1", "metricName": "revenue", "value": 2.5}])
    batch = {"metrics": [{"entityId": "venue-1", "entityType": "venue", "metricName": "occupancy", "value": 40,
                          "timestamp": "2026-11-28T08:00:00Z"}]}  # fmt: skip
    call("POST", "/metrics", 201, json=batch)
    call("POST", "/metrics", 400, json=[])
    call("POST", "/metrics", 404, json={"entityId": "nobody", "metricName": "m", "value": 1})
    monkeypatch.setitem(app.config, "MAX_METRICS_PER_ENTITY", 3)
    call("POST", "/metrics", 409, json=[{"entityId": "event-1", "metricName": f"m{i}", "value": i} for i in range(2)])
    monkeypatch.setitem(app.config, "MAX_ENTITIES_PER_TENANT", 2)
    call("POST", "/metrics", 409, json={"entityId": "venue-2", "entityType": "venue", "metricName": "m", "value": 1})
    call("PUT", "/entities/venue-3", 409, json={"entityType": "venue"})
    monkeypatch.setitem(app.config, "MAX_INGEST_BATCH", 1)
    two = [{"entityId": "event-1", "metricName": "ticketsSold", "value": i} for i in (1, 2)]
    call("POST", "/metrics", 413, json=two)  # more than MAX_INGEST_BATCH
    monkeypatch.undo()

    call("GET", "/entities/event-1/metrics", 200)
    call("GET", "/entities/nobody/metrics", 404)
    history = "/entities/event-1/metrics/ticketsSold/history"
    assert call("GET", history + "?limit=1", 200)["points"]
    assert call("GET", history + "?step=60", 200)["points"]
    call("GET", history + "?colour=red", 400)
    call("GET", "/entities/nobody/metrics/m/history", 404)

    call("DELETE", "/entities/venue-1", 204)
    call("DELETE", "/entities/venue-1", 404)
    call("DELETE", "/entities/" + "x" * 129, 400)


def walk_dashboards_and_tiles(call, viewer):
    call("GET", "/dashboards", 200)
    first = call("POST", "/dashboards", 201, json={"name": "Overview", "tiles": [TILE, {**TILE, "title": "U"}]})
    call("POST", "/dashboards", 201, json={"name": "Copy", "copyOf": first["id"]})
    call("POST", "/dashboards", 404, json={"name": "Copy", "copyOf": 2147483647})
    call("POST", "/dashboards", 400, json={"tiles": []})
    call("POST", "/dashboards", 400, data="not json", content_type="text/plain")
    base = f"/dashboards/{first['id']}"
    call("GET", base, 200)
    call("GET", "/dashboards/2147483647", 404)
    call("GET", "/dashboards/not-an-id", 400, path="/dashboards/{dashboardId}")
    call("PATCH", base, 200, json={"name": "Renamed", "expectedVersion": 1})
    call("PATCH", base, 409, json={"name": "Renamed", "expectedVersion": 7})
    call("PATCH", base, 400, json={"name": "Renamed", "colour": "red"})
    call("PATCH", "/dashboards/2147483647", 404, json={"name": "x"})

    added = call("POST", base + "/tiles", 201, json={**TILE, "unit": "%", "thresholds": {"warning": 80}})
    call("POST", base + "/tiles", 409, json=TILE, headers={"If-Match": '"1"'})
    call("POST", base + "/tiles", 400, json={**TILE, "kind": "pie"})
    call("POST", "/dashboards/2147483647/tiles", 404, json=TILE)
    tile_url = f"{base}/tiles/{added['tile']['id']}"
    call("PATCH", tile_url, 200, json={"title": "Queue", "unit": None})
    call("PATCH", tile_url, 400, json={})
    call("PATCH", tile_url, 409, json={"title": "Queue", "expectedVersion": 1})
    call("PATCH", f"{base}/tiles/2147483647", 404, json={"title": "Queue"})
    tiles = [tile["id"] for tile in call("GET", base, 200)["tiles"]]
    reordered = call("PUT", base + "/tiles/order", 200, json={"tileIds": tiles[::-1]})
    assert reordered["order"] == tiles[::-1]
    call("PUT", base + "/tiles/order", 400, json={"tileIds": tiles[:1]})
    call("PUT", base + "/tiles/order", 409, json={"tileIds": tiles, "expectedVersion": 1})
    call("PUT", "/dashboards/2147483647/tiles/order", 404, json={"tileIds": []})
    call("DELETE", tile_url, 200)
    call("DELETE", tile_url, 404)
    call("DELETE", f"{base}/tiles/{tiles[0]}", 409, headers={"If-Match": "1"})
    call("DELETE", f"{base}/tiles/{tiles[0]}", 400, headers={"If-Match": 'W/"1"'})

    call("PUT", "/entities/event-2", 201, json={"entityType": "event", "dashboardId": first["id"]})
    call("DELETE", base, 409, headers={"If-Match": "1"})
    call("DELETE", base, 400, headers={"If-Match": "one"})
    assert call("DELETE", base, 200)["detached"] == ["event-2"]
    call("DELETE", base, 404)

    viewer("POST", "/dashboards", 403, json={"name": "x"})
    viewer("GET", "/dashboards", 401, headers={"Authorization": "Bearer not-a-token"})


# --- the explorer page (development servers) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_app(app, tmp_path_factory):
    """A development server's app (ADMIN_DEV_LOGIN=1) on the in-process app's database."""
    env = server_env(
        tmp_path_factory.mktemp("dev"), DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], ADMIN_DEV_LOGIN="1"
    )
    return app_from_env(env)


def test_a_development_server_lists_every_operation_on_a_page_without_scripts(dev_app):
    client = dev_app.test_client()
    response = client.get("/api/explorer")
    assert response.status_code == 200
    page = response.text
    assert page.count('<tr class="operation">') == len(OPERATIONS)
    for path, method in OPERATIONS:
        assert f"<code>{method.upper()} /api/v1{path}</code>" in page
    assert "<script" not in page and "style=" not in page  # the Content-Security-Policy allows neither inline
    assert "ingest or admin" in page and "ANALYTICS_1205" in page
    assert 'id="api-explorer-link"' in client.get("/").text


def test_other_servers_have_no_explorer(client):
    assert_error(client.get("/api/explorer"), 404, "ANALYTICS_1201")
    assert 'id="api-explorer-link"' not in client.get("/").text
