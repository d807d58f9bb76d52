"""Fixtures: the app in this process, the real server, tokens, tenants, REST and Socket.IO clients.

In process (``app``, ``client``, ``cli_runner``): ``create_app()`` built from the same
environment a server process gets (``testkit.server_env``), on a real SQLite or
PostgreSQL database migrated by ``flask db upgrade``; for grids of inputs, permissions
and shapes. Live (``live_server``, ``sio_client``, ...): a gunicorn server in a
subprocess; for transport, fan-out, ordering, faults and pages.
"""

import os
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from engineio.payload import Payload

from app import create_app
from testkit import (
    BACKENDS,
    Api,
    LiveServer,
    RecordingClient,
    migrated_database,
    mint_token,
    server_env,
    unique,
)
from tests.seed_client import start_seed_example


@pytest.fixture(scope="session", autouse=True)
def long_polls():
    """Let the test clients read long polls of any size.

    The server sends a polling client everything queued for it in one response;
    python-engineio's client refuses a response of more than 16 packets
    (``Payload.max_decode_packets``, python-engineio issue #142) and drops the
    connection. Browsers' engine.io-client has no such limit.
    """
    saved = Payload.max_decode_packets
    Payload.max_decode_packets = 100_000
    yield
    Payload.max_decode_packets = saved


@pytest.fixture(scope="session")
def rsa_keys():
    """An RSA key pair: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def pytest_generate_tests(metafunc):
    """Run every test that needs a database on each backend, or on those its ``backends`` marker names.

    ``@pytest.mark.backends("sqlite")`` (or a module's ``pytestmark``): for what does not depend on
    SQL behaviour. Both backends where it does: locks, triggers, NOTIFY, gaps.
    """
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        metafunc.parametrize("backend", marker.args if marker else BACKENDS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request):
    """The database kind under test ("sqlite" or "postgresql"), set by ``pytest_generate_tests``."""
    return request.param


@contextmanager
def environment(variables):
    """``os.environ`` is exactly ``variables`` inside the block."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def app_from_env(env):
    """``create_app()`` as a server process with environment ``env`` builds it, here in this process."""
    with environment(env):
        return create_app()


@pytest.fixture(scope="session")
def app(tmp_path_factory, rsa_keys, backend):
    """The app in this process, on a migrated database of ``backend``, accepting HS256 and RS256 tokens.

    Its background work (poller, watches) is never started: requests and CLI commands
    run as in a server process, but nothing turns changes into Socket.IO events here.
    """
    tmp = tmp_path_factory.mktemp(f"app-{backend}")
    with migrated_database(backend, tmp) as url:
        application = app_from_env(server_env(tmp, JWT_PUBLIC_KEY=rsa_keys[1], DATABASE_URL=url))
        yield application
        with application.app_context():
            from app.extensions import db

            db.engine.dispose()


@pytest.fixture
def client(app):
    """Flask's test client of the in-process app (no token unless a test sends one)."""
    return app.test_client()


@pytest.fixture
def cli_runner(app):
    """Flask's CLI runner of the in-process app: ``cli_runner.invoke(args=["token", ...])``."""
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, rsa_keys, backend):
    """One gunicorn server per backend for the session, accepting HS256 and RS256 tokens."""
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    with migrated_database(backend, tmp) as url:
        server = LiveServer(server_env(tmp, JWT_PUBLIC_KEY=rsa_keys[1], DATABASE_URL=url), tmp / "server.log")
        server.start()
        yield server
        server.stop()


@pytest.fixture
def tenant():
    """A tenant id of this test's own, so tests never see each other's data."""
    return unique("tenant")


@pytest.fixture
def token_for():
    """Mint a token: ``token_for(tenant, roles=(), ttl=3600, algorithm='HS256', key=..., **claims)``."""
    return mint_token


@pytest.fixture
def admin_api(live_server, tenant):
    """REST client with an admin+ingest token of this test's tenant."""
    return Api(live_server.url, mint_token(tenant, roles=("admin", "ingest")))


@pytest.fixture
def entity(admin_api):
    """An event entity of this test's tenant with a two-tile dashboard: ``(entity_id, dashboard)``."""
    dashboard = admin_api.create_dashboard()
    entity_id = unique("event")
    admin_api.put_entity(entity_id, "event", dashboard["id"])
    return entity_id, dashboard


@pytest.fixture
def sio_client(live_server):
    """Factory of connected recording clients, all disconnected at teardown."""
    clients = []

    def connect(token, namespace="/dashboard", transports=("websocket",), server=None):
        client = RecordingClient(namespace)
        clients.append(client)
        return client.connect((server or live_server).url, token, transports)

    yield connect
    for client in clients:
        client.disconnect()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package) for the whole session."""
    from playwright.sync_api import sync_playwright

    from tests.browser import launch

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """Factory of pages, each in a browser context of its own (own cookies), closed at teardown."""
    from tests.browser import LAPTOP

    contexts = []

    def open_page(viewport=None):
        context = browser.new_context(viewport=viewport or LAPTOP)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def node_client(tmp_path):
    """Start the seed's Node client: ``node_client(url, entity_id, token=None, transports="websocket", extra_env)``.

    Every run started here is killed at teardown.
    """
    runs = []

    def start(url, entity_id, token=None, transports="websocket", extra_env=None):
        stderr_path = tmp_path / f"seed-example-{len(runs)}.stderr"
        run = start_seed_example(url, entity_id, token, transports, stderr_path, extra_env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()
