"""Handing a connection to the worker that holds its Engine.IO session: several gunicorn workers, no sticky proxy.

A polling session lives in the worker that opened it, but gunicorn's workers
share one listening socket, so each of its requests (and the websocket upgrade
that ends it) may reach any worker. Each worker names itself in the sessions it
opens (``<tag>.<engine.io's random id>``) and listens on a datagram socket of
its own, ``<SERVER_RUN_DIR>/<tag>.sock``. A worker that gets a request of
another worker's session hands it the client's connection itself (the file
descriptor, passed with ``SCM_RIGHTS``) together with the request it has read;
the owner serves that request and whatever else the client sends on the
connection, as if the client had connected to it. Nothing is relayed: after the
hand-off the client's TCP connection belongs to the owner, a websocket included.
This is what Node's ``@socket.io/sticky`` does from the cluster's primary, done
by whichever worker the kernel gave the connection; a kept-alive connection that
later carries a request of a third worker's session is handed on again.

An owner that is gone (restarted, killed) has no socket listening at its path:
the request is answered where it landed, as one of an unknown session (400), and
the client opens a new session. A connection under TLS cannot be handed over
(its TLS state lives in the process that accepted it); ``gunicorn.install``
leaves hand-off off then.
"""

import array
import contextlib
import errno
import io
import logging
import os
import secrets
import socket
import time

from app.logs import short_sid

log = logging.getLogger(__name__)

#: Between the worker's tag and engine.io's random part of a session id. Not in engine.io's base64url alphabet.
SID_SEPARATOR = "."

#: Hex digits of a worker's tag: random per worker process, so a restarted worker never answers for the old one.
TAG_LENGTH = 8

#: The largest request (request line, headers and the body bytes already read) handed over. Socket.IO requests are
#: a few hundred bytes; a larger one is answered where it landed, as one of an unknown session.
MAX_HANDOFF_BYTES = 64 * 1024

#: Seconds a hand-off may wait for the owner to take it before the request is answered where it landed.
SEND_TIMEOUT = 5.0

_HEX = frozenset("0123456789abcdef")


class Handoff:
    """This worker's tag, its hand-off socket, and the sending of other workers' connections to them.

    ``counts`` says how many requests were handed over, taken
    and failed (owner gone, request too large).
    """

    def __init__(self, run_dir, tag=None):
        self.run_dir = run_dir
        self.tag = tag or secrets.token_hex(TAG_LENGTH // 2)
        self.sid_prefix = self.tag + SID_SEPARATOR
        self.path = self._path_of(self.tag)
        self._serve = None
        self.server = None  # the worker's WSGI server, which serves connections handed here (handler.py)
        self._listener = None
        self._receiving = None
        self.counts = {"sent": 0, "taken": 0, "failed": 0}

    def _path_of(self, tag):
        return os.path.join(self.run_dir, f"{tag}.sock")

    # --- sending -----------------------------------------------------------------------------------------------------

    def owner_of(self, sid):
        """The tag of the worker that opened session ``sid``, when that is another worker; else None."""
        tag, separator, _ = sid.partition(SID_SEPARATOR)
        if not separator or tag == self.tag or len(tag) != TAG_LENGTH or not _HEX.issuperset(tag):
            return None
        return tag

    def send(self, owner, sid, sock, request):
        """Hand connection ``sock``, of which ``request`` (bytes) was read, to worker ``owner``; True when it took it.

        False leaves the connection here, unchanged: the owner is gone (no
        socket at its path), did not take it within SEND_TIMEOUT, or the request
        is larger than MAX_HANDOFF_BYTES.
        """
        if len(request) > MAX_HANDOFF_BYTES:
            self.counts["failed"] += 1
            return False
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [sock.fileno()]))]
        deadline = time.monotonic() + SEND_TIMEOUT
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
                out.settimeout(SEND_TIMEOUT)
                # Connected: then waiting until the socket is writable waits for room in the owner's queue, which
                # holds net.unix.max_dgram_qlen (10) datagrams; unconnected, a full queue would not be waited for.
                out.connect(self._path_of(owner))
                # gevent's sendmsg returns 0 (nothing sent) when the queue is still full after one wait.
                while not out.sendmsg([request], ancillary):
                    if time.monotonic() > deadline:
                        raise TimeoutError("its hand-off queue stayed full")
        except OSError as error:  # ENOENT, ECONNREFUSED: the owner is gone; a timeout: it is stuck
            self.counts["failed"] += 1
            log.debug("session %s not handed to worker %s: %s", short_sid(sid), owner, error)
            return False
        self.counts["sent"] += 1
        return True

    # --- receiving ---------------------------------------------------------------------------------------------------

    def start(self, serve, spawn):
        """Listen at this worker's path; ``spawn(function)`` runs the receiving loop.

        ``serve(sock, address, request)`` is called with each connection handed
        to this worker: ``request`` is what the other worker had read of it.
        """
        self._serve = serve
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self._listener = listener
        self._receiving = spawn(self._receive)

    def stop(self):
        """Stop taking connections: siblings' hand-offs to this worker fail from now on."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener.close()
        if self._receiving is not None:
            self._receiving.kill(block=False)

    def _receive(self):
        while self._listener is not None:
            try:
                request, fds, flags, _ = socket.recv_fds(self._listener, MAX_HANDOFF_BYTES + 1, 1)
            except OSError as error:
                if self._listener is None or error.errno == errno.EBADF:
                    return
                log.warning("hand-off socket: %s", error)
                continue
            if len(fds) != 1 or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or not request:
                for fd in fds:
                    os.close(fd)
                continue
            try:
                sock = socket.socket(fileno=fds[0])
                address = sock.getpeername()
            except OSError:  # the client went away meanwhile
                os.close(fds[0])
                continue
            self.counts["taken"] += 1
            self._serve(sock, address, request)


class ReplayReader(io.RawIOBase):
    """A handed-over connection's reader: first the bytes the other worker had read, then the socket's."""

    def __init__(self, prefix, sock):
        super().__init__()
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:  # a non-blocking peek (handler.ConnectionHandler), as socket.SocketIO answers it
            return None


def replayed(prefix, sock, buffer_size):
    """A buffered reader over ``sock`` that returns ``prefix`` first."""
    return io.BufferedReader(ReplayReader(prefix, sock), buffer_size)
