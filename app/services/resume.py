"""Resuming a subscription from a change-log position: only what changed for the entity after it.

A resume is complete when every change of the entity after ``since_seq`` is
still in the change log (pruning deletes from the oldest row up, so it is when
the oldest row left is at most ``since_seq`` + 1), the entity showed the same
dashboard all along (no entity change after ``since_seq``), and there are at
most ``max_changes`` of them. Metric values come from ``metric_values`` (the
newest of each metric whose seq is after ``since_seq``), layout changes from
the change log, in order, as they were sent.
"""

from sqlalchemy import func, select, text

from app.extensions import db
from app.models import CHANGE_DASHBOARD, CHANGE_ENTITY, ChangeLog, MetricValue
from app.serializers import dashboard_resume, dashboard_update
from app.services.changes import Change, columns
from app.services.entities import find_entity


def resume_entity(tenant_id, entity_id, entity_type, since_seq, head, max_changes):
    """``dashboard:resume`` of the entity after ``since_seq``, or None when it cannot be complete.

    Runs in the caller's database snapshot, after the poller (whose highest seq
    read is ``head``) has delivered every change the snapshot holds: so it sends
    every change after ``since_seq`` in the snapshot (also those above a gap,
    delivered before the socket joined), and the live stream brings the rest.
    Raises UNKNOWN_ENTITY like a subscribe.
    """
    entity = find_entity(tenant_id, entity_id, entity_type)
    if since_seq > head:
        return None  # ahead of the log: not a position this server has reached
    if since_seq < head:
        oldest = db.session.scalar(select(func.min(ChangeLog.seq)))
        if oldest is None or oldest > since_seq + 1:
            return None  # pruned past it
    later = (text("change_log.kind <> 'metric'"), ChangeLog.seq > since_seq)  # the partial index of non-metric rows
    moved = db.session.scalar(
        select(ChangeLog.seq)
        .where(*later, ChangeLog.kind == CHANGE_ENTITY)
        .where(ChangeLog.tenant_id == tenant_id, ChangeLog.entity_id == entity_id)
        .limit(1)
    )
    if moved is not None:
        return None  # another dashboard, or none, in between
    updates = []
    if entity.dashboard_id is not None:
        rows = db.session.execute(
            select(*columns())
            .where(*later, ChangeLog.kind == CHANGE_DASHBOARD, ChangeLog.dashboard_id == entity.dashboard_id)
            .order_by(ChangeLog.seq)
            .limit(max_changes + 1)
        )
        updates = [data for data in (dashboard_update(Change(*row)) for row in rows) if data is not None]
    metrics = dict(
        db.session.execute(
            select(MetricValue.metric_name, MetricValue.value)
            .where(MetricValue.tenant_id == tenant_id, MetricValue.entity_id == entity_id, MetricValue.seq > since_seq)
            .limit(max_changes + 1)
        ).all()
    )
    if len(updates) + len(metrics) > max_changes:
        return None
    return dashboard_resume(entity, since_seq, metrics, updates)
