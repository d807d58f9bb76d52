"""JSON error answers in the one ``{code, message}`` shape, with their HTTP status."""

import logging

from flask import jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from app import errors
from app.database import database_outage, is_unavailable, unavailable_error
from app.errors import AppError
from app.telemetry import count_error

log = logging.getLogger(__name__)

_HTTP_TO_ERROR = {
    404: errors.NOT_FOUND,
    405: errors.METHOD_NOT_ALLOWED,
    413: errors.PAYLOAD_TOO_LARGE,
}


def error_response(exc):
    """Return the JSON response for an :class:`AppError`."""
    count_error(exc.error.code, "http")
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="analytics-svc"'
    return response


def register_error_handlers(app):
    """Answer every error, ours or Werkzeug's, as ``{code, message}``."""

    @app.errorhandler(AppError)
    def _app_error(exc):
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc):
        entry = _HTTP_TO_ERROR.get(exc.code)
        if entry is None:
            entry = errors.VALIDATION_FAILED if 400 <= exc.code < 500 else errors.INTERNAL
            response = error_response(AppError(entry, exc.description or entry.message))
        else:
            response = error_response(AppError(entry))
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc):
        if not is_unavailable(exc):
            return _unexpected(exc)
        return unavailable_response("http", exc)

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error")
        return error_response(AppError(errors.INTERNAL))


#: Seconds a client is told to wait before it retries a request that met an unavailable database.
RETRY_AFTER_SECONDS = 1


def unavailable_response(source, exc):
    """503 ANALYTICS_1300 with Retry-After for a request that met an unavailable database; logged once per outage."""
    database_outage().failed(source, exc)
    response = error_response(unavailable_error())
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
