"""Metric history (raw points and 1-minute rollups kept by a trigger on ``change_log``) and its retention.

``metric_points`` holds each metric row's value at its timestamp ``t`` (Unix
milliseconds, from ``recorded_at``); ``metric_rollups`` one row per metric and
minute (``minute`` = floor(t / 60000)) with min, max, sum, count and the value
with the latest timestamp (ties: the highest seq). Both are keyed by the series
first, so a history query and pruning read one series' range of one index.

The trigger runs for every inserted metric row, the service's and external
writers' alike. Rows already in the change log are not copied: history starts
with this migration.

Retention (``app/services/retention.py``) prunes points by ``t`` and rollups by
``minute`` through their own indexes; ``change_log`` by ``seq`` up to what every
poller has read (``poller_positions``) and what ``change_log_marks`` (a seq and
the time it was the newest) place beyond ``CHANGE_LOG_RETENTION``. On SQLite,
the run that prunes holds the ``retention`` row of ``maintenance_leases``; on
PostgreSQL an advisory lock.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# floor(t / 60000) for negative t as well (both databases truncate integer division towards zero).
MINUTE = "(CASE WHEN {t} >= 0 THEN {t} / 60000 ELSE -((-{t} - 1) / 60000) - 1 END)"

SQLITE_T = "CAST(round((julianday(NEW.recorded_at) - 2440587.5) * 86400000.0) AS INTEGER)"

# Upsert of one value into its minute: "last" is the value with the latest t, ties to the highest seq.
NEWER = (
    "(excluded.last_t > metric_rollups.last_t"
    " OR (excluded.last_t = metric_rollups.last_t AND excluded.last_seq > metric_rollups.last_seq))"
)
ROLLUP = """
  INSERT INTO metric_rollups (tenant_id, entity_id, metric_name, minute, min_value, max_value, sum_value,
                              point_count, last_value, last_t, last_seq)
  VALUES (NEW.tenant_id, NEW.entity_id, NEW.metric_name, {minute}, NEW.value, NEW.value, NEW.value,
          1, NEW.value, {t}, NEW.seq)
  ON CONFLICT (tenant_id, entity_id, metric_name, minute) DO UPDATE SET
    min_value = {least}(metric_rollups.min_value, excluded.min_value),
    max_value = {greatest}(metric_rollups.max_value, excluded.max_value),
    sum_value = metric_rollups.sum_value + excluded.sum_value,
    point_count = metric_rollups.point_count + 1,
    last_value = CASE WHEN {newer} THEN excluded.last_value ELSE metric_rollups.last_value END,
    last_seq = CASE WHEN {newer} THEN excluded.last_seq ELSE metric_rollups.last_seq END,
    last_t = CASE WHEN {newer} THEN excluded.last_t ELSE metric_rollups.last_t END;
"""
POINT = """
  INSERT INTO metric_points (tenant_id, entity_id, metric_name, t, seq, value)
  VALUES (NEW.tenant_id, NEW.entity_id, NEW.metric_name, {t}, NEW.seq, NEW.value);
"""

SQLITE_TRIGGER = (
    "CREATE TRIGGER change_log_history AFTER INSERT ON change_log WHEN NEW.kind = 'metric' BEGIN"
    + POINT.format(t=SQLITE_T)
    + ROLLUP.format(t=SQLITE_T, minute=MINUTE.format(t=SQLITE_T), least="min", greatest="max", newer=NEWER)
    + "END"
)

POSTGRES_FUNCTION = (
    """
CREATE FUNCTION change_log_history() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
  t bigint := round(extract(epoch FROM NEW.recorded_at) * 1000);
BEGIN"""
    + POINT.format(t="t")
    + ROLLUP.format(t="t", minute=MINUTE.format(t="t"), least="LEAST", greatest="GREATEST", newer=NEWER)
    + """  RETURN NULL;
END
$$
"""
)

POSTGRES_TRIGGER = """
CREATE TRIGGER change_log_history AFTER INSERT ON change_log
FOR EACH ROW WHEN (NEW.kind = 'metric') EXECUTE FUNCTION change_log_history()
"""


def _series():
    """The three columns that name a series, new for each table."""
    return [
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("entity_id", sa.String(length=128), nullable=False),
        sa.Column("metric_name", sa.String(length=128), nullable=False),
    ]


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table(
        "metric_points",
        *_series(),
        sa.Column("t", sa.BigInteger(), nullable=False),
        sa.Column("seq", SEQ, nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "entity_id", "metric_name", "t", "seq", name=op.f("pk_metric_points")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "metric_rollups",
        *_series(),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("sum_value", sa.Float(), nullable=False),
        sa.Column("point_count", sa.BigInteger(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.Column("last_t", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", SEQ, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "entity_id", "metric_name", "minute", name=op.f("pk_metric_rollups")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_metric_points_t", "metric_points", ["t"])
    op.create_index("ix_metric_rollups_minute", "metric_rollups", ["minute"])
    op.create_table(
        "poller_positions",
        sa.Column("process", sa.String(length=200), nullable=False),
        sa.Column("position", SEQ, nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("process", name=op.f("pk_poller_positions")),
    )
    op.create_table(
        "change_log_marks",
        sa.Column("seq", SEQ, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change_log_marks")),
    )
    leases = op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_leases")),
    )
    op.bulk_insert(leases, [{"name": "retention", "holder": "", "expires_at": 0.0}])
    if dialect == "postgresql":
        schema = op.get_bind().scalar(sa.text("SELECT quote_ident(current_schema())"))
        op.execute(POSTGRES_FUNCTION.format(schema=schema))
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS change_log_history ON change_log")
        op.execute("DROP FUNCTION IF EXISTS change_log_history()")
    else:
        op.execute("DROP TRIGGER IF EXISTS change_log_history")
    op.drop_table("maintenance_leases")
    op.drop_table("change_log_marks")
    op.drop_table("poller_positions")
    op.drop_table("metric_rollups")
    op.drop_table("metric_points")
