"""Tokens that outlive their hour: ``auth:expiring`` before the end, ``auth:refresh`` to carry on.

A server of its own warns 2 s before expiry and allows no leeway, so that tokens of a few
seconds show the whole life of a connection; every wait is on an event the server sends.
"""

import time
from datetime import UTC, datetime

import pytest

from testkit import RecordingClient, mint_token, servers_on, unique
from tests.test_socket_auth import unsigned

WARNING = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_server):
    with servers_on(
        live_server.env["DATABASE_URL"],
        [tmp_path_factory.mktemp("refresh")],
        TOKEN_EXPIRY_WARNING=str(WARNING),
        JWT_LEEWAY_SECONDS="0",
    ) as (running,):
        yield running


def expires_at(token_ttl_started, ttl):
    return (
        datetime.fromtimestamp(token_ttl_started + ttl, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@pytest.fixture
def connect(server):
    made = []

    def make(token):
        client = RecordingClient().connect(server.url, token)
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def test_a_refreshed_connection_outlives_its_first_token_and_ends_with_the_second(connect):
    tenant = unique("tenant")
    first_at = int(time.time())
    client = connect(mint_token(tenant, ttl=4))
    warning = client.wait_for("auth:expiring")
    assert warning["expiresAt"] == expires_at(first_at, 4)
    assert 0 <= warning["expiresIn"] <= WARNING

    second_at = int(time.time())
    ack = client.call("auth:refresh", {"token": mint_token(tenant, ttl=8)})
    assert ack == {"ok": True, "expiresAt": expires_at(second_at, 8)}

    # The second token's own warning comes after the first token has expired: the connection lived on.
    again = client.wait_for("auth:expiring", lambda w: w["expiresAt"] == ack["expiresAt"], timeout=15)
    assert time.time() > first_at + 4
    assert client.of("error") == [] and client.client.connected
    assert again["expiresIn"] <= WARNING

    # Without another refresh, it ends as before.
    assert client.wait_for("error", timeout=15) == {"code": "ANALYTICS_1003", "message": "token expired"}
    client.wait_until(lambda c: c.disconnects, what="a disconnect")


def test_a_token_closer_to_expiry_than_the_warning_is_warned_at_once(connect):
    client = connect(mint_token(unique("tenant"), ttl=1))
    client.wait_for("auth:expiring")
    assert client.of("error") == []  # the warning came first
    client.wait_for("error", timeout=10)


BAD = [
    ("other-tenant", lambda tenant: {"token": mint_token(unique("other"), ttl=60)}, "ANALYTICS_1002", "another tenant"),
    (
        "other-subject",
        lambda tenant: {"token": mint_token(tenant, ttl=60, sub="someone-else")},
        "ANALYTICS_1002",
        "subject",
    ),
    ("expired", lambda tenant: {"token": mint_token(tenant, ttl=-60)}, "ANALYTICS_1003", None),
    (
        "alg-none",
        lambda tenant: {"token": unsigned({"tenantId": tenant, "sub": "tester", "exp": int(time.time()) + 60})},
        "ANALYTICS_1002",
        None,
    ),
    ("garbage", lambda tenant: {"token": "garbage"}, "ANALYTICS_1002", None),
    ("no-token", lambda tenant: {}, "ANALYTICS_1001", None),
    ("not-a-string", lambda tenant: {"token": 42}, "ANALYTICS_1001", None),
]


@pytest.mark.parametrize(("body", "code", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_refused_refresh_keeps_the_old_expiry(connect, body, code, fragment):
    tenant = unique("tenant")
    client = connect(mint_token(tenant, ttl=3))
    ack = client.call("auth:refresh", body(tenant))
    assert ack["ok"] is False and ack["error"]["code"] == code, ack
    if fragment:
        assert fragment in ack["error"]["message"]
    assert client.wait_for("error")["code"] == code  # also as an event, for clients without acks
    assert client.wait_for("error", lambda e: e["code"] == "ANALYTICS_1003", timeout=10)
    client.wait_until(lambda c: c.disconnects, what="a disconnect")


def test_a_payload_that_is_not_an_object_is_1100(connect):
    client = connect(mint_token(unique("tenant"), ttl=60))
    assert client.call("auth:refresh", "token")["error"]["code"] == "ANALYTICS_1100"


def test_refreshes_count_against_the_event_rate_limit(connect):
    tenant = unique("tenant")
    client = connect(mint_token(tenant, ttl=600))
    token = mint_token(tenant, ttl=600)
    for _ in range(260):  # SOCKET_RATE_LIMIT of the test servers: 200/second
        client.emit("auth:refresh", {"token": token})
    assert client.wait_for("error", lambda e: e["code"] == "ANALYTICS_1103")["message"] == "too many events; slow down"
