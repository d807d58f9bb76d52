"""Wire formats: the one place that turns models and changes into what clients see.

REST answers, the admin page's JSON, the change log's layout payloads and the
Socket.IO events (``dashboard:initial``, ``metric:update``, ``dashboard:update``)
are all built here, so a field is named and formatted the same everywhere.
"""

import time
from datetime import UTC, datetime, timedelta

#: ``dashboard:update`` actions of a layout change (the ``action`` of a change-log payload).
ACTION_ADDED = "added"
ACTION_REMOVED = "removed"
ACTION_UPDATED = "updated"
ACTION_REORDERED = "reordered"
LAYOUT_ACTIONS = frozenset({ACTION_ADDED, ACTION_REMOVED, ACTION_UPDATED, ACTION_REORDERED})
#: ``dashboard:update`` action of an entity that now shows another dashboard, or none (an entity change).
ACTION_REPLACED = "replaced"
#: The change-log action of an entity change that removed the entity (subscribers get an ``error``).
ACTION_ENTITY_DELETED = "deleted"


def iso_utc(moment):
    """Format a datetime as ISO-8601 UTC with milliseconds and a trailing ``Z`` (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(t):
    """``iso_utc`` of Unix milliseconds ``t``, without making a datetime (history answers format thousands)."""
    if t < 0:
        return iso_utc(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t))
    seconds, millis = divmod(t, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def tile_to_dict(tile):
    """A tile: ``{id, position, title, metricName, kind, unit, thresholds}``."""
    return {
        "id": tile.id,
        "position": tile.position,
        "title": tile.title,
        "metricName": tile.metric_name,
        "kind": tile.kind,
        "unit": tile.unit,
        "thresholds": tile.thresholds,
    }


def dashboard_to_dict(dashboard, with_tiles=True):
    """A dashboard: ``{id, name, version}``, with its ordered ``tiles`` unless ``with_tiles`` is false."""
    result = {"id": dashboard.id, "name": dashboard.name, "version": dashboard.version}
    if with_tiles:
        result["tiles"] = [tile_to_dict(t) for t in dashboard.tiles]
    return result


def entity_to_dict(entity):
    """An entity: ``{entityId, entityType, name, dashboardId}``."""
    return {
        "entityId": entity.entity_id,
        "entityType": entity.entity_type,
        "name": entity.name,
        "dashboardId": entity.dashboard_id,
    }


def entity_metrics(entity, rows):
    """``GET .../metrics``: ``{entityId, entityType, metrics: {name: {value, timestamp, seq}}}`` from
    ``(metric_name, value, recorded_at, seq)`` rows."""
    return {"entityId": entity.entity_id, "entityType": entity.entity_type, "metrics": metric_values(rows)}


def metric_values(rows):
    """``{name: {value, timestamp, seq}}`` from ``(metric_name, value, recorded_at, seq)`` rows."""
    return {
        name: {"value": value, "timestamp": iso_utc(recorded_at), "seq": seq} for name, value, recorded_at, seq in rows
    }


def history_point(t, value, seq):
    """A raw history point: ``{t, value, seq}`` (``t`` already formatted by ``iso_ms``)."""
    return {"t": t, "value": value, "seq": seq}


def history_bucket(t, low, high, average, last, count):
    """A history bucket starting at ``t`` (formatted by ``iso_ms``): ``{t, min, max, avg, last, count}``."""
    return {"t": t, "min": low, "max": high, "avg": average, "last": last, "count": count}


def ingest_result(accepted, last_seq):
    """``POST /metrics``: ``{accepted, lastSeq}``."""
    return {"accepted": accepted, "lastSeq": last_seq}


def layout_change(action, version, tile=None, order=None):
    """A layout change as the change log stores it and REST answers it: ``{action, tile, version, order?}``."""
    payload = {"action": action, "tile": tile, "version": version}
    if order is not None:
        payload["order"] = order
    return payload


def entity_replaced(previous_dashboard_id, dashboard_id, version, tiles):
    """An entity change as the change log stores it: the entity left ``previous_dashboard_id`` for ``dashboard_id``.

    ``tiles`` and ``version`` are the new dashboard's at that moment ([] and None without one).
    """
    return {
        "action": ACTION_REPLACED,
        "previousDashboardId": previous_dashboard_id,
        "dashboardId": dashboard_id,
        "version": version,
        "tiles": tiles,
    }


def entity_deleted(previous_dashboard_id):
    """An entity change as the change log stores it: the entity (which showed ``previous_dashboard_id``) was removed."""
    return {"action": ACTION_ENTITY_DELETED, "previousDashboardId": previous_dashboard_id, "dashboardId": None}


def dashboard_initial(entity, version, metrics, tiles, seq=None):
    """``dashboard:initial``: ``{entityId, entityType, dashboardId, version, metrics, tiles, history, seq}``.

    ``metrics`` maps names to values, ``tiles`` are ``tile_to_dict`` dicts in order;
    ``history`` (set by the poller) maps the metric of each ``line`` tile to its
    recent points; ``seq`` is the change-log position the snapshot was read at.
    """
    return {
        "entityId": entity.entity_id,
        "entityType": entity.entity_type,
        "dashboardId": entity.dashboard_id,
        "version": version,
        "metrics": metrics,
        "tiles": tiles,
        "history": {},
        "seq": seq,
    }


def dashboard_resume(entity, since_seq, metrics, updates, seq=None):
    """``dashboard:resume``: ``{entityId, entityType, fromSeq, seq, recovered: true, metrics, updates}``.

    ``metrics`` maps the names changed after ``since_seq`` to their newest values;
    ``updates`` are the ``dashboard:update`` payloads after it, in order; ``seq``
    is set by the poller, as for ``dashboard:initial``.
    """
    return {
        "entityId": entity.entity_id,
        "entityType": entity.entity_type,
        "fromSeq": since_seq,
        "seq": seq,
        "recovered": True,
        "metrics": metrics,
        "updates": updates,
    }


def chart_metrics(tiles):
    """The metric names of the ``line`` tiles among ``tiles`` (``tile_to_dict`` dicts): those that get history."""
    return [tile["metricName"] for tile in tiles if tile.get("kind") == "line"]


def metric_update(change):
    """``metric:update`` of a metric change: ``{entityId, metricName, value, timestamp, seq}``."""
    return {
        "entityId": change.entity_id,
        "metricName": change.metric_name,
        "value": change.value,
        "timestamp": iso_utc(change.recorded_at),
        "seq": change.seq,
    }


def dashboard_update(change):
    """``dashboard:update`` of a layout change: ``{dashboardId, action, tile, version, seq, order?}``.

    None when the change-log payload is not a layout change this version knows.
    """
    payload = change.payload
    if not isinstance(payload, dict) or payload.get("action") not in LAYOUT_ACTIONS:
        return None
    data = {
        "dashboardId": change.dashboard_id,
        "action": payload["action"],
        "tile": payload.get("tile"),
        "version": payload.get("version"),
        "seq": change.seq,
    }
    if "order" in payload:
        data["order"] = payload["order"]
    return data


def dashboard_replaced(change):
    """``dashboard:update`` of an entity change: ``{entityId, dashboardId, action: "replaced", tiles, version, seq}``.

    None when the change is not a ``replaced`` entity change.
    """
    payload = change.payload
    if not isinstance(payload, dict) or payload.get("action") != ACTION_REPLACED:
        return None
    return {
        "entityId": change.entity_id,
        "dashboardId": payload.get("dashboardId"),
        "action": ACTION_REPLACED,
        "tiles": payload.get("tiles") or [],
        "version": payload.get("version"),
        "seq": change.seq,
    }
