"""The per-socket event rate limit, kept in the socket's session."""

import time
from array import array

from limits import parse as parse_rate


class EventRateLimit:
    """At most ``amount`` events per ``period`` seconds per socket, over a moving window.

    Each socket's recent event times live in its Socket.IO session and go with it,
    so the cost of a check is constant and nothing needs sweeping. (``limits``'
    MemoryStorage sweeps every key it has seen, a cost that grows with the sockets
    held; docs/optimizations.md.) They are an array of at most ``amount`` doubles,
    oldest first: an empty deque costs every connection more memory than that.
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
