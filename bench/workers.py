"""Many gunicorn workers, no sticky proxy: polling clients on 1 and 4 workers beside the peer, and a hand-off's CPU.

    .venv/bin/python -m bench.workers --clients 400 --entities 4 --rate 10 --seconds 8 --rounds 3 --requests 3000

Holds three servers at once: ours with ``WEB_CONCURRENCY=1`` (``ours-1``), ours with 4 workers
(``ours-4``) and the Node.js peer (one process), each on its own tenant and entities.

Fan-out to polling clients: for each client variant in turn (``--variants``; ``polling``:
socket.io-client with ``transports: ['polling']``, a new TCP connection per request as Node's
XMLHttpRequest makes them; ``polling-keepalive``: the same with a keep-alive agent per client, as
a browser; ``default``: the client's default, polling then the upgrade to websocket), connects
``clients`` to every server (``clients / entities`` subscribers per entity), then ``rounds``
rounds of one window per server, the order reversed every round: REST writes at ``rate`` for
``seconds``, then the drain. Per window: delivered messages, server CPU (every process), messages
per server CPU-second, latency p50/p99, and ours' ``analytics_socketio_handoffs_total`` before and
after (scraped outside the window, once the workers have published their counts).

The CPU of a hand-off: ``sessions`` polling sessions opened by hand (handshake, namespace CONNECT
with a token, the poll that answers it), then ``requests`` Engine.IO pongs (``POST`` body ``3``,
answered ``OK``) spread over them from ``threads`` client threads, in three cases measured in
turn for ``rounds`` rounds: ``1 worker, new connections`` (no hand-off ever), ``4 workers, new
connections`` (each request on a TCP connection of its own with ``Connection: close``, so the
kernel gives it to any worker and those of another worker's session are handed over) and ``4
workers, kept alive`` (each session's requests on one connection, handed over once before the
count). Server CPU per request, with and without the servers' idle CPU (measured just before,
with the sessions held) taken off.

``--root`` runs ours from another checkout (with this checkout's virtualenv). Writes
bench/results/workers-<time>.json.
"""

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time

from bench import harness
from bench.run import Session, measure_window
from testkit import mint_token, scrape_metrics

#: socket.io-client's ``transports`` and keep-alive per client variant.
VARIANTS = {
    "polling": (["polling"], False),
    "polling-keepalive": (["polling"], True),
    "default": (["polling", "websocket"], False),
}

#: Seconds to wait before reading the hand-off counts: each worker publishes them once a second.
PUBLISH_WAIT = 1.5

#: The Engine.IO path of a polling request.
POLLING = "/socket.io/?EIO=4&transport=polling"


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def handoffs(server):
    """``{sent, taken, failed}`` of ours' hand-off counter, summed over its workers; None for the peer."""
    if server.name != "ours":
        return None
    time.sleep(PUBLISH_WAIT)
    samples = scrape_metrics(server.url)
    return {
        result: int(samples.get(("analytics_socketio_handoffs_total", (("result", result),)), 0))
        for result in ("sent", "taken", "failed")
    }


def difference(after, before):
    if after is None or before is None:
        return None
    return {key: after[key] - before[key] for key in after}


def idle_cpu(server, seconds):
    """CPU cores the server uses with its clients held and nothing written."""
    procs = server.procs()
    cpu0, t0 = harness.cpu_seconds(procs), time.monotonic()
    time.sleep(seconds)
    return (harness.cpu_seconds(procs) - cpu0) / (time.monotonic() - t0)


def client_counts(session):
    """Disconnects and error events the load generators have seen since they connected."""
    reports = [gen.report() for gen in session.generators]
    return {"open": sum(r["open"] for r in reports), "disconnects": sum(r["disconnects"] for r in reports)}


def fanout(held, variant, args):
    """Connect ``args.clients`` of ``variant`` to every held server, then measure them window by window, in turn."""
    transports, keep_alive = VARIANTS[variant]
    names = list(held)
    connected = {}
    for name in names:
        session = held[name]
        before = handoffs(session.server)
        cpu0 = harness.cpu_seconds(session.server.procs())
        gen = harness.LoadGenerator(
            session.server.url,
            session.tenant.client_token,
            session.tenant.entities,
            args.clients,
            client="socketio",
            batch=args.batch,
            transports=transports,
            keep_alive=keep_alive,
        )
        session.generators.append(gen)
        ready = gen.wait_ready()
        ready["server_cpu_s"] = round(harness.cpu_seconds(session.server.procs()) - cpu0, 2)
        ready["handoffs"] = difference(handoffs(session.server), before)
        ready["idle_server_cpu_cores"] = round(idle_cpu(session.server, args.idle_seconds), 4)
        connected[name] = ready
        log(f"  {variant} {name}: connected {ready}")
        if ready["failed"]:
            log(f"  {name}: {ready['failed']} connections failed: {ready['first_error']}")
    windows = {name: [] for name in names}
    for k in range(args.rounds):
        for name in names if k % 2 == 0 else names[::-1]:
            session = held[name]
            writer = harness.RestWriter(session.server.url, session.tenant.admin_token)
            before = handoffs(session.server)
            window = measure_window(session, writer, args.rate, args.seconds, connected[name]["connected"])
            window["handoffs"] = difference(handoffs(session.server), before)
            window.update(client_counts(session))
            window["round"] = k
            windows[name].append(window)
            latency = window["latency_ms"] or {}
            log(
                f"  {variant} {name} round {k}: {window['received']}/{window['expected']} "
                f"cpu={window['server_cpu_cores']} msgs/cpu-s={window['msgs_per_server_cpu_s']} "
                f"p50/p99={latency.get('p50')}/{latency.get('p99')} handoffs={window['handoffs']} "
                f"open={window['open']} disconnects={window['disconnects']}"
            )
    for session in held.values():
        for gen in session.generators:
            gen.close()
        session.generators.clear()
    return {
        name: {
            "connect": connected[name],
            "windows": windows[name],
            "median": summary(windows[name]),
        }
        for name in names
    }


def summary(windows):
    """Median, min and max over windows of the figures the docs quote."""

    def spread(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}

    return {
        "msgs_per_s": spread([w["msgs_per_s"] for w in windows]),
        "delivered_ratio": spread([w["delivered_ratio"] for w in windows]),
        "server_cpu_cores": spread([w["server_cpu_cores"] for w in windows]),
        "msgs_per_server_cpu_s": spread([w["msgs_per_server_cpu_s"] for w in windows]),
        "p50_ms": spread([(w["latency_ms"] or {}).get("p50") for w in windows]),
        "p99_ms": spread([(w["latency_ms"] or {}).get("p99") for w in windows]),
        "handoffs_sent": spread([w["handoffs"]["sent"] if w["handoffs"] else None for w in windows]),
        "generator_cpu_cores": spread([w["generator_cpu_cores"] for w in windows]),
    }


# --- the CPU of one hand-off -----------------------------------------------------------------------------------------


class PollingSession:
    """A polling session connected to /dashboard, opened by hand (as polling_connect in tests/test_nginx.py)."""

    def __init__(self, port, token):
        self.port = port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", POLLING)
            handshake = conn.getresponse().read().decode()
            self.sid = json.loads(handshake[1:])["sid"]  # "0{...}": the OPEN packet
            self.path = f"{POLLING}&sid={self.sid}"
            self._expect(conn, "POST", "40/dashboard," + json.dumps({"token": token}), "OK")
            connected = self._expect(conn, "GET", None, None)
            if not connected.startswith("40/dashboard,{"):
                raise RuntimeError(f"namespace not connected: {connected!r}")
        finally:
            conn.close()
        self.kept = None  # the connection of the kept-alive case

    def _expect(self, conn, method, body, answer):
        headers = {"Content-Type": "text/plain;charset=UTF-8"} if body is not None else {}
        conn.request(method, self.path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        if response.status != 200 or (answer is not None and text != answer):
            raise RuntimeError(f"{method} {self.path}: {response.status} {text!r}")
        return text

    def pong(self, kept_alive):
        """POST an Engine.IO pong, on a connection of its own (closed by the server) or on the session's own."""
        if kept_alive:
            if self.kept is None:
                self.kept = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self._expect(self.kept, "POST", "3", "OK")
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "POST", self.path, body="3", headers={"Content-Type": "text/plain;charset=UTF-8", "Connection": "close"}
            )
            response = conn.getresponse()
            text = response.read().decode()
            if response.status != 200 or text != "OK":
                raise RuntimeError(f"POST {self.path}: {response.status} {text!r}")
        finally:
            conn.close()

    def close(self):
        """End the session (Engine.IO CLOSE), so that it does not wait for its ping timeout."""
        with contextlib.suppress(Exception):
            conn = self.kept or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("POST", self.path, body="1", headers={"Content-Type": "text/plain;charset=UTF-8"})
            conn.getresponse().read()
            conn.close()


def send_pongs(sessions, requests, threads, kept_alive):
    """``requests`` pongs over ``sessions`` from ``threads`` threads; return (seconds, errors)."""
    errors = []

    def work(k):
        # Thread k owns sessions k, k + threads, ...: a kept-alive connection is never shared between threads.
        mine = sessions[k::threads]
        for i in range(k, requests, threads):
            try:
                mine[(i // threads) % len(mine)].pong(kept_alive)
            except Exception as error:
                errors.append(repr(error))

    started = time.monotonic()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.monotonic() - started, errors


def handoff_case(session, kept_alive, args):
    """One window of the hand-off measure: open the sessions, measure idle, send the pongs, close the sessions."""
    server = session.server
    token = mint_token(session.tenant.tenant_id)
    sessions = [PollingSession(server.live.port, token) for _ in range(args.sessions)]
    try:
        if kept_alive:
            for s in sessions:  # the first request on each connection may be handed over; not counted
                s.pong(kept_alive=True)
        before = handoffs(server)
        idle = idle_cpu(server, args.idle_seconds)
        procs = server.procs()
        cpu0 = harness.cpu_seconds(procs)
        seconds, errors = send_pongs(sessions, args.requests, args.threads, kept_alive)
        cpu = harness.cpu_seconds(procs) - cpu0
        counted = difference(handoffs(server), before)
    finally:
        for s in sessions:
            s.close()
    done = args.requests - len(errors)
    return {
        "workers": server.workers,
        "kept_alive": kept_alive,
        "requests": done,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(seconds, 3),
        "requests_per_s": round(done / seconds, 1),
        "server_cpu_s": round(cpu, 3),
        "idle_server_cpu_cores": round(idle, 4),
        "cpu_us_per_request": round(cpu / done * 1e6, 1),
        "cpu_us_per_request_less_idle": round((cpu - idle * seconds) / done * 1e6, 1),
        "handoffs": counted,
        "handed_off_fraction": round(counted["sent"] / done, 4) if counted and done else None,
    }


def handoff_cost(held, args):
    """The three cases in turn for ``args.rounds`` rounds, and the CPU per hand-off derived from their medians."""
    cases = {
        "1 worker, new connections": (held["ours-1"], False),
        "4 workers, new connections": (held["ours-4"], False),
        "4 workers, kept alive": (held["ours-4"], True),
    }
    names = list(cases)
    runs = {name: [] for name in names}
    for k in range(args.rounds):
        for name in names if k % 2 == 0 else names[::-1]:
            session, kept_alive = cases[name]
            run = handoff_case(session, kept_alive, args)
            run["round"] = k
            runs[name].append(run)
            log(f"  handoff {name} round {k}: {run}")
    medians = {}
    for name in names:
        medians[name] = {
            key: statistics.median([r[key] for r in runs[name]])
            for key in ("cpu_us_per_request", "cpu_us_per_request_less_idle", "handed_off_fraction", "requests_per_s")
        }
    derived = {}
    base, handed = medians["1 worker, new connections"], medians["4 workers, new connections"]
    if handed["handed_off_fraction"]:
        for key in ("cpu_us_per_request", "cpu_us_per_request_less_idle"):
            derived[key.replace("per_request", "per_handoff")] = round(
                (handed[key] - base[key]) / handed["handed_off_fraction"], 1
            )
        # Per round, too: the spread of the derived figure.
        derived["per_round_cpu_us_per_handoff_less_idle"] = [
            round((h["cpu_us_per_request_less_idle"] - b["cpu_us_per_request_less_idle"]) / h["handed_off_fraction"], 1)
            for b, h in zip(runs["1 worker, new connections"], runs["4 workers, new connections"], strict=True)
            if h["handed_off_fraction"]
        ]
    return {"runs": runs, "medians": medians, "derived": derived}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=400, help="clients per server in the fan-out")
    parser.add_argument("--entities", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10, help="REST writes per second in a fan-out window")
    parser.add_argument("--seconds", type=float, default=8, help="writes per window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="clients connecting at once")
    parser.add_argument("--variants", default="polling,default", help=f"of {', '.join(VARIANTS)}; '' for none")
    parser.add_argument("--idle-seconds", type=float, default=3)
    parser.add_argument("--sessions", type=int, default=40, help="polling sessions in the hand-off measure")
    parser.add_argument("--requests", type=int, default=3000, help="pongs per window in the hand-off measure (0: skip)")
    parser.add_argument("--threads", type=int, default=4, help="client threads sending them")
    parser.add_argument("--root", help="run ours from this checkout (e.g. one with a change to compare), as bench.ab")
    args = parser.parse_args()
    harness.install_cleanup()
    result = {
        "command": harness.command("workers"),
        "options": vars(args),
        "machine": harness.machine(),
    }
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        held = {}
        for name, kind, workers in (("ours-1", "ours", 1), ("ours-4", "ours", 4), ("peer", "peer", 1)):
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            root = args.root if kind == "ours" else None
            held[name] = Session(kind, tmp, args.entities, workers=workers, root=root)
            stack.callback(held[name].close)
        result["fanout"] = {}
        for variant in filter(None, args.variants.split(",")):
            log(f"fan-out, {variant} clients")
            result["fanout"][variant] = fanout(held, variant, args)
        if args.requests:
            log("the CPU of a hand-off")
            result["handoff_cost"] = handoff_cost(held, args)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["load_average_end"] = os.getloadavg()
    print(harness.save_result("workers", result))


if __name__ == "__main__":
    main()
