"""Metric history: raw points and 1-minute rollups kept by the change log's trigger, and their retention (0005)."""

from sqlalchemy import BigInteger, Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.metric import SeqType


class SeriesKey:
    """The first primary-key columns of a history table: which metric of which entity of which tenant."""

    # First in each table, as migration 0005 orders the columns and their primary key.
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True, sort_order=-3)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True, sort_order=-2)
    metric_name: Mapped[str] = mapped_column(String(128), primary_key=True, sort_order=-1)


class MetricPoint(SeriesKey, db.Model):
    """One recorded value of one metric at its timestamp ``t`` (Unix milliseconds)."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_t", "t"), {"sqlite_with_rowid": False})

    t: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class MetricRollup(SeriesKey, db.Model):
    """One metric's values in one minute (``minute`` = floor(t / 60000)); ``last_value`` has the latest ``t``."""

    __tablename__ = "metric_rollups"
    __table_args__ = (Index("ix_metric_rollups_minute", "minute"), {"sqlite_with_rowid": False})

    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    min_value: Mapped[float] = mapped_column(Float)
    max_value: Mapped[float] = mapped_column(Float)
    sum_value: Mapped[float] = mapped_column(Float)
    point_count: Mapped[int] = mapped_column(BigInteger)
    last_value: Mapped[float] = mapped_column(Float)
    last_t: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(SeqType)


class PollerPosition(db.Model):
    """How far one process's poller has delivered the change log; retention keeps every row above the lowest."""

    __tablename__ = "poller_positions"

    process: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(SeqType)
    expires_at: Mapped[float] = mapped_column(Float)  # Unix time: not reported again by then, the process is gone


class ChangeLogMark(db.Model):
    """``seq`` was the newest change-log row at ``at`` (Unix time): how retention tells the age of a seq."""

    __tablename__ = "change_log_marks"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True)
    at: Mapped[float] = mapped_column(Float)


class MaintenanceLease(db.Model):
    """A named job that one process at a time may run (SQLite; PostgreSQL uses an advisory lock)."""

    __tablename__ = "maintenance_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Float)  # Unix time
