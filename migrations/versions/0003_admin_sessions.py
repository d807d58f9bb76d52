"""Admin sessions kept in the database, so that sign-out, a new sign-in or expiry ends one on every worker.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
    )
    op.create_index("ix_admin_sessions_tenant_id_subject", "admin_sessions", ["tenant_id", "subject"])


def downgrade():
    op.drop_index("ix_admin_sessions_tenant_id_subject", table_name="admin_sessions")
    op.drop_table("admin_sessions")
