"""The per-socket moving-window event limit (app/realtime/ratelimit.py), on its own clock."""

import pytest

from app.realtime.ratelimit import EventRateLimit


def test_allows_the_amount_per_window_then_refuses_until_the_oldest_event_leaves_it():
    limit = EventRateLimit("3/second")
    session = {}
    assert [limit.hit(session, now) for now in (0.0, 0.1, 0.2)] == [True, True, True]
    assert limit.hit(session, 0.5) is False  # a refused event is not counted
    assert limit.hit(session, 0.99) is False
    assert limit.hit(session, 1.0) is True  # the event at 0.0 has left the window
    assert limit.hit(session, 1.05) is False
    assert limit.hit(session, 1.1) is True


def test_each_socket_has_its_own_window():
    limit = EventRateLimit("1/minute")
    first, second = {}, {}
    assert limit.hit(first, 0.0) and limit.hit(second, 0.0)
    assert not limit.hit(first, 59.0)
    assert limit.hit(first, 60.0)


@pytest.mark.parametrize("spec", ["30/second", "600/minute", "10 per second"])
def test_reads_the_notation_of_the_limits_library(spec):
    assert EventRateLimit(spec).amount in {30, 600, 10}
