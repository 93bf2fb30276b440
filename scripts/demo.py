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
"""


def say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    say("starting etcd, kube-apiserver, controller-manager, scheduler and KWOK on loopback ...")
    cp = ControlPlane()
    cp.start()
    exporter = None
    try:
        say(f"control plane ready at {cp.server} (admin kubeconfig: {cp.kubeconfig})")
        cp.create_kwok_nodes(2, prefix="demo-node")
        cp.create_namespace("demo")
        exporter = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--kubeconfig", str(cp.kubeconfig),
                                     "--cluster-name", "demo", "--listen", "127.0.0.1:0", *sys.argv[1:]],
                                    cwd=Path(__file__).resolve().parents[1])
        time.sleep(2)
        say("creating a Deployment (3 replicas on KWOK nodes), a pod with a bad image and a pod no node can fit ...")
        cp.apply(WORKLOADS)

        def later():
            time.sleep(8)
            say("scaling the Deployment to 5, then deleting the unschedulable pod ...")
            cp.kubectl("scale", "deployment", "web", "-n", "demo", "--replicas=5", check=False)
            cp.kubectl("delete", "pod", "too-big", "-n", "demo", "--wait=false", check=False)
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
