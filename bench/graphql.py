"""GraphQL against REST: requests per second and server CPU per request, for reads of many entities and for writes.

    .venv/bin/python -m bench.graphql --requests 1000 --threads 4 --runs 3
    .venv/bin/python -m bench.graphql --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

Starts ours (one worker; its own SQLite file unless ``--database-url``), registers ``entities``
entities with 5 metrics each, then for each shape, in turn within each run, sends ``requests``
requests from ``threads`` threads as fast as they are answered and measures the server's CPU
(all its processes, psutil) and the wall time:

- ``entities+metrics``: one GraphQL query ``{ entities { entityId metrics { metricName value } } }``
  against REST's ``GET /entities`` plus one ``GET /entities/<id>/metrics`` per entity (what a
  REST client must send for the same data; the figure is per *answer*, so per 1 + entities
  REST requests);
- ``entity metrics``: one entity's metrics: ``entity(entityId) { metrics { ... } }`` against
  ``GET /entities/<id>/metrics``;
- ``write``: one metric: ``recordMetrics`` against ``POST /metrics``.

Writes bench/results/graphql-<time>.json.
"""

import argparse
import statistics
import tempfile
import threading
import time
import uuid

import requests

from bench import harness

ENTITIES_QUERY = "{ entities { entityId metrics { metricName value } } }"
ENTITY_QUERY = "query($e: String!) { entity(entityId: $e) { metrics { metricName value } } }"
WRITE_MUTATION = (
    'mutation($e: String!, $v: Float!) { recordMetrics(metrics: [{entityId: $e, metricName: "m0", value: $v}]) '
    "{ accepted lastSeq } }"
)


def shapes(base, entities):
    """``{name: {api: answer(session, n)}}``: one answer of each shape, by GraphQL and by REST."""

    def gql(query, variables=None):
        def answer(session, _n):
            response = session.post(base + "/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
            assert response.status_code == 200 and "errors" not in response.json(), response.text[:300]

        return answer

    def gql_vars(query, make_variables):
        def answer(session, n):
            body = {"query": query, "variables": make_variables(n)}
            response = session.post(base + "/graphql", json=body, timeout=30)
            assert response.status_code == 200 and "errors" not in response.json(), response.text[:300]

        return answer

    def rest_all(session, _n):
        listed = session.get(base + "/api/v1/entities", timeout=30)
        assert listed.status_code == 200, listed.text[:300]
        for entity in entities:
            assert session.get(f"{base}/api/v1/entities/{entity}/metrics", timeout=30).status_code == 200

    def rest_one(session, n):
        entity = entities[n % len(entities)]
        assert session.get(f"{base}/api/v1/entities/{entity}/metrics", timeout=30).status_code == 200

    def rest_write(session, n):
        body = {"entityId": entities[n % len(entities)], "metricName": "m0", "value": float(n)}
        assert session.post(base + "/api/v1/metrics", json=body, timeout=30).status_code == 201

    return {
        "entities+metrics": {"graphql": gql(ENTITIES_QUERY), "rest": rest_all},
        "entity metrics": {
            "graphql": gql_vars(ENTITY_QUERY, lambda n: {"e": entities[n % len(entities)]}),
            "rest": rest_one,
        },
        "write": {
            "graphql": gql_vars(WRITE_MUTATION, lambda n: {"e": entities[n % len(entities)], "v": float(n)}),
            "rest": rest_write,
        },
    }


def drive(server, token, answer, count, threads):
    """``count`` answers from ``threads`` threads; return ``(server CPU seconds, wall seconds)``."""

    def work(k):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        for n in range(k, count, threads):
            answer(session, n)

    cpu_before = harness.cpu_seconds(server.procs())
    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return harness.cpu_seconds(server.procs()) - cpu_before, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="answers per shape, API and run")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entities", type=int, default=50)
    parser.add_argument("--database-url", help="DATABASE_URL for ours (default: a fresh SQLite file)")
    args = parser.parse_args()
    harness.install_cleanup()
    result = {"command": harness.command("graphql"), "machine": harness.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        server = harness.make_server("ours", tmp, database_url=args.database_url).start()
        try:
            tenant = harness.Tenant(server, f"bench-tenant-{uuid.uuid4().hex[:8]}", entities=args.entities)
            writer = harness.RestWriter(server.url, tenant.admin_token)
            for entity in tenant.entities:
                for m in range(5):
                    writer.write(entity, f"m{m}", float(m))
            cases = shapes(server.url, tenant.entities)
            samples = {(shape, api): [] for shape in cases for api in cases[shape]}
            for apis in cases.values():  # warm up
                for answer in apis.values():
                    drive(server, tenant.admin_token, answer, min(50, args.requests), args.threads)
            for _ in range(args.runs):
                for shape, apis in cases.items():
                    for api, answer in apis.items():
                        count = args.requests if shape != "entities+metrics" else max(1, args.requests // 10)
                        cpu, wall = drive(server, tenant.admin_token, answer, count, args.threads)
                        samples[shape, api].append(
                            {"answers": count, "cpu_ms_per_answer": 1000 * cpu / count, "answers_per_s": count / wall}
                        )
        finally:
            server.stop()
    rows = []
    for (shape, api), runs in samples.items():
        rows.append(
            {
                "shape": shape,
                "api": api,
                "cpu_ms_per_answer": [round(r["cpu_ms_per_answer"], 3) for r in runs],
                "cpu_ms_per_answer_median": round(statistics.median(r["cpu_ms_per_answer"] for r in runs), 3),
                "answers_per_s_median": round(statistics.median(r["answers_per_s"] for r in runs), 1),
            }
        )
    result["rows"] = rows
    path = harness.save_result("graphql", result)
    for row in rows:
        print(
            f"{row['shape']:>17} {row['api']:>8}: {row['cpu_ms_per_answer_median']:8.3f} ms CPU per answer "
            f"{row['cpu_ms_per_answer']}, {row['answers_per_s_median']:8.1f} answers/s"
        )
    print(path)


if __name__ == "__main__":
    main()
