"""gevent-websocket's per-connection handler, lighter per connection, with no upgrade the app would refuse."""

import re

import gevent.socket
from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from app.logs import redact_query
from app.realtime.engine.handoff import replayed


class ConnectionHandler(WebSocketHandler):
    """gevent-websocket's handler with a small read buffer, and plain HTTP answers for refused websocket requests.

    A 1 KiB read buffer instead of 8 KiB: a connection keeps its reader for its
    whole life, and a websocket client only sends small messages (subscribe,
    pong); longer request lines are still read whole, the buffer refilling.
    Once the websocket runs, it lets go of what only the HTTP request needed.

    gevent-websocket answers a websocket request ``101 Switching Protocols``
    before the application sees it. A request the application then refuses (a
    session this process does not hold, or any while it shuts down) would get a
    101 and a close frame: a proxy cannot retry that on another backend, and
    python-engineio's client, upgrading, takes the close frame for an empty
    packet and stays stuck in a connected state it never leaves (4.15.1). The
    requests ``refuses_upgrade(environ)`` names are answered over plain HTTP
    instead (400 "Invalid session", 503 while draining), as Node's engine.io
    does.

    Request lines are logged without the secrets in their query string: a
    polling session's ``sid`` lets whoever holds it read and act as that
    session (``app.logs.redact_query``).

    With ``handoff`` (``handoff.Handoff``), a request of a session that
    another worker of the server opened (``session_of(request target)`` names
    it) is handed to that worker with its connection, once its request line is
    read.
    """

    READ_BUFFER_BYTES = 1024
    refuses_upgrade = None
    header_timeout = None  # seconds a client may take to send a request line and headers, None for no limit
    handoff = None
    session_of = None

    def __init__(self, sock, address, server, rfile=None):
        super().__init__(sock, address, server, rfile)
        if rfile is None:
            # Nothing has been read yet: swap the default 8 KiB reader for a small one.
            self.rfile = sock.makefile("rb", self.READ_BUFFER_BYTES)
        handoff = self.handoff
        if handoff is not None and handoff.server is None:
            handoff.server = server  # serves what siblings hand over (only sessions opened here, so after this)

    def run_websocket(self):
        # Not read again once the websocket runs (the environ keeps the request headers
        # as HTTP_* keys): the parsed request headers, an email.message object, and the
        # 101's header list.
        self.headers = None
        self.response_headers = None
        return super().run_websocket()

    def let_go(self):
        """Hand this websocket's connection to its transport: return a socket object of its own for it.

        The request then ends without closing the connection: gevent's
        ``handle`` neither reads from nor closes ``self.socket`` once it is None,
        and the server's ``do_close`` closes the socket object it was given,
        which no longer holds the descriptor (``detach``).
        """
        sock, self.socket = self.socket, None
        self.close_connection = True
        family, kind, proto = sock.family, sock.type, sock.proto
        return gevent.socket.socket(family, kind, proto, fileno=sock.detach())

    def handle_one_request(self):
        """gevent's request handling, with ``header_timeout`` on reading the request line and headers.

        A client that sends a request slowly, or opens connections and sends
        nothing (slowloris), would hold a worker connection for as long as it
        likes: it is cut off after ``header_timeout``, also between two requests
        of a kept-alive connection. The body, the application and a websocket are
        not timed (``read_request`` lifts the timeout once the headers are in).
        """
        if self.header_timeout is not None:
            self.socket.settimeout(self.header_timeout)
        return super().handle_one_request()

    def read_request(self, raw_requestline):
        result = super().read_request(raw_requestline)
        if self.header_timeout is not None:
            self.socket.settimeout(None)
        return result

    def MessageClass(self, rfile, *_args):
        """The request's headers (``RequestHeaders.read``), refused (400) when the length of the body is ambiguous.

        With ``Transfer-Encoding`` and ``Content-Length`` both, gevent drops the
        latter; with two differing ``Content-Length`` headers it reads the first. A
        proxy in front that reads them the other way would see another request
        boundary than the worker (request smuggling): refuse both instead.
        """
        headers = RequestHeaders.read(rfile)
        lengths = set(headers.get_all("content-length") or ())
        if len(lengths) > 1:
            raise ValueError("differing Content-Length headers")
        if lengths and "transfer-encoding" in headers:
            raise ValueError("both Transfer-Encoding and Content-Length")
        return headers

    def _headers(self):
        """gevent's ``HTTP_*`` environ items, taken from the parsed headers instead of formatting each one into a
        line and splitting it again (``RequestHeaders.environ_items``)."""
        return self.headers.environ_items()

    def format_request(self):
        """gevent's request line for the access log, with the credentials in its query cut out (polling ``sid``)."""
        return redact_query(super().format_request())

    def read_requestline(self):
        """gevent's request line, unless it names another worker's session: then the connection is handed over.

        The request line holds the session id (a polling request's query), so the
        connection is handed over before its headers are parsed here: the owner
        parses them. An empty line tells gevent's ``handle_one_request`` that there
        is nothing more to do on this connection.
        """
        line = super().read_requestline()
        if self.handoff is not None and line and self._handed_over(line):
            return ""
        return line

    def _handed_over(self, line):
        """Hand this connection to the worker that opened the session ``line`` names; True when it took it.

        The owner gets the request line and whatever the reader already holds
        beyond it (the headers, usually all of them), then reads on from the
        connection itself. This handler lets go of the connection without
        closing it: the owner holds it now (gevent's ``handle`` would read from
        it and close it while ``self.socket`` is set).
        """
        words = line.split(" ")
        sid = self.session_of(words[1]) if len(words) == 3 else None
        owner = self.handoff.owner_of(sid) if sid else None
        if owner is None:
            return False
        sock, rfile = self.socket, self.rfile
        read_ahead = peek_now(rfile, sock)  # what the reader already holds, without waiting for more
        if not self.handoff.send(owner, sid, sock, line.encode("latin-1") + read_ahead):
            return False
        self.close_connection = True
        self.socket = None
        rfile.close()
        sock.close()
        return True

    def run_application(self):
        refuses = self.refuses_upgrade
        if refuses is not None and "HTTP_UPGRADE" in self.environ and refuses(self.environ):
            return WSGIHandler.run_application(self)  # the application answers, without a 101 first
        return super().run_application()


#: The start of a header line (RFC 9112, section 5): a token and a colon, no whitespace between them.
_HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:")
#: What a header value may not hold: control characters other than a tab (a bare CR among them), and DEL.
_NOT_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class RequestHeaders:
    """A request's headers as gevent's ``pywsgi`` and gunicorn read them, parsed in one pass, strictly.

    Stands in for ``pywsgi.OldMessage`` (the standard library's ``email`` parser,
    about a tenth of a REST write's CPU): ``get``/``getheader`` (the first value,
    any case), ``get_all``, ``in``, ``del`` (every value), ``items()``,
    ``typeheader``, ``status``, and ``headers``, the lines as
    ``"Name: value\\r\\n"``, which ``WSGIHandler._headers`` turns into the
    environ. A line that is not a well-formed header (a folded line, whitespace
    before the colon, a control character in the value) raises ``ValueError``,
    which gevent answers 400, as do more than ``MAX_HEADERS`` lines or a line of
    more than ``MAX_LINE_BYTES`` (the standard library's limits; it answered
    the latter two with a 400 too, but quietly dropped the headers after a line
    it could not parse).
    """

    MAX_HEADERS = 100
    MAX_LINE_BYTES = 65536
    status = ""  # gevent answers 400 when this is set; errors are raised instead

    __slots__ = ("_fields",)

    def __init__(self, fields=()):
        self._fields = list(fields)  # (name as sent, name in lower case, value), in order

    @classmethod
    def read(cls, rfile):
        """Read header lines from ``rfile`` up to the empty line that ends them (or the end of the stream)."""
        fields = []
        while True:
            line = rfile.readline(cls.MAX_LINE_BYTES + 1)
            if line in (b"\r\n", b"\n", b""):
                return cls(fields)
            if len(line) > cls.MAX_LINE_BYTES:
                raise ValueError("header line too long")
            if len(fields) == cls.MAX_HEADERS:
                raise ValueError(f"more than {cls.MAX_HEADERS} headers")
            name = _HEADER_NAME.match(line)  # a folded line starts with whitespace: no match
            if name is None or line[-1:] != b"\n":
                raise ValueError("malformed header line")
            value = line[name.end() : -2 if line[-2:] == b"\r\n" else -1].strip(b" \t")
            if _NOT_IN_VALUE.search(value):
                raise ValueError("control character in a header value")
            name = name[0][:-1].decode("ascii")
            fields.append((name, name.lower(), value.decode("latin-1")))

    def get(self, name, default=None):
        """The first value of header ``name`` (any case), or ``default``."""
        name = name.lower()
        for _, lower, value in self._fields:
            if lower == name:
                return value
        return default

    getheader = get

    def get_all(self, name):
        """Every value of header ``name``, in order, or None when it is absent (as ``email.message``)."""
        name = name.lower()
        values = [value for _, lower, value in self._fields if lower == name]
        return values or None

    def __contains__(self, name):
        return self.get(name) is not None

    def __delitem__(self, name):
        name = name.lower()
        self._fields = [field for field in self._fields if field[1] != name]

    def items(self):
        """``(name, value)`` pairs, in order (gunicorn's access log)."""
        return [(name, value) for name, _, value in self._fields]

    @property
    def typeheader(self):
        return self.get("content-type")

    @property
    def headers(self):
        return [f"{name}: {value}\r\n" for name, _, value in self._fields]

    def environ_items(self):
        """``(HTTP_NAME, value)`` for each header, as gevent's ``WSGIHandler._headers`` makes them from ``headers``:
        a name with ``_`` dropped (it could pose as one with ``-``), Content-Type and Content-Length left out (the
        environ has them without the prefix), a name given twice given twice (gevent joins them)."""
        items = []
        for name, _, value in self._fields:
            if "_" in name:
                continue
            key = name.replace("-", "_").upper()
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                items.append(("HTTP_" + key, value))
        return items


def peek_now(rfile, sock):
    """What ``rfile`` (a buffered reader over ``sock``) holds, or reads from the kernel now, without waiting.

    With the socket's timeout at 0 a read that would block returns nothing
    (``socket.SocketIO``, ``handoff.ReplayReader``); the timeout is put back.
    """
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return rfile.peek(1)
    finally:
        sock.settimeout(timeout)


def connection_handler(refuses_upgrade, header_timeout=None, handoff=None, session_of=None):
    """A ConnectionHandler class answering the websocket requests ``refuses_upgrade(environ)`` names over plain HTTP,
    cutting off clients that take longer than ``header_timeout`` seconds to send a request's headers, and handing
    requests of other workers' sessions to them (``handoff``, ``session_of(target)``: the sid in a request target, or
    None)."""
    attributes = {
        "refuses_upgrade": staticmethod(refuses_upgrade),
        "header_timeout": header_timeout,
        "handoff": handoff,
        "session_of": staticmethod(session_of) if session_of is not None else None,
    }
    return type(ConnectionHandler.__name__, (ConnectionHandler,), attributes)


def serve_handed_over(handler_class):
    """The function a ``Handoff`` calls with each connection handed to this worker: serve it in the server's pool.

    A connection that arrives while the pool is full is closed, as the
    listening socket would leave it waiting: the client retries.
    """

    def serve(sock, address, request):
        server = handler_class.handoff.server
        if server is None or server.pool.full():
            sock.close()
            return
        server.pool.spawn(_serve, handler_class, sock, address, server, request)

    return serve


def _serve(handler_class, sock, address, server, request):
    rfile = replayed(request, sock, handler_class.READ_BUFFER_BYTES)
    handler_class(sock, address, server, rfile).handle()
