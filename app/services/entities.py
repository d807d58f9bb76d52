"""Entities of a tenant: lookup, registration and their dashboard snapshot."""

from sqlalchemy import select

from app import errors
from app.database import write_transaction
from app.errors import AppError
from app.extensions import db
from app.models import Dashboard, Entity, MetricValue, Tile
from app.serializers import dashboard_initial, entity_to_dict, tile_to_dict
from app.services.dashboards import find_dashboard


def find_entity(tenant_id, entity_id, entity_type=None):
    """Return the tenant's entity, or raise UNKNOWN_ENTITY.

    An entity of another tenant, or of another type than asked, is reported
    exactly like one that does not exist.
    """
    query = select(Entity).where(Entity.tenant_id == tenant_id, Entity.entity_id == entity_id)
    entity = db.session.scalar(query)
    if entity is None or (entity_type is not None and entity.entity_type != entity_type):
        raise AppError(errors.UNKNOWN_ENTITY, f"unknown entity {entity_id!r}")
    return entity


def list_entities(tenant_id):
    """Return the tenant's entities as dicts, ordered by entity id."""
    query = select(Entity).where(Entity.tenant_id == tenant_id).order_by(Entity.entity_id)
    return [entity_to_dict(e) for e in db.session.scalars(query)]


def entities_of_dashboard(tenant_id, dashboard_id):
    """Return the tenant's entities that show ``dashboard_id``, as dicts ordered by entity id."""
    query = (
        select(Entity)
        .where(Entity.tenant_id == tenant_id, Entity.dashboard_id == dashboard_id)
        .order_by(Entity.entity_id)
    )
    return [entity_to_dict(e) for e in db.session.scalars(query)]


def register_entity(tenant_id, entity_id, entity_type, name, dashboard_id):
    """Create the entity, or update its name (None keeps it); return ``(entity dict, created)``.

    The dashboard is chosen when the entity is created; asking for another one
    later is a CONFLICT, since live subscribers could not be told.
    """
    with write_transaction() as session:
        if dashboard_id is not None:
            find_dashboard(session, tenant_id, dashboard_id)
        entity = session.scalar(select(Entity).where(Entity.tenant_id == tenant_id, Entity.entity_id == entity_id))
        if entity is None:
            entity = Entity(
                tenant_id=tenant_id,
                entity_id=entity_id,
                entity_type=entity_type,
                name=name or "",
                dashboard_id=dashboard_id,
            )
            session.add(entity)
            created = True
        else:
            if entity.entity_type != entity_type:
                raise AppError(errors.CONFLICT, f"entity {entity_id!r} is of type {entity.entity_type!r}")
            if dashboard_id is not None and entity.dashboard_id != dashboard_id:
                raise AppError(
                    errors.CONFLICT, f"entity {entity_id!r}: the dashboard of an entity is chosen when it is created"
                )
            if name is not None:
                entity.name = name
            created = False
        session.flush()
        result = entity_to_dict(entity)
    return result, created


def entity_snapshot(tenant_id, entity_id, entity_type):
    """Return the entity's ``dashboard:initial`` (``seq`` left for the caller), or raise UNKNOWN_ENTITY."""
    entity = find_entity(tenant_id, entity_id, entity_type)
    metrics = dict(
        db.session.execute(
            select(MetricValue.metric_name, MetricValue.value).where(
                MetricValue.tenant_id == tenant_id, MetricValue.entity_id == entity_id
            )
        ).all()
    )
    tiles = []
    version = None
    if entity.dashboard_id is not None:
        query = select(Tile).where(Tile.dashboard_id == entity.dashboard_id).order_by(Tile.position)
        tiles = [tile_to_dict(t) for t in db.session.scalars(query)]
        version = db.session.scalar(select(Dashboard.version).where(Dashboard.id == entity.dashboard_id))
    return dashboard_initial(entity, version, metrics, tiles)
