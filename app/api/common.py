"""Request helpers shared by the REST views: the caller, the JSON body, ids in the path."""

from flask import current_app, request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter

from app import errors
from app.auth import bearer_token, verify_token
from app.errors import AppError
from app.validation import is_integer


class IdConverter(BaseConverter):
    """A row id in the path, ``<id('dashboardId'):dashboard_id>``: digits make an ``int``, anything else is a 400
    naming the id (werkzeug's ``int`` converter would answer 404, as if no such route existed).

    Up to MAX_DIGITS digits are matched: the service answers 404 when no row has that id (as for any
    integer too large to be a row id); a longer string of digits is refused as out of range.
    """

    MAX_DIGITS = 100

    regex = r"[^/]+"

    def __init__(self, url_map, name="id"):
        super().__init__(url_map)
        self.name = name

    def to_python(self, value):
        if not (value.isascii() and value.isdigit()):
            raise BadRequest(f"{self.name} must be a non-negative integer")
        if len(value) > self.MAX_DIGITS:
            raise BadRequest(f"{self.name} is out of range")
        return int(value)

    def to_url(self, value):
        return str(int(value))


def principal(*roles):
    """Verify the Bearer token; with ``roles``, require at least one of them."""
    caller = verify_token(bearer_token(request.headers.get("Authorization")), current_app.config)
    if roles and not caller.has_any_role(*roles):
        raise AppError(errors.PERMISSION_DENIED, f"requires role {' or '.join(roles)}")
    return caller


def json_body():
    """Return the parsed JSON body, or raise VALIDATION_FAILED."""
    if not request.is_json:
        raise AppError(errors.VALIDATION_FAILED, "expected a JSON body (Content-Type: application/json)")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser recurses (silent=True only covers ValueError)
        raise AppError(errors.VALIDATION_FAILED, "JSON body nested too deeply") from None
    if body is None:
        raise AppError(errors.VALIDATION_FAILED, "malformed JSON body")
    return body


def expected_version(body):
    """Return the optional ``expectedVersion`` (optimistic concurrency) from the body or ``If-Match``."""
    value = body.get("expectedVersion") if isinstance(body, dict) else None
    header = request.headers.get("If-Match", "").strip()
    if value is None and header and header != "*":  # "*" matches any current version (RFC 9110)
        header = header.strip('"')  # a weak W/"n" never matches: If-Match compares strongly
        if not (header.isascii() and header.isdigit()):
            raise AppError(errors.VALIDATION_FAILED, "If-Match must be a dashboard version number")
        value = int(header)
    if value is not None and not is_integer(value):
        raise AppError(errors.VALIDATION_FAILED, "expectedVersion must be an integer")
    return value
