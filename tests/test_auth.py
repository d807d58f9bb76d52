"""Token verification: the per-process cache of verified tokens answers only what a fresh check would."""

import time

import jwt
import pytest

from app import auth
from app.auth import VERIFIED_TOKEN_MAX_AGE, verify_token
from app.errors import AppError
from testkit import JWT_SECRET, mint_token, unique

OTHER_SECRET = "another-secret-for-the-suite-only-0123456789"


def config_with(**overrides):
    """The verification settings of ``app.config``, HS256 with the suite's secret and no leeway."""
    config = {
        "JWT_SECRET": JWT_SECRET,
        "JWT_PUBLIC_KEY": None,
        "JWT_ALGORITHMS": ["HS256"],
        "JWT_ISSUER": None,
        "JWT_AUDIENCE": None,
        "JWT_LEEWAY_SECONDS": 0,
    }
    config.update(overrides)
    return config


@pytest.fixture
def decodes(monkeypatch):
    """Count the tokens PyJWT really decodes: ``decodes()`` is the number so far."""
    calls = []
    real_decode = jwt.decode

    def counting_decode(*args, **kwargs):
        calls.append(args[0])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting_decode)
    return lambda: len(calls)


def wait_until_past(exp, timeout=5.0):
    """Return once the wall clock has passed ``exp`` (epoch seconds); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.time() <= exp:
        assert time.monotonic() < deadline, "the clock did not pass exp"
        time.sleep(0.05)


def exp_of(token):
    """The token's ``exp`` claim, read without verifying (and without the counted ``jwt.decode``)."""
    return jwt.PyJWT().decode(token, options={"verify_signature": False})["exp"]


def error_code(token, config):
    with pytest.raises(AppError) as refused:
        verify_token(token, config)
    return refused.value.error.code


def test_same_token_is_decoded_once(decodes):
    token = mint_token(unique("tenant"), roles=("ingest",))
    config = config_with()

    first = verify_token(token, config)
    again = verify_token(token, config)

    assert again == first
    assert again.roles == frozenset({"ingest"})
    assert decodes() == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"JWT_SECRET": OTHER_SECRET}, "ANALYTICS_1002"),
        ({"JWT_ALGORITHMS": ["RS256"]}, "ANALYTICS_1002"),
        ({"JWT_ISSUER": "https://id.example.test"}, "ANALYTICS_1002"),
        ({"JWT_AUDIENCE": "analytics"}, "ANALYTICS_1002"),
    ],
    ids=["other-secret", "other-algorithms", "issuer-required", "audience-required"],
)
def test_other_settings_do_not_reuse_the_cache(change, code):
    token = mint_token(unique("tenant"))
    verify_token(token, config_with())

    assert error_code(token, config_with(**change)) == code


def test_other_leeway_decodes_again_and_carries_its_own_expiry(decodes):
    token = mint_token(unique("tenant"), ttl=600)
    exp = exp_of(token)

    assert verify_token(token, config_with()).expires_at == exp
    assert verify_token(token, config_with(JWT_LEEWAY_SECONDS=30)).expires_at == exp + 30
    assert decodes() == 2


@pytest.mark.parametrize(
    "token",
    [mint_token(None), mint_token("t1", roles=[1, 2]), mint_token("t1", key=OTHER_SECRET), mint_token("t1", ttl=-60)],
    ids=["no-tenant", "bad-roles", "wrong-secret", "expired"],
)
def test_refusals_are_not_cached(decodes, token):
    config = config_with()
    first = error_code(token, config)

    assert error_code(token, config) == first
    assert decodes() == 2


def test_cached_token_is_refused_once_it_expires(decodes):
    token = mint_token(unique("tenant"), ttl=2)
    exp = exp_of(token)
    config = config_with()
    verify_token(token, config)
    verify_token(token, config)
    assert decodes() == 1

    wait_until_past(exp)

    assert error_code(token, config) == "ANALYTICS_1003"
    assert decodes() == 2


def test_a_token_is_remembered_until_exp_and_at_most_the_max_age():
    now = 1_000_000.0
    principal = object()
    assert auth._remember_until("key", (principal, now + 5), now) == now + 5
    assert auth._remember_until("key", (principal, now + 3600), now) == now + VERIFIED_TOKEN_MAX_AGE
    assert VERIFIED_TOKEN_MAX_AGE <= 60
    assert auth._verified.maxsize == auth.VERIFIED_TOKENS_CACHED


@pytest.mark.backends("sqlite")
def test_the_app_refuses_a_token_it_accepted_once_it_expires(app, client, monkeypatch):
    """Through REST requests, in process: nothing here needs a server process (the cache is the same code)."""
    monkeypatch.setitem(app.config, "JWT_LEEWAY_SECONDS", 0)  # no clock leeway: refused right at ``exp``
    token = mint_token(unique("tenant"), ttl=2)
    exp = exp_of(token)
    headers = {"Authorization": f"Bearer {token}"}

    # Accepted while valid, answered from the cache after the first request.
    for _ in range(3):
        response = client.get("/api/v1/dashboards", headers=headers)
        assert response.status_code == 200, response.text

    wait_until_past(exp)

    response = client.get("/api/v1/dashboards", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json == {"code": "ANALYTICS_1003", "message": "token expired"}
