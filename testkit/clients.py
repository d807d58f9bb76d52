"""Clients of a live server: tokens, a REST helper, a recording Socket.IO client, and waits on its logs and metrics."""

import threading
import time
import uuid

import jwt
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

JWT_SECRET = "test-secret-for-the-suite-only-0123456789abcdef"

DEFAULT_TIMEOUT = 15.0


def unique(prefix):
    """Return ``prefix`` plus a short random suffix (tenants and entities per test)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mint_token(tenant_id="t1", roles=(), ttl=3600, algorithm="HS256", key=JWT_SECRET, **claims):
    """Sign a token the way an identity provider would."""
    now = int(time.time())
    body = {"sub": "tester", "tenantId": tenant_id, "roles": list(roles), "iat": now, "exp": now + ttl}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm)


class RestCalls:
    """The REST calls the tests make with the token of one tenant, over a transport subclasses give (``request``)."""

    def request(self, method, path, **kwargs):
        """Send ``method`` to ``/api/v1`` + ``path``; return ``(status, parsed JSON or None, response)``."""
        raise NotImplementedError

    def call(self, method, path, expect=None, **kwargs):
        """Send a request; when ``expect`` is given, assert the status and return the JSON body, else the response."""
        status, body, response = self.request(method, path, **kwargs)
        if expect is not None:
            assert status == expect, (status, body if body is not None else response)
            return body
        return response

    def create_dashboard(self, name="Overview", tiles=None):
        """Create a dashboard with tiles (default: two number tiles)."""
        if tiles is None:
            tiles = [
                {"title": "Tickets", "metricName": "ticketsSold", "kind": "number"},
                {"title": "Revenue", "metricName": "revenue", "kind": "number", "unit": "EUR"},
            ]
        return self.call("POST", "/dashboards", 201, json={"name": name, "tiles": tiles})

    def dashboard(self, dashboard_id):
        """One dashboard with its ordered tiles (asserts 200)."""
        return self.call("GET", f"/dashboards/{dashboard_id}", 200)

    def put_entity(self, entity_id, entity_type="event", dashboard_id=None, name="Test entity"):
        """Register an entity; return the response body, whatever the status."""
        body = {"entityType": entity_type, "name": name}
        if dashboard_id is not None:
            body["dashboardId"] = dashboard_id
        return self.request("PUT", f"/entities/{entity_id}", json=body)[1]

    def ingest(self, *points):
        """Record metric points ``(entityId, metricName, value)``; return the response body (asserts 201)."""
        body = {"metrics": [{"entityId": e, "metricName": m, "value": v} for e, m, v in points]}
        return self.call("POST", "/metrics", 201, json=body)


class Api(RestCalls):
    """REST calls against a live server, with the token of one tenant."""

    def __init__(self, base_url, token, verify=True):
        self.base = base_url + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.verify = verify  # per request: REQUESTS_CA_BUNDLE in the environment would override a session's
        # For a test's own requests (the calls below do not use it); closing it is up to the test.
        self.session = requests.Session()
        self.session.headers.update(self.headers)

    def request(self, method, path, headers=None, **kwargs):
        # A connection per call, closed after it: one kept alive would hold the server's worker past
        # its graceful timeout when the server stops, and the master would kill it (and what it measured).
        kwargs.setdefault("verify", self.verify)
        response = requests.request(
            method, self.base + path, headers={**self.headers, **(headers or {})}, timeout=DEFAULT_TIMEOUT, **kwargs
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body, response


def tenant_with_entity(base_url, entity_id="event-1", verify=True):
    """A new tenant with one event entity on a two-tile dashboard: ``(tenant_id, admin Api)``."""
    tenant = unique("tenant")
    api = Api(base_url, mint_token(tenant, roles=("admin", "ingest")), verify=verify)
    api.put_entity(entity_id, "event", api.create_dashboard()["id"])
    return tenant, api


class RecordingClient:
    """A python-socketio client that records every server event and lets a test wait for one."""

    EVENTS = ("dashboard:initial", "dashboard:resume", "metric:update", "dashboard:update", "error", "auth:expiring")

    def __init__(self, namespace="/dashboard", reconnecting=False, **client_options):
        """``reconnecting``: like the seed's client, reconnect by itself and subscribe again on every connect.

        ``client_options`` go to ``socketio.Client``.
        """
        self.namespace = namespace
        options = {"reconnection": reconnecting, "reconnection_delay": 0.2, "reconnection_delay_max": 1}
        self.client = socketio.Client(**{**options, **client_options})
        self._record_in_wire_order()
        self.events = []
        self.arrived = []  # time.monotonic() of each of self.events
        self.connect_errors = []
        self.disconnects = []
        self.connects = 0
        self.subscriptions = {}
        self._cond = threading.Condition()
        for name in self.EVENTS:
            self.client.on(name, self._recorder(name), namespace=namespace)
        self.client.on("connect", self._record_connect, namespace=namespace)
        self.client.on("connect_error", self._record_connect_error, namespace=namespace)
        self.client.on("disconnect", self._record_disconnect, namespace=namespace)

    def _record_in_wire_order(self):
        """Handle the server's messages one by one, in the order they arrive.

        python-engineio's client hands each message to its handler through
        ``start_background_task``, a thread per message, so two events that
        arrive back to back could be recorded in either order; the tests check
        the order the server sent them in. The message handler is run at once
        instead, in the client's reading thread (public names only: the
        client's ``start_background_task`` and its ``handlers``). A Socket.IO
        DISCONNECT packet (type 1) still gets a thread of its own: handling it
        ends the client, which joins the reading thread.
        """
        eio = self.client.eio
        start_task = eio.start_background_task

        def start_in_order(target, *args, **kwargs):
            disconnect = bool(args) and isinstance(args[0], str) and args[0].startswith("1")
            if target == eio.handlers.get("message") and not disconnect:
                target(*args, **kwargs)
                return None
            return start_task(target, *args, **kwargs)

        eio.start_background_task = start_in_order

    def _recorder(self, name):
        def record(*args):
            with self._cond:
                self.events.append((name, args[0] if len(args) == 1 else args))
                self.arrived.append(time.monotonic())
                self._cond.notify_all()

        return record

    def _record_connect(self):
        with self._cond:
            self.connects += 1
            again = self.connects > 1
            self._cond.notify_all()
        if again:
            for entity_id, entity_type in list(self.subscriptions.items()):
                self.emit("subscribe", {"entityId": entity_id, "entityType": entity_type})

    def _record_connect_error(self, data=None):
        with self._cond:
            self.connect_errors.append(data)
            self._cond.notify_all()

    def _record_disconnect(self, reason=None):
        with self._cond:
            self.disconnects.append(reason)
            self._cond.notify_all()

    def connect(self, url, token, transports=("websocket",), wait=True):
        """Connect with ``auth.token``; raise socketio.exceptions.ConnectionError when refused."""
        self.client.connect(
            url,
            namespaces=[self.namespace],
            auth={"token": token} if token is not None else None,
            transports=list(transports),
            wait_timeout=DEFAULT_TIMEOUT,
        )
        return self

    def emit(self, event, data=None):
        """Send a client event."""
        self.client.emit(event, data, namespace=self.namespace)

    def call(self, event, data=None):
        """Send a client event and wait for its acknowledgement."""
        return self.client.call(event, data, namespace=self.namespace, timeout=DEFAULT_TIMEOUT)

    def subscribe(self, entity_id, entity_type="event"):
        """Subscribe and return the ``dashboard:initial`` for that entity."""
        mark = len(self.events)
        self.subscriptions[entity_id] = entity_type
        self.emit("subscribe", {"entityId": entity_id, "entityType": entity_type})
        return self.wait_for("dashboard:initial", lambda d: d["entityId"] == entity_id, after=mark)

    def of(self, name):
        """Every payload of event ``name`` received so far."""
        with self._cond:
            return [data for event, data in self.events if event == name]

    def arrivals(self, name):
        """The ``time.monotonic()`` at which each event ``name`` arrived."""
        with self._cond:
            return [at for (event, _), at in zip(self.events, self.arrived, strict=True) if event == name]

    def wait_for(self, name, predicate=None, timeout=DEFAULT_TIMEOUT, after=0):
        """Wait for an event ``name`` (after index ``after``) whose payload satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event, data in self.events[after:]:
                    if event == name and (predicate is None or predicate(data)):
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {name!r} event within {timeout}s; got {self.events[-10:]}")
                self._cond.wait(remaining)

    def wait_until(self, condition, timeout=DEFAULT_TIMEOUT, what="condition"):
        """Wait until ``condition(self)`` is true, re-checked on every event received."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{what} not met within {timeout}s; last events {self.events[-10:]}")
                self._cond.wait(remaining)

    def disconnect(self):
        """Disconnect if connected."""
        if self.client.connected:
            self.client.disconnect()


def scrape_metrics(base_url):
    """Every sample of the server's ``/metrics`` as ``{(name, sorted label items): value}``."""
    response = requests.get(base_url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric_value(base_url, name, **labels):
    """One sample of the server's ``/metrics``, 0 when the series does not exist yet."""
    return scrape_metrics(base_url).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_metric(base_url, name, expected, at_least=False, timeout=DEFAULT_TIMEOUT, **labels):
    """Wait until the sample equals ``expected`` (or reaches it); gauges and counts are published once a second."""
    deadline = time.monotonic() + timeout
    while True:
        current = metric_value(base_url, name, **labels)
        if current == expected or (at_least and current >= expected):
            return
        assert time.monotonic() < deadline, f"{name}{labels} is {current}, expected {expected}"
        time.sleep(0.05)
