"""CPU per Pod update of the pod_terminations source: decode (wire.pods) + termination rules, per watch line.

A realistic Pod watch stream: Pods of 5-20 KB (managedFields of kubelet, controllers and
kubectl; env, volumes, probes, conditions, several containers; a few large annotations),
and a mix of updates where most are not terminations (readiness flaps, status heartbeats),
a few percent are crash-loop terminations and back-offs. Compared with orjson.loads of
the whole line on the same bytes (what a decoder that builds the full object costs).

    python -m bench.pods [-n 20000] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import orjson

from exporter import wire
from exporter.terminations import Tracker


def _ts(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_790_000_000 + sec))


def _container(rng: random.Random, i: int) -> dict:
    return {
        "name": f"c{i}", "image": f"registry.example/team/app-{i}:{rng.randint(1, 99)}.{rng.randint(0, 9)}",
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": f"ENV_{k}", "value": "x" * rng.randint(8, 80)} for k in range(rng.randint(5, 30))],
        "ports": [{"containerPort": 8080 + k, "protocol": "TCP", "name": f"p{k}"} for k in range(2)],
        "resources": {"limits": {"memory": f"{rng.choice([128, 256, 512, 1024])}Mi", "cpu": "1"},
                      "requests": {"memory": "64Mi", "cpu": "100m"}},
        "volumeMounts": [{"name": f"v{k}", "mountPath": f"/data/{k}", "readOnly": True} for k in range(6)],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }


def _managed(rng: random.Random) -> list:
    def fields(depth: int) -> dict:
        if depth == 0:
            return {}
        return {f"f:k{rng.randint(0, 999)}": fields(depth - 1) for _ in range(rng.randint(2, 5))}
    return [{"manager": m, "operation": "Update", "apiVersion": "v1", "time": _ts(0), "fieldsType": "FieldsV1",
             "fieldsV1": fields(3)} for m in ("kube-controller-manager", "kubelet", "kubectl-client-side-apply")]


def pod(rng: random.Random, uid: int) -> dict:
    n = rng.choice([1, 1, 1, 2, 3])
    containers = [_container(rng, i) for i in range(n)]
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": f"app-{uid}-{rng.randint(10000, 99999)}", "namespace": f"team-{uid % 40}",
                     "uid": f"00000000-0000-0000-0000-{uid:012d}", "resourceVersion": "1",
                     "creationTimestamp": _ts(0), "labels": {"app": f"app-{uid}", "pod-template-hash": "7d9f"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                     "{" + "x" * rng.randint(200, 3000) + "}"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"app-{uid}",
                                          "uid": "r", "controller": True}],
                     "managedFields": _managed(rng)},
        "spec": {"nodeName": f"node-{uid % 50}", "restartPolicy": "Always", "containers": containers,
                 "volumes": [{"name": f"v{k}", "configMap": {"name": f"cm-{k}"}} for k in range(6)],
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}]},
        "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "startTime": _ts(0),
                   "qosClass": "Burstable",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": _ts(0)}
                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "sha256:" + "a" * 64,
                                          "containerID": "containerd://" + "b" * 64, "ready": True, "started": True,
                                          "restartCount": 0, "state": {"running": {"startedAt": _ts(0)}}}
                                         for c in containers]},
    }


def stream(n: int, seed: int = 1, pods: int = 2000, crash_share: float = 0.03) -> list[bytes]:
    rng = random.Random(seed)
    objs = [pod(rng, i) for i in range(pods)]
    lines, rv, clock = [], 1000, 100
    for _ in range(n):
        rv += 1
        clock += 1
        p = objs[rng.randrange(pods)]
        p["metadata"]["resourceVersion"] = str(rv)
        cs = p["status"]["containerStatuses"][0]
        if rng.random() < crash_share:  # a termination (then a restart): the rare, interesting update
            cs["lastState"] = {"terminated": {"exitCode": rng.choice([1, 137]), "reason": rng.choice(
                ["Error", "OOMKilled"]), "startedAt": cs["state"].get("running", {}).get("startedAt", _ts(clock)),
                "finishedAt": _ts(clock), "containerID": "containerd://" + "c" * 64}}
            cs["restartCount"] += 1
            cs["state"] = {"running": {"startedAt": _ts(clock + 1)}}
        else:  # readiness flap / status heartbeat
            cs["ready"] = not cs["ready"]
            p["status"]["conditions"][1]["lastTransitionTime"] = _ts(clock)
        lines.append(orjson.dumps({"type": "MODIFIED", "object": p}))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    lines = stream(a.n, a.seed)
    sizes = [len(x) for x in lines]
    made = 0
    best_ours, best_full = [], []
    for _ in range(5):
        tr = Tracker(cluster="bench")  # fresh each pass: the same terminations are new again
        made = 0
        t0 = time.process_time()
        for line in lines:
            made += len(tr.records(wire.pods(line).object, observed="2026-12-02T00:00:00Z"))
        best_ours.append((time.process_time() - t0) / len(lines))
        t0 = time.process_time()
        for line in lines:
            orjson.loads(line)
        best_full.append((time.process_time() - t0) / len(lines))
    print(json.dumps({
        "lines": len(lines), "bytes_per_line": {"median": int(statistics.median(sizes)), "min": min(sizes),
                                                "max": max(sizes)},
        "records_per_pass": made,
        "us_per_update_decode_and_rules": round(min(best_ours) * 1e6, 2),
        "us_per_update_orjson_full_decode": round(min(best_full) * 1e6, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
