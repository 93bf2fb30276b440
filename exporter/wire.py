"""The Event as it comes off the wire: typed, partial decoding of watch envelopes and LIST bodies.

msgspec decodes only the fields a record needs straight into slotted structs,
skipping managedFields and everything else without building it: about half
the CPU of a full orjson.loads of the same line, measured on a realistic
watch stream (docs/BENCHMARKS.md). Both API shapes share one struct (their
field names do not collide). This module is the only importer of msgspec, and
of orjson: every other module reads and writes JSON through :data:`dumps` and
:data:`loads` below (the same functions, one boundary to change).

:func:`decode_line` is the one way a watch line (live or replayed) becomes an
envelope; the rule it applies is written in docs/records.md ("Input"). Odd
data never crashes: a value of an unexpected type (a string count, a number as
a reason, a count beyond 64 bits, JSON nested too deep for the typed decoder)
sends the line to :func:`salvage`, which decodes it generically, keeps only
the fields a record reads, nulls each value of the wrong type (saying which)
and converts; a line that still cannot be an Event envelope raises
:class:`BadInput` with a short kind for the metric and a detail for the log.
"""
from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
import orjson

Str = str | None

#: JSON in and out, for every module (orjson is imported here only): bytes <-> plain values.
dumps = orjson.dumps
loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError
JSONEncodeError = orjson.JSONEncodeError
OPT_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
OPT_INDENT_2 = orjson.OPT_INDENT_2

#: Elasticsearch's ``long`` (and Java's, and orjson's signed range): integers outside it are clamped.
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
#: Deepest JSON value kept in a free-form field (message/note): deeper ones are nulled, not crashed on.
MAX_ANY_DEPTH = 64


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
    annotations: dict[str, Str] | None = None


class Source(msgspec.Struct, gc=False):
    component: Str = None
    host: Str = None


class Series(msgspec.Struct, gc=False):
    count: int | None = None
    lastObservedTime: Str = None


class Details(msgspec.Struct, gc=False):
    retryAfterSeconds: int | None = None


class Event(msgspec.Struct, gc=False):
    """An Event in either shape (events.k8s.io/v1 or core/v1); also a BOOKMARK's or ERROR's object."""
    apiVersion: Str = None
    kind: Str = None
    metadata: Meta | None = None
    type: Str = None
    reason: Str = None
    action: Str = None
    note: Any = None                      # events.k8s.io/v1 (Any: an odd non-string is kept, as text)
    message: Any = None                   # core/v1 (and a Status' message)
    regarding: Ref | None = None       # events.k8s.io/v1
    involvedObject: Ref | None = None  # core/v1
    related: Ref | None = None
    source: Source | None = None       # core/v1
    deprecatedSource: Source | None = None
    firstTimestamp: Str = None
    lastTimestamp: Str = None
    deprecatedFirstTimestamp: Str = None
    deprecatedLastTimestamp: Str = None
    eventTime: Str = None
    count: int | None = None
    deprecatedCount: int | None = None
    series: Series | None = None
    reportingController: Str = None       # events.k8s.io/v1
    reportingComponent: Str = None        # core/v1 JSON key of the same field
    reportingInstance: Str = None
    code: int | None = None            # Status (an in-stream ERROR)
    details: Details | None = None


class Envelope(msgspec.Struct, gc=False):
    type: str
    object: Event


# --- the record, as exporter/records.py builds it (schemas/record.v1.schema.json) ---------
# Field order is the record's key order. One msgspec encode of these structs writes the
# same bytes as orjson.dumps of the record as a dict (the pipeline's fast path; checked by
# tests/unit/test_records_struct_encoding.py), at about half the CPU of building the dict.

class RecordRef(msgspec.Struct, gc=False):
    kind: Str
    name: Str
    namespace: Str
    uid: Str
    api_version: Str
    resource_version: Str
    field_path: Str


class RecordEvent(msgspec.Struct, gc=False):
    name: Str
    namespace: Str
    uid: Str
    resource_version: Str
    api_version: str
    creation_timestamp: Str


class Record(msgspec.Struct, gc=False, omit_defaults=True):
    """One record; ``invalid_timestamps`` is left out of the JSON when None (the only field with a default)."""
    schema_version: str
    id: str
    cluster: Str
    timestamp: Str
    first_timestamp: Str
    observed_timestamp: str
    type: Str
    severity: str
    reason: Str
    action: Str
    message: Str
    message_truncated: bool
    count: int
    update: bool
    object: RecordRef | None
    related: RecordRef | None
    source_component: Str
    source_host: Str
    reporting_controller: Str
    reporting_instance: Str
    event: RecordEvent
    invalid_timestamps: dict[str, str] | None = None


_record_encoder = msgspec.json.Encoder()
#: A Record -> its JSON text, without a newline.
encode_record = _record_encoder.encode
_asdict = msgspec.structs.asdict


def record_dict(rec: Record) -> dict[str, Any]:
    """The record as the dict every consumer reads (filters, enrichment, sinks): the same keys, in order."""
    d = _asdict(rec)
    ref = d["object"]
    if ref is not None:
        d["object"] = _asdict(ref)
    ref = d["related"]
    if ref is not None:
        d["related"] = _asdict(ref)
    d["event"] = _asdict(d["event"])
    if d["invalid_timestamps"] is None:
        del d["invalid_timestamps"]
    return d


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
ValidationError = msgspec.ValidationError  # a subclass of DecodeError: catch it first
_envelope = msgspec.json.Decoder(Envelope)
_list = msgspec.json.Decoder(EventList)
_encode = msgspec.json.encode


def _finite(text: str) -> Any:
    """Untyped float literals in salvage: one beyond a double's range (1e400) becomes null, not an error."""
    f = float(text)
    return f if f - f == 0.0 else None


_generic = msgspec.json.Decoder(float_hook=_finite)


class BadInput(Exception):
    """A line or document that cannot become an Event envelope: ``kind`` for the metric, ``detail`` for the log."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


#: Nothing was repaired (the common case): the second item of decode_line's answer.
CLEAN: tuple[str, ...] = ()


def decode_line(line: bytes) -> tuple[Envelope, tuple[str, ...]]:
    """One watch line (or a whole pretty-printed document) -> (envelope, paths of values nulled).

    The rule (docs/records.md, "Input"): typed decode; on a value of the wrong
    type, or JSON too deep for it, :func:`salvage`. Raises BadInput when the
    text is not JSON, not an object, has no type or object, or when the object
    is not an Event (an ERROR's Status excepted). A bare Event (kubectl's
    ``-w -o json`` without ``--output-watch-events``) is taken as ADDED.
    """
    try:
        env = _envelope.decode(line)
    except ValidationError:  # before DecodeError, its base class: valid JSON, odd types
        return salvage(line)
    except DecodeError as exc:
        raise BadInput("not_json", str(exc)[:200]) from None
    except RecursionError:
        return salvage(line)
    obj = env.object
    kind = obj.kind
    if kind is not None and kind != "Event" and env.type != "ERROR":
        raise BadInput("not_an_event", f"an object of kind {kind[:60]!r}, not an Event")
    m = obj.message
    n = obj.note
    if (m is not None and type(m) is not str) or (n is not None and type(n) is not str):
        return salvage(line)  # a free-form value that is not text: bounded and checked there
    return env, CLEAN


def event_list(body: bytes) -> EventList:
    """A LIST response body; odd values are nulled (a body that is not a list at all raises BadInput)."""
    try:
        return _list.decode(body)
    except ValidationError:
        pass
    except DecodeError as exc:
        raise BadInput("not_json", str(exc)[:200]) from None
    except RecursionError:
        pass
    doc = _loads(body)
    if not isinstance(doc, dict):
        raise BadInput("not_an_object", f"a LIST body that is a JSON {type(doc).__name__}")
    nulled: list[str] = []
    return msgspec.convert(_clean(doc, _type_info(EventList), "$", nulled), EventList)


def event(obj: dict[str, Any]) -> Event:
    """An Event from an already-decoded dict (tests; values of the wrong type are nulled)."""
    nulled: list[str] = []
    return msgspec.convert(_clean(obj, _type_info(Event), "$", nulled), Event)


def fingerprint(ev: Event) -> str:
    """A stable 32-hex-digit digest of every field read from this Event (for an id when uid/RV are missing)."""
    import hashlib  # rare: not paid at every start (it loads OpenSSL)
    return hashlib.blake2b(_encode(ev), digest_size=16).hexdigest()


# --- the lenient path --------------------------------------------------------------------

def _loads(raw: bytes) -> Any:
    """Generic decode: msgspec (big integers kept), else orjson (deeper nesting); neither: BadInput."""
    try:
        return _generic.decode(raw)
    except ValidationError as exc:  # before DecodeError, its base class
        why = str(exc)
    except DecodeError as exc:
        raise BadInput("not_json", str(exc)[:200]) from None
    except RecursionError:
        why = "nested too deep"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"{why[:100]}; {str(exc)[:100]}") from None


def salvage(raw: bytes) -> tuple[Envelope, tuple[str, ...]]:
    """Decode generically, keep the fields a record reads, null each value of the wrong type, convert.

    Linear in the line: one generic decode, one walk over the kept fields (free-form
    values walked iteratively, to :data:`MAX_ANY_DEPTH`), one conversion.
    """
    doc = _loads(raw)
    if not isinstance(doc, dict):
        raise BadInput("not_an_object", f"a JSON {type(doc).__name__}, not a watch envelope")
    obj, etype = doc.get("object"), doc.get("type")
    if not isinstance(obj, dict):
        if doc.get("kind") == "Event" and isinstance(doc.get("metadata"), dict):
            obj, etype = doc, "ADDED"  # a bare Event, no watch envelope
        else:
            raise BadInput("no_object", "no 'object' in the envelope")
    if not isinstance(etype, str):
        raise BadInput("no_type", "no 'type' (a string) in the envelope")
    kind = obj.get("kind")
    if kind is not None and kind != "Event" and etype != "ERROR":
        shown = kind[:60] if isinstance(kind, str) else type(kind).__name__
        raise BadInput("not_an_event", f"an object of kind {shown!r}, not an Event")
    nulled: list[str] = []
    clean = _clean(obj, _type_info(Event), "$.object", nulled)
    try:
        ev = msgspec.convert(clean, Event)
    except (ValidationError, RecursionError) as exc:  # not expected after _clean; never a crash
        raise BadInput("unusable_object", str(exc)[:200]) from None
    return Envelope(type=etype, object=ev), tuple(nulled)


def free_text(value: Any) -> str | None:
    """A free-form JSON value (message/note that is not a string) as its JSON text; None if not representable.

    Not representable: nested deeper than MAX_ANY_DEPTH, or an integer outside the
    64-bit range anywhere in it (no consumer reads one back).
    """
    if not _depth_ok(value, MAX_ANY_DEPTH):
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return None


def _depth_ok(value: Any, limit: int) -> bool:
    """Whether a JSON value nests no deeper than ``limit`` (iterative: any input depth is safe)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return True


def _clean(value: Any, t: Any, path: str, nulled: list[str]) -> Any:
    """``value`` made to fit msgspec type info ``t``: unknown keys dropped, wrong types nulled (path noted)."""
    if value is None:
        return None
    if isinstance(t, msgspec.inspect.UnionType):  # X | None: X or None
        t = next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
    if isinstance(t, msgspec.inspect.StrType):
        if type(value) is str:
            return value
    elif isinstance(t, msgspec.inspect.IntType):
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is int:
            if value > LONG_MAX or value < LONG_MIN:
                nulled.append(path + " (clamped)")
                return LONG_MAX if value > 0 else LONG_MIN
            return value
    elif isinstance(t, msgspec.inspect.StructType):
        if type(value) is dict:
            out = {}
            for f in t.fields:
                v = value.get(f.encode_name)
                if v is not None:
                    out[f.encode_name] = _clean(v, f.type, f"{path}.{f.encode_name}", nulled)
            return out
    elif isinstance(t, msgspec.inspect.DictType):
        if type(value) is dict:
            return {k: _clean(v, t.value_type, f"{path}[{k[:40]!r}]", nulled) for k, v in value.items()}
    elif isinstance(t, msgspec.inspect.ListType):
        if type(value) is list:
            return [_clean(v, t.item_type, f"{path}[{i}]", nulled) for i, v in enumerate(value)]
    elif isinstance(t, msgspec.inspect.AnyType):  # free-form (message/note): kept as text
        if type(value) is str:
            return value
        text = free_text(value)
        if text is None:
            nulled.append(path + " (not representable: nested too deep or an integer out of range)")
        return text
    else:  # pragma: no cover - a type added to the structs above without a rule here
        raise TypeError(f"no salvage rule for {t!r}")
    nulled.append(path)
    return None


@cache
def _type_info(typ: type) -> Any:
    """msgspec's description of a struct, built on first use (the lenient path is rare; start-up stays short)."""
    return msgspec.inspect.type_info(typ)
