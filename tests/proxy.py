"""A TCP proxy the test owns, to take a service away from a server without touching the service itself."""

import contextlib
import socket
import threading

from testkit import free_port


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops every connection and refuses new ones.

    ``hang()`` accepts new connections but never answers them, as a service that stopped responding would.
    ``restore()`` forwards again (listening again on the same port after a cut), as a service coming back would.
    """

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener = None
        self._connections = set()
        self._held = set()  # accepted while hanging: never answered
        self._hanging = False
        self._closed = False

    def __enter__(self):
        self.restore()
        return self

    def __exit__(self, *exc_info):
        self._closed = True
        self.cut()

    def restore(self):
        """Forward connections again: those accepted while hanging are closed, new ones are forwarded."""
        with self._lock:
            self._hanging = False
            held, self._held = self._held, set()
            listening = self._listener is not None
        _close_all(held)
        if listening:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def hang(self):
        """From now on accept connections but never answer them (nor forward them); ``restore()`` ends it."""
        with self._lock:
            self._hanging = True

    def cut(self):
        """Close the listening socket and every connection, forwarded or held, both ways."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections | self._held, set()
            self._held = set()
        if listener is not None:
            # close() alone leaves the socket listening while _accept is blocked in accept() (Linux):
            # shutdown() wakes it, so new connections are refused and restore() can bind the port again.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        _close_all(connections)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            with self._lock:
                if self._hanging:
                    self._held.add(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _close_all(sockets):
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
