"""Nothing is lost: faults injected on real components while real Events keep coming.

Every scenario runs the exporter with all three sinks at once (stdout, Kafka,
OTLP to the Collector) on a steady stream of Events created through both APIs
(with recurrences, i.e. count bumps) plus controller/scheduler Events from a
KWOK Deployment being scaled. It asserts zero loss in every sink: every
(uid, resourceVersion) the producer created, and every Event that exists at
the end in its current version, reached stdout, Kafka and the Collector.
Duplicates and the recovery time are reported in the summary table.
"""
from __future__ import annotations

import collections
import json
import random
import threading
import time
import uuid

import pytest

from tests.faults.conftest import ROWS
from tests.support.events import bump_core_count, core_event, create, v1_event
from tests.support.exporter_proc import Exporter

pytestmark = pytest.mark.faults


class Load:
    """Steady real Events: API-created (both shapes, some recurring) and a KWOK Deployment being scaled."""

    def __init__(self, cp, ns: str, rate: float = 15, recur: bool = True) -> None:
        self.cp, self.ns, self.rate, self.recur = cp, ns, rate, recur
        self.ids: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._events, daemon=True),
                         threading.Thread(target=self._scale, daemon=True)]

    def _events(self) -> None:
        i, core_names = 0, []
        while not self._stop.is_set():
            if self.recur and core_names and i % 5 == 4:
                name, count = random.choice(core_names)
                try:
                    ev = bump_core_count(self.cp, self.ns, name, count + 1)
                    core_names[core_names.index((name, count))] = (name, count + 1)
                except AssertionError:  # apiserver restarting: try another time
                    ev = None
            elif i % 2:
                ev = create(self.cp, core_event(self.ns, message=f"n{i}"))
                core_names.append((ev["metadata"]["name"], 1))
            else:
                ev = create(self.cp, v1_event(self.ns, note=f"n{i}"))
            if ev:
                self.ids.add((ev["metadata"]["uid"], ev["metadata"]["resourceVersion"]))
            i += 1
            self._stop.wait(1 / self.rate)

    def _scale(self) -> None:
        replicas = 1
        while not self._stop.wait(3):
            replicas = 3 if replicas == 1 else 1
            self.cp.kubectl("scale", "deployment", "load", "-n", self.ns, f"--replicas={replicas}", check=False)

    def start(self):
        self.cp.kubectl("create", "deployment", "load", "--image=registry.example/load:1", "--replicas=1",
                        "-n", self.ns)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


class Rig:
    """The exporter (restartable) with stdout + Kafka + OTLP sinks, and the readers of each sink."""

    def __init__(self, cp, broker, collector, ns, tmp_path) -> None:
        self.cp, self.broker, self.collector, self.ns, self.tmp = cp, broker, collector, ns, tmp_path
        self.topic = broker.create_topic(f"faults-{uuid.uuid4().hex[:8]}", partitions=3)
        self.runs: list[Exporter] = []

    def start(self, *extra: str, **kw) -> Exporter:
        args = ["run", "--kubeconfig", str(self.cp.kubeconfig), "--namespace", self.ns, "--listen", "127.0.0.1:0",
                "--checkpoint-file", str(self.tmp / "checkpoint.json"),
                "--set", "checkpoint.interval_seconds=1", "--set", "kubernetes.backoff_max_seconds=2",
                "--set", "sinks.kafka.enabled=true", "--set", f"sinks.kafka.brokers={self.broker.bootstrap_servers}",
                "--set", f"sinks.kafka.topic={self.topic}", "--set", "sinks.kafka.linger_ms=5",
                "--set", "sinks.otlp.enabled=true", "--set", f"sinks.otlp.endpoint=http://{self.collector.grpc_endpoint}",
                "--set", "sinks.otlp.batch_timeout_seconds=0.2", "--set", "sinks.otlp.retry_backoff_max_seconds=2",
                "--set", "sinks.otlp.timeout_seconds=3", *extra]
        exp = Exporter(args, self.tmp / f"run{len(self.runs)}.log", **kw)
        self.runs.append(exp)
        exp.wait_log("stream_resuming" if (self.tmp / "checkpoint.json").exists() else "stream_starting")
        return exp

    # what each sink holds, as (uid, resourceVersion) occurrences
    def stdout_ids(self) -> list[tuple[str, str]]:
        return [(r["event"]["uid"], r["event"]["resource_version"]) for e in self.runs for r in e.snapshot()]

    def kafka_ids(self) -> list[tuple[str, str]]:
        out = []
        for rec in self.broker.consume(self.topic, idle=2, timeout=60):
            r = json.loads(rec.value)
            out.append((r["event"]["uid"], r["event"]["resource_version"]))
        return out

    def otlp_ids(self) -> list[tuple[str, str]]:
        return [(lg["attributes"].get("k8s.event.uid"), lg["attributes"].get("k8s.event.resource_version"))
                for lg in self.collector.read_logs()
                if self.ns in (lg["resource"].get("k8s.namespace.name"), lg["attributes"].get("k8s.namespace.name"))]

    def existing_ids(self) -> set[tuple[str, str]]:
        items = self.cp.get_json(f"/apis/events.k8s.io/v1/namespaces/{self.ns}/events")["items"]
        return {(i["metadata"]["uid"], i["metadata"]["resourceVersion"]) for i in items}

    def settle(self, expected: set, t0: float, timeout: float = 90) -> float:
        """Wait until every sink holds every expected occurrence; returns seconds since t0."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (expected <= set(self.stdout_ids()) and expected <= set(self.otlp_ids())
                    and expected <= set(self.kafka_ids())):
                return round(time.monotonic() - t0, 1)
            time.sleep(1)
        return -1.0

    def verify(self, scenario: str, load: Load, recovery: float) -> None:
        expected = load.ids | self.existing_ids()
        sinks = {"stdout": self.stdout_ids(), "kafka": self.kafka_ids(), "otlp": self.otlp_ids()}
        lost = {name: len(expected - set(got)) for name, got in sinks.items()}
        dups = {name: sum(n - 1 for n in collections.Counter(got).values() if n > 1) for name, got in sinks.items()}
        invalid = [x for e in self.runs for x in e.invalid]
        ROWS.append({"scenario": scenario, "events": len(expected),
                     "lost": "/".join(str(lost[k]) for k in sinks), "duplicated": "/".join(str(dups[k]) for k in sinks),
                     "recovery_s": recovery})
        assert not invalid, invalid[:3]
        missing = sorted(expected - set(sinks["stdout"]))[:5]
        detail = [(m, "created-by-load" if m in load.ids else "existing-at-end", self._describe(m[0])) for m in missing]
        assert lost == {"stdout": 0, "kafka": 0, "otlp": 0}, (lost, detail)

    def _describe(self, uid: str) -> str:
        items = self.cp.get_json(f"/api/v1/namespaces/{self.ns}/events")["items"]
        for i in items:
            if i["metadata"]["uid"] == uid:
                obj = i["involvedObject"]
                return (f"{i['reason']} {obj['kind']}/{obj['name']} count={i.get('count')}"
                        f" rv={i['metadata']['resourceVersion']} first={i.get('firstTimestamp')} "
                        f"last={i.get('lastTimestamp')} created={i['metadata']['creationTimestamp']}")
        return "gone"

    def close(self) -> None:
        for e in self.runs:
            e.stop()


@pytest.fixture
def rig(control_plane, kafka_broker, otel_collector, namespace, tmp_path):
    control_plane.create_kwok_nodes(2) if not control_plane.kubectl(
        "get", "nodes", "-l", "type=kwok", "-o", "name").stdout.strip() else None
    r = Rig(control_plane, kafka_broker, otel_collector, namespace, tmp_path)
    yield r
    r.close()


def run_scenario(rig: Rig, name: str, fault, *, recur: bool = True, warmup: float = 4, after: float = 4) -> None:
    # The exporter first: what happened before its first start is only seen in its latest version.
    rig.start().wait_log("listed")
    load = Load(rig.cp, rig.ns, recur=recur).start()
    try:
        time.sleep(warmup)
        fault(rig, load)
        time.sleep(after)
    finally:
        load.stop()
    t0 = time.monotonic()
    recovery = rig.settle(load.ids | rig.existing_ids(), t0)
    if rig.runs[-1].proc.poll() is None:
        assert rig.runs[-1].terminate() == 0
    rig.verify(name, load, recovery)


def test_sigkill_at_random_points(rig):
    def fault(r, load):
        for _ in range(3):
            time.sleep(random.uniform(0.5, 3))
            r.runs[-1].kill()
            time.sleep(random.uniform(0, 2))
            r.start()
    run_scenario(rig, "SIGKILL x3", fault)


def test_apiserver_restart(rig):
    def fault(r, load):
        r.cp.restart_apiserver()
    run_scenario(rig, "apiserver restart", fault)


def test_410_while_the_exporter_is_down(rig):
    def fault(r, load):
        assert r.runs[-1].terminate() == 0
        time.sleep(3)  # events keep coming while it is down
        r.cp.force_410()
        r.start()
        r.runs[-1].wait_log("watch_gone_relisting")
    # No recurrences: across a compaction only an Event's latest version still exists (by design).
    run_scenario(rig, "410 during downtime", fault, recur=False)


def test_kafka_broker_down(rig):
    def fault(r, load):
        r.broker.stop()
        time.sleep(8)
        r.broker.start()
    run_scenario(rig, "Kafka down 8s", fault)


def test_collector_down(rig):
    def fault(r, load):
        r.collector.stop()
        time.sleep(8)
        r.collector.start()
    run_scenario(rig, "Collector down 8s", fault)


def test_slow_stdout_reader(rig):
    def fault(r, load):
        r.runs[-1].kill()
        r.start(read_delay=0.05)  # a log shipper that reads 20 lines/s: the pipe fills, the watch waits
        time.sleep(6)
        r.runs[-1].kill()
        r.start()
    run_scenario(rig, "slow stdout + kills", fault)


def test_sigterm_while_kafka_is_down_and_the_sink_is_full(rig):
    bound = ("--set", "sinks.kafka.max_in_flight_records=20")

    def fault(r, load):
        r.runs[-1].kill()
        r.start(*bound)
        r.broker.stop()
        time.sleep(4)  # > 20 records arrive: send() blocks, the watch waits
        t0 = time.monotonic()
        rc = r.runs[-1].terminate(timeout=45)
        assert time.monotonic() - t0 < 40, "SIGTERM hung behind the blocked sink"
        assert rc == 1  # undelivered records at exit are an error, and stay behind the checkpoint
        r.broker.start()
        r.start(*bound)
    run_scenario(rig, "SIGTERM, Kafka down, sink full", fault)


def test_sigterm_while_the_collector_is_down_and_the_sink_is_full(rig):
    """The OTLP send() blocked by backpressure is interrupted at once (it used to hold the drain for 5 s and be
    abandoned); the records the Collector did not confirm make the exit code 1 and stay behind the checkpoint."""
    bound = ("--set", "sinks.otlp.max_in_flight_records=20")

    def fault(r, load):
        r.runs[-1].kill()
        r.start(*bound)
        r.collector.stop()
        time.sleep(4)  # > 20 records arrive: send() blocks, the watch waits
        t0 = time.monotonic()
        rc = r.runs[-1].terminate(timeout=45)
        assert time.monotonic() - t0 < 40, "SIGTERM hung behind the blocked sink"
        assert rc == 1
        events = r.runs[-1].log_events()
        assert "sink_undelivered_at_close" in events and "drain_source_still_sending" not in events
        r.collector.start()
        r.start(*bound)
    run_scenario(rig, "SIGTERM, Collector down, sink full", fault)
