"""CPU per recipient of the engine layer's emit paths, in one process, against python-socketio's own.

    .venv/bin/python -m bench.emitcost --recipients 1000 --emits 200

Builds a ``SocketServer`` with ``recipients`` connected sockets in one room, each with an open
websocket whose output buffer discards what it is given, and times, per delivered message:

- ``emit_local``: the change feed's emit (one loop over the room, one frame per change);
- ``emit``: python-socketio's ``Server.emit`` to the room, through the engine layer's
  ``_send_eio_packet`` (one frame per packet, written straight to each output buffer): what
  dashboard:initial, errors and emits through the Redis manager take;
- ``emit, stock send``: the same emit with python-socketio's own ``_send_eio_packet``
  (engine.io's ``send_packet``: each socket's ``send``, its queue stand-in, a frame per recipient).

The last two differ only by the engine layer's ``_send_eio_packet``: whether that fast path
pays for itself. No sockets or network: this is the Python cost alone.
"""

import argparse
import functools
import json
import statistics
import time

import socketio
from engineio.socket import Socket

from app.realtime.engine.server import SocketServer
from app.realtime.engine.websocket import PacketWriter, text_frame

NAMESPACE = "/dashboard"
ROOM = "room"


class NullOutput:
    """An output buffer that takes every write and sends nothing."""

    __slots__ = ("written",)

    def __init__(self):
        self.written = 0

    def cork(self):
        return False

    def write(self, frame):
        self.written += 1


class NullTransport:
    """What the queue stand-in writes through: frames each packet into the socket's output."""

    def __init__(self, output):
        self.output = output

    def write_packet(self, pkt):
        self.output.write(text_frame(pkt))

    def close(self):
        """Nothing to close."""


def build(recipients):
    sio = SocketServer(async_mode="gevent")
    for n in range(recipients):
        eio_sid = f"eio-{n}"
        output = NullOutput()
        eio_socket = Socket(sio.eio, eio_sid)
        eio_socket.connected = eio_socket.upgraded = True
        eio_socket.queue = PacketWriter(NullTransport(output))
        sio.eio.sockets[eio_sid] = eio_socket
        sio.eio.connections.attach(eio_sid, output)
        sid = sio.manager.pre_connect(eio_sid, NAMESPACE)
        sio.manager.connect(sid, NAMESPACE)
        sio.enter_room(sid, ROOM, namespace=NAMESPACE)
    return sio


def time_emits(emit, emits, recipients, rounds):
    """Median CPU microseconds per delivered message over ``rounds`` rounds of ``emits`` emits."""
    per_message = []
    for _ in range(rounds):
        started = time.process_time()
        for n in range(emits):
            emit("metric:update", {"entityId": "e", "metricName": "m", "value": n, "seq": n})
        per_message.append((time.process_time() - started) / (emits * recipients) * 1e6)
    return round(statistics.median(per_message), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--emits", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    sio = build(opts.recipients)
    paths = {
        "emit_local": functools.partial(sio.emit_local, to=ROOM, namespace=NAMESPACE),
        "emit": functools.partial(sio.emit, to=ROOM, namespace=NAMESPACE, ignore_queue=True),
    }
    results = {name: time_emits(emit, opts.emits, opts.recipients, opts.rounds) for name, emit in paths.items()}
    sio._send_eio_packet = functools.partial(socketio.Server._send_eio_packet, sio)  # python-socketio's own
    results["emit, stock send"] = time_emits(paths["emit"], opts.emits, opts.recipients, opts.rounds)
    print(json.dumps({"recipients": opts.recipients, "emits": opts.emits, "us_per_message": results}, indent=2))


if __name__ == "__main__":
    main()
