"""PostgreSQL: NOTIFY listeners when change-log rows are inserted.

One notification per INSERT statement, on channel ``analytics_change_log``, with
the statement's highest ``seq`` and the time it ran as JSON. PostgreSQL sends it
when the transaction commits and drops it on rollback, so a listener that hears
it can read the rows at once. This covers external writers too: they only
INSERT into ``change_log`` (docs/database.md). SQLite has no equivalent and
keeps polling.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "analytics_change_log"

POSTGRES_FUNCTION = f"""
CREATE FUNCTION change_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', json_build_object(
    'seq', (SELECT max(seq) FROM new_rows),
    'at', extract(epoch FROM clock_timestamp())
  )::text);
  RETURN NULL;
END
$$
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER change_log_notify AFTER INSERT ON change_log
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION change_log_notify()
"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(POSTGRES_FUNCTION)
    op.execute(POSTGRES_TRIGGER)


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS change_log_notify ON change_log")
    op.execute("DROP FUNCTION IF EXISTS change_log_notify()")
