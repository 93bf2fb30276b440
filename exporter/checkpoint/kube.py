"""ConfigMap checkpoint store, for Deployments without a volume.

The document lives under data["checkpoint.json"] of a ConfigMap in the
exporter's own namespace. Updates carry the ConfigMap's resourceVersion
(optimistic concurrency): a 409 means another writer (a second replica without
leader election) changed it, which is logged and counted, then retried from the
fresh object.
"""
from __future__ import annotations

from typing import Any

from exporter import log
from exporter.checkpoint import decode, encode
from exporter.errors import ApiError
from exporter.kube.client import KubeClient

DATA_KEY = "checkpoint.json"


class ConfigMapStore:
    def __init__(self, client: KubeClient, namespace: str, name: str) -> None:
        self.client, self.namespace, self.name = client, namespace, name
        self.path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
        self._rv: str | None = None
        self._exists = False

    def load(self) -> dict[str, str]:
        try:
            cm = self.client.request("GET", self.path)
        except ApiError as exc:
            if exc.status == 404:
                return {}
            raise
        self._exists = True
        self._rv = (cm.get("metadata") or {}).get("resourceVersion")
        raw = (cm.get("data") or {}).get(DATA_KEY)
        return decode(raw, f"configmap {self.namespace}/{self.name}") if raw else {}

    def save(self, positions: dict[str, str]) -> None:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                    "labels": {"app.kubernetes.io/name": "kube-event-exporter",
                                               "app.kubernetes.io/component": "checkpoint"}}
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                "data": {DATA_KEY: encode(positions).decode()}}
        for _ in range(3):
            try:
                if not self._exists:
                    cm = self.client.request("POST", f"/api/v1/namespaces/{self.namespace}/configmaps", body=body)
                    self._exists = True
                else:
                    if self._rv:
                        metadata["resourceVersion"] = self._rv
                    cm = self.client.request("PUT", self.path, body=body)
                self._rv = cm["metadata"]["resourceVersion"]
                return
            except ApiError as exc:
                if exc.status == 409:  # conflict, or created meanwhile: refetch and retry
                    log.warning("checkpoint_conflict", configmap=f"{self.namespace}/{self.name}")
                    self._exists = True
                    try:
                        cur = self.client.request("GET", self.path)
                        self._rv = cur["metadata"]["resourceVersion"]
                    except ApiError as exc2:
                        if exc2.status == 404:
                            self._exists, self._rv = False, None
                            metadata.pop("resourceVersion", None)
                        else:
                            raise
                    continue
                if exc.status == 404 and self._exists:
                    self._exists, self._rv = False, None
                    metadata.pop("resourceVersion", None)
                    continue
                raise
        raise ApiError(409, f"configmap {self.namespace}/{self.name} kept changing under us (another writer?)")
