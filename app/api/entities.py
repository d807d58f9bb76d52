"""Entities of the tenant."""

from flask import current_app

from app import errors
from app.api import bp
from app.api.common import json_body, principal
from app.errors import AppError
from app.serializers import entity_to_dict
from app.services import entities
from app.validation import is_integer, optional_text, require_choice, require_id, require_object


@bp.get("/entities")
def list_entities():
    """The tenant's entities."""
    caller = principal()
    return {"entities": entities.list_entities(caller.tenant_id)}


@bp.get("/entities/<entity_id>")
def get_entity(entity_id):
    """One of the tenant's entities."""
    caller = principal()
    return entity_to_dict(entities.find_entity(caller.tenant_id, entity_id))


@bp.put("/entities/<entity_id>")
def put_entity(entity_id):
    """Register an entity ``{entityType, name?, dashboardId?}`` or rename it (role admin)."""
    caller = principal("admin")
    config = current_app.config
    body = require_object(json_body())
    entity_id = require_id({"entityId": entity_id}, "entityId", config["MAX_ID_LENGTH"])
    dashboard_id = body.get("dashboardId")
    if dashboard_id is not None and not is_integer(dashboard_id):
        raise AppError(errors.VALIDATION_FAILED, "dashboardId must be an integer")
    entity, created = entities.register_entity(
        caller.tenant_id,
        entity_id,
        require_choice(body, "entityType", config["ENTITY_TYPES"]),
        optional_text(body, "name", 200, default=None),
        dashboard_id,
    )
    return entity, 201 if created else 200
