"""OTLP sink: every record as an OpenTelemetry log record, confirmed by the receiver.

The only module that imports opentelemetry (its SDK ``_logs`` package is marked
unstable; the versions are pinned in pyproject.toml). docs/otlp.md is the user's
view: the mapping table, the differences from the Collector's k8s_events
receiver, the settings and environment variables.

Mapping (see :func:`otlp_view`): the attribute names of the Collector's
k8s_events receiver, so queries carry over; plus ``k8s.cluster.name``,
``k8s.namespace.name`` on the resource, and the reporting controller/instance.

Delivery, and why not the SDK's ``BatchLogRecordProcessor``: that processor
drops when its queue is full and throws export results away, so it cannot gate
a checkpoint. Here one worker thread batches (count, bytes, time), calls the
OTLP exporter's ``export()`` itself and treats SUCCESS as the acknowledgement
(:class:`OrderedAcks`). FAILURE or an exception is retried with capped
exponential backoff, forever: a record is never dropped, and while the receiver
is away ``send()`` blocks once ``max_in_flight_records``/``_bytes`` are held,
which stalls the watch (backpressure) instead of growing memory.

Hot path, and why records are not SDK objects: building an SDK ``LogRecord`` +
per-record ``Resource`` + ``ReadableLogRecord`` and running the SDK encoder
costs ~140 us per Event on the reference machine; building
opentelemetry-proto messages ~70 us; writing the protobuf wire format directly
~10 us (measured, see docs/otlp.md). Each Event has its own resource (the
receiver puts the involved object there), so each record is encoded once, in
``send()``, to the bytes of one ``ResourceLogs`` entry of an
``ExportLogsServiceRequest``; a request body is the concatenation of its
records' entries. The SDK exporters still do the transport: endpoint, TLS,
headers, compression, their own short retries within the timeout, and their
SUCCESS/FAILURE result. Two thin subclasses let them send those bytes: the gRPC
one swaps the generated stub for a bytes-in stub, the HTTP one posts the bytes
through the SDK's HTTP client. Unit tests pin those private hooks, so an SDK
upgrade that moves them fails loudly (tests/unit/test_otlp_mapping.py).
"""
from __future__ import annotations

import calendar
import logging
import os
import random
import struct
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from exporter import __version__, log
from exporter.errors import ConfigError, SinkFatal
from exporter.sinks.base import OrderedAcks
from exporter.transforms.enrich import otel_attributes

SCOPE_NAME = "kube-event-exporter"

#: Event type (case-insensitive) -> OTLP SeverityNumber, as the Collector's receiver maps it.
SEVERITY_NUMBER = {"normal": 9, "warning": 13, "error": 17, "critical": 21}

ENV = {
    "protocol": ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    "endpoint": ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    "headers": ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
    "insecure": ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
    "ca_file": ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    "client_cert_file": ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
    "client_key_file": ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
    "compression": ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    "timeout": ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
}
PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("gzip", "none")
DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}

#: Receiver answers that retrying cannot fix (gRPC status, HTTP status) -> the setting to check.
FATAL_CODES = {"UNAUTHENTICATED": "sinks.otlp.headers", "PERMISSION_DENIED": "sinks.otlp.headers",
               "UNIMPLEMENTED": "sinks.otlp.endpoint", "INVALID_ARGUMENT": "sinks.otlp.endpoint",
               "400": "sinks.otlp.endpoint", "401": "sinks.otlp.headers", "403": "sinks.otlp.headers",
               "404": "sinks.otlp.endpoint", "405": "sinks.otlp.endpoint", "413": "sinks.otlp.batch_max_bytes"}
#: How long such answers must last before the sink reports itself fatal (a token rotation may be under way).
FATAL_AFTER_SECONDS = 60.0


# --- timestamps ------------------------------------------------------------------

_SEC_CACHE: dict[str, int] = {}


def ts_nanos(ts: str | None) -> int:
    """RFC 3339 -> Unix nanoseconds; 0 for None or unparsable (OTLP's 'unset').

    Fast path for what the apiserver writes (``YYYY-MM-DDTHH:MM:SS[.fffffffff]Z``):
    the seconds part is converted once and cached; fraction digits are exact.
    """
    if not ts:
        return 0
    if len(ts) >= 20 and ts[-1] in "Zz" and ts[10] in "Tt" and (len(ts) == 20 or ts[19] == "."):
        head = ts[:19]
        sec = _SEC_CACHE.get(head)
        if sec is None:
            try:
                sec = calendar.timegm((int(ts[0:4]), int(ts[5:7]), int(ts[8:10]),
                                       int(ts[11:13]), int(ts[14:16]), int(ts[17:19])))
            except ValueError:
                return 0
            if len(_SEC_CACHE) > 4096:
                _SEC_CACHE.clear()
            _SEC_CACHE[head] = sec
        frac = ts[20:-1]
        if not frac:
            return sec * 1_000_000_000
        if not frac.isdigit():
            return 0
        return sec * 1_000_000_000 + int((frac + "00000000")[:9])
    try:
        dt = datetime.fromisoformat(ts.replace("z", "Z"))
    except ValueError:
        return 0
    if dt.tzinfo is None:
        return 0
    whole = calendar.timegm(dt.utctimetuple())
    return whole * 1_000_000_000 + dt.microsecond * 1000


_GO_TIME_CACHE: dict[str, str] = {}


def go_time_string(ts: str | None) -> str:
    """Cached :func:`_go_time_string` (creation timestamps repeat: second precision)."""
    if not ts:
        return ""
    v = _GO_TIME_CACHE.get(ts)
    if v is None:
        if len(_GO_TIME_CACHE) > 4096:
            _GO_TIME_CACHE.clear()
        v = _GO_TIME_CACHE[ts] = _go_time_string(ts)
    return v


def _go_time_string(ts: str) -> str:
    """The Collector's ``k8s.event.start_time`` spelling: Go's time.Time.String() in UTC.

    "2026-11-29T03:18:45Z" -> "2026-11-29 03:18:45 +0000 UTC" (fraction digits kept
    without trailing zeros, as Go prints them). "" for None, as the receiver prints
    the zero time differently but an absent creationTimestamp does not happen.
    """
    if not ts:
        return ""
    ns = ts_nanos(ts)
    if ns == 0 and not ts.startswith("1970-01-01T00:00:00"):
        return ts  # unparsable: keep the raw text rather than invent a time
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
    if frac:
        text += ("." + "%09d" % frac).rstrip("0")
    return text + " +0000 UTC"


# --- the mapping -----------------------------------------------------------------

def _s(v: Any) -> str:
    if v is None:
        return ""
    return v if type(v) is str else str(v)


def resource_items(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """Per-record resource attributes, in the receiver's order (static ones come first, separately)."""
    o = rec.get("object") or {}
    items = [
        ("k8s.node.name", _s(rec.get("node") or rec.get("source_host"))),
        ("k8s.object.kind", _s(o.get("kind"))),
        ("k8s.object.name", _s(o.get("name"))),
        ("k8s.object.uid", _s(o.get("uid"))),
        ("k8s.object.fieldpath", _s(o.get("field_path"))),
        ("k8s.object.api_version", _s(o.get("api_version"))),
        ("k8s.object.resource_version", _s(o.get("resource_version"))),
    ]
    ns = o.get("namespace")
    if ns:
        items.append(("k8s.namespace.name", _s(ns)))
    if "enrichment" in rec:  # enrichment on: k8s.deployment.name, k8s.pod.label.<key>... (transforms/enrich.py)
        items.extend(otel_attributes(rec).items())
    return items


def log_items(rec: dict[str, Any]) -> list[tuple[str, Any]]:
    """Log record attributes: the receiver's, then ours (reporting controller/instance)."""
    o = rec.get("object") or {}
    ev = rec.get("event") or {}
    items: list[tuple[str, Any]] = [
        ("k8s.event.reason", _s(rec.get("reason"))),
        ("k8s.event.action", _s(rec.get("action"))),
        ("k8s.event.start_time", go_time_string(ev.get("creation_timestamp"))),
        ("k8s.event.name", _s(ev.get("name"))),
        ("k8s.event.uid", _s(ev.get("uid"))),
        ("k8s.namespace.name", _s(o.get("namespace"))),
    ]
    count = rec.get("count")
    if type(count) is int and count != 0:
        items.append(("k8s.event.count", count))
    # Ours: the occurrence's identity (uid + resourceVersion), for idempotent writes and dedup downstream.
    items.append(("k8s.event.resource_version", _s(ev.get("resource_version"))))
    rc = rec.get("reporting_controller")
    if rc:
        items.append(("k8s.event.reporting_controller", _s(rc)))
    ri = rec.get("reporting_instance")
    if ri:
        items.append(("k8s.event.reporting_instance", _s(ri)))
    return items


def severity(etype: Any) -> tuple[int, str]:
    """(severity_number, severity_text): Normal->9 INFO, Warning->13 WARN, Error->17, Critical->21.

    Case-insensitive; severity_text is the raw type; an unknown type gives 0 (UNSPECIFIED).
    """
    if type(etype) is not str or not etype:
        return 0, ""
    return SEVERITY_NUMBER.get(etype.lower(), 0), etype


def static_resource(cluster: str | None, extra: dict[str, str] | None = None,
                    env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Resource attributes common to every record: OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME,
    then sinks.otlp.resource_attributes (wins), then k8s.cluster.name (records.cluster_name)."""
    env = os.environ if env is None else env
    attrs: dict[str, str] = {}
    from urllib.parse import unquote
    for item in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        if "=" in item:
            k, _, v = item.partition("=")
            if k.strip():
                attrs[k.strip()] = unquote(v.strip())
    if env.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = env["OTEL_SERVICE_NAME"]
    attrs.update(extra or {})
    if cluster:
        attrs["k8s.cluster.name"] = cluster
    return [(k, _s(v)) for k, v in attrs.items()]


def otlp_view(rec: dict[str, Any], cluster: str | None = None,
              extra_resource: dict[str, str] | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The log record a record becomes, as plain data (what the encoder writes; used by tests and docs).

    ``cluster`` defaults to the record's own ``cluster`` field.
    """
    sev, sev_text = severity(rec.get("type"))
    res = static_resource(cluster if cluster is not None else rec.get("cluster"), extra_resource, env or {})
    return {
        "resource": dict(res + resource_items(rec)),
        "scope": {"name": SCOPE_NAME, "version": __version__},
        "time_unix_nano": ts_nanos(rec.get("timestamp")),
        "observed_time_unix_nano": ts_nanos(rec.get("observed_timestamp")),
        "severity_number": sev,
        "severity_text": sev_text,
        "body": _s(rec.get("message")),
        "attributes": dict(log_items(rec)),
    }


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


def _plain(tag: bytes, key: str):
    """Encoder of one string attribute whose values rarely repeat (names, uids)."""
    kp = _ld(b"\x0a", _utf8(key)) + b"\x12"

    def enc(v) -> bytes:
        sb = _utf8(v if type(v) is str else _s(v))
        n = len(sb)
        av = b"\x0a" + (_V1[n] if n < 128 else _varint(n)) + sb
        n = len(av)
        kv = kp + (_V1[n] if n < 128 else _varint(n)) + av
        n = len(kv)
        return tag + (_V1[n] if n < 128 else _varint(n)) + kv
    return enc


def _cached(tag: bytes, key: str, limit: int = 2048):
    """Encoder of one attribute whose values repeat (kinds, reasons, namespaces): bytes cached per value."""
    cache: dict[Any, bytes] = {}
    get = cache.get

    def enc(v) -> bytes:
        b = get(v)
        if b is None:
            if len(cache) >= limit:
                cache.clear()
            b = cache[v] = _kv(tag, key, v if type(v) is int else _s(v))
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

    def _severity(self, etype) -> bytes:
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
        res = b"".join((self._static, node(g("node") or g("source_host")), kind(o.get("kind")), oname(o.get("name")),
                        ouid(o.get("uid")), fpath(o.get("field_path")), apiv(o.get("api_version")),
                        orv(o.get("resource_version")), rns(ns) if ns else b""))
        if "enrichment" in rec:  # enrichment on (transforms/enrich.py): the k8s semantic-convention attributes
            res += b"".join(_kv(_RES_TAG, k, v) for k, v in otel_attributes(rec).items())
        reason, action, start, ename, euid, lns, count, erv, rctl, rinst = self._log
        t = ts_nanos(g("timestamp"))
        m = g("message")
        sb = _utf8(m if type(m) is str else _s(m))
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


# --- settings + environment -> exporter ---------------------------------------------

def _env(name: str, env: dict[str, str]) -> str | None:
    for var in ENV[name]:
        v = env.get(var)
        if v is not None and v.strip() != "":
            return v.strip()
    return None


def _env_source(name: str, env: dict[str, str]) -> str | None:
    for var in ENV[name]:
        v = env.get(var)
        if v is not None and v.strip() != "":
            return var
    return None


def parse_headers(text: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS syntax: ``k1=v1,k2=v2``, values URL-encoded."""
    from urllib.parse import unquote
    out = {}
    for item in text.split(","):
        if "=" in item:
            k, _, v = item.partition("=")
            if k.strip():
                out[unquote(k.strip()).lower()] = unquote(v.strip())
    return out


class Resolved:
    """Every transport setting, after settings > OTEL_EXPORTER_OTLP_LOGS_* > OTEL_EXPORTER_OTLP_* > default."""

    def __init__(self, cfg, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        self.sources: dict[str, str] = {}

        def pick(field: str, value, envname: str | None = None):
            envname = envname or field
            if value is not None:
                self.sources[field] = f"sinks.otlp.{field}"
                return value
            v = _env(envname, env)
            if v is not None:
                self.sources[field] = _env_source(envname, env)
            return v

        protocol = pick("protocol", cfg.protocol) or "grpc"
        if protocol not in PROTOCOLS:
            raise ConfigError(self.sources.get("protocol", "sinks.otlp.protocol"),
                              f"unsupported OTLP protocol {protocol!r}", "use grpc or http/protobuf")
        self.protocol = protocol
        endpoint = pick("endpoint", cfg.endpoint)
        from_generic = self.sources.get("endpoint") == "OTEL_EXPORTER_OTLP_ENDPOINT"
        if endpoint is None:
            endpoint = DEFAULT_ENDPOINTS[protocol]
            from_generic = True
        if protocol == "http/protobuf":
            u = urlparse(endpoint)
            if u.scheme not in ("http", "https"):
                raise ConfigError(self.sources.get("endpoint", "sinks.otlp.endpoint"),
                                  f"OTLP/HTTP endpoint {endpoint!r} has no http:// or https:// scheme",
                                  "give a URL such as http://collector:4318")
            # The generic variable and a bare base URL are base URLs: the signal path is appended.
            if from_generic or u.path in ("", "/"):
                endpoint = endpoint.rstrip("/") + "/v1/logs"
        self.endpoint = endpoint
        headers = parse_headers(_env("headers", env) or "")
        if _env("headers", env):
            self.sources["headers"] = _env_source("headers", env)
        headers.update({k.lower(): v for k, v in (cfg.headers or {}).items()})
        if cfg.headers:
            self.sources["headers"] = "sinks.otlp.headers"
        self.headers = headers
        insecure = cfg.insecure
        if insecure is None:
            v = _env("insecure", env)
            insecure = v.lower() == "true" if v is not None else None
        if protocol == "grpc" and insecure is None:
            scheme = urlparse(endpoint).scheme
            insecure = scheme == "http" if scheme in ("http", "https") else False
        self.insecure = bool(insecure) if insecure is not None else False
        self.ca_file = pick("ca_file", cfg.ca_file)
        self.client_cert_file = pick("client_cert_file", cfg.client_cert_file)
        self.client_key_file = pick("client_key_file", cfg.client_key_file)
        for field in ("ca_file", "client_cert_file", "client_key_file"):
            path = getattr(self, field)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(self.sources.get(field, f"sinks.otlp.{field}"), f"cannot read {path}",
                                  "mount the file (a Secret volume) and give its path")
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ConfigError("sinks.otlp.client_cert_file", "a client certificate needs its key and vice versa",
                              "set both client_cert_file and client_key_file, or neither")
        compression = (pick("compression", cfg.compression) or "none").lower()
        if compression not in COMPRESSIONS:
            raise ConfigError(self.sources.get("compression", "sinks.otlp.compression"),
                              f"unsupported compression {compression!r}", "use gzip or none")
        self.compression = compression
        if cfg.timeout_seconds is not None:
            self.timeout = float(cfg.timeout_seconds)
            self.sources["timeout"] = "sinks.otlp.timeout_seconds"
        else:
            v = _env("timeout", env)
            if v is not None:
                try:
                    ms = float(v)
                except ValueError as exc:
                    raise ConfigError(_env_source("timeout", env), f"not a number: {v!r}",
                                      "give milliseconds, e.g. 10000") from exc
                if ms < 100:
                    log.warning("otlp_timeout_env_small", variable=_env_source("timeout", env), value=v,
                                note="read as milliseconds, as the OTLP specification defines it")
                self.timeout = ms / 1000.0
                self.sources["timeout"] = _env_source("timeout", env)
            else:
                self.timeout = 10.0
        if self.timeout <= 0:
            self.timeout = 10.0

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "endpoint": self.endpoint, "insecure": self.insecure,
                "tls_ca": bool(self.ca_file), "client_cert": bool(self.client_cert_file),
                "compression": self.compression, "timeout_seconds": self.timeout,
                "headers": sorted(self.headers), "from": self.sources}


class EncodedBatch:
    """What our exporters' ``export()`` takes: a serialised ExportLogsServiceRequest and its size."""

    __slots__ = ("payload", "count")

    def __init__(self, payload: bytes, count: int) -> None:
        self.payload = payload
        self.count = count

    def __len__(self) -> int:
        return self.count


class _Feedback:
    """What an exporter learnt about its last call, beyond SUCCESS/FAILURE (for logs and metrics)."""

    def __init__(self) -> None:
        self.last_error: str | None = None
        self.last_code: str | None = None  # gRPC status name or HTTP status of the last failed attempt
        self.rejected = 0

    def response(self, data: bytes) -> None:
        if not data:
            return
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        try:
            resp = ExportLogsServiceResponse.FromString(data)
        except Exception:
            return
        self.partial(resp)

    def partial(self, resp) -> None:
        ps = resp.partial_success
        if ps.rejected_log_records:
            self.rejected += ps.rejected_log_records
            log.warning("otlp_records_rejected", rejected=ps.rejected_log_records, message=ps.error_message[:500])


def _grpc_exporter(r: Resolved, fb: _Feedback):
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

    class BytesStub:
        """LogsServiceStub taking the serialised request as bytes."""

        def __init__(self, channel) -> None:
            self._call = channel.unary_unary(method, request_serializer=None,
                                             response_deserializer=ExportLogsServiceResponse.FromString)

        def Export(self, request, metadata=None, timeout=None):  # noqa: N802 (gRPC naming)
            try:
                resp = self._call(request, metadata=metadata, timeout=timeout)
            except grpc.RpcError as exc:
                fb.last_code = exc.code().name
                fb.last_error = f"{exc.code().name}: {(exc.details() or '')[:300]}"
                raise
            fb.partial(resp)
            return resp

    class GrpcExporter(OTLPLogExporter):
        """The SDK's gRPC log exporter (channel, TLS, retries, result) sending pre-encoded requests."""

        def _initialize_channel_and_stub(self):
            super()._initialize_channel_and_stub()
            self._client = BytesStub(self._channel)

        def _translate_data(self, data):
            return data.payload

        def _count_data(self, data):
            return data.count

    credentials = None
    if not r.insecure and (r.ca_file or r.client_cert_file):
        def read(p):
            with open(p, "rb") as f:
                return f.read()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(r.ca_file) if r.ca_file else None,
            private_key=read(r.client_key_file) if r.client_key_file else None,
            certificate_chain=read(r.client_cert_file) if r.client_cert_file else None)
    elif not r.insecure:
        credentials = grpc.ssl_channel_credentials()
    compression = grpc.Compression.Gzip if r.compression == "gzip" else grpc.Compression.NoCompression
    return GrpcExporter(endpoint=r.endpoint, insecure=r.insecure, credentials=credentials,
                        headers=tuple(r.headers.items()), timeout=r.timeout, compression=compression)


def _http_exporter(r: Resolved, fb: _Feedback):
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._common import _build_transport
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    import requests

    class Session(requests.Session):
        """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA file
        (psf/requests#3829); a CA given to the exporter must win, the bundle stays the default."""

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if verify is None and isinstance(self.verify, str):
                merged["verify"] = self.verify
            return merged

    inner = _build_transport(r.ca_file, r.client_key_file, r.client_cert_file,
                             "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                             "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", session=Session())

    class Transport:
        """The SDK's requests transport, reading partial-success answers on the way."""

        def request(self, method, url, **kw):
            res = inner.request(method, url, **kw)
            if res.status_code is not None and 200 <= res.status_code < 300:
                fb.response(res.content())
            elif res.status_code is not None:
                fb.last_code = str(res.status_code)
                fb.last_error = f"HTTP {res.status_code} {res.reason or ''}: {res.text()[:300]}"
            elif res.error is not None:
                fb.last_error = f"{type(res.error).__name__}: {str(res.error)[:300]}"
            return res

        def is_connection_error(self, exc):
            return inner.is_connection_error(exc)

        def close(self):
            inner.close()

    class HttpExporter(OTLPLogExporter):
        """The SDK's OTLP/HTTP log exporter (client, TLS, retries, result) posting pre-encoded requests."""

        def export(self, batch):
            if self._shutdown:
                return LogRecordExportResult.FAILURE
            with self._metrics.export_operation(batch.count) as result:
                res = self._client.export(batch.payload)
                if not res.success:
                    result.error = res.error
                    return LogRecordExportResult.FAILURE
            return LogRecordExportResult.SUCCESS

    compression = Compression.Gzip if r.compression == "gzip" else Compression.NoCompression
    return HttpExporter(endpoint=r.endpoint, headers=r.headers, timeout=r.timeout, compression=compression,
                        max_request_size=0, _transport=Transport())


def build_exporter(r: Resolved, fb: _Feedback):
    return _grpc_exporter(r, fb) if r.protocol == "grpc" else _http_exporter(r, fb)


class _SdkLogBridge(logging.Handler):
    """The SDK logs through stdlib logging (INFO and up); its lines become our structured debug logs:
    what matters is logged by the sink itself (otlp_export_failed carries the receiver's answer)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log.debug("otlp_sdk_log", logger=record.name, level=record.levelname.lower(),
                      message=record.getMessage()[:500])
        except Exception:
            pass


def _bridge_sdk_logging() -> None:
    lg = logging.getLogger("opentelemetry")
    if not any(isinstance(h, _SdkLogBridge) for h in lg.handlers):
        lg.addHandler(_SdkLogBridge())
        lg.propagate = False
        lg.setLevel(logging.INFO)


def check_settings(cfg) -> None:
    """Fail at start, naming the field, for what would only fail at the first export."""
    Resolved(cfg)


# --- the sink ----------------------------------------------------------------------

class _Batch:
    __slots__ = ("seqs", "frames", "size", "born")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.frames: list[bytes] = []
        self.size = 0
        self.born = 0.0


class OtlpSink:
    name = "otlp"

    def __init__(self, cfg, *, cluster: str | None = None, stats=None, env: dict[str, str] | None = None,
                 exporter=None) -> None:
        self.cfg = cfg
        self.stats = stats
        _bridge_sdk_logging()
        self.resolved = Resolved(cfg, env)
        self._fb = _Feedback()
        self._exporter = exporter if exporter is not None else build_exporter(self.resolved, self._fb)
        self._encoder = Encoder(static_resource(cluster, cfg.resource_attributes, env))
        self._acks = OrderedAcks()
        self._cv = threading.Condition(threading.Lock())
        self._cur = _Batch()
        self._sealed: deque[_Batch] = deque()
        self._records = 0  # held: in batches or being exported, not yet confirmed
        self._bytes = 0
        self._closing = False
        self._abort = threading.Event()
        self._max_records = max(1, int(cfg.batch_max_records))
        self._max_bytes = max(1, int(cfg.batch_max_bytes))
        self._linger = float(cfg.batch_timeout_seconds)
        self._limit_records = max(1, int(cfg.max_in_flight_records))
        self._limit_bytes = max(1, int(cfg.max_in_flight_bytes))
        self._backoff0 = max(0.01, float(cfg.retry_backoff_initial_seconds))
        self._backoff_max = max(self._backoff0, float(cfg.retry_backoff_max_seconds))
        #: Set when delivery cannot succeed until a person acts (see _watch_fatal); the runner stops.
        self.fatal: SinkFatal | None = None
        self._fatal_since: float | None = None
        # metrics
        self.exported = 0
        self.exports = 0
        self.failures: dict[str, int] = {}
        self.retries = 0
        self.blocked = 0
        self.export_seconds = 0.0
        self.last_export_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()
        log.info("otlp_sink_started", **self.resolved.describe())

    # --- pipeline side ---------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        frame = self._encoder.encode(record)
        n = len(frame)
        with self._cv:
            if self._records >= self._limit_records or (self._records and self._bytes + n > self._limit_bytes):
                self.blocked += 1
                while (self._records >= self._limit_records
                       or (self._records and self._bytes + n > self._limit_bytes)) and not self._abort.is_set():
                    self._cv.wait(1.0)
            self._acks.expect(seq)
            cur = self._cur
            if cur.seqs and cur.size + n > self._max_bytes:
                self._seal()
                cur = self._cur
            if not cur.seqs:
                cur.born = time.monotonic()
                self._cv.notify_all()  # the worker starts this batch's linger timer
            cur.seqs.append(seq)
            cur.frames.append(frame)
            cur.size += n
            self._records += 1
            self._bytes += n
            if len(cur.seqs) >= self._max_records:
                self._seal()

    def _seal(self) -> None:
        """Close the current batch for export (lock held)."""
        self._sealed.append(self._cur)
        self._cur = _Batch()
        self._cv.notify_all()

    def flush(self) -> None:
        with self._cv:
            if self._cur.seqs:
                self._seal()

    def acked(self) -> int:
        return self._acks.watermark()

    def in_flight(self) -> int:
        with self._cv:
            return self._records

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            self._closing = True
            if self._cur.seqs:
                self._seal()
            self._cv.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            with self._cv:
                self._cv.notify_all()
                left = self._records
            log.error("otlp_close_undelivered", records=left, timeout_seconds=timeout,
                      error=self._fb.last_error, endpoint=self.resolved.endpoint,
                      note="not acknowledged: the checkpoint stays before them; they are sent again after a restart")
        try:
            self._exporter.shutdown()
        except Exception as exc:
            log.warning("otlp_shutdown_failed", error=str(exc)[:300])
        self._thread.join(5.0)
        if self._abort.is_set() and self._records:
            if self.stats is not None:
                self.stats.error("otlp", "undelivered_at_close")
            raise SinkFatal("otlp", "sinks.otlp.endpoint",
                            f"{self._records} records not delivered within {timeout:.0f}s")
        log.info("otlp_sink_closed", exported=self.exported, exports=self.exports, retries=self.retries)

    # --- worker --------------------------------------------------------------------------

    def _next(self) -> _Batch | None:
        with self._cv:
            while True:
                if self._abort.is_set():
                    return None
                if self._sealed:
                    return self._sealed.popleft()
                cur = self._cur
                if cur.seqs:
                    wait = cur.born + self._linger - time.monotonic()
                    if self._closing or wait <= 0:
                        self._seal()
                        continue
                    self._cv.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cv.wait()

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            if not self._deliver(batch):
                return
            with self._cv:
                self._records -= len(batch.seqs)
                self._bytes -= batch.size
                self._cv.notify_all()

    def _deliver(self, batch: _Batch) -> bool:
        """Export until SUCCESS (True), or until close gives up (False). Never drops."""
        payload = EncodedBatch(b"".join(batch.frames), len(batch.seqs))
        batch.frames = []
        attempt = 0
        while True:
            self._fb.last_error = None
            self._fb.last_code = None
            t0 = time.monotonic()
            try:
                ok = self._exporter.export(payload).name == "SUCCESS"
                kind = "failure"
            except Exception as exc:  # an exporter bug or transport surprise: retried like a failure
                ok = False
                kind = "exception"
                self._fb.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            dt = time.monotonic() - t0
            if ok:
                self.exports += 1
                self.export_seconds += dt
                self.last_export_seconds = dt
                self._acks.done_many(batch.seqs)
                self.exported += len(batch.seqs)
                self._fatal_since = None
                if attempt:
                    log.info("otlp_export_recovered", records=len(batch.seqs), attempts=attempt + 1)
                return True
            self.failures[kind] = self.failures.get(kind, 0) + 1
            self._watch_fatal(self._fb.last_code, self._fb.last_error)
            if self.stats is not None:
                self.stats.error("otlp", kind)
            if self._abort.is_set():
                return False
            delay = min(self._backoff_max, self._backoff0 * (2 ** min(attempt, 30))) * random.uniform(0.8, 1.2)
            attempt += 1
            self.retries += 1
            log.warning("otlp_export_failed", records=len(batch.seqs), bytes=len(payload.payload), attempt=attempt,
                        seconds=round(dt, 3), error=self._fb.last_error or "export result FAILURE",
                        endpoint=self.resolved.endpoint, retry_in_seconds=round(delay, 2))
            if self._abort.wait(delay):
                return False

    def _watch_fatal(self, code: str | None, error: str | None) -> None:
        """Answers only a person can fix (credentials, permissions, a wrong URL path), lasting
        FATAL_AFTER_SECONDS, set ``fatal``: the runner then stops the exporter (exit 1, checkpoint kept)
        instead of retrying silently for ever. Retries go on until then."""
        if code not in FATAL_CODES:
            self._fatal_since = None
            return
        now = time.monotonic()
        if self._fatal_since is None:
            self._fatal_since = now
        elif self.fatal is None and now - self._fatal_since >= FATAL_AFTER_SECONDS:
            setting = FATAL_CODES[code]
            self.fatal = SinkFatal("otlp", setting, f"the receiver keeps answering {error}")
            log.error("otlp_fatal_condition", code=code, error=error, setting=setting,
                      seconds=round(now - self._fatal_since))

    # --- metrics -----------------------------------------------------------------------

    def metrics(self):
        yield ("kee_records_emitted", "counter", "records confirmed by a sink", {"sink": self.name}, self.exported)
        yield ("kee_otlp_exports", "counter", "OTLP export requests answered with success", {}, self.exports)
        for kind in ("failure", "exception"):
            yield ("kee_otlp_export_failures", "counter",
                   "OTLP export attempts that failed (the batch is retried, never dropped), by kind",
                   {"kind": kind}, self.failures.get(kind, 0))
        yield ("kee_otlp_export_retries", "counter", "OTLP export requests retried after a failure", {},
               self.retries)
        yield ("kee_otlp_records_rejected", "counter",
               "records the receiver rejected in a partial success (permanent: not retried)", {}, self._fb.rejected)
        yield ("kee_otlp_in_flight_records", "gauge", "records handed to the OTLP sink and not yet confirmed", {},
               self._records)
        yield ("kee_otlp_in_flight_bytes", "gauge", "encoded bytes held by the OTLP sink until confirmed", {},
               self._bytes)
        yield ("kee_otlp_backpressure_waits", "counter",
               "times send() blocked because the in-flight bound was reached", {}, self.blocked)
        yield ("kee_otlp_export_seconds", "counter",
               "seconds spent in successful export requests (divide by kee_otlp_exports for the mean latency)",
               {}, self.export_seconds)
        yield ("kee_otlp_export_last_seconds", "gauge", "latency of the last successful export request", {},
               self.last_export_seconds)
        yield ("kee_otlp_fatal", "gauge", "1 while the receiver answers what only a person can fix "
               "(see the otlp_fatal_condition log)", {}, 1 if self.fatal is not None else 0)
