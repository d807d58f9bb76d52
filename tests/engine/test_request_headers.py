"""Request headers as the worker's HTTP handler parses them (``handler.RequestHeaders``), and what it refuses.

Through gevent's own handler: the headers of a request read from a socket pair become the environ the app sees.
"""

import io
from types import SimpleNamespace

import gevent.socket
import pytest
from gevent.pywsgi import WSGIHandler, WSGIServer

from app.realtime.engine.handler import ConnectionHandler, RequestHeaders

BROWSER_REQUEST = (
    b"Host: example.test\r\n"
    b"User-Agent: Mozilla/5.0\r\n"
    b"Accept:*/*\r\n"
    b"Cookie: a=1\r\n"
    b"X-Empty:\r\n"
    b"cookie: b=2\r\n"
    b"Content-Type: application/json \r\n"
    b"X-Latin: \xe9t\xe9\r\n"
    b"Content-Length: 2\r\n"
    b"\r\n"
    b"{}"
)


def read(raw):
    return RequestHeaders.read(io.BytesIO(raw))


def test_headers_are_found_in_any_case_first_value_first_and_the_body_is_left_unread():
    stream = io.BytesIO(BROWSER_REQUEST)
    headers = RequestHeaders.read(stream)
    assert stream.read() == b"{}"
    assert headers.get("HOST") == headers.getheader("host") == "example.test"
    assert headers.get("cookie") == "a=1" and headers.get_all("Cookie") == ["a=1", "b=2"]
    assert headers.get("accept") == "*/*" and headers.get("x-empty") == ""
    assert headers.typeheader == "application/json"  # whitespace around a value is not part of it
    assert headers.get("x-latin") == "\xe9t\xe9"
    assert headers.get("missing") is None and headers.get_all("missing") is None
    assert headers.get("missing", "") == "" and "missing" not in headers and "content-length" in headers
    assert headers.items()[:2] == [("Host", "example.test"), ("User-Agent", "Mozilla/5.0")]
    assert headers.headers[0] == "Host: example.test\r\n"
    assert headers.status == ""


def test_deleting_a_header_removes_every_value():
    headers = read(b"A: 1\r\nB: 2\nA: 3\r\n\r\n")  # a bare LF ends a line too
    del headers["a"]
    assert headers.items() == [("B", "2")]
    del headers["a"]  # as email.message: no error when absent


def test_the_stream_ending_ends_the_headers():
    assert read(b"A: 1\r\n").items() == [("A", "1")]
    assert read(b"").items() == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"Host : example.test\r\n\r\n", "malformed"),  # whitespace before the colon
        (b"A: 1\r\n  folded\r\n\r\n", "malformed"),  # obsolete line folding
        (b" A: 1\r\n\r\n", "malformed"),
        (b"no colon\r\n\r\n", "malformed"),
        (b": no name\r\n\r\n", "malformed"),
        (b"A(b): 1\r\n\r\n", "malformed"),  # not a token
        (b"A: 1", "malformed"),  # cut off before its line ended
        (b"A: 1\rB: 2\r\n\r\n", "control character"),  # a bare CR
        (b"A: 1\x00\r\n\r\n", "control character"),
        (b"A: 1\x7f\r\n\r\n", "control character"),
        (b"A: 1\r\r\n\r\n", "control character"),
        (b"A: " + b"x" * RequestHeaders.MAX_LINE_BYTES + b"\r\n\r\n", "too long"),
        (b"A: 1\r\n" * (RequestHeaders.MAX_HEADERS + 1) + b"\r\n", "more than 100 headers"),
    ],
)
def test_a_malformed_header_block_is_refused(raw, reason):
    with pytest.raises(ValueError, match=reason):
        read(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"a:" + b" " * 65000 + b"\x00\r\n\r\n",
        b"a: " + b"a " * 32000 + b"\x00\r\n\r\n",
        b"a" * 65000 + b" : x\r\n\r\n",
    ],
    ids=["spaces", "words", "name"],
)
def test_a_hostile_line_costs_one_pass(raw):
    # A regular expression that backtracks over the value's whitespace took 22 s on the first of these.
    with pytest.raises(ValueError):
        read(raw)


def test_environ_items_are_what_gevents_own_headers_method_makes_of_the_lines():
    headers = read(BROWSER_REQUEST.split(b"\r\n\r\n")[0] + b"\r\nX_Forged: 1\r\nX-Ok-2: a b\r\n\r\n")
    gevents = list(WSGIHandler._headers(SimpleNamespace(headers=headers)))
    assert headers.environ_items() == gevents
    assert ("HTTP_X_OK_2", "a b") in gevents and not any(key == "HTTP_X_FORGED" for key, _ in gevents)


def serve_one(request):
    """Send ``request`` to gevent's handler as the worker runs it (ConnectionHandler); return (environ, response)."""
    seen = {}

    def app(environ, start_response):
        seen.update(environ, body=environ["wsgi.input"].read())
        start_response("204 No Content", [])
        return []

    server = WSGIServer(("127.0.0.1", 0), app, handler_class=ConnectionHandler, log=None, error_log=None)
    ours, theirs = gevent.socket.socketpair()
    try:
        theirs.sendall(request)
        theirs.shutdown(gevent.socket.SHUT_WR)
        ConnectionHandler(ours, ("127.0.0.1", 5000), server).handle()
        return seen, theirs.makefile("rb").read()
    finally:
        theirs.close()


def test_the_environ_carries_the_headers_with_repeated_ones_joined():
    environ, response = serve_one(b"POST /x?q=1 HTTP/1.1\r\nX_Forged: 1\r\n" + BROWSER_REQUEST)
    assert response.startswith(b"HTTP/1.1 204")
    assert environ["HTTP_HOST"] == "example.test" and environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["CONTENT_TYPE"] == "application/json" and environ["CONTENT_LENGTH"] == "2"
    assert environ["HTTP_X_LATIN"] == "\xe9t\xe9" and environ["HTTP_X_EMPTY"] == ""
    assert "HTTP_X_FORGED" not in environ and "HTTP_CONTENT_TYPE" not in environ
    assert environ["body"] == b"{}"


@pytest.mark.parametrize(
    "header",
    [
        b"A: 1\r\n folded",
        b"Host : x",
        b"Content-Length: 2\r\nContent-Length: 3",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked",
    ],
    ids=["folded", "space-before-colon", "two-lengths", "length-and-chunked"],
)
def test_gevent_answers_a_refused_header_block_400_without_calling_the_app(header):
    environ, response = serve_one(b"POST /x HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n{}")
    assert response.startswith(b"HTTP/1.1 400") and environ == {}
