"""Enrichment on the REAL control plane (apiserver, controller-manager, scheduler, KWOK nodes).

- a Deployment, a Job owned by a CronJob, a StatefulSet and a DaemonSet on KWOK nodes: the
  scheduler's Events about their Pods carry the right owner, workload, labels, the allow-listed
  annotation and the node the Pod is bound to; the Deployment's own Event names itself;
- an Event about a Pod deleted before it is read is exported partial (not_found), about a
  name reused by a newer Pod partial (gone): never the wrong object's labels;
- the apiserver restarted while Events about real Pods stream in: every Event is exported,
  enrichment is complete again afterwards; SIGTERM then saves the checkpoint and the next
  start replays nothing (checkpoint semantics unchanged by enrichment);
- a Pod owned by a custom resource (a CRD made here) gets that owner as its workload, its kind
  found through discovery;
- to the real Collector, enriched records carry k8s.deployment.name, k8s.pod.label.<key>, ...;
- the `enrich` overlay's RBAC: its ServiceAccount may GET exactly the kinds enrichment reads
  (no list/watch, no Secrets/ConfigMaps), and that is enough for complete records.
"""
from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.components.proc import wait_until
from tests.support.events import create, now
from tests.support.exporter_proc import Exporter

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "kustomize" / "overlays" / "enrich"
SA_NS = "kube-event-exporter"


def start(cp, tmp_path, namespace, *extra, kubeconfig=None, name="exp", config=None):
    args = ["run", "--kubeconfig", str(kubeconfig or cp.kubeconfig), "--listen", "127.0.0.1:0",
            "--namespace", namespace, "--set", "kubernetes.backoff_max_seconds=2",
            "--set", "enrich.enabled=true", "--set", "enrich.negative_ttl_seconds=2", *extra]
    if config is not None:
        args += ["--config", str(config)]
    return Exporter(args, tmp_path / f"{name}.log", env={"POD_NAMESPACE": SA_NS})


def pod_event(ns: str, pod: dict, reason: str, message: str = "kee enrichment test") -> dict:
    md = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{md['name']}.{uuid.uuid4().hex[:10]}", "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": md["name"], "namespace": ns, "uid": md["uid"],
                               "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": "kee-test"}, "firstTimestamp": now(), "lastTimestamp": now(), "count": 1}


def pods(cp, ns: str, selector: str) -> list[dict]:
    return cp.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]


def scheduled(recs: list[dict], prefix: str) -> list[dict]:
    return [r for r in recs if r["reason"] == "Scheduled" and r["object"]["name"].startswith(prefix)]


def test_workloads_on_kwok_nodes_carry_owner_workload_labels_and_node(control_plane, namespace, tmp_path):
    cp = control_plane
    nodes = set(cp.create_kwok_nodes(2))
    ns = namespace
    exp = start(cp, tmp_path, ns, "--set", "enrich.annotations=[kee.example/*]")
    try:
        cp.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web, team: shop}}
      annotations: {{kee.example/owner: alice, other.example/skip: "x"}}
    spec: {{containers: [{{name: c, image: registry.example/web:1}}]}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: nightly, namespace: {ns}}}
spec:
  schedule: "0 0 1 1 *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec: {{restartPolicy: Never, containers: [{{name: c, image: registry.example/job:1}}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {ns}}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec: {{containers: [{{name: c, image: registry.example/db:1}}]}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec: {{containers: [{{name: c, image: registry.example/agent:1}}]}}
""")
        cj = cp.kubectl_json("get", "cronjob", "nightly", "-n", ns)
        # A Job as the CronJob controller makes it (controller ownerReference), without waiting a minute
        cp.apply(json.dumps({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "nightly-29000000", "namespace": ns, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": cj["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "registry.example/job:1"}]}}}}))

        def seen(recs):
            return (len(scheduled(recs, "web-")) >= 2 and scheduled(recs, "nightly-") and scheduled(recs, "db-0")
                    and scheduled(recs, "agent-")
                    and any(r["reason"] == "ScalingReplicaSet" for r in recs))
        recs = exp.wait_for(seen, 90, "Scheduled events of every workload's pods")
        assert not exp.invalid, exp.invalid[:3]
        bound = {p["metadata"]["name"]: p["spec"].get("nodeName")
                 for p in cp.kubectl_json("get", "pods", "-n", ns)["items"]}

        for r in scheduled(recs, "web-"):
            assert r["enrichment"] == "complete", r
            o = r["object"]
            assert o["labels"]["app"] == "web" and o["labels"]["team"] == "shop" and "pod-template-hash" in o["labels"]
            assert o["annotations"] == {"kee.example/owner": "alice"}  # the allow-list, nothing else
            assert o["owner"]["kind"] == "ReplicaSet" and o["owner"]["name"].startswith("web-")
            assert r["workload"]["kind"] == "Deployment" and r["workload"]["name"] == "web"
            assert r["workload"]["uid"] == cp.kubectl_json("get", "deployment", "web", "-n", ns)["metadata"]["uid"]
            assert r["node"] and r["node"] == bound[o["name"]]  # earlier tests may have left other KWOK nodes
        job = scheduled(recs, "nightly-")[0]
        assert job["enrichment"] == "complete", job
        assert job["object"]["owner"]["kind"] == "Job" and job["object"]["owner"]["name"] == "nightly-29000000"
        assert job["workload"] == {"kind": "CronJob", "name": "nightly", "uid": cj["metadata"]["uid"],
                                   "api_version": "batch/v1"}
        assert job["node"] == bound[job["object"]["name"]]
        db = scheduled(recs, "db-0")[0]
        assert db["object"]["owner"]["kind"] == "StatefulSet" and db["workload"]["name"] == "db"
        assert db["workload"]["kind"] == "StatefulSet" and db["node"] == bound["db-0"]
        assert db["enrichment"] == "complete"
        for r in scheduled(recs, "agent-"):
            assert r["workload"]["kind"] == "DaemonSet" and r["workload"]["name"] == "agent"
            assert r["node"] == bound[r["object"]["name"]] and r["enrichment"] == "complete"
        assert {r["node"] for r in scheduled(recs, "agent-")} >= nodes  # one per KWOK node, each its own
        scaling = next(r for r in recs if r["reason"] == "ScalingReplicaSet")
        assert scaling["workload"]["kind"] == "Deployment" and scaling["workload"]["name"] == "web"
        assert scaling["node"] is None and scaling["object"]["owner"] is None
    finally:
        exp.stop()


def test_pod_deleted_before_its_event_is_read_gives_a_partial_record_never_another_pods_labels(
        control_plane, namespace, tmp_path):
    cp = control_plane
    ns = namespace
    cp.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: short-lived, namespace: {ns}, labels: {{gen: first}}}}
spec: {{nodeName: no-such-node, containers: [{{name: c, image: registry.example/x:1}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reused, namespace: {ns}, labels: {{gen: first}}}}
spec: {{nodeName: no-such-node, containers: [{{name: c, image: registry.example/x:1}}]}}
""")
    gone = cp.kubectl_json("get", "pod", "short-lived", "-n", ns)
    old = cp.kubectl_json("get", "pod", "reused", "-n", ns)
    cp.kubectl("delete", "pod", "short-lived", "reused", "-n", ns, "--grace-period=0", "--force")
    wait_until(lambda: cp.request("GET", f"/api/v1/namespaces/{ns}/pods/reused")[0] == 404, 30, "pods deleted")
    cp.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: reused, namespace: {ns}, labels: {{gen: second}}}}
spec: {{nodeName: no-such-node, containers: [{{name: c, image: registry.example/x:1}}]}}
""")
    new = cp.kubectl_json("get", "pod", "reused", "-n", ns)
    exp = start(cp, tmp_path, ns)
    try:
        made = [create(cp, pod_event(ns, gone, "KeeGone")), create(cp, pod_event(ns, old, "KeeOldIncarnation")),
                create(cp, pod_event(ns, new, "KeeNewIncarnation"))]
        uids = {m["metadata"]["uid"] for m in made}
        recs = exp.wait_for(lambda r: uids <= {x["event"]["uid"] for x in r}, 30, "the three events")
        assert not exp.invalid, exp.invalid[:3]
        by = {r["reason"]: r for r in recs if r["event"]["uid"] in uids}
        g = by["KeeGone"]
        assert (g["enrichment"], g["enrichment_reason"]) == ("partial", "not_found")
        assert g["object"]["labels"] is None and g["workload"] is None and g["object"]["name"] == "short-lived"
        o = by["KeeOldIncarnation"]
        assert (o["enrichment"], o["enrichment_reason"]) == ("partial", "gone") and o["object"]["labels"] is None
        n = by["KeeNewIncarnation"]
        assert n["enrichment"] == "complete" and n["object"]["labels"] == {"gen": "second"}
        assert n["node"] == "no-such-node"
        text = exp.log_path.read_text()
        assert "enrichment_incomplete" in text  # the log line beside the metric
    finally:
        exp.stop()


def test_apiserver_restart_during_enrichment_loses_nothing(control_plane, namespace, tmp_path):
    cp = control_plane
    ns = namespace
    cp.create_kwok_nodes(1)
    cp.kubectl("create", "deployment", "api", "--image=registry.example/api:1", "--replicas=3", "-n", ns)
    wait_until(lambda: len([p for p in pods(cp, ns, "app=api") if p["spec"].get("nodeName")]) == 3, 60,
               "3 pods bound")
    targets = pods(cp, ns, "app=api")
    exp = start(cp, tmp_path, ns, "--checkpoint-file", str(tmp_path / "cp.json"),
                "--set", "checkpoint.interval_seconds=0.5", "--set", "enrich.ttl_seconds=1",
                "--set", "enrich.timeout_seconds=1", "--set", "enrich.degraded_seconds=1")
    made: list[dict] = []
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            made.append(create(cp, pod_event(ns, targets[i % 3], "KeeTick", f"tick {i}")))
            i += 1
            time.sleep(0.05)
    t = threading.Thread(target=produce, daemon=True)
    try:
        exp.wait_log("stream_starting", 30)
        t.start()
        wait_until(lambda: len(made) >= 30, 30, "30 events before the restart")
        cp.restart_apiserver()
        n_restart = len(made)
        wait_until(lambda: len(made) >= n_restart + 40, 60, "40 events after the restart")
        stop.set()
        t.join(40)
        time.sleep(3)  # settled: a last few, after any degraded window has passed
        made += [create(cp, pod_event(ns, targets[i % 3], "KeeTick", f"tick {len(made) + i}")) for i in range(5)]
        uids = {m["metadata"]["uid"] for m in made}
        recs = exp.wait_for(lambda r: uids <= {x["event"]["uid"] for x in r}, 90, f"all {len(uids)} events")
        assert not exp.invalid, exp.invalid[:3]
        mine = [r for r in recs if r["event"]["uid"] in uids]
        c = collections.Counter(r["event"]["uid"] for r in mine)
        assert set(c) == uids  # nothing lost
        assert all(r["object"]["kind"] == "Pod" and r["enrichment"] in ("complete", "partial") for r in mine)
        ordered = sorted(mine, key=lambda r: int(r["message"].split()[1]))
        assert any(r["enrichment"] == "complete" for r in ordered[:n_restart])
        tail = ordered[-5:]  # the apiserver is back: enrichment is complete again
        assert all(r["enrichment"] == "complete" and r["workload"]["name"] == "api" for r in tail), \
            [(r["message"], r["enrichment_reason"]) for r in tail]
        # checkpoint semantics unchanged: SIGTERM drains and saves; the next start replays nothing
        assert exp.terminate() == 0
        again = start(cp, tmp_path, ns, "--checkpoint-file", str(tmp_path / "cp.json"), name="again")
        try:
            time.sleep(4)
            assert again.snapshot() == [], "the restart replayed records already delivered"
            new = create(cp, pod_event(ns, targets[0], "KeeAfter"))
            recs = again.wait_for(lambda r: len(r) >= 1, 20)
            assert [r["event"]["uid"] for r in recs] == [new["metadata"]["uid"]]
            assert recs[0]["enrichment"] == "complete" and recs[0]["workload"]["name"] == "api"
        finally:
            again.stop()
    finally:
        stop.set()
        exp.stop()


def test_enrich_overlay_grants_get_on_the_kinds_it_reads_and_nothing_more(control_plane, namespace, tmp_path):
    cp = control_plane
    cp.kubectl("apply", "-k", str(ROOT / "deploy" / "kustomize" / "namespace"))
    dry = cp.kubectl("apply", "-k", str(OVERLAY), "--dry-run=server")
    assert "violate PodSecurity" not in dry.stderr, dry.stderr
    cp.kubectl("apply", "-k", str(OVERLAY))
    token = cp.service_account_token(SA_NS, "kube-event-exporter", create=False)
    kc = cp.kubeconfig_for_token(token, user=f"system:serviceaccount:{SA_NS}:kube-event-exporter",
                                 namespace=SA_NS)

    def can_i(*args: str) -> bool:
        r = cp.kubectl("auth", "can-i", *args, kubeconfig=kc, check=False)
        assert r.returncode in (0, 1), r.stderr
        return r.returncode == 0

    read = ["pods", "nodes", "replicasets.apps", "deployments.apps", "statefulsets.apps", "daemonsets.apps",
            "jobs.batch", "cronjobs.batch", "replicationcontrollers"]
    for res in read:
        assert can_i("get", res, "--all-namespaces"), res
        assert not can_i("list", res, "--all-namespaces"), res
        assert not can_i("watch", res, "-n", namespace), res
    denied = [("get", "secrets", "--all-namespaces"), ("get", "secrets", "-n", namespace),
              ("get", "configmaps", "-n", namespace), ("get", "configmaps/other", "-n", SA_NS),
              ("get", "pods", "--subresource=log", "-n", namespace), ("get", "services", "-n", namespace),
              ("update", "pods", "-n", namespace), ("delete", "deployments.apps", "-n", namespace),
              ("patch", "nodes"), ("get", "serviceaccounts", "-n", namespace), ("*", "*", "--all-namespaces")]
    allowed = [d for d in denied if can_i(*d)]
    assert not allowed, f"the enrich ServiceAccount may: {allowed}"

    # ... and it is enough: the exporter with that token enriches completely
    cp.create_kwok_nodes(1)
    exp = start(cp, tmp_path, namespace, "--set", "checkpoint.store=none", kubeconfig=kc,
                config=OVERLAY / "config.yaml")
    try:
        exp.wait_log("stream_starting", 30)
        cp.kubectl("create", "deployment", "rbac-web", "--image=registry.example/w:1", "-n", namespace)
        recs = exp.wait_for(lambda r: scheduled(r, "rbac-web-"), 60, "a Scheduled event")
        r = scheduled(recs, "rbac-web-")[0]
        assert r["enrichment"] == "complete", r
        assert r["workload"]["name"] == "rbac-web" and r["node"] and r["object"]["labels"]["app"] == "rbac-web"
        assert not exp.invalid
    finally:
        exp.stop()


def test_custom_owner_at_the_top_is_found_through_discovery(control_plane, namespace, tmp_path):
    cp = control_plane
    ns = namespace
    group = "kee-enrich.example.com"
    cp.apply(f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: rollouts.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: rollouts, singular: rollout, kind: Rollout}}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
""")
    wait_until(lambda: cp.request("GET", f"/apis/{group}/v1alpha1")[0] == 200, 30, "the CRD served")
    wait_until(lambda: cp.kubectl("apply", "-n", ns, "-f", "-", check=False, input=json.dumps({
        "apiVersion": f"{group}/v1alpha1", "kind": "Rollout", "metadata": {"name": "checkout"}})).returncode == 0,
        30, "a Rollout created")
    ro = cp.kubectl_json("get", f"rollouts.{group}", "checkout", "-n", ns)
    cp.apply(json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-abc", "namespace": ns, "labels": {"app": "checkout"},
                     "ownerReferences": [{"apiVersion": f"{group}/v1alpha1", "kind": "Rollout", "name": "checkout",
                                          "uid": ro["metadata"]["uid"], "controller": True}]},
        "spec": {"nodeName": "no-such-node", "containers": [{"name": "c", "image": "registry.example/c:1"}]}}))
    pod = cp.kubectl_json("get", "pod", "checkout-abc", "-n", ns)
    exp = start(cp, tmp_path, ns)
    try:
        made = create(cp, pod_event(ns, pod, "KeeCustomOwner"))
        recs = exp.wait_for(lambda r: any(x["event"]["uid"] == made["metadata"]["uid"] for x in r), 30, "the event")
        r = next(x for x in recs if x["event"]["uid"] == made["metadata"]["uid"])
        assert r["enrichment"] == "complete", r
        want = {"kind": "Rollout", "name": "checkout", "uid": ro["metadata"]["uid"],
                "api_version": f"{group}/v1alpha1"}
        assert r["object"]["owner"] == want and r["workload"] == want
        assert r["object"]["labels"] == {"app": "checkout"} and not exp.invalid
    finally:
        exp.stop()


def test_otlp_records_carry_the_k8s_semantic_convention_attributes(control_plane, otel_collector, namespace, tmp_path):
    cp = control_plane
    ns = namespace
    col = otel_collector
    cp.create_kwok_nodes(1)
    exp = start(cp, tmp_path, ns, "--set", "sinks.otlp.enabled=true",
                "--set", f"sinks.otlp.endpoint=http://{col.grpc_endpoint}",
                "--set", "sinks.otlp.batch_timeout_seconds=0.2", "--cluster-name", f"enrich-{ns[-5:]}")
    try:
        exp.wait_log("stream_starting", 30)
        cp.kubectl("create", "deployment", "otel-web", "--image=registry.example/w:1", "-n", ns)
        recs = exp.wait_for(lambda r: scheduled(r, "otel-web-"), 60, "a Scheduled event")
        rec = scheduled(recs, "otel-web-")[0]
        assert rec["enrichment"] == "complete", rec

        def mine(logs):
            return [x for x in logs if x["resource"].get("k8s.object.name") == rec["object"]["name"]
                    and x["attributes"].get("k8s.event.reason") == "Scheduled"]
        got = mine(col.wait_for_logs(lambda logs: mine(logs), 30))[0]["resource"]
        assert got["k8s.deployment.name"] == "otel-web" and got["k8s.deployment.uid"] == rec["workload"]["uid"]
        assert got["k8s.replicaset.name"] == rec["object"]["owner"]["name"]
        assert got["k8s.pod.name"] == rec["object"]["name"] and got["k8s.pod.label.app"] == "otel-web"
        assert got["k8s.node.name"] == rec["node"] and got["k8s.workload.kind"] == "Deployment"
    finally:
        exp.stop()
