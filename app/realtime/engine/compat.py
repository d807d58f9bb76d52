"""The compatibility note of the engine layer: what it was written against, and what to re-read on an upgrade.

Every part of this package that stands in for, overrides or reads the internals
of python-engineio, python-socketio, gevent-websocket, gevent or gunicorn is
listed in ``UPSTREAM`` with the upstream function or class it relies on, the
``sha256`` (first 16 hex digits) of that function's source as read, and what
here depends on it. ``tests/engine/test_compat.py`` fails, naming what to
re-read, when an installed version differs from ``PINNED`` (the versions in
requirements.txt) or when the source of a listed function changed.

To upgrade one of these libraries: pin the new version in requirements.txt and
here, run ``tests/engine/``, re-read each upstream function the failure names
beside the part of this package it lists, adapt the part, then record the new
hash (the failure message prints it).
"""

from dataclasses import dataclass

#: The versions this package was read against (requirements.txt pins the same).
PINNED = {
    "python-engineio": "4.15.1",
    "python-socketio": "5.18.1",
    "gevent-websocket": "0.10.1",
    "gevent": "26.9.0",
    "gunicorn": "27.0.1",
}


@dataclass(frozen=True)
class Upstream:
    """One upstream function or class the engine layer relies on."""

    distribution: str  # as in PINNED
    target: str  # "module:Qualified.name"
    source_hash: str  # sha256 of inspect.getsource(target), first 16 hex digits
    used_by: str  # what here mirrors, overrides or relies on it, and which private names


UPSTREAM = (
    # --- python-engineio: the websocket transport (websocket.py) -------------------------------------------------
    Upstream(
        "python-engineio",
        "engineio.socket:Socket._websocket_handler",
        "58afe122719282de",
        "websocket.WebSocketTransport._serve and replace_queue repeat its upgrade handshake (probe, NOOP, UPGRADE) "
        "and _read_until_idle its read loop and its end (queue.put(None), close(abort=True, TRANSPORT_CLOSE)), which "
        "may run in the request's greenlet or, once parked, in one spawned when the connection is readable; its "
        "writer greenlet is replaced by PacketWriter, which writes what Socket.send puts on Socket.queue at once. "
        "Reads socket.connected/upgrading/upgraded/queue and server.max_http_buffer_size.",
    ),
    Upstream(
        "python-engineio",
        "engineio.server:Server.disconnect",
        "3f5faf6e405fe06b",
        "eio.EngineServer.disconnect repeats it with Socket.close(wait=False): engine.io calls it from "
        "Server.handle_request for a POST with an unknown packet and answers only once it returns.",
    ),
    Upstream(
        "python-engineio",
        "engineio.server:Server.handle_request",
        "79302edd007fcce6",
        "on an EngineIOError of a POST (an unknown packet, a body over max_http_buffer_size) calls "
        "self.disconnect(sid) before answering 400: eio.EngineServer.disconnect must not wait. Once a websocket "
        "request returns it drops the socket from self.sockets if closed: a parked websocket's request returned "
        "long before it ends, so websocket.WebSocketTransport._end does that itself.",
    ),
    Upstream(
        "python-engineio",
        "engineio.server:Server._handle_connect",
        "049f7c2b2c239080",
        "for a new websocket-only session, calls socket.handle_get_request and drops the socket from self.sockets "
        "if it is closed when that returns; a parked websocket returns open (websocket.WebSocketTransport._end "
        "drops it when it ends).",
    ),
    Upstream(
        "python-engineio",
        "engineio.socket:Socket._upgrade_websocket",
        "02f6ac05441609d3",
        "calls server._async['websocket'](self._websocket_handler, self.server) and then the result with "
        "(environ, start_response): websocket.websocket_driver is put in that slot (server.SocketServer.__init__) "
        "and takes the bound _websocket_handler to find its engine.io socket (handler.__self__).",
    ),
    Upstream(
        "python-engineio",
        "engineio.async_drivers.gevent:WebSocketWSGI",
        "d35186ab85c7df5d",
        "the driver websocket.WebSocketTransport stands in for (same constructor and WSGI call).",
    ),
    Upstream(
        "python-engineio",
        "engineio.base_server:BaseServer.__init__",
        "a06b17502fbd9646",
        "sets the private dict server._async from the async driver; SocketServer.__init__ replaces its "
        "'websocket' entry.",
    ),
    Upstream(
        "python-engineio",
        "engineio.socket:Socket.send",
        "f8b2738ee5d48ab2",
        "puts each outgoing packet on Socket.queue (PacketWriter.put writes it), after check_ping_timeout.",
    ),
    Upstream(
        "python-engineio",
        "engineio.socket:Socket.close",
        "05fac55831999f25",
        "puts None on Socket.queue to end the transport (PacketWriter.put(None) closes the websocket, which "
        "detaches its output buffer).",
    ),
    # --- python-engineio: the heartbeat (heartbeat.py, eio.py) --------------------------------------------------------
    Upstream(
        "python-engineio",
        "engineio.socket:Socket.schedule_ping",
        "fe316639159cd70d",
        "clears last_ping and starts the private Socket._send_ping as a background task: "
        "eio.EngineServer.start_background_task recognises that target and queues the socket on the PingScheduler.",
    ),
    Upstream(
        "python-engineio",
        "engineio.socket:Socket._send_ping",
        "21861287bd38dedc",
        "heartbeat.PingScheduler._ping repeats it (sleep ping_interval, then set last_ping and send PING).",
    ),
    Upstream(
        "python-engineio",
        "engineio.server:Server._service_task",
        "9492b7b0d652907d",
        "heartbeat.PingScheduler._check repeats its timeout check (close a socket whose PING got no PONG within "
        "ping_timeout, and drop closed sockets from server.sockets); the task itself is switched off with the "
        "public monitor_clients=False.",
    ),
    # --- python-socketio: the server (server.py) ------------------------------------------------------------------
    Upstream(
        "python-socketio",
        "socketio.server:Server._send_eio_packet",
        "5fa452fb118c3565",
        "overridden by server.SocketServer._send_eio_packet: the frame is built once per packet and written to an "
        "open websocket's output buffer; otherwise this upstream method (server.eio.send_packet) is called.",
    ),
    Upstream(
        "python-socketio",
        "socketio.server:Server._engineio_server_class",
        "8d7e7034b2457036",
        "overridden by server.SocketServer to build eio.EngineServer.",
    ),
    Upstream(
        "python-socketio",
        "socketio.server:Server.emit",
        "286cc60dade16e3c",
        "overridden by server.SocketServer.emit to tell emit_observer (telemetry), then called.",
    ),
    Upstream(
        "python-socketio",
        "socketio.manager:Manager.emit",
        "566510ea2de39d65",
        "server.SocketServer.emit_local repeats its loop over manager.rooms[namespace][room] (a bidict of sid to "
        "eio_sid) for one or several rooms, and falls back to it for binary packets.",
    ),
    Upstream(
        "python-socketio",
        "socketio.base_manager:BaseManager.get_participants",
        "7d78ad681c95de5b",
        "emit_local, has_subscribers, subscriber_count and subscribers read manager.rooms as it does.",
    ),
    Upstream(
        "python-socketio",
        "socketio.base_manager:BaseManager.pre_connect",
        "bfdba4c0c8f1bd8a",
        "server.SocketServer.room_counts relies on every socket being in room None and alone in a room named "
        "after its sid.",
    ),
    Upstream(
        "python-socketio",
        "socketio.base_manager:BaseManager.basic_enter_room",
        "3f509586d2d7f47e",
        "the shape of manager.rooms: {namespace: {room: bidict(sid -> eio_sid)}}.",
    ),
    Upstream(
        "python-socketio",
        "socketio.server:Server._handle_eio_message",
        "65f309c138d634eb",
        "server.SocketServer._handle_eio_message overrides it to refuse binary packets (types 5, 6) and binary "
        "attachments and packets that do not decode, then calls it; it keeps a binary packet in Server._binary_packet "
        "until its attachments came. server.SocketServer.refuse closes the refused connection with "
        "eio.EngineServer.disconnect (which does not wait for a polling client).",
    ),
    Upstream(
        "python-socketio",
        "socketio.server:Server._handle_eio_connect",
        "4be135c046ed6bcc",
        "server.SocketServer._handle_eio_connect calls it, then notes the connection (Connections.note_opened: its "
        "time for connect_watch.ConnectWatch, its client address for MAX_CONNECTIONS_PER_IP).",
    ),
    Upstream(
        "python-socketio",
        "socketio.server:Server._handle_eio_disconnect",
        "5c0002fcdb35a127",
        "server.SocketServer._handle_eio_disconnect forgets what Connections kept of the connection (note_closed: "
        "its packet count, its address), then calls it; python-socketio calls it once per closed connection.",
    ),
    Upstream(
        "python-socketio",
        "socketio.base_manager:BaseManager.sid_from_eio_sid",
        "15467098a36bcd71",
        "server.SocketServer.connected_to_a_namespace asks it, for each registered namespace, whether the "
        "Engine.IO connection has a namespace connected.",
    ),
    # --- gevent-websocket and gevent: frames, the handler, the output buffer ---------------------------------------
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:WebSocket.__init__",
        "db15065066548b15",
        "keeps the handler (ws.handler: its socket and rfile, and ConnectionHandler.let_go) and the stream "
        "(ws.stream.read: the handler's rfile) WebSocketTransport.serve reads from; serve sets ws.closed at once, so "
        "that gevent-websocket writes nothing of its own: every frame goes through websocket.Wire.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:WebSocket.send_frame",
        "b2937fb4e8f711f0",
        "websocket.Wire.send_frame stands in for it (the same header, through the OutputBuffer); this one refuses "
        "to write once ws.closed is set, which WebSocketTransport.serve sets.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:WebSocket.close",
        "528338fe180af5f4",
        "writes nothing once ws.closed is set (send_frame refuses), also when WebSocket.__del__ calls it for a "
        "parked websocket's dropped WebSocket object: WebSocketTransport.serve sets ws.closed first.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:Header.encode_header",
        "14e5dfd8e3b6d960",
        "websocket.text_frame builds a text frame's header with it (with WebSocket.OPCODE_TEXT).",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:WebSocket.receive",
        "77a160f1e59d90c0",
        "frames.MessageReader.receive stands in for it (WebSocketTransport._receive calls the reader instead), "
        "with the same result: the next text message, or None once closed.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:WebSocket.read_message",
        "4f7e79b76a8e8fca",
        "frames.MessageReader._read_message repeats its opcode rules (text, continuation, ping, pong, close), with "
        "the size limit checked on each frame header and binary messages refused.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:WebSocket.read_frame",
        "ab47353ea877d381",
        "frames.MessageReader._read_payload repeats it (reads header.length bytes from ws.stream, unmasks) and "
        "refuses unmasked frames, which this does not.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.websocket:Header.decode_header",
        "c4197b5c1bab821b",
        "frames.MessageReader parses frame headers with it: reads only the header from ws.stream, sets "
        "header.mask to b'' when the frame is not masked, raises ProtocolError for a bad control frame.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.handler:WebSocketHandler.run_websocket",
        "a3c4964039a9518b",
        "handler.ConnectionHandler.run_websocket clears the handler's headers and response_headers before it; it "
        "closes the WebSocket only unless ws.closed (set by WebSocketTransport.serve) and then returns to gevent's "
        "handle_one_request, which ends the request (close_connection), whether or not the transport parked.",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.handler:WebSocketHandler.run_application",
        "3bd9b787d3271269",
        "handler.ConnectionHandler.run_application calls gevent's WSGIHandler.run_application instead for the "
        "websocket requests the app refuses (no 101).",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.handle_one_request",
        "14e946e9fb33cbb8",
        "reads the request line (and read_request the headers) from self.socket's file, a socket.error ending the "
        "connection: handler.ConnectionHandler sets the socket's timeout to header_timeout before it and lifts it "
        "in read_request, once the headers are in.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.read_request",
        "b1702b63da71633f",
        "parses the headers with self.MessageClass(rfile, 0), then drops Content-Length when Transfer-Encoding is "
        "chunked, and reads headers.status, .get (Transfer-Encoding, Content-Length, Connection) and del: "
        "handler.ConnectionHandler.MessageClass returns a handler.RequestHeaders instead of gevent's OldMessage "
        "and refuses ambiguous lengths before that, by raising ValueError.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:OldMessage",
        "7d36d3425c465cee",
        "the request headers object gevent's handler and gunicorn read (get, getheader, typeheader, headers as "
        "'Name: value\\r\\n' lines, items, status): handler.RequestHeaders offers the same, parsed without the "
        "email package.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.get_environ",
        "fbd39b74e42d7dbf",
        "reads headers.typeheader and headers.getheader('content-length'), then the HTTP_* keys from _headers: "
        "handler.RequestHeaders offers both.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler._headers",
        "5575828695b50513",
        "turns headers.headers ('Name: value\\r\\n' lines, a folded line joined to the one before) into HTTP_* "
        "environ keys, dropping names with '_' and leaving out Content-Type and Content-Length: "
        "handler.ConnectionHandler._headers replaces it with RequestHeaders.environ_items, which makes the same "
        "items from the parsed headers (RequestHeaders refuses folded lines).",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler._connection_upgrade_requested",
        "2b997eb190d9a5f5",
        "reads headers.get('Connection', '') and headers.get('Upgrade', ''): handler.RequestHeaders.get.",
    ),
    Upstream(
        "gunicorn",
        "gunicorn.workers.ggevent:PyWSGIHandler.log_request",
        "d706f674002e792b",
        "the access log reads self.headers.items(): handler.RequestHeaders.items.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler._handle_client_error",
        "a3fbde482b69b9fd",
        "answers a ValueError raised while reading the request 400 and logs one line, without a traceback.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.format_request",
        "c174ca5d4c62043b",
        "builds the access-log line from the request line, query string included; "
        "handler.ConnectionHandler.format_request cuts the credentials out of it (app.logs.redact_query).",
    ),
    Upstream(
        "gevent-websocket",
        "geventwebsocket.handler:WebSocketHandler.log_request",
        "9ca977fdbda1525b",
        "logs format_request() at INFO for every request but a 101: the line handler.ConnectionHandler redacts.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.__init__",
        "c3d9e1009c3a0d6a",
        "sets rfile when none is given; handler.ConnectionHandler replaces it with a 1 KiB reader.",
    ),
    Upstream(
        "gevent",
        "gevent._socket3:socket.__init__",
        "187a3fe6b61a8376",
        "the private attribute socket._sock, the non-blocking OS socket: output.OutputBuffer sends through its "
        "send first on a plain TCP connection.",
    ),
    Upstream(
        "gevent",
        "gevent.ssl:SSLSocket.__init__",
        "5e2502a3ce721f2b",
        "an SSLSocket is a gevent socket whose _sock is the raw TCP socket under TLS: output.OutputBuffer must "
        "never send through _sock on one (it hands every write to its flusher, which calls SSLSocket.sendall).",
    ),
    Upstream(
        "gevent",
        "gevent.ssl:SSLSocket.sendall",
        "70709a39837845ac",
        "what output.OutputBuffer's flusher sends a TLS connection's bytes with.",
    ),
    Upstream(
        "gevent",
        "gevent.baseserver:_handle_and_close_when_done",
        "154d4884705bb589",
        "closes the socket object the server gave the handler once handle returns (StreamServer.do_close): "
        "handler.ConnectionHandler.let_go detaches the descriptor from that object first (socket.detach, public), so "
        "the parked websocket's connection stays open under a socket object of its own.",
    ),
    Upstream(
        "gevent",
        "gevent.server:StreamServer.do_close",
        "728ac328c4119488",
        "calls sock.close() on that socket object, which does nothing to a descriptor detached from it.",
    ),
    # --- handing connections between workers (handoff.py) -------------------------------------------------------
    Upstream(
        "python-engineio",
        "engineio.base_server:BaseServer.generate_id",
        "b6a591454237c0bb",
        "eio.EngineServer.generate_id puts the worker's tag and a '.' before it: handoff.Handoff.owner_of reads the "
        "tag back, which holds while engine.io's ids are base64url (no '.').",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.read_requestline",
        "72173107a177f9b3",
        "reads the request line with rfile.readline and decodes it as latin-1 (CRLF kept): "
        "handler.ConnectionHandler.read_requestline hands the connection over when the line names another worker's "
        "session, replaying the line (encoded back) and what rfile holds past it, and returns '' so that "
        "handle_one_request ends the connection here.",
    ),
    Upstream(
        "gevent",
        "gevent._socket3:socket.sendmsg",
        "7b3d1b1b98bc1887",
        "waits once for the socket to be writable on EWOULDBLOCK, tries again and returns 0 (nothing sent) if it "
        "still would block: handoff.Handoff.send connects its datagram socket to the owner (so the wait is for "
        "room in the owner's queue) and repeats while it returns 0, until SEND_TIMEOUT.",
    ),
    Upstream(
        "gevent",
        "gevent.pywsgi:WSGIHandler.handle",
        "9e7238affc125354",
        "reads from and closes self.socket at the end unless it is None: handler.ConnectionHandler._handed_over "
        "sets it to None once another worker holds the connection, and closes only its own descriptor; "
        "ConnectionHandler.let_go sets it to None when a parked websocket's transport takes the connection.",
    ),
    # --- gunicorn: installing the handler (gunicorn.py) -------------------------------------------------------------
    Upstream(
        "gunicorn",
        "gunicorn.workers.base:Worker.init_process",
        "114caccd7a0e3c21",
        "calls the post_worker_init hook (gunicorn.install) after loading the app and before run().",
    ),
    Upstream(
        "gunicorn",
        "gunicorn.workers.base:Worker.init_signals",
        "65442e0602b05f37",
        "installs handle_quit for SIGINT and SIGQUIT before post_worker_init; gunicorn._quit_once replaces both "
        "with a handler that lets only the first one through.",
    ),
    Upstream(
        "gunicorn",
        "gunicorn.workers.ggevent:GeventWorker.handle_quit",
        "bb3ae10bcd1af60d",
        "spawns Worker.handle_quit (sys.exit(0)) in a greenlet per signal: a second one during interpreter "
        "shutdown prints a traceback, hence gunicorn._quit_once.",
    ),
    Upstream(
        "gunicorn",
        "gunicorn.workers.ggevent:GeventWorker.run",
        "50119854ef8be38c",
        "builds its server from worker.wsgi_handler and worker.wsgi, which gunicorn.install sets, with a Pool of "
        "worker_connections as server.pool (handler.serve_handed_over spawns connections handed over in it, through "
        "the server the handler was given); the drain watches worker.alive. A parked websocket leaves that pool, so "
        "gunicorn.install bounds Socket.IO sessions by worker.worker_connections instead (Realtime.max_sessions).",
    ),
)
