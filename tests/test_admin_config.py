"""The admin page's settings, as a process starting with them sees them (``flask --app wsgi routes``)."""

import pytest

from testkit import flask_cli, server_env


@pytest.fixture
def env(tmp_path):
    """A server environment with no admin settings at all."""
    return {k: v for k, v in server_env(tmp_path).items() if k not in ("SECRET_KEY", "ADMIN_ENABLED")}


def routes(env, **changes):
    return flask_cli({**env, **changes}, "routes")


def test_admin_is_on_with_a_secret_key(env):
    result = routes(env, SECRET_KEY="k" * 32)
    assert result.returncode == 0, result.stderr
    assert "admin.sign_in" in result.stdout


@pytest.mark.parametrize(
    "changes", [{}, {"ADMIN_ENABLED": "0", "SECRET_KEY": "k" * 32}], ids=["no-key", "switched-off"]
)
def test_admin_is_off_without_a_secret_key_or_when_switched_off(env, changes):
    result = routes(env, **changes)
    assert result.returncode == 0, result.stderr
    assert "admin." not in result.stdout
    assert "site.dashboard" in result.stdout  # the browser dashboard needs no secret key


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ADMIN_ENABLED": "1"}, "ADMIN_ENABLED is on but SECRET_KEY is not set"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 bytes"),
        ({"SECRET_KEY": "k" * 32, "ADMIN_DEV_LOGIN": "1", "JWT_SECRET": ""}, "ADMIN_DEV_LOGIN needs JWT_SECRET"),
    ],
    ids=["enabled-without-key", "short-key", "dev-login-without-jwt-secret"],
)
def test_settings_that_cannot_work_stop_the_process(env, changes, message):
    result = routes(env, **changes)
    assert result.returncode != 0
    assert message in result.stderr
