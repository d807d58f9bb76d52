"""gunicorn terminating TLS itself (``--certfile``/``--keyfile``): websocket and polling clients get every update.

Every byte of a websocket goes through the engine's ``OutputBuffer``; under TLS it must go
through the TLS session, never straight to the TCP socket under it (which would put
plaintext frames inside the TLS stream and leave the client receiving nothing).
"""

import datetime
import ipaddress
import ssl

import gevent
import gevent.socket
import gevent.ssl
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.realtime.engine.output import OutputBuffer
from testkit import DEFAULT_TIMEOUT, Api, RecordingClient, mint_token, running_server, tenant_with_entity


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost: ``(certfile, keyfile)``."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certificate):
    with running_server(tmp_path_factory.mktemp("tls-server"), tls=certificate) as server:
        yield server


# --- OutputBuffer on a TLS connection -------------------------------------------------------------------------------


def test_an_output_buffer_on_a_tls_connection_sends_through_the_tls_session_in_order(certificate):
    certfile, keyfile = certificate
    server_side, client_side = gevent.socket.socketpair()
    for sock in (server_side, client_side):
        sock.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_SNDBUF, 4096)
        sock.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_RCVBUF, 4096)
    server_context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certfile, keyfile)
    client_context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(certfile)
    handshake = gevent.spawn(client_context.wrap_socket, client_side, server_hostname="localhost")
    tls_server_side = server_context.wrap_socket(server_side, server_side=True)
    tls_client_side = handshake.get(timeout=DEFAULT_TIMEOUT)
    try:
        output = OutputBuffer(tls_server_side)
        assert output.encrypted
        records = [f"{n:06d}".encode().ljust(1000, b".") for n in range(300)]
        for record in records:
            output.write(record)  # never blocks, though nobody reads yet and 300 KB exceed the buffers
        expected = b"".join(records)
        received = bytearray()
        with gevent.Timeout(DEFAULT_TIMEOUT):
            while len(received) < len(expected):
                chunk = tls_client_side.recv(65536)  # decrypted: a plaintext byte would break the TLS record layer
                assert chunk, "the TLS connection ended early"
                received += chunk
        assert bytes(received) == expected
    finally:
        tls_client_side.close()
        tls_server_side.close()


def test_an_output_buffer_on_plain_tcp_is_not_encrypted():
    a, b = gevent.socket.socketpair()
    try:
        assert not OutputBuffer(a).encrypted
    finally:
        a.close()
        b.close()


# --- gunicorn with --certfile/--keyfile -----------------------------------------------------------------------------


@pytest.mark.parametrize("transports", [("websocket",), ("polling",), ("polling", "websocket")])
def test_python_clients_over_tls_get_snapshot_and_live_updates(tls_server, transports):
    tenant, _ = tenant_with_entity(tls_server.url, verify=tls_server.verify)
    api = Api(tls_server.url, mint_token(tenant, roles=("ingest",)), verify=tls_server.verify)
    # python-engineio's client verifies with its HTTP session's CA bundle, for polling and websocket alike;
    # trust_env off, or REQUESTS_CA_BUNDLE in the environment would replace it.
    session = requests.Session()
    session.trust_env = False
    session.verify = tls_server.verify
    client = RecordingClient(http_session=session).connect(tls_server.url, mint_token(tenant), transports)
    try:
        client.subscribe("event-1")
        if transports == ("polling", "websocket"):
            client.wait_until(lambda c: c.client.transport() == "websocket", what="upgraded to websocket")
        seqs = [api.ingest(("event-1", "ticketsSold", value))["lastSeq"] for value in range(20)]
        client.wait_for("metric:update", lambda d: d["seq"] == seqs[-1])
        received = [u["seq"] for u in client.of("metric:update")]
        assert received == sorted(set(received)) and received[-1] == seqs[-1]
    finally:
        client.disconnect()


@pytest.mark.parametrize("transports", ["websocket", "default"], ids=["wss", "https-polling-then-wss"])
def test_the_seed_example_over_wss_with_the_certificate_trusted_gets_live_updates(
    tls_server, certificate, node_client, transports
):
    tenant, api = tenant_with_entity(tls_server.url, verify=tls_server.verify)
    trust = {"NODE_EXTRA_CA_CERTS": str(certificate[0])}
    node = node_client(tls_server.url, "event-1", mint_token(tenant), transports, extra_env=trust)
    node.wait_for("ready")
    written = api.ingest(("event-1", "ticketsSold", 41), ("event-1", "revenue", 42))
    node.wait_for("metric:update", lambda d: d["seq"] == written["lastSeq"])
    assert {u["metricName"]: u["value"] for u in node.of("metric:update")} == {"ticketsSold": 41, "revenue": 42}
