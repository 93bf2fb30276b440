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
