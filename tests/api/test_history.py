"""GET /api/v1/entities/{entityId}/metrics/{metricName}/history: raw points and step buckets.

Values go in through POST /api/v1/metrics with their timestamps (the trigger files them as
points and 1-minute rollups); the expected buckets are computed here from what was written.
A step of whole minutes reads the rollups, any other step the raw points: both are checked
against the same expectation. SQL differs between the databases, so every test runs on both.
"""

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from app.services.history import recent_history
from testkit import unique
from tests.api.conftest import assert_error
from tests.test_chart_history import minute_of, write_minutes

BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def iso(moment):
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def venue(admin_api):
    entity_id = unique("venue")
    admin_api.put_entity(entity_id, "venue")
    return entity_id


def write(api, entity_id, points, metric="occupancy"):
    """Write ``[(moment, value)]`` in one batch, in the order given; return their seqs in that order."""
    body = {
        "metrics": [{"entityId": entity_id, "metricName": metric, "value": v, "timestamp": iso(t)} for t, v in points]
    }
    last = api.call("POST", "/metrics", 201, json=body)["lastSeq"]
    return list(range(last - len(points) + 1, last + 1))


def history(api, entity_id, metric="occupancy", **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return api.call("GET", f"/entities/{entity_id}/metrics/{metric}/history?{query}", 200)


def expected_buckets(written, step):
    """``written``: ``[(moment, value, seq)]``; the buckets the API must answer, oldest first."""
    by_bucket = defaultdict(list)
    for moment, value, seq in written:
        t = int(moment.timestamp() * 1000)
        by_bucket[t - t % (step * 1000)].append((t, seq, value))
    result = []
    for start in sorted(by_bucket):
        points = by_bucket[start]
        values = [v for _, _, v in points]
        result.append(
            {
                "t": iso(datetime.fromtimestamp(start / 1000, UTC)),
                "min": min(values),
                "max": max(values),
                "avg": pytest.approx(sum(values) / len(values)),
                "last": max(points)[2],  # latest t, then highest seq
                "count": len(values),
            }
        )
    return result


def test_buckets_match_what_was_written_out_of_order_and_across_batches(admin_api, venue):
    rng = random.Random(7)
    moments = [
        BASE + timedelta(seconds=rng.randrange(0, 3 * 3600), milliseconds=rng.randrange(1000)) for _ in range(300)
    ]
    moments += [BASE + timedelta(minutes=30)] * 3  # equal timestamps: the last written is the bucket's last
    written = []
    for start in range(0, len(moments), 70):  # batches that span many buckets, in no time order
        chunk = [(t, float(rng.randrange(-500, 500)) / 4) for t in moments[start : start + 70]]
        seqs = write(admin_api, venue, chunk)
        written += [(t, v, s) for (t, v), s in zip(chunk, seqs, strict=True)]

    start, end = iso(BASE - timedelta(hours=1)), iso(BASE + timedelta(hours=4))
    for step in (60, 300, 3600, 30, 45, 7):  # whole minutes read rollups; the others raw points
        answer = history(admin_api, venue, **{"from": start, "to": end, "step": step})
        assert answer["step"] == step
        assert answer["points"] == expected_buckets(written, step), step


def test_buckets_are_aligned_to_multiples_of_step_since_the_epoch_and_given_whole(admin_api, venue):
    # 12:00:10 .. 12:59:50, every 20 s; the range starts and ends inside buckets.
    written = [(BASE + timedelta(seconds=s), float(s)) for s in range(10, 3600, 20)]
    seqs = write(admin_api, venue, written)
    answer = history(
        admin_api,
        venue,
        **{"from": iso(BASE + timedelta(minutes=7, seconds=30)), "to": iso(BASE + timedelta(minutes=22)), "step": 600},
    )
    inside = [
        (t, v, s)
        for (t, v), s in zip(written, seqs, strict=True)
        if BASE + timedelta(minutes=0) <= t < BASE + timedelta(minutes=30)
    ]
    assert [p["t"] for p in answer["points"]] == [
        iso(BASE),
        iso(BASE + timedelta(minutes=10)),
        iso(BASE + timedelta(minutes=20)),
    ]
    assert answer["points"] == expected_buckets(inside, 600)


def test_empty_buckets_are_left_out(admin_api, venue):
    write(admin_api, venue, [(BASE, 1.0), (BASE + timedelta(minutes=50), 2.0)])
    answer = history(admin_api, venue, **{"from": iso(BASE), "to": iso(BASE + timedelta(hours=1)), "step": 60})
    assert [(p["t"], p["last"]) for p in answer["points"]] == [
        (iso(BASE), 1.0),
        (iso(BASE + timedelta(minutes=50)), 2.0),
    ]


def test_times_before_1970_fall_in_the_right_bucket(admin_api, venue):
    early = datetime(1969, 12, 31, 23, 59, 30, tzinfo=UTC)
    write(admin_api, venue, [(early, 5.0), (early + timedelta(seconds=45), 6.0)])
    for step in (60, 30):
        answer = history(
            admin_api, venue, **{"from": iso(early), "to": iso(early + timedelta(minutes=2)), "step": step}
        )
        assert [(p["t"], p["count"]) for p in answer["points"]] == [
            ("1969-12-31T23:59:00.000Z" if step == 60 else "1969-12-31T23:59:30.000Z", 1),
            ("1970-01-01T00:00:00.000Z", 1),
        ]


def test_raw_points_are_paged_oldest_first_by_timestamp_then_seq(admin_api, venue):
    moments = [BASE + timedelta(seconds=s) for s in (50, 10, 30, 10, 40, 20)]
    seqs = write(admin_api, venue, [(t, float(i)) for i, t in enumerate(moments)])
    expected = sorted(
        ({"t": iso(t), "value": float(i), "seq": s} for i, (t, s) in enumerate(zip(moments, seqs, strict=True))),
        key=lambda p: (p["t"], p["seq"]),
    )
    params = {"from": iso(BASE), "to": iso(BASE + timedelta(minutes=1)), "limit": 4}
    first = history(admin_api, venue, **params)
    assert first["points"] == expected[:4]
    second = history(admin_api, venue, **params, cursor=first["next"])
    assert second["points"] == expected[4:] and second["next"] is None
    assert set(first) == {"entityId", "metricName", "points", "next"}


def test_defaults_are_the_hour_before_now_and_unknown_metrics_are_empty(admin_api, venue):
    now = datetime.now(UTC)
    write(admin_api, venue, [(now - timedelta(hours=2), 1.0), (now - timedelta(minutes=5), 2.0)])
    assert [p["value"] for p in history(admin_api, venue)["points"]] == [2.0]
    assert history(admin_api, venue, metric="nothing")["points"] == []


BAD = [
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "from must not be after to"),
    ({"step": "0"}, "step"),
    ({"step": "-60"}, "step"),
    ({"step": "1.5"}, "step"),
    ({"step": "x"}, "step"),
    ({"step": "99999999999999"}, "step"),
    ({"from": "2000-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "step": "60"}, "step is too small"),
    ({"limit": "0"}, "limit"),
    ({"limit": "10001"}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"cursor": "abc"}, "cursor"),
    ({"cursor": "1.2", "step": "60"}, "cursor"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(("params", "fragment"), BAD, ids=[f"{sorted(p)}-{f}" for p, f in BAD])
def test_bad_parameters_are_400_naming_them(admin_api, venue, params, fragment):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = admin_api.call("GET", f"/entities/{venue}/metrics/occupancy/history?{query}")
    assert_error(response, 400, "ANALYTICS_1200", fragment)


def test_unknown_and_foreign_entities_are_404(admin_api, other_api, venue):
    write(admin_api, venue, [(BASE, 1.0)])
    for api, entity_id in ((admin_api, "nothing-here"), (other_api, venue)):
        response = api.call("GET", f"/entities/{entity_id}/metrics/occupancy/history")
        assert_error(response, 404, "ANALYTICS_1101", entity_id)


def test_a_removed_entity_takes_its_history_along(admin_api, venue):
    write(admin_api, venue, [(BASE, 1.0)])
    admin_api.call("DELETE", f"/entities/{venue}", 204)
    admin_api.put_entity(venue, "venue")
    params = {"from": iso(BASE - timedelta(hours=1)), "to": iso(BASE + timedelta(hours=1))}
    assert history(admin_api, venue, **params)["points"] == []
    assert history(admin_api, venue, **params, step=60)["points"] == []


def test_recent_history_is_the_last_value_of_each_bucket_and_ends_with_the_current_value(app, admin_api, tenant):
    entity_id = unique("event")
    admin_api.put_entity(entity_id, "event")
    now = datetime.now(UTC)
    last = write_minutes(admin_api, entity_id, "checkIns", now, 90)
    with app.app_context():
        series = recent_history(tenant, entity_id, ["checkIns", "queue"], {"checkIns": 7.0}, 3600, 120, now)
    expected = [
        {"t": iso(start), "value": value}
        for start, value in sorted(last.items())
        if start >= now - timedelta(hours=1, minutes=1)
    ]
    expected = expected[-60:]
    expected[-1]["value"] = 7.0
    assert series == {"checkIns": expected, "queue": []}

    with app.app_context():
        only_current = recent_history(tenant, entity_id, ["queue"], {"queue": 3.0}, 3600, 120, now)
    assert only_current == {"queue": [{"t": iso(minute_of(now)), "value": 3.0}]}


def test_rows_inserted_straight_into_the_change_log_get_history_and_rollups(admin_api, database, tenant, venue):
    with database.transaction() as conn:
        conn.executemany(
            "INSERT INTO change_log (tenant_id, entity_id, metric_name, value, recorded_at)"
            " VALUES (?, ?, 'occupancy', ?, ?)",
            [
                (tenant, venue, 3.0, "2026-11-30 12:00:05"),
                (tenant, venue, 9.0, "2026-11-30 12:00:50"),
                (tenant, venue, 4.0, "2026-11-30 12:01:10"),
            ],
        )
    params = {"from": iso(BASE), "to": iso(BASE + timedelta(minutes=2))}
    assert [p["value"] for p in history(admin_api, venue, **params)["points"]] == [3.0, 9.0, 4.0]
    assert [
        (p["min"], p["max"], p["last"], p["count"]) for p in history(admin_api, venue, **params, step=60)["points"]
    ] == [
        (3.0, 9.0, 9.0, 2),
        (4.0, 4.0, 4.0, 1),
    ]
