"""Tokens verified by a key set (JWT_JWKS_URL): keys by ``kid``, rotation, and a key set that cannot be fetched.

A real HTTP server on 127.0.0.1 serves the key set and counts its requests; the cache rules run
against it with a clock the test moves, and a live server verifies sockets' tokens through it.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.auth import JWKS_COOLDOWN, JwksKeys
from app.errors import AppError
from testkit import RecordingClient, servers_on, unique


def new_key(kind):
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )


def public_jwk(private, kid, algorithm):
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": algorithm}


class KeySetServer:
    """Serves ``{"keys": [...]}`` at /jwks; ``up`` False answers 503; counts the requests."""

    def __init__(self):
        self.keys = []
        self.up = True
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200 if owner.up else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/jwks"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def key_set():
    server = KeySetServer()
    yield server
    server.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_keys_by_kid_rotation_and_one_fetch_per_cooldown(key_set):
    first = new_key("RS256")
    key_set.keys = [public_jwk(first, "k1", "RS256")]
    clock = Clock()
    keys = JwksKeys(key_set.url, cache_seconds=300, clock=clock)

    assert keys.key("k1", "RS256") is not None
    assert keys.key("k1", "RS256") is not None
    assert key_set.requests == 1

    # A rotated key is fetched when a token names it, once the cooldown has passed; a flood of
    # unknown kids meanwhile fetches nothing.
    key_set.keys = [public_jwk(first, "k1", "RS256"), public_jwk(new_key("ES256"), "k2", "ES256")]
    clock.now += 1
    for kid in ["k2", *(f"nope-{i}" for i in range(100))]:
        with pytest.raises(AppError):
            keys.key(kid, "ES256")
    assert key_set.requests == 1
    clock.now += JWKS_COOLDOWN
    assert keys.key("k2", "ES256") is not None
    assert key_set.requests == 2
    with pytest.raises(AppError, match="kid and algorithm"):
        keys.key("k2", "RS256")  # a key is only ever used for its own algorithm


def test_while_the_key_set_cannot_be_fetched_the_keys_fetched_before_keep_working(key_set):
    key_set.keys = [public_jwk(new_key("RS256"), "k1", "RS256")]
    clock = Clock()
    keys = JwksKeys(key_set.url, cache_seconds=60, clock=clock)
    keys.key("k1", "RS256")
    key_set.up = False
    for _ in range(5):
        clock.now += 61  # stale: a fetch is due, and fails
        assert keys.key("k1", "RS256") is not None
    assert key_set.requests == 6
    key_set.http.shutdown()  # unreachable now
    clock.now += 61
    assert keys.key("k1", "RS256") is not None


@pytest.fixture
def jwks_server(tmp_path, live_server, key_set):
    with servers_on(live_server.env["DATABASE_URL"], [tmp_path / "jwks"], JWT_JWKS_URL=key_set.url) as (server,):
        yield server


@pytest.mark.backends("sqlite")
def test_sockets_connect_and_refresh_with_tokens_of_the_key_set(jwks_server, key_set):
    rsa_key, ec_key = new_key("RS256"), new_key("ES256")
    key_set.keys = [public_jwk(rsa_key, "r1", "RS256"), public_jwk(ec_key, "e1", "ES256")]
    tenant = unique("tenant")

    def token(private, kid, algorithm, ttl=600):
        claims = {"sub": "u", "tenantId": tenant, "exp": int(time.time()) + ttl}
        return jwt.encode(claims, private, algorithm=algorithm, headers={"kid": kid})

    client = RecordingClient().connect(jwks_server.url, token(rsa_key, "r1", "RS256"))
    try:
        assert client.call("auth:refresh", {"token": token(ec_key, "e1", "ES256")})["ok"] is True
        # A key of another set, under a kid the set has: refused.
        forged = token(new_key("RS256"), "r1", "RS256")
        assert client.call("auth:refresh", {"token": forged})["error"]["code"] == "ANALYTICS_1002"
    finally:
        client.disconnect()
