"""Proof that the real components of tests/components work (issue 2).

(a) a Deployment on KWOK nodes yields real ScalingReplicaSet, SuccessfulCreate
    and Scheduled events, and a pod no node fits a FailedScheduling Warning;
(b) records go through the real broker over PLAINTEXT, SASL SCRAM and SASL_SSL,
    a wrong SCRAM password is refused, and records survive a broker restart;
(c) OTLP logs sent over gRPC and HTTP come back from the collector's file exporter;
(d) a watch at a compacted resourceVersion gets 410 Gone;
plus the other fixture promises: ServiceAccount tokens, apiserver restart.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.components import wait_until

pytestmark = pytest.mark.real


# ---------------------------------------------------------------------------- (a)
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
        resources: {requests: {cpu: 100m, memory: 64Mi}}
"""

UNFIT_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: too-big}
spec:
  containers:
  - name: c
    image: registry.invalid/big:1
    resources: {requests: {cpu: "5000", memory: 64Mi}}
"""


def events(cp, namespace):
    return cp.kubectl_json("get", "events", "-n", namespace)["items"]


def test_deployment_on_kwok_nodes_yields_real_events(control_plane, namespace):
    cp = control_plane
    cp.create_kwok_nodes(2, cpu="4", memory="16Gi")
    cp.apply(DEPLOYMENT, namespace=namespace)
    cp.apply(UNFIT_POD, namespace=namespace)

    def running():
        pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
        return len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods)
    wait_until(running, 90, "3 web pods Running on KWOK nodes")

    want = {("ScalingReplicaSet", "Deployment"), ("SuccessfulCreate", "ReplicaSet"), ("Scheduled", "Pod"),
            ("FailedScheduling", "Pod")}

    def seen():
        got = {(e["reason"], e["involvedObject"]["kind"]) for e in events(cp, namespace)}
        return want <= got
    wait_until(seen, 60, f"events {sorted(want)}")
    evs = events(cp, namespace)
    failed = [e for e in evs if e["reason"] == "FailedScheduling"]
    assert failed[0]["type"] == "Warning"
    assert failed[0]["involvedObject"]["name"] == "too-big"
    assert "Insufficient cpu" in failed[0]["message"]
    scheduled = [e for e in evs if e["reason"] == "Scheduled"]
    assert len(scheduled) == 3 and all(e["type"] == "Normal" for e in scheduled)
    assert all(e["metadata"]["resourceVersion"] for e in evs)


def test_service_account_token_is_subject_to_rbac(control_plane, namespace):
    cp = control_plane
    token = cp.service_account_token(namespace, "reader")
    kc = cp.kubeconfig_for_token(token)
    denied = cp.kubectl("get", "events", "-n", namespace, kubeconfig=kc, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    cp.kubectl("create", "role", "events-reader", "-n", namespace, "--verb=get,list,watch", "--resource=events")
    cp.kubectl("create", "rolebinding", "events-reader", "-n", namespace, "--role=events-reader",
               f"--serviceaccount={namespace}:reader")
    wait_until(lambda: cp.kubectl("get", "events", "-n", namespace, kubeconfig=kc, check=False).returncode == 0,
               20, "RBAC to allow the ServiceAccount")
    status, body = cp.request("GET", f"/api/v1/namespaces/{namespace}/events", token=token)
    assert status == 200, body


# ---------------------------------------------------------------------------- (d)
def test_watch_at_compacted_resource_version_gets_410(control_plane, namespace):
    cp = control_plane
    old_rv = cp.get_json(f"/api/v1/namespaces/{namespace}/events")["metadata"]["resourceVersion"]
    cp.kubectl("create", "configmap", "bump", "-n", namespace, "--from-literal=a=b")
    compacted = cp.force_410()
    assert int(old_rv) < compacted
    for path in (f"/api/v1/namespaces/{namespace}/events", "/api/v1/events",
                 f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"):
        status, first = cp.watch_first(f"{path}?watch=1&resourceVersion={old_rv}&allowWatchBookmarks=true")
        if status == 200:  # in-stream error
            assert first["type"] == "ERROR", first
            assert first["object"]["code"] == 410, first
            assert first["object"]["reason"] in ("Expired", "Gone"), first
        else:
            assert status == 410, (status, first)
    # the apiserver works after its restart and a current resourceVersion watches fine
    rv = cp.get_json(f"/api/v1/namespaces/{namespace}/events")["metadata"]["resourceVersion"]
    cp.kubectl("create", "configmap", "after", "-n", namespace, "--from-literal=a=b")
    status, first = cp.watch_first(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={rv}")
    assert status == 200 and first["type"] == "ADDED", first


def test_apiserver_stop_and_start(control_plane):
    cp = control_plane
    cp.stop_apiserver()
    assert cp.kubectl("get", "ns", "default", check=False, timeout=20).returncode != 0
    cp.start_apiserver()
    assert cp.kubectl("get", "ns", "default").returncode == 0


# ---------------------------------------------------------------------------- (b)
@pytest.mark.parametrize("listener", ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"])
def test_kafka_produce_and_consume(kafka_broker, listener):
    topic = kafka_broker.create_topic(f"t-{listener.lower()}-{uuid.uuid4().hex[:6]}", partitions=2)
    kafka_broker.produce(topic, b'{"hello": 1}', key=b"k1", headers=[("h", b"v")], listener=listener)
    [rec] = kafka_broker.consume(topic, 1, listener=listener)
    assert (rec.key, rec.value, rec.header("h")) == (b"k1", b'{"hello": 1}', b"v")


@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_kafka_wrong_scram_password_is_refused(kafka_broker, listener):
    from confluent_kafka import KafkaError, Producer
    topic = kafka_broker.create_topic(f"t-auth-{uuid.uuid4().hex[:6]}")
    errors, reports = [], []
    p = Producer(kafka_broker.client_config(listener, **{"sasl.password": "wrong", "message.timeout.ms": 5000,
                                                         "error_cb": errors.append}))
    p.produce(topic, b"x", on_delivery=lambda err, msg: reports.append(err))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not reports:
        p.poll(0.2)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert reports and reports[0] is not None  # not delivered
    assert kafka_broker.consume(topic, idle=1) == []


def test_kafka_unknown_topic_is_not_auto_created(kafka_broker):
    from confluent_kafka import KafkaException
    with pytest.raises(KafkaException):
        kafka_broker.produce(f"missing-{uuid.uuid4().hex[:6]}", b"x", timeout=15, **{"message.timeout.ms": 5000})


def test_kafka_records_survive_broker_restart(kafka_broker):
    topic = kafka_broker.create_topic(f"t-restart-{uuid.uuid4().hex[:6]}")
    kafka_broker.produce(topic, b"before")
    kafka_broker.stop()
    kafka_broker.start()
    kafka_broker.produce(topic, b"after")
    assert [r.value for r in kafka_broker.consume(topic, 2)] == [b"before", b"after"]


# ---------------------------------------------------------------------------- (c)
def _log_record(body: str, marker: str):
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    rec = LogRecord(timestamp=time.time_ns(), observed_timestamp=time.time_ns(), severity_text="Warning",
                    severity_number=SeverityNumber.WARN, body=body,
                    attributes={"k8s.event.reason": "FailedScheduling", "marker": marker, "count": 3},
                    event_name="k8s.event")
    return ReadableLogRecord(log_record=rec,
                             resource=Resource({"service.name": "kee-test", "k8s.cluster.name": "kee"}),
                             instrumentation_scope=InstrumentationScope("kee.tests", "1"))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_otlp_log_reaches_collector_file(otel_collector, protocol):
    from opentelemetry.sdk._logs.export import LogRecordExportResult
    marker = uuid.uuid4().hex
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        exp = OTLPLogExporter(endpoint=otel_collector.grpc_endpoint, insecure=True, timeout=10)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        exp = OTLPLogExporter(endpoint=f"{otel_collector.http_endpoint}/v1/logs", timeout=10)
    try:
        assert exp.export([_log_record(f"hello over {protocol}", marker)]) == LogRecordExportResult.SUCCESS
    finally:
        exp.shutdown()
    logs = otel_collector.wait_for_logs(lambda ls: any(r["attributes"].get("marker") == marker for r in ls))
    [rec] = [r for r in logs if r["attributes"].get("marker") == marker]
    assert rec["body"] == f"hello over {protocol}"
    assert rec["resource"] == {"service.name": "kee-test", "k8s.cluster.name": "kee"}
    assert rec["attributes"] == {"k8s.event.reason": "FailedScheduling", "marker": marker, "count": 3}
    assert rec["severity_number"] == 13 and rec["severity_text"] == "Warning"
    assert rec["event_name"] == "k8s.event"
    assert rec["scope"]["name"] == "kee.tests"


def test_collector_stop_and_start(otel_collector):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    otel_collector.stop()
    otel_collector.start()
    marker = uuid.uuid4().hex
    exp = OTLPLogExporter(endpoint=f"{otel_collector.http_endpoint}/v1/logs", timeout=10)
    exp.export([_log_record("after restart", marker)])
    exp.shutdown()
    otel_collector.wait_for_logs(lambda ls: any(r["attributes"].get("marker") == marker for r in ls))


def test_k8s_events_receiver_peer_sees_real_events(control_plane, namespace, tmp_path):
    from tests.components import Collector
    peer = Collector.k8s_events(control_plane, namespaces=[namespace], workdir=tmp_path / "peer")
    peer.start()
    try:
        control_plane.apply(UNFIT_POD, namespace=namespace)
        logs = peer.wait_for_logs(lambda ls: any(r["attributes"].get("k8s.event.reason") == "FailedScheduling"
                                                 for r in ls), timeout=60)
        rec = next(r for r in logs if r["attributes"].get("k8s.event.reason") == "FailedScheduling")
        assert rec["resource"].get("k8s.object.name") == "too-big", json.dumps(rec, default=str)[:2000]
    finally:
        peer.stop()


def test_k8sobjects_receiver_peer_watches_real_events(control_plane, namespace, tmp_path):
    from tests.components import Collector
    peer = Collector.k8s_objects(control_plane, namespaces=[namespace], workdir=tmp_path / "peer")
    peer.start()
    try:
        control_plane.apply(UNFIT_POD, namespace=namespace)

        def failed_scheduling(ls):
            return [r for r in ls if isinstance(r["body"], dict)
                    and (r["body"].get("object") or {}).get("reason") == "FailedScheduling"]
        logs = peer.wait_for_logs(failed_scheduling, timeout=60)
        body = failed_scheduling(logs)[0]["body"]
        assert body["type"] in ("ADDED", "MODIFIED")
        assert body["object"]["involvedObject"]["name"] == "too-big"
    finally:
        peer.stop()


def test_opensearch_bulk_overwrites_by_id_and_survives_restart(opensearch):
    index = f"kee-component-{uuid.uuid4().hex[:8]}"
    line = json.dumps({"index": {"_index": index, "_id": "same"}})
    ans = opensearch.bulk(f"{line}\n{json.dumps({'n': 1})}\n{line}\n{json.dumps({'n': 2})}\n")
    assert not ans["errors"], ans
    assert opensearch.count(index) == 1
    opensearch.restart()
    assert [h["n"] for h in opensearch.hits(index)] == [2]
    opensearch.delete_index(index)


def test_opensearch_flat_object_keeps_dotted_label_keys_as_one_field(opensearch):
    index = f"kee-component-{uuid.uuid4().hex[:8]}"
    opensearch.ok("PUT", index, {"mappings": {"properties": {"labels": {"type": "flat_object"}}}})
    doc = {"labels": {"app.kubernetes.io/name": "web", "app": "x"}}
    opensearch.bulk(f'{json.dumps({"index": {"_index": index}})}\n{json.dumps(doc)}\n')
    hits = opensearch.hits(index, {"term": {"labels.app.kubernetes.io/name": "web"}})
    assert len(hits) == 1
    mapping = opensearch.ok("GET", f"{index}/_mapping")[index]["mappings"]["properties"]
    assert list(mapping) == ["labels"] and mapping["labels"]["type"] == "flat_object"
    opensearch.delete_index(index)
