"""Metric ingestion, current values and history."""

from datetime import UTC, datetime

from flask import current_app, request

from app.api import bp
from app.api.common import json_body, principal
from app.services import history, metrics
from app.validation import optional_timestamp, require_id


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


@bp.get("/entities/<entity_id>/metrics/<metric_name>/history")
def metric_history(entity_id, metric_name):
    """Past values of one metric: raw points (paged), or buckets of ``step`` seconds."""
    caller = principal()
    config = current_app.config
    entity_id = require_id({"entityId": entity_id}, "entityId", config["MAX_ID_LENGTH"])
    metric_name = require_id({"metricName": metric_name}, "metricName", config["MAX_ID_LENGTH"])
    query = history.parse_history_query(request.args.to_dict(), optional_timestamp, datetime.now(UTC))
    return history.metric_history(caller.tenant_id, entity_id, metric_name, query)
