"""The ``flask --app wsgi`` commands, run as a user would, on the live server's database."""

import jwt
import pytest

from testkit import Api, flask_cli, mint_token, unique

DEMO_EVENT = "event-uuid-123"
DEMO_VENUE = "venue-uuid-456"


def cli(live_server, *args, drop=()):
    """Run a command with the live server's environment, minus the variables in ``drop``."""
    env = {k: v for k, v in live_server.env.items() if k not in drop}
    return flask_cli(env, *args)


def succeeded(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def reader(live_server, tenant):
    """A REST client of ``tenant`` with no role at all: reads only."""
    return Api(live_server.url, mint_token(tenant))


@pytest.fixture
def seeded(live_server, tenant):
    """This test's tenant with the demo data in it."""
    succeeded(cli(live_server, "seed-demo", "--tenant", tenant))
    return tenant


# --- token ---------------------------------------------------------------------------------------------------------


def test_token_is_accepted_by_the_server(live_server, tenant):
    output = succeeded(cli(live_server, "token", "--tenant", tenant, "--roles", "admin", "--lifetime", "60"))
    token = output.strip()
    assert "\n" not in token

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["tenantId"] == tenant
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"

    api = Api(live_server.url, token)
    created = api.create_dashboard(name="From the CLI token")
    assert api.call("GET", "/dashboards", 200) == {
        "dashboards": [{"id": created["id"], "name": "From the CLI token", "version": 1}]
    }


def test_token_defaults_to_admin_and_ingest_for_a_day(live_server, tenant):
    token = succeeded(cli(live_server, "token", "--tenant", tenant)).strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "dev"
    assert claims["roles"] == ["admin", "ingest"]
    assert claims["exp"] - claims["iat"] == 86400


def test_token_carries_only_the_roles_asked_for(live_server, tenant):
    token = succeeded(cli(live_server, "token", "--tenant", tenant, "--roles", " ingest , ", "--subject", "feeder"))
    claims = jwt.decode(token.strip(), options={"verify_signature": False})
    assert claims["roles"] == ["ingest"]
    assert claims["sub"] == "feeder"
    response = Api(live_server.url, token.strip()).call("POST", "/dashboards", json={"name": "nope"})
    assert response.status_code == 403
    assert response.json()["code"] == "ANALYTICS_1005"


@pytest.mark.parametrize(
    "drop", [("JWT_SECRET",), ("JWT_SECRET", "JWT_PUBLIC_KEY")], ids=["rs256-only-server", "no-keys-at-all"]
)
def test_token_without_jwt_secret_fails(live_server, tenant, drop):
    result = cli(live_server, "token", "--tenant", tenant, drop=drop)
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("lifetime", ["0", "-5", "soon"])
def test_token_refuses_a_bad_lifetime(live_server, tenant, lifetime):
    result = cli(live_server, "token", "--tenant", tenant, "--lifetime", lifetime)
    assert result.returncode == 2, result.stderr
    assert "--lifetime" in result.stderr


# --- seed-demo -----------------------------------------------------------------------------------------------------


def test_seed_demo_creates_once_then_is_already_present(live_server, tenant):
    first = succeeded(cli(live_server, "seed-demo", "--tenant", tenant))
    second = succeeded(cli(live_server, "seed-demo", "--tenant", tenant))

    assert first.strip() == f"demo data created for tenant {tenant!r}"
    assert second.strip() == f"demo data already present for tenant {tenant!r}"
    api = reader(live_server, tenant)
    assert len(api.call("GET", "/dashboards", 200)["dashboards"]) == 1
    assert [e["entityId"] for e in api.call("GET", "/entities", 200)["entities"]] == [DEMO_EVENT, DEMO_VENUE]


def test_seeded_demo_event_is_readable_over_rest(live_server, seeded):
    api = reader(live_server, seeded)

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


def test_seeded_demo_stays_in_its_tenant(live_server, seeded):
    stranger = reader(live_server, unique("tenant"))
    assert stranger.call("GET", f"/entities/{DEMO_EVENT}/metrics").json()["code"] == "ANALYTICS_1101"
    assert stranger.call("GET", "/dashboards", 200) == {"dashboards": []}


# --- set-metric ----------------------------------------------------------------------------------------------------


def test_set_metric_is_visible_over_rest(live_server, seeded):
    output = succeeded(cli(live_server, "set-metric", DEMO_EVENT, "ticketsSold", "42", "--tenant", seeded))

    metric = reader(live_server, seeded).call("GET", f"/entities/{DEMO_EVENT}/metrics", 200)["metrics"]["ticketsSold"]
    assert metric["value"] == 42.0
    assert output.strip() == f"recorded {DEMO_EVENT}.ticketsSold = 42.0 at seq {metric['seq']}"


def test_set_metric_can_add_a_new_metric(live_server, seeded):
    # A negative value comes after "--", as with any click command.
    succeeded(cli(live_server, "set-metric", "--tenant", seeded, "--", DEMO_VENUE, "doorsOpen", "-1.5"))
    metrics = reader(live_server, seeded).call("GET", f"/entities/{DEMO_VENUE}/metrics", 200)["metrics"]
    assert metrics["doorsOpen"]["value"] == -1.5


def test_set_metric_on_unknown_entity_fails(live_server, seeded):
    result = cli(live_server, "set-metric", "no-such-entity", "ticketsSold", "1", "--tenant", seeded)
    assert result.returncode != 0
    assert "ANALYTICS_1101" in result.stderr
    assert "no-such-entity" in result.stderr


def test_set_metric_does_not_reach_another_tenants_entity(live_server, seeded):
    result = cli(live_server, "set-metric", DEMO_EVENT, "ticketsSold", "1", "--tenant", unique("tenant"))
    assert result.returncode != 0
    assert "ANALYTICS_1101" in result.stderr
    metrics = reader(live_server, seeded).call("GET", f"/entities/{DEMO_EVENT}/metrics", 200)["metrics"]
    assert metrics["ticketsSold"]["value"] == 1200.0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_set_metric_refuses_non_finite_values(live_server, seeded, value):
    result = cli(live_server, "set-metric", "--tenant", seeded, "--", DEMO_EVENT, "ticketsSold", value)
    assert result.returncode != 0
    assert "ANALYTICS_1200" in result.stderr
    metrics = reader(live_server, seeded).call("GET", f"/entities/{DEMO_EVENT}/metrics", 200)["metrics"]
    assert metrics["ticketsSold"]["value"] == 1200.0


@pytest.mark.parametrize(
    "args", [("ticketsSold", "lots"), ("ticketsSold",), ("", "1")], ids=["value-not-a-number", "no-value", "empty-name"]
)
def test_set_metric_refuses_bad_arguments(live_server, seeded, args):
    result = cli(live_server, "set-metric", DEMO_EVENT, *args, "--tenant", seeded)
    assert result.returncode != 0
    metrics = reader(live_server, seeded).call("GET", f"/entities/{DEMO_EVENT}/metrics", 200)["metrics"]
    assert set(metrics) == {"ticketsSold", "checkIns", "occupancy", "revenue"}
    assert metrics["ticketsSold"]["value"] == 1200.0
