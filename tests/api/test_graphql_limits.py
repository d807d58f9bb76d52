"""/graphql's guard rails in process: batched reads, depth, cost, aliases, page sizes, introspection, sizes,
and hostile requests, each followed by a well-behaved request that must still be answered correctly.

The batched reads count SQL statements on both backends; the rest is decided before any SQL (SQLite).
"""

import json
import time

import pytest
from sqlalchemy import event

from app.config import load_config
from app.extensions import db
from testkit import mint_token, unique
from tests.api.conftest import Gql, assert_gql_error
from tests.conftest import environment

sqlite_only = pytest.mark.backends("sqlite")

METRICS_AND_DASHBOARDS = """{ entities { entityId metrics { metricName value timestamp seq }
    dashboard { id name tiles { id title metricName } } } }"""


@pytest.fixture
def bystander(gql, admin_api):
    """A well-behaved request of this tenant: ``bystander()`` asserts it is answered correctly."""
    entity_id = unique("event")
    admin_api.put_entity(entity_id, "event", admin_api.create_dashboard()["id"])
    admin_api.ingest((entity_id, "m", 42))

    def check():
        data = gql.data("query($e: String!) { entity(entityId: $e) { entityId metrics { value } } }", {"e": entity_id})
        assert data == {"entity": {"entityId": entity_id, "metrics": [{"value": 42.0}]}}

    return check


def statements_of(app, run):
    """The SQL statements ``run()`` sends through the app's engine."""
    seen = []
    with app.app_context():
        engine = db.engine

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_entities_metrics_and_dashboards_cost_a_constant_number_of_statements(app, gql, admin_api):
    dashboards = [admin_api.create_dashboard(f"D{i}")["id"] for i in range(3)]

    def add_entities(count):
        for i in range(count):
            entity_id = unique("event")
            admin_api.put_entity(entity_id, "event", dashboards[i % 3])
            admin_api.ingest((entity_id, "a", i), (entity_id, "b", i + 0.5))

    add_entities(5)
    few = statements_of(app, lambda: gql.data(METRICS_AND_DASHBOARDS))
    add_entities(45)
    answers = []
    many = statements_of(app, lambda: answers.append(gql.data(METRICS_AND_DASHBOARDS)))

    entities = answers[0]["entities"]
    assert len(entities) == 50
    assert all(len(e["metrics"]) == 2 and len(e["dashboard"]["tiles"]) == 2 for e in entities)
    # The page of entities, their metrics in one query, their dashboards and those dashboards' tiles
    # (and SQLite's BEGIN, which the app emits itself).
    assert len(many) == len(few), many
    assert len([s for s in many if s.lstrip().upper().startswith("SELECT")]) == 4, many


@sqlite_only
def test_dashboards_tiles_are_read_in_one_batch(app, gql, admin_api):
    for i in range(20):
        admin_api.create_dashboard(f"D{i}")
    answers = []
    seen = statements_of(app, lambda: answers.append(gql.data("{ dashboards { id tiles { id } } }")))
    assert len(answers[0]["dashboards"]) == 20 and all(len(d["tiles"]) == 2 for d in answers[0]["dashboards"])
    assert len(seen) <= 4, seen


@sqlite_only
def test_lists_are_paged_at_most_max_page(app, gql, admin_api, monkeypatch):
    monkeypatch.setitem(app.config, "GRAPHQL_MAX_PAGE", 2)
    ids = sorted(unique("event") for _ in range(3))
    for entity_id in ids:
        admin_api.put_entity(entity_id, "event")
    dashboards = [admin_api.create_dashboard(f"D{i}")["id"] for i in range(3)]

    first = gql.data("{ entities { entityId } dashboards { id } }")
    assert [e["entityId"] for e in first["entities"]] == ids[:2]
    assert [d["id"] for d in first["dashboards"]] == dashboards[:2]
    rest = gql.data(
        "query($a: String!, $d: Int!) { entities(after: $a) { entityId } dashboards(after: $d, limit: 1) { id } }",
        {"a": ids[1], "d": dashboards[1]},
    )
    assert rest == {"entities": [{"entityId": ids[2]}], "dashboards": [{"id": dashboards[2]}]}
    code, message, _ = gql.error("{ entities(limit: 3) { entityId } }")
    assert (code, message) == ("ANALYTICS_1200", "limit must be between 1 and 2")


@sqlite_only
def test_depth_over_the_limit_is_refused_before_it_runs(app, gql, monkeypatch, bystander):
    query = "{ entities { dashboard { tiles { id } } } }"
    assert gql.data(query)["entities"][0]["dashboard"]["tiles"]
    monkeypatch.setitem(app.config, "GRAPHQL_MAX_DEPTH", 3)
    code, message, body = gql.error(query)
    assert (code, message) == ("ANALYTICS_1200", "operation anonymous is 4 fields deep; the limit is 3")
    assert body["data"] is None
    # Fragments count where they are spread.
    code, message, _ = gql.error("query Q { entities { ...E } } fragment E on Entity { dashboard { tiles { id } } }")
    assert message == "operation Q is 4 fields deep; the limit is 3"
    bystander()


@sqlite_only
def test_cost_over_the_limit_is_refused_and_a_bounded_query_runs(gql, bystander):
    code, message, _ = gql.error('{ entities { history(metricName: "m") { points { t value } } } }')
    assert code == "ANALYTICS_1200" and message.startswith("operation anonymous costs an estimated ")
    assert message.endswith("; the limit is 20000")
    gql.data('{ entities(limit: 5) { history(metricName: "m", limit: 100) { points { t value } } } }')
    # A variable limit counts as the most it may be.
    code, _, _ = gql.error(
        'query($n: Int) { entities(limit: 5) { history(metricName: "m", limit: $n) { points { t value seq } } } }',
        {"n": 1},
    )
    assert code == "ANALYTICS_1200"
    bystander()


@sqlite_only
def test_aliases_over_the_limit_are_refused(gql, bystander):
    def aliased(count):
        return "{ " + " ".join(f"a{i}: entities(limit: 1) {{ entityId }}" for i in range(count)) + " }"

    assert len(gql.data(aliased(15))) == 15
    code, message, _ = gql.error(aliased(16))
    assert (code, message) == ("ANALYTICS_1200", "operation anonymous uses 16 aliases; the limit is 15")
    bystander()


@sqlite_only
def test_a_fragment_bomb_is_refused_in_linear_time(gql, bystander):
    # F0 spreads F1 twice, F1 spreads F2 twice, ...: 2**40 fields once expanded.
    fragments = " ".join(f"fragment F{i} on Entity {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    query = "{ entities { ...F0 } } " + fragments + " fragment F40 on Entity { entityId name }"
    started = time.perf_counter()
    code, message, _ = gql.error(query)
    assert time.perf_counter() - started < 1.0
    assert code == "ANALYTICS_1200" and "costs an estimated" in message
    bystander()


@sqlite_only
@pytest.mark.parametrize(
    "query",
    [
        "{ entities " + "{a" * 3000 + "}" * 3001,  # nested deeper than the parser recurses
        "{ entities { dashboard { tiles { id } } } } " + "{" * 3000,
        "query Q { entities { ...A } } fragment A on Entity { ...B } fragment B on Entity { ...A }",
        "{ entities { ...Missing } }",
        "{ " + " ".join(["entities { entityId }"] * 400) + " }",
        "{ entities { " + "name " * 1900 + "} }",
    ],
    ids=["deep-nesting", "unbalanced", "fragment-cycle", "unknown-fragment", "repeated-lists", "repeated-fields"],
)
def test_hostile_documents_are_1200_and_the_next_request_is_answered(gql, query, bystander):
    started = time.perf_counter()
    response = gql.post(query)
    assert time.perf_counter() - started < 2.0
    assert_gql_error(response, 200, "ANALYTICS_1200")
    assert "Traceback" not in response.text
    bystander()


@sqlite_only
def test_a_query_over_the_length_limit_is_413(gql, client, app, bystander):
    limit = app.config["GRAPHQL_MAX_QUERY_LENGTH"]
    query = "{ entities { entityId } }" + " " * limit
    assert_gql_error(gql.post(query), 413, "ANALYTICS_1203", f"query over {limit} characters")
    response = client.get("/graphql", query_string={"query": query}, headers=gql.headers)
    assert_gql_error(response, 413, "ANALYTICS_1203")
    bystander()


@sqlite_only
def test_a_body_over_max_request_bytes_is_413(gql, client, app, bystander):
    body = json.dumps(
        {"query": "{ entities { entityId } }", "variables": {"x": "y" * app.config["MAX_CONTENT_LENGTH"]}}
    )
    response = client.post("/graphql", data=body, content_type="application/json", headers=gql.headers)
    assert_gql_error(response, 413, "ANALYTICS_1203")
    bystander()


@sqlite_only
@pytest.mark.parametrize(
    ("data", "content_type", "fragment"),
    [
        (json.dumps([{"query": "{ entities { entityId } }"}] * 2), "application/json", "Batching is not enabled"),
        ("{ entities { entityId } }", "text/plain", "Unsupported content type"),
        ('{"query": ', "application/json", "Unable to parse request body as JSON"),
        ("[" * 100_000 + "]" * 100_000, "application/json", "nested too deeply"),
        (b'{"query": "\xff"}', "application/json", "not UTF-8"),
        (json.dumps({"query": 5}), "application/json", "must be a string"),
        (json.dumps({"query": "{ entities { entityId } }", "variables": [1]}), "application/json", "variables"),
    ],
    ids=["batch", "not-json", "malformed-json", "nested-json", "not-utf8", "query-not-string", "variables-not-object"],
)
def test_a_request_that_is_not_graphql_over_http_is_400(gql, client, data, content_type, fragment, bystander):
    response = client.post("/graphql", data=data, content_type=content_type, headers=gql.headers)
    assert_gql_error(response, 400, "ANALYTICS_1200", fragment)
    bystander()


@sqlite_only
def test_queries_over_get_and_no_mutations(gql, client, admin_api):
    entity_id = unique("event")
    admin_api.put_entity(entity_id, "event")
    response = client.get("/graphql", query_string={"query": "{ entities { entityId } }"}, headers=gql.headers)
    assert response.status_code == 200 and response.json == {"data": {"entities": [{"entityId": entity_id}]}}
    mutation = f'mutation {{ deleteEntity(entityId: "{entity_id}") }}'
    response = client.get("/graphql", query_string={"query": mutation}, headers=gql.headers)
    assert_gql_error(response, 400, "ANALYTICS_1200", "mutations are not allowed when using GET")
    assert admin_api.call("GET", f"/entities/{entity_id}").status_code == 200
    response = client.put("/graphql", headers=gql.headers)
    assert_gql_error(response, 405, "ANALYTICS_1204")
    assert response.headers["Allow"] == "GET, POST"


INTROSPECTION = '{ __schema { queryType { name } } __type(name: "Entity") { name } }'


@sqlite_only
def test_introspection_and_graphiql_are_off_by_default(gql, client, app):
    assert app.config["GRAPHQL_INTROSPECTION"] is False
    response = gql.post(INTROSPECTION)
    body = assert_gql_error(response, 200, "ANALYTICS_1200", "introspection")
    assert len(body["errors"]) >= 2
    assert gql.data("{ __typename }") == {"__typename": "Query"}
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 401 and b"graphiql" not in page.data.lower()


@sqlite_only
def test_introspection_and_graphiql_on(gql, client, app, monkeypatch):
    monkeypatch.setitem(app.config, "GRAPHQL_INTROSPECTION", True)
    assert gql.data(INTROSPECTION) == {"__schema": {"queryType": {"name": "Query"}}, "__type": {"name": "Entity"}}
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.content_type.startswith("text/html") and b"graphiql" in page.data
    assert "https://unpkg.com" in page.headers["Content-Security-Policy"]
    # The page itself needs no token (it asks for nothing); every query it sends does.
    assert_gql_error(client.post("/graphql", json={"query": INTROSPECTION}), 401, "ANALYTICS_1001")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"ADMIN_DEV_LOGIN": "1"}, True),
        ({"ADMIN_DEV_LOGIN": "1", "GRAPHQL_INTROSPECTION": "0"}, False),
        ({"GRAPHQL_INTROSPECTION": "1"}, True),
    ],
    ids=["production", "development", "development-off", "production-on"],
)
def test_introspection_defaults_to_development(tmp_path, env, expected):
    with environment({"JWT_SECRET": "s" * 32, **env}):
        assert load_config(str(tmp_path))["GRAPHQL_INTROSPECTION"] is expected


@sqlite_only
def test_a_request_with_a_token_of_another_tenant_sees_nothing_after_an_attack(client, gql, bystander):
    attacker = Gql(client, mint_token(unique("attacker"), roles=("admin",)))
    for _ in range(3):
        attacker.post("{ entities { " + "name " * 1900 + "} }")
        attacker.post("[" * 50_000)
    assert attacker.data("{ entities { entityId } dashboards { id } }") == {"entities": [], "dashboards": []}
    bystander()


@sqlite_only
def test_a_query_text_checked_once_answers_the_same_again_and_what_is_kept_is_bounded(app, gql, bystander):
    from app.graphql.limits import CHECKED_KEPT

    schema = app.extensions["graphql_schema"]
    for _ in range(2):  # the second time from what the first check kept
        assert gql.error("{ entities { nope } }")[:2] == (
            "ANALYTICS_1200",
            "Cannot query field 'nope' on type 'Entity'. Did you mean 'name'?",
        )
        assert len(gql.data("{ entities(limit: 1) { entityId } }")["entities"]) <= 1
    for n in range(CHECKED_KEPT + 20):  # distinct query texts: the oldest are forgotten
        gql.data(f"{{ entities(limit: 1) {{ entityId }} e{n}: dashboards(limit: 1) {{ id }} }}")
    assert len(schema.checked_documents) <= CHECKED_KEPT
    bystander()
