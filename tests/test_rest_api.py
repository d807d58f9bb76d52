"""The REST API under /api/v1 and /healthz, against a real gunicorn server: auth, ingest, dashboards, entities."""

import base64
import hashlib
import hmac
import json
import time
from unittest.mock import ANY

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit import DEFAULT_TIMEOUT, JWT_SECRET, Api, mint_token, unique

ENTITY_TYPE_ERROR = "entityType must be one of"
NEW_TILE = {"title": "Occupancy", "metricName": "occupancy", "kind": "gauge", "unit": "%"}


# --- helpers -------------------------------------------------------------------------------------------------------


def send(live_server, method, path, headers=None, **kwargs):
    """A request with exactly the headers given (no token unless the test puts one in)."""
    return requests.request(method, live_server.url + path, headers=headers or {}, timeout=DEFAULT_TIMEOUT, **kwargs)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code, message=None):
    """The response is the one ``{code, message}`` error shape with this status and code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
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


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_raw_key(claims, key):
    """An HS256 token whose HMAC key is ``key`` bytes; PyJWT refuses to sign with a PEM key, an attacker would not."""
    signing_input = (
        f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims_for(tenant, **extra):
    now = int(time.time())
    return {"sub": "attacker", "tenantId": tenant, "roles": ["admin"], "iat": now, "exp": now + 3600, **extra}


def tampered(token, tenant):
    """``token`` with its payload swapped for another tenant's, signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(claims_for(tenant)).encode())}.{signature}"


@pytest.fixture
def other_api(live_server):
    """An admin+ingest client of a second tenant."""
    return Api(live_server.url, mint_token(unique("other"), roles=("admin", "ingest")))


@pytest.fixture
def api_with(live_server, tenant):
    """Factory: a client of this test's tenant holding exactly ``roles``."""
    return lambda *roles: Api(live_server.url, mint_token(tenant, roles=roles))


# --- health and routing --------------------------------------------------------------------------------------------


def test_healthz_is_liveness_only(live_server):
    response = send(live_server, "GET", "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"process": "ok"}}


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v1/dashboards/not-a-number"])
def test_unknown_route_is_404_json(live_server, path):
    assert_error(send(live_server, "GET", path), 404, "ANALYTICS_1201")


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/api/v1/dashboards"), ("POST", "/api/v1/entities"), ("GET", "/api/v1/metrics"), ("POST", "/healthz")],
)
def test_wrong_method_is_405(live_server, tenant, method, path):
    response = send(live_server, method, path, headers=bearer(mint_token(tenant, roles=("admin",))))
    assert_error(response, 405, "ANALYTICS_1204")


def test_wrong_method_names_the_allowed_methods(live_server, tenant):
    response = send(live_server, "DELETE", "/api/v1/dashboards", headers=bearer(mint_token(tenant)))
    assert response.status_code == 405
    assert {m.strip() for m in response.headers.get("Allow", "").split(",")} >= {"GET", "POST"}


# --- authentication ------------------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/api/v1/dashboards"),
    ("POST", "/api/v1/dashboards"),
    ("GET", "/api/v1/dashboards/1"),
    ("POST", "/api/v1/dashboards/1/tiles"),
    ("PATCH", "/api/v1/dashboards/1/tiles/1"),
    ("DELETE", "/api/v1/dashboards/1/tiles/1"),
    ("PUT", "/api/v1/dashboards/1/tiles/order"),
    ("GET", "/api/v1/entities"),
    ("GET", "/api/v1/entities/e1"),
    ("PUT", "/api/v1/entities/e1"),
    ("GET", "/api/v1/entities/e1/metrics"),
    ("POST", "/api/v1/metrics"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_endpoint_requires_a_token(live_server, method, path):
    response = send(live_server, method, path, json={})
    assert_error(response, 401, "ANALYTICS_1001")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="analytics-svc"'


BAD_AUTHORIZATION = [
    ("garbage-token", lambda tenant, keys: "Bearer not-a-jwt", "ANALYTICS_1002"),
    ("basic-scheme", lambda tenant, keys: "Basic dXNlcjpwYXNz", "ANALYTICS_1002"),
    ("token-scheme-with-valid-jwt", lambda tenant, keys: f"Token {mint_token(tenant)}", "ANALYTICS_1002"),
    ("valid-jwt-without-scheme", lambda tenant, keys: mint_token(tenant), "ANALYTICS_1002"),
    ("bearer-without-token", lambda tenant, keys: "Bearer", "ANALYTICS_1002"),
    (
        "wrong-secret",
        lambda tenant, keys: f"Bearer {mint_token(tenant, key='another-secret-of-the-same-length-0123456789')}",
        "ANALYTICS_1002",
    ),
    ("tampered-payload", lambda tenant, keys: f"Bearer {tampered(mint_token(unique('x')), tenant)}", "ANALYTICS_1002"),
    ("expired", lambda tenant, keys: f"Bearer {mint_token(tenant, ttl=-3600)}", "ANALYTICS_1003"),
    (
        "not-yet-valid",
        lambda tenant, keys: f"Bearer {mint_token(tenant, nbf=int(time.time()) + 3600)}",
        "ANALYTICS_1002",
    ),
    ("without-exp", lambda tenant, keys: f"Bearer {mint_token(tenant, exp=None)}", "ANALYTICS_1002"),
    ("without-tenant", lambda tenant, keys: f"Bearer {mint_token(None)}", "ANALYTICS_1004"),
    ("empty-tenant", lambda tenant, keys: f"Bearer {mint_token('')}", "ANALYTICS_1004"),
    ("blank-tenant", lambda tenant, keys: f"Bearer {mint_token('   ')}", "ANALYTICS_1004"),
    ("numeric-tenant", lambda tenant, keys: f"Bearer {mint_token(12345)}", "ANALYTICS_1004"),
    ("tenant-over-128", lambda tenant, keys: f"Bearer {mint_token('t' * 129)}", "ANALYTICS_1004"),
    ("roles-not-strings", lambda tenant, keys: f"Bearer {mint_token(tenant, roles=[1, 2])}", "ANALYTICS_1002"),
    ("alg-none", lambda tenant, keys: f"Bearer {mint_token(tenant, algorithm='none', key=None)}", "ANALYTICS_1002"),
    ("alg-hs512", lambda tenant, keys: f"Bearer {mint_token(tenant, algorithm='HS512')}", "ANALYTICS_1002"),
    (
        "hs256-keyed-with-rsa-public-pem",
        lambda tenant, keys: f"Bearer {hs256_with_raw_key(claims_for(tenant), keys[1].encode())}",
        "ANALYTICS_1002",
    ),
    (
        "hs256-keyed-with-rsa-public-pem-stripped",
        lambda tenant, keys: f"Bearer {hs256_with_raw_key(claims_for(tenant), keys[1].strip().encode())}",
        "ANALYTICS_1002",
    ),
]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    ("authorization", "code"), [c[1:] for c in BAD_AUTHORIZATION], ids=[c[0] for c in BAD_AUTHORIZATION]
)
def test_bad_credentials_are_refused(live_server, tenant, rsa_keys, authorization, code):
    response = send(
        live_server, "GET", "/api/v1/dashboards", headers={"Authorization": authorization(tenant, rsa_keys)}
    )
    assert_error(response, 401, code)


def test_rs256_token_signed_by_another_key_is_refused(live_server, tenant):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = mint_token(tenant, algorithm="RS256", key=pem)
    assert_error(send(live_server, "GET", "/api/v1/dashboards", headers=bearer(token)), 401, "ANALYTICS_1002")


def roles_as_string(tenant, keys):
    now = int(time.time())
    claims = {"tenantId": tenant, "roles": "ingest admin", "iat": now, "exp": now + 60}
    return f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"


GOOD_AUTHORIZATION = [
    ("hs256", lambda tenant, keys: f"Bearer {mint_token(tenant, roles=('admin',))}"),
    ("rs256", lambda tenant, keys: f"Bearer {mint_token(tenant, roles=('admin',), algorithm='RS256', key=keys[0])}"),
    ("lowercase-scheme", lambda tenant, keys: f"bearer {mint_token(tenant, roles=('admin',))}"),
    ("extra-spaces", lambda tenant, keys: f"Bearer   {mint_token(tenant, roles=('admin',))}"),
    ("roles-as-space-separated-string", roles_as_string),
]


@pytest.mark.parametrize("authorization", [c[1] for c in GOOD_AUTHORIZATION], ids=[c[0] for c in GOOD_AUTHORIZATION])
def test_good_credentials_act_for_their_tenant(live_server, tenant, rsa_keys, authorization):
    headers = {"Authorization": authorization(tenant, rsa_keys)}
    created = send(live_server, "POST", "/api/v1/dashboards", headers=headers, json={"name": "Mine"})
    assert created.status_code == 201, created.text

    listed = send(live_server, "GET", "/api/v1/dashboards", headers=headers)

    assert listed.status_code == 200
    assert listed.json() == {"dashboards": [{"id": created.json()["id"], "name": "Mine", "version": 1}]}


# --- roles ---------------------------------------------------------------------------------------------------------

WRITES = {
    "create-dashboard": ("POST", "/dashboards", lambda ids: {"name": "Nope"}),
    "add-tile": ("POST", "/dashboards/{dashboard}/tiles", lambda ids: NEW_TILE),
    "update-tile": ("PATCH", "/dashboards/{dashboard}/tiles/{tile}", lambda ids: {"title": "Nope"}),
    "remove-tile": ("DELETE", "/dashboards/{dashboard}/tiles/{tile}", lambda ids: None),
    "reorder-tiles": ("PUT", "/dashboards/{dashboard}/tiles/order", lambda ids: {"tileIds": ids[::-1]}),
    "put-entity": ("PUT", "/entities/{entity}", lambda ids: {"entityType": "event", "name": "Renamed"}),
}


def write_request(name, entity):
    entity_id, dashboard = entity
    method, path, body = WRITES[name]
    tile_ids = [t["id"] for t in dashboard["tiles"]]
    return method, path.format(dashboard=dashboard["id"], tile=tile_ids[0], entity=entity_id), body(tile_ids)


@pytest.mark.parametrize("roles", [(), ("ingest",), ("viewer", "reader")], ids=["no-role", "ingest", "other-roles"])
@pytest.mark.parametrize("write", list(WRITES))
def test_layout_and_entity_writes_need_admin(admin_api, api_with, entity, write, roles):
    _, dashboard = entity
    before = admin_api.call("GET", f"/dashboards/{dashboard['id']}", 200)
    before_entities = admin_api.call("GET", "/entities", 200)
    method, path, body = write_request(write, entity)

    response = api_with(*roles).call(method, path, json=body)

    assert_error(response, 403, "ANALYTICS_1005", "admin")
    assert admin_api.call("GET", f"/dashboards/{dashboard['id']}", 200) == before
    assert admin_api.call("GET", "/entities", 200) == before_entities
    assert len(admin_api.call("GET", "/dashboards", 200)["dashboards"]) == 1


@pytest.mark.parametrize("write", list(WRITES))
def test_admin_alone_may_write(api_with, entity, write):
    method, path, body = write_request(write, entity)
    response = api_with("admin").call(method, path, json=body)
    assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize(
    ("roles", "status"),
    [((), 403), (("viewer",), 403), (("ingest",), 201), (("admin",), 201)],
    ids=["no-role", "other-role", "ingest", "admin"],
)
def test_ingest_needs_ingest_or_admin(admin_api, api_with, entity, roles, status):
    entity_id, _ = entity
    response = api_with(*roles).call("POST", "/metrics", json={"entityId": entity_id, "metricName": "m", "value": 1})
    if status == 403:
        assert_error(response, 403, "ANALYTICS_1005")
        assert metrics_of(admin_api, entity_id) == {}
    else:
        assert response.status_code == 201, response.text
        assert metrics_of(admin_api, entity_id)["m"]["value"] == 1.0


READS = ["/dashboards", "/dashboards/{dashboard}", "/entities", "/entities/{entity}", "/entities/{entity}/metrics"]


@pytest.mark.parametrize("path", READS)
def test_reads_need_only_a_valid_token(api_with, entity, path):
    entity_id, dashboard = entity
    api_with().call("GET", path.format(dashboard=dashboard["id"], entity=entity_id), 200)


# --- ingest --------------------------------------------------------------------------------------------------------


def test_ingest_single_object(admin_api, entity):
    entity_id, _ = entity
    result = admin_api.call(
        "POST", "/metrics", 201, json={"entityId": entity_id, "metricName": "ticketsSold", "value": 7}
    )
    assert set(result) == {"accepted", "lastSeq"}
    assert result["accepted"] == 1
    assert isinstance(result["lastSeq"], int) and not isinstance(result["lastSeq"], bool)
    current = metrics_of(admin_api, entity_id)
    assert current["ticketsSold"]["value"] == 7.0
    assert current["ticketsSold"]["seq"] == result["lastSeq"]


def test_ingest_bare_list(admin_api, entity):
    entity_id, _ = entity
    body = [
        {"entityId": entity_id, "metricName": "ticketsSold", "value": 1},
        {"entityId": entity_id, "metricName": "revenue", "value": 45.5, "entityType": "event"},
    ]
    result = admin_api.call("POST", "/metrics", 201, json=body)
    assert result["accepted"] == 2
    current = metrics_of(admin_api, entity_id)
    assert {name: m["value"] for name, m in current.items()} == {"ticketsSold": 1.0, "revenue": 45.5}
    assert max(m["seq"] for m in current.values()) == result["lastSeq"]
    assert min(m["seq"] for m in current.values()) < result["lastSeq"]


def test_ingest_metrics_envelope_and_latest_value_wins(admin_api, entity):
    entity_id, _ = entity
    first = admin_api.ingest((entity_id, "ticketsSold", 1), (entity_id, "ticketsSold", 2), (entity_id, "checkIns", 3))
    assert first["accepted"] == 3
    second = admin_api.ingest((entity_id, "ticketsSold", 10))
    assert second["lastSeq"] > first["lastSeq"]

    response = admin_api.call("GET", f"/entities/{entity_id}/metrics", 200)

    assert response["entityId"] == entity_id
    assert response["entityType"] == "event"
    metrics = response["metrics"]
    assert metrics["ticketsSold"]["value"] == 10.0
    assert metrics["ticketsSold"]["seq"] == second["lastSeq"]
    assert metrics["checkIns"]["value"] == 3.0
    assert metrics["checkIns"]["seq"] <= first["lastSeq"]  # lastSeq is the highest seq of the batch
    for metric in metrics.values():
        assert set(metric) == {"value", "timestamp", "seq"}
        assert metric["timestamp"].endswith("Z")


def test_ingest_keeps_the_given_timestamp_in_utc(admin_api, entity):
    entity_id, _ = entity
    admin_api.call(
        "POST",
        "/metrics",
        201,
        json={
            "entityId": entity_id,
            "metricName": "occupancy",
            "value": 55.5,
            "timestamp": "2026-03-01T12:30:00+02:00",
        },
    )
    assert metrics_of(admin_api, entity_id)["occupancy"]["timestamp"] == "2026-03-01T10:30:00.000Z"


def test_entity_without_metrics_has_empty_metrics(admin_api, entity):
    entity_id, _ = entity
    assert admin_api.call("GET", f"/entities/{entity_id}/metrics", 200) == {
        "entityId": entity_id,
        "entityType": "event",
        "metrics": {},
    }


def test_unknown_entity_metrics_is_404(admin_api):
    assert_error(admin_api.call("GET", "/entities/no-such-entity/metrics"), 404, "ANALYTICS_1101")


def test_ingest_accepts_exactly_max_batch(admin_api, entity):
    entity_id, _ = entity
    body = [{"entityId": entity_id, "metricName": "ticketsSold", "value": i} for i in range(1000)]
    assert admin_api.call("POST", "/metrics", 201, json=body)["accepted"] == 1000
    assert metrics_of(admin_api, entity_id)["ticketsSold"]["value"] == 999.0


def change_log_of(live_server, tenant):
    """The tenant's metric rows in the change log, in ``seq`` order: ``[(seq, entity_id, metric_name, value)]``."""
    return [
        tuple(row)
        for row in live_server.database.execute(
            "SELECT seq, entity_id, metric_name, value FROM change_log WHERE tenant_id = ? AND kind = 'metric'"
            " ORDER BY seq",
            (tenant,),
        )
    ]


def test_batch_is_inserted_in_key_order_and_last_seq_is_its_highest(live_server, tenant, admin_api, entity):
    first, _ = entity
    second = unique("event")
    admin_api.put_entity(second, "event")
    # Given out of (entity_id, metric_name) order, with one metric twice.
    points = [(second, "b", 1), (first, "z", 2), (second, "a", 3), (first, "a", 4), (second, "a", 5)]

    result = admin_api.ingest(*points)

    rows = change_log_of(live_server, tenant)
    assert [(e, m, v) for _, e, m, v in rows] == sorted(points, key=lambda p: p[:2])  # stable: 3 before 5
    assert result == {"accepted": 5, "lastSeq": rows[-1][0]}
    last_of_a = next(seq for seq, e, m, v in rows if (e, m, v) == (second, "a", 5))
    assert metrics_of(admin_api, second)["a"] == {"value": 5.0, "timestamp": ANY, "seq": last_of_a}


def test_refused_batch_names_the_first_unknown_entity_and_adds_no_row(live_server, tenant, admin_api, entity):
    entity_id, _ = entity
    body = [good(entity_id), good("zz-unknown"), good("aa-unknown"), {**good(entity_id), "entityType": "venue"}]

    response = admin_api.call("POST", "/metrics", json=body)

    assert_error(response, 404, "ANALYTICS_1101", "zz-unknown")
    assert "aa-unknown" not in response.json()["message"]
    assert change_log_of(live_server, tenant) == []


def good(entity_id, value=999):
    return {"entityId": entity_id, "metricName": "ticketsSold", "value": value}


BAD_ITEMS = [
    # (id, bad item built from the entity id, status, code, message fragment)
    ("unknown-entity", lambda e: good("no-such-entity"), 404, "ANALYTICS_1101", "no-such-entity"),
    ("wrong-entity-type", lambda e: {**good(e), "entityType": "venue"}, 404, "ANALYTICS_1101", None),
    ("value-string-nan", lambda e: good(e, "NaN"), 400, "ANALYTICS_1200", "value"),
    ("value-numeric-string", lambda e: good(e, "12"), 400, "ANALYTICS_1200", "value"),
    ("value-boolean", lambda e: good(e, True), 400, "ANALYTICS_1200", "value"),
    ("value-null", lambda e: good(e, None), 400, "ANALYTICS_1200", "value"),
    ("value-missing", lambda e: {"entityId": e, "metricName": "ticketsSold"}, 400, "ANALYTICS_1200", "value"),
    ("value-list", lambda e: good(e, [1]), 400, "ANALYTICS_1200", "value"),
    ("entity-id-empty", lambda e: {**good(e), "entityId": ""}, 400, "ANALYTICS_1200", "entityId"),
    ("entity-id-blank", lambda e: {**good(e), "entityId": "   "}, 400, "ANALYTICS_1200", "entityId"),
    ("entity-id-over-128", lambda e: {**good(e), "entityId": "e" * 129}, 400, "ANALYTICS_1200", "entityId"),
    ("entity-id-number", lambda e: {**good(e), "entityId": 5}, 400, "ANALYTICS_1200", "entityId"),
    ("metric-name-missing", lambda e: {"entityId": e, "value": 1}, 400, "ANALYTICS_1200", "metricName"),
    ("metric-name-control-char", lambda e: {**good(e), "metricName": "a\nb"}, 400, "ANALYTICS_1200", "metricName"),
    ("bad-timestamp", lambda e: {**good(e), "timestamp": "yesterday"}, 400, "ANALYTICS_1200", "timestamp"),
    ("item-number", lambda e: 5, 400, "ANALYTICS_1200", "object"),
    ("item-string", lambda e: "ticketsSold=1", 400, "ANALYTICS_1200", "object"),
    ("item-list", lambda e: [good(e)], 400, "ANALYTICS_1200", "object"),
    ("item-null", lambda e: None, 400, "ANALYTICS_1200", "object"),
]


@pytest.mark.parametrize("envelope", ["list", "metrics-object"])
@pytest.mark.parametrize(
    ("make_item", "status", "code", "fragment"), [c[1:] for c in BAD_ITEMS], ids=[c[0] for c in BAD_ITEMS]
)
def test_batch_with_one_bad_item_writes_nothing(admin_api, entity, envelope, make_item, status, code, fragment):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 1), (entity_id, "revenue", 2))
    before = metrics_of(admin_api, entity_id)
    items = [good(entity_id, 500), {"entityId": entity_id, "metricName": "newMetric", "value": 1}, make_item(entity_id)]
    body = items if envelope == "list" else {"metrics": items}

    response = admin_api.call("POST", "/metrics", json=body)

    assert_error(response, status, code, fragment)
    if status == 400:
        assert response.json()["message"].startswith("metrics[2]: ")
    assert metrics_of(admin_api, entity_id) == before


SINGLE_BAD_ITEMS = [c for c in BAD_ITEMS if c[0] not in ("item-list", "item-null")]  # a list is a batch; null no body


@pytest.mark.parametrize(
    ("make_item", "status", "code", "fragment"),
    [c[1:] for c in SINGLE_BAD_ITEMS],
    ids=[c[0] for c in SINGLE_BAD_ITEMS],
)
def test_single_bad_item_is_refused(admin_api, entity, make_item, status, code, fragment):
    entity_id, _ = entity
    item = make_item(entity_id)
    response = admin_api.call("POST", "/metrics", json=item)
    assert_error(response, status, code, fragment)
    assert metrics_of(admin_api, entity_id) == {}


@pytest.mark.parametrize(
    "raw_value", ["NaN", "Infinity", "-Infinity", "1e400"], ids=["nan", "infinity", "minus-infinity", "float-overflow"]
)
def test_non_finite_numbers_are_refused(admin_api, entity, raw_value):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 1))
    before = metrics_of(admin_api, entity_id)
    body = f'[{json.dumps(good(entity_id, 5))}, {{"entityId": "{entity_id}", "metricName": "x", "value": {raw_value}}}]'
    response = admin_api.call("POST", "/metrics", data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "ANALYTICS_1200", "value")
    assert metrics_of(admin_api, entity_id) == before


HUGE = 10**30  # beyond SQLite's 64-bit INTEGER
OUT_OF_RANGE = [
    pytest.param(
        lambda e, d, t: ("POST", "/metrics", good(e, 10**400), {}),
        400,
        id="metric-value-integer-beyond-float",
    ),
    pytest.param(
        lambda e, d, t: ("POST", "/metrics", {**good(e), "timestamp": "0001-01-01T00:00:00+05:00"}, {}),
        400,
        id="timestamp-before-year-1-in-utc",
    ),
    pytest.param(
        lambda e, d, t: ("POST", "/metrics", {**good(e), "timestamp": "9999-12-31T23:59:59-05:00"}, {}),
        400,
        id="timestamp-after-year-9999-in-utc",
    ),
    pytest.param(
        lambda e, d, t: ("POST", f"/dashboards/{d}/tiles", {**NEW_TILE, "thresholds": {"warning": 10**400}}, {}),
        400,
        id="threshold-integer-beyond-float",
    ),
    pytest.param(
        lambda e, d, t: ("GET", f"/dashboards/{HUGE}", None, {}),
        404,
        id="dashboard-id-in-path-beyond-int64",
    ),
    pytest.param(
        lambda e, d, t: ("PUT", f"/entities/{unique('event')}", {"entityType": "event", "dashboardId": HUGE}, {}),
        404,
        id="dashboard-id-in-body-beyond-int64",
    ),
    pytest.param(
        lambda e, d, t: (
            "PATCH",
            f"/dashboards/{d}/tiles/{t}",
            {"title": "x"},
            {"If-Match": "\u00b2".encode("latin-1")},
        ),
        400,
        id="if-match-superscript-digit",
    ),
    pytest.param(
        lambda e, d, t: ("PATCH", f"/dashboards/{d}/tiles/{HUGE}", {"title": "x"}, {}), 404, id="tile-id-huge"
    ),
    pytest.param(
        lambda e, d, t: ("PATCH", f"/dashboards/{d}/tiles/{t}", {"title": "x", "expectedVersion": HUGE}, {}),
        409,
        id="expected-version-huge",
    ),
    pytest.param(
        lambda e, d, t: ("PUT", f"/dashboards/{d}/tiles/order", {"tileIds": [HUGE, t]}, {}), 400, id="tile-ids-huge"
    ),
]


@pytest.mark.parametrize(("make_request", "status"), OUT_OF_RANGE)
def test_out_of_range_input_is_a_client_error(admin_api, entity, make_request, status):
    entity_id, dashboard = entity
    method, path, body, headers = make_request(entity_id, dashboard["id"], dashboard["tiles"][0]["id"])
    response = admin_api.call(method, path, json=body, headers=headers)
    assert_error(response, status, {400: "ANALYTICS_1200", 404: "ANALYTICS_1201", 409: "ANALYTICS_1202"}[status])
    assert metrics_of(admin_api, entity_id) == {}
    assert admin_api.dashboard(dashboard["id"]) == dashboard


@pytest.mark.parametrize("body", [[], {"metrics": []}], ids=["empty-list", "empty-envelope"])
def test_empty_batch_is_refused(admin_api, body):
    assert_error(admin_api.call("POST", "/metrics", json=body), 400, "ANALYTICS_1200", "no metrics")


@pytest.mark.parametrize("envelope", ["list", "metrics-object"])
def test_batch_over_max_is_413_and_writes_nothing(admin_api, entity, envelope):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 1))
    before = metrics_of(admin_api, entity_id)
    items = [good(entity_id, i) for i in range(1001)]
    body = items if envelope == "list" else {"metrics": items}
    assert_error(admin_api.call("POST", "/metrics", json=body), 413, "ANALYTICS_1203", "1000")
    assert metrics_of(admin_api, entity_id) == before


def test_request_body_over_the_byte_limit_is_413(admin_api, entity):
    entity_id, _ = entity
    body = {"metrics": [good(entity_id)], "padding": "x" * (1024 * 1024)}
    assert_error(admin_api.call("POST", "/metrics", json=body), 413, "ANALYTICS_1203")
    assert metrics_of(admin_api, entity_id) == {}


NOT_JSON = [
    ("form-encoded", "entityId=a&metricName=b&value=1", "application/x-www-form-urlencoded", "expected a JSON body"),
    ("text-plain-json", '{"entityId": "a", "metricName": "b", "value": 1}', "text/plain", "expected a JSON body"),
    ("no-content-type", '{"entityId": "a", "metricName": "b", "value": 1}', None, "expected a JSON body"),
    ("truncated-json", '{"entityId": "a", "metricName":', "application/json", "malformed"),
    ("single-quotes", "{'entityId': 'a'}", "application/json", "malformed"),
    ("empty-body", "", "application/json", "malformed"),
    ("json-null", "null", "application/json", "malformed"),
    ("invalid-utf8", b'{"entityId": "\xff"}', "application/json", "malformed"),
]


@pytest.mark.parametrize(("data", "content_type", "fragment"), [c[1:] for c in NOT_JSON], ids=[c[0] for c in NOT_JSON])
def test_body_that_is_not_json_is_400(admin_api, data, content_type, fragment):
    headers = {"Content-Type": content_type} if content_type else {}
    response = admin_api.call("POST", "/metrics", data=data, headers=headers)
    assert_error(response, 400, "ANALYTICS_1200", fragment)


# --- tenant isolation ----------------------------------------------------------------------------------------------


def test_other_tenant_cannot_read_entity_metrics(admin_api, other_api, entity):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 5))

    theirs = other_api.call("GET", f"/entities/{entity_id}/metrics")
    body = assert_error(theirs, 404, "ANALYTICS_1101")

    # Exactly what an entity that exists nowhere gets, apart from the id it names.
    nowhere = unique("event")
    unknown = assert_error(other_api.call("GET", f"/entities/{nowhere}/metrics"), 404, "ANALYTICS_1101")
    assert body["message"].replace(entity_id, "<id>") == unknown["message"].replace(nowhere, "<id>")
    assert_error(other_api.call("GET", f"/entities/{entity_id}"), 404, "ANALYTICS_1101")


def test_other_tenant_cannot_ingest_into_entity(admin_api, other_api, entity):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 5))
    before = metrics_of(admin_api, entity_id)

    response = other_api.call("POST", "/metrics", json=good(entity_id, 1))

    assert_error(response, 404, "ANALYTICS_1101", entity_id)
    assert metrics_of(admin_api, entity_id) == before


def test_same_entity_id_in_two_tenants_stays_apart(admin_api, other_api, entity):
    entity_id, _ = entity
    assert other_api.call("PUT", f"/entities/{entity_id}", 201, json={"entityType": "venue", "name": "Theirs"})
    admin_api.ingest((entity_id, "ticketsSold", 5))
    other_api.ingest((entity_id, "ticketsSold", 6))

    assert metrics_of(admin_api, entity_id)["ticketsSold"]["value"] == 5.0
    assert metrics_of(other_api, entity_id)["ticketsSold"]["value"] == 6.0
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["entityType"] == "event"
    assert other_api.call("GET", f"/entities/{entity_id}", 200)["entityType"] == "venue"


def test_other_tenant_does_not_see_dashboards_or_entities(admin_api, other_api, entity):
    _, dashboard = entity
    assert other_api.call("GET", "/dashboards", 200) == {"dashboards": []}
    assert other_api.call("GET", "/entities", 200) == {"entities": []}
    assert [d["id"] for d in admin_api.call("GET", "/dashboards", 200)["dashboards"]] == [dashboard["id"]]


def test_other_tenant_gets_404_for_dashboard_and_tiles(admin_api, other_api, entity):
    _, dashboard = entity
    dashboard_id = dashboard["id"]
    tile_ids = [t["id"] for t in dashboard["tiles"]]
    attempts = [
        ("GET", f"/dashboards/{dashboard_id}", None),
        ("POST", f"/dashboards/{dashboard_id}/tiles", NEW_TILE),
        ("PATCH", f"/dashboards/{dashboard_id}/tiles/{tile_ids[0]}", {"title": "Mine now"}),
        ("DELETE", f"/dashboards/{dashboard_id}/tiles/{tile_ids[0]}", None),
        ("PUT", f"/dashboards/{dashboard_id}/tiles/order", {"tileIds": tile_ids[::-1]}),
    ]
    unknown = assert_error(other_api.call("GET", "/dashboards/999999999"), 404, "ANALYTICS_1201")
    for method, path, body in attempts:
        response = other_api.call(method, path, json=body)
        error = assert_error(response, 404, "ANALYTICS_1201")
        assert error["message"] == unknown["message"].replace("999999999", str(dashboard_id)), (method, path)
    assert admin_api.call("GET", f"/dashboards/{dashboard_id}", 200) == dashboard


def test_other_tenant_cannot_attach_entity_to_dashboard(admin_api, other_api, entity):
    _, dashboard = entity
    response = other_api.call(
        "PUT", f"/entities/{unique('event')}", json={"entityType": "event", "dashboardId": dashboard["id"]}
    )
    assert_error(response, 404, "ANALYTICS_1201")
    assert other_api.call("GET", "/entities", 200) == {"entities": []}


# --- dashboards ----------------------------------------------------------------------------------------------------


def test_create_list_and_get_dashboards(admin_api):
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}
    tiles = [
        {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
        {"title": "Occupancy", "metricName": "occupancy", "kind": "gauge", "unit": "%", "thresholds": {"warning": 80}},
        {"title": "Check-ins", "metricName": "checkIns", "kind": "line", "unit": "/min"},
    ]
    first = admin_api.create_dashboard("First", tiles)
    empty = admin_api.call("POST", "/dashboards", 201, json={"name": "Empty"})

    assert first["name"] == "First" and first["version"] == 1
    assert [t["position"] for t in first["tiles"]] == [0, 1, 2]
    assert first["tiles"][0] == {
        "id": first["tiles"][0]["id"],
        "position": 0,
        "title": "Tickets",
        "metricName": "ticketsSold",
        "kind": "number",
        "unit": "",
        "thresholds": None,
    }
    assert first["tiles"][1]["thresholds"] == {"warning": 80.0}
    assert empty == {"id": empty["id"], "name": "Empty", "version": 1, "tiles": []}
    assert admin_api.call("GET", "/dashboards", 200) == {
        "dashboards": [
            {"id": first["id"], "name": "First", "version": 1},
            {"id": empty["id"], "name": "Empty", "version": 1},
        ]
    }
    assert admin_api.dashboard(first["id"]) == first


def test_unknown_dashboard_is_404(admin_api):
    assert_error(admin_api.call("GET", "/dashboards/999999999"), 404, "ANALYTICS_1201")


TILE = {"title": "T", "metricName": "m", "kind": "number"}
BAD_TILES = [
    ("unknown-kind", {**TILE, "kind": "pie"}, "kind"),
    ("unknown-field", {**TILE, "colour": "red"}, "colour"),
    ("missing-title", {"metricName": "m", "kind": "number"}, "title"),
    ("empty-title", {**TILE, "title": ""}, "title"),
    ("title-over-200", {**TILE, "title": "t" * 201}, "title"),
    ("missing-metric-name", {"title": "T", "kind": "number"}, "metricName"),
    ("missing-kind", {"title": "T", "metricName": "m"}, "kind"),
    ("unit-not-text", {**TILE, "unit": 5}, "unit"),
    ("unit-over-32", {**TILE, "unit": "u" * 33}, "unit"),
    ("thresholds-not-object", {**TILE, "thresholds": [80]}, "thresholds"),
    ("threshold-not-number", {**TILE, "thresholds": {"warning": "80"}}, "warning"),
    ("threshold-boolean", {**TILE, "thresholds": {"warning": True}}, "warning"),
    ("too-many-thresholds", {**TILE, "thresholds": {f"t{i}": i for i in range(9)}}, "thresholds"),
    ("tile-not-object", "number", "tile must be an object"),
]


@pytest.mark.parametrize(("bad_tile", "fragment"), [c[1:] for c in BAD_TILES], ids=[c[0] for c in BAD_TILES])
def test_create_dashboard_with_a_bad_tile_names_it(admin_api, bad_tile, fragment):
    response = admin_api.call("POST", "/dashboards", json={"name": "Bad", "tiles": [TILE, TILE, bad_tile]})
    body = assert_error(response, 400, "ANALYTICS_1200", fragment)
    assert body["message"].startswith("tiles[2]: ")
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"tiles": []}, "name is required"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "X", "tiles": {"title": "T"}}, "tiles must be a list"),
        ({"name": "X", "tiles": [TILE] * 101}, "at most 100"),
        (["name", "X"], "must be an object"),
    ],
    ids=["no-name", "empty-name", "name-not-string", "name-over-200", "tiles-not-list", "over-100-tiles", "list-body"],
)
def test_create_dashboard_with_a_bad_body(admin_api, body, fragment):
    assert_error(admin_api.call("POST", "/dashboards", json=body), 400, "ANALYTICS_1200", fragment)
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}


def test_add_tile_appends_and_bumps_version(admin_api, entity):
    _, dashboard = entity
    change = admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)

    assert set(change) == {"action", "tile", "version"}
    assert change["action"] == "added"
    assert change["version"] == 2
    tile = change["tile"]
    assert tile == {**NEW_TILE, "id": tile["id"], "position": 2, "thresholds": None}
    after = admin_api.dashboard(dashboard["id"])
    assert after["version"] == 2
    assert after["tiles"] == [*dashboard["tiles"], tile]


@pytest.mark.parametrize(("bad_tile", "fragment"), [c[1:] for c in BAD_TILES], ids=[c[0] for c in BAD_TILES])
def test_add_bad_tile_changes_nothing(admin_api, entity, bad_tile, fragment):
    _, dashboard = entity
    response = admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", json=bad_tile)
    assert_error(response, 400, "ANALYTICS_1200", fragment)
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_update_tile_changes_only_the_given_fields(admin_api, entity):
    _, dashboard = entity
    tile = dashboard["tiles"][1]
    change = admin_api.call(
        "PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"title": "Takings", "unit": "USD"}
    )

    assert change == {"action": "updated", "tile": {**tile, "title": "Takings", "unit": "USD"}, "version": 2}
    after = admin_api.dashboard(dashboard["id"])
    assert after["tiles"] == [dashboard["tiles"][0], change["tile"]]

    change = admin_api.call(
        "PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"thresholds": {"critical": 1e6}}
    )
    assert change["tile"]["thresholds"] == {"critical": 1e6}
    assert change["tile"]["title"] == "Takings"
    assert change["version"] == 3


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "nothing to update"),
        ({"expectedVersion": 1}, "nothing to update"),
        ({"kind": "pie"}, "kind"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"position": 0}, "position"),
        ([{"title": "x"}], "tile must be an object"),
    ],
    ids=["empty", "only-version", "bad-kind", "empty-title", "null-title", "unknown-field", "list-body"],
)
def test_bad_tile_update_changes_nothing(admin_api, entity, body, fragment):
    _, dashboard = entity
    tile_id = dashboard["tiles"][0]["id"]
    response = admin_api.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json=body)
    assert_error(response, 400, "ANALYTICS_1200", fragment)
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_remove_tile_renumbers_positions(admin_api, entity):
    _, dashboard = entity
    admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    tiles = admin_api.dashboard(dashboard["id"])["tiles"]

    change = admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tiles[0]['id']}", 200)

    assert change == {"action": "removed", "tile": tiles[0], "version": 3}
    after = admin_api.dashboard(dashboard["id"])
    assert [t["id"] for t in after["tiles"]] == [tiles[1]["id"], tiles[2]["id"]]
    assert [t["position"] for t in after["tiles"]] == [0, 1]

    admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tiles[2]['id']}", 200)
    admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tiles[1]['id']}", 200)
    assert admin_api.dashboard(dashboard["id"]) == {**dashboard, "version": 5, "tiles": []}


def test_unknown_tile_is_404_and_changes_nothing(admin_api, entity, other_api):
    _, dashboard = entity
    foreign = other_api.create_dashboard()["tiles"][0]["id"]
    for tile_id in (999999999, foreign):
        for method, body in (("PATCH", {"title": "x"}), ("DELETE", None)):
            response = admin_api.call(method, f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json=body)
            assert_error(response, 404, "ANALYTICS_1201", str(tile_id))
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_reorder_tiles(admin_api, entity):
    _, dashboard = entity
    admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    a, b, c = (t["id"] for t in admin_api.dashboard(dashboard["id"])["tiles"])

    change = admin_api.call("PUT", f"/dashboards/{dashboard['id']}/tiles/order", 200, json={"tileIds": [c, a, b]})

    assert change == {"action": "reordered", "tile": None, "version": 3, "order": [c, a, b]}
    after = admin_api.dashboard(dashboard["id"])
    assert [t["id"] for t in after["tiles"]] == [c, a, b]
    assert [t["position"] for t in after["tiles"]] == [0, 1, 2]


@pytest.mark.parametrize(
    "tile_ids",
    [
        lambda a, b, x: [a],
        lambda a, b, x: [a, b, b],
        lambda a, b, x: [a, a],
        lambda a, b, x: [a, b, 999999999],
        lambda a, b, x: [a, x],
        lambda a, b, x: [],
        lambda a, b, x: [a, str(b)],
        lambda a, b, x: [a, True],
        lambda a, b, x: {"0": a, "1": b},
        lambda a, b, x: None,
    ],
    ids=[
        "missing",
        "duplicate-extra",
        "duplicate",
        "unknown",
        "foreign",
        "empty",
        "string-id",
        "bool-id",
        "object",
        "absent",
    ],
)
def test_reorder_with_wrong_ids_changes_nothing(admin_api, other_api, entity, tile_ids):
    _, dashboard = entity
    a, b = (t["id"] for t in dashboard["tiles"])
    foreign = other_api.create_dashboard()["tiles"][0]["id"]
    body = {"tileIds": tile_ids(a, b, foreign)}
    if body["tileIds"] is None:
        body = {}

    response = admin_api.call("PUT", f"/dashboards/{dashboard['id']}/tiles/order", json=body)

    assert_error(response, 400, "ANALYTICS_1200", "tileIds")
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_version_grows_by_one_per_change(admin_api, entity):
    _, dashboard = entity
    base = f"/dashboards/{dashboard['id']}"
    versions = [admin_api.call("POST", f"{base}/tiles", 201, json=NEW_TILE)["version"]]
    tile_ids = [t["id"] for t in admin_api.dashboard(dashboard["id"])["tiles"]]
    versions.append(admin_api.call("PATCH", f"{base}/tiles/{tile_ids[0]}", 200, json={"title": "x"})["version"])
    versions.append(admin_api.call("PUT", f"{base}/tiles/order", 200, json={"tileIds": tile_ids[::-1]})["version"])
    versions.append(admin_api.call("DELETE", f"{base}/tiles/{tile_ids[1]}", 200)["version"])
    assert versions == [2, 3, 4, 5]
    assert admin_api.dashboard(dashboard["id"])["version"] == 5
    assert admin_api.call("GET", "/dashboards", 200)["dashboards"][0]["version"] == 5


def versioned_changes(dashboard):
    """Each layout change as ``(name, method, path, body)``."""
    base = f"/dashboards/{dashboard['id']}"
    a, b = (t["id"] for t in dashboard["tiles"])
    return {
        "add": ("POST", f"{base}/tiles", NEW_TILE),
        "update": ("PATCH", f"{base}/tiles/{a}", {"title": "Changed"}),
        "remove": ("DELETE", f"{base}/tiles/{a}", None),
        "reorder": ("PUT", f"{base}/tiles/order", {"tileIds": [b, a]}),
    }


def version_cases(ways):
    """(change, how) pairs; DELETE has no body, so If-Match is its only way to say the version."""
    changes = ("add", "update", "remove", "reorder")
    return [(c, h) for c in changes for h in ways if not (c == "remove" and h == "body")]


@pytest.mark.parametrize(("change", "how"), version_cases(("body", "if-match", "if-match-unquoted")))
def test_stale_version_is_409_and_changes_nothing(admin_api, entity, change, how):
    _, dashboard = entity
    admin_api.call("PATCH", versioned_changes(dashboard)["update"][1], 200, json={"unit": "x"})
    current = admin_api.dashboard(dashboard["id"])
    assert current["version"] == 2
    method, path, body = versioned_changes(dashboard)[change]
    headers = {}
    if how == "body":
        body = {**body, "expectedVersion": 1}
    else:
        headers["If-Match"] = '"1"' if how == "if-match" else "1"

    response = admin_api.call(method, path, json=body, headers=headers)

    assert_error(response, 409, "ANALYTICS_1202", "version 2")
    assert admin_api.dashboard(dashboard["id"]) == current


@pytest.mark.parametrize(("change", "how"), version_cases(("body", "if-match")))
def test_current_version_is_accepted(admin_api, entity, change, how):
    _, dashboard = entity
    method, path, body = versioned_changes(dashboard)[change]
    headers = {}
    if how == "body":
        body = {**body, "expectedVersion": 1}
    else:
        headers["If-Match"] = '"1"'
    response = admin_api.call(method, path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    assert response.json()["version"] == 2


@pytest.mark.parametrize(
    ("body_version", "if_match"),
    [("1", None), (1.0, None), (True, None), (None, 'W/"1"'), (None, "abc"), (None, "-1")],
    ids=["string", "float", "boolean", "weak-etag", "word", "negative"],
)
def test_malformed_expected_version_is_400(admin_api, entity, body_version, if_match):
    _, dashboard = entity
    body = {"title": "x"}
    if body_version is not None:
        body["expectedVersion"] = body_version
    headers = {"If-Match": if_match} if if_match else {}
    tile_id = dashboard["tiles"][0]["id"]
    response = admin_api.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json=body, headers=headers)
    assert_error(response, 400, "ANALYTICS_1200")
    assert admin_api.dashboard(dashboard["id"]) == dashboard


# --- entities ------------------------------------------------------------------------------------------------------


def test_put_entity_creates_then_renames(admin_api):
    dashboard = admin_api.create_dashboard()
    entity_id = unique("event")

    created = admin_api.call(
        "PUT",
        f"/entities/{entity_id}",
        201,
        json={"entityType": "event", "name": "Festival", "dashboardId": dashboard["id"]},
    )
    assert created == {"entityId": entity_id, "entityType": "event", "name": "Festival", "dashboardId": dashboard["id"]}

    renamed = admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "name": "Festival 2"})
    assert renamed == {**created, "name": "Festival 2"}

    same = admin_api.call(
        "PUT",
        f"/entities/{entity_id}",
        200,
        json={"entityType": "event", "name": "  Festival 3 ", "dashboardId": dashboard["id"]},
    )
    assert same == {**created, "name": "Festival 3"}
    assert admin_api.call("GET", f"/entities/{entity_id}", 200) == same


def test_put_entity_without_dashboard(admin_api):
    entity_id = unique("venue")
    created = admin_api.call("PUT", f"/entities/{entity_id}", 201, json={"entityType": "venue"})
    assert created == {"entityId": entity_id, "entityType": "venue", "name": "", "dashboardId": None}


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"entityType": "concert"}, 400, "ANALYTICS_1200", ENTITY_TYPE_ERROR),
        ({"name": "no type"}, 400, "ANALYTICS_1200", ENTITY_TYPE_ERROR),
        ({"entityType": "EVENT"}, 400, "ANALYTICS_1200", ENTITY_TYPE_ERROR),
        ({"entityType": "event", "name": 5}, 400, "ANALYTICS_1200", "name"),
        ({"entityType": "event", "name": "n" * 201}, 400, "ANALYTICS_1200", "name"),
        ({"entityType": "event", "dashboardId": "1"}, 400, "ANALYTICS_1200", "dashboardId"),
        ({"entityType": "event", "dashboardId": True}, 400, "ANALYTICS_1200", "dashboardId"),
        ({"entityType": "event", "dashboardId": 999999999}, 404, "ANALYTICS_1201", "999999999"),
        (["event"], 400, "ANALYTICS_1200", "object"),
    ],
    ids=[
        "unknown-type",
        "missing-type",
        "type-wrong-case",
        "name-not-string",
        "name-over-200",
        "dashboard-id-string",
        "dashboard-id-bool",
        "unknown-dashboard",
        "list-body",
    ],
)
def test_put_entity_with_a_bad_body_creates_nothing(admin_api, body, status, code, fragment):
    entity_id = unique("event")
    assert_error(admin_api.call("PUT", f"/entities/{entity_id}", json=body), status, code, fragment)
    assert_error(admin_api.call("GET", f"/entities/{entity_id}"), 404, "ANALYTICS_1101")
    assert admin_api.call("GET", "/entities", 200) == {"entities": []}


def test_entity_id_over_128_characters_is_refused(admin_api):
    response = admin_api.call("PUT", f"/entities/{'e' * 129}", json={"entityType": "event"})
    assert_error(response, 400, "ANALYTICS_1200", "entityId")
    assert admin_api.call("PUT", f"/entities/{'e' * 128}", 201, json={"entityType": "event"})["entityId"] == "e" * 128


def test_blank_entity_id_is_refused(admin_api):
    response = admin_api.call("PUT", "/entities/%20%20", json={"entityType": "event"})
    assert_error(response, 400, "ANALYTICS_1200", "entityId")


def test_changing_the_dashboard_of_an_entity_is_409(admin_api, entity):
    entity_id, dashboard = entity
    other = admin_api.create_dashboard(name="Second")
    response = admin_api.call("PUT", f"/entities/{entity_id}", json={"entityType": "event", "dashboardId": other["id"]})
    assert_error(response, 409, "ANALYTICS_1202", "dashboard")
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["dashboardId"] == dashboard["id"]


def test_changing_the_type_of_an_entity_is_409(admin_api, entity):
    entity_id, _ = entity
    response = admin_api.call("PUT", f"/entities/{entity_id}", json={"entityType": "venue", "name": "x"})
    assert_error(response, 409, "ANALYTICS_1202", "event")
    assert admin_api.call("GET", f"/entities/{entity_id}", 200)["entityType"] == "event"


def test_list_entities_shows_only_the_tenants_own(admin_api, other_api, entity):
    entity_id, dashboard = entity
    venue = unique("venue")
    admin_api.put_entity(venue, "venue", name="Arena")
    other_api.put_entity(unique("theirs"), "event")

    listed = admin_api.call("GET", "/entities", 200)["entities"]

    assert sorted(listed, key=lambda e: e["entityId"]) == listed
    assert {e["entityId"]: e for e in listed} == {
        entity_id: {
            "entityId": entity_id,
            "entityType": "event",
            "name": "Test entity",
            "dashboardId": dashboard["id"],
        },
        venue: {"entityId": venue, "entityType": "venue", "name": "Arena", "dashboardId": None},
    }
