"""make bench-smoke: run every scenario with tiny numbers against both servers, check and render the results.

    .venv/bin/python -m bench.smoke

Fails (exit 1) when a tool is broken: a server that does not start, a client that does not
connect, a message that is not delivered, a scenario without figures. Not part of make test.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check(results):
    """Return the problems found in a smoke run's results."""
    problems = []
    scenarios = results["scenarios"]
    for server in ("ours", "peer"):
        steps = scenarios["capacity"][server]["steps"]
        if not steps or any(s["broadcast_delivered"] != s["held"] or not s["healthy"] for s in steps):
            problems.append(f"capacity/{server}: {steps}")
        points = scenarios["fanout"][server]["points"]
        if not points or any(p["delivered_ratio"] != 1 or not p["latency_ms"] for p in points):
            problems.append(f"fanout/{server}: {points}")
        rows = scenarios["latency"][server]["rows"]
        modes = {r["mode"] for r in rows if r["delivered_ratio"] == 1}
        if modes != ({"rest", "database"} if server == "ours" else {"rest"}):
            problems.append(f"latency/{server}: {rows}")
    if not scenarios["pollcost"]["points"]:
        problems.append("pollcost: no points")
    return problems


def main():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "smoke.json"
        subprocess.run(
            [sys.executable, "-m", "bench.run", "--profile", "smoke", "--out", str(out)], cwd=ROOT, check=True
        )
        problems = check(json.loads(out.read_text()))
        doc = Path(tmp) / "benchmarks.md"
        render = [sys.executable, "-m", "bench.render", str(out), "--doc", str(doc), "--img", tmp]
        subprocess.run(render, cwd=ROOT, check=True)
        rendered = doc.read_text()
        for heading in ("### 1. Capacity", "### 2. Fan-out", "### 3. Latency", "### 4. Poll cost"):
            if heading not in rendered:
                problems.append(f"render: no {heading!r}")
    for problem in problems:
        print("FAIL", problem)
    print("bench smoke: ok" if not problems else f"bench smoke: {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
