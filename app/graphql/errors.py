"""GraphQL errors in the catalogue's terms: every error the client sees carries ``extensions.code``.

An :class:`AppError` raised by the shared validation or a service keeps its code
and message; what the client's document or variables got wrong (syntax, unknown
fields, wrong types, the limits) is ANALYTICS_1200 with graphql-core's message,
which names the field or variable; a database outage is ANALYTICS_1300; anything
else is ANALYTICS_1000 with no detail, logged here with its traceback.
"""

import logging

from graphql import GraphQLError
from sqlalchemy.exc import SQLAlchemyError

from app import errors
from app.database import database_outage, is_unavailable, unavailable_error
from app.errors import AppError
from app.telemetry import count_error

log = logging.getLogger(__name__)


def app_error_of(error):
    """The :class:`AppError` a :class:`GraphQLError` stands for."""
    original = error.original_error
    if isinstance(original, AppError):
        return original
    if isinstance(original, RecursionError):  # the parser or a validation rule recursed too deep
        return AppError(errors.VALIDATION_FAILED, "query nested too deeply")
    if isinstance(original, SQLAlchemyError) and is_unavailable(original):
        database_outage().failed("http", original)
        return unavailable_error()
    # Without a path the error came before execution: parsing, validation, coercing variables.
    if error.path is None and (original is None or isinstance(original, GraphQLError | ValueError | TypeError)):
        return AppError(errors.VALIDATION_FAILED, error.message)
    log.error("unhandled error in GraphQL at %s", error.path, exc_info=original or error)
    return AppError(errors.INTERNAL)


def formatted(error):
    """One entry of a response's ``errors``: ``{message, locations?, path?, extensions: {code}}``."""
    app_error = app_error_of(error)
    count_error(app_error.error.code, "http")
    entry = {"message": app_error.message}
    if error.locations:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        entry["path"] = list(error.path)
    entry["extensions"] = {"code": app_error.error.code}
    return entry


def request_error(app_error):
    """The body of a request refused before any GraphQL ran (no token, too large, not JSON...)."""
    count_error(app_error.error.code, "http")
    return {"errors": [{"message": app_error.message, "extensions": {"code": app_error.error.code}}]}
