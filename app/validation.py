"""Checks on untrusted input, shared by the socket handlers, the REST API and the CLI.

Each check raises :class:`AppError` with the catalogue entry the caller passes,
so a socket answers ANALYTICS_1100 and REST answers ANALYTICS_1200 for the
same rule.
"""

import math
from datetime import UTC, datetime

from app import errors
from app.errors import AppError

#: Row ids are 32-bit integers on PostgreSQL; a larger id names no row.
MAX_ROW_ID = 2**31 - 1


def is_integer(value):
    """True when ``value`` is a JSON integer (Python's ``bool`` is an ``int``, but not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_row_id(value):
    """True when ``value`` is an integer that can be a row id (1 to MAX_ROW_ID)."""
    return is_integer(value) and 0 < value <= MAX_ROW_ID


def require_object(payload, error=errors.VALIDATION_FAILED, what="payload"):
    """Return ``payload`` when it is a JSON object (dict)."""
    if not isinstance(payload, dict):
        raise AppError(error, f"{what} must be an object")
    return payload


def require_id(payload, field, max_length, error=errors.VALIDATION_FAILED):
    """Return ``payload[field]`` when it is a non-empty printable string of at most ``max_length``."""
    value = payload.get(field)
    if value is None:
        raise AppError(error, f"{field} is required")
    if not isinstance(value, str):
        raise AppError(error, f"{field} must be a string")
    if not value.strip():
        raise AppError(error, f"{field} must not be empty")
    if len(value) > max_length:
        raise AppError(error, f"{field} must be at most {max_length} characters")
    if not value.isprintable():
        raise AppError(error, f"{field} must not contain control characters")
    return value


#: The largest change-log position (a PostgreSQL bigint).
MAX_SEQ = 2**63 - 1


def optional_seq(payload, field, error=errors.VALIDATION_FAILED):
    """Return ``payload[field]`` when it is a change-log position (an integer, 0 or more), None when absent."""
    value = payload.get(field)
    if value is None:
        return None
    if not is_integer(value) or not 0 <= value <= MAX_SEQ:
        raise AppError(error, f"{field} must be a non-negative integer")
    return value


def require_choice(payload, field, choices, error=errors.VALIDATION_FAILED):
    """Return ``payload[field]`` when it is one of ``choices``."""
    value = payload.get(field)
    if not isinstance(value, str) or value not in choices:
        raise AppError(error, f"{field} must be one of: {', '.join(choices)}")
    return value


def require_number(payload, field, error=errors.VALIDATION_FAILED):
    """Return ``payload[field]`` as a float when it is a finite number (not a boolean)."""
    value = payload.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AppError(error, f"{field} must be a number")
    try:
        value = float(value)
    except OverflowError:  # an integer literal beyond any float
        raise AppError(error, f"{field} must be a finite number") from None
    if not math.isfinite(value):
        raise AppError(error, f"{field} must be a finite number")
    return value


def optional_text(payload, field, max_length, default="", error=errors.VALIDATION_FAILED):
    """Return ``payload[field]`` as stripped text, ``default`` when absent."""
    value = payload.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > max_length or not value.isprintable():
        raise AppError(error, f"{field} must be printable text of at most {max_length} characters")
    return value.strip()


def optional_timestamp(payload, field, error=errors.VALIDATION_FAILED):
    """Return ``payload[field]`` parsed as an ISO-8601 instant in UTC, or now when absent."""
    value = payload.get(field)
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, str) or len(value) > 40:
        raise AppError(error, f"{field} must be an ISO-8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AppError(error, f"{field} must be an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +05:00 falls before year 1 in UTC
        raise AppError(error, f"{field} is out of range") from None


def optional_thresholds(payload, field="thresholds", error=errors.VALIDATION_FAILED):
    """Return ``payload[field]``: None, or an object of at most 8 named finite numbers."""
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 8:
        raise AppError(error, f"{field} must be an object of at most 8 named numbers")
    for name in value:
        if not isinstance(name, str) or not name or len(name) > 32:
            raise AppError(error, f"{field} names must be short strings")
        require_number(value, name, error)
    return {name: float(number) for name, number in value.items()}
