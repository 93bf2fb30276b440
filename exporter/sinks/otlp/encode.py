"""Record -> the protobuf bytes of one ``ResourceLogs`` entry, written directly (the hot path).

Why not SDK objects or generated messages: building an SDK ``LogRecord`` + per-record
``Resource`` and running the SDK encoder cost ~140 us per Event on the reference
machine; building opentelemetry-proto messages ~70 us; writing the wire format
directly ~10-20 us (docs/otlp.md), and about half that since the fast path takes
each field's prefix from a table (valgrind: 47k instructions per record, was 106k).
The same ``assemble()`` writes a record from its dict (:meth:`Encoder.fast`) or from its
struct (:meth:`Encoder.struct`, exporter.wire.Record: the pipeline's plain path builds
no dict for this sink), so both shapes give the same bytes.
Each Event has its own resource (the receiver puts the involved object there), so
each record is encoded once, in ``send()``; a request body (an
``ExportLogsServiceRequest``) is the concatenation of its records' entries.
tests/unit/test_otlp_mapping.py decodes these bytes with opentelemetry-proto and
compares them with mapping.otlp_view.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from exporter import __version__
from exporter.sinks.otlp.mapping import SCOPE_NAME, as_text, go_time_string, severity, ts_nanos
from exporter.sinks.otlp.semconv import otel_attributes
from exporter.wire import Record, RecordRef, record_dict

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


class _Cache(dict[Any, bytes]):
    """value -> the bytes of its field, computed on a miss (``self[v]``: one C-level lookup on a hit); bounded."""

    __slots__ = ("_make", "_limit")

    def __init__(self, make: Callable[[Any], bytes], limit: int = 2048) -> None:
        super().__init__()
        self._make, self._limit = make, limit

    def __missing__(self, v: Any) -> bytes:
        if len(self) >= self._limit:
            self.clear()
        b = self[v] = self._make(v)
        return b


#: String values up to this many UTF-8 bytes take their field prefix from a table (longer: computed).
_TABLE = 512
_VN = 8192
_VI = [_varint(n) for n in range(_VN)]  # the varints of 0.._VN-1 (one or two bytes)


def _vi(n: int) -> bytes:
    return _VI[n] if n < _VN else _varint(n)


def _str_prefixes(tag: bytes, key: str) -> tuple[list[bytes], Callable[[int], bytes]]:
    """For attribute ``key``: everything of its KeyValue field before a string value's bytes, by the value's
    length (a table up to _TABLE, and the function for any length)."""
    kp = _ld(b"\x0a", _utf8(key)) + b"\x12"

    def prefix(n: int) -> bytes:
        av = 1 + len(_vi(n)) + n
        return tag + _vi(len(kp) + len(_vi(av)) + av) + kp + _vi(av) + b"\x0a" + _vi(n)
    return [prefix(n) for n in range(_TABLE)], prefix


def _semconv(rec: dict[str, Any]) -> bytes:
    return b"".join(_kv(_RES_TAG, k, v) for k, v in otel_attributes(rec).items())


def _go_time_field(tag: bytes, key: str) -> Callable[[Any], bytes]:
    def make(ts: Any) -> bytes:
        return _kv(tag, key, go_time_string(ts))
    return make


class _TimeCache(dict[Any, bytes]):
    """RFC 3339 text -> its fixed64 field (``tag``), computed in __missing__ itself (half the records miss)."""

    __slots__ = ("_tag",)

    def __init__(self, tag: bytes) -> None:
        super().__init__()
        self._tag = tag

    def __missing__(self, ts: Any) -> bytes:
        if len(self) >= 4096:
            self.clear()
        t = ts_nanos(ts)
        b = self[ts] = self._tag + _fixed64(t) if t else b""
        return b


class Encoder:
    """Record -> the bytes of one ``resource_logs`` entry of an ExportLogsServiceRequest.

    The hot path: the same mapping as :func:`resource_items` / :func:`log_items` /
    :func:`otlp_view`, written out flat (tests/unit/test_otlp_mapping.py decodes the
    bytes and compares them with otlp_view). Per field: values that repeat (kinds, reasons,
    namespaces, timestamps) are one cached lookup of their whole field; the others (names, uids,
    the message) are their UTF-8 bytes behind a prefix taken from a table by their length.
    A record the fast path cannot take (a value that is not a string, a lone surrogate) goes
    through :meth:`encode_general`, which writes the same bytes.
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
        # the fast path's tables
        texts = {name: _Cache(enc) for name, enc in (
            ("node", self._res[0]), ("kind", self._res[1]), ("fpath", self._res[4]), ("apiv", self._res[5]),
            ("rns", self._res[7]), ("reason", self._log[0]), ("action", self._log[1]), ("lns", self._log[5]),
            ("count", self._log[6]), ("rctl", self._log[8]), ("rinst", self._log[9]))}
        self._fast_caches = (texts["node"], texts["kind"], texts["fpath"], texts["apiv"], texts["rns"],
                             texts["reason"], texts["action"], texts["lns"], texts["count"], texts["rctl"],
                             texts["rinst"], _Cache(_go_time_field(A, "k8s.event.start_time")),
                             _TimeCache(b"\x09"), _TimeCache(b"\x59"),
                             _Cache(self._severity, 64))
        self._fast_tables = tuple(_str_prefixes(tag, key) for tag, key in (
            (R, "k8s.object.name"), (R, "k8s.object.uid"), (R, "k8s.object.resource_version"),
            (A, "k8s.event.name"), (A, "k8s.event.uid"), (A, "k8s.event.resource_version"),
            (R, "k8s.node.name"), (A, "k8s.event.reporting_instance")))
        # the body: LogRecord field 5, an AnyValue holding field 1, the string
        self._body = [b"\x2a" + _vi(1 + len(_vi(n)) + n) + b"\x0a" + _vi(n) for n in range(4096)]
        #: encode() as a plain function (one call less on the hot path), and the same from a record's struct
        self.fast, self.struct = self._fast_path()

    def _severity(self, etype: Any) -> bytes:
        b = self._sev.get(etype)
        if b is None:
            sev, text = severity(etype)
            b = (b"\x10" + _V1[sev] if sev else b"") + (_ld(b"\x1a", _utf8(text)) if text else b"")
            if len(self._sev) < 64:
                self._sev[etype] = b
        return b

    def encode(self, rec: dict[str, Any]) -> bytes:
        return self.fast(rec)

    def _fast_path(self) -> tuple[Callable[[dict[str, Any]], bytes], Callable[[Record], bytes]]:
        """The encoders of the common record, from its dict and from its struct (exporter.wire.Record: the
        pipeline's plain path builds no dict), as closures over one ``assemble`` (its tables local names),
        so both shapes write the same bytes by construction. Every value a string or None; else
        AttributeError/TypeError/UnicodeEncodeError and :meth:`encode_general`."""
        (c_node, c_kind, c_fpath, c_apiv, c_rns, c_reason, c_action, c_lns, c_count, c_rctl, c_rinst, c_start,
         c_time, c_observed, c_sev) = self._fast_caches
        (t_oname, f_oname), (t_ouid, f_ouid), (t_orv, f_orv), (t_ename, f_ename), (t_euid, f_euid), \
            (t_erv, f_erv), (t_node, f_node), (t_rinst, f_rinst) = self._fast_tables
        static, scope, t_body, vi, semconv = self._static, self._scope, self._body, _VI, _semconv
        nscope = len(scope) + 1
        VN = _VN
        empty: dict[str, Any] = {}
        no_ref = RecordRef(None, None, None, None, None, None, None)
        T = _TABLE
        general = self.encode_general

        def assemble(v: str | None, kind: Any, oname_s: str | None, ouid_s: str | None, fpath: Any, apiv: Any,
                     orv_s: str | None, ns: Any, enriched: bytes, ename_s: str | None, euid_s: str | None,
                     erv_s: str | None, created: Any, message: str | None, c: Any, rc: Any, ri: Any, ts: Any,
                     etype: Any, reason: Any, action: Any, observed: Any) -> bytes:
            # node names, object names, uids and the message hardly repeat: not cached, their bytes behind a
            # prefix from a table by length; the rest is one cached lookup of the whole field
            node = v.encode() if v is not None else b""
            n0 = len(node)
            oname = oname_s.encode() if oname_s is not None else b""
            ouid = ouid_s.encode() if ouid_s is not None else b""
            orv = orv_s.encode() if orv_s is not None else b""
            n1, n2, n3 = len(oname), len(ouid), len(orv)
            res = b"".join((
                static, t_node[n0] if n0 < T else f_node(n0), node, c_kind[kind],
                t_oname[n1] if n1 < T else f_oname(n1), oname,
                t_ouid[n2] if n2 < T else f_ouid(n2), ouid,
                c_fpath[fpath], c_apiv[apiv],
                t_orv[n3] if n3 < T else f_orv(n3), orv,
                c_rns[ns] if ns else b"", enriched))
            ename = ename_s.encode() if ename_s is not None else b""
            euid = euid_s.encode() if euid_s is not None else b""
            erv = erv_s.encode() if erv_s is not None else b""
            n1, n2, n3 = len(ename), len(euid), len(erv)
            body = message.encode() if message is not None else b""
            nb = len(body)
            if ri:
                rinst = ri.encode()
                n0 = len(rinst)
                rinst = (t_rinst[n0] if n0 < T else f_rinst(n0)) + rinst
            else:
                rinst = b""
            lr = b"".join((
                c_time[ts], c_sev[etype],
                t_body[nb] if nb < 4096 else b"\x2a" + _vi(1 + len(_vi(nb)) + nb) + b"\x0a" + _vi(nb), body,
                c_reason[reason], c_action[action], c_start[created],
                t_ename[n1] if n1 < T else f_ename(n1), ename,
                t_euid[n2] if n2 < T else f_euid(n2), euid,
                c_lns[ns],
                c_count[c] if type(c) is int and c != 0 else b"",
                t_erv[n3] if n3 < T else f_erv(n3), erv,
                c_rctl[rc] if rc else b"", rinst,
                c_observed[observed],
            ))
            nl = len(lr)
            vl = vi[nl] if nl < VN else _varint(nl)
            sl = nscope + len(vl) + nl
            nr = len(res)
            vr = vi[nr] if nr < VN else _varint(nr)
            vs = vi[sl] if sl < VN else _varint(sl)
            rl = 2 + len(vr) + nr + len(vs) + sl
            return b"".join((b"\x0a", vi[rl] if rl < VN else _varint(rl), b"\x0a", vr, res, b"\x12", vs,
                             scope, b"\x12", vl, lr))

        def fast(rec: dict[str, Any]) -> bytes:
            try:
                g = rec.get
                o = g("object") or empty
                ev = g("event") or empty
                og, eg = o.get, ev.get
                return assemble(
                    g("node") or g("source_host"), og("kind"), og("name"), og("uid"), og("field_path"),
                    og("api_version"), og("resource_version"), og("namespace"),
                    # enrichment on (semconv.py): the k8s semantic-convention attributes
                    semconv(rec) if "enrichment" in rec else b"",
                    eg("name"), eg("uid"), eg("resource_version"), eg("creation_timestamp"), g("message"),
                    g("count"), g("reporting_controller"), g("reporting_instance"), g("timestamp"), g("type"),
                    g("reason"), g("action"), g("observed_timestamp"))
            except (AttributeError, TypeError, UnicodeEncodeError):
                return general(rec)

        def from_struct(r: Record) -> bytes:
            try:
                o = r.object or no_ref
                ev = r.event
                return assemble(
                    r.source_host, o.kind, o.name, o.uid, o.field_path, o.api_version, o.resource_version,
                    o.namespace, b"", ev.name, ev.uid, ev.resource_version, ev.creation_timestamp, r.message,
                    r.count, r.reporting_controller, r.reporting_instance, r.timestamp, r.type, r.reason,
                    r.action, r.observed_timestamp)
            except (AttributeError, TypeError, UnicodeEncodeError):  # a lone surrogate, mostly
                return general(record_dict(r))
        return fast, from_struct

    def encode_general(self, rec: dict[str, Any]) -> bytes:
        """Any record (values of any type, lone surrogates): the same bytes as the fast path."""
        g = rec.get
        o = g("object") or _EMPTY
        ev = g("event") or _EMPTY
        ns = o.get("namespace")
        node, kind, oname, ouid, fpath, apiv, orv, rns = self._res
        res = b"".join((self._static, node(g("node") or g("source_host")), kind(o.get("kind")), oname(o.get("name")),
                        ouid(o.get("uid")), fpath(o.get("field_path")), apiv(o.get("api_version")),
                        orv(o.get("resource_version")), rns(ns) if ns else b""))
        if "enrichment" in rec:  # enrichment on (semconv.py): the k8s semantic-convention attributes
            res += b"".join(_kv(_RES_TAG, k, v) for k, v in otel_attributes(rec).items())
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
