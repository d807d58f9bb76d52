"""Metric history: raw points and step buckets read from ``metric_points`` / ``metric_rollups``.

Points are placed by their timestamp ``t`` (Unix milliseconds). Buckets are
aligned to multiples of ``step`` since the Unix epoch; a bucket's ``last`` is
its value with the latest timestamp (ties: the highest seq). A step that is a
whole number of minutes reads the 1-minute rollups, any other step the raw
points: both give the same buckets while the raw points are kept.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, over, select, tuple_

from app import errors
from app.errors import AppError
from app.extensions import db
from app.models import MetricPoint, MetricRollup
from app.serializers import history_bucket, history_point, iso_ms
from app.services.changes import current_values
from app.services.entities import find_entity

#: Default and largest page of raw points.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
#: Most buckets one query may ask for ((to - from) / step).
MAX_BUCKETS = 10_000
#: Default range: the hour before ``to``.
DEFAULT_RANGE = timedelta(hours=1)
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A validated history request: ``[start, end]`` in Unix milliseconds, ``step`` in seconds or None."""

    start: int
    end: int
    step: int | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple | None = None  # (t, seq) of the last raw point of the previous page


def to_ms(moment):
    """Unix milliseconds of an aware datetime."""
    return math.floor(moment.timestamp() * 1000)


def parse_history_query(args, parse_timestamp, now):
    """Validate ``from``, ``to``, ``step``, ``limit`` and ``cursor`` (strings, as in a query string).

    ``parse_timestamp(payload, field)`` is ``validation.optional_timestamp``. Raises
    VALIDATION_FAILED naming the parameter.
    """
    unknown = set(args) - {"from", "to", "step", "limit", "cursor"}
    if unknown:
        raise AppError(errors.VALIDATION_FAILED, f"unknown parameter(s): {', '.join(sorted(unknown))}")
    end = parse_timestamp(args, "to") if "to" in args else now
    start = parse_timestamp(args, "from") if "from" in args else end - DEFAULT_RANGE
    if start > end:
        raise AppError(errors.VALIDATION_FAILED, "from must not be after to")
    start_ms, end_ms = to_ms(start), to_ms(end)
    step = None
    if "step" in args:
        step = _positive_int(args["step"], "step", 366 * 86400)
        if (end_ms - start_ms) // (step * 1000) + 1 > MAX_BUCKETS:
            raise AppError(errors.VALIDATION_FAILED, f"step is too small for the range: at most {MAX_BUCKETS} buckets")
    limit = _positive_int(args["limit"], "limit", MAX_LIMIT) if "limit" in args else DEFAULT_LIMIT
    after = _cursor(args["cursor"]) if "cursor" in args else None
    if after is not None and step is not None:
        raise AppError(errors.VALIDATION_FAILED, "cursor pages raw points: it cannot go with step")
    return HistoryQuery(start_ms, end_ms, step, limit, after)


def _positive_int(text, name, maximum):
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 12):
        raise AppError(errors.VALIDATION_FAILED, f"{name} must be a positive integer")
    value = int(text)
    if not 1 <= value <= maximum:
        raise AppError(errors.VALIDATION_FAILED, f"{name} must be between 1 and {maximum}")
    return value


def _cursor(text):
    """A cursor is ``<t>.<seq>``, as a page gives it in ``next``."""
    t, _, seq = str(text).partition(".")
    if not (t.lstrip("-").isdigit() and seq.isdigit() and len(text) <= 40):
        raise AppError(errors.VALIDATION_FAILED, "cursor must be the next value of an earlier page")
    return int(t), int(seq)


def metric_history(tenant_id, entity_id, metric_name, query):
    """The history of one metric of the tenant's entity (UNKNOWN_ENTITY when it has none such)."""
    find_entity(tenant_id, entity_id)
    result = {"entityId": entity_id, "metricName": metric_name}
    series = (tenant_id, entity_id, metric_name)
    if query.step is None:
        points, cursor = raw_points(series, query)
        result.update(points=points, next=cursor)
    else:
        result.update(step=query.step, points=buckets(series, query.start, query.end, query.step))
    return result


def raw_points(series, query):
    """One page of raw points ``[{t, value, seq}]`` oldest first, and the cursor of the next page (or None)."""
    columns = (MetricPoint.t, MetricPoint.value, MetricPoint.seq)
    condition = [*_series(MetricPoint, series), MetricPoint.t >= query.start, MetricPoint.t <= query.end]
    if query.after is not None:
        condition.append(tuple_(MetricPoint.t, MetricPoint.seq) > tuple_(*query.after))
    statement = select(*columns).where(*condition).order_by(MetricPoint.t, MetricPoint.seq).limit(query.limit + 1)
    rows = db.session.execute(statement).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = None
    if more:
        t, _, seq = rows[-1]
        cursor = f"{t}.{seq}"
    return [history_point(iso_ms(t), value, seq) for t, value, seq in rows], cursor


def buckets(series, start, end, step):
    """Buckets ``[{t, min, max, avg, last, count}]`` of ``step`` seconds covering ``[start, end]``, oldest first.

    Every bucket that holds a moment of the range is given whole; empty ones are left out.
    """
    step_ms = step * 1000
    first = _floor(start, step_ms)
    last = _floor(end, step_ms) + step_ms - 1
    if step_ms == MINUTE_MS:
        rows = _minutes(series, first, last)
    elif step_ms % MINUTE_MS == 0:
        rows = _rollup_buckets(series, first, last, step_ms // MINUTE_MS)
    else:
        rows = _point_buckets(series, first, last, step_ms)
    # PostgreSQL sums a bigint column as numeric: counts come back as Decimal there.
    return [
        history_bucket(iso_ms(int(bucket) * step_ms), low, high, total / int(count), latest, int(count))
        for bucket, low, high, total, count, latest in rows
    ]


def _floor(t, size):
    return t - t % size  # Python's % is a floor modulo, also for t < 0


def _series(model, series):
    tenant_id, entity_id, metric_name = series
    return (model.tenant_id == tenant_id, model.entity_id == entity_id, model.metric_name == metric_name)


def _bucket_of(column, size):
    """floor(column / size) in SQL, for negative values as well (SQL integer division truncates towards zero)."""
    return (column - ((column % size) + size) % size) // size


def _minutes(series, first, last):
    """Buckets of one minute: the rollup rows themselves."""
    statement = (
        select(
            MetricRollup.minute,
            MetricRollup.min_value,
            MetricRollup.max_value,
            MetricRollup.sum_value,
            MetricRollup.point_count,
            MetricRollup.last_value,
        )
        .where(
            *_series(MetricRollup, series),
            MetricRollup.minute >= first // MINUTE_MS,
            MetricRollup.minute <= last // MINUTE_MS,
        )
        .order_by(MetricRollup.minute)
    )
    return db.session.execute(statement).all()


def _point_buckets(series, first, last, step_ms):
    bucket = _bucket_of(MetricPoint.t, step_ms).label("bucket")
    newest = over(func.row_number(), partition_by=bucket, order_by=(MetricPoint.t.desc(), MetricPoint.seq.desc()))
    inner = (
        select(bucket, MetricPoint.value, newest.label("rank"))
        .where(*_series(MetricPoint, series), MetricPoint.t >= first, MetricPoint.t <= last)
        .subquery()
    )
    statement = (
        select(
            inner.c.bucket,
            func.min(inner.c.value),
            func.max(inner.c.value),
            func.sum(inner.c.value),
            func.count(),
            func.max(_when_first(inner.c.rank, inner.c.value)),
        )
        .group_by(inner.c.bucket)
        .order_by(inner.c.bucket)
    )
    return db.session.execute(statement).all()


def _rollup_buckets(series, first, last, minutes):
    bucket = _bucket_of(MetricRollup.minute, minutes).label("bucket")
    newest = over(
        func.row_number(), partition_by=bucket, order_by=(MetricRollup.last_t.desc(), MetricRollup.last_seq.desc())
    )
    inner = (
        select(
            bucket,
            MetricRollup.min_value,
            MetricRollup.max_value,
            MetricRollup.sum_value,
            MetricRollup.point_count,
            MetricRollup.last_value,
            newest.label("rank"),
        )
        .where(
            *_series(MetricRollup, series),
            MetricRollup.minute >= first // MINUTE_MS,
            MetricRollup.minute <= last // MINUTE_MS,
        )
        .subquery()
    )
    statement = (
        select(
            inner.c.bucket,
            func.min(inner.c.min_value),
            func.max(inner.c.max_value),
            func.sum(inner.c.sum_value),
            func.sum(inner.c.point_count),
            func.max(_when_first(inner.c.rank, inner.c.last_value)),
        )
        .group_by(inner.c.bucket)
        .order_by(inner.c.bucket)
    )
    return db.session.execute(statement).all()


def _when_first(rank, value):
    """The value of the bucket's newest row (rank 1), to be picked out with max()."""
    return case((rank == 1, value))


def chart_step(window, points):
    """The step (seconds) of a chart of ``window`` seconds with at most ``points`` points.

    From 30 s up, whole minutes, so that the chart reads the 1-minute rollups.
    """
    step = max(1, math.ceil(window / points))
    return step if step < 30 else math.ceil(step / 60) * 60


def chart_history(tenant_id, entity_id, metric_names, config, current=None):
    """:func:`recent_history` with ``config``'s HISTORY_WINDOW and HISTORY_POINTS, as of now.

    ``current`` (``{metricName: value}``) is read from ``metric_values`` when not given.
    """
    if not metric_names:
        return {}
    if current is None:
        current = current_values(tenant_id, entity_id, metric_names)
    window, points = config["HISTORY_WINDOW"], config["HISTORY_POINTS"]
    return recent_history(tenant_id, entity_id, metric_names, current, window, points, datetime.now(UTC))


def recent_history(tenant_id, entity_id, metric_names, current, window, points, now):
    """``{metricName: [{t, value}]}`` for a chart of the last ``window`` seconds, at most ``points`` points each.

    Each point is the last value of its bucket, oldest first; the last point is
    the metric's ``current`` value (``{metricName: value}``) when it has one.
    """
    step = chart_step(window, points)
    end = to_ms(now)
    start = end - math.floor(window * 1000)
    series = {}
    for name in sorted(set(metric_names)):
        chart = [{"t": b["t"], "value": b["last"]} for b in buckets((tenant_id, entity_id, name), start, end, step)]
        chart = chart[-points:]  # the range may touch one bucket more than the window holds
        if name in current:
            if chart:
                chart[-1]["value"] = current[name]
            else:
                chart = [{"t": iso_ms(_floor(end, step * 1000)), "value": current[name]}]
        series[name] = chart
    return series
