"""The output buffer every websocket byte goes through: never blocks, keeps order, corks, lets a slow reader go."""

import gevent
import gevent.socket
import pytest
from engineio.socket import Socket

from app.realtime.engine.backlog import BacklogWatch
from app.realtime.engine.output import CORK_LIMIT, OutputBuffer
from app.realtime.engine.server import SocketServer
from testkit import DEFAULT_TIMEOUT

# --- OutputBuffer on a socket pair ----------------------------------------------------------------------------------


@pytest.fixture
def pair():
    """A connected pair of gevent sockets with small kernel buffers, so a few hundred KiB fill them."""
    writer, reader = gevent.socket.socketpair()
    for sock in (writer, reader):
        sock.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_SNDBUF, 4096)
        sock.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_RCVBUF, 4096)
    yield writer, reader
    writer.close()
    reader.close()


def records(count, size=1000):
    """``count`` numbered records of ``size`` bytes each."""
    return [f"{n:08d}".encode().ljust(size, b".") for n in range(count)]


def read_exactly(sock, length):
    chunks, left = [], length
    while left:
        chunk = sock.recv(min(left, 65536))
        assert chunk, "connection closed early"
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def test_writes_to_a_reader_that_is_behind_never_block_and_arrive_whole_and_in_order(pair):
    writer, reader = pair
    output = OutputBuffer(writer)
    sent = records(500)
    yielded = []
    gevent.spawn(yielded.append, True)  # runs as soon as anything yields to the hub
    for record in sent:
        output.write(record)  # a blocking write would wait here: nobody reads yet
    assert not yielded, "a write yielded: it would stall the greenlet emitting to many sockets"
    assert output.backlog > 0, "the kernel took 500 KB through 4 KiB buffers: the test did not fill them"

    received = read_exactly(reader, sum(map(len, sent)))
    assert received == b"".join(sent)
    gevent.wait([gevent.spawn(lambda: None)])  # let the flusher finish its bookkeeping
    assert output.backlog == 0


def test_writers_in_several_greenlets_never_interleave_inside_a_record(pair):
    writer, reader = pair
    output = OutputBuffer(writer)

    def write_all(tag):
        for record in records(200):
            output.write(tag + record)
            gevent.sleep(0)  # let the others write in between

    writers = [gevent.spawn(write_all, tag) for tag in (b"A", b"B", b"C")]
    received = read_exactly(reader, 3 * 200 * 1001)
    gevent.joinall(writers, raise_error=True)
    chunks = [received[i : i + 1001] for i in range(0, len(received), 1001)]
    for tag in (b"A", b"B", b"C"):
        mine = [chunk[1:] for chunk in chunks if chunk[:1] == tag]
        assert mine == records(200)


def test_corked_writes_leave_together_in_order_and_a_long_cork_sends_early(pair):
    writer, reader = pair
    output = OutputBuffer(writer)
    reader.settimeout(0.05)
    assert output.cork() and not output.cork()
    for record in records(3, size=10):
        output.write(record)
    with pytest.raises(TimeoutError):
        reader.recv(100)  # held
    output.uncork()
    assert read_exactly(reader, 30) == b"".join(records(3, size=10))

    output.cork()
    many = records(CORK_LIMIT + 1, size=10)
    for record in many:
        output.write(record)
    assert read_exactly(reader, CORK_LIMIT * 10) == b"".join(many[:CORK_LIMIT])  # sent without waiting for uncork
    output.uncork()
    assert read_exactly(reader, 10) == many[-1]


def test_discard_drops_the_backlog_and_the_peer_sees_the_connection_end(pair):
    writer, reader = pair
    output = OutputBuffer(writer)
    for record in records(500):
        output.write(record)
    assert output.backlog > 0
    output.discard()
    with pytest.raises(OSError):
        output.write(b"after")
    total = 0
    with gevent.Timeout(DEFAULT_TIMEOUT):
        while chunk := reader.recv(65536):
            total += len(chunk)
    assert total < 500 * 1000, "the discarded backlog was still sent"


def test_the_backlog_counts_the_bytes_waiting_too(pair):
    writer, reader = pair
    output = OutputBuffer(writer)
    sent = records(300, size=2000)
    for record in sent:
        output.write(record)
    assert output.backlog > 0
    assert 0 < output.backlog_bytes <= len(sent) * 2000
    assert output.backlog_bytes == sum(len(r) for r in output._pending)  # what waits, nothing else
    with gevent.Timeout(DEFAULT_TIMEOUT):
        assert read_exactly(reader, len(sent) * 2000) == b"".join(sent)
        while output.backlog:
            gevent.sleep(0.001)
    assert output.backlog_bytes == 0


# --- BacklogWatch: a socket over either limit is let go --------------------------------------------------------------


def test_a_socket_with_few_but_large_writes_waiting_is_cut_off_by_their_bytes(pair):
    writer, _ = pair  # the reader never reads
    sio = SocketServer(async_mode="gevent")
    socket = Socket(sio.eio, "slow")
    socket.connected = True
    sio.eio.sockets["slow"] = socket
    connections = sio.eio.connections
    output = OutputBuffer(writer, connections.waiting, "slow")
    connections.attach("slow", output)
    for _ in range(5):  # five corked ticks of 300 KB each: five writes, far under the packet limit
        output.write(b"x" * 300_000)
    watch = BacklogWatch(sio, limit=1000, byte_limit=1024 * 1024)
    watch.step()
    assert watch.disconnected == 1 and "slow" not in sio.eio.sockets
    with pytest.raises(OSError):
        output.write(b"after")
