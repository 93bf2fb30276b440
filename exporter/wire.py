"""The Event as it comes off the wire: typed, partial decoding of watch envelopes and LIST bodies.

msgspec decodes only the fields a record needs straight into slotted structs,
skipping managedFields and everything else without building it: about half
the CPU of a full orjson.loads of the same line, measured on gen_stream.py
output (docs/BENCHMARKS.md). Both API shapes share one struct (their field
names do not collide). This module is the only importer of msgspec.

Odd data never crashes: a value of an unexpected type (a string count, a
number as a message) fails typed decoding, and :func:`lenient` then decodes the
line generically, drops each offending value (it becomes null) and converts.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import msgspec
import orjson

Str = Optional[str]


class Ref(msgspec.Struct, gc=False):
    kind: Str = None
    name: Str = None
    namespace: Str = None
    uid: Str = None
    apiVersion: Str = None
    resourceVersion: Str = None
    fieldPath: Str = None


class Meta(msgspec.Struct, gc=False):
    name: Str = None
    namespace: Str = None
    uid: Str = None
    resourceVersion: Str = None
    creationTimestamp: Str = None
    annotations: Optional[dict[str, Any]] = None


class Source(msgspec.Struct, gc=False):
    component: Str = None
    host: Str = None


class Series(msgspec.Struct, gc=False):
    count: Optional[int] = None
    lastObservedTime: Str = None


class Details(msgspec.Struct, gc=False):
    retryAfterSeconds: Optional[int] = None


class Event(msgspec.Struct, gc=False):
    """An Event in either shape (events.k8s.io/v1 or core/v1); also a BOOKMARK's or ERROR's object."""
    apiVersion: Str = None
    kind: Str = None
    metadata: Optional[Meta] = None
    type: Str = None
    reason: Str = None
    action: Str = None
    note: Any = None                      # events.k8s.io/v1 (Any: an odd non-string is kept, as text)
    message: Any = None                   # core/v1 (and a Status' message)
    regarding: Optional[Ref] = None       # events.k8s.io/v1
    involvedObject: Optional[Ref] = None  # core/v1
    related: Optional[Ref] = None
    source: Optional[Source] = None       # core/v1
    deprecatedSource: Optional[Source] = None
    firstTimestamp: Str = None
    lastTimestamp: Str = None
    deprecatedFirstTimestamp: Str = None
    deprecatedLastTimestamp: Str = None
    eventTime: Str = None
    count: Optional[int] = None
    deprecatedCount: Optional[int] = None
    series: Optional[Series] = None
    reportingController: Str = None       # events.k8s.io/v1
    reportingComponent: Str = None        # core/v1 JSON key of the same field
    reportingInstance: Str = None
    code: Optional[int] = None            # Status (an in-stream ERROR)
    details: Optional[Details] = None


class Envelope(msgspec.Struct, gc=False):
    type: str
    object: Event


# --- Pods, for the pod_terminations source (exporter/sources/pods.py) -------------
# Only what a termination record needs: a Pod is 5-20 KB on the wire and most of it
# (managedFields, env, volumes, probes, conditions) is skipped, never built.

class PodRunning(msgspec.Struct, gc=False):
    startedAt: str | None = None


class PodWaiting(msgspec.Struct, gc=False):
    reason: str | None = None


class PodTerminated(msgspec.Struct, gc=False):
    exitCode: int | None = None
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    containerID: str | None = None


class PodContainerState(msgspec.Struct, gc=False):
    running: PodRunning | None = None
    waiting: PodWaiting | None = None
    terminated: PodTerminated | None = None


class PodContainerStatus(msgspec.Struct, gc=False):
    name: str | None = None
    restartCount: int | None = None
    state: PodContainerState | None = None
    lastState: PodContainerState | None = None


class PodStatus(msgspec.Struct, gc=False):
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    startTime: str | None = None
    containerStatuses: list[PodContainerStatus] | None = None
    initContainerStatuses: list[PodContainerStatus] | None = None


class PodResources(msgspec.Struct, gc=False):
    limits: dict[str, Any] | None = None


class PodContainer(msgspec.Struct, gc=False):
    name: str | None = None
    restartPolicy: str | None = None             # init containers: "Always" makes a sidecar
    resources: PodResources | None = None


class PodSpec(msgspec.Struct, gc=False):
    nodeName: str | None = None
    restartPolicy: str | None = None
    containers: list[PodContainer] | None = None
    initContainers: list[PodContainer] | None = None


class PodMeta(msgspec.Struct, gc=False):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    deletionTimestamp: str | None = None


class Pod(msgspec.Struct, gc=False):
    """A Pod as far as termination records go; also a BOOKMARK's object (metadata only)."""
    metadata: PodMeta | None = None
    spec: PodSpec | None = None
    status: PodStatus | None = None


class PodEnvelope(msgspec.Struct, gc=False):
    type: str
    object: Pod


class WatchStatus(msgspec.Struct, gc=False):
    """An in-stream ERROR's object (a Status: its "status" is a string, so it is not a Pod)."""
    code: int | None = None
    reason: str | None = None
    message: str | None = None
    details: Details | None = None


class StatusEnvelope(msgspec.Struct, gc=False):
    type: str
    object: WatchStatus


class PodList(msgspec.Struct, gc=False):
    metadata: ListMeta = msgspec.field(default_factory=lambda: ListMeta())
    items: list[Pod] = msgspec.field(default_factory=list)


_pod_decoders: dict[type, Any] = {}


def pods(raw: bytes, typ: type = PodEnvelope) -> Any:
    """Typed partial decode of a Pod watch line (PodEnvelope), a Pod LIST body (PodList) or an
    in-stream ERROR (StatusEnvelope). Raises msgspec's DecodeError / ValidationError."""
    dec = _pod_decoders.get(typ)
    if dec is None:
        dec = _pod_decoders[typ] = msgspec.json.Decoder(typ)
    return dec.decode(raw)


class ListMeta(msgspec.Struct, gc=False):
    resourceVersion: Str = None
    # "continue" is a Python keyword: renamed on the wire.
    continue_: Str = msgspec.field(default=None, name="continue")


class EventList(msgspec.Struct, gc=False):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Event] = msgspec.field(default_factory=list)


DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
_envelope = msgspec.json.Decoder(Envelope)
_list = msgspec.json.Decoder(EventList)
_PATH = re.compile(r"- at `\$(.*)`$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def envelope(line: bytes) -> Envelope:
    """Typed decode of one watch line; raises DecodeError (not JSON) or ValidationError (odd types)."""
    return _envelope.decode(line)


def event_list(body: bytes) -> EventList:
    try:
        return _list.decode(body)
    except ValidationError:
        return lenient(body, EventList)


def event(obj: dict[str, Any]) -> Event:
    """An Event from an already-decoded dict (tests, kubectl pretty-printed input)."""
    return lenient(orjson.dumps(obj), Event)


def lenient(raw: bytes, typ: type, max_fixes: int = 50):
    """Decode generically, null out every value msgspec refuses, then convert.

    Raises DecodeError when raw is not JSON, ValidationError when the top level
    itself is not the expected shape.
    """
    doc = orjson.loads(raw) if isinstance(raw, (bytes, str)) else raw
    for _ in range(max_fixes):
        try:
            return msgspec.convert(doc, typ)
        except ValidationError as exc:
            m = _PATH.search(str(exc))
            if not m or not m.group(1):
                raise
            steps = [(a, int(b) if b else None) for a, b in _STEP.findall(m.group(1))]
            parent = doc
            for key, idx in steps[:-1]:
                parent = parent[key] if key else parent[idx]
            key, idx = steps[-1]
            if key:
                parent[key] = None
            else:
                parent[idx] = None
    raise ValidationError("too many values of unexpected types")
