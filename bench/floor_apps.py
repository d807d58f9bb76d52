"""The least a REST metric write can cost on this stack: WSGI apps that do only part of ours's work.

Served by ``bench.floor`` under gunicorn with gevent-websocket's worker (one worker, as ours):

- ``wsgi``: a bare WSGI function that reads the body and answers 201 with a small JSON body;
- ``wsgi_sqlite``: the same, and it parses the JSON and appends the point to ours's ``change_log``
  (its triggers move ``metric_values``) with Python's ``sqlite3`` in one ``BEGIN IMMEDIATE`` .. ``COMMIT``;
- ``flask``: a bare Flask app with one view, ``POST /api/v1/metrics``, answering as ``wsgi``;
- ``flask_sqlite``: that view doing ``wsgi_sqlite``'s write.

No token, no validation, no poller, no fan-out: each is a floor, not a server. ``FLOOR_DATABASE``
names ours's SQLite file (migrated by ours), ``FLOOR_TENANT`` the tenant whose entities it writes to.
"""

import json
import os
import sqlite3

from flask import Flask, request

_INSERT = (
    "INSERT INTO change_log (tenant_id, kind, entity_id, metric_name, value) "
    "VALUES (?, 'metric', ?, ?, ?) RETURNING seq"
)
_connection = None


def _append(body):
    """Append the point in ``body`` (ours's JSON shape) to ours's change log; return its seq."""
    global _connection
    if _connection is None:
        _connection = sqlite3.connect(os.environ["FLOOR_DATABASE"], isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
            _connection.execute(f"PRAGMA {pragma}")
    point = json.loads(body)
    _connection.execute("BEGIN IMMEDIATE")
    try:
        params = (os.environ["FLOOR_TENANT"], point["entityId"], point["metricName"], point["value"])
        seq = _connection.execute(_INSERT, params).fetchone()[0]
        _connection.execute("COMMIT")
    except BaseException:
        _connection.execute("ROLLBACK")
        raise
    return seq


def _answer(start_response, seq):
    body = json.dumps({"accepted": 1, "lastSeq": seq}).encode()
    start_response("201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def wsgi(environ, start_response):
    environ["wsgi.input"].read()
    return _answer(start_response, 0)


def wsgi_sqlite(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":  # the readiness check
        return _answer(start_response, 0)
    return _answer(start_response, _append(environ["wsgi.input"].read()))


flask = Flask("floor")
flask_sqlite = Flask("floor_sqlite")


@flask.post("/api/v1/metrics")
def _flask_view():
    request.get_data()
    return {"accepted": 1, "lastSeq": 0}, 201


@flask_sqlite.post("/api/v1/metrics")
def _flask_sqlite_view():
    return {"accepted": 1, "lastSeq": _append(request.get_data())}, 201


@flask.get("/healthz")
@flask_sqlite.get("/healthz")
def _healthz():
    return {"status": "ok"}
