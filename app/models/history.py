"""Metric history: raw points and 1-minute rollups, both kept by the change log's trigger (migration 0005)."""

from sqlalchemy import BigInteger, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.metric import SeqType


class MetricPoint(db.Model):
    """One recorded value of one metric at its timestamp ``t`` (Unix milliseconds)."""

    __tablename__ = "metric_points"
    __table_args__ = {"sqlite_with_rowid": False}

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    metric_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    t: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class MetricRollup(db.Model):
    """One metric's values in one minute (``minute`` = floor(t / 60000)); ``last_value`` has the latest ``t``."""

    __tablename__ = "metric_rollups"
    __table_args__ = {"sqlite_with_rowid": False}

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    metric_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    min_value: Mapped[float] = mapped_column(Float)
    max_value: Mapped[float] = mapped_column(Float)
    sum_value: Mapped[float] = mapped_column(Float)
    point_count: Mapped[int] = mapped_column(BigInteger)
    last_value: Mapped[float] = mapped_column(Float)
    last_t: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(SeqType)
