"""Entity changes in the change log (a dashboard attached, replaced, detached; an entity removed); no foreign keys.

``change_log`` gets a third kind, ``entity``: ``entity_id`` and ``payload`` set,
``payload`` saying which dashboard the entity left and which it shows now (or
that it was removed). The log loses its foreign keys: it is a history, whose
rows may name a dashboard or an entity deleted since, and a cascade would
delete rows that a poller has not read yet. A metric row for an entity the
tenant does not have is still refused: the trigger's insert into
``metric_values``, which refers to ``entities``, fails with it.

A partial index on the seqs of non-metric rows lets the poller find the entity
changes after a seq without reading metric rows.

SQLite cannot drop a constraint: the table is built again under the same name,
rows, AUTOINCREMENT counter and trigger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_KIND_FIELDS = (
    "(kind = 'metric' AND entity_id IS NOT NULL AND metric_name IS NOT NULL AND value IS NOT NULL)"
    " OR (kind = 'dashboard' AND dashboard_id IS NOT NULL AND payload IS NOT NULL)"
)
KIND_FIELDS = OLD_KIND_FIELDS + " OR (kind = 'entity' AND entity_id IS NOT NULL AND payload IS NOT NULL)"
NON_METRIC = "kind <> 'metric'"
INDEX = "ix_change_log_non_metric_seq"

# The table as 0001 made it on SQLite, with {kind_fields} and {foreign_keys} left open.
SQLITE_TABLE = """
CREATE TABLE {name} (
  seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  tenant_id VARCHAR(128) NOT NULL,
  kind VARCHAR(16) DEFAULT 'metric' NOT NULL,
  entity_id VARCHAR(128),
  metric_name VARCHAR(128),
  value FLOAT,
  recorded_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
  dashboard_id INTEGER,
  payload JSON,
  CONSTRAINT ck_change_log_kind_fields CHECK ({kind_fields}),
  CONSTRAINT ck_change_log_finite_value
    CHECK (value IS NULL OR (value >= -1.7976931348623157e308 AND value <= 1.7976931348623157e308)),
  CONSTRAINT ck_change_log_value_is_number CHECK (value IS NULL OR typeof(value) IN ('real', 'integer')),
  CONSTRAINT ck_change_log_recorded_at_format CHECK (typeof(recorded_at) = 'text' AND datetime(recorded_at) IS NOT NULL
    AND recorded_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]*'),
  CONSTRAINT ck_change_log_payload_is_json CHECK (payload IS NULL OR json_valid(payload)){foreign_keys}
)
"""
SQLITE_FOREIGN_KEYS = """,
  CONSTRAINT fk_change_log_dashboard_id_dashboards
    FOREIGN KEY(dashboard_id) REFERENCES dashboards (id) ON DELETE CASCADE,
  CONSTRAINT fk_change_log_tenant_id_entity_id_entities
    FOREIGN KEY(tenant_id, entity_id) REFERENCES entities (tenant_id, entity_id)"""

# The same trigger as 0001's: dropping the old table dropped it.
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


def _rebuild_sqlite_table(kind_fields, foreign_keys):
    """Copy change_log into a table of the new shape, keeping its AUTOINCREMENT counter and trigger."""
    bind = op.get_bind()
    counter = bind.scalar(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'change_log'"))
    op.execute(SQLITE_TABLE.format(name="change_log_new", kind_fields=kind_fields, foreign_keys=foreign_keys))
    op.execute("INSERT INTO change_log_new SELECT * FROM change_log")
    op.execute("DROP TABLE change_log")
    op.execute("ALTER TABLE change_log_new RENAME TO change_log")
    if counter is not None:
        # The new table's counter is its highest seq; a pruned newest row must not give its seq out again.
        op.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :counter) WHERE name = 'change_log'").bindparams(
                counter=counter
            )
        )
    op.execute(SQLITE_TRIGGER)


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("fk_change_log_dashboard_id_dashboards"), "change_log", type_="foreignkey")
        op.drop_constraint(op.f("fk_change_log_tenant_id_entity_id_entities"), "change_log", type_="foreignkey")
        op.drop_constraint(op.f("ck_change_log_kind_fields"), "change_log", type_="check")
        op.create_check_constraint(op.f("ck_change_log_kind_fields"), "change_log", KIND_FIELDS)
    else:
        _rebuild_sqlite_table(KIND_FIELDS, "")
    op.create_index(
        INDEX, "change_log", ["seq"], postgresql_where=sa.text(NON_METRIC), sqlite_where=sa.text(NON_METRIC)
    )


def downgrade():
    # Entity rows have no place in the old shape: they go.
    op.drop_index(INDEX, table_name="change_log")
    op.execute("DELETE FROM change_log WHERE kind = 'entity'")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_change_log_kind_fields"), "change_log", type_="check")
        op.create_check_constraint(op.f("ck_change_log_kind_fields"), "change_log", OLD_KIND_FIELDS)
        op.create_foreign_key(
            op.f("fk_change_log_dashboard_id_dashboards"),
            "change_log",
            "dashboards",
            ["dashboard_id"],
            ["id"],
            ondelete="CASCADE",
            postgresql_not_valid=True,  # rows of deleted dashboards may remain
        )
        op.create_foreign_key(
            op.f("fk_change_log_tenant_id_entity_id_entities"),
            "change_log",
            "entities",
            ["tenant_id", "entity_id"],
            ["tenant_id", "entity_id"],
            postgresql_not_valid=True,
        )
    else:
        # SQLite checks the foreign keys of every copied row: rows naming what was deleted since go.
        op.execute(
            "DELETE FROM change_log WHERE dashboard_id NOT IN (SELECT id FROM dashboards)"
            " OR (entity_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM entities e"
            " WHERE e.tenant_id = change_log.tenant_id AND e.entity_id = change_log.entity_id))"
        )
        _rebuild_sqlite_table(OLD_KIND_FIELDS, SQLITE_FOREIGN_KEYS)
