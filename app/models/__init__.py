"""Database tables, one module per aggregate."""

from app.models.admin_session import AdminSession
from app.models.dashboard import Dashboard, Tile
from app.models.entity import Entity
from app.models.history import MetricPoint, MetricRollup
from app.models.metric import CHANGE_DASHBOARD, CHANGE_ENTITY, CHANGE_METRIC, ChangeLog, MetricValue

__all__ = [
    "CHANGE_DASHBOARD",
    "CHANGE_ENTITY",
    "CHANGE_METRIC",
    "AdminSession",
    "ChangeLog",
    "Dashboard",
    "Entity",
    "MetricPoint",
    "MetricRollup",
    "MetricValue",
    "Tile",
]
