"""The error-code catalogue and the one ``{code, message}`` shape used everywhere.

REST answers an error with its HTTP status, a refused socket gets it as
``connect_error`` data, and a socket event handler emits it as ``error``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """One entry of the catalogue: stable code, HTTP status and default message."""

    code: str
    status: int
    message: str


INTERNAL = ErrorCode("ANALYTICS_1000", 500, "internal error")
MISSING_TOKEN = ErrorCode("ANALYTICS_1001", 401, "missing token")
INVALID_TOKEN = ErrorCode("ANALYTICS_1002", 401, "invalid token")
TOKEN_EXPIRED = ErrorCode("ANALYTICS_1003", 401, "token expired")
MISSING_TENANT = ErrorCode("ANALYTICS_1004", 401, "missing tenant")
PERMISSION_DENIED = ErrorCode("ANALYTICS_1005", 403, "permission denied")
INVALID_PAYLOAD = ErrorCode("ANALYTICS_1100", 400, "invalid payload")
UNKNOWN_ENTITY = ErrorCode("ANALYTICS_1101", 404, "unknown entity")
TOO_MANY_SUBSCRIPTIONS = ErrorCode("ANALYTICS_1102", 429, "too many subscriptions")
RATE_LIMITED = ErrorCode("ANALYTICS_1103", 429, "rate limited")
UNKNOWN_EVENT = ErrorCode("ANALYTICS_1104", 400, "unknown event")
VALIDATION_FAILED = ErrorCode("ANALYTICS_1200", 400, "validation failed")
NOT_FOUND = ErrorCode("ANALYTICS_1201", 404, "not found")
CONFLICT = ErrorCode("ANALYTICS_1202", 409, "conflict")
PAYLOAD_TOO_LARGE = ErrorCode("ANALYTICS_1203", 413, "payload too large")
METHOD_NOT_ALLOWED = ErrorCode("ANALYTICS_1204", 405, "method not allowed")
TOO_MANY_METRICS = ErrorCode("ANALYTICS_1205", 409, "too many metrics for one entity")
TOO_MANY_ENTITIES = ErrorCode("ANALYTICS_1206", 409, "too many entities for one tenant")
UNAVAILABLE = ErrorCode("ANALYTICS_1300", 503, "service unavailable")

CATALOGUE = (
    INTERNAL,
    MISSING_TOKEN,
    INVALID_TOKEN,
    TOKEN_EXPIRED,
    MISSING_TENANT,
    PERMISSION_DENIED,
    INVALID_PAYLOAD,
    UNKNOWN_ENTITY,
    TOO_MANY_SUBSCRIPTIONS,
    RATE_LIMITED,
    UNKNOWN_EVENT,
    VALIDATION_FAILED,
    NOT_FOUND,
    CONFLICT,
    PAYLOAD_TOO_LARGE,
    METHOD_NOT_ALLOWED,
    TOO_MANY_METRICS,
    TOO_MANY_ENTITIES,
    UNAVAILABLE,
)


class AppError(Exception):
    """An error the client caused or may see: a catalogue entry plus a specific message."""

    def __init__(self, error, message=None):
        super().__init__(message or error.message)
        self.error = error
        self.message = message or error.message

    @property
    def status(self):
        """The HTTP status of the catalogue entry."""
        return self.error.status

    def to_dict(self):
        """The ``{code, message}`` body sent to clients."""
        return {"code": self.error.code, "message": self.message}
