"""The change log: appending layout changes, reading committed changes in ``seq`` order."""

from dataclasses import dataclass
from datetime import datetime

from blinker import Namespace
from sqlalchemy import bindparam, or_, select, text, tuple_

from app.extensions import db
from app.models import CHANGE_DASHBOARD, CHANGE_ENTITY, ChangeLog, Entity, MetricValue

_signals = Namespace()

#: Sent after a transaction that appended to the change log has committed, so
#: that a local poller can look at once instead of at its next tick.
change_committed = _signals.signal("change-committed")

#: PostgreSQL channel of the change log's NOTIFY (migration 0002 sends on it).
NOTIFY_CHANNEL = "analytics_change_log"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change-log row, as plain data."""

    seq: int
    tenant_id: str
    kind: str
    entity_id: str | None
    metric_name: str | None
    value: float | None
    recorded_at: datetime
    dashboard_id: int | None
    payload: dict | None


def columns():
    """The change-log columns a :class:`Change` is made of, in its order."""
    return (
        ChangeLog.seq,
        ChangeLog.tenant_id,
        ChangeLog.kind,
        ChangeLog.entity_id,
        ChangeLog.metric_name,
        ChangeLog.value,
        ChangeLog.recorded_at,
        ChangeLog.dashboard_id,
        ChangeLog.payload,
    )


def append_dashboard_change(session, tenant_id, dashboard_id, payload):
    """Add a layout change to the current transaction."""
    session.add(ChangeLog(tenant_id=tenant_id, kind=CHANGE_DASHBOARD, dashboard_id=dashboard_id, payload=payload))


def append_entity_change(session, tenant_id, entity_id, payload):
    """Add an entity change (``serializers.entity_replaced`` / ``entity_deleted``) to the current transaction."""
    session.add(ChangeLog(tenant_id=tenant_id, kind=CHANGE_ENTITY, entity_id=entity_id, payload=payload))


@dataclass(frozen=True, slots=True)
class EntityMove:
    """An entity change as the layout fan-out needs it: at ``seq`` the entity left ``previous`` for ``current``."""

    seq: int
    tenant_id: str
    entity_id: str
    previous: int | None
    current: int | None


def as_move(seq, tenant_id, entity_id, payload):
    """The :class:`EntityMove` of an entity change's row."""
    payload = payload if isinstance(payload, dict) else {}
    return EntityMove(seq, tenant_id, entity_id, payload.get("previousDashboardId"), payload.get("dashboardId"))


def moves_after(after_seq):
    """Return the entity changes with ``seq > after_seq`` as :class:`EntityMove`, oldest first.

    Reads the partial index on non-metric rows (its condition is spelled out so that
    both databases use it), not the metric rows in between.
    """
    columns = (ChangeLog.seq, ChangeLog.tenant_id, ChangeLog.entity_id, ChangeLog.payload)
    query = (
        select(*columns)
        .where(text("change_log.kind <> 'metric'"), ChangeLog.kind == CHANGE_ENTITY, ChangeLog.seq > after_seq)
        .order_by(ChangeLog.seq)
    )
    return [as_move(*row) for row in db.session.execute(query)]


# The poller's query, run at every tick: built once, so that SQLAlchemy finds its compiled form in the engine's
# cache without building the statement and its cache key again, and run on the session's connection as Core
# (the ORM's execution adds nothing to rows of plain columns). Half the CPU of an idle tick went to those.
_log = ChangeLog.__table__
_AFTER = select(*(_log.c[column.key] for column in columns())).order_by(_log.c.seq).limit(bindparam("limit"))
_CHANGES_AFTER = _AFTER.where(_log.c.seq > bindparam("after_seq"))
_CHANGES_AFTER_OR_MISSING = _AFTER.where(
    or_(_log.c.seq > bindparam("after_seq"), _log.c.seq.in_(bindparam("missing_seqs", expanding=True)))
)


def fetch_changes(after_seq, missing_seqs, limit):
    """Return committed changes with ``seq > after_seq`` or ``seq in missing_seqs``, oldest first."""
    params = {"after_seq": after_seq, "limit": limit}
    query = _CHANGES_AFTER
    if missing_seqs:
        params["missing_seqs"] = sorted(missing_seqs)
        query = _CHANGES_AFTER_OR_MISSING
    return [Change(*row) for row in db.session.connection().execute(query, params)]


def latest_seq():
    """Return the highest ``seq`` in the change log, 0 when it is empty."""
    return db.session.scalar(select(db.func.max(ChangeLog.seq))) or 0


def missing_below(head, window):
    """Return the seqs in ``(head - window, head]`` that no committed row holds.

    On PostgreSQL a transaction that took its seq before ``head`` was written may
    still commit: a poller starting at ``head`` waits for these like any gap.
    """
    floor = max(head - window, 0)
    present = set(db.session.scalars(select(ChangeLog.seq).where(ChangeLog.seq > floor, ChangeLog.seq <= head)))
    return [seq for seq in range(floor + 1, head + 1) if seq not in present]


def current_seqs(keys):
    """Map each ``(tenant_id, entity_id, metric_name)`` in ``keys`` to the seq of its current value."""
    if not keys:
        return {}
    key = tuple_(MetricValue.tenant_id, MetricValue.entity_id, MetricValue.metric_name)
    rows = db.session.execute(
        select(MetricValue.tenant_id, MetricValue.entity_id, MetricValue.metric_name, MetricValue.seq).where(
            key.in_(sorted(keys))
        )
    )
    return {(tenant, entity, metric): seq for tenant, entity, metric, seq in rows}


def entities_using(dashboard_ids):
    """Map each dashboard id to the ``(tenant_id, entity_id)`` pairs of the entities that use it."""
    if not dashboard_ids:
        return {}
    rows = db.session.execute(
        select(Entity.dashboard_id, Entity.tenant_id, Entity.entity_id).where(
            Entity.dashboard_id.in_(sorted(dashboard_ids))
        )
    )
    users = {}
    for dashboard_id, tenant_id, entity_id in rows:
        users.setdefault(dashboard_id, []).append((tenant_id, entity_id))
    return users


def current_values(tenant_id, entity_id, metric_names):
    """``{metricName: value}`` of the entity's current values among ``metric_names``."""
    rows = db.session.execute(
        select(MetricValue.metric_name, MetricValue.value).where(
            MetricValue.tenant_id == tenant_id,
            MetricValue.entity_id == entity_id,
            MetricValue.metric_name.in_(sorted(set(metric_names))),
        )
    )
    return dict(rows.all())
