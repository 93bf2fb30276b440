"""Where a record is born: one Event object (either API shape) -> one record.

The record is the contract downstream SIEM queries rely on; its JSON Schema is
schemas/record.v1.schema.json and docs/records.md explains every field. Both
events.k8s.io/v1 and core/v1 serve the same stored Events with different field
names; this module is the only place that knows both spellings.

Hot path: reads the partially decoded wire struct (exporter/wire.py), builds
one new dict, and never touches managedFields (it is not even decoded).

The record never carries an impossible value (docs/records.md, "Input"): every
time is UTC RFC 3339 with ``Z`` or null (a time already in that form is checked
once and remembered, so the common case costs a dict lookup), the count is
within Elasticsearch's ``long``, the id is never built from a missing value, and
:func:`bound` keeps every string and the whole encoded record within limits.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

from exporter import wire
from exporter.wire import (
    LONG_MAX,
    Event,
    Meta,
    Record,
    RecordEvent,
    RecordRef,
    Ref,
    Source,
    fingerprint,
    free_text,
    record_dict,
)

SCHEMA_VERSION = "1"

#: UTF-8 bytes of any string but the message: 4x the longest value Kubernetes itself accepts in
#: these fields (a DNS subdomain name, 253), so only garbage is ever cut.
FIELD_MAX_BYTES = 1024
#: UTF-8 bytes of an invalid time kept as sent in ``invalid_timestamps``.
RAW_TIME_MAX_BYTES = 128
#: The smallest records.max_record_bytes allowed: every field cut to its marker fits well below it.
MIN_RECORD_BYTES = 16384

#: Event type -> severity, as the OpenTelemetry Collector's k8s_events receiver maps it.
SEVERITY = {"normal": "INFO", "warning": "WARN", "error": "ERROR", "critical": "FATAL"}
SEVERITY_NUMBER = {"INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21, "UNSPECIFIED": 0}

TRUNCATION_MARKER = "...[truncated by kube-event-exporter]"


class _Clock:
    """RFC 3339 'now' with microseconds, formatting the seconds part once a second."""

    __slots__ = ("_sec", "_prefix")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def now(self) -> str:
        t = time.time()
        sec = int(t)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return "%s.%06dZ" % (self._prefix, int((t - sec) * 1e6))


clock = _Clock()


def truncate_message(message: str, limit: int) -> tuple[str, bool]:
    """Cut message to at most ``limit`` UTF-8 bytes (marker included), on a character boundary."""
    if len(message) * 4 <= limit:  # cannot exceed: 4 bytes per character at most
        return message, False
    raw = message.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return message, False
    keep = max(0, limit - len(TRUNCATION_MARKER))
    return raw[:keep].decode("utf-8", "ignore") + TRUNCATION_MARKER, True


# --- times --------------------------------------------------------------------------------

_RFC3339 = r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:[Zz]|([+-])(\d\d):(\d\d))"
_fromisoformat = datetime.fromisoformat
#: Characters 4, 7, 10, 13, 16 and 19 of a canonical time: "2026-11-29T10:00:00Z" or "...00.5Z".
_SEPARATORS = ("--T::Z", "--T::.")
_seen: dict[str, str] = {}  # time as sent -> canonical form, or "" when invalid (short strings only)
_seen_get = _seen.get


def utc(s: str) -> str | None:
    """``s`` as UTC RFC 3339 with ``Z`` (sub-second digits kept, at most 9), or None when it is not a time.

    Accepted: RFC 3339 (``T``, ``t`` or a space between date and time; ``Z`` or a
    ``+hh:mm`` offset, converted). Refused (None): no offset (the zone is unknown),
    impossible dates or times (month 13, Feb 30, second 60), epoch numbers, words.
    """
    c = _seen_get(s)
    if c is None:
        if len(s) > 40:
            return None  # longer than any RFC 3339 time with 9 sub-second digits and an offset
        if s[4:20:3] in _SEPARATORS and s[-1:] == "Z" and len(s) < 31 and len(s) != 21:
            # Already UTC with Z (nearly always): the shape is right, the C parser checks digits and ranges.
            try:
                _fromisoformat(s)
                c = s
            except ValueError:
                c = ""
        else:
            c = _canonical(s)
        if len(_seen) >= 4096:
            _seen.clear()
        _seen[s] = c
    return c or None


def _canonical(s: str) -> str:
    if s[4:20:3] in _SEPARATORS and s[-1:] == "Z" and len(s) < 31 and len(s) != 21:
        # Already UTC with Z (nearly always): the shape is right, the C parser checks digits and ranges.
        try:
            _fromisoformat(s)
        except ValueError:
            return ""
        return s
    m = re.fullmatch(_RFC3339, s, re.ASCII)  # rare (times not already canonical): compiled on first use
    if m is None:
        return ""
    y, mo, d, h, mi, sec, frac, sign, oh, om = m.groups()
    try:
        t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec))
        if sign is not None:
            if int(oh) > 23 or int(om) > 59:
                return ""
            off = timedelta(hours=int(oh), minutes=int(om))
            t = t - off if sign == "+" else t + off
    except (ValueError, OverflowError):
        return ""
    return "%04d-%02d-%02dT%02d:%02d:%02d%sZ" % (t.year, t.month, t.day, t.hour, t.minute, t.second,
                                                 (frac or "")[:10])


def _first_time(candidates: tuple[str | None, ...], field: str, bad: dict[str, str]) -> str | None:
    """The first candidate that is a valid time; invalid ones seen before it are kept in ``bad``."""
    for c in candidates:
        if c:
            t = utc(c)
            if t is not None:
                return t
            bad.setdefault(field, truncate_message(c, RAW_TIME_MAX_BYTES)[0])
    return None


def _obj_ref(ref: Ref | None) -> RecordRef | None:
    if ref is None:
        return None
    return RecordRef(ref.kind, ref.name, ref.namespace, ref.uid, ref.apiVersion, ref.resourceVersion, ref.fieldPath)


_NO_META = Meta()
_NO_SOURCE = Source()
#: Event type -> severity for the spellings Kubernetes uses (the general rule: SEVERITY by lower case).
_SEVERITY_OF = {**{k.capitalize(): v for k, v in SEVERITY.items()}, **SEVERITY}


def normalise(ev: Event, update: bool, *, cluster: str | None, max_message_bytes: int,
              observed: str | None = None) -> dict[str, Any]:
    """Build the record for one Event (exporter.wire.Event) as a watch delivered it, as a dict.

    ``update`` is True for MODIFIED (a recurring event seen again, or any change
    to an existing Event), False for ADDED / initial list items.
    The API shape is told apart by apiVersion; missing fields and nulls yield
    nulls, never a crash (odd types were nulled by exporter.wire).
    """
    return record_dict(record(ev, update, cluster, max_message_bytes, observed))


def record(ev: Event, update: bool, cluster: str | None, max_message_bytes: int,
           observed: str | None = None) -> Record:
    """:func:`normalise` as a struct (exporter.wire.Record): the pipeline's hot path encodes it without a dict."""
    md = ev.metadata or _NO_META
    series = ev.series
    if ev.apiVersion == "events.k8s.io/v1":
        api = "events.k8s.io/v1"
        message = ev.note
        regarding = ev.regarding
        src = ev.deprecatedSource or _NO_SOURCE
        first = ev.deprecatedFirstTimestamp
        last = ev.deprecatedLastTimestamp
        count = ev.deprecatedCount
        controller = ev.reportingController
    else:
        api = "v1"
        message = ev.message
        regarding = ev.involvedObject
        src = ev.source or _NO_SOURCE
        first = ev.firstTimestamp
        last = ev.lastTimestamp
        count = ev.count
        controller = ev.reportingComponent
    event_time = ev.eventTime
    created = md.creationTimestamp
    if series is not None:
        count = series.count or count
        observed_last = series.lastObservedTime
    else:
        observed_last = None
    # Each time is the first candidate present; one that is not a valid time gives way to the next.
    occurred = observed_last or last or event_time or first or created
    bad: dict[str, str] | None = None
    if occurred is not None:
        ts = _seen_get(occurred) or utc(occurred)  # the cache inline: most times were seen already
        if ts is None:
            bad = {}
            ts = _first_time((observed_last, last, event_time, first, created), "timestamp", bad)
    else:
        ts = None
    first_seen = first or event_time or created
    if first_seen is None:
        first_ts = None
    elif first_seen == occurred:
        first_ts = ts if bad is None else _seen_get(first_seen) or utc(first_seen)
        if first_ts is None:
            bad = {} if bad is None else bad
            first_ts = _first_time((first, event_time, created), "first_timestamp", bad)
    else:
        first_ts = _seen_get(first_seen) or utc(first_seen)
        if first_ts is None:
            bad = {} if bad is None else bad
            first_ts = _first_time((first, event_time, created), "first_timestamp", bad)
    if created is None:
        created_ts = None
    elif created == occurred and bad is None:
        created_ts = ts  # the same text, already found valid
    else:
        created_ts = _seen_get(created) or utc(created)
        if created_ts is None:
            bad = {} if bad is None else bad
            bad["creation_timestamp"] = truncate_message(created, RAW_TIME_MAX_BYTES)[0]
    if count is None or count < 1:
        count = 1
    elif count > LONG_MAX:
        count = LONG_MAX
    truncated = False
    if message is not None:
        if type(message) is not str:
            message = free_text(message)  # a number, or JSON structure: as its JSON text
        if message is not None and len(message) > max_message_bytes >> 2:
            message, truncated = truncate_message(message, max_message_bytes)
    etype = ev.type
    uid = md.uid
    rv = md.resourceVersion
    related = ev.related
    if uid and rv and len(uid) + len(rv) < 256:
        rid = uid + ":" + rv
    else:  # never "None:None": a digest of what the Event does carry (docs/records.md, "Identity")
        rid = "hash:" + fingerprint(ev)
    if etype:
        severity = _SEVERITY_OF.get(etype) or SEVERITY.get(etype.lower(), "UNSPECIFIED")
    else:
        severity = "UNSPECIFIED"
    return Record(
        SCHEMA_VERSION, rid, cluster, ts, first_ts, observed or clock.now(), etype, severity, ev.reason, ev.action,
        message, truncated, count, update,
        None if regarding is None else RecordRef(regarding.kind, regarding.name, regarding.namespace, regarding.uid,
                                                 regarding.apiVersion, regarding.resourceVersion, regarding.fieldPath),
        None if related is None else _obj_ref(related),
        src.component or controller, src.host, controller, ev.reportingInstance,
        RecordEvent(md.name, md.namespace, uid, rv, api, created_ts),
        bad or None)


# --- bounds -------------------------------------------------------------------------------

_TOP = ("cluster", "type", "reason", "action", "source_component", "source_host", "reporting_controller",
        "reporting_instance")
_REF = ("kind", "name", "namespace", "uid", "api_version", "resource_version", "field_path")
_EVENT = ("name", "namespace", "uid", "resource_version")


def _slots(rec: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every bounded string of a record but the message: (the dict holding it, its key)."""
    out = [(rec, k) for k in _TOP]
    for ref in (rec["object"], rec["related"]):
        if ref is not None:
            out.extend((ref, k) for k in _REF)
    ev = rec["event"]
    out.extend((ev, k) for k in _EVENT)
    return out


def _skeleton_bytes() -> int:
    """Encoded size of the smallest record around its strings: each string empty, no object refs.

    A record whose encoded size minus its message's length is at most this plus
    FIELD_MAX_BYTES cannot hold a string over FIELD_MAX_BYTES: the hot path's check.
    """
    rec = normalise(Event(metadata=Meta(uid="u", resourceVersion="1")), False, cluster="",
                    max_message_bytes=0, observed="")
    for d, k in _slots(rec):
        d[k] = ""
    rec["id"] = rec["observed_timestamp"] = rec["message"] = ""
    rec["timestamp"] = rec["first_timestamp"] = rec["event"]["creation_timestamp"] = None
    rec.update(severity="INFO", update=True, message_truncated=True)  # the shortest each can be
    return len(wire.dumps(rec, option=wire.OPT_APPEND_NEWLINE))


def within_field_bounds(line_len: int, message: str | None) -> bool:
    """Cheap proof that no string but the message exceeds FIELD_MAX_BYTES (False: check them).

    The pipeline inlines it with FAST_LIMIT (a call costs more than the test).
    """
    return line_len - (len(message) if message else 0) <= FAST_LIMIT


def bound(rec: dict[str, Any], line: bytes, max_record_bytes: int) -> tuple[bytes, int]:
    """Cut strings with the marker until each is within FIELD_MAX_BYTES and the line within max_record_bytes.

    Returns the (re-)encoded line and how many strings were cut. Nothing is
    dropped: the longest string gives up what is over, until the record fits
    (it always can: every string cut to its marker fits in MIN_RECORD_BYTES).
    """
    cut = 0
    for d, k in _slots(rec):
        v = d[k]
        if v is not None and len(v) * 4 > FIELD_MAX_BYTES:
            nv, t = truncate_message(v, FIELD_MAX_BYTES)
            if t:
                d[k] = nv
                cut += 1
    if cut:
        line = wire.dumps(rec, option=wire.OPT_APPEND_NEWLINE)
    for _ in range(1000):
        over = len(line) - max_record_bytes
        if over <= 0:
            break
        slots = _slots(rec)
        slots.append((rec, "message"))
        sizes = [(len(wire.dumps(d[k])) if d[k] is not None else 0, i) for i, (d, k) in enumerate(slots)]
        size, i = max(sizes)
        d, k = slots[i]
        v = d[k]
        raw_len = len(v.encode("utf-8", "surrogatepass"))
        target = max(0, raw_len * (size - over - 2) // size - 1)
        d[k] = truncate_message(v, target)[0]
        if k == "message" and d is rec:
            rec["message_truncated"] = True
        cut += 1
        line = wire.dumps(rec, option=wire.OPT_APPEND_NEWLINE)
    return line, cut


FAST_LIMIT = _skeleton_bytes() + FIELD_MAX_BYTES
