"""Retention: pruning raw points, rollups and the change log in bounded batches, one process at a time.

Raw points go ``HISTORY_RETENTION`` after their timestamp, rollups
``ROLLUP_RETENTION`` after their minute, change-log rows ``CHANGE_LOG_RETENTION``
after they were the newest (``change_log_marks``, one mark per run), but never a
row above the lowest position any live poller reports (``poller_positions``):
a poller behind, or waiting for a gap, keeps everything it has not delivered.
Current values (``metric_values``) are never touched.

Each batch is its own short transaction, and ``pause(took)`` runs between
batches (the worker sleeps there at least as long as the batch took), so
writers and pollers wait at most one batch and pruning takes at most half of
the database's time. On PostgreSQL the run holds a session advisory lock; on SQLite
the ``retention`` row of ``maintenance_leases``: the other processes skip
their turn meanwhile.
"""

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import delete, func, literal_column, select, text, tuple_, update

from app.database import write_transaction
from app.extensions import db
from app.models import ChangeLog, ChangeLogMark, MaintenanceLease, MetricPoint, MetricRollup, PollerPosition

log = logging.getLogger(__name__)

#: The PostgreSQL advisory lock key of retention runs ("AN" + 2).
ADVISORY_KEY = 0x414E0002
LEASE = "retention"
#: How long a SQLite lease holds when its holder dies without letting go.
LEASE_SECONDS = 600.0
#: Rows per delete statement.
BATCH_ROWS = 1000
#: A poller position is valid for this many of its reporter's report intervals (then the process is gone).
STALE_INTERVALS = 5


@dataclass(frozen=True, slots=True)
class Retention:
    """Retention settings in seconds (from ``app.config``)."""

    history: float
    rollups: float
    change_log: float
    interval: float

    @classmethod
    def from_config(cls, config):
        """The settings of ``app.config``."""
        return cls(
            config["HISTORY_RETENTION"],
            config["ROLLUP_RETENTION"],
            config["CHANGE_LOG_RETENTION"],
            config["RETENTION_INTERVAL"],
        )


def report_position(process, position, expires_at):
    """Record how far this process's poller has delivered the change log, until ``expires_at`` (Unix time).

    A process reports every few seconds, each report valid for STALE_INTERVALS of
    its report interval: a position not renewed by then is a process gone.
    """
    with write_transaction() as session:
        row = session.get(PollerPosition, process)
        if row is None:
            session.add(PollerPosition(process=process, position=position, expires_at=expires_at))
        else:
            row.position, row.expires_at = position, expires_at


def forget_position(process):
    """This process stops: its position no longer holds rows back."""
    with write_transaction() as session:
        session.execute(delete(PollerPosition).where(PollerPosition.process == process))


@contextlib.contextmanager
def single_run(holder, now):
    """Yield True when this process may prune now (no other run holds the lock), else False."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            got = connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            connection.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                    connection.commit()
        return
    with write_transaction() as session:
        claimed = session.execute(
            update(MaintenanceLease)
            .where(
                MaintenanceLease.name == LEASE,
                (MaintenanceLease.holder == holder) | (MaintenanceLease.expires_at < now),
            )
            .values(holder=holder, expires_at=now + LEASE_SECONDS)
        ).rowcount
    try:
        yield claimed == 1
    finally:
        if claimed == 1:
            with write_transaction() as session:
                session.execute(
                    update(MaintenanceLease)
                    .where(MaintenanceLease.name == LEASE, MaintenanceLease.holder == holder)
                    .values(expires_at=0.0)
                )


def prune(settings, now, dry_run=False, pause=lambda took: None, batch=BATCH_ROWS):
    """Prune what retention lets go; return ``{table: rows}`` (with ``dry_run``, what would go).

    ``pause(took)`` runs after each full batch, ``took`` being how long the batch
    took. The caller holds :func:`single_run`.
    """
    points_before = math.floor((now - settings.history) * 1000)
    minute_before = math.floor((now - settings.rollups) * 1000) // 60_000
    if not dry_run:
        _mark_newest(now)
    change_log_upto = _change_log_upto(now, settings)
    plans = {
        "metric_points": (MetricPoint, MetricPoint.t < points_before, _key(MetricPoint, "t", "seq")),
        "metric_rollups": (MetricRollup, MetricRollup.minute < minute_before, _key(MetricRollup, "minute")),
        "change_log": (ChangeLog, ChangeLog.seq <= change_log_upto, (ChangeLog.seq,)),
    }
    removed = {}
    for table, (model, condition, key) in plans.items():
        if dry_run:
            removed[table] = db.session.scalar(select(func.count()).select_from(model).where(condition))
            db.session.rollback()
        else:
            removed[table] = _delete_in_batches(model, condition, key, batch, pause)
    if not dry_run:
        _forget_old_bookkeeping(now, settings)
    return removed


def _key(model, *extra):
    return (model.tenant_id, model.entity_id, model.metric_name, *(getattr(model, name) for name in extra))


def _delete_in_batches(model, condition, key, batch, pause):
    """Delete the rows matching ``condition``, ``batch`` at a time."""
    statement = _batch_delete(model, condition, key, batch)
    total = 0
    while True:
        started = time.perf_counter()
        with write_transaction() as session:
            count = session.execute(statement).rowcount
        total += count
        if count < batch:
            return total
        pause(time.perf_counter() - started)


def _batch_delete(model, condition, key, batch):
    """One batch's DELETE: by primary key on SQLite; by row address on PostgreSQL.

    PostgreSQL plans ``key IN (SELECT key ... LIMIT n)`` as a hash join over the
    whole table; ``ctid = ANY(ARRAY(SELECT ctid ... LIMIT n))`` reads only the rows chosen.
    """
    if db.engine.dialect.name == "postgresql":
        chosen = select(literal_column("ctid")).select_from(model).where(condition).limit(batch)
        inner = chosen.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})  # integers only
        return text(f"DELETE FROM {model.__tablename__} WHERE ctid = ANY(ARRAY({inner}))")
    target = tuple_(*key) if len(key) > 1 else key[0]
    return delete(model).where(target.in_(select(*key).where(condition).limit(batch)))


def _mark_newest(now):
    """Note that the newest change-log row, now, has its seq (a run that finds no new row notes nothing)."""
    newest = db.session.scalar(select(func.max(ChangeLog.seq)))
    db.session.rollback()
    if newest is None:
        return
    with write_transaction() as session:
        if session.get(ChangeLogMark, newest) is None:
            session.add(ChangeLogMark(seq=newest, at=now))


def _change_log_upto(now, settings):
    """The highest seq retention may delete: older than CHANGE_LOG_RETENTION, and delivered by every live poller."""
    cutoff = now - settings.change_log
    aged = db.session.scalar(select(func.max(ChangeLogMark.seq)).where(ChangeLogMark.at <= cutoff)) or 0
    delivered = db.session.scalar(select(func.min(PollerPosition.position)).where(PollerPosition.expires_at >= now))
    db.session.rollback()
    return aged if delivered is None else min(aged, delivered)


def _forget_old_bookkeeping(now, settings):
    """Drop the marks no cutoff needs again (all but the newest before it) and positions of processes gone."""
    cutoff = now - settings.change_log
    with write_transaction() as session:
        keep = session.scalar(select(func.max(ChangeLogMark.seq)).where(ChangeLogMark.at <= cutoff))
        if keep is not None:
            session.execute(delete(ChangeLogMark).where(ChangeLogMark.seq < keep))
        session.execute(delete(PollerPosition).where(PollerPosition.expires_at < now))


def oldest_ages(now):
    """``{table: seconds}``: how old the oldest row of each table is (by timestamp; change log: ``recorded_at``)."""
    points = db.session.scalar(select(func.min(MetricPoint.t)))
    minute = db.session.scalar(select(func.min(MetricRollup.minute)))
    first = db.session.scalar(select(ChangeLog.recorded_at).order_by(ChangeLog.seq).limit(1))
    db.session.rollback()
    ages = {}
    if points is not None:
        ages["metric_points"] = max(0.0, now - points / 1000)
    if minute is not None:
        ages["metric_rollups"] = max(0.0, now - minute * 60)
    if first is not None:
        ages["change_log"] = max(0.0, now - _unix(first))
    return ages


def _unix(moment):
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def run_once(settings, holder, dry_run=False, pause=lambda took: None):
    """One retention run if no other process is in one: ``{table: rows}``, or None when another holds the lock.

    It logs when it held the lock, from and to (Unix times), and what it removed.
    """
    with single_run(holder, time.time()) as mine:
        if not mine:
            return None
        started = time.time()
        removed = prune(settings, started, dry_run=dry_run, pause=pause)
        ended = time.time()
    log.info(
        "retention run by %s from %.6f to %.6f%s: %s",
        holder,
        started,
        ended,
        " (dry run)" if dry_run else "",
        ", ".join(f"{table} {count}" for table, count in removed.items()),
    )
    return removed
