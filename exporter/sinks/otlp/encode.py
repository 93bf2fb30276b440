"""Record -> the protobuf bytes of one ``ResourceLogs`` entry, written directly (the hot path).

Why not SDK objects or generated messages: building an SDK ``LogRecord`` + per-record
``Resource`` and running the SDK encoder cost ~140 us per Event on the reference
machine; building opentelemetry-proto messages ~70 us; writing the wire format
directly ~10-20 us (docs/otlp.md). Each Event has its own resource (the receiver
puts the involved object there), so each record is encoded once, in ``send()``; a
request body (an ``ExportLogsServiceRequest``) is the concatenation of its records'
entries. tests/unit/test_otlp_mapping.py decodes these bytes with opentelemetry-proto
and compares them with mapping.otlp_view.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from exporter import __version__
from exporter.sinks.otlp.mapping import SCOPE_NAME, as_text, go_time_string, severity, ts_nanos

# --- protobuf wire format ----------------------------------------------------------
# ExportLogsServiceRequest{1: repeated ResourceLogs}; ResourceLogs{1: Resource, 2: ScopeLogs};
# Resource{1: repeated KeyValue}; ScopeLogs{1: InstrumentationScope, 2: repeated LogRecord};
# LogRecord{1: fixed64 time, 2: enum severity, 3: string severity_text, 5: AnyValue body,
#           6: repeated KeyValue attributes, 11: fixed64 observed_time};
# KeyValue{1: string key, 2: AnyValue}; AnyValue{1: string, 3: int64}.

_V1 = [bytes((i,)) for i in range(128)]
_fixed64 = struct.Struct("<Q").pack


def _varint(n: int) -> bytes:
    if n < 128:
        return _V1[n]
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _utf8(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:  # lone surrogates: protobuf strings must be valid UTF-8
        return s.encode("utf-8", "replace")


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    n = len(payload)
    return tag + (_V1[n] if n < 128 else _varint(n)) + payload


_KEY_PREFIX: dict[str, bytes] = {}


def _kv(tag: bytes, key: str, value: Any) -> bytes:
    """One KeyValue as a field ``tag`` of its parent (string, int or bool value)."""
    kp = _KEY_PREFIX.get(key)
    if kp is None:
        kp = _KEY_PREFIX[key] = _ld(b"\x0a", _utf8(key)) + b"\x12"
    if type(value) is str:
        sb = _utf8(value)
        n = len(sb)
        av = b"\x0a" + (_V1[n] if n < 128 else _varint(n)) + sb
    elif type(value) is bool:
        av = b"\x10\x01" if value else b"\x10\x00"
    elif type(value) is int:
        av = b"\x18" + _varint(value)
    else:
        av = _ld(b"\x0a", _utf8(str(value)))
    n = len(av)
    kv = kp + (_V1[n] if n < 128 else _varint(n)) + av
    n = len(kv)
    return tag + (_V1[n] if n < 128 else _varint(n)) + kv


_RES_TAG, _ATTR_TAG = b"\x0a", b"\x32"
_EMPTY: dict[str, Any] = {}


def _plain(tag: bytes, key: str) -> Callable[[Any], bytes]:
    """Encoder of one string attribute whose values rarely repeat (names, uids)."""
    kp = _ld(b"\x0a", _utf8(key)) + b"\x12"

    def enc(v: Any) -> bytes:
        sb = _utf8(v if type(v) is str else as_text(v))
        n = len(sb)
        av = b"\x0a" + (_V1[n] if n < 128 else _varint(n)) + sb
        n = len(av)
        kv = kp + (_V1[n] if n < 128 else _varint(n)) + av
        n = len(kv)
        return tag + (_V1[n] if n < 128 else _varint(n)) + kv
    return enc


def _cached(tag: bytes, key: str, limit: int = 2048) -> Callable[[Any], bytes]:
    """Encoder of one attribute whose values repeat (kinds, reasons, namespaces): bytes cached per value."""
    cache: dict[Any, bytes] = {}
    get = cache.get

    def enc(v: Any) -> bytes:
        b = get(v)
        if b is None:
            if len(cache) >= limit:
                cache.clear()
            b = cache[v] = _kv(tag, key, v if type(v) is int else as_text(v))
        return b
    return enc


class Encoder:
    """Record -> the bytes of one ``resource_logs`` entry of an ExportLogsServiceRequest.

    The hot path: the same mapping as :func:`resource_items` / :func:`log_items` /
    :func:`otlp_view`, written out flat (tests/unit/test_otlp_mapping.py decodes the
    bytes and compares them with otlp_view).
    """

    def __init__(self, static: list[tuple[str, str]]) -> None:
        self._static = b"".join(_kv(_RES_TAG, k, v) for k, v in static)
        scope = _ld(b"\x0a", _utf8(SCOPE_NAME)) + _ld(b"\x12", _utf8(__version__))
        self._scope = _ld(b"\x0a", scope)
        R, A = _RES_TAG, _ATTR_TAG
        self._res = (
            _cached(R, "k8s.node.name"), _cached(R, "k8s.object.kind"), _plain(R, "k8s.object.name"),
            _plain(R, "k8s.object.uid"), _cached(R, "k8s.object.fieldpath"), _cached(R, "k8s.object.api_version"),
            _plain(R, "k8s.object.resource_version"), _cached(R, "k8s.namespace.name"))
        self._log = (
            _cached(A, "k8s.event.reason"), _cached(A, "k8s.event.action"), _cached(A, "k8s.event.start_time"),
            _plain(A, "k8s.event.name"), _plain(A, "k8s.event.uid"), _cached(A, "k8s.namespace.name"),
            _cached(A, "k8s.event.count"), _plain(A, "k8s.event.resource_version"),
            _cached(A, "k8s.event.reporting_controller"), _cached(A, "k8s.event.reporting_instance"))
        self._sev: dict[Any, bytes] = {}

    def _severity(self, etype: Any) -> bytes:
        b = self._sev.get(etype)
        if b is None:
            sev, text = severity(etype)
            b = (b"\x10" + _V1[sev] if sev else b"") + (_ld(b"\x1a", _utf8(text)) if text else b"")
            if len(self._sev) < 64:
                self._sev[etype] = b
        return b

    def encode(self, rec: dict[str, Any]) -> bytes:
        g = rec.get
        o = g("object") or _EMPTY
        ev = g("event") or _EMPTY
        ns = o.get("namespace")
        node, kind, oname, ouid, fpath, apiv, orv, rns = self._res
        res = b"".join((self._static, node(g("source_host")), kind(o.get("kind")), oname(o.get("name")),
                        ouid(o.get("uid")), fpath(o.get("field_path")), apiv(o.get("api_version")),
                        orv(o.get("resource_version")), rns(ns) if ns else b""))
        reason, action, start, ename, euid, lns, count, erv, rctl, rinst = self._log
        t = ts_nanos(g("timestamp"))
        m = g("message")
        sb = _utf8(m if type(m) is str else as_text(m))
        n = len(sb)
        body = b"\x0a" + (_V1[n] if n < 128 else _varint(n)) + sb
        n = len(body)
        c = g("count")
        rc = g("reporting_controller")
        ri = g("reporting_instance")
        ot = ts_nanos(g("observed_timestamp"))
        lr = b"".join((
            b"\x09" + _fixed64(t) if t else b"",
            self._severity(g("type")),
            b"\x2a" + (_V1[n] if n < 128 else _varint(n)) + body,
            reason(g("reason")), action(g("action")), start(go_time_string(ev.get("creation_timestamp"))),
            ename(ev.get("name")), euid(ev.get("uid")), lns(ns),
            count(c) if type(c) is int and c != 0 else b"",
            erv(ev.get("resource_version")),
            rctl(rc) if rc else b"", rinst(ri) if ri else b"",
            b"\x59" + _fixed64(ot) if ot else b"",
        ))
        n = len(lr)
        sl = self._scope + b"\x12" + (_V1[n] if n < 128 else _varint(n)) + lr
        n1, n2 = len(res), len(sl)
        rl = (b"\x0a" + (_V1[n1] if n1 < 128 else _varint(n1)) + res
              + b"\x12" + (_V1[n2] if n2 < 128 else _varint(n2)) + sl)
        n = len(rl)
        return b"\x0a" + (_V1[n] if n < 128 else _varint(n)) + rl
