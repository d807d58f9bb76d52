"""GraphQL at /graphql: the same tenants, roles, services and error codes as the REST API (docs/graphql.md)."""

from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("graphql", __name__)


@bp.record_once
def _register_view(state):
    """Build the schema and add the view when the blueprint is registered (nothing at import time)."""
    from app.graphql.schema import build_schema
    from app.graphql.view import AnalyticsGraphQLView

    schema = state.app.extensions["graphql_schema"] = build_schema()
    state.add_url_rule("/graphql", view_func=AnalyticsGraphQLView.as_view("graphql", schema=schema))
    # Authenticated by Bearer tokens, never cookies: no CSRF token (the admin page's forms have one).
    csrf.exempt(bp)
