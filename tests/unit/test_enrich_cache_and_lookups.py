"""Enrichment's bounds, with a scripted metadata reader (the real apiserver is in
tests/integration/test_enrich_live.py): the cache holds its entry AND byte bounds, expires
by TTL, remembers 404s; a burst of Events about one object costs one request (single-flight);
the rate limit and the deadline mark records partial instead of stalling; the owner chain
gives the right workload; otel_attributes maps to the k8s semantic conventions.
"""
from __future__ import annotations

import threading
import time

import jsonschema
import pytest

from exporter.errors import ApiError, Forbidden
from exporter.kube.metadata import ObjectMeta, OwnerRef, Selector, approx_size
from exporter.sinks.otlp.semconv import otel_attributes
from exporter.transforms.enrich import Enricher, TokenBucket
from exporter.transforms.metacache import NEGATIVE_SIZE, MetaCache
from tests.support.exporter_proc import RECORD_VALIDATOR


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def meta(uid: str, labels: dict | None = None, owner: OwnerRef | None = None, node: str | None = None) -> ObjectMeta:
    m = ObjectMeta(uid=uid, labels=labels or {}, annotations={}, owner=owner, node=node, size=0)
    m.size = approx_size(m, "ns", uid)
    return m


class FakeReader:
    """Scripted MetadataReader: objects by (kind, name); counts calls; can hold answers back."""

    def __init__(self, objects: dict[tuple[str, str], object], gate: threading.Event | None = None) -> None:
        self.objects = objects
        self.gate = gate
        self.calls: list[tuple[str, str]] = []
        self.requests = 0
        self.bytes_read = 0

    def get(self, kind, api_version, ns, name):
        self.calls.append((kind, name))
        self.requests += 1
        if self.gate is not None:
            self.gate.wait(10)
        v = self.objects.get((kind, name))
        if v is None:
            raise ApiError(404, "not found")
        if isinstance(v, Exception):
            raise v
        return v


def enricher(reader, *, timeout=2.0, rate=1000.0, burst=1000, max_pending=64, degraded=5.0, clock=time.monotonic,
             cache=None, kinds=("Pod", "ReplicaSet", "Deployment", "Job", "CronJob", "StatefulSet", "Node")):
    cache = cache or MetaCache(max_entries=1000, max_bytes=1 << 20, ttl=300, negative_ttl=30, clock=clock)
    return Enricher(reader, cache, kinds=list(kinds), timeout=timeout, rate=rate, burst=burst, concurrency=4,
                    max_pending=max_pending, degraded_seconds=degraded, clock=clock)


def record(kind="Pod", name="web-1", uid="pod-uid", api_version="v1", ns="shop", source="default-scheduler",
           host=None) -> dict:
    return {"schema_version": "1", "id": "e:1", "cluster": None, "timestamp": None, "first_timestamp": None,
            "observed_timestamp": None, "type": "Normal", "severity": "INFO", "reason": "Scheduled", "action": None,
            "message": "m", "message_truncated": False, "count": 1, "update": False,
            "object": {"kind": kind, "name": name, "namespace": ns, "uid": uid, "api_version": api_version,
                       "resource_version": "1", "field_path": None},
            "related": None, "source_component": source, "source_host": host, "reporting_controller": source,
            "reporting_instance": None,
            "event": {"name": "e", "namespace": ns, "uid": "e", "resource_version": "1", "api_version": "v1",
                      "creation_timestamp": None}}


DEPLOY_CHAIN = {
    ("Pod", "web-1"): meta("pod-uid", {"app": "web", "pod-template-hash": "7d9f"},
                           OwnerRef("ReplicaSet", "web-7d9f", "rs-uid", "apps/v1"), node="node-a"),
    ("ReplicaSet", "web-7d9f"): meta("rs-uid", {"app": "web"}, OwnerRef("Deployment", "web", "dep-uid", "apps/v1")),
    ("Deployment", "web"): meta("dep-uid", {"app": "web"}),
}


# --- the cache -------------------------------------------------------------------------------

def test_cache_keeps_its_entry_bound_evicting_the_least_recently_used():
    c: MetaCache[str] = MetaCache(max_entries=3, max_bytes=1 << 20, ttl=60, negative_ttl=5)
    for k in "abc":
        c.put(k, k, 10)
    assert c.get("a") is not None  # a is now the most recently used
    c.put("d", "d", 10)
    assert len(c) == 3 and c.get("b") is None and c.get("a") is not None and c.evictions == 1


def test_cache_keeps_its_byte_bound_and_refuses_an_entry_bigger_than_the_bound():
    c: MetaCache[str] = MetaCache(max_entries=1000, max_bytes=1000, ttl=60, negative_ttl=5)
    for i in range(10):
        c.put(i, "x", 300)
    assert c.bytes <= 1000 and len(c) == 3 and c.get(9) is not None and c.get(6) is None
    c.put("huge", "x", 5000)
    assert c.get("huge") is None and c.bytes <= 1000


def test_cache_entries_expire_after_their_ttl_and_negative_ones_after_theirs():
    clock = Clock()
    c: MetaCache[str] = MetaCache(max_entries=10, max_bytes=1 << 20, ttl=60, negative_ttl=5, clock=clock)
    c.put("pos", "v", 10)
    c.put_missing("neg", "not_found")
    clock.t += 4.9
    assert c.get("pos").value == "v" and c.get("neg").missing == "not_found"
    clock.t += 0.2
    assert c.get("neg") is None and c.get("pos") is not None
    clock.t += 60
    assert c.get("pos") is None and len(c) == 0 and c.bytes == 0 and c.expirations == 2


def test_replacing_an_entry_does_not_leak_its_bytes():
    c: MetaCache[str] = MetaCache(max_entries=10, max_bytes=1 << 20, ttl=60, negative_ttl=5)
    c.put("k", "a", 100)
    c.put("k", "b", 50)
    c.put_missing("k", "not_found")
    assert c.bytes == NEGATIVE_SIZE and len(c) == 1


def test_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    b = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    clock.t += 0.5
    assert b.take() and not b.take()


# --- lookups ---------------------------------------------------------------------------------

def test_pod_of_a_deployment_gets_labels_owner_workload_node_and_validates():
    r = FakeReader(dict(DEPLOY_CHAIN))
    e = enricher(r)
    rec = record()
    e(rec)
    assert rec["enrichment"] == "complete" and rec["enrichment_reason"] is None
    assert rec["object"]["labels"] == {"app": "web", "pod-template-hash": "7d9f"}
    assert rec["object"]["owner"] == {"kind": "ReplicaSet", "name": "web-7d9f", "uid": "rs-uid",
                                      "api_version": "apps/v1"}
    assert rec["workload"] == {"kind": "Deployment", "name": "web", "uid": "dep-uid", "api_version": "apps/v1"}
    assert rec["node"] == "node-a"
    RECORD_VALIDATOR.validate(rec)
    # a second pod of the same ReplicaSet costs one request: the owners are cached
    r.objects[("Pod", "web-2")] = meta("pod2", {"app": "web"}, OwnerRef("ReplicaSet", "web-7d9f", "rs-uid", "apps/v1"))
    rec2 = record(name="web-2", uid="pod2")
    e(rec2)
    assert rec2["workload"]["name"] == "web" and r.calls.count(("ReplicaSet", "web-7d9f")) == 1
    assert len(r.calls) == 4


def test_job_of_a_cronjob_and_a_bare_statefulset():
    r = FakeReader({
        ("Pod", "nightly-1-abc"): meta("p", {}, OwnerRef("Job", "nightly-1", "job-uid", "batch/v1")),
        ("Job", "nightly-1"): meta("job-uid", {}, OwnerRef("CronJob", "nightly", "cj-uid", "batch/v1")),
        ("CronJob", "nightly"): meta("cj-uid"),
        ("StatefulSet", "db"): meta("sts-uid"),
    })
    e = enricher(r)
    rec = record(name="nightly-1-abc", uid="p")
    e(rec)
    assert rec["object"]["owner"]["kind"] == "Job" and rec["workload"]["kind"] == "CronJob"
    sts = record(kind="StatefulSet", name="db", uid="sts-uid", api_version="apps/v1")
    e(sts)
    assert sts["workload"] == {"kind": "StatefulSet", "name": "db", "uid": "sts-uid", "api_version": "apps/v1"}
    assert sts["node"] is None and sts["enrichment"] == "complete"


def test_burst_of_events_about_one_object_costs_one_request_single_flight():
    gate = threading.Event()
    r = FakeReader({("Pod", "web-1"): meta("pod-uid")}, gate=gate)
    e = enricher(r, kinds=("Pod",))
    recs = [record() for _ in range(8)]
    threads = [threading.Thread(target=e, args=(x,)) for x in recs]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(5)
    assert r.calls == [("Pod", "web-1")]
    assert all(x["enrichment"] == "complete" for x in recs)
    assert e.shared == 7
    for _ in range(50):
        e(record())
    assert len(r.calls) == 1 and e.hits >= 50


def test_deleted_object_is_partial_not_found_and_the_404_is_cached():
    r = FakeReader({})
    e = enricher(r)
    recs = [record(name="gone-pod") for _ in range(5)]
    for x in recs:
        e(x)
    assert all(x["enrichment"] == "partial" and x["enrichment_reason"] == "not_found" for x in recs)
    assert recs[0]["object"]["labels"] is None and recs[0]["workload"] is None
    assert r.calls == [("Pod", "gone-pod")] and e.partial == {"not_found": 5}
    RECORD_VALIDATOR.validate(recs[0])


def test_name_reused_by_a_new_object_is_partial_gone_not_the_new_objects_labels():
    r = FakeReader({("Pod", "db-0"): meta("new-uid", {"generation": "new"})})
    e = enricher(r)
    rec = record(name="db-0", uid="old-uid")
    e(rec)
    assert rec["enrichment_reason"] == "gone" and rec["object"]["labels"] is None


def test_a_slow_apiserver_holds_the_record_at_most_the_timeout_then_not_at_all():
    gate = threading.Event()
    r = FakeReader(dict(DEPLOY_CHAIN), gate=gate)
    e = enricher(r, timeout=0.3, degraded=30)
    t0 = time.monotonic()
    rec = record()
    e(rec)
    waited = time.monotonic() - t0
    assert 0.25 < waited < 1.0 and rec["enrichment_reason"] == "timeout"
    r.objects[("Pod", "web-9")] = meta("p9")
    t0 = time.monotonic()
    for i in range(20):  # degraded: misses are not waited for
        x = record(name=f"web-{i + 10}", uid=f"u{i}")
        e(x)
        assert x["enrichment_reason"] == "degraded"
    assert time.monotonic() - t0 < 0.2
    gate.set()
    deadline = time.monotonic() + 5
    while e.cache.get(("", "Pod", "shop", "web-1")) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    rec = record()  # the late answer filled the cache: this one needs no wait for the Pod
    e(rec)
    assert rec["object"]["labels"] == {"app": "web", "pod-template-hash": "7d9f"}


def test_lookups_beyond_the_rate_limit_are_partial_immediately():
    r = FakeReader({("Pod", f"p{i}"): meta(f"u{i}") for i in range(10)})
    e = enricher(r, rate=0.001, burst=3, kinds=("Pod",))
    recs = [record(name=f"p{i}", uid=f"u{i}") for i in range(10)]
    t0 = time.monotonic()
    for x in recs:
        e(x)
    assert time.monotonic() - t0 < 1.0
    assert [x["enrichment"] for x in recs[:3]] == ["complete"] * 3
    assert {x["enrichment_reason"] for x in recs[3:]} == {"rate_limited"} and len(r.calls) == 3


def test_forbidden_owner_keeps_what_was_learned_and_says_why():
    r = FakeReader({
        ("Pod", "roll-1"): meta("p", {"app": "r"}, OwnerRef("ReplicaSet", "roll-abc", "rs", "apps/v1")),
        ("ReplicaSet", "roll-abc"): meta("rs", {}, OwnerRef("Rollout", "roll", "ro", "argoproj.io/v1alpha1")),
        ("Rollout", "roll"): Forbidden(403, "forbidden"),
    })
    e = enricher(r)
    rec = record(name="roll-1", uid="p")
    e(rec)
    assert rec["enrichment"] == "partial" and rec["enrichment_reason"] == "forbidden"
    assert rec["workload"]["kind"] == "Rollout" and rec["object"]["labels"] == {"app": "r"}


def test_kinds_not_enriched_and_kubelet_node_fallback():
    e = enricher(FakeReader({}), kinds=("Pod",))
    svc = record(kind="Service", name="s")
    e(svc)
    assert svc["enrichment"] == "none" and svc["workload"] is None
    RECORD_VALIDATOR.validate(svc)
    e2 = enricher(FakeReader({("Pod", "bare"): meta("pod-uid")}))
    kubelet = record(name="bare", source="kubelet", host="node-k")
    e2(kubelet)
    assert kubelet["node"] == "node-k" and kubelet["workload"] is None and kubelet["enrichment"] == "complete"


def test_selector_allow_lists():
    s = Selector(["app", "app.kubernetes.io/*"])
    picked = s.pick({"app": "a", "app.kubernetes.io/name": "n", "team": "t"})
    assert picked == {"app": "a", "app.kubernetes.io/name": "n"}
    assert Selector(["*"]).pick({"a": "1"}) == {"a": "1"} and Selector([]).pick({"a": "1"}) == {}
    assert Selector(["big"]).pick({"big": "x" * 5000}, 100)["big"].endswith("...[truncated]")


def test_otel_attributes_use_the_k8s_semantic_conventions():
    e = enricher(FakeReader(dict(DEPLOY_CHAIN)))
    rec = record()
    e(rec)
    a = otel_attributes(rec)
    assert a["k8s.pod.name"] == "web-1" and a["k8s.pod.uid"] == "pod-uid"
    assert a["k8s.replicaset.name"] == "web-7d9f" and a["k8s.deployment.name"] == "web"
    assert a["k8s.deployment.uid"] == "dep-uid" and a["k8s.pod.label.app"] == "web"
    assert "kee.enrichment" not in a
    assert otel_attributes(record()) == {}  # enrichment off: nothing added


@pytest.mark.parametrize("why", ["timeout", "not_found", "rate_limited"])
def test_partial_records_validate_against_the_schema(why):
    rec = record()
    rec.update(workload=None, node=None, enrichment="partial", enrichment_reason=why)
    rec["object"].update(labels=None, annotations=None, owner=None)
    RECORD_VALIDATOR.validate(rec)
    rec["enrichment_reason"] = "made-up"
    with pytest.raises(jsonschema.ValidationError):
        RECORD_VALIDATOR.validate(rec)


def test_otlp_encoder_carries_the_enriched_attributes_and_the_pods_node():
    from exporter.sinks import otlp
    from tests.unit.test_otlp_mapping import decode
    e = enricher(FakeReader(dict(DEPLOY_CHAIN)))
    rec = record(host="other-host")
    e(rec)
    got = decode([otlp.Encoder(otlp.static_resource("c", None, {})).encode(rec)])[0]
    assert got == otlp.otlp_view(rec, cluster="c", env={})
    res = got["resource"]
    assert res["k8s.node.name"] == "node-a"  # the Pod's node wins over the Event's source host
    assert res["k8s.deployment.name"] == "web" and res["k8s.replicaset.name"] == "web-7d9f"
    assert res["k8s.pod.label.pod-template-hash"] == "7d9f" and res["k8s.object.name"] == "web-1"


def test_metrics_are_exposed_through_stats_with_low_cardinality_labels():
    from prometheus_client import CollectorRegistry, generate_latest

    from exporter.metrics import Stats, _collector
    e = enricher(FakeReader(dict(DEPLOY_CHAIN)))
    e(record())
    e(record(name="missing", uid="m"))
    stats = Stats()
    stats.sink_stats.append(e)
    reg = CollectorRegistry()
    reg.register(_collector(stats))
    text = generate_latest(reg).decode()
    assert 'kee_enrich_records_total{result="complete"} 1.0' in text
    assert 'kee_enrich_partial_total{reason="not_found"} 1.0' in text
    assert "kee_enrich_api_requests_total 4.0" in text
    assert 'kee_enrich_lookups_total{outcome="not_found"} 1.0' in text
    assert "kee_enrich_cache_entries 4.0" in text
    assert "web-1" not in text and "missing" not in text  # never an object name


def test_after_close_records_still_go_out_partial():
    e = enricher(FakeReader(dict(DEPLOY_CHAIN)))
    e.close()
    rec = record()
    e(rec)
    assert rec["enrichment"] == "partial" and rec["enrichment_reason"] == "error"


class FakeClient:
    """Answers discovery and object GETs from a dict path -> bytes; records the Accept header asked for."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str | None]] = []

    def request_raw(self, method, path, *, timeout=30.0, accept=None, **_kw):
        self.asked.append((path, accept))
        if path not in self.answers:
            raise ApiError(404, "not found")
        return self.answers[path]


def test_kinds_map_to_api_paths_and_custom_kinds_are_discovered_once():
    from exporter.kube.metadata import ACCEPT_METADATA, MetadataReader, UnknownKind
    disc = b'{"resources": [{"name": "rollouts", "kind": "Rollout", "namespaced": true},' \
           b' {"name": "rollouts/status", "kind": "Rollout", "namespaced": true}]}'
    c = FakeClient({"/apis/argoproj.io/v1alpha1": disc})
    r = MetadataReader(c, labels=Selector(["*"]), annotations=Selector([]), pod_node=True, timeout=1)
    assert r.path("Pod", "v1", "shop", "web-1") == "/api/v1/namespaces/shop/pods/web-1"
    assert r.path("Node", "v1", None, "n1") == "/api/v1/nodes/n1"
    assert r.path("Node", "v1", "shop", "n1") == "/api/v1/nodes/n1"  # a Node owning a mirror Pod
    assert r.path("Deployment", None, "shop", "web") == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert r.path("CronJob", "batch/v1", "shop", "n") == "/apis/batch/v1/namespaces/shop/cronjobs/n"
    for _ in range(3):
        assert (r.path("Rollout", "argoproj.io/v1alpha1", "shop", "co")
                == "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/co")
    assert [p for p, _ in c.asked] == ["/apis/argoproj.io/v1alpha1"]  # discovered once
    with pytest.raises(UnknownKind):
        r.path("Widget", "argoproj.io/v1alpha1", "shop", "w")
    with pytest.raises(UnknownKind):
        r.path("Widget", None, "shop", "w")
    c.answers["/api/v1/namespaces/shop/pods/p"] = b'{"metadata": {"uid": "u", "labels": {"a": "b"}}, ' \
                                                   b'"spec": {"nodeName": "n1"}}'
    c.answers["/apis/apps/v1/namespaces/shop/replicasets/rs"] = b'{"metadata": {"uid": "r", "ownerReferences": [' \
        b'{"kind": "Deployment", "name": "d", "uid": "du", "apiVersion": "apps/v1"},' \
        b'{"kind": "Deployment", "name": "d2", "uid": "d2u", "apiVersion": "apps/v1", "controller": true}]}}'
    pod = r.get("Pod", "v1", "shop", "p")
    assert pod.node == "n1" and pod.labels == {"a": "b"} and c.asked[-1][1] is None  # Pods read whole
    rs = r.get("ReplicaSet", "apps/v1", "shop", "rs")
    assert rs.owner is not None and rs.owner.name == "d2"  # the controller reference, not the first one
    assert c.asked[-1][1] == ACCEPT_METADATA
