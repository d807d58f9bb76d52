"""Who may call the REST API: every endpoint needs a valid token, writes need a role."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit import JWT_SECRET, mint_token, unique
from tests.api.conftest import NEW_TILE, assert_error, bearer, metrics_of, send

# Refused (or let through) before any SQL that could differ between the databases.
pytestmark = pytest.mark.backends("sqlite")


def b64url(data):
    """Base64url without padding, as JWTs encode their parts."""
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


# --- authentication ------------------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/api/v1/dashboards"),
    ("POST", "/api/v1/dashboards"),
    ("GET", "/api/v1/dashboards/1"),
    ("POST", "/api/v1/dashboards/1/tiles"),
    ("PATCH", "/api/v1/dashboards/1/tiles/1"),
    ("DELETE", "/api/v1/dashboards/1/tiles/1"),
    ("PUT", "/api/v1/dashboards/1/tiles/order"),
    ("PATCH", "/api/v1/dashboards/1"),
    ("DELETE", "/api/v1/dashboards/1"),
    ("GET", "/api/v1/entities"),
    ("GET", "/api/v1/entities/e1"),
    ("PUT", "/api/v1/entities/e1"),
    ("DELETE", "/api/v1/entities/e1"),
    ("GET", "/api/v1/entities/e1/metrics"),
    ("POST", "/api/v1/metrics"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_endpoint_requires_a_token(client, method, path):
    response = send(client, method, path, json={})
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
    ("tenant-with-nul", lambda tenant, keys: f"Bearer {mint_token(tenant + chr(0))}", "ANALYTICS_1004"),
    ("tenant-with-newline", lambda tenant, keys: f"Bearer {mint_token(tenant + chr(10))}", "ANALYTICS_1004"),
    ("exp-beyond-any-float", lambda tenant, keys: f"Bearer {mint_token(tenant, exp=10**400)}", "ANALYTICS_1002"),
    ("exp-past-year-9999", lambda tenant, keys: f"Bearer {mint_token(tenant, exp=253402300800)}", "ANALYTICS_1002"),
    ("exp-infinity", lambda tenant, keys: f"Bearer {mint_token(tenant, exp=float('inf'))}", "ANALYTICS_1002"),
    ("nbf-infinity", lambda tenant, keys: f"Bearer {mint_token(tenant, nbf=float('-inf'))}", "ANALYTICS_1002"),
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
def test_bad_credentials_are_refused(client, tenant, rsa_keys, authorization, code):
    response = send(client, "GET", "/api/v1/dashboards", headers={"Authorization": authorization(tenant, rsa_keys)})
    assert_error(response, 401, code)


def test_rs256_token_signed_by_another_key_is_refused(client, tenant):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = mint_token(tenant, algorithm="RS256", key=pem)
    assert_error(send(client, "GET", "/api/v1/dashboards", headers=bearer(token)), 401, "ANALYTICS_1002")


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
def test_good_credentials_act_for_their_tenant(client, tenant, rsa_keys, authorization):
    headers = {"Authorization": authorization(tenant, rsa_keys)}
    created = send(client, "POST", "/api/v1/dashboards", headers=headers, json={"name": "Mine"})
    assert created.status_code == 201, created.text

    listed = send(client, "GET", "/api/v1/dashboards", headers=headers)

    assert listed.status_code == 200
    assert listed.json == {"dashboards": [{"id": created.json["id"], "name": "Mine", "version": 1}]}


# --- roles ---------------------------------------------------------------------------------------------------------

WRITES = {
    "create-dashboard": ("POST", "/dashboards", lambda ids: {"name": "Nope"}),
    "add-tile": ("POST", "/dashboards/{dashboard}/tiles", lambda ids: NEW_TILE),
    "update-tile": ("PATCH", "/dashboards/{dashboard}/tiles/{tile}", lambda ids: {"title": "Nope"}),
    "remove-tile": ("DELETE", "/dashboards/{dashboard}/tiles/{tile}", lambda ids: None),
    "reorder-tiles": ("PUT", "/dashboards/{dashboard}/tiles/order", lambda ids: {"tileIds": ids[::-1]}),
    "put-entity": ("PUT", "/entities/{entity}", lambda ids: {"entityType": "event", "name": "Renamed"}),
    "detach-dashboard": ("PUT", "/entities/{entity}", lambda ids: {"entityType": "event", "dashboardId": None}),
    "rename-dashboard": ("PATCH", "/dashboards/{dashboard}", lambda ids: {"name": "Nope"}),
    "delete-dashboard": ("DELETE", "/dashboards/{dashboard}", lambda ids: None),
    "delete-entity": ("DELETE", "/entities/{entity}", lambda ids: None),
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
    assert response.status_code in (200, 201, 204), response.text


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
