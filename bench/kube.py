"""Benchmark 3 and the shared apiserver machinery (tests/components ControlPlane, loopback only).

3. latency: Events POSTed through the API at fixed rates; for each, the time from
   the POST's completion to the moment its record is read from the exporter's
   stdout (a pipe read line by line in this process), p50/p99.
5. peers: bench/peers.py (our exporter, the Collector's k8s_events and the peers
   whose binaries are given on the command line, on the same API load).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench import common
from bench.common import (
    REPO,
    end,
    exporter_argv,
    log,
    percentile,
    proc_cpu,
    wait_venv,
)


def _components():
    sys.path.insert(0, str(REPO))
    import tests.components as comps
    return comps


def start_control_plane():
    """etcd + kube-apiserver only: nothing else writes Events or burns CPU beside the benchmark."""
    comps = _components()
    log("starting etcd + kube-apiserver")
    cp = comps.ControlPlane(controller_manager=False, scheduler=False, kwok=False)
    try:
        cp.start()
    except BaseException:
        cp.stop()
        raise
    return cp


def stop(comp) -> None:
    try:
        comp.stop()
    except Exception as e:  # noqa: BLE001
        log(f"stopping {comp!r}: {e}")
    if not os.environ.get("KEE_KEEP_TMP") and getattr(comp, "dir", None):
        shutil.rmtree(comp.dir, ignore_errors=True)


class EventPoster:
    """Creates core/v1 Events over one kept-alive HTTPS connection (admin token)."""

    def __init__(self, cp, namespace: str):
        self.cp, self.ns = cp, namespace
        host, port = cp.server.removeprefix("https://").split(":")
        self.ctx = ssl.create_default_context(cafile=str(cp.ca_path))
        self.conn = http.client.HTTPSConnection(host, int(port), context=self.ctx, timeout=30)
        self.headers = {"Authorization": f"Bearer {cp.admin_token}", "Content-Type": "application/json"}
        self.i = 0

    def post(self, reason: str = "BenchLoad") -> tuple[str, float, float]:
        """One Event; returns (uid, time before the POST, time the response was read) as time.time()."""
        self.i += 1
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        name = f"bench-{uuid.uuid4().hex[:12]}"
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": self.ns},
                "involvedObject": {"kind": "Pod", "name": f"bench-pod-{self.i % 50}", "namespace": self.ns,
                                   "uid": f"00000000-0000-4000-8000-{self.i % 50:012d}", "apiVersion": "v1"},
                "reason": reason, "message": f"benchmark event {self.i} for kube-event-exporter",
                "type": "Normal" if self.i % 5 else "Warning", "count": 1,
                "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "kee-bench"}}
        data = json.dumps(body).encode()
        t0 = time.time()
        for attempt in range(3):
            try:
                self.conn.request("POST", f"/api/v1/namespaces/{self.ns}/events", data, self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                if attempt == 2:
                    raise
                self.conn.close()
        t1 = time.time()
        if resp.status != 201:
            raise RuntimeError(f"POST event: {resp.status} {raw[:300]!r}")
        return json.loads(raw)["metadata"]["uid"], t0, t1

    def close(self):
        self.conn.close()


def paced(rate: float, duration: float | None = None, count: int | None = None):
    """Yield at fixed times (open loop): i/rate after the start, for `duration` s or `count` ticks."""
    t0 = time.monotonic()
    i = 0
    while True:
        if count is not None and i >= count:
            return
        due = t0 + i / rate
        if duration is not None and due - t0 >= duration:
            return
        d = due - time.monotonic()
        if d > 0:
            time.sleep(d)
        yield i
        i += 1


class Arrivals:
    """When each event uid's record arrived at one sink (first arrival kept)."""

    def __init__(self, name: str):
        self.name = name
        self.seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.halt = threading.Event()

    def note(self, uid: str, t: float) -> None:
        with self._cond:
            self.seen.setdefault(uid, t)
            self._cond.notify_all()

    def start(self, loop) -> Arrivals:
        self.thread = threading.Thread(target=loop, daemon=True, name=f"arrivals-{self.name}")
        self.thread.start()
        return self

    def wait_for(self, uids, timeout: float) -> bool:
        uids = set(uids)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not uids <= self.seen.keys():
                left = deadline - time.monotonic()
                if left <= 0 or not self.thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.5))
        return True


def stdout_arrivals(proc: subprocess.Popen) -> Arrivals:
    """Reads the exporter's stdout pipe line by line; timestamps each record as it is read."""
    import orjson
    a = Arrivals("stdout")

    def loop():
        for line in proc.stdout:
            t = time.time()
            try:
                a.note(orjson.loads(line)["event"]["uid"], t)
            except Exception:  # noqa: BLE001
                continue
    return a.start(loop)


def kafka_arrivals(broker, topic: str) -> Arrivals:
    """A consumer assigned to the topic from the beginning, fetching with a 5 ms wait."""
    import orjson
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    a = Arrivals("kafka")
    c = Consumer(broker.client_config(**{"group.id": f"kee-bench-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
                                         "fetch.wait.max.ms": 5, "fetch.min.bytes": 1,
                                         "fetch.error.backoff.ms": 5}))
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def loop():
        try:
            while not a.halt.is_set():
                m = c.poll(0.05)
                if m is None or m.error():
                    continue
                t = time.time()
                try:
                    a.note(orjson.loads(m.value())["event"]["uid"], t)
                except Exception:  # noqa: BLE001
                    if m.key():
                        a.note(m.key().decode(), t)
        finally:
            c.close()
    return a.start(loop)


def collector_arrivals(col) -> Arrivals:
    """Polls the Collector's file exporter output every 5 ms (its flush interval is set to 10 ms)."""
    import orjson
    a = Arrivals("otlp")

    def loop():
        pos, buf = 0, b""
        while not a.halt.is_set():
            try:
                with open(col.output_path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except OSError:
                data = b""
            t = time.time()
            if data:
                pos += len(data)
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    req = orjson.loads(line)
                    for rl in req.get("resourceLogs", []):
                        for sl in rl.get("scopeLogs", []):
                            for lr in sl.get("logRecords", []):
                                for kv in lr.get("attributes", []):
                                    if kv["key"] == "k8s.event.uid":
                                        a.note(kv["value"].get("stringValue", ""), t)
            a.halt.wait(0.005)
    return a.start(loop)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the benchmark dies (no orphan keeps watching)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def start_exporter(cp, namespace: str, workdir: Path, stdout=subprocess.PIPE, extra: list | None = None):
    err = open(workdir / "exporter.stderr", "ab")
    p = subprocess.Popen(exporter_argv("run", "--kubeconfig", cp.kubeconfig, "--namespace", namespace,
                                       "--listen", "127.0.0.1:0", "--log-level", "warning", *(extra or [])),
                         stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, cwd=common.EXPORTER_ROOT,
                         preexec_fn=_die_with_parent)
    err.close()
    return p


def start_sink_components():
    """A Kafka broker and a Collector (file exporter flushing every 10 ms) for latency to those sinks."""
    comps = _components()
    log("starting the Kafka broker and the OTLP Collector (latency to sinks)")
    broker = comps.KafkaBroker()
    col = comps.Collector()
    col.config["exporters"]["file"]["flush_interval"] = "10ms"  # its default 100 ms would dominate
    col.config_path.write_text(json.dumps(col.config, indent=1))
    try:
        broker.start()
        col.start()
    except BaseException:
        stop(col)
        stop(broker)
        raise
    return broker, col


def bench_latency(cp, rates=(10, 100), duration: float = 20.0, broker=None, col=None) -> dict:
    """One exporter with every available sink enabled (stdout, Kafka, OTLP gRPC); per-sink arrival times."""
    wait_venv()
    ns = cp.create_namespace(f"bench-lat-{uuid.uuid4().hex[:5]}")
    workdir = Path(cp.dir) / "bench-latency"
    workdir.mkdir(exist_ok=True)
    extra = []
    topic = None
    if broker is not None:
        topic = broker.create_topic(f"bench-lat-{uuid.uuid4().hex[:6]}")
        extra += ["--set", "sinks.kafka.enabled=true", "--set", f"sinks.kafka.brokers={broker.bootstrap_servers}",
                  "--set", f"sinks.kafka.topic={topic}"]
    if col is not None:
        extra += ["--set", "sinks.otlp.enabled=true", "--set", f"sinks.otlp.endpoint=http://{col.grpc_endpoint}",
                  "--set", "sinks.otlp.protocol=grpc"]
    p = start_exporter(cp, ns, workdir, extra=extra)
    sinks = [stdout_arrivals(p)]
    if broker is not None:
        sinks.append(kafka_arrivals(broker, topic))
    if col is not None:
        sinks.append(collector_arrivals(col))
    poster = EventPoster(cp, ns)
    out: dict = {"duration_s": duration, "sinks": [a.name for a in sinks], "rates": {}}
    try:
        uid, _, _ = poster.post("BenchWarmup")
        for a in sinks:
            if not a.wait_for([uid], 60):
                raise RuntimeError(f"the warm-up event did not reach {a.name} within 60 s; exporter stderr: "
                                   f"{(workdir / 'exporter.stderr').read_text()[-2000:]}")
        for rate in rates:
            sent: dict[str, tuple[float, float]] = {}
            c0 = proc_cpu(p.pid)
            t_start = time.monotonic()
            late = 0
            for i in paced(rate, duration=duration):
                late += time.monotonic() - (t_start + i / rate) > 0.05
                uid, t0, t1 = poster.post("BenchLatency")
                sent[uid] = (t0, t1)
            elapsed = time.monotonic() - t_start
            complete = all([a.wait_for(sent, 30) for a in sinks])
            c1 = proc_cpu(p.pid)
            post_ms = [(t1 - t0) * 1000 for t0, t1 in sent.values()]
            row = {"events": len(sent), "achieved_rate": len(sent) / elapsed, "late_sends": late,
                   "post_p50_ms": percentile(post_ms, 50), "post_p99_ms": percentile(post_ms, 99),
                   "exporter_cpu_s": (c1 - c0) if c0 is not None and c1 is not None else None,
                   "complete": complete, "sinks": {}}
            for a in sinks:
                lat_done = [(a.seen[u] - t1) * 1000 for u, (t0, t1) in sent.items() if u in a.seen]
                lat_start = [(a.seen[u] - t0) * 1000 for u, (t0, t1) in sent.items() if u in a.seen]
                row["sinks"][a.name] = {
                    "received": len(lat_done), "missing": len(sent) - len(lat_done),
                    "p50_ms": percentile(lat_done, 50), "p90_ms": percentile(lat_done, 90),
                    "p99_ms": percentile(lat_done, 99), "max_ms": max(lat_done, default=float("nan")),
                    "p50_from_post_start_ms": percentile(lat_start, 50),
                    "p99_from_post_start_ms": percentile(lat_start, 99)}
                v = row["sinks"][a.name]
                log(f"latency {rate}/s -> {a.name}: {len(sent)} events, p50 {v['p50_ms']:.1f} ms, "
                    f"p99 {v['p99_ms']:.1f} ms, missing {v['missing']}")
            out["rates"][str(rate)] = row
    finally:
        poster.close()
        for a in sinks:
            a.halt.set()
        end(p)
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return out
