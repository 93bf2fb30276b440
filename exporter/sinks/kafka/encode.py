"""What a record becomes in Kafka besides its value: the topic (fixed or a template), the key, the headers.

Pure functions of the record and the settings; validated when built (ConfigError
naming the setting), so a bad template fails --check-config and the start.
"""
from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

from exporter.errors import ConfigError
from exporter.wire import Record, RecordEvent, RecordRef

#: The record's structs, whose attributes are the record's fields (exporter.wire).
_STRUCTS = (Record, RecordEvent, RecordRef)

#: Record fields a topic template may use: low-cardinality ones only (a topic per
#: object name or uid would create topics without bound).
TEMPLATE_FIELDS = ("type", "severity", "reason", "cluster", "action", "source_component",
                   "reporting_controller", "event.namespace", "event.api_version",
                   "object.kind", "object.namespace", "object.api_version")
_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_TOPIC_MAX = 249
#: What a null or empty field renders as: "_" is never a Kubernetes name or type.
MISSING = "_"


class TopicTemplate:
    """A fixed topic, or a template such as ``events.{event.namespace}`` / ``k8s.{type}``.

    Validated when built (ConfigError naming sinks.kafka.topic); rendering a
    record replaces characters Kafka does not allow in topic names with "_" and a
    null or empty field with "_".
    """

    __slots__ = ("source", "fixed", "_parts", "_cache")

    def __init__(self, template: str) -> None:
        self.source = template
        parts: list[tuple[str, tuple[str, ...] | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ConfigError("sinks.kafka.topic", f"bad topic template {template!r}: {exc}",
                              "use {field} placeholders, e.g. events.{event.namespace}") from exc
        for literal, name, spec, conv in parsed:
            if literal:
                if _TOPIC_CHARS.search(literal):
                    raise ConfigError("sinks.kafka.topic", f"{literal!r} has characters Kafka does not allow in a "
                                      "topic name", "use only letters, digits, '.', '_' and '-'")
                parts.append((literal, None))
            if name is None:
                continue
            if spec or conv:
                raise ConfigError("sinks.kafka.topic", f"placeholder {{{name}}} has a format spec or conversion",
                                  "write plain {field} placeholders")
            if name not in TEMPLATE_FIELDS:
                raise ConfigError("sinks.kafka.topic", f"unknown or unbounded record field {{{name}}} in the "
                                  "topic template", "use one of: " + ", ".join(TEMPLATE_FIELDS))
            parts.append(("", tuple(name.split("."))))
        if not parts:
            raise ConfigError("sinks.kafka.topic", "the topic is empty", "set a topic name, e.g. kube-events")
        self.fixed: str | None = None
        if all(path is None for _, path in parts):
            self.fixed = "".join(lit for lit, _ in parts)
            if len(self.fixed) > _TOPIC_MAX or self.fixed in (".", ".."):
                raise ConfigError("sinks.kafka.topic", f"{self.fixed!r} is not a valid topic name",
                                  f"at most {_TOPIC_MAX} characters, not '.' or '..'")
        self._parts = parts
        self._cache: dict[tuple[Any, ...], str] = {}

    @property
    def fields(self) -> list[str]:
        return [".".join(p) for _, p in self._parts if p is not None]

    def render(self, record: dict[str, Any] | Record) -> str:
        """The topic of a record, as its dict or its struct (the fields are the struct's attributes)."""
        if self.fixed is not None:
            return self.fixed
        values = []
        for _, path in self._parts:
            if path is None:
                continue
            v: Any = record
            for k in path:
                v = v.get(k) if type(v) is dict else getattr(v, k, None) if isinstance(v, _STRUCTS) else None
            values.append(v)
        key = tuple(values)
        topic = self._cache.get(key)
        if topic is None:
            out, it = [], iter(values)
            for literal, path in self._parts:
                if path is None:
                    out.append(literal)
                else:
                    v = next(it)
                    out.append(_TOPIC_CHARS.sub("_", str(v)) if v not in (None, "") else MISSING)
            topic = "".join(out)[:_TOPIC_MAX]
            if topic in (".", ".."):
                topic = MISSING
            if len(self._cache) > 4096:  # bounded: values are low-cardinality, but never trust that
                self._cache.clear()
            self._cache[key] = topic
        return topic


# --- keys and headers --------------------------------------------------------------

KEYS = ("event_uid", "object_uid", "none")


def message_key(mode: str) -> Callable[[dict[str, Any] | Record], bytes | None]:
    """The key function for sinks.kafka.key, of a record as its dict or its struct; a missing uid gives a
    null key."""
    if mode == "event_uid":
        def key(record: dict[str, Any] | Record) -> bytes | None:
            uid = (record.get("event") or {}).get("uid") if type(record) is dict else \
                record.event.uid if isinstance(record, Record) else None
            return uid.encode() if uid else None
    elif mode == "object_uid":
        def key(record: dict[str, Any] | Record) -> bytes | None:
            if type(record) is dict:
                uid = (record.get("object") or {}).get("uid")
            else:
                ref = record.object if isinstance(record, Record) else None
                uid = ref.uid if ref is not None else None
            return uid.encode() if uid else None
    elif mode == "none":
        def key(record: dict[str, Any] | Record) -> bytes | None:
            return None
    else:
        raise ConfigError("sinks.kafka.key", f"unknown key {mode!r}", "use event_uid, object_uid or none")
    return key


def build_headers(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Headers type, reason, namespace (the Event's), cluster; a null field has no header."""
    out = []
    v = record.get("type")
    if v is not None:
        out.append(("type", str(v).encode()))
    v = record.get("reason")
    if v is not None:
        out.append(("reason", str(v).encode()))
    v = (record.get("event") or {}).get("namespace")
    if v is not None:
        out.append(("namespace", str(v).encode()))
    v = record.get("cluster")
    if v is not None:
        out.append(("cluster", str(v).encode()))
    return out
