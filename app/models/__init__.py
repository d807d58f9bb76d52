"""Database tables, one module per aggregate."""

from app.models.admin_session import AdminSession
from app.models.dashboard import Dashboard, Tile
from app.models.entity import Entity
from app.models.history import ChangeLogMark, MaintenanceLease, MetricPoint, MetricRollup, PollerPosition
from app.models.metric import CHANGE_DASHBOARD, CHANGE_ENTITY, CHANGE_METRIC, ChangeLog, MetricValue

__all__ = [
    "CHANGE_DASHBOARD",
    "CHANGE_ENTITY",
    "CHANGE_METRIC",
    "AdminSession",
    "ChangeLog",
    "ChangeLogMark",
    "Dashboard",
    "Entity",
    "MaintenanceLease",
    "MetricPoint",
    "MetricRollup",
    "MetricValue",
    "PollerPosition",
    "Tile",
]
