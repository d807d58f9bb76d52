"""Dashboards and their tiles under /api/v1/dashboards: create, read, change the layout, versions.

Layout changes (one transaction each: lock, version check, rollback when refused) run on
both backends; input refused before any SQL runs on SQLite only.
"""

import pytest

from tests.api.conftest import NEW_TILE, TILE, assert_error

sqlite_only = pytest.mark.backends("sqlite")


def test_create_list_and_get_dashboards(admin_api):
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}
    tiles = [
        {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
        {"title": "Occupancy", "metricName": "occupancy", "kind": "gauge", "unit": "%", "thresholds": {"warning": 80}},
        {"title": "Check-ins", "metricName": "checkIns", "kind": "line", "unit": "/min"},
    ]
    first = admin_api.create_dashboard("First", tiles)
    empty = admin_api.call("POST", "/dashboards", 201, json={"name": "Empty"})

    assert first["name"] == "First" and first["version"] == 1
    assert [t["position"] for t in first["tiles"]] == [0, 1, 2]
    assert first["tiles"][0] == {
        "id": first["tiles"][0]["id"],
        "position": 0,
        "title": "Tickets",
        "metricName": "ticketsSold",
        "kind": "number",
        "unit": "",
        "thresholds": None,
    }
    assert first["tiles"][1]["thresholds"] == {"warning": 80.0}
    assert empty == {"id": empty["id"], "name": "Empty", "version": 1, "tiles": []}
    assert admin_api.call("GET", "/dashboards", 200) == {
        "dashboards": [
            {"id": first["id"], "name": "First", "version": 1},
            {"id": empty["id"], "name": "Empty", "version": 1},
        ]
    }
    assert admin_api.dashboard(first["id"]) == first


@sqlite_only
def test_unknown_dashboard_is_404(admin_api):
    assert_error(admin_api.call("GET", "/dashboards/999999999"), 404, "ANALYTICS_1201")


BAD_TILES = [
    ("unknown-kind", {**TILE, "kind": "pie"}, "kind"),
    ("unknown-field", {**TILE, "colour": "red"}, "colour"),
    ("missing-title", {"metricName": "m", "kind": "number"}, "title"),
    ("empty-title", {**TILE, "title": ""}, "title"),
    ("title-over-200", {**TILE, "title": "t" * 201}, "title"),
    ("missing-metric-name", {"title": "T", "kind": "number"}, "metricName"),
    ("missing-kind", {"title": "T", "metricName": "m"}, "kind"),
    ("unit-not-text", {**TILE, "unit": 5}, "unit"),
    ("unit-over-32", {**TILE, "unit": "u" * 33}, "unit"),
    ("thresholds-not-object", {**TILE, "thresholds": [80]}, "thresholds"),
    ("threshold-not-number", {**TILE, "thresholds": {"warning": "80"}}, "warning"),
    ("threshold-boolean", {**TILE, "thresholds": {"warning": True}}, "warning"),
    ("too-many-thresholds", {**TILE, "thresholds": {f"t{i}": i for i in range(9)}}, "thresholds"),
    ("tile-not-object", "number", "tile must be an object"),
]


@sqlite_only
@pytest.mark.parametrize(("bad_tile", "fragment"), [c[1:] for c in BAD_TILES], ids=[c[0] for c in BAD_TILES])
def test_create_dashboard_with_a_bad_tile_names_it(admin_api, bad_tile, fragment):
    response = admin_api.call("POST", "/dashboards", json={"name": "Bad", "tiles": [TILE, TILE, bad_tile]})
    body = assert_error(response, 400, "ANALYTICS_1200", fragment)
    assert body["message"].startswith("tiles[2]: ")
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}


@sqlite_only
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"tiles": []}, "name is required"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "X", "tiles": {"title": "T"}}, "tiles must be a list"),
        ({"name": "X", "tiles": [TILE] * 101}, "at most 100"),
        (["name", "X"], "must be an object"),
    ],
    ids=["no-name", "empty-name", "name-not-string", "name-over-200", "tiles-not-list", "over-100-tiles", "list-body"],
)
def test_create_dashboard_with_a_bad_body(admin_api, body, fragment):
    assert_error(admin_api.call("POST", "/dashboards", json=body), 400, "ANALYTICS_1200", fragment)
    assert admin_api.call("GET", "/dashboards", 200) == {"dashboards": []}


def test_add_tile_appends_and_bumps_version(admin_api, entity):
    _, dashboard = entity
    change = admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)

    assert set(change) == {"action", "tile", "version"}
    assert change["action"] == "added"
    assert change["version"] == 2
    tile = change["tile"]
    assert tile == {**NEW_TILE, "id": tile["id"], "position": 2, "thresholds": None}
    after = admin_api.dashboard(dashboard["id"])
    assert after["version"] == 2
    assert after["tiles"] == [*dashboard["tiles"], tile]


@sqlite_only
@pytest.mark.parametrize(("bad_tile", "fragment"), [c[1:] for c in BAD_TILES], ids=[c[0] for c in BAD_TILES])
def test_add_bad_tile_changes_nothing(admin_api, entity, bad_tile, fragment):
    _, dashboard = entity
    response = admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", json=bad_tile)
    assert_error(response, 400, "ANALYTICS_1200", fragment)
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_update_tile_changes_only_the_given_fields(admin_api, entity):
    _, dashboard = entity
    tile = dashboard["tiles"][1]
    change = admin_api.call(
        "PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"title": "Takings", "unit": "USD"}
    )

    assert change == {"action": "updated", "tile": {**tile, "title": "Takings", "unit": "USD"}, "version": 2}
    after = admin_api.dashboard(dashboard["id"])
    assert after["tiles"] == [dashboard["tiles"][0], change["tile"]]

    change = admin_api.call(
        "PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile['id']}", 200, json={"thresholds": {"critical": 1e6}}
    )
    assert change["tile"]["thresholds"] == {"critical": 1e6}
    assert change["tile"]["title"] == "Takings"
    assert change["version"] == 3


@sqlite_only
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "nothing to update"),
        ({"expectedVersion": 1}, "nothing to update"),
        ({"kind": "pie"}, "kind"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"position": 0}, "position"),
        ([{"title": "x"}], "tile must be an object"),
    ],
    ids=["empty", "only-version", "bad-kind", "empty-title", "null-title", "unknown-field", "list-body"],
)
def test_bad_tile_update_changes_nothing(admin_api, entity, body, fragment):
    _, dashboard = entity
    tile_id = dashboard["tiles"][0]["id"]
    response = admin_api.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json=body)
    assert_error(response, 400, "ANALYTICS_1200", fragment)
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_remove_tile_renumbers_positions(admin_api, entity):
    _, dashboard = entity
    admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    tiles = admin_api.dashboard(dashboard["id"])["tiles"]

    change = admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tiles[0]['id']}", 200)

    assert change == {"action": "removed", "tile": tiles[0], "version": 3}
    after = admin_api.dashboard(dashboard["id"])
    assert [t["id"] for t in after["tiles"]] == [tiles[1]["id"], tiles[2]["id"]]
    assert [t["position"] for t in after["tiles"]] == [0, 1]

    admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tiles[2]['id']}", 200)
    admin_api.call("DELETE", f"/dashboards/{dashboard['id']}/tiles/{tiles[1]['id']}", 200)
    assert admin_api.dashboard(dashboard["id"]) == {**dashboard, "version": 5, "tiles": []}


def test_unknown_tile_is_404_and_changes_nothing(admin_api, entity, other_api):
    _, dashboard = entity
    foreign = other_api.create_dashboard()["tiles"][0]["id"]
    for tile_id in (999999999, foreign):
        for method, body in (("PATCH", {"title": "x"}), ("DELETE", None)):
            response = admin_api.call(method, f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json=body)
            assert_error(response, 404, "ANALYTICS_1201", str(tile_id))
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_reorder_tiles(admin_api, entity):
    _, dashboard = entity
    admin_api.call("POST", f"/dashboards/{dashboard['id']}/tiles", 201, json=NEW_TILE)
    a, b, c = (t["id"] for t in admin_api.dashboard(dashboard["id"])["tiles"])

    change = admin_api.call("PUT", f"/dashboards/{dashboard['id']}/tiles/order", 200, json={"tileIds": [c, a, b]})

    assert change == {"action": "reordered", "tile": None, "version": 3, "order": [c, a, b]}
    after = admin_api.dashboard(dashboard["id"])
    assert [t["id"] for t in after["tiles"]] == [c, a, b]
    assert [t["position"] for t in after["tiles"]] == [0, 1, 2]


# Refused inside the write transaction, after the version was bumped: the rollback is what is tested.
@pytest.mark.parametrize(
    "tile_ids",
    [
        lambda a, b, x: [a],
        lambda a, b, x: [a, b, b],
        lambda a, b, x: [a, a],
        lambda a, b, x: [a, b, 999999999],
        lambda a, b, x: [a, x],
        lambda a, b, x: [],
        lambda a, b, x: [a, str(b)],
        lambda a, b, x: [a, True],
        lambda a, b, x: {"0": a, "1": b},
        lambda a, b, x: None,
    ],
    ids=[
        "missing",
        "duplicate-extra",
        "duplicate",
        "unknown",
        "foreign",
        "empty",
        "string-id",
        "bool-id",
        "object",
        "absent",
    ],
)
def test_reorder_with_wrong_ids_changes_nothing(admin_api, other_api, entity, tile_ids):
    _, dashboard = entity
    a, b = (t["id"] for t in dashboard["tiles"])
    foreign = other_api.create_dashboard()["tiles"][0]["id"]
    body = {"tileIds": tile_ids(a, b, foreign)}
    if body["tileIds"] is None:
        body = {}

    response = admin_api.call("PUT", f"/dashboards/{dashboard['id']}/tiles/order", json=body)

    assert_error(response, 400, "ANALYTICS_1200", "tileIds")
    assert admin_api.dashboard(dashboard["id"]) == dashboard


def test_version_grows_by_one_per_change(admin_api, entity):
    _, dashboard = entity
    base = f"/dashboards/{dashboard['id']}"
    versions = [admin_api.call("POST", f"{base}/tiles", 201, json=NEW_TILE)["version"]]
    tile_ids = [t["id"] for t in admin_api.dashboard(dashboard["id"])["tiles"]]
    versions.append(admin_api.call("PATCH", f"{base}/tiles/{tile_ids[0]}", 200, json={"title": "x"})["version"])
    versions.append(admin_api.call("PUT", f"{base}/tiles/order", 200, json={"tileIds": tile_ids[::-1]})["version"])
    versions.append(admin_api.call("DELETE", f"{base}/tiles/{tile_ids[1]}", 200)["version"])
    assert versions == [2, 3, 4, 5]
    assert admin_api.dashboard(dashboard["id"])["version"] == 5
    assert admin_api.call("GET", "/dashboards", 200)["dashboards"][0]["version"] == 5


def versioned_changes(dashboard):
    """Each layout change as ``{name: (method, path, body)}``."""
    base = f"/dashboards/{dashboard['id']}"
    a, b = (t["id"] for t in dashboard["tiles"])
    return {
        "add": ("POST", f"{base}/tiles", NEW_TILE),
        "update": ("PATCH", f"{base}/tiles/{a}", {"title": "Changed"}),
        "remove": ("DELETE", f"{base}/tiles/{a}", None),
        "reorder": ("PUT", f"{base}/tiles/order", {"tileIds": [b, a]}),
    }


def version_cases(ways):
    """(change, how) pairs; DELETE has no body, so If-Match is its only way to say the version."""
    changes = ("add", "update", "remove", "reorder")
    return [(c, h) for c in changes for h in ways if not (c == "remove" and h == "body")]


@pytest.mark.parametrize(("change", "how"), version_cases(("body", "if-match", "if-match-unquoted")))
def test_stale_version_is_409_and_changes_nothing(admin_api, entity, change, how):
    _, dashboard = entity
    admin_api.call("PATCH", versioned_changes(dashboard)["update"][1], 200, json={"unit": "x"})
    current = admin_api.dashboard(dashboard["id"])
    assert current["version"] == 2
    method, path, body = versioned_changes(dashboard)[change]
    headers = {}
    if how == "body":
        body = {**body, "expectedVersion": 1}
    else:
        headers["If-Match"] = '"1"' if how == "if-match" else "1"

    response = admin_api.call(method, path, json=body, headers=headers)

    assert_error(response, 409, "ANALYTICS_1202", "version 2")
    assert admin_api.dashboard(dashboard["id"]) == current


@pytest.mark.parametrize(("change", "how"), version_cases(("body", "if-match")))
def test_current_version_is_accepted(admin_api, entity, change, how):
    _, dashboard = entity
    method, path, body = versioned_changes(dashboard)[change]
    headers = {}
    if how == "body":
        body = {**body, "expectedVersion": 1}
    else:
        headers["If-Match"] = '"1"'
    response = admin_api.call(method, path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    assert response.json["version"] == 2


@sqlite_only
@pytest.mark.parametrize(
    ("body_version", "if_match"),
    [("1", None), (1.0, None), (True, None), (None, 'W/"1"'), (None, "abc"), (None, "-1")],
    ids=["string", "float", "boolean", "weak-etag", "word", "negative"],
)
def test_malformed_expected_version_is_400(admin_api, entity, body_version, if_match):
    _, dashboard = entity
    body = {"title": "x"}
    if body_version is not None:
        body["expectedVersion"] = body_version
    headers = {"If-Match": if_match} if if_match else {}
    tile_id = dashboard["tiles"][0]["id"]
    response = admin_api.call("PATCH", f"/dashboards/{dashboard['id']}/tiles/{tile_id}", json=body, headers=headers)
    assert_error(response, 400, "ANALYTICS_1200")
    assert admin_api.dashboard(dashboard["id"]) == dashboard
