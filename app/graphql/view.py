"""``GET``/``POST /graphql``: Strawberry's Flask view with our token check, limits and error shapes.

Before any GraphQL runs, the Bearer token is verified as for REST (401 with
``WWW-Authenticate`` otherwise); a body over MAX_REQUEST_BYTES is 413, a query
over GRAPHQL_MAX_QUERY_LENGTH characters 413, a request that is not GraphQL over
HTTP (not JSON, a batch, a mutation over GET) 400; each answers
``{"errors": [{message, extensions: {code}}]}``. An executed request answers 200
with ``data`` and ``errors``, or 503 with ``Retry-After`` when every error of it
is a database outage (ANALYTICS_1300).
"""

from cross_web import HTTPException as RequestRefused
from flask import current_app, jsonify, request
from strawberry.flask.views import GraphQLView
from werkzeug.exceptions import RequestEntityTooLarge

from app import errors
from app.api.errors import RETRY_AFTER_SECONDS
from app.auth import bearer_token, verify_token
from app.errors import AppError
from app.graphql.context import RequestContext
from app.graphql.errors import formatted, request_error
from app.graphql.limits import Limits

#: GraphiQL loads React and itself from unpkg.com and runs an inline script: its page alone allows them.
IDE_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://unpkg.com; "
    "style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data:; "
    "font-src 'self' data: https://unpkg.com; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)

_REFUSED_AS = {405: errors.METHOD_NOT_ALLOWED, 413: errors.PAYLOAD_TOO_LARGE}


def limits_of(config):
    """The request limits of ``app.config``."""
    return Limits(
        max_depth=config["GRAPHQL_MAX_DEPTH"],
        max_aliases=config["GRAPHQL_MAX_ALIASES"],
        max_cost=config["GRAPHQL_MAX_COST"],
        max_page=config["GRAPHQL_MAX_PAGE"],
    )


def _refusal(app_error):
    response = jsonify(request_error(app_error))
    response.status_code = app_error.status
    if app_error.status == 405:
        response.headers["Allow"] = "GET, POST"
    if app_error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="analytics-svc"'
    return response


class AnalyticsGraphQLView(GraphQLView):
    """Strawberry's synchronous Flask view (batching and uploads off, queries over GET allowed)."""

    # Other methods reach the view, which refuses them in the GraphQL error shape (405, Allow: GET, POST).
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    def __init__(self, schema):
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=True, multipart_uploads_enabled=False)

    def dispatch_request(self):
        """Run the request; whatever refuses it before GraphQL runs is answered in the GraphQL error shape."""
        try:
            return self.run(request=request)
        except AppError as exc:
            return _refusal(exc)
        except RequestRefused as exc:
            entry = _REFUSED_AS.get(exc.status_code, errors.VALIDATION_FAILED)
            return _refusal(AppError(entry, exc.reason or entry.message))
        except RequestEntityTooLarge:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            return _refusal(AppError(errors.PAYLOAD_TOO_LARGE, f"request body over {limit} bytes"))
        except UnicodeDecodeError:
            return _refusal(AppError(errors.VALIDATION_FAILED, "request body is not UTF-8"))
        except RecursionError:  # JSON nested deeper than the parser recurses
            return _refusal(AppError(errors.VALIDATION_FAILED, "JSON body nested too deeply"))

    def should_render_graphql_ide(self, request_adapter):
        """GraphiQL only where introspection is on (GRAPHQL_INTROSPECTION: development)."""
        return current_app.config["GRAPHQL_INTROSPECTION"] and super().should_render_graphql_ide(request_adapter)

    def render_graphql_ide(self, request):
        response = super().render_graphql_ide(request)
        if isinstance(response, str):
            response = current_app.response_class(response, content_type="text/html")
        response.headers["Content-Security-Policy"] = IDE_CONTENT_SECURITY_POLICY
        return response

    def get_context(self, request, response):
        """Verify the token (as REST does) and hand the resolvers the caller, the config and the limits."""
        config = current_app.config
        caller = verify_token(bearer_token(request.headers.get("Authorization")), config)
        return RequestContext(
            request, response, caller, config, limits_of(config), introspection=config["GRAPHQL_INTROSPECTION"]
        )

    def parse_http_body(self, request_adapter):
        """Strawberry's parsing, then the length of the query document (GRAPHQL_MAX_QUERY_LENGTH)."""
        data = super().parse_http_body(request_adapter)
        largest = current_app.config["GRAPHQL_MAX_QUERY_LENGTH"]
        if isinstance(data.query, str) and len(data.query) > largest:
            raise AppError(errors.PAYLOAD_TOO_LARGE, f"query over {largest} characters (GRAPHQL_MAX_QUERY_LENGTH)")
        return data

    def process_result(self, request, result):
        """``data`` and ``errors`` in the catalogue's terms (see app/graphql/errors.py)."""
        body = {"data": result.data}
        if result.errors:
            body["errors"] = [formatted(error) for error in result.errors]
        return body

    def create_response(self, response_data, sub_response):
        """503 with Retry-After when every error is a database outage; else Strawberry's answer (200)."""
        found = response_data.get("errors") if isinstance(response_data, dict) else None
        if found and all(e["extensions"]["code"] == errors.UNAVAILABLE.code for e in found):
            sub_response.status_code = errors.UNAVAILABLE.status
            sub_response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return super().create_response(response_data, sub_response)
