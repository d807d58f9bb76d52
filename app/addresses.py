"""The address of the client that sent a request, with a trusted proxy's X-Forwarded-For taken into account."""


def client_address(environ, trusted_proxies):
    """The address of the client that sent a request: its peer, or what a trusted proxy forwarded for.

    ``X-Forwarded-For`` is read only when the peer is one of ``trusted_proxies``:
    the rightmost address in it that is not itself a trusted proxy. A client
    talking to the server directly cannot choose the address it is counted under.
    """
    address = environ.get("REMOTE_ADDR") or "-"
    if address not in trusted_proxies:
        return address
    for hop in reversed(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop = hop.strip()
        if hop and hop not in trusted_proxies:
            return hop
    return address
