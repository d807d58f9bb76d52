"""Room naming: one room per (tenant, entity), so no emit can cross tenants."""

import json

DASHBOARD_NAMESPACE = "/dashboard"
UPDATES_NAMESPACE = "/analytics/dashboard"


def room_for(tenant_id, entity_id):
    """Return the room of one entity of one tenant (JSON keeps any two pairs distinct)."""
    return json.dumps([tenant_id, entity_id], separators=(",", ":"))
