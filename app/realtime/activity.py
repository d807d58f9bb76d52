"""What this process's sockets are doing: who is subscribed now, and the last events sent.

Per server process: with several gunicorn workers each one knows only its own
sockets and emits (docs/admin.md). The admin page reads it; the fan-out and the
namespaces report to it.
"""

import itertools
import time
from collections import deque

from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE, room_for

#: Events remembered per (tenant, entity).
EVENTS_KEPT = 20


class SocketActivity:
    """Subscriber counts read from the Socket.IO rooms, and a small ring buffer of emits per entity."""

    def __init__(self, sio, kept=EVENTS_KEPT):
        self._sio = sio
        self._kept = kept
        self._events = {}  # (tenant_id, entity_id) -> deque of event dicts, newest last
        self._ids = itertools.count(1)

    def subscriber_count(self, tenant_id, entity_ids):
        """Sockets (one per namespace connection) subscribed right now to any of the tenant's ``entity_ids``."""
        rooms = [room_for(tenant_id, entity_id) for entity_id in entity_ids]
        return sum(len(self._sio.subscribers(ns, rooms)) for ns in (DASHBOARD_NAMESPACE, UPDATES_NAMESPACE))

    def record(self, tenant_id, entity_ids, event, summary, recipients):
        """Remember that ``event`` went to the rooms of ``entity_ids`` (``recipients`` sockets)."""
        entry = {
            "id": next(self._ids),
            "at": time.time(),
            "event": event,
            "summary": summary,
            "recipients": recipients,
        }
        for entity_id in entity_ids:
            key = (tenant_id, entity_id)
            if key not in self._events:
                self._events[key] = deque(maxlen=self._kept)
            self._events[key].append(entry)

    def recent(self, tenant_id, entity_ids, limit=10):
        """The last ``limit`` events sent for any of the tenant's ``entity_ids``, newest first."""
        seen = {}
        for entity_id in entity_ids:
            for entry in self._events.get((tenant_id, entity_id), ()):
                seen[entry["id"]] = entry
        return sorted(seen.values(), key=lambda e: e["id"], reverse=True)[:limit]

    def room_size(self, namespace, room):
        """Sockets in one room of one namespace."""
        return self._sio.subscriber_count(namespace, room)
