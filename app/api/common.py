"""Request helpers shared by the REST views: the caller and the JSON body."""

from flask import current_app, request

from app import errors
from app.auth import bearer_token, verify_token
from app.errors import AppError
from app.validation import is_integer


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
