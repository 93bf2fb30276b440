"""Session fixtures that start the REAL components (see tests/components).

- control_plane: etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KWOK
- kafka_broker:  single-node KRaft broker (PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners)
- otel_collector: otelcol-kee, OTLP gRPC+HTTP in, file exporter out
- opensearch:    single-node OpenSearch 2.19 (plain HTTP, no security plugin)
- namespace:     a fresh namespace per test (deleted afterwards)

A missing binary FAILS the test (never skips) and says to run scripts/testbin.
Tests using these fixtures are marked `real` automatically. A test that stops a
session component must start it again before it returns.
When a test fails, the tail of every running component's log is attached to
its report. Set KEE_KEEP_TMP=1 to keep the components' directories (logs, data).
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid

import pytest

from tests.components import Collector, ControlPlane, KafkaBroker, MissingComponent, OpenSearch, running_logs

STARTUP_SECONDS: dict[str, float] = {}
REAL_FIXTURES = {"control_plane", "kafka_broker", "otel_collector", "opensearch", "namespace"}


def _start(name: str, factory):
    """Build and start a component; a missing binary is a test failure, not a skip."""
    t0 = time.monotonic()
    try:
        comp = factory()
    except MissingComponent as e:
        pytest.fail(str(e), pytrace=False)
    try:
        comp.start()
    except BaseException:
        comp.stop()  # leave nothing half-started behind; the error has the log tail
        raise
    STARTUP_SECONDS[name] = time.monotonic() - t0
    return comp


def _cleanup(comp) -> None:
    comp.stop()
    if not os.environ.get("KEE_KEEP_TMP"):
        shutil.rmtree(comp.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def control_plane():
    cp = _start("control_plane", ControlPlane)
    yield cp
    _cleanup(cp)


@pytest.fixture(scope="session")
def kafka_broker():
    broker = _start("kafka_broker", KafkaBroker)
    yield broker
    _cleanup(broker)


@pytest.fixture(scope="session")
def otel_collector():
    col = _start("otel_collector", Collector)
    yield col
    _cleanup(col)


@pytest.fixture(scope="session")
def opensearch():
    node = _start("opensearch", OpenSearch)
    yield node
    _cleanup(node)


@pytest.fixture
def namespace(control_plane, request):
    """A new namespace named after the test (with its 'default' ServiceAccount ready)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items):
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        logs = running_logs(40)
        if logs:
            rep.sections.append(("component logs (last 40 lines each)", logs))


def pytest_terminal_summary(terminalreporter):
    if STARTUP_SECONDS:
        terminalreporter.write_line("component startup: " + ", ".join(
            f"{k} {v:.1f}s" for k, v in STARTUP_SECONDS.items()))
