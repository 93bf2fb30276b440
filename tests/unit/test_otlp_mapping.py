"""The OTLP mapping: records of both Event API shapes -> the Collector k8s_events receiver's attributes.

Pure functions and the wire encoder (decoded back with opentelemetry-proto); no network.
"""
from __future__ import annotations

import calendar

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from exporter import __version__
from exporter.errors import ConfigError
from exporter.records import normalise

try:  # the watch decodes into exporter.wire.Event structs where that module exists
    from exporter.wire import event as _wire_event
except ImportError:  # pragma: no cover - older tree: normalise takes the dict
    def _wire_event(obj):
        return obj
from exporter.settings import OtlpSettings
from exporter.sinks import otlp

OBSERVED = "2026-11-29T15:00:00.250000Z"

CORE_EVENT = {
    "kind": "Event", "apiVersion": "v1",
    "metadata": {"name": "web-0.17a2b3c4d5e6f789", "namespace": "shop", "uid": "ev-uid-1",
                 "resourceVersion": "1001", "creationTimestamp": "2026-11-29T03:18:45Z",
                 "managedFields": [{"manager": "kubelet"}]},
    "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "pod-uid-1", "apiVersion": "v1",
                       "resourceVersion": "555", "fieldPath": "spec.containers{web}"},
    "reason": "BackOff", "message": "Back-off restarting failed container web in pod web-0",
    "source": {"component": "kubelet", "host": "node-a"},
    "firstTimestamp": "2026-11-29T03:18:45Z", "lastTimestamp": "2026-11-29T03:20:05Z", "count": 7,
    "type": "Warning", "eventTime": None, "reportingComponent": "kubelet", "reportingInstance": "node-a",
}

NEW_EVENT = {
    "kind": "Event", "apiVersion": "events.k8s.io/v1",
    "metadata": {"name": "web.18a0b", "namespace": "shop", "uid": "ev-uid-2", "resourceVersion": "1002",
                 "creationTimestamp": "2026-11-29T03:18:45Z"},
    "eventTime": "2026-11-29T03:18:45.123456Z",
    "series": {"count": 3, "lastObservedTime": "2026-11-29T03:25:00.654321Z"},
    "reportingController": "deployment-controller", "reportingInstance": "kcm-1",
    "action": "Scaling", "reason": "ScalingReplicaSet",
    "regarding": {"kind": "Deployment", "namespace": "shop", "name": "web", "uid": "dep-uid",
                  "apiVersion": "apps/v1", "resourceVersion": "777"},
    "note": "Scaled up replica set web-5d4 to 3", "type": "Normal",
}

NODE_EVENT = {  # cluster-scoped object: no namespace on the regarding object
    "kind": "Event", "apiVersion": "events.k8s.io/v1",
    "metadata": {"name": "node-a.18a0c", "namespace": "default", "uid": "ev-uid-3", "resourceVersion": "1003",
                 "creationTimestamp": "2026-11-29T04:00:00Z"},
    "eventTime": "2026-11-29T04:00:00.000001Z", "reportingController": "kubelet", "reportingInstance": "node-a",
    "action": "", "reason": "NodeNotReady", "regarding": {"kind": "Node", "name": "node-a", "uid": "node-a"},
    "note": "Node node-a status is now: NodeNotReady", "type": "critical",
    "deprecatedSource": {"host": "node-a"},
}


def rec(obj, cluster="prod-eu"):
    return normalise(_wire_event(obj), False, cluster=cluster, max_message_bytes=8192, observed=OBSERVED)


def nanos(y, mo, d, h, mi, s, frac_ns=0):
    return calendar.timegm((y, mo, d, h, mi, s)) * 1_000_000_000 + frac_ns


# --- mapping ------------------------------------------------------------------------

def test_core_v1_event():
    v = otlp.otlp_view(rec(CORE_EVENT), env={})
    assert v["resource"] == {
        "k8s.cluster.name": "prod-eu",
        "k8s.node.name": "node-a",
        "k8s.object.kind": "Pod", "k8s.object.name": "web-0", "k8s.object.uid": "pod-uid-1",
        "k8s.object.fieldpath": "spec.containers{web}", "k8s.object.api_version": "v1",
        "k8s.object.resource_version": "555",
        "k8s.namespace.name": "shop",
    }
    assert v["attributes"] == {
        "k8s.event.reason": "BackOff", "k8s.event.action": "",
        "k8s.event.start_time": "2026-11-29 03:18:45 +0000 UTC",
        "k8s.event.name": "web-0.17a2b3c4d5e6f789", "k8s.event.uid": "ev-uid-1",
        "k8s.namespace.name": "shop", "k8s.event.count": 7,
        "k8s.event.reporting_controller": "kubelet", "k8s.event.reporting_instance": "node-a",
        "k8s.event.resource_version": "1001",
    }
    assert v["body"] == "Back-off restarting failed container web in pod web-0"
    assert (v["severity_number"], v["severity_text"]) == (13, "Warning")
    assert v["time_unix_nano"] == nanos(2026, 11, 29, 3, 20, 5)          # lastTimestamp: the occurrence
    assert v["observed_time_unix_nano"] == nanos(2026, 11, 29, 15, 0, 0, 250_000_000)
    assert v["scope"] == {"name": "kube-event-exporter", "version": __version__}


def test_events_k8s_io_v1_event_with_series():
    v = otlp.otlp_view(rec(NEW_EVENT), env={})
    assert v["resource"]["k8s.object.kind"] == "Deployment"
    assert v["resource"]["k8s.object.api_version"] == "apps/v1"
    assert v["resource"]["k8s.object.fieldpath"] == ""
    assert v["resource"]["k8s.node.name"] == ""          # no deprecatedSource.host: empty, as the receiver
    assert v["attributes"]["k8s.event.action"] == "Scaling"
    assert v["attributes"]["k8s.event.count"] == 3       # series.count
    assert v["attributes"]["k8s.event.reporting_controller"] == "deployment-controller"
    assert v["attributes"]["k8s.event.reporting_instance"] == "kcm-1"
    assert v["body"] == "Scaled up replica set web-5d4 to 3"   # note
    assert (v["severity_number"], v["severity_text"]) == (9, "Normal")
    # series.lastObservedTime is the occurrence, microseconds exact
    assert v["time_unix_nano"] == nanos(2026, 11, 29, 3, 25, 0, 654_321_000)


def test_cluster_scoped_object():
    v = otlp.otlp_view(rec(NODE_EVENT, cluster=None), env={})
    assert "k8s.namespace.name" not in v["resource"]     # no namespace: not on the resource
    assert "k8s.cluster.name" not in v["resource"]       # no cluster configured
    assert v["attributes"]["k8s.namespace.name"] == ""   # the receiver writes the object's (empty) namespace
    assert v["resource"]["k8s.node.name"] == "node-a"
    assert (v["severity_number"], v["severity_text"]) == (21, "critical")
    assert v["time_unix_nano"] == nanos(2026, 11, 29, 4, 0, 0, 1000)


@pytest.mark.parametrize("etype,number", [
    ("Normal", 9), ("normal", 9), ("NORMAL", 9), ("Warning", 13), ("wArNiNg", 13),
    ("Error", 17), ("error", 17), ("Critical", 21), ("CRITICAL", 21), ("Info", 0), ("", 0), (None, 0),
])
def test_severity(etype, number):
    assert otlp.severity(etype) == (number, etype or "")


def test_count_zero_omitted_and_reporting_absent():
    r = rec(CORE_EVENT)
    r["count"] = 0
    r["reporting_controller"] = None
    r["reporting_instance"] = ""
    attrs = otlp.otlp_view(r, env={})["attributes"]
    assert "k8s.event.count" not in attrs
    assert "k8s.event.reporting_controller" not in attrs
    assert "k8s.event.reporting_instance" not in attrs


def test_nulls_never_crash():
    r = rec({"apiVersion": "v1", "kind": "Event", "metadata": {}})
    v = otlp.otlp_view(r, env={})
    assert v["resource"]["k8s.object.kind"] == ""
    assert v["body"] == "" and v["severity_number"] == 0 and v["time_unix_nano"] == 0
    otlp.Encoder([]).encode(r)


def test_static_resource_precedence():
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=a%20b,k8s.cluster.name=from-env",
           "OTEL_SERVICE_NAME": "kee"}
    res = dict(otlp.static_resource("c1", {"team": "ops"}, env))
    assert res == {"deployment.environment": "prod", "team": "ops", "service.name": "kee", "k8s.cluster.name": "c1"}


# --- timestamps ---------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("2026-11-29T03:18:45Z", nanos(2026, 11, 29, 3, 18, 45)),
    ("2026-11-29T03:18:45.5Z", nanos(2026, 11, 29, 3, 18, 45, 500_000_000)),
    ("2026-11-29T03:18:45.123456Z", nanos(2026, 11, 29, 3, 18, 45, 123_456_000)),
    ("2026-11-29T03:18:45.123456789Z", nanos(2026, 11, 29, 3, 18, 45, 123_456_789)),
    ("2026-11-29T05:18:45+02:00", nanos(2026, 11, 29, 3, 18, 45)),
    ("1970-01-01T00:00:01Z", 1_000_000_000),
    (None, 0), ("", 0), ("yesterday", 0), ("2026-13-45T03:18:45Z", 0),
])
def test_ts_nanos(text, expected):
    assert otlp.ts_nanos(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("2026-11-29T03:18:45Z", "2026-11-29 03:18:45 +0000 UTC"),
    ("2026-11-29T03:18:45.120000Z", "2026-11-29 03:18:45.12 +0000 UTC"),
    (None, ""),
])
def test_start_time_is_go_time_string(text, expected):
    assert otlp.go_time_string(text) == expected


# --- the wire encoder matches the mapping ---------------------------------------------

def decode(frames: list[bytes]) -> list[dict]:
    req = ExportLogsServiceRequest.FromString(b"".join(frames))
    out = []
    for rl in req.resource_logs:
        res = {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in rl.resource.attributes}
        assert len(rl.scope_logs) == 1 and len(rl.scope_logs[0].log_records) == 1
        sl = rl.scope_logs[0]
        lr = sl.log_records[0]
        out.append({
            "resource": res,
            "scope": {"name": sl.scope.name, "version": sl.scope.version},
            "time_unix_nano": lr.time_unix_nano,
            "observed_time_unix_nano": lr.observed_time_unix_nano,
            "severity_number": lr.severity_number,
            "severity_text": lr.severity_text,
            "body": lr.body.string_value,
            "attributes": {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in lr.attributes},
        })
    return out


def test_encoder_matches_view():
    records = [rec(CORE_EVENT), rec(NEW_EVENT), rec(NODE_EVENT, cluster=None), rec(CORE_EVENT)]
    big = rec(CORE_EVENT)
    big["message"] = "é" * 3000 + "\ud800"  # > 127 bytes (multi-byte varints) and a lone surrogate
    records.append(big)
    extra = {"env": "prod"}
    frames = []
    for r in records:
        enc = otlp.Encoder(otlp.static_resource(r["cluster"], extra, {}))
        frames.append(enc.encode(r))
    got = decode(frames)
    for r, g in zip(records, got, strict=False):
        want = otlp.otlp_view(r, extra_resource=extra, env={})
        if r is big:
            want["body"] = "é" * 3000 + "?"
        assert g == want
    # order of the receiver's attributes is kept, ours appended
    req = MessageToDict(ExportLogsServiceRequest.FromString(frames[0]))
    keys = [a["key"] for a in req["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["attributes"]]
    assert keys[:6] == ["k8s.event.reason", "k8s.event.action", "k8s.event.start_time", "k8s.event.name",
                        "k8s.event.uid", "k8s.namespace.name"]


def test_encoder_cache_returns_same_bytes():
    enc = otlp.Encoder(otlp.static_resource("c", None, {}))
    r = rec(CORE_EVENT)
    assert enc.encode(r) == enc.encode(r) == otlp.Encoder(otlp.static_resource("c", None, {})).encode(r)


# --- settings + environment ---------------------------------------------------------------

def resolved(env=None, **kw):
    return otlp.Resolved(OtlpSettings(enabled=True, **kw), env or {})


def test_defaults():
    r = resolved()
    assert (r.protocol, r.endpoint, r.insecure, r.compression, r.timeout) == (
        "grpc", "http://localhost:4317", True, "none", 10.0)
    r = resolved(protocol="http/protobuf")
    assert r.endpoint == "http://localhost:4318/v1/logs"


def test_env_used_when_settings_unset():
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://col:4318",
           "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-a=1", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "",
           "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}
    r = resolved(env)
    assert r.protocol == "http/protobuf"
    assert r.endpoint == "https://col:4318/v1/logs"    # generic variable: a base URL
    assert r.headers == {"authorization": "Bearer abc", "x-a": "1"}
    assert r.compression == "gzip"
    assert r.timeout == 2.5                             # milliseconds, as the OTLP spec says
    # the signal-specific variables win over the generic ones, and are used as is
    env.update({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs:4318/custom/path",
                "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "500", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc"})
    r = resolved(env)
    assert (r.protocol, r.endpoint, r.timeout) == ("grpc", "https://logs:4318/custom/path", 0.5)
    assert r.insecure is False  # https


def test_settings_win_over_env():
    env = {"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://env:4317",
           "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "a=env,b=env", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
           "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "1000", "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "false"}
    r = resolved(env, protocol="http/protobuf", endpoint="http://set:4318", headers={"A": "set"},
                 compression="none", timeout_seconds=3, insecure=True)
    assert (r.protocol, r.endpoint, r.compression, r.timeout, r.insecure) == (
        "http/protobuf", "http://set:4318/v1/logs", "none", 3.0, True)
    assert r.headers == {"a": "set", "b": "env"}
    assert r.sources["endpoint"] == "sinks.otlp.endpoint"


def test_http_full_url_kept():
    assert resolved(protocol="http/protobuf", endpoint="http://c:4318/otlp/v1/logs").endpoint == \
        "http://c:4318/otlp/v1/logs"


@pytest.mark.parametrize("kw,env,field", [
    ({"protocol": "http/json"}, {}, "sinks.otlp.protocol"),
    ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"compression": "zstd"}, {}, "sinks.otlp.compression"),
    ({"ca_file": "/nonexistent/ca.pem"}, {}, "sinks.otlp.ca_file"),
    ({}, {"OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"),
    ({"protocol": "http/protobuf", "endpoint": "col:4318"}, {}, "sinks.otlp.endpoint"),
])
def test_bad_settings_name_the_field(kw, env, field):
    with pytest.raises(ConfigError) as ei:
        resolved(env, **kw)
    assert ei.value.field == field


def test_client_cert_needs_key(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError):
        resolved(client_cert_file=str(cert))


# --- transports (public grpcio / requests APIs) and the response ------------------------------

@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_transport_answers_connection_refused_without_raising_or_hanging(protocol):
    import time

    from exporter.sinks.otlp.sink import build_transport as build
    r = resolved(protocol=protocol, endpoint="http://127.0.0.1:9", timeout_seconds=2)
    t = build(r)
    try:
        t0 = time.monotonic()
        a = t.export(b"")  # nothing listens on port 9
        assert not a.ok and a.code in ("UNAVAILABLE", "connection") and a.error
        assert time.monotonic() - t0 < 3
    finally:
        t.close()


def test_partial_success_is_read_from_the_response():
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    from exporter.sinks.otlp.proto import partial_success
    resp = ExportLogsServiceResponse()
    resp.partial_success.rejected_log_records = 3
    resp.partial_success.error_message = "invalid"
    assert partial_success(resp.SerializeToString()) == (3, "invalid")
    assert partial_success(b"") == (0, "")                     # an empty 200 body: full success
    assert partial_success(b"\xff\xff not protobuf") == (0, "")  # unparsable: ignored


def test_endpoint_userinfo_and_header_values_never_described():
    r = resolved({"OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=hc-s3cret"}, protocol="http/protobuf",
                 endpoint="http://kee:pa%40ss-s3cret@col:4318", headers={"authorization": "Bearer tok-s3cret"})
    assert r.endpoint == "http://kee:pa%40ss-s3cret@col:4318/v1/logs"  # used as is (requests sends basic auth)
    text = repr(r.describe())
    assert "s3cret" not in text and "kee:" not in text
    assert r.describe()["endpoint"] == "http://***@col:4318/v1/logs"
    assert r.describe()["headers"] == ["authorization", "x-honeycomb-team"]


def test_grpc_endpoint_userinfo_becomes_basic_auth_never_the_target():
    import base64

    from exporter.sinks.otlp.grpc_transport import GrpcTransport
    t = GrpcTransport(resolved(endpoint="http://kee:pa%40ss@127.0.0.1:9", headers={"x-api-key": "k"}))
    try:
        md = dict(t._metadata)
        assert md["x-api-key"] == "k"
        assert base64.b64decode(md["authorization"].split()[1]) == b"kee:pa@ss"
        a = t.export(b"")  # connects to 127.0.0.1:9 (nothing there), not to "kee:pa%40ss@127.0.0.1"
        assert not a.ok and a.code == "UNAVAILABLE" and "pa%40ss" not in (a.error or "")
    finally:
        t.close()
