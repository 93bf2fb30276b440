"""Where a record is born: one Event object (either API shape) -> one record.

The record is the contract downstream SIEM queries rely on; its JSON Schema is
schemas/record.v1.schema.json and docs/records.md explains every field. Both
events.k8s.io/v1 and core/v1 serve the same stored Events with different field
names; this module is the only place that knows both spellings.

Hot path: works on the raw dict from orjson, builds one new dict, copies no
more than it keeps, and never touches managedFields.
"""
from __future__ import annotations

import time
from typing import Any

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


def _obj_ref(ref: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ref:
        return None
    return {
        "kind": ref.get("kind"),
        "name": ref.get("name"),
        "namespace": ref.get("namespace"),
        "uid": ref.get("uid"),
        "api_version": ref.get("apiVersion"),
        "resource_version": ref.get("resourceVersion"),
        "field_path": ref.get("fieldPath"),
    }


def normalise(obj: dict[str, Any], update: bool, *, cluster: str | None,
              max_message_bytes: int, observed: str | None = None) -> dict[str, Any]:
    """Build the record for one Event object as a watch delivered it.

    ``update`` is True for MODIFIED (a recurring event seen again, or any change
    to an existing Event), False for ADDED / initial list items.
    The API shape is told apart by apiVersion; anything unexpected (missing
    fields, nulls, wrong types in optional places) yields nulls, never a crash.
    """
    md = obj.get("metadata") or {}
    series = obj.get("series") or None
    if obj.get("apiVersion") == "events.k8s.io/v1":
        api = "events.k8s.io/v1"
        message = obj.get("note")
        regarding = obj.get("regarding")
        src = obj.get("deprecatedSource") or {}
        first = obj.get("deprecatedFirstTimestamp")
        last = obj.get("deprecatedLastTimestamp")
        count = obj.get("deprecatedCount")
        controller = obj.get("reportingController")
    else:
        api = "v1"
        message = obj.get("message")
        regarding = obj.get("involvedObject")
        src = obj.get("source") or {}
        first = obj.get("firstTimestamp")
        last = obj.get("lastTimestamp")
        count = obj.get("count")
        controller = obj.get("reportingComponent")
    event_time = obj.get("eventTime")
    created = md.get("creationTimestamp")
    if series:
        count = series.get("count") or count
        occurred = series.get("lastObservedTime") or last or event_time or first or created
    else:
        occurred = last or event_time or first or created
    if type(count) is not int or count < 1:
        count = 1
    truncated = False
    if type(message) is str:
        if len(message) > max_message_bytes // 4:
            message, truncated = truncate_message(message, max_message_bytes)
    elif message is not None:
        message = str(message)
    etype = obj.get("type")
    uid = md.get("uid")
    rv = md.get("resourceVersion")
    related = obj.get("related")
    return {
        "schema_version": SCHEMA_VERSION,
        "id": "%s:%s" % (uid, rv),
        "cluster": cluster,
        "timestamp": occurred,
        "first_timestamp": first or event_time or created,
        "observed_timestamp": observed or clock.now(),
        "type": etype,
        "severity": SEVERITY.get(etype.lower(), "UNSPECIFIED") if type(etype) is str else "UNSPECIFIED",
        "reason": obj.get("reason"),
        "action": obj.get("action"),
        "message": message,
        "message_truncated": truncated,
        "count": count,
        "update": update,
        "object": _obj_ref(regarding),
        "related": _obj_ref(related) if related else None,
        "source_component": src.get("component") or controller,
        "source_host": src.get("host"),
        "reporting_controller": controller,
        "reporting_instance": obj.get("reportingInstance"),
        "event": {
            "name": md.get("name"),
            "namespace": md.get("namespace"),
            "uid": uid,
            "resource_version": rv,
            "api_version": api,
            "creation_timestamp": created,
        },
    }
