"""The two Socket.IO namespaces of the seed API, as namespace classes.

Handlers validate, call one rule, and answer; per-connection data lives in the
Socket.IO session and subscriptions are rooms.
"""

import logging
from datetime import UTC, datetime

import socketio

from app import errors
from app.auth import verify_token
from app.errors import AppError
from app.logs import socket_context
from app.realtime.ratelimit import EventRateLimit
from app.realtime.rooms import DASHBOARD_NAMESPACE, UPDATES_NAMESPACE, room_for
from app.serializers import iso_utc
from app.telemetry import count_error
from app.validation import optional_seq, require_choice, require_id, require_object

log = logging.getLogger(__name__)

#: Client events and the methods that handle them.
EVENTS = {"subscribe": "on_subscribe", "unsubscribe": "on_unsubscribe", "auth:refresh": "on_auth_refresh"}


class EntityNamespace(socketio.Namespace):
    """Authenticated connection, ``subscribe`` / ``unsubscribe``, and errors as ``error`` events."""

    #: A SocketActivity told about each ``dashboard:initial`` sent, or None.
    activity = None

    def __init__(self, namespace, config, poller, expiry):
        super().__init__(namespace)
        self._config = config
        self._poller = poller
        self._expiry = expiry
        self._rate_limit = EventRateLimit(config["SOCKET_RATE_LIMIT"])

    def trigger_event(self, event, *args):
        """Route an event with the socket's ``sid`` and namespace on every log line it causes."""
        with socket_context(args[0], self.namespace):
            return self._route_event(event, *args)

    def _route_event(self, event, *args):
        """Route an event; answer bad input and failures with ``error`` and keep the connection."""
        sid, payload = args[0], args[1:]
        # python-socketio also routes client EVENT packets named "connect" or
        # "disconnect" here. Only a real handshake finds the session empty: a
        # successful connect always saves one.
        if event == "connect" and len(args) == 3 and not self.get_session(sid):
            return self.on_connect(*args)
        if event == "disconnect" and not self.server.is_connected(sid, self.namespace):
            return self.on_disconnect(*args)
        try:
            with self.session(sid) as session:
                allowed = self._rate_limit.hit(session)
            if not allowed:
                raise AppError(errors.RATE_LIMITED, "too many events; slow down")
            name = EVENTS.get(event) if isinstance(event, str) else None
            if name is None:
                raise AppError(errors.UNKNOWN_EVENT, f"unknown event {str(event)[:64]!r}")
            return getattr(self, name)(sid, *payload[:1])
        except AppError as exc:
            body = exc.to_dict()
        except Exception:
            log.exception("event %r from %s failed", event, sid)
            body = AppError(errors.INTERNAL).to_dict()
        # A flood logs nothing; nor does a database outage here (app.database.Outage logs it once).
        quiet = body["code"] in (errors.RATE_LIMITED.code, errors.UNAVAILABLE.code)
        level = logging.DEBUG if quiet else logging.INFO
        log.log(level, "event %r answered with error %s: %s", str(event)[:64], body["code"], body["message"])
        self.emit("error", body, to=sid, ignore_queue=True)
        return {"ok": False, "error": body}

    def on_connect(self, sid, _environ, auth):
        """Accept the connection only with a valid token carrying a tenant."""
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            principal = verify_token(token, self._config)
        except AppError as exc:
            count_error(exc.error.code, "connect")
            log.info("connection refused with %s: %s", exc.error.code, exc.message)
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.to_dict()) from None
        self.save_session(sid, {"tenant_id": principal.tenant_id, "subject": principal.subject})
        self._expiry.watch(sid, self.namespace, principal.expires_at)

    def on_disconnect(self, sid, _reason=None):
        """Rooms are left by the server itself; only the expiry watch needs telling."""
        self._expiry.forget(sid, self.namespace)

    def on_subscribe(self, sid, payload=None):
        """``subscribe {entityId, entityType, sinceSeq?}``: join the entity's room, send its state.

        ``dashboard:initial``; with ``sinceSeq``, ``dashboard:resume`` when every change
        after it can be sent (else ``dashboard:initial`` with ``recovered: false``).
        """
        payload = require_object(payload, errors.INVALID_PAYLOAD)
        entity_id = require_id(payload, "entityId", self._config["MAX_ID_LENGTH"], errors.INVALID_PAYLOAD)
        entity_type = require_choice(payload, "entityType", self._config["ENTITY_TYPES"], errors.INVALID_PAYLOAD)
        since_seq = optional_seq(payload, "sinceSeq", errors.INVALID_PAYLOAD)
        session = self.get_session(sid)
        tenant_id = session["tenant_id"]
        # The socket's subscriptions are kept in its session: asking python-socketio for
        # a socket's rooms scans every room of the namespace.
        subscribed = session.get("entities", ())
        if entity_id not in subscribed and len(subscribed) >= self._config["MAX_SUBSCRIPTIONS_PER_CONNECTION"]:
            raise AppError(
                errors.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self._config['MAX_SUBSCRIPTIONS_PER_CONNECTION']} subscriptions per connection",
            )
        sent = self._poller.subscribe(sid, self.namespace, tenant_id, entity_id, entity_type, since_seq)
        if sent is None:
            return {"ok": True, "seq": None}
        event, state = sent
        with self.session(sid) as session:
            session.setdefault("entities", set()).add(entity_id)
        if self.activity is not None:
            if event == "dashboard:initial":
                summary = f"{len(state['tiles'])} tiles, version {state['version']}"
            else:
                counts = f"{len(state['metrics'])} metrics, {len(state['updates'])} layout changes"
                summary = f"from seq {state['fromSeq']}: {counts}"
            self.activity.record(tenant_id, [entity_id], event, summary, 1)
        answer = {"ok": True, "seq": state["seq"]}
        if since_seq is not None:
            answer["recovered"] = event == "dashboard:resume"
        return answer

    def on_auth_refresh(self, sid, payload=None):
        """``auth:refresh {token}``: a new token of the same tenant (and subject) moves the connection's expiry.

        The token passes every check of the handshake; a refused one leaves the old expiry.
        """
        payload = require_object(payload, errors.INVALID_PAYLOAD)
        token = payload.get("token")
        principal = verify_token(token if isinstance(token, str) else None, self._config)
        session = self.get_session(sid)
        if principal.tenant_id != session["tenant_id"]:
            raise AppError(errors.INVALID_TOKEN, "invalid token: it is for another tenant than the connection's")
        if session.get("subject") and principal.subject != session["subject"]:
            raise AppError(errors.INVALID_TOKEN, "invalid token: it is for another subject than the connection's")
        self._expiry.watch(sid, self.namespace, principal.expires_at)
        return {"ok": True, "expiresAt": iso_utc(datetime.fromtimestamp(principal.expires_at, UTC))}

    def on_unsubscribe(self, sid, payload=None):
        """``unsubscribe {entityId}``: leave the entity's room; nothing more reaches this socket for it."""
        payload = require_object(payload, errors.INVALID_PAYLOAD)
        entity_id = require_id(payload, "entityId", self._config["MAX_ID_LENGTH"], errors.INVALID_PAYLOAD)
        with self.session(sid) as session:
            session.setdefault("entities", set()).discard(entity_id)
        self.leave_room(sid, room_for(session["tenant_id"], entity_id))
        return {"ok": True}


def unsubscribe_all(sio, namespace, tenant_id, entity_id):
    """Take every socket of this process on ``namespace`` off the entity (it was removed); return how many."""
    room = room_for(tenant_id, entity_id)
    sids = sio.subscribers(namespace, [room])
    for sid in sids:
        with sio.session(sid, namespace=namespace) as session:
            session.setdefault("entities", set()).discard(entity_id)
        sio.leave_room(sid, room, namespace=namespace)
    return len(sids)


def namespaces_for(config, poller, expiry):
    """The namespace objects to register: ``/dashboard`` and ``/analytics/dashboard``."""
    return [EntityNamespace(ns, config, poller, expiry) for ns in (DASHBOARD_NAMESPACE, UPDATES_NAMESPACE)]
