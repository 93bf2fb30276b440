"""Create real Event objects through both APIs (as controllers and kubelets do)."""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime


def now(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


def core_event(ns: str, name: str | None = None, *, reason: str = "KeeTest", message: str = "core event",
               etype: str = "Warning", obj_name: str = "web-1") -> dict:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name or f"kee-core-{uuid.uuid4().hex[:10]}", "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": obj_name, "namespace": ns, "uid": str(uuid.uuid4()),
                               "apiVersion": "v1", "fieldPath": "spec.containers{web}"},
            "reason": reason, "message": message, "type": etype,
            "source": {"component": "kee-test", "host": "node-a"},
            "firstTimestamp": now(), "lastTimestamp": now(), "count": 1}


def v1_event(ns: str, name: str | None = None, *, reason: str = "KeeTest", note: str = "events.k8s.io event",
             etype: str = "Normal", obj_name: str = "web-2") -> dict:
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name or f"kee-v1-{uuid.uuid4().hex[:10]}", "namespace": ns},
            "eventTime": now(micro=True), "reportingController": "example.com/kee-test",
            "reportingInstance": "kee-test-1", "action": "Testing", "reason": reason, "note": note, "type": etype,
            "regarding": {"kind": "Pod", "name": obj_name, "namespace": ns, "uid": str(uuid.uuid4()),
                          "apiVersion": "v1"}}


def create(cp, body: dict) -> dict:
    ns = body["metadata"]["namespace"]
    path = (f"/api/v1/namespaces/{ns}/events" if body["apiVersion"] == "v1"
            else f"/apis/events.k8s.io/v1/namespaces/{ns}/events")
    for _attempt in range(150):  # ~30 s: an apiserver restart takes ~7 s
        try:
            status, raw = cp.request("POST", path, body)
        except OSError:  # connection refused/reset while the apiserver restarts (URLError is an OSError)
            time.sleep(0.2)
            continue
        if status == 201:
            return json.loads(raw)
        if status >= 500 or status == 429 or status == 0:  # apiserver restarting
            time.sleep(0.2)
            continue
        raise AssertionError(f"create event: {status} {raw[:300]!r}")
    raise AssertionError(f"create event: apiserver kept answering {status}")


def bump_core_count(cp, ns: str, name: str, count: int) -> dict:
    try:
        status, raw = cp.request("PATCH", f"/api/v1/namespaces/{ns}/events/{name}",
                                 json.dumps({"count": count, "lastTimestamp": now()}).encode(),
                                 content_type="application/merge-patch+json")
    except OSError as exc:  # apiserver restarting
        raise AssertionError(f"bump {name}: {exc}") from exc
    assert status == 200, raw[:300]
    return json.loads(raw)


class Producer:
    """A steady stream of real Events created through the API (both APIs, alternating)."""

    def __init__(self, cp, ns: str, rate: float) -> None:
        self.cp, self.ns, self.rate = cp, ns, rate
        self.created: list[dict] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            body = core_event(self.ns, message=f"n{i}") if i % 2 else v1_event(self.ns, note=f"n{i}")
            self.created.append(create(self.cp, body))
            i += 1
            self._stop.wait(1 / self.rate)

    def made(self) -> set[tuple[str, str]]:
        """(uid, resourceVersion) of every Event created so far."""
        return {(m["metadata"]["uid"], m["metadata"]["resourceVersion"]) for m in list(self.created)}

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(30)
