#!/usr/bin/env python3
"""A deterministic, realistic Kubernetes Event watch stream, one JSON envelope per line.

The project's own benchmark and test input (standard library only, so it runs
before anything is installed). Each line is what a watch of Events sends:
``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": {...}}``. The stream is
built from *incidents* rather than independent lines, because that is how
clusters produce Events: a crash-looping container repeats BackOff for minutes,
a node pressure wave evicts several pods, a rollout emits a chain of Normal
events. So the mix has

- both API shapes (core ``v1`` with count/firstTimestamp/lastTimestamp and
  ``events.k8s.io/v1`` with series/note/regarding), or one of them;
- recurrences of the same Event object (MODIFIED, count or series bumped; 28%
  of the lines), recent Events recurring most, as a crash loop does;
- expiries (DELETED, 2%; a real watch sees one per Event after --event-ttl, but
  a benchmark window of minutes sees few), and a BOOKMARK every 500 lines;
- namespaced and cluster-scoped (Node) involved objects, fieldPaths;
- managedFields (the bulk of a real Event's bytes, never exported);
- non-ASCII messages and, rarely, very large ones (admission webhooks, CSI).

resourceVersion rises strictly; the same seed gives the same bytes.

    python3 bench/gen_stream.py -n 100000 -o stream.jsonl [--api mixed|v1|events.k8s.io/v1] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)
BOOKMARK_EVERY = 500
LIVE_EVENTS = 5000  # Event objects that can still recur; older ones fall out of the window silently
SHARE_RECUR, SHARE_EXPIRE = 0.28, 0.02  # of the lines: MODIFIED (count/series bump), DELETED (event-ttl expiry)

# What a cluster says, per incident kind: (type, reason, reporter, involved kind, note template).
NOTES: dict[str, list[tuple[str, str, str, str, str]]] = {
    "crashloop": [
        ("Normal", "Pulled", "kubelet", "Pod", 'Container image "{image}" already present on machine'),
        ("Normal", "Created", "kubelet", "Pod", "Created container: {container}"),
        ("Normal", "Started", "kubelet", "Pod", "Started container {container}"),
        ("Warning", "BackOff", "kubelet", "Pod",
         "Back-off restarting failed container {container} in pod {pod}_{namespace}({uid})"),
    ],
    "imagepull": [
        ("Normal", "Pulling", "kubelet", "Pod", 'Pulling image "{image}"'),
        ("Warning", "Failed", "kubelet", "Pod",
         'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image '
         '"{image}": failed to resolve reference "{image}": {image}: not found'),
        ("Warning", "Failed", "kubelet", "Pod", "Error: ErrImagePull"),
        ("Normal", "BackOff", "kubelet", "Pod", 'Back-off pulling image "{image}"'),
        ("Warning", "Failed", "kubelet", "Pod", "Error: ImagePullBackOff"),
    ],
    "pending": [
        ("Warning", "FailedScheduling", "default-scheduler", "Pod",
         "0/{nodes} nodes are available: {short} Insufficient cpu, {rest} node(s) had untolerated taint "
         "{{node-role.kubernetes.io/control-plane: }}. preemption: 0/{nodes} nodes are available: {short} No "
         "preemption victims found for incoming pod, {rest} Preemption is not helpful for scheduling."),
    ],
    "pressure": [
        ("Warning", "EvictionThresholdMet", "kubelet", "Node", "Attempting to reclaim memory"),
        ("Warning", "Evicted", "kubelet", "Pod",
         "The node was low on resource: memory. Threshold quantity: 100Mi, available: {avail}Ki. Container "
         "{container} was using {used}Mi, request is 512Mi, has larger consumption of memory."),
        ("Normal", "Killing", "kubelet", "Pod", "Stopping container {container}"),
        ("Warning", "OOMKilling", "kernel-monitor", "Node",
         "Memory cgroup out of memory: Killed process {pid} ({container}) total-vm:{vm}kB, anon-rss:{used}000kB, "
         "file-rss:0kB, shmem-rss:0kB, UID:65532 pgtables:3212kB oom_score_adj:999"),
    ],
    "node": [
        ("Normal", "NodeNotReady", "node-controller", "Node", "Node {node} status is now: NodeNotReady"),
        ("Warning", "NodeNotReady", "node-controller", "Pod", "Node is not ready"),
        ("Warning", "Rebooted", "kubelet", "Node", "Node {node} has been rebooted, boot id: {uid}"),
        ("Normal", "NodeReady", "kubelet", "Node", "Node {node} status is now: NodeReady"),
    ],
    "rollout": [
        ("Normal", "ScalingReplicaSet", "deployment-controller", "Deployment",
         "Scaled up replica set {rs} from {replicas} to {more}"),
        ("Normal", "SuccessfulCreate", "replicaset-controller", "ReplicaSet", "Created pod: {pod}"),
        ("Normal", "Scheduled", "default-scheduler", "Pod", "Successfully assigned {namespace}/{pod} to {node}"),
        ("Warning", "Unhealthy", "kubelet", "Pod",
         "Readiness probe failed: Get \"http://10.244.{a}.{b}:8080/readyz\": dial tcp 10.244.{a}.{b}:8080: "
         "connect: connection refused"),
        ("Normal", "SuccessfulRescale", "horizontal-pod-autoscaler", "HorizontalPodAutoscaler",
         "New size: {more}; reason: cpu resource utilization (percentage of request) above target"),
    ],
    "misc": [
        ("Warning", "FailedMount", "kubelet", "Pod",
         'MountVolume.SetUp failed for volume "{container}-tls" : secret "{container}-tls" not found'),
        ("Warning", "HostPortConflict", "kubelet", "Pod", "Host port 9100 is already in use on node {node}"),
        ("Warning", "FailedCreate", "job-controller", "Job",
         'Error creating: pods "{pod}" is forbidden: exceeded quota: team-quota, requested: limits.memory=1Gi, '
         "used: limits.memory=15Gi, limited: limits.memory=16Gi"),
        ("Normal", "LeaderElection", "kube-scheduler", "Lease", "{node}_{uid} became leader"),
        # Teams write their own controllers' notes in their own language.
        ("Warning", "SyncFailed", "config-operator", "Deployment",
         "配置同步失败: 无法从 {container}-config 读取键 \u201cdatabase.url\u201d，将在 30 秒后重试"),
        ("Warning", "Échec", "déployeur", "Deployment", "Mise à jour refusée : quota « {namespace} » dépassé"),
    ],
}
INCIDENT_WEIGHTS = {"crashloop": 30, "imagepull": 12, "pending": 10, "pressure": 6, "node": 4, "rollout": 28,
                    "misc": 10}
GROUP_VERSION = {"Pod": "v1", "Node": "v1", "Deployment": "apps/v1", "ReplicaSet": "apps/v1", "Job": "batch/v1",
                 "HorizontalPodAutoscaler": "autoscaling/v2", "Lease": "coordination.k8s.io/v1"}
NAMESPACES = ("shop", "payments", "search", "kube-system", "observability", "batch", "ml-training", "default")
WORKLOADS = ("checkout", "cart", "frontend", "ledger", "indexer", "prometheus", "etl-nightly", "trainer",
             "coredns", "api-gateway")


class Incident:
    """One thing going on in the cluster: a workload on a node, and the Events it keeps producing."""

    def __init__(self, rng: random.Random, kind: str) -> None:
        self.kind = kind
        self.namespace = rng.choice(NAMESPACES)
        self.container = rng.choice(WORKLOADS)
        self.rs = f"{self.container}-{rng.getrandbits(40):010x}"[: len(self.container) + 11]
        self.pod = self.rs + "-" + "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        self.node = f"ip-10-{rng.randint(0, 31)}-{rng.randint(0, 255)}-{rng.randint(1, 254)}.ec2.internal"
        self.fields = {
            "namespace": self.namespace, "container": self.container, "pod": self.pod, "rs": self.rs,
            "node": self.node, "image": f"registry.internal:5000/{self.namespace}/{self.container}:"
                                        f"{rng.randint(1, 9)}.{rng.randint(0, 40)}",
            "nodes": rng.randint(3, 250), "replicas": rng.randint(1, 9), "avail": rng.randint(10_000, 99_000),
            "used": rng.randint(600, 4000), "pid": rng.randint(1000, 99_999), "vm": rng.randint(10**6, 9 * 10**6),
            "a": rng.randint(0, 255), "b": rng.randint(1, 254),
        }
        self.fields["short"] = rng.randint(1, int(self.fields["nodes"]))
        self.fields["rest"] = int(self.fields["nodes"]) - int(self.fields["short"])
        self.fields["more"] = int(self.fields["replicas"]) + 1
        self.uids: dict[str, str] = {}  # involved object kind -> its uid (stable within the incident)


def make_uid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def stamp(t: datetime, micro: bool = False) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class Stream:
    """Walks simulated time forward and yields watch envelopes."""

    def __init__(self, seed: int, api: str) -> None:
        self.rng = random.Random(seed)
        self.api = api
        self.rv = 7_300_000
        self.now = START
        self.incidents: list[Incident] = []
        self.events: list[dict[str, Any]] = []  # live Event states, oldest first, for recurrences and expiry
        self.kinds = list(INCIDENT_WEIGHTS)
        self.weights = [INCIDENT_WEIGHTS[k] for k in self.kinds]

    def _rv(self) -> str:
        self.rv += self.rng.choice((1, 1, 2, 3, 5))
        return str(self.rv)

    def _incident(self) -> Incident:
        rng = self.rng
        if self.incidents and rng.random() < 0.8:
            return rng.choice(self.incidents)
        inc = Incident(rng, rng.choices(self.kinds, self.weights)[0])
        self.incidents.append(inc)
        if len(self.incidents) > 300:
            self.incidents.pop(0)
        return inc

    def _new_event(self, inc: Incident) -> dict[str, Any]:
        rng = self.rng
        etype, reason, reporter, kind, template = rng.choice(NOTES[inc.kind])
        name = {"Pod": inc.pod, "Node": inc.node, "Deployment": inc.container, "ReplicaSet": inc.rs,
                "Job": inc.container + "-" + str(rng.randint(29_000_000, 29_999_999)),
                "HorizontalPodAutoscaler": inc.container, "Lease": "kube-scheduler"}[kind]
        obj_uid = inc.uids.setdefault(kind, make_uid(rng))
        note = template.format(uid=obj_uid, **inc.fields)
        if rng.random() < 0.0015:  # an admission webhook that returns its whole request
            note += " webhook denied the request: " + "{\"spec\":{...}} " * rng.randint(300, 4000)
        namespaced = kind != "Node"
        regarding: dict[str, Any] = {"kind": kind, "name": name, "uid": obj_uid, "apiVersion": GROUP_VERSION[kind],
                                     "resourceVersion": str(rng.randint(10_000, 7_000_000))}
        if namespaced:
            regarding["namespace"] = inc.namespace
        if kind == "Pod" and reporter == "kubelet" and reason not in ("Evicted", "HostPortConflict", "NodeNotReady"):
            regarding["fieldPath"] = f"spec.containers{{{inc.container}}}"
        if self.api == "mixed":
            new_api = rng.random() < 0.5
        else:
            new_api = self.api == "events.k8s.io/v1"
        host = inc.node if reporter in ("kubelet", "kernel-monitor") else None
        return {"new_api": new_api, "type": etype, "reason": reason, "reporter": reporter, "host": host,
                "regarding": regarding, "note": note, "first": self.now, "last": self.now, "count": 1,
                "ns": inc.namespace if namespaced else "default",
                "name": f"{name}.{rng.getrandbits(64):016x}", "uid": make_uid(rng), "created": self.now}

    def _object(self, ev: dict[str, Any], rv: str) -> dict[str, Any]:
        fields = (["f:action", "f:eventTime", "f:note", "f:reason", "f:regarding", "f:reportingController",
                   "f:reportingInstance", "f:series", "f:type"] if ev["new_api"] else
                  ["f:count", "f:firstTimestamp", "f:involvedObject", "f:lastTimestamp", "f:message", "f:reason",
                   "f:reportingComponent", "f:source", "f:type"])
        meta = {"name": ev["name"], "namespace": ev["ns"], "uid": ev["uid"], "resourceVersion": rv,
                "creationTimestamp": stamp(ev["created"]),
                "managedFields": [{"manager": ev["reporter"], "operation": "Update",
                                   "apiVersion": "events.k8s.io/v1" if ev["new_api"] else "v1",
                                   "time": stamp(ev["last"]), "fieldsType": "FieldsV1",
                                   "fieldsV1": {f: {} for f in fields}}]}
        instance = ev["host"] or f"{ev['reporter']}-{ev['uid'][:8]}"
        if ev["new_api"]:
            obj: dict[str, Any] = {
                "kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": meta,
                "eventTime": stamp(ev["first"], micro=True), "reportingController": ev["reporter"],
                "reportingInstance": instance, "action": ev["reason"], "reason": ev["reason"],
                "regarding": ev["regarding"], "note": ev["note"], "type": ev["type"]}
            if ev["count"] > 1:
                obj["series"] = {"count": ev["count"], "lastObservedTime": stamp(ev["last"], micro=True)}
            if ev["host"]:
                obj["deprecatedSource"] = {"component": ev["reporter"], "host": ev["host"]}
            return obj
        source = {"component": ev["reporter"]}
        if ev["host"]:
            source["host"] = ev["host"]
        return {"kind": "Event", "apiVersion": "v1", "metadata": meta, "involvedObject": ev["regarding"],
                "reason": ev["reason"], "message": ev["note"], "source": source, "type": ev["type"],
                "firstTimestamp": stamp(ev["first"]), "lastTimestamp": stamp(ev["last"]), "count": ev["count"],
                "eventTime": None, "reportingComponent": ev["reporter"], "reportingInstance": ev["host"] or ""}

    def envelopes(self, n: int) -> Iterator[dict[str, Any]]:
        rng = self.rng
        for line in range(n):
            self.now += timedelta(milliseconds=rng.expovariate(1 / 18))
            if line and line % BOOKMARK_EVERY == 0:
                api = "events.k8s.io/v1" if self.api == "events.k8s.io/v1" else "v1"
                yield {"type": "BOOKMARK", "object": {"kind": "Event", "apiVersion": api,
                                                      "metadata": {"resourceVersion": self._rv()}}}
                continue
            roll = rng.random()
            if self.events and roll < SHARE_EXPIRE:
                ev = self.events.pop(0)  # the oldest expires first
                yield {"type": "DELETED", "object": self._object(ev, self._rv())}
                continue
            if self.events and roll < SHARE_EXPIRE + SHARE_RECUR:
                # Recurrence: recent Events recur most (a crash loop keeps going), old ones rarely.
                i = len(self.events) - 1 - min(int(rng.expovariate(1 / 40)), len(self.events) - 1)
                ev = self.events[i]
                ev["count"] += 1
                ev["last"] = self.now
                yield {"type": "MODIFIED", "object": self._object(ev, self._rv())}
                continue
            ev = self._new_event(self._incident())
            self.events.append(ev)
            if len(self.events) > LIVE_EVENTS:
                del self.events[0]
            yield {"type": "ADDED", "object": self._object(ev, self._rv())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("-n", type=int, default=100_000, help="lines to write (default 100000)")
    p.add_argument("-o", default="-", help="output file; - is stdout")
    p.add_argument("--api", choices=("mixed", "v1", "events.k8s.io/v1"), default="mixed")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    out = sys.stdout if a.o == "-" else open(a.o, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for env in Stream(a.seed, a.api).envelopes(a.n):
            out.write(encode(env))
            out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    main()
