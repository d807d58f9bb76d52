"""The ``flask`` commands (token, seed-demo, set-metric), run in process with Flask's CLI runner.

Their effects are read back through the in-process app's REST API, as a user of the
commands would see them. One test runs ``flask --app wsgi token`` in a shell process:
what ``make run`` reads from its output can only be seen there.
"""

import jwt
import pytest

from testkit import flask_cli, mint_token, server_env, unique
from tests.api.conftest import Api
from tests.conftest import app_from_env

DEMO_EVENT = "event-uuid-123"
DEMO_VENUE = "venue-uuid-456"

# Arguments refused, and tokens minted, before any SQL.
sqlite_only = pytest.mark.backends("sqlite")


def succeeded(result):
    """The command's stdout, after checking that it exited 0."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def reader(client, tenant):
    """A REST client of ``tenant`` with no role at all: reads only."""
    return Api(client, mint_token(tenant))


def metrics_of(client, tenant, entity_id):
    """The entity's current metrics as its tenant reads them over REST."""
    return reader(client, tenant).call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"]


@pytest.fixture
def seeded(cli_runner, tenant):
    """This test's tenant with the demo data in it."""
    succeeded(cli_runner.invoke(args=["seed-demo", "--tenant", tenant]))
    return tenant


# --- token ---------------------------------------------------------------------------------------------------------


@sqlite_only
def test_token_is_accepted_by_the_app(cli_runner, client, tenant):
    output = succeeded(cli_runner.invoke(args=["token", "--tenant", tenant, "--roles", "admin", "--lifetime", "60"]))
    token = output.strip()
    assert "\n" not in token

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tenantId"] == tenant
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"

    api = Api(client, token)
    created = api.create_dashboard(name="From the CLI token")
    assert api.call("GET", "/dashboards", 200) == {
        "dashboards": [{"id": created["id"], "name": "From the CLI token", "version": 1}]
    }


@sqlite_only
def test_token_printed_in_a_shell_is_the_whole_output(client, tmp_path, tenant):
    """``flask --app wsgi token`` prints the token and nothing else on stdout.

    ``make run`` reads it with ``token=$(flask --app wsgi token ...)``: anything else written
    to stdout by the real entry point (``wsgi.py``: gevent patching, ``create_app()``,
    logging set up for a process) would end up in the token. The CLI runner captures only
    what the command echoes, so only a process of its own can show this.
    """
    result = flask_cli(server_env(tmp_path), "token", "--tenant", tenant, "--roles", "admin")

    assert result.returncode == 0, result.stderr
    token = result.stdout.removesuffix("\n")
    assert token and "\n" not in token
    api = Api(client, token)
    created = api.create_dashboard(name="From the shell")
    assert api.dashboard(created["id"])["name"] == "From the shell"


@sqlite_only
def test_token_defaults_to_admin_and_ingest_for_a_day(cli_runner, tenant):
    token = succeeded(cli_runner.invoke(args=["token", "--tenant", tenant])).strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "dev"
    assert claims["roles"] == ["admin", "ingest"]
    assert claims["exp"] - claims["iat"] == 86400


@sqlite_only
def test_token_carries_only_the_roles_asked_for(cli_runner, client, tenant):
    token = succeeded(
        cli_runner.invoke(args=["token", "--tenant", tenant, "--roles", " ingest , ", "--subject", "feeder"])
    )
    claims = jwt.decode(token.strip(), options={"verify_signature": False})
    assert claims["roles"] == ["ingest"]
    assert claims["sub"] == "feeder"
    response = Api(client, token.strip()).call("POST", "/dashboards", json={"name": "nope"})
    assert response.status_code == 403
    assert response.json["code"] == "ANALYTICS_1005"


@sqlite_only
@pytest.mark.parametrize(
    "drop", [("JWT_SECRET",), ("JWT_SECRET", "JWT_PUBLIC_KEY")], ids=["rs256-only-server", "no-keys-at-all"]
)
def test_token_without_jwt_secret_fails(tmp_path, rsa_keys, tenant, drop):
    env = server_env(tmp_path, JWT_PUBLIC_KEY=rsa_keys[1])
    app = app_from_env({k: v for k, v in env.items() if k not in drop})

    result = app.test_cli_runner().invoke(args=["token", "--tenant", tenant])

    assert result.exit_code != 0
    assert "JWT_SECRET" in result.stderr
    assert result.stdout.strip() == ""


@sqlite_only
@pytest.mark.parametrize("lifetime", ["0", "-5", "soon"])
def test_token_refuses_a_bad_lifetime(cli_runner, tenant, lifetime):
    result = cli_runner.invoke(args=["token", "--tenant", tenant, "--lifetime", lifetime])
    assert result.exit_code == 2, result.output
    assert "--lifetime" in result.stderr


# --- seed-demo -----------------------------------------------------------------------------------------------------


def test_seed_demo_creates_once_then_is_already_present(cli_runner, client, tenant):
    first = succeeded(cli_runner.invoke(args=["seed-demo", "--tenant", tenant]))
    second = succeeded(cli_runner.invoke(args=["seed-demo", "--tenant", tenant]))

    assert first.strip() == f"demo data created for tenant {tenant!r}"
    assert second.strip() == f"demo data already present for tenant {tenant!r}"
    api = reader(client, tenant)
    assert len(api.call("GET", "/dashboards", 200)["dashboards"]) == 1
    assert [e["entityId"] for e in api.call("GET", "/entities", 200)["entities"]] == [DEMO_EVENT, DEMO_VENUE]


def test_seeded_demo_event_is_readable_over_rest(client, seeded):
    api = reader(client, seeded)

    event = api.call("GET", f"/entities/{DEMO_EVENT}", 200)
    assert event["entityType"] == "event"
    assert event["name"] == "Demo Festival 2026"
    dashboard = api.call("GET", f"/dashboards/{event['dashboardId']}", 200)
    assert [t["metricName"] for t in dashboard["tiles"]] == ["ticketsSold", "checkIns", "occupancy", "revenue"]
    metrics = api.call("GET", f"/entities/{DEMO_EVENT}/metrics", 200)["metrics"]
    assert {name: m["value"] for name, m in metrics.items()} == {
        "ticketsSold": 1200.0,
        "checkIns": 40.0,
        "occupancy": 35.0,
        "revenue": 54000.0,
    }
    venue = api.call("GET", f"/entities/{DEMO_VENUE}", 200)
    assert venue == {"entityId": DEMO_VENUE, "entityType": "venue", "name": "Demo Arena", "dashboardId": None}


def test_seeded_demo_stays_in_its_tenant(client, seeded):
    stranger = reader(client, unique("tenant"))
    assert stranger.call("GET", f"/entities/{DEMO_EVENT}/metrics").json["code"] == "ANALYTICS_1101"
    assert stranger.call("GET", "/dashboards", 200) == {"dashboards": []}


# --- set-metric ----------------------------------------------------------------------------------------------------


def test_set_metric_is_visible_over_rest(cli_runner, client, seeded):
    output = succeeded(cli_runner.invoke(args=["set-metric", DEMO_EVENT, "ticketsSold", "42", "--tenant", seeded]))

    metric = metrics_of(client, seeded, DEMO_EVENT)["ticketsSold"]
    assert metric["value"] == 42.0
    assert output.strip() == f"recorded {DEMO_EVENT}.ticketsSold = 42.0 at seq {metric['seq']}"


def test_set_metric_can_add_a_new_metric(cli_runner, client, seeded):
    # A negative value comes after "--", as with any click command.
    succeeded(cli_runner.invoke(args=["set-metric", "--tenant", seeded, "--", DEMO_VENUE, "doorsOpen", "-1.5"]))
    assert metrics_of(client, seeded, DEMO_VENUE)["doorsOpen"]["value"] == -1.5


def test_set_metric_on_unknown_entity_fails(cli_runner, seeded):
    result = cli_runner.invoke(args=["set-metric", "no-such-entity", "ticketsSold", "1", "--tenant", seeded])
    assert result.exit_code != 0
    assert "ANALYTICS_1101" in result.stderr
    assert "no-such-entity" in result.stderr


def test_set_metric_with_an_entity_type_registers_an_unknown_entity(cli_runner, client, seeded):
    entity_id = unique("venue")
    succeeded(
        cli_runner.invoke(
            args=["set-metric", entity_id, "occupancy", "7", "--tenant", seeded, "--entity-type", "venue"]
        )
    )
    assert metrics_of(client, seeded, entity_id)["occupancy"]["value"] == 7.0
    result = cli_runner.invoke(
        args=["set-metric", unique("x"), "m", "1", "--tenant", seeded, "--entity-type", "concert"]
    )
    assert result.exit_code != 0
    assert "ANALYTICS_1200" in result.stderr and "entityType" in result.stderr


def test_set_metric_does_not_reach_another_tenants_entity(cli_runner, client, seeded):
    result = cli_runner.invoke(args=["set-metric", DEMO_EVENT, "ticketsSold", "1", "--tenant", unique("tenant")])
    assert result.exit_code != 0
    assert "ANALYTICS_1101" in result.stderr
    assert metrics_of(client, seeded, DEMO_EVENT)["ticketsSold"]["value"] == 1200.0


@sqlite_only
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_set_metric_refuses_non_finite_values(cli_runner, client, seeded, value):
    result = cli_runner.invoke(args=["set-metric", "--tenant", seeded, "--", DEMO_EVENT, "ticketsSold", value])
    assert result.exit_code != 0
    assert "ANALYTICS_1200" in result.stderr
    assert metrics_of(client, seeded, DEMO_EVENT)["ticketsSold"]["value"] == 1200.0


@sqlite_only
@pytest.mark.parametrize(
    "args", [("ticketsSold", "lots"), ("ticketsSold",), ("", "1")], ids=["value-not-a-number", "no-value", "empty-name"]
)
def test_set_metric_refuses_bad_arguments(cli_runner, client, seeded, args):
    result = cli_runner.invoke(args=["set-metric", DEMO_EVENT, *args, "--tenant", seeded])
    assert result.exit_code != 0
    metrics = metrics_of(client, seeded, DEMO_EVENT)
    assert set(metrics) == {"ticketsSold", "checkIns", "occupancy", "revenue"}
    assert metrics["ticketsSold"]["value"] == 1200.0


def test_set_metric_keeps_to_the_metric_names_cap(app, cli_runner, client, seeded, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_METRICS_PER_ENTITY", len(metrics_of(client, seeded, DEMO_EVENT)))
    result = cli_runner.invoke(args=["set-metric", DEMO_EVENT, "aNewName", "1", "--tenant", seeded])
    assert result.exit_code != 0
    assert "ANALYTICS_1205" in result.stderr
