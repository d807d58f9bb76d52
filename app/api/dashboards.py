"""Dashboards and their tiles."""

from app import errors
from app.api import bp
from app.api.common import expected_version, json_body, principal
from app.errors import AppError
from app.services import dashboards
from app.validation import is_integer, require_id, require_object


@bp.get("/dashboards")
def list_dashboards():
    """The tenant's dashboards."""
    caller = principal()
    return {"dashboards": dashboards.list_dashboards(caller.tenant_id)}


@bp.post("/dashboards")
def create_dashboard():
    """Create ``{name, tiles?: [...]}``, or ``{name, copyOf: <id>}`` with another's tiles (role admin)."""
    caller = principal("admin")
    body = require_object(json_body())
    copy_of = body.get("copyOf")
    if copy_of is not None:
        if not is_integer(copy_of):
            raise AppError(errors.VALIDATION_FAILED, "copyOf must be a dashboard id")
        if "tiles" in body:
            raise AppError(errors.VALIDATION_FAILED, "give tiles or copyOf, not both")
        return dashboards.create_dashboard(caller.tenant_id, require_id(body, "name", 200), [], copy_of=copy_of), 201
    tiles = body.get("tiles", [])
    if not isinstance(tiles, list):
        raise AppError(errors.VALIDATION_FAILED, "tiles must be a list")
    parsed = dashboards.parse_tiles(tiles)
    return dashboards.create_dashboard(caller.tenant_id, require_id(body, "name", 200), parsed), 201


@bp.get("/dashboards/<id('dashboardId'):dashboard_id>")
def get_dashboard(dashboard_id):
    """One dashboard with its ordered tiles."""
    caller = principal()
    dashboard = dashboards.get_dashboard(caller.tenant_id, dashboard_id)
    return dashboard, 200, {"ETag": f'"{dashboard["version"]}"'}


@bp.patch("/dashboards/<id('dashboardId'):dashboard_id>")
def rename_dashboard(dashboard_id):
    """Rename ``{name, expectedVersion?}`` (role admin); the version, which counts layout changes, stays."""
    caller = principal("admin")
    body = require_object(json_body())
    unknown = set(body) - {"name", "expectedVersion"}
    if unknown:
        raise AppError(errors.VALIDATION_FAILED, f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    dashboard = dashboards.rename_dashboard(
        caller.tenant_id, dashboard_id, require_id(body, "name", 200), expected_version(body)
    )
    return dashboard, 200, {"ETag": f'"{dashboard["version"]}"'}


@bp.delete("/dashboards/<id('dashboardId'):dashboard_id>")
def delete_dashboard(dashboard_id):
    """Detach it from its entities and delete it (role admin; ``If-Match`` optional).

    Subscribers of those entities get ``dashboard:update`` action ``replaced`` with no dashboard.
    """
    caller = principal("admin")
    return dashboards.delete_dashboard(caller.tenant_id, dashboard_id, expected_version({}))


@bp.post("/dashboards/<id('dashboardId'):dashboard_id>/tiles")
def add_tile(dashboard_id):
    """Append a tile (role admin); subscribers get ``dashboard:update`` action ``added``."""
    caller = principal("admin")
    body = json_body()
    change = dashboards.add_tile(caller.tenant_id, dashboard_id, dashboards.parse_tile(body), expected_version(body))
    return change, 201


@bp.patch("/dashboards/<id('dashboardId'):dashboard_id>/tiles/<id('tileId'):tile_id>")
def update_tile(dashboard_id, tile_id):
    """Change some fields of a tile (role admin); action ``updated``."""
    caller = principal("admin")
    body = json_body()
    fields = dashboards.parse_tile(body, partial=True)
    return dashboards.update_tile(caller.tenant_id, dashboard_id, tile_id, fields, expected_version(body))


@bp.delete("/dashboards/<id('dashboardId'):dashboard_id>/tiles/<id('tileId'):tile_id>")
def remove_tile(dashboard_id, tile_id):
    """Remove a tile (role admin); action ``removed``."""
    caller = principal("admin")
    return dashboards.remove_tile(caller.tenant_id, dashboard_id, tile_id, expected_version({}))


@bp.put("/dashboards/<id('dashboardId'):dashboard_id>/tiles/order")
def reorder_tiles(dashboard_id):
    """Reorder ``{tileIds: [...]}`` (role admin); action ``reordered`` with the new ``order``."""
    caller = principal("admin")
    body = require_object(json_body())
    tile_ids = body.get("tileIds")
    if not isinstance(tile_ids, list) or not all(is_integer(i) for i in tile_ids):
        raise AppError(errors.VALIDATION_FAILED, "tileIds must be a list of tile ids")
    return dashboards.reorder_tiles(caller.tenant_id, dashboard_id, tile_ids, expected_version(body))
