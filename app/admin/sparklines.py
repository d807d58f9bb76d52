"""Sparklines of the admin dashboard page: chart history scaled into a small inline SVG.

The page runs under a strict Content-Security-Policy (app/headers.py: no inline
scripts or styles), so the chart is drawn on the server as an SVG ``<polyline>``
whose look comes from app.css. Like the live page's charts (app/static/dashboard.js),
the points are spaced evenly in their order, oldest first.
"""

from dataclasses import dataclass

#: The sparkline's viewBox is ``0 0 WIDTH HEIGHT``; the CSS stretches it to its box.
WIDTH = 100
HEIGHT = 24
#: Room kept above and below the line so that the stroke is not cut off.
MARGIN = 2
VIEW_BOX = f"0 0 {WIDTH} {HEIGHT}"


@dataclass(frozen=True, slots=True)
class Sparkline:
    """What the template draws: the polyline's ``points``, how many, and the values to name in words."""

    points: str
    count: int
    low: float | None
    high: float | None
    last: float | None
    view_box: str = VIEW_BOX


def sparkline(history):
    """The sparkline of chart history ``[{t, value}]`` (oldest first): one ``x,y`` per point.

    The lowest value sits at the bottom and the highest at the top; a flat series
    is drawn at the bottom, a single point in the middle.
    """
    values = [point["value"] for point in history]
    if not values:
        return Sparkline("", 0, None, None, None)
    low, high = min(values), max(values)
    span = (high - low) or 1
    step = WIDTH / (len(values) - 1) if len(values) > 1 else 0
    drawn = HEIGHT - 2 * MARGIN
    points = " ".join(
        f"{i * step if step else WIDTH / 2:.2f},{HEIGHT - MARGIN - (value - low) / span * drawn:.2f}"
        for i, value in enumerate(values)
    )
    return Sparkline(points, len(values), low, high, values[-1])


def metric_value(value, unit=""):
    """``1234.5, "/min"`` -> ``1,234.5/min``: at most two decimals, with the unit as the live page writes it."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    if not unit:
        return text
    return text + unit if unit == "%" or unit.startswith("/") else f"{text} {unit}"


def duration(seconds):
    """``3600`` -> ``1 h``: a whole number of the largest unit (d, h, min, s) that divides ``seconds``."""
    seconds = round(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
