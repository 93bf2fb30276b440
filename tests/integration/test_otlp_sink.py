"""The OTLP sink against the REAL OpenTelemetry Collector (otelcol-kee, tests/components/collector.py).

- records over gRPC and over OTLP/HTTP come back out of the file exporter with the
  mapped attributes, severity, body and timestamps (both Event API shapes);
- the Collector is down while records keep coming, then up: every record arrives and
  the watermark (what the checkpoint follows) waited for it;
- the CLI replay path end to end (the sink handed each record's struct: the same content as from its dict);
- the benchmark's debug-exporter Collector counts exactly what was confirmed;
- side by side with the Collector's own k8s_events receiver on the same apiserver and
  the same Events: same attribute names and values, apart from the documented
  differences (docs/otlp.md).
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.records import normalise

try:  # the watch decodes into exporter.wire.Event structs where that module exists
    from exporter.wire import event as _wire_event
except ImportError:  # pragma: no cover - older tree: normalise takes the dict
    def _wire_event(obj):
        return obj
from exporter.settings import OtlpSettings
from exporter.sinks.otlp import OtlpSink, otlp_view
from tests.components import Collector

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
from tests.support.streams import GEN_STREAM as GEN  # noqa: E402


def sample_records(cluster: str, n: int) -> list[dict]:
    """n records alternating the two API shapes, each with a unique event uid."""
    out = []
    for i in range(n):
        uid = f"{cluster}-{i}"
        if i % 2:
            obj = {"kind": "Event", "apiVersion": "v1",
                   "metadata": {"name": f"web-{i}.1", "namespace": "shop", "uid": uid, "resourceVersion": str(1000 + i),
                                "creationTimestamp": "2026-11-29T03:18:45Z"},
                   "involvedObject": {"kind": "Pod", "namespace": "shop", "name": f"web-{i}", "uid": f"pod-{i}",
                                      "apiVersion": "v1", "resourceVersion": "55", "fieldPath": "spec.containers{web}"},
                   "reason": "BackOff", "message": f"Back-off restarting failed container ({i}) é",
                   "source": {"component": "kubelet", "host": "node-a"}, "count": i + 1,
                   "firstTimestamp": "2026-11-29T03:18:45Z", "lastTimestamp": "2026-11-29T03:20:05Z",
                   "type": ["Warning", "Error", "critical"][i % 3]}
        else:
            obj = {"kind": "Event", "apiVersion": "events.k8s.io/v1",
                   "metadata": {"name": f"dep-{i}.2", "namespace": "shop", "uid": uid, "resourceVersion": str(1000 + i),
                                "creationTimestamp": "2026-11-29T03:18:45Z"},
                   "eventTime": "2026-11-29T03:18:45.123456Z", "reportingController": "deployment-controller",
                   "reportingInstance": "kcm-1", "action": "Scaling", "reason": "ScalingReplicaSet",
                   "regarding": {"kind": "Deployment", "namespace": "shop", "name": f"dep-{i}", "uid": f"d-{i}",
                                 "apiVersion": "apps/v1", "resourceVersion": "77"},
                   "note": f"Scaled up replica set dep-{i} to 3", "type": "Normal"}
            if i % 4 == 0:
                obj["series"] = {"count": 4, "lastObservedTime": "2026-11-29T03:25:00.654321Z"}
        out.append(normalise(_wire_event(obj), False, cluster=cluster, max_message_bytes=8192))
    return out


def mine(logs: list[dict], cluster: str) -> list[dict]:
    return [r for r in logs if r["resource"].get("k8s.cluster.name") == cluster]


def comparable(flat: dict) -> dict:
    """A flattened Collector record in otlp_view's shape."""
    return {k: flat[k] for k in ("resource", "time_unix_nano", "observed_time_unix_nano", "severity_number",
                                 "severity_text", "body", "attributes")} | {
        "scope": {"name": flat["scope"]["name"], "version": flat["scope"]["version"]}}


def make_sink(col: Collector, protocol: str, cluster: str, **kw) -> OtlpSink:
    endpoint = f"http://{col.grpc_endpoint}" if protocol == "grpc" else col.http_endpoint
    cfg = OtlpSettings(enabled=True, protocol=protocol, endpoint=endpoint, **kw)
    return OtlpSink(cfg, cluster=cluster, stats=Stats(), env={})


@pytest.mark.parametrize("protocol,compression", [("grpc", "none"), ("http/protobuf", "none"),
                                                  ("grpc", "gzip"), ("http/protobuf", "gzip")])
def test_records_arrive_with_mapped_fields(otel_collector, protocol, compression):
    cluster = f"it-{uuid.uuid4().hex[:8]}"
    records = sample_records(cluster, 40)
    sink = make_sink(otel_collector, protocol, cluster, compression=compression, batch_max_records=16)
    try:
        for seq, r in enumerate(records, 1):
            sink.send(seq, b"", r)
        sink.flush()
        deadline = time.monotonic() + 20
        while sink.acked() < len(records) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.acked() == len(records)
    finally:
        sink.close(10)
    logs = otel_collector.wait_for_logs(lambda logs: len(mine(logs, cluster)) >= len(records), 20)
    got = {r["attributes"]["k8s.event.uid"]: r for r in mine(logs, cluster)}
    assert len(mine(logs, cluster)) == len(records)  # each once
    for r in records:
        g = got[r["event"]["uid"]]
        assert comparable(g) == otlp_view(r, env={}), r["event"]["uid"]
    # spot checks in plain words
    core = got[f"{cluster}-3"]
    assert core["severity_text"] == "Warning" and core["severity_number"] == 13
    assert core["body"] == "Back-off restarting failed container (3) é"
    assert core["resource"]["k8s.node.name"] == "node-a" and core["attributes"]["k8s.event.count"] == 4
    assert core["time_unix_nano"] == 1795922405000000000  # lastTimestamp 2026-11-29T03:20:05Z
    assert (got[f"{cluster}-1"]["severity_text"], got[f"{cluster}-1"]["severity_number"]) == ("Error", 17)
    series = got[f"{cluster}-0"]
    assert series["severity_number"] == 9 and series["attributes"]["k8s.event.count"] == 4
    assert series["time_unix_nano"] == 1795922700654321000  # 2026-11-29T03:25:00.654321Z
    assert got[f"{cluster}-5"]["severity_number"] == 21  # "critical", case-insensitive
    assert sink.requests >= 3 and sink.delivery.retries == 0


def test_collector_down_then_up_every_record_arrives_and_watermark_waits(otel_collector):
    col = otel_collector
    cluster = f"down-{uuid.uuid4().hex[:8]}"
    records = sample_records(cluster, 300)
    sink = make_sink(col, "grpc", cluster, timeout_seconds=2, batch_max_records=50, batch_timeout_seconds=0.1,
                     max_in_flight_records=120, retry_backoff_initial_seconds=0.2, retry_backoff_max_seconds=1)
    sent = []
    col.stop()
    try:
        def produce():
            for seq, r in enumerate(records, 1):
                sink.send(seq, b"", r)  # blocks once 120 are held: backpressure
                sent.append(seq)
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        time.sleep(4)
        assert sink.acked() == 0, "nothing may be confirmed while the Collector is down"
        assert 100 <= len(sent) <= 121, f"send() should block at the in-flight bound, sent {len(sent)}"
        assert sink.delivery.retries >= 2 and sink.failures
    finally:
        col.start()
    t.join(60)
    assert not t.is_alive()
    deadline = time.monotonic() + 30
    while sink.acked() < len(records) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.acked() == len(records)
    metrics_before_close = {n: v for n, _, _, lbl, v in sink.metrics()}
    sink.close(10)
    logs = col.wait_for_logs(lambda logs: len({r["attributes"]["k8s.event.uid"]
                                               for r in mine(logs, cluster)}) >= len(records), 30)
    uids = collections.Counter(r["attributes"]["k8s.event.uid"] for r in mine(logs, cluster))
    assert set(uids) == {r["event"]["uid"] for r in records}
    assert metrics_before_close["kee_sink_backpressure_seconds"] > 0
    metrics = {(n, tuple(lbl.items())): v for n, _, _, lbl, v in sink.metrics()}
    assert metrics[("kee_records_emitted", (("sink", "otlp"),))] == len(records)
    assert metrics[("kee_sink_in_flight_records", (("sink", "otlp"),))] == 0


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_with_client_certificate(tmp_path, protocol):
    """A private Collector whose OTLP receiver requires TLS and a client certificate (mTLS)."""
    from tests.components.proc import free_port, port_open, wait_until
    from tests.components.tls import CA

    ca = CA(tmp_path / "pki")
    srv_crt, srv_key = ca.issue("server", "localhost", server=True)
    cli_crt, cli_key = ca.issue("client", "kee", client=True)
    gp, hp = free_port(), free_port()
    tls = {"cert_file": str(srv_crt), "key_file": str(srv_key), "client_ca_file": str(ca.cert)}
    recv = {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{gp}", "tls": tls},
                                   "http": {"endpoint": f"127.0.0.1:{hp}", "tls": tls}}}}
    (tmp_path / "col").mkdir()
    col = Collector(tmp_path / "col", receivers=recv, otlp=False, name="otelcol-tls")
    col.start()
    try:
        wait_until(lambda: port_open(gp) and port_open(hp), 30, "TLS receiver ports", interval=0.1)
        endpoint = f"https://localhost:{gp}" if protocol == "grpc" else f"https://localhost:{hp}"
        cluster = f"tls-{uuid.uuid4().hex[:8]}"
        records = sample_records(cluster, 6)
        # without the client certificate: refused, nothing acknowledged
        bad = OtlpSink(OtlpSettings(enabled=True, protocol=protocol, endpoint=endpoint, ca_file=str(ca.cert),
                                    timeout_seconds=1, retry_backoff_max_seconds=0.5), cluster=cluster,
                       stats=Stats(), env={})
        bad.send(1, b"", records[0])
        bad.flush()
        time.sleep(2)
        assert bad.acked() == 0 and bad.failures
        with pytest.raises(SinkFatal):
            bad.close(0.5)
        sink = OtlpSink(OtlpSettings(enabled=True, protocol=protocol, endpoint=endpoint, ca_file=str(ca.cert),
                                     client_cert_file=str(cli_crt), client_key_file=str(cli_key)),
                        cluster=cluster, stats=Stats(), env={})
        for seq, r in enumerate(records, 1):
            sink.send(seq, b"", r)
        sink.close(15)
        assert sink.acked() == len(records)
        logs = col.wait_for_logs(lambda logs: len(mine(logs, cluster)) >= len(records), 20)
        assert {r["attributes"]["k8s.event.uid"] for r in mine(logs, cluster)} == \
            {r["event"]["uid"] for r in records}
    finally:
        col.stop()
        if not os.environ.get("KEE_KEEP_TMP"):
            shutil.rmtree(col.dir, ignore_errors=True)


def test_wrong_http_path_is_a_loud_condition_and_the_checkpoint_waits(otel_collector):
    """The real receiver answers 404 to a wrong URL path: a condition only a person can fix. Logged at error level
    naming sinks.otlp.endpoint (the credentials in the URL never printed), metric 1, the record held and retried,
    never acknowledged: the pipeline's committed resourceVersion does not move; close reports it (exit 1)."""
    from exporter import wire
    from exporter.pipeline import Pipeline
    cluster = f"cond-{uuid.uuid4().hex[:8]}"
    base = otel_collector.http_endpoint.replace("http://", "http://kee:pw-s3cret@")
    stats = Stats()
    with capture_logs() as logs:
        sink = OtlpSink(OtlpSettings(enabled=True, protocol="http/protobuf", endpoint=base + "/wrong/v1/logs",
                                     timeout_seconds=1, retry_backoff_initial_seconds=0.1,
                                     retry_backoff_max_seconds=0.2, headers={"x-api-key": "hdr-s3cret"}),
                        cluster=cluster, stats=stats, env={})
        p = Pipeline([sink], stats=stats, live=False)
        s = p.stream("k", "10")
        p.handle(s, "ADDED", wire.event({"apiVersion": "v1", "kind": "Event", "reason": "R",
                                         "metadata": {"uid": "u", "resourceVersion": "11"}}))
        p.flush()
        deadline = time.monotonic() + 15
        while stats.errors.get(("otlp", "endpoint"), 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.condition is not None and sink.condition.kind == "endpoint"
        assert sink.fatal is None and sink.acked() == 0 and p.commit() == {"k": "10"}
        m = {(n, tuple(lbl.items())): v for n, _, _, lbl, v in sink.metrics()}
        assert m[("kee_sink_condition", (("sink", "otlp"), ("condition", "endpoint")))] == 1
        with pytest.raises(SinkFatal):
            sink.close(0.5)
    loud = [x for x in logs if x["event"] == "sink_condition"]
    assert len(loud) == 1 and loud[0]["setting"] == "sinks.otlp.endpoint" and "404" in loud[0]["error"]
    assert any(x["event"] == "sink_undelivered_at_close" for x in logs)
    assert "s3cret" not in repr(logs)
    assert p.commit() == {"k": "10"}


def _gen(tmp_path: Path, n: int) -> tuple[Path, set[tuple[str, str]]]:
    path = tmp_path / "stream.jsonl"
    subprocess.run([sys.executable, str(GEN), "-n", str(n), "-o", str(path)], check=True, timeout=120)
    want = set()
    for line in path.read_bytes().splitlines():
        env = json.loads(line)
        if env.get("type") in ("ADDED", "MODIFIED"):
            md = env["object"]["metadata"]
            want.add((md["uid"], md["resourceVersion"]))
    return path, want


def _replay(path: Path, col: Collector, cluster: str, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "exporter", "replay", str(path), "--set", "sinks.otlp.enabled=true",
            "--set", f"sinks.otlp.endpoint=http://{col.grpc_endpoint}", "--set", "sinks.stdout.enabled=false",
            "--set", f"records.cluster_name={cluster}", *extra]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_replay_collector_down_then_up(otel_collector, tmp_path):
    """`python -m exporter replay` to a Collector that is down at first: every occurrence arrives."""
    col = otel_collector
    path, want = _gen(tmp_path, 3000)
    cluster = f"replay-{uuid.uuid4().hex[:8]}"
    col.stop()
    try:
        proc = _replay(path, col, cluster, "--set", "sinks.otlp.retry_backoff_max_seconds=1",
                       "--set", "sinks.otlp.timeout_seconds=2")
        time.sleep(3)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        col.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"sink_delivery_failed_retrying" in err and b"sink_undelivered_at_close" not in err
    logs = col.wait_for_logs(lambda logs: len(mine(logs, cluster)) >= len(want), 30)
    got = {(r["attributes"]["k8s.event.uid"], r["resource"]["k8s.object.resource_version"]) for r in
           mine(logs, cluster)}
    assert len({r["attributes"]["k8s.event.uid"] for r in mine(logs, cluster)}) == len({u for u, _ in want})
    assert len(mine(logs, cluster)) >= len(want)
    del got


def _replay_done(stderr: bytes) -> dict:
    for line in stderr.splitlines():
        if b"replay_done" in line:
            return json.loads(line)
    raise AssertionError(stderr.decode()[-3000:])


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_cli_replay_records_arrive_as_their_dicts_map(otel_collector, tmp_path, protocol):
    """`replay` (no filter: the sink is handed each record's struct, no dict is built) -> the Collector holds
    every record exactly as otlp_view maps the record's dict (the observed time aside: the replay's clock)."""
    col = otel_collector
    path, _ = _gen(tmp_path, 400)
    cluster = f"struct-{uuid.uuid4().hex[:8]}"
    want = {}
    for line in path.read_bytes().splitlines():
        env = json.loads(line)
        if env.get("type") in ("ADDED", "MODIFIED"):
            r = normalise(_wire_event(env["object"]), env["type"] == "MODIFIED", cluster=cluster,
                          max_message_bytes=8192)
            want[(r["event"]["uid"], r["event"]["resource_version"])] = otlp_view(r, env={})
    endpoint = f"http://{col.grpc_endpoint}" if protocol == "grpc" else col.http_endpoint
    proc = _replay(path, col, cluster, "--set", f"sinks.otlp.protocol={protocol}",
                   "--set", f"sinks.otlp.endpoint={endpoint}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    n = _replay_done(err)["occurrences"]
    logs = mine(col.wait_for_logs(lambda logs: len(mine(logs, cluster)) >= n, 30), cluster)
    assert len(logs) == n and n >= len(want) > 100
    for g in logs:
        key = (g["attributes"]["k8s.event.uid"], g["attributes"]["k8s.event.resource_version"])
        got, exp = comparable(g), dict(want[key])
        assert got.pop("observed_time_unix_nano") > 0
        exp.pop("observed_time_unix_nano")
        assert got == exp, key


def test_debug_collector_counts_every_accepted_record(tmp_path):
    """The benchmark's cheap receiver (bench/sinks.py, otlp-*-debug): a Collector ending in the debug exporter
    counts, in its own metrics, exactly the records the exporter had confirmed, over gRPC and HTTP."""
    col = Collector(tmp_path / "col", exporter="debug", name="otelcol-debug").start()
    try:
        path, _ = _gen(tmp_path, 300)
        for protocol, endpoint in (("grpc", f"http://{col.grpc_endpoint}"), ("http/protobuf", col.http_endpoint)):
            before = col.accepted_log_records()
            proc = _replay(path, col, "debug", "--set", f"sinks.otlp.protocol={protocol}",
                           "--set", f"sinks.otlp.endpoint={endpoint}", "--set", "sinks.otlp.batch_max_records=50")
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-3000:]
            n = _replay_done(err)["occurrences"]
            assert n > 200 and col.accepted_log_records() - before == n, protocol
        assert not col.output_path.exists()  # nothing written: the debug exporter only logs
    finally:
        col.stop()


def test_standard_environment_variables_configure_the_sink(otel_collector, tmp_path):
    """Only OTEL_* variables (HTTP/protobuf to the generic base URL, gzip, a resource attribute): honoured."""
    col = otel_collector
    path, want = _gen(tmp_path, 400)
    cluster = f"env-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": col.http_endpoint, "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "5000", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=it"})
    proc = subprocess.run([sys.executable, "-m", "exporter", "replay", str(path), "--set", "sinks.otlp.enabled=true",
                           "--set", "sinks.stdout.enabled=false", "--set", f"records.cluster_name={cluster}"],
                          cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    started = next(json.loads(x) for x in proc.stderr.splitlines() if b"otlp_sink_started" in x)
    assert started["protocol"] == "http/protobuf" and started["endpoint"] == col.http_endpoint + "/v1/logs"
    assert started["compression"] == "gzip" and started["timeout_seconds"] == 5.0
    assert started["from"]["protocol"] == "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
    logs = col.wait_for_logs(lambda logs: len(mine(logs, cluster)) >= len(want), 30)
    assert len(mine(logs, cluster)) == len(want)
    assert all(r["resource"]["deployment.environment"] == "it" for r in mine(logs, cluster))


# --- side by side with the Collector's own k8s_events receiver ---------------------------------

#: Attributes we add or spell differently (docs/otlp.md, "Differences from the k8s_events receiver").
OURS_ONLY_RESOURCE = {"k8s.cluster.name", "k8s.namespace.name", "k8s.node.name"}
OURS_ONLY_ATTRS = {"k8s.event.count", "k8s.event.reporting_controller", "k8s.event.reporting_instance",
                   "k8s.event.resource_version", "k8s.namespace.name"}


def test_same_attributes_as_collector_k8s_events_receiver(control_plane, namespace, otel_collector, tmp_path):
    from tests.support.events import bump_core_count, core_event, create, v1_event
    from tests.support.exporter_proc import Exporter

    cp = control_plane
    peer = Collector.k8s_events(cp, namespaces=[namespace])
    peer.start()
    cluster = f"sbs-{uuid.uuid4().hex[:8]}"
    exp = Exporter(["run", "--kubeconfig", str(cp.kubeconfig), "--listen", "127.0.0.1:0", "--namespace", namespace,
                    "--set", "sinks.stdout.enabled=false", "--set", "sinks.otlp.enabled=true",
                    "--set", f"sinks.otlp.endpoint=http://{otel_collector.grpc_endpoint}",
                    "--set", "sinks.otlp.batch_timeout_seconds=0.2", "--set", f"records.cluster_name={cluster}"],
                   tmp_path / "exp.log")
    try:
        # Both watchers must be watching before the Events under comparison exist: the receiver
        # ignores Events older than its start, and an informer that syncs late would see only the
        # latest version of the recurring one. A warm-up Event seen by both proves it.
        time.sleep(1.1)  # the receiver's start-time filter has second precision
        exp.wait_log("listed", timeout=60)
        warm = create(cp, core_event(namespace, message="warm-up"))["metadata"]["uid"]
        peer.wait_for_logs(lambda logs: any(r["attributes"].get("k8s.event.uid") == warm for r in logs), 60)
        made = [create(cp, core_event(namespace, message=f"core {i}", etype=["Warning", "Normal"][i % 2]))
                for i in range(3)]
        made += [create(cp, v1_event(namespace, note=f"v1 {i}")) for i in range(3)]
        bump_core_count(cp, namespace, made[0]["metadata"]["name"], 2)
        uids = {m["metadata"]["uid"] for m in made}

        def by_uid(logs):
            out = collections.defaultdict(list)
            for r in logs:
                uid = r["attributes"].get("k8s.event.uid")
                if uid in uids:
                    out[uid].append(r)
            return out
        bumped = made[0]["metadata"]["uid"]

        def complete(found):  # every Event, and the recurring one twice (created, then count 2)
            return len(found) == len(uids) and len(found[bumped]) >= 2
        theirs = by_uid(peer.wait_for_logs(lambda logs: complete(by_uid(logs)), 60))
        ours = by_uid(otel_collector.wait_for_logs(lambda logs: complete(by_uid(mine(logs, cluster))), 60))
        report = []
        for uid in uids:
            t, o = theirs[uid][-1], ours[uid][-1]  # the latest occurrence each saw
            assert t["resource"]["k8s.object.kind"] == "Pod" and t["attributes"]["k8s.event.start_time"]
            for k, v in t["resource"].items():
                if o["resource"].get(k, o["attributes"].get(k)) != v:
                    report.append((uid, "resource", k, v, o["resource"].get(k)))
            for k, v in t["attributes"].items():
                if o["attributes"].get(k, o["resource"].get(k)) != v:
                    report.append((uid, "attr", k, v, o["attributes"].get(k)))
            for f in ("body", "severity_number", "severity_text", "time_unix_nano"):
                if t[f] != o[f]:
                    report.append((uid, f, t[f], o[f]))
            extra_res = set(o["resource"]) - set(t["resource"]) - set(t["attributes"])
            extra_attrs = set(o["attributes"]) - set(t["attributes"]) - set(t["resource"])
            assert extra_res <= OURS_ONLY_RESOURCE, extra_res
            assert extra_attrs <= OURS_ONLY_ATTRS, extra_attrs
            assert o["observed_time_unix_nano"] > 0
        assert not report, "\n".join(map(str, report))
        # the recurring one: both saw the bump (count 2)
        assert ours[bumped][-1]["attributes"]["k8s.event.count"] == 2
        assert theirs[bumped][-1]["attributes"]["k8s.event.count"] == 2
    finally:
        exp.stop()
        peer.stop()
        if not os.environ.get("KEE_KEEP_TMP"):
            shutil.rmtree(peer.dir, ignore_errors=True)
