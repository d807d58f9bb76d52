"""Metric ingestion and current values."""

from flask import current_app

from app.api import bp
from app.api.common import json_body, principal
from app.services import metrics


@bp.post("/metrics")
def ingest_metrics():
    """Record one metric, a list, or ``{"metrics": [...]}`` (role ingest or admin).

    With AUTO_REGISTER_ENTITIES, an unknown entity named with its ``entityType`` is registered.
    """
    caller = principal("ingest", "admin")
    config = current_app.config
    points = metrics.parse_points(json_body(), config["MAX_INGEST_BATCH"], config["MAX_ID_LENGTH"])
    registration = metrics.Registration.from_config(config)
    return metrics.record_metrics(caller.tenant_id, points, config["MAX_METRICS_PER_ENTITY"], registration), 201


@bp.get("/entities/<entity_id>/metrics")
def entity_metrics(entity_id):
    """Current values of one of the tenant's entities."""
    caller = principal()
    return metrics.current_metrics(caller.tenant_id, entity_id)
