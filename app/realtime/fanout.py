"""Turning committed changes into Socket.IO events for the rooms that have subscribers."""

import logging

from app import errors
from app.errors import AppError
from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE, room_for
from app.serializers import ACTION_ENTITY_DELETED, dashboard_replaced, dashboard_update, metric_update
from app.telemetry import observe_change_age

log = logging.getLogger(__name__)


class FanOut:
    """Emits ``metric:update`` and ``dashboard:update``; each packet is encoded once per emit.

    Emits are local to this process (``SocketServer.emit_local``): every process reads the
    change log itself, so passing them through a message queue as well would
    deliver each change once per process (docs/deployment.md).
    """

    def __init__(self, sio, activity=None, unsubscribe=None):
        self._sio = sio
        self._activity = activity  # a SocketActivity that remembers what was sent, or None
        # unsubscribe(namespace, tenant_id, entity_id): take every local socket off the entity; returns how many.
        self._unsubscribe = unsubscribe

    def batch(self):
        """A block whose emits leave each socket in one write at its end (``SocketServer.batch``)."""
        return self._sio.batch()

    def metric(self, change):
        """Send a metric change to the entity's room on ``/dashboard``, if anyone is there."""
        room = room_for(change.tenant_id, change.entity_id)
        if not self._sio.has_subscribers(DASHBOARD_NAMESPACE, room):
            return
        self._sio.emit_local("metric:update", metric_update(change), to=room, namespace=DASHBOARD_NAMESPACE)
        observe_change_age(change.recorded_at)
        if self._activity is not None:
            summary = f"{change.metric_name} = {change.value:g}"
            recipients = self._activity.room_size(DASHBOARD_NAMESPACE, room)
            self._activity.record(
                change.tenant_id, [change.entity_id], "metric:update", summary, recipients, seq=change.seq
            )

    def dashboard(self, change, users):
        """Send a layout change to the rooms of the tenant's entities in ``users``, on both namespaces.

        A socket subscribed to several of those entities gets the event once.
        """
        data = dashboard_update(change)
        if data is None:
            log.warning("skipping malformed layout change at seq %d", change.seq)
            return
        rooms = [room_for(tenant_id, entity_id) for tenant_id, entity_id in users if tenant_id == change.tenant_id]
        recipients = 0
        for namespace in (DASHBOARD_NAMESPACE, UPDATES_NAMESPACE):
            live = [room for room in rooms if self._sio.has_subscribers(namespace, room)]
            if live:
                self._sio.emit_local("dashboard:update", data, to=live, namespace=namespace)
                if self._activity is not None:
                    recipients += sum(self._activity.room_size(namespace, room) for room in live)
        if self._activity is not None and recipients:
            entity_ids = [entity_id for tenant_id, entity_id in users if tenant_id == change.tenant_id]
            summary = f"{data['action']}, version {data['version']}"
            self._activity.record(change.tenant_id, entity_ids, "dashboard:update", summary, recipients, seq=change.seq)

    def entity(self, change, history=None):
        """Tell the entity's subscribers, on both namespaces, that it shows another dashboard or was removed.

        ``replaced``: ``dashboard:update`` with the new dashboard's tiles (and ``history``
        for its ``line`` tiles, read by the poller). Removed:
        ``error`` ANALYTICS_1101, then the sockets are unsubscribed from it (and stay connected).
        """
        room = room_for(change.tenant_id, change.entity_id)
        payload = change.payload if isinstance(change.payload, dict) else {}
        if payload.get("action") == ACTION_ENTITY_DELETED:
            event = "error"
            data = AppError(errors.UNKNOWN_ENTITY, f"entity {change.entity_id!r} was removed").to_dict()
            summary = "entity removed"
        else:
            event = "dashboard:update"
            data = dashboard_replaced(change)
            if data is None:
                log.warning("skipping malformed entity change at seq %d", change.seq)
                return
            data["history"] = history or {}
            summary = f"replaced, dashboard {data['dashboardId'] if data['dashboardId'] is not None else 'none'}"
        recipients = 0
        for namespace in (DASHBOARD_NAMESPACE, UPDATES_NAMESPACE):
            if not self._sio.has_subscribers(namespace, room):
                continue
            self._sio.emit_local(event, data, to=room, namespace=namespace)
            if event == "error" and self._unsubscribe is not None:
                recipients += self._unsubscribe(namespace, change.tenant_id, change.entity_id)
            elif self._activity is not None:
                recipients += self._activity.room_size(namespace, room)
        if self._activity is not None and recipients:
            self._activity.record(change.tenant_id, [change.entity_id], event, summary, recipients, seq=change.seq)
