"""Entities of a tenant: lookup, registration, their dashboard (attach, replace, detach), removal, snapshot.

Every change of which dashboard an entity shows, and its removal, appends an
entity change to the change log in the same transaction, so every worker and
node tells the entity's subscribers once, in ``seq`` order with everything else.

Lock order on PostgreSQL, kept by every writer so that none waits for another
in a circle: dashboard rows (by id) before entity rows. A layout change locks
its dashboard only; a move locks the entity's old and new dashboards, then the
entity (``FOR NO KEY UPDATE``, which metric writes sharing the entity's key lock
do not wait for; a removal's ``FOR UPDATE`` does). Since the dashboards to lock
are read before the entity is, a move that finds the entity moved meanwhile
starts again.
"""

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError

from app import errors
from app.database import write_transaction
from app.errors import AppError
from app.extensions import db
from app.models import Dashboard, Entity, MetricPoint, MetricRollup, MetricValue, Tile
from app.serializers import dashboard_initial, entity_deleted, entity_replaced, entity_to_dict, tile_to_dict
from app.services.changes import append_entity_change, change_committed
from app.validation import is_row_id

#: ``register_entity``'s ``dashboard_id`` when the request does not name one: the entity keeps its dashboard.
KEEP = object()


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


def list_entities(tenant_id, limit=None, after=None):
    """Return the tenant's entities as dicts, ordered by entity id.

    With ``limit``, at most that many; with ``after`` (an entity id), only those after it: one page.
    """
    query = select(Entity).where(Entity.tenant_id == tenant_id).order_by(Entity.entity_id)
    if after is not None:
        query = query.where(Entity.entity_id > after)
    if limit is not None:
        query = query.limit(limit)
    return [entity_to_dict(e) for e in db.session.scalars(query)]


def entities_of_dashboard(tenant_id, dashboard_id):
    """Return the tenant's entities that show ``dashboard_id``, as dicts ordered by entity id."""
    query = (
        select(Entity)
        .where(Entity.tenant_id == tenant_id, Entity.dashboard_id == dashboard_id)
        .order_by(Entity.entity_id)
    )
    return [entity_to_dict(e) for e in db.session.scalars(query)]


#: The first key of the PostgreSQL advisory lock that registrations of one tenant take turns on.
REGISTRATION_LOCK = 0x414E0001


def check_entity_room(session, tenant_id, adding, limit):
    """Refuse with TOO_MANY_ENTITIES when ``adding`` new entities would give the tenant more than ``limit``.

    On PostgreSQL the tenant's registrations take turns (a transaction-scoped
    advisory lock) from here to their commit, so that concurrent ones cannot
    together pass the limit; SQLite writers take turns anyway.
    """
    # ``session`` is a Session (PUT, the admin page) or a Core Connection (a metric write).
    dialect = session.dialect if hasattr(session, "dialect") else session.get_bind().dialect
    if dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key, hashtext(:tenant))"),
            {"key": REGISTRATION_LOCK, "tenant": tenant_id},
        )
    count = session.scalar(select(func.count()).select_from(Entity).where(Entity.tenant_id == tenant_id))
    if count + adding > limit:
        raise AppError(errors.TOO_MANY_ENTITIES, f"a tenant has at most {limit} entities (MAX_ENTITIES_PER_TENANT)")


class _Raced(Exception):
    """The entity changed between reading it and locking it (PostgreSQL): start the transaction again."""


#: Transactions started again after a race before the caller is told CONFLICT.
RACE_ATTEMPTS = 3


def _retried(work):
    """Run ``work()`` (one whole transaction), again when it raced with another writer of the entity."""
    for _ in range(RACE_ATTEMPTS):
        try:
            return work()
        except _Raced:
            continue
    raise AppError(errors.CONFLICT, "the entity was changed by someone else at the same moment; try again")


def _lock_dashboards(session, tenant_id, dashboard_ids):
    """Row-lock the tenant's dashboards among ``dashboard_ids`` in id order; return them by id."""
    ids = sorted({i for i in dashboard_ids if i is not None})
    if not ids:
        return {}
    query = (
        select(Dashboard)
        .where(Dashboard.tenant_id == tenant_id, Dashboard.id.in_(ids))
        .order_by(Dashboard.id)
        .with_for_update()
    )
    return {dashboard.id: dashboard for dashboard in session.scalars(query)}


def _lock_entity(session, tenant_id, entity_id, dashboard_ids=(), removing=False):
    """Lock the entity's dashboard and ``dashboard_ids``, then the entity; return ``(entity or None, dashboards)``.

    A move takes a lock that metric writes of the entity do not wait for; a
    removal (``removing``) one that waits for them. Raises _Raced when the
    entity shows another dashboard, or exists now, by the time it is locked.
    """
    where = (Entity.tenant_id == tenant_id, Entity.entity_id == entity_id)
    seen = session.execute(select(Entity.id, Entity.dashboard_id).where(*where)).first()
    dashboards = _lock_dashboards(session, tenant_id, (seen.dashboard_id if seen else None, *dashboard_ids))
    entity = session.scalar(select(Entity).where(*where).with_for_update(key_share=not removing))
    if (entity is None) != (seen is None) or (entity is not None and entity.dashboard_id != seen.dashboard_id):
        raise _Raced
    return entity, dashboards


def _move(session, entity, dashboard):
    """Show ``dashboard`` (None: no dashboard) on ``entity`` and log it; return whether anything changed.

    The caller holds the locks of both dashboards and of the entity.
    """
    new_id = dashboard.id if dashboard is not None else None
    if entity.dashboard_id == new_id:
        return False
    previous = entity.dashboard_id
    entity.dashboard_id = new_id
    tiles, version = [], None
    if dashboard is not None:
        tiles = [tile_to_dict(t) for t in dashboard.tiles]
        version = dashboard.version
    append_entity_change(session, entity.tenant_id, entity.entity_id, entity_replaced(previous, new_id, version, tiles))
    return True


def _dashboard_named(dashboards, dashboard_id):
    """The locked dashboard ``dashboard_id`` (None for None), or NOT_FOUND when the tenant has no such dashboard."""
    if dashboard_id is None:
        return None
    if dashboard_id not in dashboards:
        raise AppError(errors.NOT_FOUND, f"unknown dashboard {dashboard_id}")
    return dashboards[dashboard_id]


def _wanted(dashboard_id):
    """The dashboard ids to lock for ``dashboard_id`` (KEEP, None or an id); NOT_FOUND for a malformed one."""
    if dashboard_id is KEEP or dashboard_id is None:
        return ()
    if not is_row_id(dashboard_id):
        raise AppError(errors.NOT_FOUND, f"unknown dashboard {dashboard_id}")
    return (dashboard_id,)


def register_entity(tenant_id, entity_id, entity_type, name, dashboard_id=KEEP, max_entities=None):
    """Create the entity, or update it; return ``(entity dict, created)``.

    ``name`` None keeps the name. ``dashboard_id``: KEEP keeps the dashboard, an
    id shows that dashboard, None shows none; subscribers of an existing entity
    get ``dashboard:update`` action ``replaced``. All of it or nothing happens.
    """
    wanted = _wanted(dashboard_id)

    def work():
        with write_transaction() as session:
            entity, dashboards = _lock_entity(session, tenant_id, entity_id, wanted)
            dashboard = None if dashboard_id is KEEP else _dashboard_named(dashboards, dashboard_id)
            if entity is None:
                if max_entities is not None:
                    check_entity_room(session, tenant_id, 1, max_entities)
                entity = Entity(
                    tenant_id=tenant_id,
                    entity_id=entity_id,
                    entity_type=entity_type,
                    name=name or "",
                    dashboard_id=dashboard.id if dashboard is not None else None,
                )
                session.add(entity)
                try:
                    session.flush()
                except IntegrityError:  # registered by a concurrent request meanwhile (PostgreSQL)
                    raise _Raced from None
                return entity_to_dict(entity), True, False
            if entity.entity_type != entity_type:
                raise AppError(errors.CONFLICT, f"entity {entity_id!r} is of type {entity.entity_type!r}")
            if name is not None:
                entity.name = name
            moved = dashboard_id is not KEEP and _move(session, entity, dashboard)
            session.flush()
            return entity_to_dict(entity), False, moved

    result, created, moved = _retried(work)
    if moved:
        change_committed.send()
    return result, created


def attach_dashboard(tenant_id, entity_id, dashboard_id):
    """Show ``dashboard_id`` (None: no dashboard) on the tenant's entity; return the entity dict.

    Raises UNKNOWN_ENTITY or NOT_FOUND (the dashboard); subscribers get ``replaced``.
    """
    wanted = _wanted(dashboard_id)

    def work():
        with write_transaction() as session:
            entity, dashboards = _lock_entity(session, tenant_id, entity_id, wanted)
            if entity is None:
                raise AppError(errors.UNKNOWN_ENTITY, f"unknown entity {entity_id!r}")
            moved = _move(session, entity, _dashboard_named(dashboards, dashboard_id))
            session.flush()
            return entity_to_dict(entity), moved

    result, moved = _retried(work)
    if moved:
        change_committed.send()
    return result


def delete_entity(tenant_id, entity_id):
    """Remove the tenant's entity, its current values and history; its subscribers get ``error`` ANALYTICS_1101.

    Raises UNKNOWN_ENTITY. Its change-log rows stay (the log is a history).
    """

    def work():
        with write_transaction() as session:
            entity, _ = _lock_entity(session, tenant_id, entity_id, removing=True)
            if entity is None:
                raise AppError(errors.UNKNOWN_ENTITY, f"unknown entity {entity_id!r}")
            for table in (MetricValue, MetricPoint, MetricRollup):  # its values and their history
                session.execute(delete(table).where(table.tenant_id == tenant_id, table.entity_id == entity_id))
            session.delete(entity)
            append_entity_change(session, tenant_id, entity_id, entity_deleted(entity.dashboard_id))

    _retried(work)
    change_committed.send()


def detach_all(session, tenant_id, dashboard_id):
    """Show no dashboard on every entity of the tenant that shows ``dashboard_id``, which the caller has locked.

    Returns their entity ids, ordered; each entity's subscribers get ``replaced`` with no dashboard.
    """
    query = (
        select(Entity)
        .where(Entity.tenant_id == tenant_id, Entity.dashboard_id == dashboard_id)
        .order_by(Entity.id)
        .with_for_update(key_share=True)
    )
    entities = list(session.scalars(query))
    for entity in entities:
        _move(session, entity, None)
    session.flush()  # before the caller deletes the dashboard they referred to
    return sorted(entity.entity_id for entity in entities)


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
