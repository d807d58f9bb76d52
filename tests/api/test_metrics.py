"""POST /api/v1/metrics and GET /api/v1/entities/<id>/metrics: ingest one, a list or an envelope; all or nothing.

What the database stores and returns (seq, timestamps, order, atomic batches) runs on both
backends; input refused before any SQL runs on SQLite only.
"""

import json
from datetime import UTC, datetime
from unittest.mock import ANY

import pytest

from testkit import unique
from tests.api.conftest import NEW_TILE, assert_error, good, metrics_of

sqlite_only = pytest.mark.backends("sqlite")


# --- what is stored and returned -----------------------------------------------------------------------------------


def test_ingest_single_object(admin_api, entity):
    entity_id, _ = entity
    result = admin_api.call(
        "POST", "/metrics", 201, json={"entityId": entity_id, "metricName": "ticketsSold", "value": 7}
    )
    assert set(result) == {"accepted", "lastSeq"}
    assert result["accepted"] == 1
    assert isinstance(result["lastSeq"], int) and not isinstance(result["lastSeq"], bool)
    current = metrics_of(admin_api, entity_id)
    assert current["ticketsSold"]["value"] == 7.0
    assert current["ticketsSold"]["seq"] == result["lastSeq"]


def test_ingest_bare_list(admin_api, entity):
    entity_id, _ = entity
    body = [
        {"entityId": entity_id, "metricName": "ticketsSold", "value": 1},
        {"entityId": entity_id, "metricName": "revenue", "value": 45.5, "entityType": "event"},
    ]
    result = admin_api.call("POST", "/metrics", 201, json=body)
    assert result["accepted"] == 2
    current = metrics_of(admin_api, entity_id)
    assert {name: m["value"] for name, m in current.items()} == {"ticketsSold": 1.0, "revenue": 45.5}
    assert max(m["seq"] for m in current.values()) == result["lastSeq"]
    assert min(m["seq"] for m in current.values()) < result["lastSeq"]


def test_ingest_metrics_envelope_and_latest_value_wins(admin_api, entity):
    entity_id, _ = entity
    first = admin_api.ingest((entity_id, "ticketsSold", 1), (entity_id, "ticketsSold", 2), (entity_id, "checkIns", 3))
    assert first["accepted"] == 3
    second = admin_api.ingest((entity_id, "ticketsSold", 10))
    assert second["lastSeq"] > first["lastSeq"]

    response = admin_api.call("GET", f"/entities/{entity_id}/metrics", 200)

    assert response["entityId"] == entity_id
    assert response["entityType"] == "event"
    metrics = response["metrics"]
    assert metrics["ticketsSold"]["value"] == 10.0
    assert metrics["ticketsSold"]["seq"] == second["lastSeq"]
    assert metrics["checkIns"]["value"] == 3.0
    assert metrics["checkIns"]["seq"] <= first["lastSeq"]  # lastSeq is the highest seq of the batch
    for metric in metrics.values():
        assert set(metric) == {"value", "timestamp", "seq"}
        assert metric["timestamp"].endswith("Z")


def test_ingest_keeps_the_given_timestamp_in_utc(admin_api, entity):
    entity_id, _ = entity
    admin_api.call(
        "POST",
        "/metrics",
        201,
        json={
            "entityId": entity_id,
            "metricName": "occupancy",
            "value": 55.5,
            "timestamp": "2026-03-01T12:30:00+02:00",
        },
    )
    assert metrics_of(admin_api, entity_id)["occupancy"]["timestamp"] == "2026-03-01T10:30:00.000Z"


def test_a_batch_keeps_each_given_timestamp_in_utc_and_stamps_the_others_with_the_write(admin_api, entity):
    entity_id, _ = entity
    body = [
        {"entityId": entity_id, "metricName": "a", "value": 1, "timestamp": "2026-03-01T12:30:00+02:00"},
        {"entityId": entity_id, "metricName": "b", "value": 2, "timestamp": "2026-03-01T23:59:59.125-05:00"},
        {"entityId": entity_id, "metricName": "c", "value": 3},
    ]
    before = datetime.now(UTC).replace(microsecond=0)
    admin_api.call("POST", "/metrics", 201, json=body)
    metrics = metrics_of(admin_api, entity_id)
    assert metrics["a"]["timestamp"] == "2026-03-01T10:30:00.000Z"
    assert metrics["b"]["timestamp"] == "2026-03-02T04:59:59.125Z"
    assert datetime.fromisoformat(metrics["c"]["timestamp"]) >= before
    assert [metrics[name]["value"] for name in "abc"] == [1.0, 2.0, 3.0]


def test_entity_without_metrics_has_empty_metrics(admin_api, entity):
    entity_id, _ = entity
    assert admin_api.call("GET", f"/entities/{entity_id}/metrics", 200) == {
        "entityId": entity_id,
        "entityType": "event",
        "metrics": {},
    }


def test_unknown_entity_metrics_is_404(admin_api):
    assert_error(admin_api.call("GET", "/entities/no-such-entity/metrics"), 404, "ANALYTICS_1101")


def test_ingest_accepts_exactly_max_batch(admin_api, entity):
    entity_id, _ = entity
    body = [{"entityId": entity_id, "metricName": "ticketsSold", "value": i} for i in range(1000)]
    assert admin_api.call("POST", "/metrics", 201, json=body)["accepted"] == 1000
    assert metrics_of(admin_api, entity_id)["ticketsSold"]["value"] == 999.0


def change_log_of(database, tenant):
    """The tenant's metric rows in the change log, in ``seq`` order: ``[(seq, entity_id, metric_name, value)]``."""
    return [
        tuple(row)
        for row in database.execute(
            "SELECT seq, entity_id, metric_name, value FROM change_log WHERE tenant_id = ? AND kind = 'metric'"
            " ORDER BY seq",
            (tenant,),
        )
    ]


def test_batch_is_inserted_in_key_order_and_last_seq_is_its_highest(database, tenant, admin_api, entity):
    first, _ = entity
    second = unique("event")
    admin_api.put_entity(second, "event")
    # Given out of (entity_id, metric_name) order, with one metric twice.
    points = [(second, "b", 1), (first, "z", 2), (second, "a", 3), (first, "a", 4), (second, "a", 5)]

    result = admin_api.ingest(*points)

    rows = change_log_of(database, tenant)
    assert [(e, m, v) for _, e, m, v in rows] == sorted(points, key=lambda p: p[:2])  # stable: 3 before 5
    assert result == {"accepted": 5, "lastSeq": rows[-1][0]}
    last_of_a = next(seq for seq, e, m, v in rows if (e, m, v) == (second, "a", 5))
    assert metrics_of(admin_api, second)["a"] == {"value": 5.0, "timestamp": ANY, "seq": last_of_a}


def test_refused_batch_names_the_first_unknown_entity_and_adds_no_row(database, tenant, admin_api, entity):
    entity_id, _ = entity
    body = [good(entity_id), good("zz-unknown"), good("aa-unknown"), {**good(entity_id), "entityType": "venue"}]

    response = admin_api.call("POST", "/metrics", json=body)

    assert_error(response, 404, "ANALYTICS_1101", "zz-unknown")
    assert "aa-unknown" not in response.json["message"]
    assert change_log_of(database, tenant) == []


# --- one bad item refuses the whole request ------------------------------------------------------------------------

# Refused by the database lookup, inside the write transaction: both backends.
UNKNOWN_ITEMS = [
    # (id, bad item built from the entity id, status, code, message fragment)
    ("unknown-entity", lambda e: good("no-such-entity"), 404, "ANALYTICS_1101", "no-such-entity"),
    ("wrong-entity-type", lambda e: {**good(e), "entityType": "venue"}, 404, "ANALYTICS_1101", None),
]
# Refused by validation, before any SQL: SQLite only.
INVALID_ITEMS = [
    ("value-string-nan", lambda e: good(e, "NaN"), 400, "ANALYTICS_1200", "value"),
    ("value-numeric-string", lambda e: good(e, "12"), 400, "ANALYTICS_1200", "value"),
    ("value-boolean", lambda e: good(e, True), 400, "ANALYTICS_1200", "value"),
    ("value-null", lambda e: good(e, None), 400, "ANALYTICS_1200", "value"),
    ("value-missing", lambda e: {"entityId": e, "metricName": "ticketsSold"}, 400, "ANALYTICS_1200", "value"),
    ("value-list", lambda e: good(e, [1]), 400, "ANALYTICS_1200", "value"),
    ("entity-id-empty", lambda e: {**good(e), "entityId": ""}, 400, "ANALYTICS_1200", "entityId"),
    ("entity-id-blank", lambda e: {**good(e), "entityId": "   "}, 400, "ANALYTICS_1200", "entityId"),
    ("entity-id-over-128", lambda e: {**good(e), "entityId": "e" * 129}, 400, "ANALYTICS_1200", "entityId"),
    ("entity-id-number", lambda e: {**good(e), "entityId": 5}, 400, "ANALYTICS_1200", "entityId"),
    ("metric-name-missing", lambda e: {"entityId": e, "value": 1}, 400, "ANALYTICS_1200", "metricName"),
    ("metric-name-control-char", lambda e: {**good(e), "metricName": "a\nb"}, 400, "ANALYTICS_1200", "metricName"),
    ("bad-timestamp", lambda e: {**good(e), "timestamp": "yesterday"}, 400, "ANALYTICS_1200", "timestamp"),
    ("item-number", lambda e: 5, 400, "ANALYTICS_1200", "object"),
    ("item-string", lambda e: "ticketsSold=1", 400, "ANALYTICS_1200", "object"),
    ("item-list", lambda e: [good(e)], 400, "ANALYTICS_1200", "object"),
    ("item-null", lambda e: None, 400, "ANALYTICS_1200", "object"),
]


def cases(items):
    """``parametrize`` arguments of a list of bad items."""
    return {"argvalues": [c[1:] for c in items], "ids": [c[0] for c in items]}


def check_batch_with_one_bad_item(admin_api, entity, envelope, make_item, status, code, fragment):
    """Two good items and a bad one: the request is refused and nothing of it is written."""
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 1), (entity_id, "revenue", 2))
    before = metrics_of(admin_api, entity_id)
    items = [good(entity_id, 500), {"entityId": entity_id, "metricName": "newMetric", "value": 1}, make_item(entity_id)]
    body = items if envelope == "list" else {"metrics": items}

    response = admin_api.call("POST", "/metrics", json=body)

    assert_error(response, status, code, fragment)
    if status == 400:
        assert response.json["message"].startswith("metrics[2]: ")
    assert metrics_of(admin_api, entity_id) == before


ITEM_ARGS = ("make_item", "status", "code", "fragment")


@pytest.mark.parametrize("envelope", ["list", "metrics-object"])
@pytest.mark.parametrize(ITEM_ARGS, **cases(UNKNOWN_ITEMS))
def test_batch_with_one_unknown_entity_writes_nothing(admin_api, entity, envelope, make_item, status, code, fragment):
    check_batch_with_one_bad_item(admin_api, entity, envelope, make_item, status, code, fragment)


@sqlite_only
@pytest.mark.parametrize("envelope", ["list", "metrics-object"])
@pytest.mark.parametrize(ITEM_ARGS, **cases(INVALID_ITEMS))
def test_batch_with_one_invalid_item_writes_nothing(admin_api, entity, envelope, make_item, status, code, fragment):
    check_batch_with_one_bad_item(admin_api, entity, envelope, make_item, status, code, fragment)


def check_single_bad_item(admin_api, entity, make_item, status, code, fragment):
    """One bad item alone is refused and writes nothing."""
    entity_id, _ = entity
    item = make_item(entity_id)
    response = admin_api.call("POST", "/metrics", json=item)
    assert_error(response, status, code, fragment)
    assert metrics_of(admin_api, entity_id) == {}


@pytest.mark.parametrize(ITEM_ARGS, **cases(UNKNOWN_ITEMS))
def test_single_unknown_entity_is_refused(admin_api, entity, make_item, status, code, fragment):
    check_single_bad_item(admin_api, entity, make_item, status, code, fragment)


# A list is a batch; null is no body at all.
SINGLE_INVALID_ITEMS = [c for c in INVALID_ITEMS if c[0] not in ("item-list", "item-null")]


@sqlite_only
@pytest.mark.parametrize(ITEM_ARGS, **cases(SINGLE_INVALID_ITEMS))
def test_single_invalid_item_is_refused(admin_api, entity, make_item, status, code, fragment):
    check_single_bad_item(admin_api, entity, make_item, status, code, fragment)


@sqlite_only
@pytest.mark.parametrize(
    "raw_value", ["NaN", "Infinity", "-Infinity", "1e400"], ids=["nan", "infinity", "minus-infinity", "float-overflow"]
)
def test_non_finite_numbers_are_refused(admin_api, entity, raw_value):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 1))
    before = metrics_of(admin_api, entity_id)
    body = f'[{json.dumps(good(entity_id, 5))}, {{"entityId": "{entity_id}", "metricName": "x", "value": {raw_value}}}]'
    response = admin_api.call("POST", "/metrics", data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "ANALYTICS_1200", "value")
    assert metrics_of(admin_api, entity_id) == before


# --- out of range, on both backends: what one database would store another refuses -----------------------------

HUGE = 10**30  # beyond SQLite's 64-bit INTEGER
OUT_OF_RANGE = [
    pytest.param(
        lambda e, d, t: ("POST", "/metrics", good(e, 10**400), {}),
        400,
        id="metric-value-integer-beyond-float",
    ),
    pytest.param(
        lambda e, d, t: ("POST", "/metrics", {**good(e), "timestamp": "0001-01-01T00:00:00+05:00"}, {}),
        400,
        id="timestamp-before-year-1-in-utc",
    ),
    pytest.param(
        lambda e, d, t: ("POST", "/metrics", {**good(e), "timestamp": "9999-12-31T23:59:59-05:00"}, {}),
        400,
        id="timestamp-after-year-9999-in-utc",
    ),
    pytest.param(
        lambda e, d, t: ("POST", f"/dashboards/{d}/tiles", {**NEW_TILE, "thresholds": {"warning": 10**400}}, {}),
        400,
        id="threshold-integer-beyond-float",
    ),
    pytest.param(
        lambda e, d, t: ("GET", f"/dashboards/{HUGE}", None, {}),
        404,
        id="dashboard-id-in-path-beyond-int64",
    ),
    pytest.param(
        lambda e, d, t: ("PUT", f"/entities/{unique('event')}", {"entityType": "event", "dashboardId": HUGE}, {}),
        404,
        id="dashboard-id-in-body-beyond-int64",
    ),
    pytest.param(
        # A header value is Latin-1 text on the wire: this is the single byte 0xB2, a superscript two.
        lambda e, d, t: ("PATCH", f"/dashboards/{d}/tiles/{t}", {"title": "x"}, {"If-Match": "\u00b2"}),
        400,
        id="if-match-superscript-digit",
    ),
    pytest.param(
        lambda e, d, t: ("PATCH", f"/dashboards/{d}/tiles/{HUGE}", {"title": "x"}, {}), 404, id="tile-id-huge"
    ),
    pytest.param(
        lambda e, d, t: ("PATCH", f"/dashboards/{d}/tiles/{t}", {"title": "x", "expectedVersion": HUGE}, {}),
        409,
        id="expected-version-huge",
    ),
    pytest.param(
        lambda e, d, t: ("PUT", f"/dashboards/{d}/tiles/order", {"tileIds": [HUGE, t]}, {}), 400, id="tile-ids-huge"
    ),
]


@pytest.mark.parametrize(("make_request", "status"), OUT_OF_RANGE)
def test_out_of_range_input_is_a_client_error(admin_api, entity, make_request, status):
    entity_id, dashboard = entity
    method, path, body, headers = make_request(entity_id, dashboard["id"], dashboard["tiles"][0]["id"])
    response = admin_api.call(method, path, json=body, headers=headers)
    assert_error(response, status, {400: "ANALYTICS_1200", 404: "ANALYTICS_1201", 409: "ANALYTICS_1202"}[status])
    assert metrics_of(admin_api, entity_id) == {}
    assert admin_api.dashboard(dashboard["id"]) == dashboard


# --- the request as a whole ----------------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("body", [[], {"metrics": []}], ids=["empty-list", "empty-envelope"])
def test_empty_batch_is_refused(admin_api, body):
    assert_error(admin_api.call("POST", "/metrics", json=body), 400, "ANALYTICS_1200", "no metrics")


@sqlite_only
@pytest.mark.parametrize("envelope", ["list", "metrics-object"])
def test_batch_over_max_is_413_and_writes_nothing(admin_api, entity, envelope):
    entity_id, _ = entity
    admin_api.ingest((entity_id, "ticketsSold", 1))
    before = metrics_of(admin_api, entity_id)
    items = [good(entity_id, i) for i in range(1001)]
    body = items if envelope == "list" else {"metrics": items}
    assert_error(admin_api.call("POST", "/metrics", json=body), 413, "ANALYTICS_1203", "1000")
    assert metrics_of(admin_api, entity_id) == before


@sqlite_only
def test_request_body_over_the_byte_limit_is_413(admin_api, entity):
    entity_id, _ = entity
    body = {"metrics": [good(entity_id)], "padding": "x" * (1024 * 1024)}
    assert_error(admin_api.call("POST", "/metrics", json=body), 413, "ANALYTICS_1203")
    assert metrics_of(admin_api, entity_id) == {}


NOT_JSON = [
    ("form-encoded", "entityId=a&metricName=b&value=1", "application/x-www-form-urlencoded", "expected a JSON body"),
    ("text-plain-json", '{"entityId": "a", "metricName": "b", "value": 1}', "text/plain", "expected a JSON body"),
    ("no-content-type", '{"entityId": "a", "metricName": "b", "value": 1}', None, "expected a JSON body"),
    ("truncated-json", '{"entityId": "a", "metricName":', "application/json", "malformed"),
    ("single-quotes", "{'entityId': 'a'}", "application/json", "malformed"),
    ("empty-body", "", "application/json", "malformed"),
    ("json-null", "null", "application/json", "malformed"),
    ("invalid-utf8", b'{"entityId": "\xff"}', "application/json", "malformed"),
    ("nested-100000-deep", "[" * 100_000 + "]" * 100_000, "application/json", "nested too deeply"),
]


@sqlite_only
@pytest.mark.parametrize(("data", "content_type", "fragment"), [c[1:] for c in NOT_JSON], ids=[c[0] for c in NOT_JSON])
def test_body_that_is_not_json_is_400(admin_api, data, content_type, fragment):
    headers = {"Content-Type": content_type} if content_type else {}
    response = admin_api.call("POST", "/metrics", data=data, headers=headers)
    assert_error(response, 400, "ANALYTICS_1200", fragment)


# --- distinct metric names per entity (MAX_METRICS_PER_ENTITY) ----------------------------------------------------


def names(entity_id, *metric_names, value=1):
    return {"metrics": [{"entityId": entity_id, "metricName": name, "value": value} for name in metric_names]}


def test_an_entity_takes_at_most_a_thousand_metric_names_by_default(admin_api, entity):
    entity_id, _ = entity
    admin_api.call("POST", "/metrics", 201, json=names(entity_id, *(f"m{n}" for n in range(1000))))
    *_, response = admin_api.request("POST", "/metrics", json=names(entity_id, "one-more"))
    assert_error(response, 409, "ANALYTICS_1205", "1000")
    assert len(metrics_of(admin_api, entity_id)) == 1000
    admin_api.call("POST", "/metrics", 201, json=names(entity_id, "m0", "m999", value=2))  # known names still update


def test_a_batch_over_the_cap_writes_nothing(app, admin_api, entity, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_METRICS_PER_ENTITY", 3)
    entity_id, _ = entity
    other = unique("event")
    admin_api.put_entity(other, "event")
    admin_api.call("POST", "/metrics", 201, json=names(entity_id, "a", "b"))
    batch = names(entity_id, "a", "c", "d", value=5)["metrics"] + names(other, "x")["metrics"]
    *_, response = admin_api.request("POST", "/metrics", json={"metrics": batch})
    assert_error(response, 409, "ANALYTICS_1205", repr(entity_id))
    assert {name: m["value"] for name, m in metrics_of(admin_api, entity_id).items()} == {"a": 1, "b": 1}
    assert metrics_of(admin_api, other) == {}
    admin_api.call("POST", "/metrics", 201, json=names(entity_id, "a", "b", "c", value=7))  # exactly the cap
    assert set(metrics_of(admin_api, entity_id)) == {"a", "b", "c"}


def test_the_cap_counts_a_name_given_twice_in_a_batch_once(app, admin_api, entity, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_METRICS_PER_ENTITY", 2)
    entity_id, _ = entity
    admin_api.call("POST", "/metrics", 201, json=names(entity_id, "a", "b", "a", "b"))


def test_single_writes_stop_at_the_cap_and_keep_updating_known_names(app, admin_api, entity, database, monkeypatch):
    # A single point is written in one statement that checks the cap itself (services/metrics.py).
    monkeypatch.setitem(app.config, "MAX_METRICS_PER_ENTITY", 2)
    entity_id, _ = entity
    other = unique("event")
    admin_api.put_entity(other, "event")
    rows_before = database.scalar("SELECT count(*) FROM change_log")
    for name in ("a", "b"):
        admin_api.call("POST", "/metrics", 201, json={"entityId": entity_id, "metricName": name, "value": 1})
    *_, response = admin_api.request("POST", "/metrics", json={"entityId": entity_id, "metricName": "c", "value": 1})
    assert_error(response, 409, "ANALYTICS_1205", repr(entity_id))
    admin_api.call("POST", "/metrics", 201, json={"entityId": entity_id, "metricName": "b", "value": 3})
    admin_api.call("POST", "/metrics", 201, json={"entityId": other, "metricName": "c", "value": 4})  # its own cap
    assert {name: m["value"] for name, m in metrics_of(admin_api, entity_id).items()} == {"a": 1, "b": 3}
    assert database.scalar("SELECT count(*) FROM change_log") == rows_before + 4
