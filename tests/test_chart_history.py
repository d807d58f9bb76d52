"""History for charts on first paint: ``dashboard:initial`` and ``replaced`` carry the recent points of line tiles.

The step rule here, the series in process in tests/api/test_history.py, the events on a live server.
"""

from datetime import UTC, datetime, timedelta

import pytest

from app.services.history import chart_step
from testkit import unique

LINE_TILES = [
    {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
    {"title": "Check-ins", "metricName": "checkIns", "kind": "line"},
    {"title": "Queue", "metricName": "queue", "kind": "line"},
]


def iso(moment):
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def minute_of(moment):
    return moment.replace(second=0, microsecond=0)


@pytest.mark.parametrize(
    ("window", "points", "step"),
    [
        (3600, 120, 60),
        (3600, 60, 60),
        (3600, 30, 120),
        (600, 120, 5),
        (600, 20, 60),
        (600, 30, 20),
        (86400, 120, 720),
        (7, 120, 1),
    ],
)
def test_chart_step_gives_at_most_the_points_asked_and_whole_minutes_from_30_s(window, points, step):
    assert chart_step(window, points) == step
    assert window / step <= points


def write_minutes(api, entity_id, metric, now, minutes):
    """Two values in each of the last ``minutes`` minutes; return ``{minute start: the later value}``."""
    body = []
    last = {}
    for back in range(minutes, 0, -1):
        start = minute_of(now - timedelta(minutes=back))
        for second, value in ((10, back * 10.0), (40, back * 10.0 + 1)):
            body.append(
                {
                    "entityId": entity_id,
                    "metricName": metric,
                    "value": value,
                    "timestamp": iso(start + timedelta(seconds=second)),
                }
            )
        last[start] = back * 10.0 + 1
    api.call("POST", "/metrics", 201, json={"metrics": body})
    return last


def test_initial_and_replaced_carry_history_for_line_tiles_only(live_server, tenant, admin_api, sio_client, token_for):
    first = admin_api.create_dashboard("Lines", LINE_TILES)
    second = admin_api.create_dashboard("Other", [{"title": "Queue", "metricName": "queue", "kind": "line"}])
    entity_id = unique("event")
    admin_api.put_entity(entity_id, "event", first["id"])
    now = datetime.now(UTC)
    checkins = write_minutes(admin_api, entity_id, "checkIns", now, 10)
    write_minutes(admin_api, entity_id, "ticketsSold", now, 10)
    queue = write_minutes(admin_api, entity_id, "queue", now, 3)

    client = sio_client(token_for(tenant))
    initial = client.subscribe(entity_id)
    assert set(initial["history"]) == {"checkIns", "queue"}
    assert initial["history"]["checkIns"] == [{"t": iso(s), "value": v} for s, v in sorted(checkins.items())]
    assert [p["value"] for p in initial["history"]["queue"]] == [v for _, v in sorted(queue.items())]
    assert initial["history"]["checkIns"][-1]["value"] == initial["metrics"]["checkIns"]

    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": second["id"]})
    replaced = client.wait_for("dashboard:update", lambda u: u["action"] == "replaced")
    assert list(replaced["history"]) == ["queue"]
    assert replaced["history"]["queue"] == initial["history"]["queue"]

    admin_api.call("PUT", f"/entities/{entity_id}", 200, json={"entityType": "event", "dashboardId": None})
    assert client.wait_for("dashboard:update", lambda u: u["dashboardId"] is None)["history"] == {}
