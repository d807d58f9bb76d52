"""Dashboards and their ordered tiles."""

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db


class Dashboard(db.Model):
    """A tenant's dashboard layout; ``version`` grows by one with every change."""

    __tablename__ = "dashboards"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at = mapped_column(db.DateTime(timezone=True), server_default=func.now(), nullable=False)
    updated_at = mapped_column(db.DateTime(timezone=True), server_default=func.now(), nullable=False)

    tiles: Mapped[list["Tile"]] = relationship(
        back_populates="dashboard", order_by="Tile.position", cascade="all, delete-orphan"
    )


class Tile(db.Model):
    """One tile of a dashboard, shown at ``position`` (0 first)."""

    __tablename__ = "tiles"
    __table_args__ = (UniqueConstraint("dashboard_id", "position"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    dashboard_id: Mapped[int] = mapped_column(ForeignKey("dashboards.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    metric_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(32), default="")
    thresholds: Mapped[dict | None] = mapped_column(JSON)

    dashboard: Mapped[Dashboard] = relationship(back_populates="tiles")
