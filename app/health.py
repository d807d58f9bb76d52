"""Liveness (``/healthz``) and readiness (``/readyz``).

Liveness answers whether this process should be restarted: it checks nothing outside the
process, so a database outage never makes an orchestrator restart every healthy worker.
Readiness answers whether the process should get traffic: the database must answer, and
Redis too when ``REDIS_URL`` is set, and the process must not be shutting down (the REST-only
app never is: it has no sockets to drain). Each check is bounded by ``READINESS_TIMEOUT`` in
the full server (see ``_time_limit`` for the REST-only app).
"""

import contextlib
import logging

import gevent
import redis
from flask import Blueprint, current_app
from gevent import monkey
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import text

from app import errors
from app.database import database_outage, redis_outage
from app.errors import AppError
from app.extensions import db
from app.telemetry import count_error

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """200 ``{"status": "ok", "checks": {"process": "ok"}}`` whenever the process serves requests."""
    return {"status": "ok", "checks": {"process": "ok"}}


@bp.get("/readyz")
def readyz():
    """200 with every check ``ok``, or 503 (ANALYTICS_1300) naming the dependencies that do not answer."""
    timeout = current_app.config["READINESS_TIMEOUT"]
    checks = {"database": _check(database_outage(), _ping_database, timeout)}
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        checks["redis"] = _check(redis_outage(), lambda: _ping_redis(redis_url, timeout), timeout)
    realtime = current_app.extensions.get("realtime")  # none in the REST-only app: no draining there
    if realtime is not None and realtime.draining:
        checks["process"] = "shutting down"
    failed = [name for name, state in checks.items() if state != "ok"]
    if not failed:
        return {"status": "ok", "checks": checks}
    error = AppError(errors.UNAVAILABLE, f"service unavailable: {', '.join(failed)} not ready")
    count_error(error.error.code, "http")
    return {"status": "unavailable", "checks": checks, **error.to_dict()}, 503, {"Retry-After": "1"}


def _check(outage, ping, timeout):
    """Run ``ping`` within ``timeout`` seconds: ``"ok"``, or ``"unreachable"`` when it fails or hangs.

    A failure is told to ``outage`` (a ``database.Outage``), which logs the first of an outage, not every probe.
    """
    try:
        with _time_limit(timeout):
            ping()
    except (Exception, gevent.Timeout) as exc:
        outage.failed("readiness", exc)
        return "unreachable"
    outage.recovered("readiness")
    return "ok"


def _time_limit(seconds):
    """``gevent.Timeout`` in a gevent-patched process (the full server), else nothing.

    Unpatched (the REST-only app under a synchronous server) a blocking call never
    yields to gevent's hub, so nothing could interrupt it: the drivers' own timeouts
    bound the probe there (Redis: ``READINESS_TIMEOUT``; the database:
    ``DATABASE_CONNECT_TIMEOUT``, and ``DATABASE_POOL_TIMEOUT`` for a pooled connection).
    """
    if monkey.is_module_patched("socket"):
        return gevent.Timeout(seconds)
    return contextlib.nullcontext()


def _ping_database():
    db.session.execute(text("SELECT 1"))


def _ping_redis(url, timeout):
    # No retries: the probe reports the state now; the caller asks again.
    no_retry = Retry(NoBackoff(), 0)
    with redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=no_retry) as client:
        client.ping()
