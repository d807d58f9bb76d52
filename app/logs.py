"""Logging: plain text or JSON lines, each carrying the request id or socket id it was logged under.

The ids live in context variables. gevent runs every request and every websocket in a
greenlet of its own, and each greenlet has its own context, so concurrent requests never
see each other's ids; a greenlet started in the background starts with none.
"""

import logging
import re
import secrets
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

#: What an incoming X-Request-ID may look like to be kept; anything else gets a fresh id.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CONTEXT_FIELDS = ("request_id", "sid", "namespace")

_request_id = ContextVar("request_id", default=None)
_socket = ContextVar("socket", default=(None, None))

#: Query parameters that carry a credential: a polling session id is one (whoever has it reads and acts as that
#: session), tokens are. Logs keep the first SID_PREFIX characters of a sid (to follow a session), nothing of a token.
SECRET_QUERY = re.compile(r"([?&](sid|token|access_token|auth)=)([^&\s\"]*)", re.IGNORECASE)
SID_PREFIX = 6
SID_WORKER_TAG = 8
#: Control characters (a newline in a token's header would forge a line of the text log).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Field names of a JSON line; gunicorn.conf.py formats gunicorn's own lines the same way.
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMES = {"levelname": "level", "name": "logger"}


class _ContextFilter(logging.Filter):
    """Adds ``request_id``, ``sid`` and ``namespace`` to a record when they are known."""

    def filter(self, record):
        sid, namespace = _socket.get()
        for name, value in zip(CONTEXT_FIELDS, (_request_id.get(), sid, namespace), strict=True):
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


def short_sid(sid):
    """An Engine.IO session id as logs show it: enough to follow a session, not enough to act as it.

    The worker's tag before a ``.`` (several workers, engine/handoff.py) is kept too: it is no secret.
    """
    if not sid:
        return "-"
    worker, separator, random_part = sid.partition(".")
    if not separator:
        return f"{sid[:SID_PREFIX]}..."
    return f"{worker[:SID_WORKER_TAG]}.{random_part[:SID_PREFIX]}..."


def redact_query(text):
    """``text`` (a URL or a request line) with the credentials in its query string cut out."""

    def redact(match):
        prefix, name, value = match.groups()
        kept = short_sid(value) if name.lower() == "sid" and value else "[redacted]"
        return prefix + kept

    return SECRET_QUERY.sub(redact, text)


def escape_control_characters(text):
    """Control characters as ``\\n``, ``\\x1b``, ...: one log record stays one line."""
    return CONTROL_CHARACTERS.sub(lambda match: repr(match.group())[1:-1], text)


class _TextFormatter(logging.Formatter):
    """The plain format, with ``[request_id=... sid=... namespace=...]`` at the end when known.

    Control characters in the message are escaped, so that what a client sent can never
    start a line of its own (a traceback, added after, keeps its lines).
    """

    def formatMessage(self, record):
        line = escape_control_characters(super().formatMessage(record))
        context = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name))
        return f"{line} [{context}]" if context else line


def configure_logging(level, log_format):
    """Send every log record to standard error, as ``text`` or ``json`` lines, at ``level``."""
    if log_format == "json":
        formatter = JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp=True)
    else:
        formatter = _TextFormatter(TEXT_FORMAT)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    handler.addFilter(_ContextFilter())
    handler.analytics_svc = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "analytics_svc", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def socket_context(sid, namespace):
    """Log the block's records with ``sid`` and ``namespace``."""
    token = _socket.set((sid, namespace))
    try:
        yield
    finally:
        _socket.reset(token)


def request_id_of(header_value):
    """The incoming ``X-Request-ID`` when it is short and safe to log, else a new random id."""
    if header_value and REQUEST_ID_PATTERN.fullmatch(header_value):
        return header_value
    return secrets.token_hex(16)


def with_request_ids(wsgi_app):
    """``wsgi_app`` giving every HTTP request an id: logged on each of its lines and returned as ``X-Request-ID``.

    It wraps the whole WSGI app, Socket.IO transport requests included. The id stays set
    in the request's greenlet after the response, so the server's access line carries it too.
    A function, not an object with ``__call__``: Python 3.11 runs a called Python function
    in its caller's C frame, an object's ``__call__`` in a new one, which the stack of every
    idle websocket's greenlet would then keep (docs/optimizations.md, memory).
    """

    def app(environ, start_response):
        request_id = request_id_of(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = request_id
        _request_id.set(request_id)

        def start_with_id(status, headers, exc_info=None):
            headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start_with_id)

    return app
