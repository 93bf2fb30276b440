"""The Kubernetes semantic-convention resource attributes of an enriched record (issue 13).

Enrichment (exporter/transforms/enrich.py) adds labels, the controller owner, the
workload and the node to a record; here they become the attribute names the
Collector's k8sattributes processor uses (k8s.deployment.name, k8s.pod.label.<key>...).
A pure function of the record, so the sink stays independent of the enrichment stage.
"""
from __future__ import annotations

from typing import Any

#: kind -> semantic-convention prefix (the names the Collector's k8sattributes processor uses).
OTEL_KIND = {"Pod": "k8s.pod", "ReplicaSet": "k8s.replicaset", "Deployment": "k8s.deployment",
             "StatefulSet": "k8s.statefulset", "DaemonSet": "k8s.daemonset", "Job": "k8s.job",
             "CronJob": "k8s.cronjob", "Node": "k8s.node"}


def otel_attributes(rec: dict[str, Any]) -> dict[str, str]:
    """Resource attributes for an enriched record (empty when enrichment is off).

    ``k8s.<kind>.name`` / ``.uid`` for the object, its owner and its workload when their
    kinds have a convention (k8s.pod.*, k8s.replicaset.*, k8s.deployment.*, k8s.statefulset.*,
    k8s.daemonset.*, k8s.job.*, k8s.cronjob.*); ``k8s.<kind>.label.<key>`` and
    ``.annotation.<key>`` for the object's; ``k8s.workload.kind`` / ``.name`` (ours) for any
    workload, custom ones included; ``kee.enrichment`` (+ ``_reason``) when partial.
    ``k8s.node.name`` is set by the sink itself from ``node``, else ``source_host``.
    """
    if "enrichment" not in rec:
        return {}
    out: dict[str, str] = {}
    o = rec.get("object") or {}
    for ref in (o, o.get("owner"), rec.get("workload")):
        if ref:
            prefix = OTEL_KIND.get(str(ref.get("kind")))
            if prefix is not None and prefix != "k8s.node" and ref.get("name"):
                out[prefix + ".name"] = ref["name"]
                if ref.get("uid"):
                    out[prefix + ".uid"] = ref["uid"]
    prefix = OTEL_KIND.get(str(o.get("kind")))
    if prefix is not None:
        for k, v in (o.get("labels") or {}).items():
            out[f"{prefix}.label.{k}"] = v
        for k, v in (o.get("annotations") or {}).items():
            out[f"{prefix}.annotation.{k}"] = v
    wl = rec.get("workload")
    if wl:
        out["k8s.workload.kind"] = wl.get("kind") or ""
        out["k8s.workload.name"] = wl.get("name") or ""
    if rec.get("enrichment") == "partial":
        out["kee.enrichment"] = "partial"
        out["kee.enrichment_reason"] = rec.get("enrichment_reason") or ""
    return out
