"""The admin page's dashboard and entity lifecycle: create, copy, rename and delete dashboards; register
entities, choose or clear their dashboard, delete them.

In process (``admin_client``): every form read out of the page and sent back as a browser sends it, with the
bad input, stale versions, forged CSRF tokens and other tenants' ids an attacker would send instead. In the
browser: each action with a second page, never reloaded, showing the entity's live dashboard follow it.
"""

import html
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import expect

from testkit import mint_token, server_env, unique
from tests.api.conftest import Api
from tests.browser import AdminPage, DashboardPage
from tests.conftest import app_from_env
from tests.test_admin import dashboard_page, field_errors, flashes, forms_of, sign_in, signed_in_session, tile_titles

# The admin views call the services the REST tests run on both backends; nothing here depends on SQL behaviour.
pytestmark = pytest.mark.backends("sqlite")

STALE = "someone else changed this dashboard"


# --- in process ----------------------------------------------------------------------------------------------------


@pytest.fixture
def rest(app, tenant):
    """REST client (admin+ingest) of this test's tenant, with a cookie jar of its own."""
    return Api(app.test_client(), mint_token(tenant, roles=("admin", "ingest")))


@pytest.fixture
def foreign(app):
    """REST client of another tenant, with a dashboard and an entity of its own: ``(api, dashboard, entity_id)``."""
    api = Api(app.test_client(), mint_token(unique("someone-else"), roles=("admin",)))
    dashboard = api.create_dashboard("Not yours")
    entity_id = unique("theirs")
    api.put_entity(entity_id, "event", dashboard["id"], name="Their entity")
    return api, dashboard, entity_id


@pytest.fixture
def admin_client(client, tenant):
    """The test client, signed in on the admin page with an admin token of this test's tenant."""
    signed_in = sign_in(client, mint_token(tenant, roles=("admin",)))
    assert signed_in.status_code == 200 and signed_in_session(client)["tenant"] == tenant
    return client


@pytest.fixture
def used(rest):
    """A two-tile dashboard shown on two event entities: ``(dashboard, [entity ids])``."""
    dashboard = rest.create_dashboard()
    entity_ids = sorted(unique("event") for _ in range(2))
    for entity_id in entity_ids:
        rest.put_entity(entity_id, "event", dashboard["id"])
    return dashboard, entity_ids


def index_forms(client):
    """The start page's forms (asserts 200)."""
    page = client.get("/admin")
    assert page.status_code == 200, page.text
    return forms_of(page)


def dashboards_of(api):
    """The tenant's dashboards ``[{id, name, version}]``."""
    return api.call("GET", "/dashboards", 200)["dashboards"]


def entity_of(api, entity_id):
    """One entity of the tenant, or None when it has none of that id."""
    status, body, _ = api.request("GET", f"/entities/{entity_id}")
    return body if status == 200 else None


def is_not_found_page(response, message=None):
    """The admin error page answering 404 (with ``message`` among its flashes)."""
    found = response.status_code == 404 and 'id="error-page"' in response.text
    return found and (message is None or message in flashes(response, "error"))


def entity_path(action, entity_id):
    """The admin URL of an entity action; the id travels in the query string, so any printable id fits."""
    return f"/admin/entities/{action}?{urlencode({'entity_id': entity_id})}"


def entities_by_id(api):
    """The tenant's entities by id (REST's ``/entities/<id>`` cannot name an id with a slash)."""
    return {e["entityId"]: e for e in api.call("GET", "/entities", 200)["entities"]}


def test_the_start_page_offers_the_forms_instead_of_api_hints(admin_client, tenant):
    page = admin_client.get("/admin")

    assert page.status_code == 200
    assert "POST /api/v1/dashboards" not in page.text and "PUT /api/v1/entities" not in page.text
    forms = forms_of(page)
    assert set(forms["create-dashboard"]) == {"csrf_token", "name", "copy_of"}
    assert set(forms["register-entity"]) == {"csrf_token", "entity_id", "entity_type", "entity_name", "dashboard_id"}
    assert re.findall(r'<option value="(\w+)"', page.text.split('id="register-entity"')[1]) == ["event", "venue"]


# Creating dashboards.


def test_create_an_empty_dashboard(admin_client, rest):
    form = {**index_forms(admin_client)["create-dashboard"], "name": "Blank"}

    created = admin_client.post("/admin/dashboards", data=form)

    assert created.status_code == 303
    [dashboard] = [d for d in dashboards_of(rest) if d["name"] == "Blank"]
    assert created.headers["Location"] == f"/admin/dashboards/{dashboard['id']}"
    page = admin_client.get(created.headers["Location"])
    assert "Created dashboard \u201cBlank\u201d." in flashes(page, "success")
    assert rest.dashboard(dashboard["id"]) == {"id": dashboard["id"], "name": "Blank", "version": 1, "tiles": []}


def test_create_a_copy_of_a_dashboard(admin_client, rest, used):
    original, _ = used
    rest.call("PATCH", f"/dashboards/{original['id']}/tiles/{original['tiles'][1]['id']}", 200, json={"unit": "USD"})
    forms = index_forms(admin_client)
    form = {**forms["create-dashboard"], "name": "Second", "copy_of": str(original["id"])}

    created = admin_client.post("/admin/dashboards", data=form, follow_redirects=True)

    assert "Created dashboard \u201cSecond\u201d, with a copy of 2 tiles." in flashes(created, "success")
    assert tile_titles(created) == ["Tickets", "Revenue"]
    [copy] = [d for d in dashboards_of(rest) if d["name"] == "Second"]
    copied, source = rest.dashboard(copy["id"]), rest.dashboard(original["id"])
    assert copied["version"] == 1
    assert [t | {"id": 0} for t in copied["tiles"]] == [t | {"id": 0} for t in source["tiles"]]
    assert not {t["id"] for t in copied["tiles"]} & {t["id"] for t in source["tiles"]}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Name is required"),
        ("   ", "Name must not be empty"),
        ("x" * 201, "Name must be at most 200 characters"),
        ("bell\x07", "Name must not contain control characters"),
    ],
    ids=["missing", "blank", "too-long", "control-character"],
)
def test_bad_dashboard_name_is_refused_next_to_its_field(admin_client, rest, used, name, message):
    before = dashboards_of(rest)
    form = {**index_forms(admin_client)["create-dashboard"], "name": name, "copy_of": str(used[0]["id"])}
    if name == "":
        del form["name"]

    refused = admin_client.post("/admin/dashboards", data=form)

    assert refused.status_code == 400
    assert field_errors(refused) == {"name": [message]}
    assert forms_of(refused)["create-dashboard"]["copy_of"] == str(used[0]["id"])  # the choice is kept
    assert dashboards_of(rest) == before


def test_copy_of_an_unknown_or_foreign_dashboard_is_not_found(admin_client, rest, foreign):
    _, theirs, _ = foreign
    form = index_forms(admin_client)["create-dashboard"]
    for copy_of in (str(theirs["id"]), "999999999", "99999999999999999999"):
        refused = admin_client.post("/admin/dashboards", data={**form, "name": "Mine", "copy_of": copy_of})
        assert is_not_found_page(refused), refused.text
        assert "Not yours" not in refused.text
    assert dashboards_of(rest) == []


@pytest.mark.parametrize("copy_of", ["abc", "-1", "1.5", " 1"])
def test_copy_of_that_is_not_a_dashboard_id_is_refused(admin_client, rest, copy_of):
    form = {**index_forms(admin_client)["create-dashboard"], "name": "Mine", "copy_of": copy_of}

    refused = admin_client.post("/admin/dashboards", data=form)

    assert refused.status_code == 400
    assert field_errors(refused) == {"copy_of": ["Choose a dashboard from the list."]}
    assert dashboards_of(rest) == []


# Renaming dashboards.


def rename_form(client, dashboard_id):
    """The rename form of the dashboard's page."""
    return forms_of(dashboard_page(client, dashboard_id))["rename-dashboard"]


def test_rename_a_dashboard_keeps_its_version(admin_client, rest, used):
    dashboard, _ = used
    form = rename_form(admin_client, dashboard["id"])
    assert form["name"] == "Overview" and form["expected_version"] == str(dashboard["version"])

    renamed = admin_client.post(
        f"/admin/dashboards/{dashboard['id']}/rename", data={**form, "name": "Box office"}, follow_redirects=True
    )

    assert "Renamed the dashboard to \u201cBox office\u201d." in flashes(renamed, "success")
    assert rest.dashboard(dashboard["id"]) == {**dashboard, "name": "Box office"}


@pytest.mark.parametrize(
    ("name", "message"),
    [("  ", "Name must not be empty"), ("x" * 201, "Name must be at most 200 characters")],
    ids=["blank", "too-long"],
)
def test_bad_new_name_is_refused(admin_client, rest, used, name, message):
    dashboard, _ = used
    form = {**rename_form(admin_client, dashboard["id"]), "name": name}

    refused = admin_client.post(f"/admin/dashboards/{dashboard['id']}/rename", data=form)

    assert refused.status_code == 400
    assert field_errors(refused) == {"name": [message]}
    assert rest.dashboard(dashboard["id"]) == dashboard


def test_stale_rename_is_refused_then_accepted_against_the_current_version(admin_client, rest, used):
    dashboard, _ = used
    form = {**rename_form(admin_client, dashboard["id"]), "name": "Mine"}
    rest.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{dashboard['tiles'][0]['id']}", 200, json={"unit": "x"})
    current = rest.dashboard(dashboard["id"])

    refused = admin_client.post(f"/admin/dashboards/{dashboard['id']}/rename", data=form)

    assert refused.status_code == 409
    assert any(STALE in shown for shown in flashes(refused, "error")), refused.text
    assert rest.dashboard(dashboard["id"]) == current
    shown_again = forms_of(refused)["rename-dashboard"]
    assert shown_again["name"] == "Mine" and shown_again["expected_version"] == str(current["version"])

    again = admin_client.post(f"/admin/dashboards/{dashboard['id']}/rename", data=shown_again)
    assert again.status_code == 303
    assert rest.dashboard(dashboard["id"])["name"] == "Mine"


# Deleting dashboards.


def test_delete_a_dashboard_asks_first_naming_its_entities(admin_client, rest, used):
    dashboard, entity_ids = used
    path = f"/admin/dashboards/{dashboard['id']}/delete"

    confirm = admin_client.get(path)

    assert confirm.status_code == 200
    listed = re.findall(r"<li><code>(.*?)</code>", confirm.text.split('id="detached-entities"')[1].split("</ul>")[0])
    assert listed == entity_ids
    assert "no dashboard" in confirm.text
    assert rest.dashboard(dashboard["id"]) == dashboard  # asking changes nothing

    deleted = admin_client.post(path, data=forms_of(confirm)[path])

    assert deleted.status_code == 303 and deleted.headers["Location"] == "/admin"
    index = admin_client.get("/admin")
    message = f"Deleted dashboard \u201cOverview\u201d. Now showing no dashboard: {', '.join(entity_ids)}."
    assert message in flashes(index, "success")
    assert rest.call("GET", f"/dashboards/{dashboard['id']}", 404)["code"] == "ANALYTICS_1201"
    assert [entity_of(rest, e)["dashboardId"] for e in entity_ids] == [None, None]


def test_delete_a_dashboard_nobody_shows(admin_client, rest):
    dashboard = rest.create_dashboard("Unused")
    path = f"/admin/dashboards/{dashboard['id']}/delete"
    confirm = admin_client.get(path)
    assert "No entity shows this dashboard." in confirm.text

    admin_client.post(path, data=forms_of(confirm)[path])

    assert "Deleted dashboard \u201cUnused\u201d." in flashes(admin_client.get("/admin"), "success")
    assert dashboards_of(rest) == []


def test_stale_delete_is_refused_then_accepted_against_the_current_version(admin_client, rest, used):
    dashboard, entity_ids = used
    path = f"/admin/dashboards/{dashboard['id']}/delete"
    form = forms_of(admin_client.get(path))[path]
    rest.call(
        "POST", f"/dashboards/{dashboard['id']}/tiles", 201, json={"title": "New", "metricName": "n", "kind": "line"}
    )
    current = rest.dashboard(dashboard["id"])

    refused = admin_client.post(path, data=form)

    assert refused.status_code == 409
    assert any(STALE in shown and shown.startswith("Not deleted") for shown in flashes(refused, "error"))
    assert rest.dashboard(dashboard["id"]) == current
    assert [entity_of(rest, e)["dashboardId"] for e in entity_ids] == [dashboard["id"]] * 2
    assert "3 tiles" in refused.text  # the page shows the dashboard as it is now

    again = admin_client.post(path, data=forms_of(refused)[path])
    assert again.status_code == 303
    rest.call("GET", f"/dashboards/{dashboard['id']}", 404)


@pytest.mark.parametrize("expected_version", [None, "", "two"], ids=["missing", "empty", "not-a-number"])
def test_delete_without_a_version_is_refused(admin_client, rest, used, expected_version):
    dashboard, _ = used
    path = f"/admin/dashboards/{dashboard['id']}/delete"
    form = forms_of(admin_client.get(path))[path]
    if expected_version is None:
        del form["expected_version"]
    else:
        form["expected_version"] = expected_version

    refused = admin_client.post(path, data=form)

    assert refused.status_code == 400
    assert "That form was not understood; confirm again." in flashes(refused, "error")
    assert forms_of(refused)[path]["expected_version"] == str(dashboard["version"])
    assert rest.dashboard(dashboard["id"]) == dashboard


# Registering entities.


def register_form(client, **fields):
    """The register form of the start page with ``fields`` filled in."""
    return {**index_forms(client)["register-entity"], **fields}


def test_register_an_entity_with_a_dashboard(admin_client, rest, used):
    dashboard, _ = used
    entity_id = unique("venue")
    form = register_form(
        admin_client, entity_id=entity_id, entity_type="venue", entity_name="Arena", dashboard_id=str(dashboard["id"])
    )

    registered = admin_client.post("/admin/entities", data=form, follow_redirects=True)

    assert f"Registered venue \u201c{entity_id}\u201d." in flashes(registered, "success")
    assert entity_of(rest, entity_id) == {
        "entityId": entity_id,
        "entityType": "venue",
        "name": "Arena",
        "dashboardId": dashboard["id"],
    }
    row = registered.text.split(f'data-entity-id="{entity_id}"')[1].split("</tr>")[0]
    assert f'<option value="{dashboard["id"]}" selected>' in row


def test_register_an_entity_with_only_an_id(admin_client, rest):
    entity_id = unique("event")

    admin_client.post("/admin/entities", data=register_form(admin_client, entity_id=entity_id))

    assert entity_of(rest, entity_id) == {"entityId": entity_id, "entityType": "event", "name": "", "dashboardId": None}


def test_registering_an_existing_entity_updates_what_was_filled_in(admin_client, rest, used):
    dashboard, (entity_id, _) = used
    form = register_form(admin_client, entity_id=entity_id, entity_name="Renamed")

    updated = admin_client.post("/admin/entities", data=form, follow_redirects=True)

    assert f"Updated the existing event \u201c{entity_id}\u201d." in flashes(updated, "success")
    assert entity_of(rest, entity_id) == {
        "entityId": entity_id,
        "entityType": "event",
        "name": "Renamed",
        "dashboardId": dashboard["id"],  # left empty in the form: kept
    }


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"entity_id": ""}, "entity_id", "Entity id must not be empty"),
        ({"entity_id": "   "}, "entity_id", "Entity id must not be empty"),
        ({"entity_id": "x" * 129}, "entity_id", "Entity id must be at most 128 characters"),
        ({"entity_id": "tab\there"}, "entity_id", "Entity id must not contain control characters"),
        ({"entity_type": "planet"}, "entity_type", "Type must be one of: event, venue"),
        ({"entity_type": ""}, "entity_type", "Type must be one of: event, venue"),
        ({"entity_name": "x" * 201}, "entity_name", "Name must be printable text of at most 200 characters"),
        ({"entity_name": "line\nbreak"}, "entity_name", "Name must be printable text of at most 200 characters"),
        ({"dashboard_id": "first"}, "dashboard_id", "Choose a dashboard from the list."),
    ],
    ids=[
        "empty-id",
        "blank-id",
        "long-id",
        "control-in-id",
        "unknown-type",
        "no-type",
        "long-name",
        "control-in-name",
        "dashboard-not-an-id",
    ],
)
def test_bad_registration_is_refused_next_to_its_field(admin_client, rest, fields, field, message):
    form = register_form(admin_client, **{"entity_id": "fine-id", **fields})

    refused = admin_client.post("/admin/entities", data=form)

    assert refused.status_code == 400
    assert field_errors(refused) == {field: [message]}
    assert forms_of(refused)["register-entity"]["entity_id"] == form["entity_id"]  # what was typed is kept
    assert rest.call("GET", "/entities", 200)["entities"] == []


def test_registering_an_entity_under_another_type_is_refused(admin_client, rest, used):
    _, (entity_id, _) = used
    before = entity_of(rest, entity_id)

    refused = admin_client.post(
        "/admin/entities", data=register_form(admin_client, entity_id=entity_id, entity_type="venue")
    )

    assert refused.status_code == 409
    assert f"Not registered: entity '{entity_id}' is of type 'event'." in flashes(refused, "error")
    assert entity_of(rest, entity_id) == before


def test_registering_with_an_unknown_or_foreign_dashboard_is_not_found(admin_client, rest, foreign):
    _, theirs, _ = foreign
    for dashboard_id in (theirs["id"], 999999999):
        form = register_form(admin_client, entity_id="mine", dashboard_id=str(dashboard_id))
        refused = admin_client.post("/admin/entities", data=form)
        assert is_not_found_page(refused, f"unknown dashboard {dashboard_id}"), refused.text
    assert entity_of(rest, "mine") is None


def test_an_entity_id_of_another_tenant_is_a_new_entity_of_this_one(admin_client, rest, foreign):
    api, theirs, their_entity = foreign

    admin_client.post("/admin/entities", data=register_form(admin_client, entity_id=their_entity, entity_name="Mine"))

    assert entity_of(rest, their_entity)["name"] == "Mine"
    assert entity_of(api, their_entity) == {
        "entityId": their_entity,
        "entityType": "event",
        "name": "Their entity",
        "dashboardId": theirs["id"],
    }


def test_registration_past_the_tenants_entity_limit_is_refused(tmp_path, app, tenant):
    limited = app_from_env(
        server_env(tmp_path, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], MAX_ENTITIES_PER_TENANT="1")
    )
    client = limited.test_client()
    sign_in(client, mint_token(tenant, roles=("admin",)))
    assert client.post("/admin/entities", data=register_form(client, entity_id="first")).status_code == 303

    refused = client.post("/admin/entities", data=register_form(client, entity_id="second"))

    assert refused.status_code == 409
    assert "Not registered: a tenant has at most 1 entities (MAX_ENTITIES_PER_TENANT)." in flashes(refused, "error")
    rest = Api(limited.test_client(), mint_token(tenant, roles=("admin",)))
    assert [e["entityId"] for e in rest.call("GET", "/entities", 200)["entities"]] == ["first"]


# Choosing an entity's dashboard.


def choose_form(client, entity_id, dashboard_id):
    """The entity row's dashboard form on the start page, with ``dashboard_id`` chosen ("" for none)."""
    return {**index_forms(client)[entity_path("dashboard", entity_id)], "dashboard_id": str(dashboard_id)}


def test_choose_then_clear_an_entitys_dashboard(admin_client, rest, used):
    _, (entity_id, other) = used
    second = rest.create_dashboard("Second")
    path = entity_path("dashboard", entity_id)

    chosen = admin_client.post(path, data=choose_form(admin_client, entity_id, second["id"]), follow_redirects=True)

    assert f"\u201c{entity_id}\u201d now shows dashboard #{second['id']}." in flashes(chosen, "success")
    assert entity_of(rest, entity_id)["dashboardId"] == second["id"]
    assert entity_of(rest, other)["dashboardId"] != second["id"]  # only the entity of the row

    cleared = admin_client.post(path, data=choose_form(admin_client, entity_id, ""), follow_redirects=True)

    assert f"\u201c{entity_id}\u201d now shows no dashboard." in flashes(cleared, "success")
    assert entity_of(rest, entity_id)["dashboardId"] is None


@pytest.mark.parametrize("dashboard_id", ["abc", "1e3", None], ids=["not-an-id", "float", "missing"])
def test_a_dashboard_choice_that_is_not_understood_changes_nothing(admin_client, rest, used, dashboard_id):
    dashboard, (entity_id, _) = used
    form = choose_form(admin_client, entity_id, "")
    if dashboard_id is None:
        del form["dashboard_id"]  # not "no dashboard": nothing chosen at all
    else:
        form["dashboard_id"] = dashboard_id

    refused = admin_client.post(entity_path("dashboard", entity_id), data=form, follow_redirects=True)

    assert any("That dashboard choice was not understood" in shown for shown in flashes(refused, "error"))
    assert entity_of(rest, entity_id)["dashboardId"] == dashboard["id"]


def test_choosing_an_unknown_or_foreign_dashboard_is_not_found(admin_client, rest, used, foreign):
    dashboard, (entity_id, _) = used
    _, theirs, _ = foreign
    for dashboard_id in (theirs["id"], 999999999, 2**40):
        refused = admin_client.post(
            entity_path("dashboard", entity_id), data=choose_form(admin_client, entity_id, dashboard_id)
        )
        assert is_not_found_page(refused), refused.text
    assert entity_of(rest, entity_id)["dashboardId"] == dashboard["id"]


def test_another_tenants_entity_is_not_found(admin_client, rest, used, foreign):
    dashboard, (mine, _) = used
    api, theirs, their_entity = foreign
    form = choose_form(admin_client, mine, dashboard["id"])
    csrf = {"csrf_token": form["csrf_token"]}

    for method, action, data in (
        ("POST", "dashboard", form),
        ("POST", "dashboard", {**csrf, "dashboard_id": ""}),
        ("GET", "delete", None),
        ("POST", "delete", csrf),
    ):
        response = admin_client.open(entity_path(action, their_entity), method=method, data=data)
        assert is_not_found_page(response, f"unknown entity '{their_entity}'"), (action, response.text)
        assert "Their entity" not in response.text
    assert entity_of(api, their_entity)["dashboardId"] == theirs["id"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "entity_id is required"),
        ("?entity_id=", "entity_id must not be empty"),
        ("?entity_id=" + "x" * 129, "entity_id must be at most 128 characters"),
        ("?entity_id=a%00b", "entity_id must not contain control characters"),
    ],
    ids=["missing", "empty", "too-long", "control-character"],
)
def test_a_bad_entity_id_in_the_url_is_refused(admin_client, rest, used, query, message):
    dashboard, (entity_id, _) = used
    form = choose_form(admin_client, entity_id, "")
    for method, path, data in (
        ("GET", "/admin/entities/delete", None),
        ("POST", "/admin/entities/delete", {"csrf_token": form["csrf_token"]}),
        ("POST", "/admin/entities/dashboard", form),
    ):
        response = admin_client.open(path + query, method=method, data=data)
        assert response.status_code == 400, (path, response.text)
        assert message in flashes(response, "error")
    assert entity_of(rest, entity_id)["dashboardId"] == dashboard["id"]


# Deleting entities.


def test_delete_an_entity_asks_first(admin_client, rest, used):
    dashboard, (entity_id, other) = used
    rest.ingest((entity_id, "ticketsSold", 12))
    path = entity_path("delete", entity_id)

    confirm = admin_client.get(path)

    assert confirm.status_code == 200
    assert f"<h1>Delete event \u201c{entity_id}\u201d?</h1>" in confirm.text
    assert f'href="/admin/dashboards/{dashboard["id"]}">Overview</a>' in confirm.text
    assert entity_of(rest, entity_id) is not None

    deleted = admin_client.post(path, data=forms_of(confirm)[path])

    assert deleted.status_code == 303 and deleted.headers["Location"] == "/admin"
    index = admin_client.get("/admin")
    assert f"Deleted entity \u201c{entity_id}\u201d." in flashes(index, "success")
    assert f'data-entity-id="{entity_id}"' not in index.text
    assert entity_of(rest, entity_id) is None
    assert entity_of(rest, other)["dashboardId"] == dashboard["id"]
    assert rest.dashboard(dashboard["id"]) == dashboard  # the dashboard is kept
    # Its values went with it: registered again, it starts with none.
    rest.put_entity(entity_id, "event")
    assert rest.call("GET", f"/entities/{entity_id}/metrics", 200)["metrics"] == {}


def entity_url(page, action, entity_id):
    """The URL of the page's link or form that does ``action`` to the entity, as the page wrote it."""
    for url in map(html.unescape, re.findall(r'(?:href|action)="(/admin/entities/[^"]+)"', page.text)):
        parts = urlsplit(url)
        if parts.path == f"/admin/entities/{action}" and parse_qs(parts.query).get("entity_id") == [entity_id]:
            return url
    raise AssertionError(f"no {action} link or form for {entity_id!r}")


@pytest.mark.parametrize("entity_id", ["a/b ?x=1&y=#2", "../..", "ü/", "%2F"])
def test_an_entity_with_an_awkward_id_can_be_registered_chosen_for_and_deleted(admin_client, rest, used, entity_id):
    dashboard, _ = used
    registered = admin_client.post("/admin/entities", data=register_form(admin_client, entity_id=entity_id))
    assert registered.status_code == 303, field_errors(registered)

    index = admin_client.get("/admin")
    url = entity_url(index, "dashboard", entity_id)
    chosen = admin_client.post(url, data={**forms_of(index)[url], "dashboard_id": str(dashboard["id"])})
    assert chosen.status_code == 303
    assert entities_by_id(rest)[entity_id]["dashboardId"] == dashboard["id"]

    confirm = admin_client.get(entity_url(admin_client.get("/admin"), "delete", entity_id))
    assert confirm.status_code == 200, confirm.text
    url = entity_url(confirm, "delete", entity_id)
    assert admin_client.post(url, data=forms_of(confirm)[url]).status_code == 303
    assert entity_id not in entities_by_id(rest)


def test_an_unknown_entity_is_not_found(admin_client):
    csrf = {"csrf_token": index_forms(admin_client)["create-dashboard"]["csrf_token"]}
    for method, data in (("GET", None), ("POST", csrf)):
        response = admin_client.open(entity_path("delete", "no-such-entity"), method=method, data=data)
        assert is_not_found_page(response, "unknown entity 'no-such-entity'"), response.text


# CSRF, every new form.


def new_forms(client, rest, used):
    """Each new form's URL and fields as the page fills them, without its CSRF token."""
    dashboard, (entity_id, _) = used
    forms = index_forms(client)
    delete_path = f"/admin/dashboards/{dashboard['id']}/delete"
    entity_delete = entity_path("delete", entity_id)
    found = {
        "/admin/dashboards": {**forms["create-dashboard"], "name": "Sneaky"},
        "/admin/entities": {**forms["register-entity"], "entity_id": "sneaky"},
        entity_path("dashboard", entity_id): {**forms[entity_path("dashboard", entity_id)], "dashboard_id": ""},
        f"/admin/dashboards/{dashboard['id']}/rename": {**rename_form(client, dashboard["id"]), "name": "Sneaky"},
        delete_path: forms_of(client.get(delete_path))[delete_path],
        entity_delete: forms_of(client.get(entity_delete))[entity_delete],
    }
    for form in found.values():
        del form["csrf_token"]
    return found


def state_of(rest):
    """Everything the tenant has: dashboards with tiles, and entities."""
    return (
        [rest.dashboard(d["id"]) for d in dashboards_of(rest)],
        rest.call("GET", "/entities", 200)["entities"],
    )


@pytest.mark.parametrize("csrf", [None, "forged-token", "IjBhYmMi.ZzZz.forged"], ids=["missing", "garbage", "forged"])
def test_every_new_form_without_a_valid_csrf_token_is_refused(admin_client, rest, used, csrf):
    before = state_of(rest)
    for path, form in new_forms(admin_client, rest, used).items():
        data = form if csrf is None else {**form, "csrf_token": csrf}

        # Sent with the admin's session cookie, as a forged form posted from another site would be.
        response = admin_client.post(path, data=data)

        assert response.status_code == 400, path
        assert 'id="error-page"' in response.text and "CSRF" in response.text, path
    assert state_of(rest) == before


def test_a_csrf_token_of_another_session_is_refused(admin_client, rest, used, app, tenant):
    other = app.test_client()
    sign_in(other, mint_token(tenant, roles=("admin",)))
    token = forms_of(other.get("/admin"))["create-dashboard"]["csrf_token"]
    before = state_of(rest)
    for path, form in new_forms(admin_client, rest, used).items():
        response = admin_client.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 400 and "CSRF" in response.text, path
    assert state_of(rest) == before


def test_the_new_forms_need_an_admin_session(client, rest, used):
    dashboard, (entity_id, _) = used
    before = state_of(rest)
    for path in (
        "/admin/dashboards",
        "/admin/entities",
        entity_path("dashboard", entity_id),
        entity_path("delete", entity_id),
        f"/admin/dashboards/{dashboard['id']}/rename",
        f"/admin/dashboards/{dashboard['id']}/delete",
    ):
        response = client.post(path, data={})
        assert response.status_code == 400 and "CSRF" in response.text, path  # no session, no CSRF token
    for path in (entity_path("delete", entity_id), f"/admin/dashboards/{dashboard['id']}/delete"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/admin", path
    assert state_of(rest) == before


def test_another_tenants_dashboard_cannot_be_renamed_or_deleted(admin_client, rest, used, foreign):
    api, theirs, their_entity = foreign
    csrf = {"csrf_token": index_forms(admin_client)["create-dashboard"]["csrf_token"]}
    version = {"expected_version": str(theirs["version"])}
    for method, path, data in (
        ("POST", f"/admin/dashboards/{theirs['id']}/rename", {**csrf, **version, "name": "Taken"}),
        ("GET", f"/admin/dashboards/{theirs['id']}/delete", None),
        ("POST", f"/admin/dashboards/{theirs['id']}/delete", {**csrf, **version}),
    ):
        response = admin_client.open(path, method=method, data=data)
        assert is_not_found_page(response, f"unknown dashboard {theirs['id']}"), (path, response.text)
        assert "Not yours" not in response.text and their_entity not in response.text
    assert api.dashboard(theirs["id"]) == theirs
    assert entity_of(api, their_entity)["dashboardId"] == theirs["id"]


# --- in the browser ------------------------------------------------------------------------------------------------


@pytest.fixture
def admin(live_server, tenant, new_page):
    """An admin page signed in with an admin token of this test's tenant, on the start page."""
    page = AdminPage(new_page(), live_server.url).sign_in(mint_token(tenant, roles=("admin",)))
    expect(page.page.locator("#create-dashboard")).to_be_visible()
    return page


@pytest.fixture
def watch(live_server, tenant, new_page):
    """Open an entity's live dashboard in a page of its own with a plain (no role) token: ``watch(id, type)``."""

    def open_page(entity_id, entity_type="event"):
        page = DashboardPage(new_page(), live_server.url, entity_id, entity_type).open(mint_token(tenant)).wait_ready()
        page.mark()
        return page

    return open_page


def opened_dashboard(admin, api):
    """The dashboard whose admin page is open, as the REST API has it."""
    dashboard_id = int(re.search(r"/admin/dashboards/(\d+)$", admin.page.url).group(1))
    return api.dashboard(dashboard_id)


def test_create_empty_and_copied_dashboards_then_choose_and_clear_them_live(admin, watch, entity, admin_api):
    entity_id, original = entity
    admin_api.ingest((entity_id, "ticketsSold", 1200))
    viewer = watch(entity_id)
    tickets = viewer.tile("Tickets").locator(".tile-value")
    expect(tickets).to_have_text(re.compile(r"^1,?200$"))

    admin.create_dashboard("Blank")
    expect(admin.flash("success")).to_have_text("Created dashboard “Blank”.")
    expect(admin.page.locator("#no-tiles")).to_be_visible()
    blank = opened_dashboard(admin, admin_api)
    admin.open_index()
    admin.create_dashboard("Copy", copy_of=original)
    expect(admin.flash("success")).to_have_text("Created dashboard “Copy”, with a copy of 2 tiles.")
    expect(admin.tile_titles()).to_have_text(["Tickets", "Revenue"])
    admin.add_tile(title="Queue", metric="queue", kind="line")
    expect(admin.tile_titles()).to_have_text(["Tickets", "Revenue", "Queue"])
    copy = opened_dashboard(admin, admin_api)
    expect(viewer.titles).to_have_text(["Tickets", "Revenue"])  # a new dashboard is nobody's yet

    admin.open_index()
    admin.choose_dashboard(entity_id, copy)
    expect(admin.flash("success")).to_have_text(f"“{entity_id}” now shows dashboard #{copy['id']}.")
    expect(viewer.titles).to_have_text(["Tickets", "Revenue", "Queue"])
    expect(viewer.page.locator("#version")).to_have_text(str(copy["version"]))
    expect(tickets).to_have_text(re.compile(r"^1,?200$"))  # the values shown stay

    # Later layout changes: the new dashboard's apply on top of the replaced layout, the old one's no longer.
    admin_api.call(
        "POST", f"/dashboards/{original['id']}/tiles", 201, json={"title": "Old", "metricName": "o", "kind": "number"}
    )
    admin_api.call("PATCH", f"/dashboards/{copy['id']}/tiles/{copy['tiles'][2]['id']}", 200, json={"title": "Waiting"})
    expect(viewer.titles).to_have_text(["Tickets", "Revenue", "Waiting"])
    expect(viewer.page.locator("#version")).to_have_text(str(copy["version"] + 1))

    admin.choose_dashboard(entity_id, blank)
    expect(viewer.titles).to_have_count(0)
    expect(viewer.empty).to_have_text("This dashboard has no tiles yet.")

    admin.choose_dashboard(entity_id, None)
    expect(admin.flash("success")).to_have_text(f"“{entity_id}” now shows no dashboard.")
    expect(viewer.empty).to_have_text("This entity has no dashboard yet.")
    expect(viewer.page.locator("#version")).to_have_text("\u2013")

    admin.choose_dashboard(entity_id, original)
    expect(viewer.titles).to_have_text(["Tickets", "Revenue", "Old"])
    expect(viewer.empty).to_be_hidden()
    admin_api.ingest((entity_id, "ticketsSold", 1300))
    expect(tickets).to_have_text(re.compile(r"^1,?300$"))
    assert viewer.was_not_reloaded()
    expect(viewer.notice).to_be_hidden()


def test_rename_then_delete_a_dashboard_naming_its_entities(admin, watch, entity, admin_api):
    entity_id, dashboard = entity
    other = unique("event")
    admin_api.put_entity(other, "event", dashboard["id"])
    viewer = watch(entity_id)

    admin.open_dashboard(dashboard["id"])
    admin.rename_dashboard("Box office")
    expect(admin.flash("success")).to_have_text("Renamed the dashboard to “Box office”.")
    expect(admin.page.get_by_role("heading", level=1)).to_have_text("Box office")
    expect(admin.page.locator("#dashboard-version")).to_have_text(f"version {dashboard['version']}")
    assert admin_api.dashboard(dashboard["id"])["name"] == "Box office"

    admin.delete_dashboard(confirm=False)
    expect(admin.page.get_by_role("heading", level=1)).to_have_text("Delete dashboard “Box office”?")
    expect(admin.page.locator("#detached-entities li code")).to_have_text(sorted([entity_id, other]))
    expect(viewer.titles).to_have_text(["Tickets", "Revenue"])  # nothing happens before the confirmation
    admin.page.locator("#confirm-delete").click()
    expect(admin.page).to_have_url(admin.base + "/admin")
    expect(admin.flash("success")).to_have_text(
        f"Deleted dashboard “Box office”. Now showing no dashboard: {', '.join(sorted([entity_id, other]))}."
    )
    expect(admin.page.locator("#dashboards")).to_have_count(0)

    expect(viewer.titles).to_have_count(0)
    expect(viewer.empty).to_have_text("This entity has no dashboard yet.")
    expect(viewer.connection).to_have_attribute("data-state", "connected")
    assert viewer.was_not_reloaded()
    admin_api.call("GET", f"/dashboards/{dashboard['id']}", 404)


def test_register_an_entity_choose_its_dashboard_then_delete_it(admin, watch, entity, admin_api):
    bystander_id, dashboard = entity
    bystander = watch(bystander_id)
    entity_id = unique("venue")

    admin.register_entity(entity_id, "venue", name="Arena")
    expect(admin.flash("success")).to_have_text(f"Registered venue “{entity_id}”.")
    expect(admin.page.locator(f'tr[data-entity-id="{entity_id}"]')).to_contain_text("Arena")
    viewer = watch(entity_id, "venue")
    expect(viewer.empty).to_have_text("This entity has no dashboard yet.")

    admin.choose_dashboard(entity_id, dashboard)
    expect(viewer.titles).to_have_text(["Tickets", "Revenue"])
    admin_api.ingest((entity_id, "revenue", 75))
    expect(viewer.tile("Revenue").locator(".tile-value")).to_contain_text("75")

    admin.delete_entity(entity_id, confirm=False)
    expect(admin.page.get_by_role("heading", level=1)).to_have_text(f"Delete venue “{entity_id}”?")
    expect(admin.page.locator("#entity-facts")).to_contain_text("Arena")
    expect(admin.page.locator("#entity-facts")).to_contain_text(dashboard["name"])
    admin.page.locator("#confirm-delete").click()
    expect(admin.flash("success")).to_have_text(f"Deleted entity “{entity_id}”.")
    expect(admin.page.locator(f'tr[data-entity-id="{entity_id}"]')).to_have_count(0)

    expect(viewer.removed).to_be_visible()
    expect(viewer.removed).to_contain_text(f"This venue (“{entity_id}”) was removed")
    expect(viewer.titles).to_have_count(0)
    expect(viewer.empty).to_be_hidden()
    expect(viewer.notice).to_be_hidden()
    expect(viewer.connection).to_have_attribute("data-state", "connected")
    assert viewer.was_not_reloaded()
    # Another entity on the same dashboard goes on as before.
    expect(bystander.titles).to_have_text(["Tickets", "Revenue"])
    expect(bystander.removed).to_be_hidden()
    assert entity_of(admin_api, entity_id) is None
