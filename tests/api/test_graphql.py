"""/graphql in process: the same answers, tenants, roles and error codes as REST, through the same services.

Everything here is decided before or above SQL, so SQLite alone (the batched reads count
their statements on both backends in test_graphql_limits.py).
"""

import pytest

from testkit import mint_token, unique
from tests.api.conftest import NEW_TILE, Gql, assert_gql_error

pytestmark = pytest.mark.backends("sqlite")

ENTITY = "{ entityId entityType name dashboardId }"
DASHBOARD = "{ id name version tiles { id position title metricName kind unit thresholds } }"
T = '{title: "T", metricName: "m", kind: "number"}'
CHANGE = "{ action version order tile { id position title metricName kind unit thresholds } }"


def test_reads_answer_what_rest_answers(gql, admin_api, entity):
    entity_id, dashboard = entity
    admin_api.ingest((entity_id, "ticketsSold", 5), (entity_id, "revenue", 9.5))
    rest_metrics = admin_api.call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"]

    data = gql.data(
        f"""query($id: String!, $d: Int!) {{
            entities {ENTITY}
            entity(entityId: $id) {{ entityId dashboard {DASHBOARD} metrics {{ metricName value timestamp seq }} }}
            dashboards {{ id name version }}
            dashboard(id: $d) {DASHBOARD}
        }}""",
        {"id": entity_id, "d": dashboard["id"]},
    )

    assert data["entities"] == admin_api.call("GET", "/entities", 200)["entities"]
    assert data["dashboards"] == admin_api.call("GET", "/dashboards", 200)["dashboards"]
    assert data["dashboard"] == dashboard
    assert data["entity"]["dashboard"] == dashboard
    assert {m.pop("metricName"): m for m in data["entity"]["metrics"]} == rest_metrics


def test_history_answers_what_rest_answers(gql, admin_api, entity):
    entity_id, _ = entity
    for value in (1, 2, 3):
        admin_api.ingest((entity_id, "m", value))
    rest = admin_api.call("GET", f"/entities/{entity_id}/metrics/m/history?limit=2", 200)
    query = """query($id: String!) { entity(entityId: $id) {
        raw: history(metricName: "m", limit: 2) { entityId metricName step next points { t value seq } buckets { t } }
        steps: history(metricName: "m", step: 60) { step points { t } buckets { t min max avg last count } } } }"""
    data = gql.data(query, {"id": entity_id})["entity"]

    assert data["raw"] == {
        "entityId": entity_id,
        "metricName": "m",
        "step": None,
        "next": rest["next"],
        "points": rest["points"],
        "buckets": [],
    }
    rest_buckets = admin_api.call("GET", f"/entities/{entity_id}/metrics/m/history?step=60", 200)["points"]
    assert data["steps"] == {"step": 60, "points": [], "buckets": rest_buckets}
    code, message, _ = gql.error(query.replace("limit: 2", "limit: -1"), {"id": entity_id})
    assert (code, "limit must be a positive integer" in message) == ("ANALYTICS_1200", True)


def test_mutations_do_what_their_rest_twins_do(gql, admin_api):
    entity_id = unique("event")
    created = gql.data(f'mutation {{ createDashboard(name: "Ops", tiles: [{T}]) {DASHBOARD} }}')["createDashboard"]
    assert created == admin_api.dashboard(created["id"])
    d = created["id"]
    registered = gql.data(
        "mutation($e: String!, $d: Int) {"
        ' registerEntity(entityId: $e, entityType: "event", name: "N", dashboardId: $d)'
        f" {{ created entity {ENTITY} }} }}",
        {"e": entity_id, "d": d},
    )["registerEntity"]
    assert registered == {"created": True, "entity": admin_api.call("GET", f"/entities/{entity_id}", 200)}
    renamed = gql.data(
        "mutation($e: String!) {"
        ' registerEntity(entityId: $e, entityType: "event", name: "M") { created entity { name dashboardId } } }',
        {"e": entity_id},
    )
    assert renamed["registerEntity"] == {"created": False, "entity": {"name": "M", "dashboardId": d}}

    ingested = gql.data(
        "mutation($m: [MetricInput!]!) { recordMetrics(metrics: $m) { accepted lastSeq } }",
        {
            "m": [
                {"entityId": entity_id, "metricName": "m", "value": 4},
                {"entityId": entity_id, "metricName": "n", "value": 1.5},
            ]
        },
    )["recordMetrics"]
    rest_metrics = admin_api.call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"]
    assert ingested == {"accepted": 2, "lastSeq": max(v["seq"] for v in rest_metrics.values())}

    added = gql.data(
        f"mutation($d: Int!, $t: TileInput!) {{ addTile(dashboardId: $d, tile: $t) {CHANGE} }}", {"d": d, "t": NEW_TILE}
    )["addTile"]
    after = admin_api.dashboard(d)
    assert added == {"action": "added", "version": 2, "order": None, "tile": after["tiles"][1]}
    first, second = (t["id"] for t in after["tiles"])
    updated = gql.data(
        f"mutation {{ updateTile(dashboardId: {d}, tileId: {first}, expectedVersion: 2,"
        f' tile: {{unit: "%", thresholds: {{warning: 80}}}}) {CHANGE} }}'
    )["updateTile"]
    assert updated["tile"] == {**after["tiles"][0], "unit": "%", "thresholds": {"warning": 80.0}}
    reordered = gql.data(f"mutation {{ reorderTiles(dashboardId: {d}, tileIds: [{second}, {first}]) {CHANGE} }}")[
        "reorderTiles"
    ]
    assert (reordered["action"], reordered["order"], reordered["version"]) == ("reordered", [second, first], 4)
    removed = gql.data(f"mutation {{ removeTile(dashboardId: {d}, tileId: {first}) {CHANGE} }}")["removeTile"]
    assert (removed["action"], removed["tile"]["id"], removed["version"]) == ("removed", first, 5)
    assert [t["id"] for t in admin_api.dashboard(d)["tiles"]] == [second]
    assert gql.data(f'mutation {{ renameDashboard(id: {d}, name: "Ops 2") {{ name version }} }}')[
        "renameDashboard"
    ] == {"name": "Ops 2", "version": 5}

    copy = gql.data(f'mutation {{ createDashboard(name: "Copy", copyOf: {d}) {DASHBOARD} }}')["createDashboard"]
    attached = gql.data(
        f"mutation($e: String!) {{ attachDashboard(entityId: $e, dashboardId: {copy['id']}) {ENTITY} }}",
        {"e": entity_id},
    )
    assert attached["attachDashboard"]["dashboardId"] == copy["id"]
    deleted = gql.data(f"mutation {{ deleteDashboard(id: {copy['id']}) {{ id detached }} }}")["deleteDashboard"]
    assert deleted == {"id": copy["id"], "detached": [entity_id]}
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] is None
    assert gql.data("mutation($e: String!) { deleteEntity(entityId: $e) }", {"e": entity_id}) == {"deleteEntity": True}
    assert admin_api.call("GET", f"/entities/{entity_id}").status_code == 404


def test_a_mutation_then_a_read_in_one_request_reads_afresh(gql, entity):
    entity_id, _ = entity
    query = """mutation($e: String!) {
        before: attachDashboard(entityId: $e, dashboardId: null) { dashboard { id } metrics { value } }
        write: recordMetrics(metrics: [{entityId: $e, metricName: "m", value: 7}]) { accepted }
        after: attachDashboard(entityId: $e, dashboardId: null) { metrics { value } } }"""
    data = gql.data(query, {"e": entity_id})
    assert data["before"] == {"dashboard": None, "metrics": []}
    assert data["after"] == {"metrics": [{"value": 7.0}]}


# Tenant isolation: another tenant's objects read as null, and mutations naming them fail as REST's 404s.


def test_another_tenants_objects_are_null_and_unlisted(gql, client, entity):
    entity_id, dashboard = entity
    other = Gql(client, mint_token(unique("other"), roles=("admin", "ingest")))
    data = other.data(
        "query($e: String!, $d: Int!) { entity(entityId: $e) { name } dashboard(id: $d) { name }"
        " entities { entityId } dashboards { id } }",
        {"e": entity_id, "d": dashboard["id"]},
    )
    assert data == {"entity": None, "dashboard": None, "entities": [], "dashboards": []}
    assert gql.data('{ entity(entityId: "no-such") { name } dashboard(id: 2147483647) { name } }') == {
        "entity": None,
        "dashboard": None,
    }


@pytest.mark.parametrize(
    ("mutation", "code"),
    [
        ('recordMetrics(metrics: [{entityId: "$E", metricName: "m", value: 1}]) { accepted }', "ANALYTICS_1101"),
        ('addTile(dashboardId: $D, tile: {title: "T", metricName: "m", kind: "number"}) { version }', "ANALYTICS_1201"),
        ('updateTile(dashboardId: $D, tileId: $T, tile: {title: "x"}) { version }', "ANALYTICS_1201"),
        ("removeTile(dashboardId: $D, tileId: $T) { version }", "ANALYTICS_1201"),
        ("reorderTiles(dashboardId: $D, tileIds: [$T]) { version }", "ANALYTICS_1201"),
        ('renameDashboard(id: $D, name: "x") { version }', "ANALYTICS_1201"),
        ("deleteDashboard(id: $D) { id }", "ANALYTICS_1201"),
        ('createDashboard(name: "x", copyOf: $D) { id }', "ANALYTICS_1201"),
        ('attachDashboard(entityId: "$E", dashboardId: null) { name }', "ANALYTICS_1101"),
        ('deleteEntity(entityId: "$E")', "ANALYTICS_1101"),
    ],
    ids=lambda v: v.split("(")[0] if "(" in str(v) else v,
)
def test_mutations_on_another_tenants_objects_fail_as_missing_and_change_nothing(
    client, entity, admin_api, mutation, code
):
    entity_id, dashboard = entity
    other = Gql(client, mint_token(unique("other"), roles=("admin", "ingest")))
    text = (
        mutation.replace("$E", entity_id)
        .replace("$D", str(dashboard["id"]))
        .replace("$T", str(dashboard["tiles"][0]["id"]))
    )
    assert other.error(f"mutation {{ {text} }}")[0] == code
    assert admin_api.dashboard(dashboard["id"]) == dashboard
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] == dashboard["id"]


# Roles: those of the REST twin.

MUTATIONS = {
    "recordMetrics": (
        'recordMetrics(metrics: [{entityId: "$E", metricName: "m", value: 1}]) { accepted }',
        ("ingest", "admin"),
    ),
    "createDashboard": ('createDashboard(name: "x") { id }', ("admin",)),
    "renameDashboard": ('renameDashboard(id: $D, name: "x") { id }', ("admin",)),
    "addTile": (
        'addTile(dashboardId: $D, tile: {title: "T", metricName: "m", kind: "number"}) { version }',
        ("admin",),
    ),
    "updateTile": ('updateTile(dashboardId: $D, tileId: $T, tile: {title: "x"}) { version }', ("admin",)),
    "removeTile": ("removeTile(dashboardId: $D, tileId: $T) { version }", ("admin",)),
    "reorderTiles": ("reorderTiles(dashboardId: $D, tileIds: [$U, $T]) { version }", ("admin",)),
    "attachDashboard": ('attachDashboard(entityId: "$E", dashboardId: null) { name }', ("admin",)),
    "registerEntity": ('registerEntity(entityId: "new-one", entityType: "event") { created }', ("admin",)),
    "deleteDashboard": ("deleteDashboard(id: $D) { id }", ("admin",)),
    "deleteEntity": ('deleteEntity(entityId: "$E")', ("admin",)),
}


@pytest.mark.parametrize("roles", [(), ("viewer",), ("ingest",), ("admin",)], ids=["none", "viewer", "ingest", "admin"])
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_mutation_needs_the_role_of_its_rest_twin(gql_with, entity, admin_api, name, roles):
    entity_id, dashboard = entity
    text, allowed = MUTATIONS[name]
    first, second = (t["id"] for t in dashboard["tiles"])
    text = text.replace("$E", entity_id).replace("$D", str(dashboard["id"])).replace("$T", str(first))
    text = text.replace("$U", str(second))
    response = gql_with(*roles).post(f"mutation {{ {text} }}")
    if set(roles) & set(allowed):
        assert response.status_code == 200 and "errors" not in response.json, response.json
    else:
        body = assert_gql_error(response, 200, "ANALYTICS_1005", f"requires role {' or '.join(allowed)}")
        assert body["data"] is None and body["errors"][0]["path"] == [name]
        assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_reads_need_no_role(gql_with, entity):
    entity_id, _ = entity
    data = gql_with().data(
        "query($e: String!) { entities { entityId } entity(entityId: $e) { metrics { value } } dashboards { id } }",
        {"e": entity_id},
    )
    assert data["entities"] == [{"entityId": entity_id}]


# Tokens: checked before any GraphQL runs, as REST checks them.


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "ANALYTICS_1001"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "ANALYTICS_1002"),
        ({"Authorization": "Bearer not.a.jwt"}, "ANALYTICS_1002"),
        ({"Authorization": f"Bearer {mint_token('t', ttl=-3600)}"}, "ANALYTICS_1003"),
        ({"Authorization": f"Bearer {mint_token(None)}"}, "ANALYTICS_1004"),
    ],
    ids=["no-token", "not-bearer", "malformed", "expired", "no-tenant"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_without_a_valid_token_is_401(client, headers, code, method):
    if method == "GET":
        response = client.get("/graphql", query_string={"query": "{ entities { name } }"}, headers=headers)
    else:
        response = client.post("/graphql", json={"query": "{ entities { name } }"}, headers=headers)
    body = assert_gql_error(response, 401, code)
    assert "data" not in body


# Errors: the catalogue's codes, naming the field; nothing internal leaks.


@pytest.mark.parametrize(
    ("query", "variables", "fragment"),
    [
        ("{ entities { nope } }", None, "nope"),
        ("{ entities { ", None, "Syntax Error"),
        ('{ dashboard(id: "one") { id } }', None, "Int cannot represent"),
        ("query($d: Int!) { dashboard(id: $d) { id } }", {"d": "x"}, "$d"),
        ("query($d: Int!) { dashboard(id: $d) { id } }", {"d": 2**40}, "$d"),
        ("query($d: Int!) { dashboard(id: $d) { id } }", None, "$d"),
        ("{ entities(limit: 101) { name } }", None, "limit must be between 1 and 100"),
        ("{ entities(limit: 0) { name } }", None, "limit must be between 1 and 100"),
        ('{ entity(entityId: "") { name } }', None, "entityId must not be empty"),
        ("query($e: String!) { entity(entityId: $e) { name } }", {"e": "e" * 129}, "entityId must be at most 128"),
        ('{ entity(entityId: "a\\u0000b") { name } }', None, "entityId must not contain control characters"),
        ('{ entities(after: "\\u0007") { name } }', None, "after must not contain control characters"),
        (
            'mutation { createDashboard(name: "X", tiles: [{title: "T", metricName: "m", kind: "pie"}]) { id } }',
            None,
            "tiles[0]: kind must be one of",
        ),
        (
            'mutation { createDashboard(name: "X", tiles: [{title: "T", metricName: "m", kind: "number",'
            ' thresholds: {w: "80"}}]) { id } }',
            None,
            "tiles[0]: w must be a number",
        ),
        (
            'mutation { createDashboard(name: "X", tiles: [{title: "T", metricName: "m", kind: "number",'
            " thresholds: [80]}]) { id } }",
            None,
            "thresholds must be an object",
        ),
        ('mutation { createDashboard(name: "") { id } }', None, "name must not be empty"),
        (
            'mutation { createDashboard(name: "X", tiles: [], copyOf: 1) { id } }',
            None,
            "give tiles or copyOf, not both",
        ),
        ("mutation { recordMetrics(metrics: []) { accepted } }", None, "no metrics given"),
        (
            'mutation { recordMetrics(metrics: [{entityId: "e", metricName: "", value: 1}]) { accepted } }',
            None,
            "metricName must not be empty",
        ),
        (
            'mutation { recordMetrics(metrics: [{entityId: "e", metricName: "m", value: "1"}]) { accepted } }',
            None,
            "Float cannot represent",
        ),
        (
            'mutation { recordMetrics(metrics: [{entityId: "e", metricName: "m", value: 1, timestamp: "yesterday"}])'
            " { accepted } }",
            None,
            "timestamp must be an ISO-8601",
        ),
        (
            'mutation { registerEntity(entityId: "e", entityType: "planet") { created } }',
            None,
            "entityType must be one of",
        ),
        (
            'mutation { registerEntity(entityId: "e", entityType: "event", name: "\\u0001") { created } }',
            None,
            "name must be printable",
        ),
        ("mutation { updateTile(dashboardId: 1, tileId: 1, tile: {}) { version } }", None, "nothing to update"),
        (
            "mutation { updateTile(dashboardId: 1, tileId: 1, tile: {title: null}) { version } }",
            None,
            "title is required",
        ),
    ],
)
def test_invalid_input_is_1200_naming_the_field(gql, query, variables, fragment):
    code, message, body = gql.error(query, variables)
    assert (code, fragment in message) == ("ANALYTICS_1200", True), body
    assert body["data"] is None or set(body["data"].values()) == {None}


def test_more_metrics_than_a_batch_holds_is_1203(gql, monkeypatch, app):
    monkeypatch.setitem(app.config, "MAX_INGEST_BATCH", 2)
    metrics = [{"entityId": "e", "metricName": "m", "value": i} for i in range(3)]
    code, message, _ = gql.error(
        "mutation($m: [MetricInput!]!) { recordMetrics(metrics: $m) { accepted } }", {"m": metrics}
    )
    assert (code, message) == ("ANALYTICS_1203", "at most 2 metrics per request")


def test_a_stale_expected_version_is_1202(gql, entity, admin_api):
    _, dashboard = entity
    code, message, _ = gql.error(
        f"mutation {{ addTile(dashboardId: {dashboard['id']}, tile: {T}, expectedVersion: 7) {{ version }} }}"
    )
    assert code == "ANALYTICS_1202" and "is at version 1, not 7" in message
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_too_many_metric_names_is_1205(gql, entity, monkeypatch, app):
    entity_id, _ = entity
    monkeypatch.setitem(app.config, "MAX_METRICS_PER_ENTITY", 1)
    metrics = [{"entityId": entity_id, "metricName": n, "value": 1} for n in ("a", "b")]
    assert (
        gql.error("mutation($m: [MetricInput!]!) { recordMetrics(metrics: $m) { accepted } }", {"m": metrics})[0]
        == "ANALYTICS_1205"
    )


def test_an_entity_of_another_type_is_1202(gql, entity):
    entity_id, _ = entity
    assert (
        gql.error(f'mutation {{ registerEntity(entityId: "{entity_id}", entityType: "venue") {{ created }} }}')[0]
        == "ANALYTICS_1202"
    )


def test_an_unexpected_error_is_1000_and_tells_nothing(gql, monkeypatch, caplog, entity):
    from app.services import entities

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret detail at /srv/app.py line 3")

    monkeypatch.setattr(entities, "list_entities", broken)
    entity_id, _ = entity
    response = gql.post("query($e: String!) { entities { name } entity(entityId: $e) { entityId } }", {"e": entity_id})
    body = assert_gql_error(response, 200, "ANALYTICS_1000", "internal error")
    assert body["data"] == {"entities": None, "entity": {"entityId": entity_id}} or body["data"] is None
    assert "secret" not in response.text and "Traceback" not in response.text
    assert any(
        "secret detail" in r.getMessage() or (r.exc_info and "secret detail" in str(r.exc_info[1]))
        for r in caplog.records
    )
