"""Who an object is, cheaply: one GET of its metadata (PartialObjectMetadata), for enrichment.

Enrichment (exporter/transforms/enrich.py) needs an object's uid, labels, chosen
annotations and its controller ownerReference; for a Pod also ``spec.nodeName``.
This module knows where each kind lives in the API and turns one GET into a
:class:`ObjectMeta`, keeping only what a record carries (the rest is dropped
before it is ever cached).

- **Metadata only.** The Accept header asks the apiserver for
  ``PartialObjectMetadata`` (metadata without spec/status): a ReplicaSet or a
  Deployment is a few hundred bytes instead of several KB.
- **Pods are the one exception** when ``enrich.node`` is on: metadata does not
  carry ``spec.nodeName``, so a Pod is read whole (one request either way; the
  body is bigger, measured in docs/BENCHMARKS.md). With ``enrich.node`` off Pods
  are read as metadata too, and the node comes only from a kubelet Event's
  source host.
- **Where a kind lives**: a static table for the built-in kinds enrichment meets
  (Pod, ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob, Node, ...);
  any other kind (a custom owner such as an Argo Rollout) is resolved once per
  group/version through discovery (``GET /apis/<group>/<version>``), using the
  apiVersion the Event or the ownerReference names, and remembered.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from exporter import wire
from exporter.errors import ApiError
from exporter.kube.client import KubeClient

ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

#: (group, kind) -> (version, plural, namespaced): the kinds enrichment meets most, no discovery needed.
KNOWN: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("", "Pod"): ("v1", "pods", True),
    ("", "Node"): ("v1", "nodes", False),
    ("", "ReplicationController"): ("v1", "replicationcontrollers", True),
    ("", "Service"): ("v1", "services", True),
    ("", "PersistentVolumeClaim"): ("v1", "persistentvolumeclaims", True),
    ("apps", "ReplicaSet"): ("v1", "replicasets", True),
    ("apps", "Deployment"): ("v1", "deployments", True),
    ("apps", "StatefulSet"): ("v1", "statefulsets", True),
    ("apps", "DaemonSet"): ("v1", "daemonsets", True),
    ("batch", "Job"): ("v1", "jobs", True),
    ("batch", "CronJob"): ("v1", "cronjobs", True),
}
#: kind -> group, for a reference without apiVersion (old Events): the built-in kinds only.
GROUP_OF_KIND = {kind: group for (group, kind) in KNOWN}

#: Annotation values longer than this are cut (with a marker): an allow-listed annotation
#: such as kubectl's last-applied-configuration can be 256 KiB, and it would be cached.
MAX_ANNOTATION_CHARS = 1024
CUT_MARKER = "...[truncated]"


class UnknownKind(ApiError):
    """Discovery does not serve this kind under the given apiVersion."""


def split_api_version(api_version: str | None, kind: str) -> tuple[str, str | None]:
    """'apps/v1' -> ('apps', 'v1'); 'v1' -> ('', 'v1'); None -> (group of a built-in kind, None)."""
    if not api_version:
        return GROUP_OF_KIND.get(kind, ""), None
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(slots=True)
class OwnerRef:
    kind: str
    name: str
    uid: str | None
    api_version: str | None
    record: dict[str, Any] | None = None  # the record form, built once and shared (records never mutate it)

    def as_record(self) -> dict[str, Any]:
        r = self.record
        if r is None:
            r = self.record = {"kind": self.kind, "name": self.name, "uid": self.uid, "api_version": self.api_version}
        return r


@dataclass(slots=True)
class ObjectMeta:
    """What a record needs of one object; labels/annotations already cut to the allow-lists."""
    uid: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: OwnerRef | None          # the controller ownerReference (controller: true), if any
    node: str | None                # Pods read whole: spec.nodeName (None: not scheduled, or not read)
    size: int                       # approximate bytes this costs in the cache (see approx_size)


def approx_size(meta: ObjectMeta, namespace: str | None, name: str) -> int:
    """Bytes an entry holds, roughly: string lengths plus CPython's per-object overheads.

    A str costs ~49 bytes + its length, a dict slot ~100 with its key/value objects; the entry,
    its key tuple (with its own name/namespace strings) and the LRU link ~500. Checked against
    tracemalloc for a Pod with 6 labels and an owner: 1787 bytes real, 1914 counted. It errs high,
    so the byte bound holds for RSS.
    """
    n = 500 + len(name) + len(namespace or "") + len(meta.uid or "") + len(meta.node or "")
    for d in (meta.labels, meta.annotations):
        if d:
            n += 232
            for k, v in d.items():
                n += 100 + len(k) + len(v)
    if meta.owner is not None:
        n += 350 + len(meta.owner.name) + len(meta.owner.kind)
    return n


class Selector:
    """An allow-list of keys: exact keys and prefixes ('app.kubernetes.io/*'); '*' alone is everything."""

    __slots__ = ("all", "exact", "prefixes")

    def __init__(self, patterns: list[str]) -> None:
        self.all = "*" in patterns
        self.exact = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and p != "*")

    def pick(self, d: Any, cut: int = 0) -> dict[str, str]:
        if not isinstance(d, dict) or not d:
            return {}
        out = {}
        for k, v in d.items():
            if self.all or k in self.exact or (self.prefixes and k.startswith(self.prefixes)):
                v = v if type(v) is str else str(v)
                if cut and len(v) > cut:
                    v = v[:cut] + CUT_MARKER
                out[k] = v
        return out

    @property
    def empty(self) -> bool:
        return not (self.all or self.exact or self.prefixes)


class MetadataReader:
    """GET one object's metadata; resolve kinds to paths (static table, then discovery)."""

    def __init__(self, client: KubeClient, *, labels: Selector, annotations: Selector, pod_node: bool,
                 timeout: float, discovery_ttl: float = 600.0) -> None:
        self.client = client
        self.labels = labels
        self.annotations = annotations
        self.pod_node = pod_node
        self.timeout = timeout
        self.discovery_ttl = discovery_ttl
        # (group, version) -> ({kind: (plural, namespaced)}, fetched_at); a failed discovery caches {}.
        self._discovered: dict[tuple[str, str], tuple[dict[str, tuple[str, bool]], float]] = {}
        self._lock = threading.Lock()
        self.requests = 0            # API requests made (GETs and discovery), for the metrics
        self.bytes_read = 0

    # --- where a kind lives --------------------------------------------------------

    def path(self, kind: str, api_version: str | None, namespace: str | None, name: str) -> str:
        group, version = split_api_version(api_version, kind)
        known = KNOWN.get((group, kind))
        if known is not None and (version is None or version == known[0]):
            version, plural, namespaced = known
        else:
            if version is None:
                raise UnknownKind(0, f"{kind} without apiVersion is not a built-in kind")
            plural, namespaced = self._discover(group, version, kind)
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        if namespaced:
            if not namespace:
                raise UnknownKind(0, f"{kind} is namespaced but the reference has no namespace")
            return f"{base}/namespaces/{namespace}/{plural}/{name}"
        return f"{base}/{plural}/{name}"

    def _discover(self, group: str, version: str, kind: str) -> tuple[str, bool]:
        key = (group, version)
        with self._lock:
            hit = self._discovered.get(key)
        if hit is None or time.monotonic() - hit[1] > self.discovery_ttl:
            kinds: dict[str, tuple[str, bool]] = {}
            path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
            try:
                self.requests += 1
                raw = self.client.request_raw("GET", path, timeout=self.timeout)
                self.bytes_read += len(raw)
                doc = wire.loads(raw)
                for r in doc.get("resources") or []:
                    if "/" not in r.get("name", "/") and r.get("kind"):
                        kinds[r["kind"]] = (r["name"], bool(r.get("namespaced")))
            except ApiError as exc:
                if exc.status != 404:
                    raise  # transient or forbidden: not remembered
            with self._lock:
                if len(self._discovered) >= 256:  # bounded: group/versions are few; never grows with objects
                    self._discovered.clear()
                self._discovered[key] = hit = (kinds, time.monotonic())
        found = hit[0].get(kind)
        if found is None:
            raise UnknownKind(0, f"the apiserver serves no kind {kind} in {group or 'core'}/{version}")
        return found

    # --- one object ----------------------------------------------------------------

    def get(self, kind: str, api_version: str | None, namespace: str | None, name: str) -> ObjectMeta:
        """Read one object (raises ApiError: 404 NotFound, 403 Forbidden, ...; Unreachable)."""
        path = self.path(kind, api_version, namespace, name)
        whole_pod = self.pod_node and kind == "Pod" and not split_api_version(api_version, kind)[0]
        self.requests += 1
        raw = self.client.request_raw("GET", path, timeout=self.timeout,
                                      accept=None if whole_pod else ACCEPT_METADATA)
        self.bytes_read += len(raw)
        return self.parse(raw, namespace, name)

    def parse(self, raw: bytes, namespace: str | None, name: str) -> ObjectMeta:
        doc = wire.loads(raw)
        md = doc.get("metadata") or {}
        owner = None
        for ref in md.get("ownerReferences") or ():
            if isinstance(ref, dict) and ref.get("controller") is True and ref.get("kind") and ref.get("name"):
                owner = OwnerRef(ref["kind"], ref["name"], ref.get("uid"), ref.get("apiVersion"))
                break
        spec = doc.get("spec")
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        meta = ObjectMeta(uid=md.get("uid"), labels=self.labels.pick(md.get("labels")),
                          annotations=self.annotations.pick(md.get("annotations"), MAX_ANNOTATION_CHARS),
                          owner=owner, node=node if isinstance(node, str) and node else None, size=0)
        meta.size = approx_size(meta, namespace, name)
        return meta
