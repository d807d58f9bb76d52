"""Prometheus metrics: every metric of the service, the helpers that record them, and ``GET /metrics``.

The metrics live in prometheus_client's process-wide registry, as its documentation
recommends. Under gunicorn, ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
any worker imports prometheus_client: each worker then writes its values to files in that
directory and ``/metrics``, whichever worker answers it, reports the sum over all workers
(gauges over the live workers only). Without the variable (``flask`` CLI, one process)
``/metrics`` reports the process itself.
"""

import time
from datetime import UTC

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from app.background import BackgroundLoop

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: How often each worker counts its sockets and subscriptions.
SOCKET_SAMPLE_INTERVAL = 1.0

SOCKETS = Gauge(
    "analytics_socketio_connected_sockets",
    "Sockets connected, per namespace.",
    ["namespace"],
    multiprocess_mode="livesum",
)
PARKED_WEBSOCKETS = Gauge(
    "analytics_socket_parked_websockets",
    "Open websockets held without a greenlet, waiting for their client's next message (all of them but those "
    "being read from, over TLS, or with writes waiting on their first park).",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "analytics_socketio_subscriptions",
    "Entity subscriptions (socket and entity pairs), per namespace.",
    ["namespace"],
    multiprocess_mode="livesum",
)
REFUSALS = Counter(
    "analytics_socket_refusals_total",
    "Connections closed for what their client sent or failed to send, by reason: too_large (a message over "
    "SOCKET_MAX_MESSAGE_BYTES, refused by its frame header), binary (binary frames, events or acks), protocol "
    "(unmasked or malformed frames), utf8 (text that is not UTF-8), malformed (Socket.IO packets that do not "
    "decode, or that no client sends), unconnected_flood (more than 10 packets before a namespace is connected), "
    "connect_timeout (no namespace connected within SOCKET_CONNECT_TIMEOUT).",
    ["reason"],
)
HANDOFFS = Counter(
    "analytics_socketio_handoffs_total",
    "Requests of a Socket.IO session that reached another worker than the one holding the session, by result: "
    "sent (this worker handed the connection over), taken (this worker took one over), failed (the owner was gone, "
    "or the request too large: answered as one of an unknown session).",
    ["result"],
)
PACKETS_WRITTEN = Counter(
    "analytics_socketio_packets_written_total",
    "Packets handed to sockets, by path: direct (written at once to an idle websocket) or queued "
    "(engine.io's per-socket queue: polling, a socket still upgrading, or one with packets waiting).",
    ["path"],
)
OUTPUT_BACKLOG = Gauge(
    "analytics_socket_output_backlog",
    "Websocket writes waiting for clients that read slower than they are sent to, summed over sockets.",
    multiprocess_mode="livesum",
)
EMITS = Counter(
    "analytics_socketio_emits_total",
    "Socket.IO emits by the server (one per emit call, whatever the number of recipients), per event.",
    ["namespace", "event"],
)
ERRORS = Counter(
    "analytics_errors_total",
    "Errors answered to clients, by catalogue code and by where: http (REST and health answers), "
    "socket (error events) or connect (refused Socket.IO connections).",
    ["code", "source"],
)
HTTP_REQUESTS = Counter(
    "analytics_http_requests_total",
    "HTTP requests answered by the Flask app (not Socket.IO transport requests).",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "analytics_http_request_duration_seconds",
    "Time from the start of request handling to the response, by route template.",
    ["method", "route", "status"],
)
POLL_DURATION = Histogram(
    "analytics_poll_duration_seconds",
    "Duration of one change-poller tick (read the change log and emit what it found).",
    buckets=_LATENCY_BUCKETS,
)
POLL_ROWS = Histogram(
    "analytics_poll_rows",
    "Change-log rows read per poller tick.",
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)
POLL_SKIPS = Counter(
    "analytics_poll_skips_total",
    "Poller rounds that skipped the query: SQLite said nothing was committed since the last (PRAGMA data_version).",
)
UNAVAILABLE = Counter(
    "analytics_dependency_unavailable_total",
    "Requests, subscribes, poll ticks and readiness checks that met a dependency down, by dependency (database, "
    "redis) and source (http, admin, socket, poll, listener, readiness). Requests and subscribes that met the "
    "database down were answered 503 / error ANALYTICS_1300.",
    ["dependency", "source"],
)
POLL_FAILURES = Counter("analytics_poll_failures_total", "Poller ticks that failed (for example, database down).")
POLL_ANNOUNCED = Counter(
    "analytics_poll_announced_total",
    "Poller ticks that delivered changes this process committed (REST writes) as announced, without a query.",
)
RETENTION_PRUNED = Counter(
    "analytics_retention_pruned_rows_total",
    "Rows deleted by retention, per table: metric_points, metric_rollups, change_log.",
    ["table"],
)
OLDEST_ROW_AGE = Gauge(
    "analytics_oldest_row_age_seconds",
    "Age of the oldest row per table after the last retention run (points and rollups by their timestamp, "
    "change_log by the recorded_at of its lowest seq).",
    ["table"],
    multiprocess_mode="livemostrecent",
)
NOTIFICATION_LAG = Histogram(
    "analytics_notification_lag_seconds",
    "Delay between a change-feed notification being sent and being received by a worker.",
    buckets=_LATENCY_BUCKETS,
)
CHANGE_AGE = Histogram(
    "analytics_change_age_at_emit_seconds",
    "Age of a metric change when it is emitted: emit time minus the change's recorded_at "
    "(the writer's own timestamp when it gave one).",
    buckets=(*_LATENCY_BUCKETS, 30.0, 60.0, 300.0),
)


def count_error(code, source):
    """Count one error answered to a client: ``source`` is ``http``, ``socket`` or ``connect``."""
    ERRORS.labels(code, source).inc()


def observe_poll(seconds, rows):
    """Record one poller tick: how long it took and how many change-log rows it read."""
    POLL_DURATION.observe(seconds)
    POLL_ROWS.observe(rows)


def observe_retention(removed, ages):
    """Count what a retention run deleted and set the age of each table's oldest row."""
    for table, count in removed.items():
        RETENTION_PRUNED.labels(table).inc(count)
    for table, age in ages.items():
        OLDEST_ROW_AGE.labels(table).set(age)


def observe_notification_lag(seconds):
    """Record the delay of one change-feed notification (e.g. PostgreSQL NOTIFY to LISTEN)."""
    NOTIFICATION_LAG.observe(max(seconds, 0.0))


def set_output_backlog(writes):
    """Set the websocket writes waiting for slow readers in this process (``BacklogWatch`` counts them)."""
    OUTPUT_BACKLOG.set(writes)


def observe_change_age(recorded_at):
    """Record how old a change is at emit time; naive datetimes are taken as UTC."""
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    CHANGE_AGE.observe(max(time.time() - recorded_at.timestamp(), 0.0))


class SocketSampler(BackgroundLoop):
    """Sets the socket gauges of this worker from the Socket.IO server's rooms, and its write counts.

    Sampling counts the rooms python-socketio keeps anyway, so connect, disconnect,
    subscribe and unsubscribe carry no bookkeeping of their own and the gauges cannot drift.
    Packet counts are plain integers on the server (a Prometheus update per packet would
    cost as much as the write), added here once a second.
    """

    def __init__(self, sio, interval=SOCKET_SAMPLE_INTERVAL):
        super().__init__(sio, interval)
        self._written = {"direct": 0, "queued": 0}
        self._refused = {}
        self._handoffs = {}

    def step(self):
        """Count the sockets and subscriptions of every registered namespace, and the packets written."""
        self._count_writes()
        for namespace, (connected, subscriptions) in self._sio.room_counts().items():
            SOCKETS.labels(namespace).set(connected)
            SUBSCRIPTIONS.labels(namespace).set(subscriptions)
        PARKED_WEBSOCKETS.set(self._sio.parked_count())

    def _count_writes(self):
        counts = {"direct": self._sio.direct_writes, "queued": self._sio.queued_writes}
        for path, count in counts.items():
            PACKETS_WRITTEN.labels(path).inc(count - self._written[path])
        self._written = counts
        refused = self._sio.refused_counts()
        for reason, count in refused.items():
            REFUSALS.labels(reason).inc(count - self._refused.get(reason, 0))
        self._refused = refused
        handoffs = self._sio.handoff_counts()
        for result, count in handoffs.items():
            HANDOFFS.labels(result).inc(count - self._handoffs.get(result, 0))
        self._handoffs = handoffs


def count_unavailable(dependency, source):
    """Count one request, subscribe or tick that met ``dependency`` down (``database.Outage``)."""
    UNAVAILABLE.labels(dependency, source).inc()


def count_emit(event, data, namespace):
    """Count one emit by the server (``SocketServer.emit_observer``); an ``error`` event also counts as an error."""
    EMITS.labels(namespace or "/", event).inc()
    if event == "error" and isinstance(data, dict) and "code" in data:
        count_error(data["code"], "socket")


bp = Blueprint("telemetry", __name__)


@bp.get("/metrics")
def metrics():
    """Prometheus text format (or OpenMetrics, when the scraper asks for it): of every worker in
    multi-process mode, else of this process."""
    directory = current_app.config["PROMETHEUS_MULTIPROC_DIR"]
    registry = REGISTRY
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    return Response(encode(registry), headers={"Content-Type": content_type})


def _start_timer():
    g.telemetry_started = time.perf_counter()


def _count_request(response):
    # The route template ("/api/v1/entities/<entity_id>"), never the raw path, bounds the label values.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    method = request.method if request.method in _HTTP_METHODS else "other"
    status = str(response.status_code)
    HTTP_REQUESTS.labels(method, route, status).inc()
    started = g.get("telemetry_started")
    if started is not None:
        HTTP_DURATION.labels(method, route, status).observe(time.perf_counter() - started)
    return response


def init_telemetry(app, realtime=None):
    """Serve ``/metrics`` and count HTTP requests; with ``realtime`` (the Socket.IO server's owner, absent in the
    REST-only app), count emits and socket errors and sample the socket gauges too."""
    app.register_blueprint(bp)
    app.before_request(_start_timer)
    app.after_request(_count_request)
    if realtime is None:
        return
    realtime.sio.emit_observer = count_emit
    realtime.add_background(SocketSampler(realtime.sio))
