"""Handshake authentication: every refusal reason, both algorithms, no key confusion, expiry mid-connection.

None of it depends on the database: SQLite only.
"""

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
import socketio

from testkit import JWT_SECRET, RecordingClient, free_port, mint_token, server_on

pytestmark = pytest.mark.backends("sqlite")

ALLOWED_ORIGIN = "http://dashboards.example.test"


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(claims, key_bytes):
    """Sign HS256 by hand, with any bytes as the key (PyJWT refuses a PEM as an HMAC key)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key_bytes, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def unsigned(claims):
    """A token with ``alg: none`` and no signature."""
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def refusal(server, auth):
    """Connect with ``auth`` (None sends no auth at all) and return the connect_error payload."""
    client = RecordingClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.client.connect(
            server.url, namespaces=["/dashboard"], auth=auth, transports=["websocket"], wait_timeout=10
        )
    client.disconnect()
    assert len(client.connect_errors) == 1, client.connect_errors
    return client.connect_errors[0]


def now():
    return int(time.time())


REFUSALS = [
    pytest.param(None, "missing token", "ANALYTICS_1001", id="no-auth"),
    pytest.param({}, "missing token", "ANALYTICS_1001", id="empty-auth"),
    pytest.param({"token": ""}, "missing token", "ANALYTICS_1001", id="empty-token"),
    pytest.param({"token": 42}, "invalid token", "ANALYTICS_1002", id="non-string-token"),
    pytest.param({"token": "not-a-jwt"}, "invalid token", "ANALYTICS_1002", id="garbage"),
    pytest.param(
        {"token": mint_token(key="another-secret-of-enough-length-0123456789")},
        "invalid token",
        "ANALYTICS_1002",
        id="wrong-secret",
    ),
    pytest.param({"token": mint_token(ttl=-3600)}, "token expired", "ANALYTICS_1003", id="expired"),
    pytest.param({"token": mint_token(tenant_id=None)}, "missing tenant", "ANALYTICS_1004", id="no-tenant"),
    pytest.param({"token": mint_token(tenant_id="")}, "missing tenant", "ANALYTICS_1004", id="empty-tenant"),
    pytest.param({"token": mint_token(tenant_id=7)}, "missing tenant", "ANALYTICS_1004", id="numeric-tenant"),
    pytest.param({"token": mint_token(nbf=now() + 3600)}, "invalid token", "ANALYTICS_1002", id="not-yet-valid"),
    pytest.param({"token": mint_token(exp=None)}, "invalid token", "ANALYTICS_1002", id="no-exp"),
    pytest.param({"token": mint_token(exp=10**400)}, "invalid token", "ANALYTICS_1002", id="exp-beyond-any-float"),
    pytest.param({"token": mint_token(tenant_id="t\x00")}, "missing tenant", "ANALYTICS_1004", id="tenant-with-nul"),
    pytest.param(
        {"token": unsigned({"tenantId": "t1", "exp": now() + 3600})}, "invalid token", "ANALYTICS_1002", id="alg-none"
    ),
]


@pytest.mark.parametrize(("auth", "message", "code"), REFUSALS)
def test_refused_connection_says_why(live_server, auth, message, code):
    error = refusal(live_server, auth)
    assert error["message"].startswith(message)
    assert error["data"]["code"] == code
    assert error["data"]["message"] == error["message"]


def test_hs256_token_signed_with_the_rsa_public_key_is_refused(live_server, rsa_keys):
    token = forge_hs256({"tenantId": "t1", "exp": now() + 3600}, rsa_keys[1].encode())
    assert refusal(live_server, {"token": token})["data"]["code"] == "ANALYTICS_1002"


def test_rs256_token_signed_with_another_key_is_refused(live_server):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = mint_token(algorithm="RS256", key=other)
    assert refusal(live_server, {"token": token})["data"]["code"] == "ANALYTICS_1002"


@pytest.mark.parametrize("algorithm", ["HS256", "RS256"])
def test_valid_tokens_of_both_algorithms_connect(live_server, rsa_keys, sio_client, algorithm):
    key = JWT_SECRET if algorithm == "HS256" else rsa_keys[0]
    client = sio_client(mint_token("t1", algorithm=algorithm, key=key))
    assert client.client.connected


def test_expired_token_gets_error_then_disconnect(live_server, sio_client):
    # The server allows 30 s of clock leeway: this token runs out about 3 s from now.
    client = sio_client(mint_token("t1", ttl=-27))
    error = client.wait_for("error")
    assert error == {"code": "ANALYTICS_1003", "message": "token expired"}
    client.wait_until(lambda c: c.disconnects, what="server disconnect")
    assert client.disconnects == [socketio.Client.reason.SERVER_DISCONNECT]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory, live_server):
    """A server that also checks the issuer and the audience, and allows one browser origin besides its own.

    (The Python test clients send their own origin, ``http://127.0.0.1:PORT``, as a page on the server would.)
    It runs on the session server's database.
    """
    port = free_port()
    with server_on(
        live_server.env["DATABASE_URL"],
        tmp_path_factory.mktemp("strict"),
        PORT=port,
        JWT_ISSUER="https://id.example.test",
        JWT_AUDIENCE="analytics",
        CORS_ALLOWED_ORIGINS=f"{ALLOWED_ORIGIN},http://127.0.0.1:{port}",
    ) as server:
        yield server


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"iss": "https://id.example.test", "aud": "analytics"}, True),
        ({"iss": "https://evil.example.test", "aud": "analytics"}, False),
        ({"iss": "https://id.example.test", "aud": "other"}, False),
        ({"aud": "analytics"}, False),
        ({"iss": "https://id.example.test"}, False),
    ],
    ids=["right", "wrong-iss", "wrong-aud", "no-iss", "no-aud"],
)
def test_issuer_and_audience_are_checked_when_configured(strict_server, claims, accepted):
    token = mint_token("t1", **claims)
    if accepted:
        client = RecordingClient().connect(strict_server.url, token)
        assert client.client.connected
        client.disconnect()
    else:
        assert refusal(strict_server, {"token": token})["data"]["code"] == "ANALYTICS_1002"


def test_landing_page_lists_the_namespaces(live_server):
    page = requests.get(live_server.url + "/", timeout=10)
    assert page.status_code == 200
    assert "/dashboard" in page.text and "/analytics/dashboard" in page.text


@pytest.mark.parametrize(("origin", "allowed"), [(ALLOWED_ORIGIN, True), ("http://evil.example.test", False)])
def test_allowed_origins_are_configurable(strict_server, origin, allowed):
    response = requests.get(
        strict_server.url + "/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={"Origin": origin},
        timeout=10,
    )
    assert (response.status_code == 200) is allowed
    if allowed:
        assert response.headers["Access-Control-Allow-Origin"] == origin


def test_oversized_socket_message_closes_only_that_connection(live_server, entity, token_for, tenant, sio_client):
    big = sio_client(token_for(tenant))
    small = sio_client(token_for(tenant))
    big.emit("subscribe", {"entityId": "x" * (70 * 1024), "entityType": "event"})
    big.wait_until(lambda c: c.disconnects, what="disconnect of the oversized sender")
    assert small.subscribe(entity[0])["entityId"] == entity[0]
