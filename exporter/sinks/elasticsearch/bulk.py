"""The _bulk wire format: index names, request bodies and the per-item answer. No I/O.

Kept apart from the Sink class (sink.py) so the encoding can be tested without a
server and the sink can move onto shared delivery machinery unchanged.

- :class:`IndexName` renders ``sinks.elasticsearch.index`` for a record. Daily
  indices come from the record's own ``timestamp`` (``{timestamp:%Y.%m.%d}``),
  never from ``observed_timestamp``: a record delivered again after a crash must
  land in the same index, where its ``_id`` overwrites the first copy.
- :func:`encode` builds one item (action line + document) straight from the JSON
  line the pipeline already encoded: ``@timestamp`` is spliced in front, nothing
  is decoded or re-encoded (a few hundred ns per record).
- :func:`parse_items` turns the answer into one :class:`Outcome` per item, in
  request order, and :func:`classify` says which are delivered, which are worth
  retrying (429, 5xx, a block or missing index a person or the cluster will fix)
  and which are rejected for good (400 mapping conflicts and other 4xx).
"""
from __future__ import annotations

import re
import string
from typing import Any, NamedTuple

from exporter import wire
from exporter.errors import ConfigError

#: Record fields an index name may use: low-cardinality ones (an index per object
#: name would create indices without bound), plus the two stable timestamps with a date format.
TEMPLATE_FIELDS = ("type", "severity", "reason", "cluster", "source_component", "reporting_controller",
                   "event.namespace", "event.api_version", "object.kind", "object.namespace")
DATE_FIELDS = ("timestamp", "first_timestamp")
#: strftime codes a date placeholder may use, as slices of an RFC 3339 string "2026-11-29T03:18:45Z".
_DATE_CODES = {"Y": slice(0, 4), "m": slice(5, 7), "d": slice(8, 10), "H": slice(11, 13)}
_BAD_INDEX_CHARS = re.compile(r'[\\/*?"<>| ,#:A-Z]')
_INDEX_MAX = 255
#: What a null or empty field renders as.
MISSING = "_"
FIELD = "sinks.elasticsearch.index"


class IndexName:
    """A fixed index name, or a template such as ``kube-events-{timestamp:%Y.%m.%d}``."""

    __slots__ = ("source", "fixed", "_parts", "_cache")

    def __init__(self, template: str) -> None:
        self.source = template
        # (literal, path, date_spec): a literal, a field placeholder, or a date placeholder
        parts: list[tuple[str, tuple[str, ...] | None, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ConfigError(FIELD, f"bad index template {template!r}: {exc}",
                              "use {field} placeholders, e.g. kube-events-{timestamp:%Y.%m.%d}") from exc
        for literal, name, spec, conv in parsed:
            if literal:
                if _BAD_INDEX_CHARS.search(literal):
                    raise ConfigError(FIELD, f"{literal!r} has characters an index name cannot have",
                                      "use lowercase letters, digits, '-', '_', '.', '+'")
                parts.append((literal, None, None))
            if name is None:
                continue
            if conv:
                raise ConfigError(FIELD, f"placeholder {{{name}}} has a conversion", "write {field} placeholders")
            if name == "observed_timestamp":
                raise ConfigError(FIELD, "observed_timestamp changes when a record is delivered again, so the copy "
                                  "would land in another index (a duplicate)", "use {timestamp:%Y.%m.%d}")
            if name in DATE_FIELDS:
                fmt = spec or "%Y.%m.%d"
                codes = re.findall(r"%(.)", fmt)
                if any(c not in _DATE_CODES for c in codes) or _BAD_INDEX_CHARS.search(re.sub(r"%.", "", fmt)):
                    raise ConfigError(FIELD, f"date format {fmt!r} in {{{name}}}",
                                      "use %Y, %m, %d, %H with '.', '-' between them, e.g. {timestamp:%Y.%m.%d}")
                parts.append(("", (name,), fmt))
                continue
            if spec:
                raise ConfigError(FIELD, f"placeholder {{{name}}} has a format spec", "only timestamps take one")
            if name not in TEMPLATE_FIELDS:
                raise ConfigError(FIELD, f"unknown or unbounded record field {{{name}}} in the index template",
                                  "use one of: " + ", ".join(TEMPLATE_FIELDS + DATE_FIELDS))
            parts.append(("", tuple(name.split(".")), None))
        if not parts:
            raise ConfigError(FIELD, "the index name is empty", "set an index name, e.g. kube-events")
        if parts[0][1] is None and parts[0][0][0] in "-_+.":
            raise ConfigError(FIELD, f"{template!r} starts with {parts[0][0][0]!r}",
                              "start the index name with a letter or digit")
        self.fixed: str | None = None
        if all(path is None for _, path, _ in parts):
            self.fixed = "".join(lit for lit, _, _ in parts)
        self._parts = parts
        self._cache: dict[tuple[Any, ...], str] = {}

    def render(self, record: dict[str, Any]) -> str:
        if self.fixed is not None:
            return self.fixed
        values: list[Any] = []
        for _, path, spec in self._parts:
            if path is None:
                continue
            v: Any = record
            for k in path:
                v = v.get(k) if type(v) is dict else None
            if spec is not None:  # date: only the part the format uses goes into the cache key
                v = _date(v, spec)
            values.append(v)
        key = tuple(values)
        name = self._cache.get(key)
        if name is None:
            out, it = [], iter(values)
            for literal, path, _ in self._parts:
                if path is None:
                    out.append(literal)
                else:
                    v = next(it)
                    out.append(_BAD_INDEX_CHARS.sub("_", str(v).lower()) if v not in (None, "") else MISSING)
            name = "".join(out)[:_INDEX_MAX].lower()
            if len(self._cache) > 4096:  # bounded: the values are low-cardinality, but never trust that
                self._cache.clear()
            self._cache[key] = name
        return name


def _date(ts: Any, fmt: str) -> str | None:
    if type(ts) is not str or len(ts) < 13:
        return None
    return re.sub(r"%(.)", lambda m: ts[_DATE_CODES[m.group(1)]], fmt)


# --- request body --------------------------------------------------------------------

def action_prefix(op_type: str, index: str, pipeline: str | None) -> bytes:
    """The constant start of an action line for one index: ``{"index":{"_index":"x",`` (cached by the caller)."""
    head = {"_index": index}
    if pipeline:
        head["pipeline"] = pipeline
    return b'{"' + op_type.encode() + b'":' + wire.dumps(head)[:-1] + b',"_id":'


def encode(prefix: bytes, rec_id: str, timestamp: Any, line: bytes) -> bytes:
    """One bulk item: the action line with ``_id`` = the record id, then the document.

    ``line`` is the pipeline's JSON line (``{...}\\n``); ``@timestamp`` (the record's
    ``timestamp``, what dashboards sort by) is spliced in front of its first key.
    """
    action = prefix + wire.dumps(rec_id) + b"}}\n"
    if type(timestamp) is str:
        return action + b'{"@timestamp":' + wire.dumps(timestamp) + b"," + line[1:]
    return action + line


#: Only what classify() needs comes back: a 1000-item answer shrinks from ~300 kB to ~20 kB.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"


class Outcome(NamedTuple):
    status: int
    error_type: str | None
    reason: str | None


class BadResponse(ValueError):
    """The answer to a _bulk request is not what the API promises (a proxy's error page, a cut body)."""


def parse_items(body: bytes, expected: int) -> list[Outcome] | None:
    """Per-item outcomes in request order; None when every item succeeded (``"errors":false``)."""
    try:
        doc = wire.loads(body)
    except wire.JSONDecodeError as exc:
        raise BadResponse(f"not JSON: {body[:200]!r}") from exc
    if not isinstance(doc, dict) or "errors" not in doc:
        raise BadResponse(f"no 'errors' field: {body[:200]!r}")
    items = doc.get("items") or []
    if doc["errors"] is False:
        if items and len(items) != expected:
            raise BadResponse(f"{len(items)} items answered for {expected} sent")
        return None
    if len(items) != expected:
        raise BadResponse(f"{len(items)} items answered for {expected} sent")
    out = []
    for item in items:
        (result,) = item.values() if isinstance(item, dict) and len(item) == 1 else ({},)
        err = result.get("error") if isinstance(result, dict) else None
        status = result.get("status", 0) if isinstance(result, dict) else 0
        if isinstance(err, dict):
            out.append(Outcome(int(status), err.get("type"), err.get("reason")))
        else:
            out.append(Outcome(int(status), None, None if not err else str(err)))
    return out


OK, RETRY, REJECT = "ok", "retry", "reject"


def classify(o: Outcome, op_type: str) -> str:
    """ok: stored. retry: the cluster (or a person) will fix it: 429, 5xx, 401/403 (a read-only block
    when a disk fills, credentials), 404 (index missing, auto-create off). reject: this document
    will never be accepted as it is (400 mapping conflict, 413 too large, ...)."""
    s = o.status
    if 200 <= s < 300:
        return OK
    if s == 409 and op_type == "create":  # already there: a re-delivery into a data stream
        return OK
    if s == 429 or s >= 500 or s in (401, 403, 404) or s == 0:
        return RETRY
    return REJECT
