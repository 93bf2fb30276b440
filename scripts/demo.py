"""The demo: a real local control plane producing real Events, exported as JSON on stdout.

Started by scripts/demo. Logs of the control plane and of the exporter go to
stderr / files; stdout carries only the exporter's records.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.components import ControlPlane  # noqa: E402

WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.example/web:1.0}]
---
apiVersion: v1
kind: Pod
metadata: {name: bad-image, namespace: demo, labels: {kee.example/image-pull: fail}}
spec:
  containers: [{name: c, image: registry.example/does-not-exist:0.0.0}]
---
apiVersion: v1
kind: Pod
metadata: {name: too-big, namespace: demo}
spec:
  containers: [{name: c, image: registry.example/big:1.0, resources: {requests: {memory: 64Ti}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: demo, labels: {kee.example/crash: OOMKilled}}
spec:
  containers: [{name: api, image: registry.example/api:2.3, resources: {limits: {memory: 256Mi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: demo, labels: {kee.example/crash: Error},
           annotations: {kee.example/crash-after-ms: "4s", kee.example/restart-after-ms: "6s"}}
spec:
  containers: [{name: worker, image: registry.example/worker:1.1}]
---
apiVersion: v1
kind: Pod
metadata: {name: batch, namespace: demo, labels: {kee.example/evict: memory}}
spec:
  containers: [{name: batch, image: registry.example/batch:0.9, resources: {limits: {memory: 2Gi}}}]
"""

#: The node controller marks a node NotReady when its heartbeat (Lease) is this old (Kubernetes' default
#: is 50 s; shorter so the demo shows it within its first minute).
NODE_GRACE = "20s"
EDGE_NODE = "demo-edge-0"


class Kubelet:
    """The heartbeat of one node that KWOK does not manage: this demo posts it, as a kubelet would
    (node status Ready + its Lease in kube-node-lease, every 4 s), and can stop and resume it."""

    def __init__(self, cp: ControlPlane, node: str) -> None:
        self.cp, self.node = cp, node
        self.beating = threading.Event()
        self.beating.set()
        self.resumed = False
        res = {"cpu": "8", "memory": "32Gi", "pods": "110"}
        cp.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "type": "edge"}},
            # no workload lands here: the node only shows a heartbeat that stops
            "spec": {"taints": [{"key": "kee.example/edge", "effect": "NoSchedule"}]},
            "status": {"allocatable": res, "capacity": res}}))
        threading.Thread(target=self._run, daemon=True).start()

    def _beat(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cond = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now}
        if self.resumed:
            self.resumed = False
            cond["lastTransitionTime"] = now
            # the kubelet's own Event when its node is ready again (the node controller writes NodeNotReady)
            self.cp.request("POST", "/api/v1/namespaces/default/events", {
                "metadata": {"generateName": f"{self.node}."},
                "involvedObject": {"kind": "Node", "name": self.node, "uid": self.node, "apiVersion": "v1"},
                "reason": "NodeReady", "message": f"Node {self.node} status is now: NodeReady", "type": "Normal",
                "source": {"component": "kubelet", "host": self.node}, "count": 1,
                "firstTimestamp": now, "lastTimestamp": now})
        self.cp.request("PATCH", f"/api/v1/nodes/{self.node}/status", json.dumps(
            {"status": {"conditions": [cond]}}).encode(), content_type="application/strategic-merge-patch+json")
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40,
                          "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}}
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        status, _ = self.cp.request("PATCH", path, json.dumps({"spec": lease["spec"]}).encode(),
                                    content_type="application/merge-patch+json")
        if status == 404:
            self.cp.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def stop(self) -> None:
        self.beating.clear()

    def resume(self) -> None:
        self.resumed = True
        self.beating.set()

    def _run(self) -> None:
        while True:
            self.beating.wait()
            try:
                self._beat()
            except OSError:
                pass  # the control plane is stopping
            time.sleep(4)
STORY = (
    "the story, within a minute: a crash loop (BackOff), a container OOMKilled (no Event exists for it: "
    "records marked derived_from=pod-status, '*' in text), an eviction, FailedScheduling, an image pull "
    "failure, and at ~10 s a node whose heartbeat stops (NodeNotReady ~20-30 s later), back at ~45 s"
)


def say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    say("starting etcd, kube-apiserver, controller-manager, scheduler and KWOK on loopback ...")
    cp = ControlPlane(kcm_args=[f"--node-monitor-grace-period={NODE_GRACE}", "--node-monitor-period=2s"])
    cp.start()
    exporter = None
    try:
        say(f"control plane ready at {cp.server} (admin kubeconfig: {cp.kubeconfig})")
        cp.create_kwok_nodes(2, prefix="demo-node")
        edge = Kubelet(cp, EDGE_NODE)
        cp.create_namespace("demo")
        args = list(sys.argv[1:])
        if sys.stdout.isatty() and not any(a.startswith("--output") for a in args):
            args = ["--output", "text", "--log-level", "warning", *args]
            say("stdout is a terminal: one line per record (--output text); pipe it for JSON lines")
        exporter = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--kubeconfig", str(cp.kubeconfig),
                                     "--cluster-name", "demo", "--listen", "127.0.0.1:0",
                                     "--set", "sources.pod_terminations.enabled=true", *args],
                                    cwd=Path(__file__).resolve().parents[1])
        time.sleep(2)
        say(STORY)
        say("creating a Deployment (3 replicas), a pod with a bad image, a pod no node can fit, two crash-looping "
            "pods (api: OOMKilled, worker: exit 1) and a pod the kubelet will evict ...")
        cp.apply(WORKLOADS)

        def later():
            time.sleep(6)
            say("scaling the Deployment to 5, then deleting the unschedulable pod ...")
            cp.kubectl("scale", "deployment", "web", "-n", "demo", "--replicas=5", check=False)
            cp.kubectl("delete", "pod", "too-big", "-n", "demo", "--wait=false", check=False)
            time.sleep(2)
            say(f"node {EDGE_NODE}: its kubelet stops posting heartbeats ...")
            edge.stop()
            time.sleep(35)
            say(f"node {EDGE_NODE}: its kubelet is back ...")
            edge.resume()
        threading.Thread(target=later, daemon=True).start()
        duration = float(os.environ.get("KEE_DEMO_SECONDS", "0"))
        say("records follow on stdout; Ctrl-C to stop" + (f" (stopping after {duration:.0f}s)" if duration else ""))
        if duration:
            time.sleep(duration)
            exporter.send_signal(signal.SIGTERM)
        return exporter.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if exporter and exporter.poll() is None:
            exporter.send_signal(signal.SIGTERM)
            try:
                exporter.wait(30)
            except subprocess.TimeoutExpired:
                exporter.kill()
        say("stopping the control plane ...")
        cp.stop()
        if not os.environ.get("KEE_KEEP_TMP"):
            shutil.rmtree(cp.dir, ignore_errors=True)  # etcd data and logs (KEE_KEEP_TMP=1 keeps them)


if __name__ == "__main__":
    raise SystemExit(main())
