"""The demo: a real local control plane producing real Events, exported as JSON on stdout.

Started by scripts/demo. Logs of the control plane and of the exporter go to
stderr / files; stdout carries only the exporter's records.
"""
from __future__ import annotations

import os
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
           annotations: {kee.example/crash-after-ms: "4000", kee.example/restart-after-ms: "4000"}}
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
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
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
        nodes = cp.create_kwok_nodes(2, prefix="demo-node")
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
            say(f"node {nodes[1]}: its kubelet stops posting heartbeats (KWOK lets go of it) ...")
            cp.kubectl("annotate", "node", nodes[1], f"{KWOK_ANNOTATION}-", check=False)
            time.sleep(35)
            say(f"node {nodes[1]}: its kubelet is back ...")
            cp.kubectl("annotate", "node", nodes[1], f"{KWOK_ANNOTATION}=fake", check=False)
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


if __name__ == "__main__":
    raise SystemExit(main())
