"""Current metric values and the append-only change log the poller reads.

External writers insert into ``change_log`` only (see docs/database.md); a
database trigger keeps ``metric_values`` at the row with the highest ``seq``.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

CHANGE_METRIC = "metric"
CHANGE_DASHBOARD = "dashboard"
CHANGE_ENTITY = "entity"

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGSERIAL.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class MetricValue(db.Model):
    """The current value of one metric of one entity, and the change that set it."""

    __tablename__ = "metric_values"
    __table_args__ = (ForeignKeyConstraint(["tenant_id", "entity_id"], ["entities.tenant_id", "entities.entity_id"]),)

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    metric_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    recorded_at = mapped_column(db.DateTime(timezone=True), nullable=False)
    seq: Mapped[int] = mapped_column(SeqType)


class ChangeLog(db.Model):
    """One committed change, in ``seq`` order: a metric value, a layout change, or an entity change.

    An entity change (``kind = 'entity'``) is a dashboard attached, replaced or
    detached, or the entity removed. The log has no foreign keys: it is a
    history and may name what was deleted since (migration 0004).
    """

    __tablename__ = "change_log"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'metric' AND entity_id IS NOT NULL AND metric_name IS NOT NULL AND value IS NOT NULL)"
            " OR (kind = 'dashboard' AND dashboard_id IS NOT NULL AND payload IS NOT NULL)"
            " OR (kind = 'entity' AND entity_id IS NOT NULL AND payload IS NOT NULL)",
            name="kind_fields",
        ),
        # JSON has no NaN or infinity; SQLite-only type checks live in the migration.
        CheckConstraint(
            "value IS NULL OR (value >= -1.7976931348623157e308 AND value <= 1.7976931348623157e308)",
            name="finite_value",
        ),
        # The poller finds the entity changes after a seq without reading metric rows.
        Index(
            "ix_change_log_non_metric_seq",
            "seq",
            postgresql_where=text("kind <> 'metric'"),
            sqlite_where=text("kind <> 'metric'"),
        ),
        # Never reuse a seq, even if the newest rows are pruned one day.
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default=CHANGE_METRIC, server_default=CHANGE_METRIC)
    entity_id: Mapped[str | None] = mapped_column(String(128))
    metric_name: Mapped[str | None] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    recorded_at = mapped_column(db.DateTime(timezone=True), server_default=func.now(), nullable=False)
    dashboard_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict | None] = mapped_column(JSON)
