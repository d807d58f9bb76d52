"""Query and Mutation: each resolver validates, calls the service function its REST twin calls, and wraps the result.

Roles are the REST twin's: reads need any valid token, ``recordMetrics`` ingest or
admin, every other mutation admin. Another tenant's entity or dashboard reads as
``null``; a mutation naming one fails as REST's 404 does (ANALYTICS_1101 / 1201).
"""

from typing import Annotated

import strawberry

from app import errors
from app.errors import AppError
from app.graphql.types import (
    Dashboard,
    DashboardDeletion,
    Entity,
    EntityRegistration,
    IngestResult,
    LayoutChange,
    MetricInput,
    TileInput,
    TilePatch,
)
from app.serializers import entity_to_dict
from app.services import dashboards, entities
from app.services import metrics as metrics_service
from app.validation import optional_text, require_choice, require_id


def _caller(info, *roles):
    """The request's Principal; with ``roles``, one of them is required (PERMISSION_DENIED, as in REST)."""
    caller = info.context.caller
    if roles and not caller.has_any_role(*roles):
        raise AppError(errors.PERMISSION_DENIED, f"requires role {' or '.join(roles)}")
    return caller


def _writer(info, *roles):
    """``_caller`` for a mutation: what the request read before may change, so it is read again after."""
    caller = _caller(info, *roles)
    info.context.batch.forget()
    return caller


def _entity_id(info, value, field="entityId"):
    return require_id({field: value}, field, info.context.config["MAX_ID_LENGTH"])


def _page(info, limit):
    """The page size: ``limit`` (1 to GRAPHQL_MAX_PAGE), GRAPHQL_MAX_PAGE when not given."""
    largest = info.context.limits.max_page
    if limit is None:
        return largest
    if not 1 <= limit <= largest:
        raise AppError(errors.VALIDATION_FAILED, f"limit must be between 1 and {largest}")
    return limit


def _missing_as_none(read, *missing):
    """``read()``, or None when it raises one of the ``missing`` catalogue entries (another tenant's, or none)."""
    try:
        return read()
    except AppError as exc:
        if exc.error in missing:
            return None
        raise


Limit = Annotated[int | None, strawberry.argument(description="At most this many (default GRAPHQL_MAX_PAGE).")]
ExpectedVersion = Annotated[
    int | None, strawberry.argument(description="Refuse (ANALYTICS_1202) unless the dashboard is at this version.")
]


@strawberry.type
class Query:
    @strawberry.field(description="The tenant's entities ordered by `entityId`, a page at a time (`after`: the last).")
    def entities(self, info: strawberry.Info, limit: Limit = None, after: str | None = None) -> list[Entity]:
        caller = _caller(info)
        if after is not None:
            after = _entity_id(info, after, "after")
        rows = entities.list_entities(caller.tenant_id, _page(info, limit), after)
        return [Entity.from_dict(row, info.context.batch) for row in rows]

    @strawberry.field(description="One of the tenant's entities; null when it has none such.")
    def entity(self, info: strawberry.Info, entity_id: str) -> Entity | None:
        caller = _caller(info)
        entity_id = _entity_id(info, entity_id)
        found = _missing_as_none(lambda: entities.find_entity(caller.tenant_id, entity_id), errors.UNKNOWN_ENTITY)
        return Entity.from_dict(entity_to_dict(found), info.context.batch) if found else None

    @strawberry.field(description="The tenant's dashboards, oldest first, a page at a time (`after`: the last id).")
    def dashboards(self, info: strawberry.Info, limit: Limit = None, after: int | None = None) -> list[Dashboard]:
        caller = _caller(info)
        rows = dashboards.list_dashboards(caller.tenant_id, _page(info, limit), after)
        return [Dashboard.from_dict(row, info.context.batch) for row in rows]

    @strawberry.field(description="One of the tenant's dashboards with its tiles; null when it has none such.")
    def dashboard(self, info: strawberry.Info, id: int) -> Dashboard | None:
        caller = _caller(info)
        found = _missing_as_none(lambda: dashboards.get_dashboard(caller.tenant_id, id), errors.NOT_FOUND)
        return Dashboard.from_dict(found, info.context.batch) if found else None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Record values, all or none (`POST /api/v1/metrics`; role ingest or admin).")
    def record_metrics(self, info: strawberry.Info, metrics: list[MetricInput]) -> IngestResult:
        caller = _writer(info, "ingest", "admin")
        config = info.context.config
        points = metrics_service.parse_points(
            {"metrics": [m.payload() for m in metrics]}, config["MAX_INGEST_BATCH"], config["MAX_ID_LENGTH"]
        )
        registration = metrics_service.Registration.from_config(config)
        result = metrics_service.record_metrics(
            caller.tenant_id, points, config["MAX_METRICS_PER_ENTITY"], registration
        )
        return IngestResult(accepted=result["accepted"], last_seq=result["lastSeq"])

    @strawberry.mutation(description="Create a dashboard with `tiles`, or with a copy of `copyOf`'s (role admin).")
    def create_dashboard(
        self,
        info: strawberry.Info,
        name: str,
        tiles: list[TileInput] | None = None,
        copy_of: int | None = None,
    ) -> Dashboard:
        caller = _writer(info, "admin")
        name = require_id({"name": name}, "name", 200)
        if copy_of is not None:
            if tiles is not None:
                raise AppError(errors.VALIDATION_FAILED, "give tiles or copyOf, not both")
            created = dashboards.create_dashboard(caller.tenant_id, name, [], copy_of=copy_of)
        else:
            created = dashboards.create_dashboard(
                caller.tenant_id, name, dashboards.parse_tiles([t.payload() for t in tiles or []])
            )
        return Dashboard.from_dict(created, info.context.batch)

    @strawberry.mutation(description="Rename a dashboard; its version stays (role admin).")
    def rename_dashboard(
        self, info: strawberry.Info, id: int, name: str, expected_version: ExpectedVersion = None
    ) -> Dashboard:
        caller = _writer(info, "admin")
        name = require_id({"name": name}, "name", 200)
        renamed = dashboards.rename_dashboard(caller.tenant_id, id, name, expected_version)
        return Dashboard.from_dict(renamed, info.context.batch)

    @strawberry.mutation(description="Detach a dashboard from its entities and delete it (role admin).")
    def delete_dashboard(
        self, info: strawberry.Info, id: int, expected_version: ExpectedVersion = None
    ) -> DashboardDeletion:
        caller = _writer(info, "admin")
        deleted = dashboards.delete_dashboard(caller.tenant_id, id, expected_version)
        return DashboardDeletion(id=deleted["id"], detached=deleted["detached"])

    @strawberry.mutation(description="Append a tile; subscribers get `dashboard:update` `added` (role admin).")
    def add_tile(
        self, info: strawberry.Info, dashboard_id: int, tile: TileInput, expected_version: ExpectedVersion = None
    ) -> LayoutChange:
        caller = _writer(info, "admin")
        fields = dashboards.parse_tile(tile.payload())
        return LayoutChange.from_dict(dashboards.add_tile(caller.tenant_id, dashboard_id, fields, expected_version))

    @strawberry.mutation(description="Change the fields of a tile given in `tile`; action `updated` (role admin).")
    def update_tile(
        self,
        info: strawberry.Info,
        dashboard_id: int,
        tile_id: int,
        tile: TilePatch,
        expected_version: ExpectedVersion = None,
    ) -> LayoutChange:
        caller = _writer(info, "admin")
        fields = dashboards.parse_tile(tile.payload(), partial=True)
        change = dashboards.update_tile(caller.tenant_id, dashboard_id, tile_id, fields, expected_version)
        return LayoutChange.from_dict(change)

    @strawberry.mutation(description="Remove a tile; action `removed` (role admin).")
    def remove_tile(
        self, info: strawberry.Info, dashboard_id: int, tile_id: int, expected_version: ExpectedVersion = None
    ) -> LayoutChange:
        caller = _writer(info, "admin")
        change = dashboards.remove_tile(caller.tenant_id, dashboard_id, tile_id, expected_version)
        return LayoutChange.from_dict(change)

    @strawberry.mutation(description="Put the tiles in the order of `tileIds`, each once; action `reordered` (admin).")
    def reorder_tiles(
        self,
        info: strawberry.Info,
        dashboard_id: int,
        tile_ids: list[int],
        expected_version: ExpectedVersion = None,
    ) -> LayoutChange:
        caller = _writer(info, "admin")
        change = dashboards.reorder_tiles(caller.tenant_id, dashboard_id, tile_ids, expected_version)
        return LayoutChange.from_dict(change)

    @strawberry.mutation(
        description="Register an entity, or change its name or dashboard (`PUT /api/v1/entities/{id}`; role admin). "
        "`dashboardId` left out keeps the dashboard, null detaches it."
    )
    def register_entity(
        self,
        info: strawberry.Info,
        entity_id: str,
        entity_type: str,
        name: str | None = None,
        dashboard_id: int | None = strawberry.UNSET,
    ) -> EntityRegistration:
        caller = _writer(info, "admin")
        config = info.context.config
        payload = {"entityId": entity_id, "entityType": entity_type, "name": name}
        entity, created = entities.register_entity(
            caller.tenant_id,
            _entity_id(info, entity_id),
            require_choice(payload, "entityType", config["ENTITY_TYPES"]),
            optional_text(payload, "name", 200, default=None),
            entities.KEEP if dashboard_id is strawberry.UNSET else dashboard_id,
            max_entities=config["MAX_ENTITIES_PER_TENANT"],
        )
        return EntityRegistration(entity=Entity.from_dict(entity, info.context.batch), created=created)

    @strawberry.mutation(
        description="Show `dashboardId` on the entity, or none with null; subscribers get `replaced` (role admin)."
    )
    def attach_dashboard(self, info: strawberry.Info, entity_id: str, dashboard_id: int | None) -> Entity:
        caller = _writer(info, "admin")
        entity = entities.attach_dashboard(caller.tenant_id, _entity_id(info, entity_id), dashboard_id)
        return Entity.from_dict(entity, info.context.batch)

    @strawberry.mutation(description="Remove an entity and its values; subscribers get `error` 1101 (role admin).")
    def delete_entity(self, info: strawberry.Info, entity_id: str) -> bool:
        caller = _writer(info, "admin")
        entities.delete_entity(caller.tenant_id, _entity_id(info, entity_id))
        return True
