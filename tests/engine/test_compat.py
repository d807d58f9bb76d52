"""The engine layer's compatibility guard: fails, naming what to re-read, when a library it reaches into changed."""

import hashlib
import importlib
import inspect
import re
from importlib.metadata import version

import pytest

from app.realtime.engine import compat
from testkit import ROOT


def resolve(target):
    module_name, _, qualified = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in qualified.split("."):
        obj = getattr(obj, part)
    return obj


def source_hash(obj):
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def parts_relying_on(distribution):
    return "\n".join(
        f"  - {entry.target}: {entry.used_by}" for entry in compat.UPSTREAM if entry.distribution == distribution
    )


@pytest.mark.parametrize("distribution", sorted(compat.PINNED))
def test_installed_versions_are_the_ones_the_engine_layer_was_read_against(distribution):
    installed = version(distribution)
    assert installed == compat.PINNED[distribution], (
        f"{distribution} {installed} is installed; app/realtime/engine was read against "
        f"{compat.PINNED[distribution]}. Re-read these upstream parts beside the engine code that relies on them, "
        f"then update PINNED and their hashes in app/realtime/engine/compat.py:\n{parts_relying_on(distribution)}"
    )


def test_the_pinned_versions_are_those_of_requirements_txt():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert {name: pins.get(name) for name in compat.PINNED} == compat.PINNED


@pytest.mark.parametrize("entry", compat.UPSTREAM, ids=[entry.target for entry in compat.UPSTREAM])
def test_every_upstream_function_the_engine_layer_relies_on_is_unchanged(entry):
    try:
        obj = resolve(entry.target)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{entry.target} is gone ({exc}); the engine layer relies on it: {entry.used_by}")
    current = source_hash(obj)
    assert current == entry.source_hash, (
        f"{entry.target} ({entry.distribution} {version(entry.distribution)}) changed since the engine layer was "
        f"written against it (hash {entry.source_hash}, now {current}). Re-read it: {entry.used_by} "
        f"Then record source_hash={current!r} in app/realtime/engine/compat.py."
    )


def test_no_module_outside_the_engine_package_reaches_into_the_libraries():
    """Private names of the libraries appear only under app/realtime/engine/ (gunicorn.conf.py included)."""
    private_use = re.compile(
        r"\.(_async|_send_eio_packet|_engineio_server_class|_websocket_handler|_send_ping|_service_task|_sock"
        r"|_trigger_event|raw_write|wsgi_handler)\b|manager\.rooms|\beio\.sockets\b"
    )
    engine = ROOT / "app" / "realtime" / "engine"
    offenders = []
    for path in [*ROOT.joinpath("app").rglob("*.py"), ROOT / "gunicorn.conf.py", ROOT / "wsgi.py"]:
        if engine in path.parents:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private_use.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "library internals outside app/realtime/engine/:\n" + "\n".join(offenders)
