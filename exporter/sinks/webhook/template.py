"""The text of an alert: a small, safe template over record fields (``{reason} on {object.name}: {message}``).

Only ``{field}`` and ``{a.b}`` placeholders naming a known record field; no format
specs, conversions, indexing or attribute access, so a template can never run code
or reach anything but the record's own values (``str.format`` on user input could:
``{0.__class__}``). Parsed once when the settings load: a bad template or an
unknown field is a configuration error naming the setting (exit 2).
"""
from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

#: Record fields a template or ``group_by`` may name (docs/records.md), as dotted paths.
FIELDS = ("id", "cluster", "timestamp", "first_timestamp", "observed_timestamp", "type", "severity", "reason",
          "action", "message", "count", "count_delta", "update", "source_component", "source_host",
          "reporting_controller", "reporting_instance",
          "object.kind", "object.name", "object.namespace", "object.uid", "object.api_version",
          "object.field_path", "related.kind", "related.name", "related.namespace",
          "event.name", "event.namespace", "event.uid", "event.resource_version", "event.api_version")
#: What a null or missing field renders as.
MISSING = "-"


class TemplateError(ValueError):
    """A template that cannot be used; the message names the bad part and the fix."""


def field_path(name: str) -> tuple[str, ...]:
    """A known field name -> its path in the record; TemplateError otherwise."""
    if name not in FIELDS:
        raise TemplateError(f"unknown record field {{{name}}}; known: {', '.join(FIELDS)}")
    return tuple(name.split("."))


def lookup(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def key_function(paths: list[tuple[str, ...]]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The group key of a record: one tuple of the values at ``paths`` (the hot path: one plain loop)."""
    pairs = [(p[0], p[1] if len(p) > 1 else None) for p in paths]

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for a, b in pairs:
            v = record.get(a)
            if b is not None:
                v = v.get(b) if isinstance(v, dict) else None
            out.append(v)
        return tuple(out)
    return key


def text_of(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Template:
    """A parsed template: literal text and field paths, rendered by concatenation."""

    __slots__ = ("source", "_parts")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[str | tuple[str, ...]] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise TemplateError(f"cannot parse {source!r}: {exc} (write {{{{ and }}}} for literal braces)") from exc
        for literal, name, spec, conv in parsed:
            if literal:
                parts.append(literal)
            if name is None:
                continue
            if spec or conv:
                raise TemplateError(f"placeholder {{{name}}} has a format spec or conversion; write plain {{field}}")
            if not name:
                raise TemplateError("an empty placeholder {}; name a record field, e.g. {reason}")
            parts.append(field_path(name))
        self._parts = parts

    def render(self, record: dict[str, Any]) -> str:
        return "".join(p if isinstance(p, str) else text_of(lookup(record, p)) for p in self._parts)
