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
    """Register ``{entityType, name?, dashboardId?}`` or change its name or dashboard (role admin).

    ``dashboardId`` absent keeps the dashboard, ``null`` detaches it; subscribers
    of an entity whose dashboard changes get ``dashboard:update`` action ``replaced``.
    """
    caller = principal("admin")
    config = current_app.config
    body = require_object(json_body())
    entity_id = require_id({"entityId": entity_id}, "entityId", config["MAX_ID_LENGTH"])
    unknown = set(body) - {"entityType", "name", "dashboardId"}
    if unknown:
        raise AppError(errors.VALIDATION_FAILED, f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    dashboard_id = body.get("dashboardId", entities.KEEP)
    if dashboard_id not in (None, entities.KEEP) and not is_integer(dashboard_id):
        raise AppError(errors.VALIDATION_FAILED, "dashboardId must be an integer or null")
    entity, created = entities.register_entity(
        caller.tenant_id,
        entity_id,
        require_choice(body, "entityType", config["ENTITY_TYPES"]),
        optional_text(body, "name", 200, default=None),
        dashboard_id,
        max_entities=config["MAX_ENTITIES_PER_TENANT"],
    )
    return entity, 201 if created else 200


@bp.delete("/entities/<entity_id>")
def delete_entity(entity_id):
    """Remove an entity and its current values (role admin); its subscribers get ``error`` ANALYTICS_1101."""
    caller = principal("admin")
    entity_id = require_id({"entityId": entity_id}, "entityId", current_app.config["MAX_ID_LENGTH"])
    entities.delete_entity(caller.tenant_id, entity_id)
    return "", 204
