"""The apiserver's selector and name syntax, checked before anything is sent.

A selector the apiserver refuses makes every LIST and WATCH answer 400: the
exporter would retry forever and export nothing. These checks follow the
apiserver's own parsers (k8s.io/apimachinery fields.ParseSelector and
labels.Parse, and the field labels the Event registry accepts per API version),
so ``--check-config`` refuses what the server would, naming the term.

Pure functions, no I/O: each returns a list of problems (empty when valid).
"""
from __future__ import annotations

import re

#: field labels the apiserver accepts in an Event field selector, per API version
#: (pkg/apis/core/v1/conversion.go and pkg/apis/events/v1/conversion.go; checked against a
#: real apiserver by tests/integration/test_settings_selectors.py)
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "v1": frozenset({
        "metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
        "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
        "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent",
        "source", "type"}),
    "events.k8s.io/v1": frozenset({
        "metadata.name", "metadata.namespace", "regarding.kind", "regarding.namespace", "regarding.name",
        "regarding.uid", "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath", "reason",
        "reportingController", "type"}),
}

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_FIELD_OPERATORS = ("!=", "==", "=")  # the order fields.splitTerm tries them in


def namespace_problems(name: str) -> list[str]:
    """A namespace name is a DNS-1123 label: lower case letters, digits and '-', at most 63."""
    if len(name) <= 63 and _DNS1123_LABEL.fullmatch(name):
        return []
    hint = " (one name per entry: a list, or --namespace repeated)" if "," in name else ""
    return [f"{name!r} is not a namespace name: lower-case letters, digits and '-', at most 63 characters{hint}"]


def object_name_problems(name: str, kind: str) -> list[str]:
    """A ConfigMap or Lease name is a DNS-1123 subdomain: lower case letters, digits, '-' and '.', at most 253."""
    if len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name):
        return []
    return [f"{name!r} is not a valid {kind} name: lower-case letters, digits, '-' and '.', at most 253 characters"]


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, escaped = [], [], False
    for c in text:
        if escaped:
            cur.append(c)
            escaped = False
        elif c == "\\":
            cur.append(c)
            escaped = True
        elif c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur))
    return out


def _unescape_problem(value: str) -> str | None:
    escaped = False
    for c in value:
        if escaped:
            if c not in "\\,=":
                return f"invalid escape sequence '\\{c}' (only \\\\, \\, and \\= are allowed)"
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            return f"unescaped {c!r} in the value (write \\{c})"
    return "a trailing backslash" if escaped else None


def field_selector_problems(selector: str, api: str) -> list[str]:
    """Problems with a server-side Event field selector ("type!=Normal,reason=BackOff") for `api`."""
    known = EVENT_FIELDS[api]
    problems = []
    for term in _split_unescaped(selector, ","):
        if term == "":
            continue
        for i in range(len(term)):
            op = next((o for o in _FIELD_OPERATORS if term.startswith(o, i)), None)
            if op is not None:
                lhs, rhs = term[:i], term[i + len(op):]
                break
        else:
            problems.append(f"term {term!r} has no '=', '==' or '!=' (example: type!=Normal)")
            continue
        if lhs not in known:
            problems.append(f"term {term!r}: the apiserver cannot select Events ({api}) by {lhs!r}; "
                            f"it can by: {', '.join(sorted(known))}")
            continue
        why = _unescape_problem(rhs)
        if why:
            problems.append(f"term {term!r}: {why}")
    return problems


def _label_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and len(prefix) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return f"label key {key!r}: the prefix before '/' must be a DNS subdomain"
    if not (len(name) <= 63 and _LABEL_NAME.fullmatch(name)):
        return (f"label key {key!r}: the name must be 1-63 characters, letters, digits, '-', '_' or '.', "
                f"starting and ending with a letter or digit")
    return None


def _label_value_problem(value: str) -> str | None:
    if value == "" or (len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
        return None
    return (f"label value {value!r}: at most 63 characters, letters, digits, '-', '_' or '.', "
            f"starting and ending with a letter or digit")


_LABEL_TERM = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s!=<>(),]+)"
    r"|(?P<key>[^\s!=<>(),]+)(?:\s*(?P<op>==|!=|=|<|>)\s*(?P<value>[^\s!=<>(),]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?)\s*")


def label_selector_problems(selector: str) -> list[str]:
    """Problems with a label selector ("app=web,tier in (a, b),!canary") as labels.Parse reads it."""
    if selector.strip() == "":
        return []
    problems: list[str] = []
    pos = 0
    while True:
        m = _LABEL_TERM.match(selector, pos)
        if m is None or m.end() == m.start() or not (m.group("nkey") or m.group("key")):
            problems.append(f"cannot read {selector[pos:]!r} (examples: app=web, tier in (a,b), !canary)")
            return problems
        key = m.group("nkey") or m.group("key")
        why = _label_key_problem(key)
        if why:
            problems.append(why)
        op = m.group("op")
        if op in ("<", ">"):
            if not re.fullmatch(r"\d+", m.group("value") or ""):
                problems.append(f"{key}{op}{m.group('value')}: '<' and '>' need a non-negative integer")
        elif op:
            why = _label_value_problem(m.group("value") or "")
            if why:
                problems.append(why)
        elif m.group("setop"):
            values = [v.strip() for v in m.group("values").split(",")]  # "()" is an empty set: accepted
            problems.extend(p for p in map(_label_value_problem, values) if p)
        pos = m.end()
        if pos == len(selector):
            return problems
        if selector[pos] != ",":
            problems.append(f"cannot read {selector[pos:]!r}: terms are separated by ','")
            return problems
        pos += 1
