"""The engine layer: the only code that replaces or reaches into internals of python-engineio,
python-socketio, gevent-websocket, gevent and gunicorn.

Everything else in the app uses public APIs and extension points, and asks this
package about sockets and rooms (``SocketServer.is_connected``, ``has_subscribers``,
``subscriber_count``, ``room_counts``, ...). ``compat.py`` lists every private name
used here and the upstream function each part mirrors; ``tests/engine/test_compat.py``
fails when an installed library or a mirrored function differs from what was read.
Before upgrading any of those libraries, re-read what ``compat.py`` lists.

- ``server.SocketServer``: python-socketio's server, writing straight to open websockets;
- ``eio.EngineServer`` and ``eio.Connections``: python-engineio's server, one heartbeat
  loop (``heartbeat.PingScheduler``), one registry of per-socket state;
- ``websocket``: the websocket transport without a writer greenlet, and the queue stand-in;
- ``frames.MessageReader``: the client's websocket messages, read within the size limit;
- ``output.OutputBuffer``: ordered, never-blocking writes (TLS-safe);
- ``handler.ConnectionHandler``: gevent-websocket's handler, lighter, refusing upgrades over HTTP;
- ``backlog.BacklogWatch``: cuts off sockets that stopped reading;
- ``connect_watch.ConnectWatch``: closes connections that connect no namespace in time;
- ``handoff.Handoff``: a request of another worker's session is handed to that worker, connection and all;
- ``gunicorn.install``: what gunicorn's ``post_worker_init`` hook calls.
"""

from app.realtime.engine.backlog import BacklogWatch
from app.realtime.engine.connect_watch import ConnectWatch
from app.realtime.engine.gunicorn import install
from app.realtime.engine.server import SocketServer

__all__ = ["BacklogWatch", "ConnectWatch", "SocketServer", "install"]
