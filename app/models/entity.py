"""Entities: the things a dashboard watches (an event, a venue, ...)."""

from sqlalchemy import ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class Entity(db.Model):
    """One watched thing of a tenant, known to clients by its ``entity_id`` string."""

    __tablename__ = "entities"
    __table_args__ = (UniqueConstraint("tenant_id", "entity_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    entity_id: Mapped[str] = mapped_column(String(128))
    entity_type: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    dashboard_id: Mapped[int | None] = mapped_column(ForeignKey("dashboards.id"), index=True)
    created_at = mapped_column(db.DateTime(timezone=True), server_default=func.now(), nullable=False)
