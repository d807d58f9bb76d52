"""Which address a request is counted under (MAX_CONNECTIONS_PER_IP): the peer, or what a trusted proxy forwarded."""

import pytest

from app.addresses import client_address

PROXY = "10.0.0.2"
TRUSTED = frozenset({PROXY, "10.0.0.3"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", None, "203.0.113.5"),
        ("203.0.113.5", "198.51.100.7", "203.0.113.5"),  # not a trusted proxy: its header is the client's to forge
        (PROXY, "198.51.100.7", "198.51.100.7"),
        (PROXY, "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # the leftmost entries are the client's to forge
        (PROXY, "198.51.100.7, 10.0.0.3", "198.51.100.7"),  # a chain of trusted proxies
        (PROXY, None, PROXY),
        (PROXY, " , ", PROXY),
        (None, None, "-"),
    ],
    ids=["direct", "direct-forging", "proxied", "proxied-forging", "two-proxies", "proxy-itself", "empty", "unknown"],
)
def test_the_client_address(peer, forwarded, expected):
    environ = {"REMOTE_ADDR": peer} if peer else {}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(environ, TRUSTED) == expected
