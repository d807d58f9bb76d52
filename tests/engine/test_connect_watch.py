"""ConnectWatch with a real SocketServer and engine.io sockets: a connection without a namespace is closed in time."""

import socketio
from engineio.socket import Socket

from app.realtime.engine.connect_watch import ConnectWatch
from app.realtime.engine.server import SocketServer


def server_with_connections(*sids):
    sio = SocketServer(async_mode="gevent")
    sio.register_namespace(socketio.Namespace("/dashboard"))
    for sid in sids:
        socket = Socket(sio.eio, sid)
        socket.connected = True
        sio.eio.sockets[sid] = socket
    return sio


def test_a_connection_without_a_namespace_is_closed_once_its_time_is_up():
    sio = server_with_connections("early", "connected", "late")
    opened = sio.eio.connections.opened
    opened.extend([(100.0, "early"), (100.5, "connected"), (105.0, "late")])
    sid = sio.manager.pre_connect("connected", "/dashboard")
    sio.manager.connect(sid, "/dashboard")
    watch = ConnectWatch(sio, timeout=10)

    watch.step(now=109.9)
    assert set(sio.eio.sockets) == {"early", "connected", "late"} and len(opened) == 3

    watch.step(now=110.6)  # "early" and "connected" are due; only the one without a namespace goes
    assert set(sio.eio.sockets) == {"connected", "late"}
    assert list(opened) == [(105.0, "late")]  # each connection is looked at once
    assert sio.refused_counts() == {"connect_timeout": 1} and watch.closed == 1

    sio.eio.sockets["late"].closed = True  # closed by itself meanwhile: nothing to do
    watch.step(now=200.0)
    assert not opened and watch.closed == 1
