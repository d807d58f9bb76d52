"""Handing a connection between workers (engine/handoff.py): real Unix and TCP sockets, in one process.

The live side (four gunicorn workers, every transport, a worker killed) is tests/test_workers.py.
"""

import os
import queue
import socket
import stat
import subprocess
import sys
import threading

import pytest

from app.logs import short_sid
from app.realtime.engine.handoff import MAX_HANDOFF_BYTES, Handoff, replayed
from testkit import ROOT


def spawn(function, *args):
    thread = threading.Thread(target=function, args=args, daemon=True)
    thread.start()
    return _Stoppable()


class _Stoppable:
    def kill(self, block=False):
        """The receiving thread ends when its socket is closed."""


@pytest.fixture
def owner(tmp_path):
    """A started Handoff whose taken connections land in ``owner.taken`` (a queue)."""
    handoff = Handoff(str(tmp_path))
    handoff.taken = queue.Queue()
    handoff.start(lambda sock, address, request: handoff.taken.put((sock, address, request)), spawn)
    yield handoff
    handoff.stop()


@pytest.fixture
def tcp_pair():
    """A connected TCP pair on loopback: ``(client, accepted)``."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    yield client, accepted
    client.close()
    accepted.close()


@pytest.mark.parametrize(
    ("sid", "owned_by_other"),
    [
        ("0123abcd.Zm9vYmFyYmF6cXV4", True),
        ("plainEngineIoSid", False),  # one worker, or sessions opened before the workers had tags
        ("0123abc.x", False),  # too short
        ("0123abcde.x", False),  # too long
        ("0123ABCD.x", False),  # not lower-case hex
        ("../../etc.x", False),  # never a path
        ("", False),
        (".x", False),
    ],
)
def test_only_a_well_formed_tag_of_another_worker_names_an_owner(tmp_path, sid, owned_by_other):
    handoff = Handoff(str(tmp_path))
    assert (handoff.owner_of(sid) is not None) is owned_by_other
    assert handoff.owner_of(handoff.sid_prefix + "Zm9vYmFy") is None  # its own sessions stay here


def test_a_connection_handed_over_keeps_the_client_and_what_was_read(tmp_path, owner, tcp_pair):
    client, accepted = tcp_pair
    sender = Handoff(str(tmp_path))
    request = b"GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: a\r\n\r\n"
    assert sender.send(owner.tag, owner.sid_prefix + "x", accepted, request)
    accepted.close()  # the sender lets go of its descriptor; the owner's copy keeps the connection open

    taken, address, received = owner.taken.get(timeout=5)
    assert received == request
    assert address == client.getsockname()
    client.sendall(b"more from the client")
    reader = replayed(received, taken, 1024)
    assert reader.read(len(request) + 20) == request + b"more from the client"
    taken.sendall(b"answer from the owner")
    assert client.recv(100) == b"answer from the owner"
    taken.close()
    assert sender.counts == {"sent": 1, "taken": 0, "failed": 0}
    assert owner.counts["taken"] == 1


def test_a_gone_owner_or_a_huge_request_leaves_the_connection_where_it_is(tmp_path, owner, tcp_pair):
    client, accepted = tcp_pair
    sender = Handoff(str(tmp_path))
    assert not sender.send("00000000", "00000000.x", accepted, b"GET / HTTP/1.1\r\n\r\n")  # nobody listens there
    assert not sender.send(owner.tag, "x", accepted, b"x" * (MAX_HANDOFF_BYTES + 1))
    owner.stop()
    assert not sender.send(owner.tag, "x", accepted, b"GET / HTTP/1.1\r\n\r\n")  # stopped: its socket is gone
    assert sender.counts == {"sent": 0, "taken": 0, "failed": 3}
    client.sendall(b"still here")
    assert accepted.recv(100) == b"still here"


def test_a_datagram_without_a_connection_is_dropped_and_the_owner_goes_on(tmp_path, owner, tcp_pair):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stray:
        stray.sendto(b"GET / HTTP/1.1\r\n\r\n", owner.path)  # no descriptor attached
    _, accepted = tcp_pair
    assert Handoff(str(tmp_path)).send(owner.tag, "x", accepted, b"GET / HTTP/1.1\r\n\r\n")
    _, _, request = owner.taken.get(timeout=5)
    assert request == b"GET / HTTP/1.1\r\n\r\n"
    assert owner.counts["taken"] == 1


def test_the_socket_of_a_worker_is_private_to_the_server_user(owner):
    assert stat.S_IMODE(os.stat(owner.path).st_mode) == 0o600


def test_logs_keep_the_worker_tag_and_a_short_part_of_the_session():
    assert short_sid("0123abcd.Zm9vYmFyYmF6cXV4") == "0123abcd.Zm9vYm..."
    assert short_sid("Zm9vYmFyYmF6cXV4") == "Zm9vYm..."
    assert short_sid("x" * 1000 + ".y") == "x" * 8 + ".y..."


BURST = """
from gevent import monkey

monkey.patch_all()
import socket, sys, tempfile
import gevent, gevent.event
from app.realtime.engine.handoff import Handoff

run_dir = tempfile.mkdtemp()
owner, sender = Handoff(run_dir), Handoff(run_dir)
busy, taken = gevent.event.Event(), []

def serve(sock, address, request):
    busy.wait()  # the owner is busy: hand-offs queue up behind this one
    taken.append(request)
    sock.close()

owner.start(serve, gevent.spawn)
listener = socket.create_server(("127.0.0.1", 0))
clients = [socket.create_connection(listener.getsockname()) for _ in range({n})]
accepted = [listener.accept()[0] for _ in range({n})]
request = b"GET / HTTP/1.1\\r\\n\\r\\n"
sent = [sender.send(owner.tag, "x", accepted[0], request)]
jobs = [gevent.spawn(sender.send, owner.tag, "x", accepted[i], request) for i in range(1, {n})]
gevent.sleep(0.3)
busy.set()
gevent.joinall(jobs, timeout=10)
gevent.sleep(0.3)
print(sum(sent) + sum(job.value for job in jobs), len(taken), sender.counts["failed"])
"""


def test_a_burst_to_a_busy_worker_waits_for_room_in_its_queue_and_loses_nothing():
    # gevent's sendmsg on a full datagram queue returns 0 (nothing sent) instead of raising: a hand-off that took
    # that for sent closed its copy of the connection, and the client's request was lost. Run with gevent's
    # patching, as a worker runs, in a process of its own.
    n = 40  # well over the queue's 10 datagrams (net.unix.max_dgram_qlen)
    result = subprocess.run(
        [sys.executable, "-c", BURST.replace("{n}", str(n))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sent, taken, failed = map(int, result.stdout.split())
    assert (sent, taken, failed) == (n, n, 0)
