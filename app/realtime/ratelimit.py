"""The per-socket event rate limit, kept in the socket's session."""

import time
from array import array

from limits import parse as parse_rate


class EventRateLimit:
    """At most ``amount`` events per ``period`` seconds per socket, over a moving window.

    Each socket's recent event times live in its Socket.IO session and go with it,
    so the cost of a check is constant and nothing needs sweeping. (``limits``'
    MemoryStorage sweeps every key every 10 ms, which grew with the sockets held
    and took most of a connection storm's CPU; docs/benchmarks.md.) They are an
    array of at most ``amount`` doubles, oldest first: a deque costs every
    connection about 700 bytes however few events it sent.
    """

    def __init__(self, spec):
        item = parse_rate(spec)
        self.amount = item.amount
        self.period = float(item.get_expiry())

    def hit(self, session, now=None):
        """Count one event of the socket whose ``session`` this is; False when it is over the limit."""
        now = time.monotonic() if now is None else now
        recent = session.get("event_times")
        if recent is None:
            recent = session["event_times"] = array("d")
        if len(recent) == self.amount:
            if now - recent[0] < self.period:
                return False
            del recent[0]
        recent.append(now)
        return True
