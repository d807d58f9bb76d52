"""Dashboards and tiles: reads, and layout changes that subscribers see live.

Every layout change locks its dashboard, checks the optional expected version,
bumps the version and appends a change-log row in the same transaction; the
poller turns that row into ``dashboard:update``.
"""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app import errors
from app.database import write_transaction
from app.errors import AppError
from app.extensions import db
from app.models import Dashboard, Tile
from app.serializers import (
    ACTION_ADDED,
    ACTION_REMOVED,
    ACTION_REORDERED,
    ACTION_UPDATED,
    dashboard_to_dict,
    layout_change,
    tile_to_dict,
)
from app.services.changes import append_dashboard_change, change_committed
from app.services.entities import detach_all
from app.validation import (
    is_row_id,
    optional_text,
    optional_thresholds,
    require_choice,
    require_id,
    require_object,
)

TILE_KINDS = ("number", "gauge", "line")
MAX_TILES = 100


def parse_tile(payload, partial=False):
    """Validate a tile's fields; with ``partial``, only the fields present. Returns model field names."""
    payload = require_object(payload, what="tile")
    fields = {}
    if not partial or "title" in payload:
        fields["title"] = require_id(payload, "title", 200)
    if not partial or "metricName" in payload:
        fields["metric_name"] = require_id(payload, "metricName", 128)
    if not partial or "kind" in payload:
        fields["kind"] = require_choice(payload, "kind", TILE_KINDS)
    if not partial or "unit" in payload:
        fields["unit"] = optional_text(payload, "unit", 32)
    if not partial or "thresholds" in payload:
        fields["thresholds"] = optional_thresholds(payload)
    unknown = set(payload) - {"title", "metricName", "kind", "unit", "thresholds", "expectedVersion"}
    if unknown:
        raise AppError(errors.VALIDATION_FAILED, f"unknown tile field(s): {', '.join(sorted(unknown))}")
    if partial and not fields:
        raise AppError(errors.VALIDATION_FAILED, "nothing to update")
    return fields


def parse_tiles(payloads):
    """Validate a list of tiles (``parse_tile`` each); an error names the tile's index (``tiles[2]: ...``)."""
    parsed = []
    for index, tile in enumerate(payloads):
        try:
            parsed.append(parse_tile(tile))
        except AppError as exc:
            raise AppError(exc.error, f"tiles[{index}]: {exc.message}") from None
    return parsed


def list_dashboards(tenant_id, limit=None, after=None):
    """Return the tenant's dashboards (without tiles), oldest first.

    With ``limit``, at most that many; with ``after`` (a dashboard id), only those after it: one page.
    """
    query = select(Dashboard).where(Dashboard.tenant_id == tenant_id).order_by(Dashboard.id)
    if after is not None:
        query = query.where(Dashboard.id > after)
    if limit is not None:
        query = query.limit(limit)
    return [dashboard_to_dict(d, with_tiles=False) for d in db.session.scalars(query)]


def dashboards_by_id(tenant_id, dashboard_ids):
    """Return ``{id: dashboard dict with tiles}`` for the tenant's dashboards among ``dashboard_ids``.

    Two queries however many ids (the dashboards, then all their tiles); ids of
    another tenant, or of none, are left out.
    """
    ids = sorted({i for i in dashboard_ids if is_row_id(i)})
    if not ids:
        return {}
    query = (
        select(Dashboard)
        .where(Dashboard.tenant_id == tenant_id, Dashboard.id.in_(ids))
        .options(selectinload(Dashboard.tiles))
    )
    return {d.id: dashboard_to_dict(d) for d in db.session.scalars(query)}


def find_dashboard(session, tenant_id, dashboard_id, lock=False):
    """Return the tenant's dashboard (row-locked with ``lock``), or raise NOT_FOUND."""
    if not is_row_id(dashboard_id):
        raise AppError(errors.NOT_FOUND, f"unknown dashboard {dashboard_id}")
    query = select(Dashboard).where(Dashboard.id == dashboard_id, Dashboard.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    dashboard = session.scalar(query)
    if dashboard is None:
        raise AppError(errors.NOT_FOUND, f"unknown dashboard {dashboard_id}")
    return dashboard


def get_dashboard(tenant_id, dashboard_id):
    """Return one of the tenant's dashboards with its ordered tiles, or raise NOT_FOUND."""
    return dashboard_to_dict(find_dashboard(db.session, tenant_id, dashboard_id))


def create_dashboard(tenant_id, name, tiles, copy_of=None):
    """Create a dashboard with ``tiles`` (parsed by :func:`parse_tile`) in order; return it.

    With ``copy_of`` (a dashboard id of the tenant, else NOT_FOUND), its tiles as they are now instead.
    """
    if len(tiles) > MAX_TILES:
        raise AppError(errors.VALIDATION_FAILED, f"a dashboard holds at most {MAX_TILES} tiles")
    with write_transaction() as session:
        if copy_of is not None:
            tiles = [_tile_fields(tile) for tile in find_dashboard(session, tenant_id, copy_of).tiles]
        dashboard = Dashboard(tenant_id=tenant_id, name=name, version=1)
        dashboard.tiles = [Tile(position=i, **fields) for i, fields in enumerate(tiles)]
        session.add(dashboard)
        session.flush()
        result = dashboard_to_dict(dashboard)
    return result


def _tile_fields(tile):
    return {
        "title": tile.title,
        "metric_name": tile.metric_name,
        "kind": tile.kind,
        "unit": tile.unit,
        "thresholds": dict(tile.thresholds) if tile.thresholds else tile.thresholds,
    }


def rename_dashboard(tenant_id, dashboard_id, name, expected_version=None):
    """Rename a dashboard; return it. The version counts layout changes only: a rename keeps it.

    ``expected_version``, when given, must still be the current version (CONFLICT otherwise).
    """
    with write_transaction() as session:
        dashboard = find_dashboard(session, tenant_id, dashboard_id, lock=True)
        _check_version(dashboard, expected_version)
        dashboard.name = name
        dashboard.updated_at = datetime.now(UTC)
        session.flush()
        result = dashboard_to_dict(dashboard)
    return result


def delete_dashboard(tenant_id, dashboard_id, expected_version=None):
    """Detach the dashboard from every entity that shows it, then delete it; return ``{id, detached}``.

    Each detached entity's subscribers get ``dashboard:update`` action ``replaced``
    with no dashboard. Raises NOT_FOUND, or CONFLICT for a stale ``expected_version``.
    """
    with write_transaction() as session:
        dashboard = find_dashboard(session, tenant_id, dashboard_id, lock=True)
        _check_version(dashboard, expected_version)
        detached = detach_all(session, tenant_id, dashboard.id)
        session.delete(dashboard)
    if detached:
        change_committed.send()
    return {"id": dashboard_id, "detached": detached}


def _check_version(dashboard, expected_version):
    if expected_version is not None and expected_version != dashboard.version:
        raise AppError(
            errors.CONFLICT,
            f"dashboard {dashboard.id} is at version {dashboard.version}, not {expected_version}: "
            "someone else changed it; reload and try again",
        )


def _begin_change(session, tenant_id, dashboard_id, expected_version):
    dashboard = find_dashboard(session, tenant_id, dashboard_id, lock=True)
    _check_version(dashboard, expected_version)
    dashboard.version += 1
    dashboard.updated_at = datetime.now(UTC)
    return dashboard


def _find_tile(dashboard, tile_id):
    for tile in dashboard.tiles:
        if tile.id == tile_id:
            return tile
    raise AppError(errors.NOT_FOUND, f"unknown tile {tile_id}")


def _commit_change(session, dashboard, action, tile=None, order=None):
    payload = layout_change(action, dashboard.version, tile, order)
    append_dashboard_change(session, dashboard.tenant_id, dashboard.id, payload)
    return payload


def add_tile(tenant_id, dashboard_id, fields, expected_version=None):
    """Append a tile to the dashboard; return the change ``{action, tile, version}``."""
    with write_transaction() as session:
        dashboard = _begin_change(session, tenant_id, dashboard_id, expected_version)
        if len(dashboard.tiles) >= MAX_TILES:
            raise AppError(errors.VALIDATION_FAILED, f"a dashboard holds at most {MAX_TILES} tiles")
        tile = Tile(position=len(dashboard.tiles), **fields)
        dashboard.tiles.append(tile)
        session.flush()
        change = _commit_change(session, dashboard, ACTION_ADDED, tile=tile_to_dict(tile))
    change_committed.send()
    return change


def update_tile(tenant_id, dashboard_id, tile_id, fields, expected_version=None):
    """Change some fields of a tile; return the change ``{action, tile, version}``."""
    with write_transaction() as session:
        dashboard = _begin_change(session, tenant_id, dashboard_id, expected_version)
        tile = _find_tile(dashboard, tile_id)
        for name, value in fields.items():
            setattr(tile, name, value)
        session.flush()
        change = _commit_change(session, dashboard, ACTION_UPDATED, tile=tile_to_dict(tile))
    change_committed.send()
    return change


def _renumber(session, tiles):
    # Two passes keep the (dashboard, position) unique constraint true at every statement.
    for i, tile in enumerate(tiles):
        tile.position = -1 - i
    session.flush()
    for i, tile in enumerate(tiles):
        tile.position = i
    session.flush()


def remove_tile(tenant_id, dashboard_id, tile_id, expected_version=None):
    """Remove a tile and close the gap in positions; return the change ``{action, tile, version}``."""
    with write_transaction() as session:
        dashboard = _begin_change(session, tenant_id, dashboard_id, expected_version)
        tile = _find_tile(dashboard, tile_id)
        removed = tile_to_dict(tile)
        dashboard.tiles.remove(tile)
        session.flush()
        _renumber(session, dashboard.tiles)
        change = _commit_change(session, dashboard, ACTION_REMOVED, tile=removed)
    change_committed.send()
    return change


def reorder_tiles(tenant_id, dashboard_id, tile_ids, expected_version=None):
    """Put the tiles in the order of ``tile_ids`` (every tile exactly once); return the change."""
    with write_transaction() as session:
        dashboard = _begin_change(session, tenant_id, dashboard_id, expected_version)
        by_id = {tile.id: tile for tile in dashboard.tiles}
        if sorted(tile_ids) != sorted(by_id):
            raise AppError(errors.VALIDATION_FAILED, "tileIds must list every tile of the dashboard exactly once")
        ordered = [by_id[i] for i in tile_ids]
        _renumber(session, ordered)
        change = _commit_change(session, dashboard, ACTION_REORDERED, order=list(tile_ids))
    change_committed.send()
    return change


def move_tile(tenant_id, dashboard_id, tile_id, offset, expected_version=None):
    """Move a tile ``offset`` places (negative: towards the first), stopping at either end.

    Returns the ``reordered`` change of :func:`reorder_tiles`, or None when the
    tile is already at that end and nothing changed.
    """
    dashboard = find_dashboard(db.session, tenant_id, dashboard_id)
    order = [tile.id for tile in dashboard.tiles]
    try:
        if tile_id not in order:
            raise AppError(errors.NOT_FOUND, f"unknown tile {tile_id}")
        start = order.index(tile_id)
        end = max(0, min(len(order) - 1, start + offset))
        if start == end:
            _check_version(dashboard, expected_version)  # a stale request is refused even when it would do nothing
            return None
    finally:
        db.session.rollback()
    order.insert(end, order.pop(start))
    return reorder_tiles(tenant_id, dashboard_id, order, expected_version)
