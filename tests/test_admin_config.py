"""The admin page's settings, as an app built from them in this process sees them (its ``flask routes``)."""

import pytest
from flask.cli import routes_command

from testkit import server_env
from tests.conftest import app_from_env


@pytest.fixture
def env(tmp_path):
    """A server environment with no admin settings at all."""
    return {k: v for k, v in server_env(tmp_path).items() if k not in ("SECRET_KEY", "ADMIN_ENABLED")}


def routes(env, **changes):
    """What ``flask routes`` lists for an app built from ``env`` with ``changes``."""
    result = app_from_env({**env, **changes}).test_cli_runner().invoke(routes_command)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_admin_is_on_with_a_secret_key(env):
    assert "admin.sign_in" in routes(env, SECRET_KEY="k" * 32)


@pytest.mark.parametrize(
    "changes", [{}, {"ADMIN_ENABLED": "0", "SECRET_KEY": "k" * 32}], ids=["no-key", "switched-off"]
)
def test_admin_is_off_without_a_secret_key_or_when_switched_off(env, changes):
    listed = routes(env, **changes)
    assert "admin." not in listed
    assert "site.dashboard" in listed  # the browser dashboard needs no secret key


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ADMIN_ENABLED": "1"}, "ADMIN_ENABLED is on but SECRET_KEY is not set"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 bytes"),
        ({"SECRET_KEY": "k" * 32, "ADMIN_DEV_LOGIN": "1", "JWT_SECRET": ""}, "ADMIN_DEV_LOGIN needs JWT_SECRET"),
        ({"TRUSTED_PROXIES": "10.0.0.1, proxy.example"}, "TRUSTED_PROXIES must list IP addresses, got 'proxy.example'"),
    ],
    ids=["enabled-without-key", "short-key", "dev-login-without-jwt-secret", "trusted-proxy-not-an-address"],
)
def test_settings_that_cannot_work_stop_the_process(env, changes, message):
    with pytest.raises(ValueError) as refused:
        app_from_env({**env, **changes})
    assert message in str(refused.value)
