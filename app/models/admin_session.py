"""Admin sessions: one row per signed-in admin page session, so that signing out ends it everywhere."""

from sqlalchemy import Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class AdminSession(db.Model):
    """A signed-in admin session; the signed cookie carries only its ``id``."""

    __tablename__ = "admin_sessions"
    __table_args__ = (Index("ix_admin_sessions_tenant_id_subject", "tenant_id", "subject"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[float] = mapped_column(Float)  # Unix time
