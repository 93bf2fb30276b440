"""A fake apiserver for Leases: the KubeClient.request surface, with resourceVersion conflicts.

Each elector gets its own FakeClient view of one shared FakeLeaseServer, so a test can
cut one replica off the network (`down`) or hang its requests (`hang`) while the
other keeps talking to the "apiserver".
"""
from __future__ import annotations

import copy
import threading
from typing import Any

from exporter.errors import ApiError
from exporter.kube.client import Unreachable


class FakeLeaseServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 100
        self.writes: list[tuple[str, str, dict]] = []  # (method, path, spec after)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj

    def handle(self, method: str, path: str, body: dict | None) -> dict[str, Any]:
        with self.lock:
            if method == "GET":
                if path not in self.objects:
                    raise ApiError(404, "not found")
                return copy.deepcopy(self.objects[path])
            if method == "POST":
                name = body["metadata"]["name"]
                full = f"{path}/{name}"
                if full in self.objects:
                    raise ApiError(409, "already exists")
                obj = self._bump(copy.deepcopy(body))
                self.objects[full] = obj
                self.writes.append((method, full, copy.deepcopy(obj["spec"])))
                return copy.deepcopy(obj)
            if method == "PUT":
                cur = self.objects.get(path)
                if cur is None:
                    raise ApiError(404, "not found")
                want = (body.get("metadata") or {}).get("resourceVersion")
                if want != cur["metadata"]["resourceVersion"]:
                    raise ApiError(409, "the object has been modified")
                obj = self._bump(copy.deepcopy(body))
                self.objects[path] = obj
                self.writes.append((method, path, copy.deepcopy(obj["spec"])))
                return copy.deepcopy(obj)
        raise AssertionError(method)

    def lease(self, namespace: str = "kee", name: str = "kube-event-exporter") -> dict[str, Any] | None:
        with self.lock:
            o = self.objects.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
            return copy.deepcopy(o) if o else None

    def put_spec(self, spec: dict[str, Any], namespace: str = "kee", name: str = "kube-event-exporter") -> None:
        """Write the lease as a third party would (no RV check)."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        with self.lock:
            obj = self.objects.get(path) or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                             "metadata": {"name": name, "namespace": namespace}}
            obj["spec"] = {**(obj.get("spec") or {}), **spec}
            self.objects[path] = self._bump(obj)


class FakeClient:
    def __init__(self, server: FakeLeaseServer, namespace: str = "kee") -> None:
        self.server = server
        self.namespace = namespace
        self.down = False              # raise Unreachable
        self.hang = threading.Event()  # when set, requests block until it is cleared... or forever
        self.release_hang = threading.Event()
        self.calls: list[tuple[str, str]] = []

    def own_namespace(self) -> str:
        return self.namespace

    def request(self, method: str, path: str, *, query=None, body=None, timeout: float = 30.0,
                content_type: str = "application/json") -> dict[str, Any]:
        self.calls.append((method, path))
        if self.hang.is_set():
            self.release_hang.wait(60)
        if self.down:
            raise Unreachable(f"{method} {path}: connection refused")
        return self.server.handle(method, path, body)
