"""Initial schema: entities, dashboards and tiles, metric values and the change log.

The trigger keeps ``metric_values`` at the change-log row with the highest
``seq`` for each metric, so external writers only ever INSERT into
``change_log`` (docs/database.md). On PostgreSQL its function runs with the
owner's rights and a search path pinned to the migration's schema (``pg_temp``
last), so writers need no grant on ``metric_values`` and cannot shadow it.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_TRIGGER = """
CREATE TRIGGER change_log_metric_value AFTER INSERT ON change_log
WHEN NEW.kind = 'metric'
BEGIN
  INSERT INTO metric_values (tenant_id, entity_id, metric_name, value, recorded_at, seq)
  VALUES (NEW.tenant_id, NEW.entity_id, NEW.metric_name, NEW.value, NEW.recorded_at, NEW.seq)
  ON CONFLICT (tenant_id, entity_id, metric_name) DO UPDATE
  SET value = excluded.value, recorded_at = excluded.recorded_at, seq = excluded.seq
  WHERE excluded.seq > metric_values.seq;
END
"""

POSTGRES_FUNCTION = """
CREATE FUNCTION change_log_metric_value() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
BEGIN
  INSERT INTO metric_values (tenant_id, entity_id, metric_name, value, recorded_at, seq)
  VALUES (NEW.tenant_id, NEW.entity_id, NEW.metric_name, NEW.value, NEW.recorded_at, NEW.seq)
  ON CONFLICT (tenant_id, entity_id, metric_name) DO UPDATE
  SET value = excluded.value, recorded_at = excluded.recorded_at, seq = excluded.seq
  WHERE excluded.seq > metric_values.seq;
  RETURN NULL;
END
$$
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER change_log_metric_value AFTER INSERT ON change_log
FOR EACH ROW WHEN (NEW.kind = 'metric') EXECUTE FUNCTION change_log_metric_value()
"""


# Every row must be one the poller can read and a JSON client can parse: no NaN or
# infinity (JSON has neither), and on SQLite, whose columns take any type, a real
# number, a parseable UTC timestamp text and valid JSON.
FINITE_VALUE = "value IS NULL OR (value >= -1.7976931348623157e308 AND value <= 1.7976931348623157e308)"
SQLITE_ONLY_CHECKS = {
    "value_is_number": "value IS NULL OR typeof(value) IN ('real', 'integer')",
    "recorded_at_format": (
        "typeof(recorded_at) = 'text' AND datetime(recorded_at) IS NOT NULL"
        " AND recorded_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]*'"
    ),
    "payload_is_json": "payload IS NULL OR json_valid(payload)",
}


def change_log_checks(dialect):
    """CHECK constraints of change_log for ``dialect``."""
    checks = [sa.CheckConstraint(FINITE_VALUE, name=op.f("ck_change_log_finite_value"))]
    if dialect == "sqlite":
        checks += [
            sa.CheckConstraint(sql, name=op.f(f"ck_change_log_{name}")) for name, sql in SQLITE_ONLY_CHECKS.items()
        ]
    return checks


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table(
        "dashboards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboards")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_dashboards_tenant_id"), "dashboards", ["tenant_id"])

    op.create_table(
        "entities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("entity_id", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dashboard_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["dashboard_id"], ["dashboards.id"], name=op.f("fk_entities_dashboard_id_dashboards")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entities")),
        sa.UniqueConstraint("tenant_id", "entity_id", name=op.f("uq_entities_tenant_id_entity_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_entities_dashboard_id"), "entities", ["dashboard_id"])

    op.create_table(
        "tiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dashboard_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("metric_name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dashboard_id"], ["dashboards.id"], name=op.f("fk_tiles_dashboard_id_dashboards"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiles")),
        sa.UniqueConstraint("dashboard_id", "position", name=op.f("uq_tiles_dashboard_id_position")),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "change_log",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="metric", nullable=False),
        sa.Column("entity_id", sa.String(length=128), nullable=True),
        sa.Column("metric_name", sa.String(length=128), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("dashboard_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'metric' AND entity_id IS NOT NULL AND metric_name IS NOT NULL AND value IS NOT NULL)"
            " OR (kind = 'dashboard' AND dashboard_id IS NOT NULL AND payload IS NOT NULL)",
            name=op.f("ck_change_log_kind_fields"),
        ),
        *change_log_checks(dialect),
        sa.ForeignKeyConstraint(
            ["dashboard_id"], ["dashboards.id"], name=op.f("fk_change_log_dashboard_id_dashboards"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "entity_id"],
            ["entities.tenant_id", "entities.entity_id"],
            name=op.f("fk_change_log_tenant_id_entity_id_entities"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change_log")),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "metric_values",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("entity_id", sa.String(length=128), nullable=False),
        sa.Column("metric_name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", SEQ, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "entity_id"],
            ["entities.tenant_id", "entities.entity_id"],
            name=op.f("fk_metric_values_tenant_id_entity_id_entities"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "entity_id", "metric_name", name=op.f("pk_metric_values")),
    )

    if dialect == "postgresql":
        # The function runs with its owner's rights: pin its search path to this
        # schema, temporary schema last, so no caller can shadow metric_values.
        schema = op.get_bind().scalar(sa.text("SELECT quote_ident(current_schema())"))
        op.execute(POSTGRES_FUNCTION.format(schema=schema))
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS change_log_metric_value ON change_log")
        op.execute("DROP FUNCTION IF EXISTS change_log_metric_value()")
    else:
        op.execute("DROP TRIGGER IF EXISTS change_log_metric_value")
    op.drop_table("metric_values")
    op.drop_table("change_log")
    op.drop_table("tiles")
    op.drop_index(op.f("ix_entities_dashboard_id"), table_name="entities")
    op.drop_table("entities")
    op.drop_index(op.f("ix_dashboards_tenant_id"), table_name="dashboards")
    op.drop_table("dashboards")
