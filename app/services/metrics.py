"""Metric values: recording them (one or a batch, all or nothing) and reading current values."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Float, String, and_, bindparam, exists, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from app import errors
from app.database import write_connection
from app.errors import AppError
from app.extensions import db
from app.models import CHANGE_METRIC, ChangeLog, Entity, MetricValue
from app.serializers import entity_metrics, ingest_result, metric_values
from app.services.changes import Change, change_committed
from app.services.entities import check_entity_room, find_entity
from app.validation import optional_timestamp, require_id, require_number, require_object


@dataclass(frozen=True, slots=True)
class Registration:
    """How a write treats an entity the tenant does not have (AUTO_REGISTER_ENTITIES and its limits).

    With ``enabled``, a point naming an ``entityType`` (one of ``entity_types``)
    registers it, with no name and no dashboard, in the write's transaction.
    """

    enabled: bool = False
    entity_types: tuple = ()
    max_entities: int | None = None

    @classmethod
    def from_config(cls, config):
        """The registration rules of ``app.config``."""
        return cls(config["AUTO_REGISTER_ENTITIES"], tuple(config["ENTITY_TYPES"]), config["MAX_ENTITIES_PER_TENANT"])


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value to record for one metric of one entity."""

    entity_id: str
    metric_name: str
    value: float
    recorded_at: datetime
    entity_type: str | None = None


def parse_point(payload, max_id_length):
    """Validate one ``{entityId, metricName, value, timestamp?, entityType?}`` object."""
    payload = require_object(payload, what="metric")
    entity_type = payload.get("entityType")
    return MetricPoint(
        entity_id=require_id(payload, "entityId", max_id_length),
        metric_name=require_id(payload, "metricName", max_id_length),
        value=require_number(payload, "value"),
        recorded_at=optional_timestamp(payload, "timestamp"),
        entity_type=require_id(payload, "entityType", max_id_length) if entity_type is not None else None,
    )


# record_metrics runs for every REST write, so it speaks Core to the tables with
# statements built once: SQLAlchemy computes each one's cache key a single time and
# finds its compiled form in the engine's cache, skipping ORM statement compilation.
_entities = Entity.__table__
_change_log = ChangeLog.__table__
_values = MetricValue.__table__
# FOR KEY SHARE on PostgreSQL (nothing on SQLite, whose writers take turns): a removal of
# one of the entities waits for this write, which a move of its dashboard does not.
_ENTITY_TYPES = (
    select(_entities.c.entity_id, _entities.c.entity_type)
    .where(
        _entities.c.tenant_id == bindparam("tenant_id"),
        _entities.c.entity_id.in_(bindparam("entity_ids", expanding=True)),
    )
    .with_for_update(read=True, key_share=True)
)
# The same, with the batch's metric names each entity has already (a row each, or one row with none): one
# statement tells whether the entities are the tenant's and whether the batch adds names.
_ENTITIES_AND_NAMES = (
    select(_entities.c.entity_id, _entities.c.entity_type, _values.c.metric_name)
    .select_from(
        _entities.outerjoin(
            _values,
            and_(
                _values.c.tenant_id == _entities.c.tenant_id,
                _values.c.entity_id == _entities.c.entity_id,
                _values.c.metric_name.in_(bindparam("metric_names", expanding=True)),
            ),
        )
    )
    .where(
        _entities.c.tenant_id == bindparam("tenant_id"),
        _entities.c.entity_id.in_(bindparam("entity_ids", expanding=True)),
    )
    .with_for_update(read=True, key_share=True, of=_entities)
)
# Registration on first write: a concurrent batch registering the same entity makes this a no-op.
_REGISTER_ENTITIES = {
    "postgresql": postgresql.insert(_entities).on_conflict_do_nothing(index_elements=["tenant_id", "entity_id"]),
    "sqlite": sqlite.insert(_entities).on_conflict_do_nothing(index_elements=["tenant_id", "entity_id"]),
}
# The count of an entity's metric names (its primary-key prefix).
_NAME_COUNTS = (
    select(_values.c.entity_id, func.count())
    .where(
        _values.c.tenant_id == bindparam("tenant_id"),
        _values.c.entity_id.in_(bindparam("entity_ids", expanding=True)),
    )
    .group_by(_values.c.entity_id)
)
# One point, the usual REST write, in one statement: its change-log row is inserted only when the entity is the
# tenant's (of the type given, if one is) and already has the metric or room for one more name (locking the entity
# row as _ENTITIES_AND_NAMES does). No row back means one of those failed: record_metrics then takes the general path
# in the same transaction, which names the failure (or registers the entity).
_INSERT_KNOWN_POINT = (
    _change_log.insert()
    .from_select(
        ["tenant_id", "kind", "entity_id", "metric_name", "value", "recorded_at"],
        select(
            bindparam("tenant_id", type_=String),
            bindparam("kind", type_=String),
            _entities.c.entity_id,
            bindparam("metric_name", type_=String),
            bindparam("value", type_=Float),
            bindparam("recorded_at", type_=_change_log.c.recorded_at.type),
        )
        .where(
            _entities.c.tenant_id == bindparam("tenant_id"),
            _entities.c.entity_id == bindparam("entity_id"),
            or_(bindparam("entity_type", type_=String).is_(None), _entities.c.entity_type == bindparam("entity_type")),
            # Not correlated with the entity row: each is one primary-key lookup (or range count), run once, the
            # count only when the name is new (PostgreSQL made the correlated EXISTS a scan of every tenant's rows).
            or_(
                exists().where(
                    _values.c.tenant_id == bindparam("tenant_id"),
                    _values.c.entity_id == bindparam("entity_id"),
                    _values.c.metric_name == bindparam("metric_name"),
                ),
                select(func.count())
                .where(_values.c.tenant_id == bindparam("tenant_id"), _values.c.entity_id == bindparam("entity_id"))
                .scalar_subquery()
                < bindparam("max_names"),
            ),
        )
        .with_for_update(read=True, key_share=True, of=_entities),
    )
    .returning(_change_log.c.seq)
)
# One point on the general path (its entity registered by the write): one INSERT ... RETURNING.
_INSERT_CHANGE = _change_log.insert().returning(_change_log.c.seq)
# A batch on PostgreSQL: the points travel as four arrays, so the statement stays short and its parsed
# and prepared forms are reused (SQLAlchemy's INSERT of n rows is a new statement of 6n parameters that
# psycopg parses anew each time); the rows take their seqs in the order given (ORDER BY ordinality).
_INSERT_CHANGES_POSTGRESQL = text(
    "INSERT INTO change_log (tenant_id, kind, entity_id, metric_name, value, recorded_at)"
    " SELECT :tenant_id, :kind, p.entity_id, p.metric_name, p.value, p.recorded_at"
    " FROM unnest(:entity_ids, :metric_names, :values, :recorded_ats)"
    " WITH ORDINALITY AS p (entity_id, metric_name, value, recorded_at, n) ORDER BY p.n RETURNING seq"
).bindparams(
    bindparam("entity_ids", type_=postgresql.ARRAY(String)),
    bindparam("metric_names", type_=postgresql.ARRAY(String)),
    bindparam("values", type_=postgresql.ARRAY(Float)),
    bindparam("recorded_ats", type_=postgresql.ARRAY(DateTime(timezone=True))),
)
# A batch on SQLite: one executemany (the rows in the order given), then the seq of the last one; the
# write lock the transaction holds since BEGIN IMMEDIATE keeps every other writer out in between.
_INSERT_CHANGES_SQLITE = _change_log.insert()
_LAST_SEQ = select(func.max(_change_log.c.seq))


def parse_points(body, max_batch, max_id_length):
    """Validate a single metric object, ``{"metrics": [...]}`` or a bare list of them."""
    if isinstance(body, dict) and "metrics" in body:
        body = body["metrics"]
    items = body if isinstance(body, list) else [body]
    if not items:
        raise AppError(errors.VALIDATION_FAILED, "no metrics given")
    if len(items) > max_batch:
        raise AppError(errors.PAYLOAD_TOO_LARGE, f"at most {max_batch} metrics per request")
    points = []
    for index, item in enumerate(items):
        try:
            points.append(parse_point(item, max_id_length))
        except AppError as exc:
            prefix = f"metrics[{index}]: " if len(items) > 1 else ""
            raise AppError(exc.error, prefix + exc.message) from None
    return points


def record_metrics(tenant_id, points, max_metrics_per_entity, registration=Registration()):
    """Append ``points`` to the change log in one transaction; return ``{accepted, lastSeq}``.

    Every entity must belong to the tenant (and match ``entityType`` when given),
    else nothing is written and UNKNOWN_ENTITY names the first offender; with
    ``registration`` enabled, an unknown entity named with its ``entityType`` is
    registered instead. A batch that would give an entity more than
    ``max_metrics_per_entity`` distinct metric names is refused whole with
    TOO_MANY_METRICS. The database trigger moves ``metric_values`` to each new value.
    """
    single = len(points) == 1  # the usual REST write: one statement when it passes every check
    with write_connection() as connection:
        last_seq = _insert_known_point(connection, tenant_id, points[0], max_metrics_per_entity) if single else None
        if last_seq is None:
            last_seq = _check_and_insert(connection, tenant_id, points, max_metrics_per_entity, registration)
    # A single point's change is handed to this process's poller with the announcement: it needs no read to
    # deliver it. A batch's rows are read back (their seqs are not all known here).
    change_committed.send(changes=(_metric_change(tenant_id, points[0], last_seq),) if single else ())
    return ingest_result(len(points), last_seq)


def _metric_change(tenant_id, point, seq):
    """The change-log row of ``point`` written at ``seq``, as the poller reads it (``Change``)."""
    return Change(
        seq,
        tenant_id,
        CHANGE_METRIC,
        point.entity_id,
        point.metric_name,
        point.value,
        point.recorded_at,
        dashboard_id=None,
        payload=None,
    )


def _insert_known_point(connection, tenant_id, point, max_metrics_per_entity):
    """Insert one point in one statement if every rule lets it through; return its seq, or None (nothing written)."""
    params = {
        "tenant_id": tenant_id,
        "kind": CHANGE_METRIC,
        "entity_id": point.entity_id,
        "entity_type": point.entity_type,
        "metric_name": point.metric_name,
        "value": point.value,
        "recorded_at": point.recorded_at,
        "max_names": max_metrics_per_entity,
    }
    return connection.execute(_INSERT_KNOWN_POINT, params).scalar_one_or_none()


def _check_and_insert(connection, tenant_id, points, max_metrics_per_entity, registration):
    """Check ``points`` against every rule (registering entities), then insert them; return the last one's seq."""
    wanted = sorted({p.entity_id for p in points})
    params = {"tenant_id": tenant_id, "entity_ids": wanted, "metric_names": sorted({p.metric_name for p in points})}
    types, known_names = {}, set()
    for entity_id, entity_type, metric_name in connection.execute(_ENTITIES_AND_NAMES, params):
        types[entity_id] = entity_type
        if metric_name is not None:
            known_names.add((entity_id, metric_name))
    if registration.enabled and len(types) < len(wanted):
        types.update(_register_entities(connection, tenant_id, points, types, registration))
    for point in points:
        known_type = types.get(point.entity_id)
        if known_type is None or (point.entity_type is not None and point.entity_type != known_type):
            raise AppError(errors.UNKNOWN_ENTITY, f"unknown entity {point.entity_id!r}")
    _check_metric_names(connection, tenant_id, points, known_names, max_metrics_per_entity)
    # In key order, so that concurrent batches lock metric_values rows in one order and never
    # deadlock on PostgreSQL; stable, so a metric given twice keeps its last value.
    ordered = sorted(points, key=lambda p: (p.entity_id, p.metric_name))
    return _insert_changes(connection, tenant_id, ordered)


def _insert_changes(connection, tenant_id, points):
    """Append ``points`` to the change log in their order; return the last one's seq."""
    if len(points) > 1 and connection.dialect.name == "postgresql":
        params = {
            "tenant_id": tenant_id,
            "kind": CHANGE_METRIC,
            "entity_ids": [p.entity_id for p in points],
            "metric_names": [p.metric_name for p in points],
            "values": [p.value for p in points],
            "recorded_ats": [p.recorded_at for p in points],
        }
        return max(connection.execute(_INSERT_CHANGES_POSTGRESQL, params).scalars())
    rows = [
        {
            "tenant_id": tenant_id,
            "kind": CHANGE_METRIC,
            "entity_id": p.entity_id,
            "metric_name": p.metric_name,
            "value": p.value,
            "recorded_at": p.recorded_at,
        }
        for p in points
    ]
    if len(rows) == 1:
        return connection.execute(_INSERT_CHANGE, rows[0]).scalar_one()
    connection.execute(_INSERT_CHANGES_SQLITE, rows)
    return connection.execute(_LAST_SEQ).scalar_one()


def _register_entities(connection, tenant_id, points, known, registration):
    """Register the unknown entities that ``points`` name with an ``entityType``; return their types.

    The first point naming an entity gives its type; a later one naming another
    type is refused by the caller like any mismatch.
    """
    new = {}
    for index, point in enumerate(points):
        if point.entity_id in known or point.entity_type is None or point.entity_id in new:
            continue
        if point.entity_type not in registration.entity_types:
            prefix = f"metrics[{index}]: " if len(points) > 1 else ""
            raise AppError(
                errors.VALIDATION_FAILED, f"{prefix}entityType must be one of {', '.join(registration.entity_types)}"
            )
        new[point.entity_id] = point.entity_type
    if not new:
        return {}
    if registration.max_entities is not None:
        check_entity_room(connection, tenant_id, len(new), registration.max_entities)
    rows = [{"tenant_id": tenant_id, "entity_id": e, "entity_type": t, "name": ""} for e, t in sorted(new.items())]
    connection.execute(_REGISTER_ENTITIES[connection.dialect.name], rows)
    params = {"tenant_id": tenant_id, "entity_ids": sorted(new)}
    return dict(connection.execute(_ENTITY_TYPES, params).all())


def _check_metric_names(connection, tenant_id, points, known_names, limit):
    """Refuse the batch if it would give an entity more than ``limit`` distinct metric names.

    The usual batch writes names the entity has already (``known_names``, pairs of
    entity id and name); only a batch with new names counts the entity's names. Two
    concurrent batches with new names may together pass the limit by what they add.
    """
    new = {(p.entity_id, p.metric_name) for p in points} - known_names
    if not new:
        return
    adding = Counter(entity_id for entity_id, _ in new)
    counts = dict(connection.execute(_NAME_COUNTS, {"tenant_id": tenant_id, "entity_ids": sorted(adding)}).all())
    for entity_id in sorted(adding):
        if counts.get(entity_id, 0) + adding[entity_id] > limit:
            raise AppError(
                errors.TOO_MANY_METRICS,
                f"entity {entity_id!r} would have more than {limit} metric names (MAX_METRICS_PER_ENTITY)",
            )


def current_metrics(tenant_id, entity_id):
    """Return the entity's current values with the time and change-log position of each."""
    entity = find_entity(tenant_id, entity_id)
    rows = db.session.execute(
        select(MetricValue.metric_name, MetricValue.value, MetricValue.recorded_at, MetricValue.seq)
        .where(MetricValue.tenant_id == tenant_id, MetricValue.entity_id == entity_id)
        .order_by(MetricValue.metric_name)
    )
    return entity_metrics(entity, rows)


def current_metrics_by_entity(tenant_id, entity_ids):
    """Return ``{entity_id: {name: {value, timestamp, seq}}}`` for the tenant's ``entity_ids``, in one query.

    Every id asked for is in the answer (``{}`` when it has no values, or is not the tenant's).
    """
    ids = sorted(set(entity_ids))
    rows = {entity_id: [] for entity_id in ids}
    if ids:
        query = (
            select(
                MetricValue.entity_id,
                MetricValue.metric_name,
                MetricValue.value,
                MetricValue.recorded_at,
                MetricValue.seq,
            )
            .where(MetricValue.tenant_id == tenant_id, MetricValue.entity_id.in_(ids))
            .order_by(MetricValue.entity_id, MetricValue.metric_name)
        )
        for entity_id, *row in db.session.execute(query):
            rows[entity_id].append(row)
    return {entity_id: metric_values(entity_rows) for entity_id, entity_rows in rows.items()}
