"""The Socket.IO server: python-socketio's, writing packets straight to open websockets.

Besides the fast paths, it answers what the rest of the app asks about sockets
and rooms (``is_connected``, ``has_subscribers``, ``room_counts``, ...), so that
nothing outside this package reads python-socketio's room bookkeeping.
"""

import contextlib
import logging

import socketio
from engineio import packet
from socketio import packet as socketio_packet

from app.logs import short_sid
from app.realtime.engine.eio import EngineServer
from app.realtime.engine.websocket import text_frame, websocket_driver

log = logging.getLogger(__name__)

#: The first character of a Socket.IO BINARY_EVENT or BINARY_ACK packet.
BINARY_PACKET_TYPES = (str(socketio_packet.BINARY_EVENT), str(socketio_packet.BINARY_ACK))


#: What a client may send: CONNECT, DISCONNECT, EVENT and ACK.
CLIENT_PACKET_TYPES = tuple(
    str(kind)
    for kind in (socketio_packet.CONNECT, socketio_packet.DISCONNECT, socketio_packet.EVENT, socketio_packet.ACK)
)


#: The WSGI environ key under which the app puts a request's client address (``REMOTE_ADDR``, or the address a
#: trusted proxy forwarded for); connections are counted per address under it.
CLIENT_ADDRESS_KEY = "analytics.client_address"

#: Packets a connection may send before a namespace is connected on it: CONNECTs to both namespaces and a few
#: retries. A client sending more without a token is flooding.
UNCONNECTED_PACKET_LIMIT = 10


def _well_formed(packet_class, data):
    """True when ``data`` decodes to a packet a client may send, an EVENT with a string event name first."""
    if data[:1] not in CLIENT_PACKET_TYPES:
        return False
    try:
        pkt = packet_class(encoded_packet=data)
    except Exception:  # whatever decoding client input raises (ValueError, IndexError, RecursionError, ...)
        return False
    if pkt.packet_type == socketio_packet.EVENT:
        return isinstance(pkt.data, list) and bool(pkt.data) and isinstance(pkt.data[0], str)
    return True


class SocketServer(socketio.Server):
    """A ``socketio.Server`` that writes packets straight to idle websockets.

    python-socketio encodes an emit once and calls ``_send_eio_packet`` with the
    same packet for each recipient; the frame is built once for all of them.
    ``emit_local`` is the change feed's emit: one loop over a room's members.
    ``emit_observer(event, data, namespace)``, when set, is told of every emit
    (telemetry counts them).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eio._async = dict(self.eio._async, websocket=websocket_driver)
        self.emit_observer = None
        self._frame_packet = None
        self._frame = None
        self._corked = None  # the OutputBuffers corked by ``batch``, while one runs
        self.handoff = None  # this worker's handoff.Handoff, when sessions are handed between workers
        self.direct_writes = 0
        self.queued_writes = 0

    def _engineio_server_class(self):
        return EngineServer  # pings from one greenlet, not one per socket (heartbeat.py)

    # --- receiving ------------------------------------------------------------------------------------------------

    def _handle_eio_message(self, eio_sid, data):
        """python-socketio's dispatch of a client message, refusing binary, malformed and flooding packets.

        python-socketio keeps a binary event's attachments until as many arrived
        as its header announced, in memory, for as long as the client sends
        them; our clients only send JSON. A packet it cannot decode raises, and
        engine.io logs a traceback for it. Either ends the connection instead
        (as Node's socket.io does on a parse error), counted by reason and logged
        once, without a traceback. So does a connection sending more than
        UNCONNECTED_PACKET_LIMIT packets before any namespace is connected on it.
        """
        if not isinstance(data, str) or data[:1] in BINARY_PACKET_TYPES:
            self.refuse(eio_sid, "binary")
            return
        if not _well_formed(self.packet_class, data):
            self.refuse(eio_sid, "malformed")
            return
        if not self.connected_to_a_namespace(eio_sid):
            sent = self.eio.connections.unconnected_packets
            sent[eio_sid] += 1
            if sent[eio_sid] > UNCONNECTED_PACKET_LIMIT:
                log.info("closed connection %s: %d packets and no namespace", short_sid(eio_sid), sent[eio_sid])
                self.close_connection(eio_sid, "unconnected_flood")
                return
        super()._handle_eio_message(eio_sid, data)

    def _handle_eio_disconnect(self, eio_sid, reason):
        """python-socketio's handling of a closed Engine.IO connection; what ``Connections`` kept of it goes too."""
        self.eio.connections.note_closed(eio_sid)
        return super()._handle_eio_disconnect(eio_sid, reason)

    def refuse(self, eio_sid, reason):
        """End the connection ``eio_sid`` for a message refused for ``reason``; count it and log it."""
        log.info("closed connection %s: it sent a %s packet", short_sid(eio_sid), reason)
        self.close_connection(eio_sid, reason)

    def close_connection(self, eio_sid, reason):
        """Close Engine.IO connection ``eio_sid`` at once (``EngineServer.disconnect``), counted under ``reason``."""
        self.eio.connections.refused[reason] += 1
        self.eio.disconnect(eio_sid)

    def _handle_eio_connect(self, eio_sid, environ):
        """python-socketio's handling of a new Engine.IO connection; ``ConnectWatch`` then times it."""
        result = super()._handle_eio_connect(eio_sid, environ)
        address = environ.get(CLIENT_ADDRESS_KEY) or environ.get("REMOTE_ADDR") or "-"
        self.eio.connections.note_opened(eio_sid, address)
        return result

    def address_of(self, eio_sid):
        """The client address Engine.IO connection ``eio_sid`` was opened from (None for one not held here)."""
        return self.eio.connections.address_of.get(eio_sid)

    def connections_from(self, address):
        """Engine.IO connections this process holds from client ``address``."""
        return self.eio.connections.per_address.get(address, 0)

    def connected_to_a_namespace(self, eio_sid):
        """True when the Engine.IO connection ``eio_sid`` has a namespace connected (its token was accepted)."""
        return any(self.manager.sid_from_eio_sid(eio_sid, namespace) for namespace in self.namespace_handlers)

    # --- emitting -------------------------------------------------------------------------------------------------

    def emit(self, event, data=None, to=None, room=None, skip_sid=None, namespace=None, callback=None, **kwargs):
        """``socketio.Server.emit``, told to ``emit_observer`` first."""
        if self.emit_observer is not None:
            self.emit_observer(event, data, namespace)
        return super().emit(
            event, data, to=to, room=room, skip_sid=skip_sid, namespace=namespace, callback=callback, **kwargs
        )

    @contextlib.contextmanager
    def batch(self):
        """Within this block, what is written directly to a socket leaves in one write at its end.

        For a poller tick that emits several changes: a socket subscribed to
        them gets one TCP write instead of one per change. Order is unchanged
        (anything else written to the socket meanwhile joins the same write).
        """
        if self._corked is not None:  # nested: the outer block sends
            yield
            return
        self._corked = []
        try:
            yield
        finally:
            corked, self._corked = self._corked, None
            for output in corked:
                output.uncork()

    def emit_local(self, event, data, to, namespace):
        """``emit(event, data, to=to, namespace=namespace, ignore_queue=True)``, in one loop over the recipients.

        ``to`` is a room or a list of rooms; a socket in several gets the event
        once. The packet is encoded and framed once. python-socketio's emit loop
        pays a generator step, a skip list and a method call per recipient.
        """
        if self.emit_observer is not None:
            self.emit_observer(event, data, namespace)
        rooms = self.manager.rooms.get(namespace)
        if not rooms:
            return
        if isinstance(to, str):
            members = rooms.get(to)
            recipients = list(members.values()) if members else ()
        else:
            participants = {}
            for room in to:
                members = rooms.get(room)
                if members:
                    participants.update(members.items())
            recipients = list(participants.values())
        if not recipients:
            return
        encoded = self.packet_class(socketio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
        if isinstance(encoded, list):  # binary attachments: several packets per recipient
            self.manager.emit(event, data, namespace, room=to, ignore_queue=True)
            return
        eio_pkt = packet.Packet(packet.MESSAGE, encoded)
        self._write(recipients, eio_pkt, text_frame(eio_pkt))

    def _send_eio_packet(self, eio_sid, eio_pkt):
        if eio_pkt is not self._frame_packet:  # python-socketio's emit sends one packet to each recipient
            self._frame_packet, self._frame = eio_pkt, text_frame(eio_pkt)
        self._write((eio_sid,), eio_pkt, self._frame)

    def _write(self, eio_sids, eio_pkt, frame):
        """Send ``eio_pkt`` to each socket: ``frame`` straight to an open websocket, else through engine.io."""
        connections = self.eio.connections
        outputs = connections.outputs if frame is not None else {}
        corked = self._corked
        direct = 0
        for eio_sid in eio_sids:
            output = outputs.get(eio_sid)
            if output is not None:
                if corked is not None and output.cork():
                    corked.append(output)
                try:
                    output.write(frame)
                except OSError:
                    pass  # nothing was written; engine.io's send below meets the error and closes the websocket
                else:
                    direct += 1
                    continue
            self.queued_writes += 1
            super()._send_eio_packet(eio_sid, eio_pkt)
            eio_socket = self.eio.sockets.get(eio_sid)
            if eio_socket is not None and eio_socket.queue.qsize():  # polling, or mid-upgrade: waits for a poll
                connections.mark_waiting(eio_sid)
        self.direct_writes += direct

    # --- what the rest of the app may ask ---------------------------------------------------------------------------

    def is_connected(self, sid, namespace):
        """True while ``sid`` is connected to ``namespace``."""
        return self.manager.is_connected(sid, namespace)

    def has_subscribers(self, namespace, room):
        """True when at least one socket of ``namespace`` is in ``room``."""
        return bool(self.manager.rooms.get(namespace, {}).get(room))

    def subscriber_count(self, namespace, room):
        """Sockets of ``namespace`` in ``room``."""
        return len(self.manager.rooms.get(namespace, {}).get(room) or ())

    def subscribers(self, namespace, rooms):
        """The sids of ``namespace`` in any of ``rooms`` (each once)."""
        members = self.manager.rooms.get(namespace, {})
        return {sid for room in rooms for sid in members.get(room) or ()}

    def room_counts(self):
        """``{namespace: (connected sockets, subscriptions)}`` for every registered namespace.

        Every socket is alone in a room named after its sid, and all are in room
        None; the other rooms are subscriptions.
        """
        counts = {}
        for namespace in self.namespace_handlers:
            rooms = self.manager.rooms.get(namespace, {})
            connected = rooms.get(None, {})
            subscriptions = sum(
                len(members) for room, members in rooms.items() if room is not None and room not in connected
            )
            counts[namespace] = (len(connected), subscriptions)
        return counts

    def refused_counts(self):
        """``{reason: count}`` of the connections closed so far for what their client sent or failed to send."""
        return dict(self.eio.connections.refused)

    def handoff_counts(self):
        """``{result: count}`` of the requests handed between this worker and its siblings (``handoff.Handoff``)."""
        return dict(self.handoff.counts) if self.handoff is not None else {}

    def session_count(self):
        """Engine.IO sessions this process holds."""
        return len(self.eio.sockets)

    def parked_count(self):
        """Open websockets held without a greenlet, waiting for their client's next message (``websocket``)."""
        return len(self.eio.connections.parked)

    def holds_session(self, eio_sid):
        """True when this process holds the Engine.IO session ``eio_sid``."""
        return eio_sid in self.eio.sockets

    def drop_connections(self):
        """Drop every connection without a close packet, so clients reconnect (elsewhere); return how many.

        socket.io-client and python-socketio alike take a dropped transport as a
        lost connection and reconnect by themselves; after a close packet
        python-socketio would not.
        """
        sockets = list(self.eio.sockets.values())
        for eio_socket in sockets:
            eio_socket.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_CLOSE)
        return len(sockets)
