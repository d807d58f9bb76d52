"""The Engine.IO server: python-engineio's, with one heartbeat loop and one registry of per-socket state."""

import sys
import time
from collections import Counter, deque

import engineio
from engineio.socket import Socket

from app.realtime.engine.heartbeat import PingScheduler


class Connections:
    """The one registry of per-socket state kept beside python-engineio's sockets, by sid.

    ``outputs``: the output buffer of each open websocket, while packets may be
    written to it at once (from the end of its upgrade until it closes); a
    broadcast looks each recipient up here once. ``waiting``: the sockets that
    may have packets waiting (in a websocket's output buffer or a polling
    socket's queue) since ``BacklogWatch`` last looked. ``refused``: how many
    connections were closed for what their client sent or failed to send, by
    reason. ``opened``: ``(time.monotonic(), sid)`` of each connection opened, in
    that order, until ``ConnectWatch`` has looked at it. ``unconnected_packets``:
    packets received on each connection with no namespace connected yet.
    ``address_of`` and ``per_address``: each connection's client address, and
    how many connections each address holds. ``parking``: whether an idle
    websocket may be held without a greenlet (``websocket.WebSocketTransport``;
    set by ``gunicorn.install``), and ``parked``: the sids of those held so now.
    """

    __slots__ = (
        "address_of",
        "opened",
        "outputs",
        "parked",
        "parking",
        "per_address",
        "refused",
        "unconnected_packets",
        "waiting",
    )

    def __init__(self):
        self.outputs = {}
        self.waiting = set()
        self.refused = Counter()
        self.opened = deque()
        self.unconnected_packets = Counter()
        self.address_of = {}
        self.per_address = Counter()
        self.parking = False
        self.parked = set()

    def note_opened(self, sid, address):
        """Engine.IO connection ``sid`` from ``address`` was just opened (``ConnectWatch`` times it)."""
        self.opened.append((time.monotonic(), sid))
        address = sys.intern(address)  # one string per address, however many connections it holds
        self.address_of[sid] = address
        self.per_address[address] += 1

    def note_closed(self, sid):
        """Engine.IO connection ``sid`` closed: forget what was kept for it."""
        self.unconnected_packets.pop(sid, None)
        address = self.address_of.pop(sid, None)
        if address is not None:
            self.per_address[address] -= 1
            if self.per_address[address] <= 0:
                del self.per_address[address]

    def attach(self, sid, output):
        """Packets for ``sid`` may be written to ``output`` at once from now on."""
        self.outputs[sid] = output

    def detach(self, sid):
        """``sid``'s websocket is closing: nothing more is written to it directly."""
        self.outputs.pop(sid, None)

    def mark_waiting(self, sid):
        """``sid`` has packets waiting; the next sweep looks at it."""
        self.waiting.add(sid)

    def buffered(self, sid):
        """Writes waiting in ``sid``'s websocket output buffer (0 without an open websocket)."""
        output = self.outputs.get(sid)
        return output.backlog if output is not None else 0

    def buffered_bytes(self, sid):
        """Bytes waiting in ``sid``'s websocket output buffer (0 without an open websocket)."""
        output = self.outputs.get(sid)
        return output.backlog_bytes if output is not None else 0


class EngineServer(engineio.Server):
    """``engineio.Server`` whose heartbeat is one ``PingScheduler``: no ping task per socket, no service task."""

    def __init__(self, *args, **kwargs):
        kwargs["monitor_clients"] = False  # the PingScheduler checks the timeouts
        super().__init__(*args, **kwargs)
        self.pings = PingScheduler(self)
        self.connections = Connections()
        self.sid_prefix = ""  # the worker's tag, when sessions are handed between workers (handoff.py)

    def generate_id(self):
        """engine.io's random session id, after this worker's ``sid_prefix``: the id names the worker holding it."""
        return self.sid_prefix + super().generate_id()

    def disconnect(self, sid=None):
        """``engineio.Server.disconnect``, without waiting for a polling client to fetch the close packet.

        engine.io calls it when a polling request carries a packet it does not
        know (a client PING, say) and answers the request only once it returns:
        with ``Socket.close(wait=True)`` that is when the client polls again, which
        a hostile one never does, and each such request would hold its greenlet
        and its connection. The close packet is still queued for the client.
        ``SocketServer.close_connection`` closes refused connections with it too.
        """
        sockets = [self.sockets.get(sid)] if sid is not None else list(self.sockets.values())
        for socket in sockets:
            if socket is not None:
                socket.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
        if sid is None:
            self.sockets = {}
        else:
            self.sockets.pop(sid, None)

    def start_background_task(self, target, *args, **kwargs):
        # Socket.schedule_ping starts Socket._send_ping as a task: queue the socket instead.
        if getattr(target, "__func__", None) is Socket._send_ping and not args and not kwargs:
            self.pings.add(target.__self__)
            return None  # engine.io ignores the task of a scheduled ping
        return super().start_background_task(target, *args, **kwargs)
