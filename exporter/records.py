"""Where a record is born: one Event object (either API shape) -> one record.

The record is the contract downstream SIEM queries rely on; its JSON Schema is
schemas/record.v1.schema.json and docs/records.md explains every field. Both
events.k8s.io/v1 and core/v1 serve the same stored Events with different field
names; this module is the only place that knows both spellings.

Hot path: reads the partially decoded wire struct (exporter/wire.py), builds
one new dict, and never touches managedFields (it is not even decoded).
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from exporter.wire import Event, Meta, Source

SCHEMA_VERSION = "1"

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
    raw = message.encode()
    if len(raw) <= limit:
        return message, False
    keep = max(0, limit - len(TRUNCATION_MARKER))
    return raw[:keep].decode("utf-8", "ignore") + TRUNCATION_MARKER, True


def _obj_ref(ref) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {
        "kind": ref.kind,
        "name": ref.name,
        "namespace": ref.namespace,
        "uid": ref.uid,
        "api_version": ref.apiVersion,
        "resource_version": ref.resourceVersion,
        "field_path": ref.fieldPath,
    }


_NO_META = Meta()
_NO_SOURCE = Source()


def normalise(ev: Event, update: bool, *, cluster: str | None, max_message_bytes: int,
              observed: str | None = None) -> dict[str, Any]:
    """Build the record for one Event (exporter.wire.Event) as a watch delivered it.

    ``update`` is True for MODIFIED (a recurring event seen again, or any change
    to an existing Event), False for ADDED / initial list items.
    The API shape is told apart by apiVersion; missing fields and nulls yield
    nulls, never a crash (odd types were nulled by exporter.wire).
    """
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
        occurred = series.lastObservedTime or last or event_time or first or created
    else:
        occurred = last or event_time or first or created
    if count is None or count < 1:
        count = 1
    truncated = False
    if type(message) is str:
        if len(message) > max_message_bytes >> 2:
            message, truncated = truncate_message(message, max_message_bytes)
    elif message is not None:
        message = orjson.dumps(message).decode() if isinstance(message, (dict, list)) else str(message)
    etype = ev.type
    uid = md.uid
    rv = md.resourceVersion
    related = ev.related
    return {
        "schema_version": SCHEMA_VERSION,
        "id": "%s:%s" % (uid, rv),
        "cluster": cluster,
        "timestamp": occurred,
        "first_timestamp": first or event_time or created,
        "observed_timestamp": observed or clock.now(),
        "type": etype,
        "severity": SEVERITY.get(etype.lower(), "UNSPECIFIED") if etype else "UNSPECIFIED",
        "reason": ev.reason,
        "action": ev.action,
        "message": message,
        "message_truncated": truncated,
        "count": count,
        "update": update,
        "object": _obj_ref(regarding),
        "related": _obj_ref(related) if related is not None else None,
        "source_component": src.component or controller,
        "source_host": src.host,
        "reporting_controller": controller,
        "reporting_instance": ev.reportingInstance,
        "event": {
            "name": md.name,
            "namespace": md.namespace,
            "uid": uid,
            "resource_version": rv,
            "api_version": api,
            "creation_timestamp": created,
        },
    }
