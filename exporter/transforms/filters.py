"""Filters users already know: by type, reason, namespace, object, and kubectl field selectors.

Filtering runs on the normalised record, so one rule works for both API shapes.
A filtered record is not lost: its position still advances the checkpoint
(exporter/pipeline.py), it simply has no sink to reach.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Record = dict[str, Any]
Predicate = Callable[[Record], bool]


class FilterError(ValueError):
    """A filter expression that cannot be understood (names the bad part)."""


def _get(*path: str) -> Callable[[Record], Any]:
    if len(path) == 1:
        k = path[0]
        return lambda r: r.get(k)
    a, b = path

    def get(r: Record) -> Any:
        inner = r.get(a)
        return inner.get(b) if inner else None
    return get


#: kubectl field-selector names (both API shapes) -> record field getter.
FIELDS: dict[str, Callable[[Record], Any]] = {
    "type": _get("type"),
    "reason": _get("reason"),
    "action": _get("action"),
    "metadata.name": _get("event", "name"),
    "metadata.namespace": _get("event", "namespace"),
    "namespace": _get("event", "namespace"),
    "source": _get("source_component"),
    "source.component": _get("source_component"),
    "deprecatedSource.component": _get("source_component"),
    "source.host": _get("source_host"),
    "reportingComponent": _get("reporting_controller"),
    "reportingController": _get("reporting_controller"),
    "severity": _get("severity"),
}
for _prefix in ("involvedObject", "regarding"):
    for _k, _rk in (("kind", "kind"), ("name", "name"), ("namespace", "namespace"), ("uid", "uid"),
                    ("apiVersion", "api_version"), ("resourceVersion", "resource_version"),
                    ("fieldPath", "field_path")):
        FIELDS[f"{_prefix}.{_k}"] = _get("object", _rk)


def parse_field_selector(expr: str) -> list[tuple[str, bool, str]]:
    """'type!=Normal,reason=BackOff' -> [(field, equal, value)], as kubectl reads it."""
    out = []
    for term in filter(None, (t.strip() for t in expr.split(","))):
        if "!=" in term:
            field, value = term.split("!=", 1)
            equal = False
        elif "==" in term:
            field, value = term.split("==", 1)
            equal = True
        elif "=" in term:
            field, value = term.split("=", 1)
            equal = True
        else:
            raise FilterError(f"field selector term {term!r} has no '=', '==' or '!=' (example: type!=Normal)")
        field = field.strip()
        if field not in FIELDS:
            raise FilterError(f"field selector names unknown field {field!r}; known: {', '.join(sorted(FIELDS))}")
        out.append((field, equal, value.strip()))
    return out


def _compare(get: Callable[[Record], Any], value: str, equal: bool) -> Predicate:
    """kubectl semantics: a missing field compares as the empty string."""
    if equal:
        return lambda r: (get(r) or "") == value
    return lambda r: (get(r) or "") != value


def build(*, types: Sequence[str] = (), reasons: Sequence[str] = (), exclude_reasons: Sequence[str] = (),
          namespaces: Sequence[str] = (), exclude_namespaces: Sequence[str] = (), kinds: Sequence[str] = (),
          names: Sequence[str] = (), field_selector: str = "") -> Predicate | None:
    """One predicate for all configured rules (all must hold), or None when none is set."""
    checks: list[Predicate] = []
    if types:
        ts = frozenset(types)
        checks.append(lambda r: r.get("type") in ts)
    if reasons:
        rs = frozenset(reasons)
        checks.append(lambda r: r.get("reason") in rs)
    if exclude_reasons:
        xr = frozenset(exclude_reasons)
        checks.append(lambda r: r.get("reason") not in xr)
    ns_get = FIELDS["metadata.namespace"]
    if namespaces:
        ns = frozenset(namespaces)
        checks.append(lambda r: ns_get(r) in ns)
    if exclude_namespaces:
        xns = frozenset(exclude_namespaces)
        checks.append(lambda r: ns_get(r) not in xns)
    kind_get, name_get = FIELDS["involvedObject.kind"], FIELDS["involvedObject.name"]
    if kinds:
        ks = frozenset(kinds)
        checks.append(lambda r: kind_get(r) in ks)
    if names:
        nm = frozenset(names)
        checks.append(lambda r: name_get(r) in nm)
    for field, equal, value in parse_field_selector(field_selector):
        get = FIELDS[field]
        # kubectl semantics: a missing field compares as the empty string.
        checks.append(_compare(get, value, equal))
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda r: all(c(r) for c in checks)
