"""Record -> OpenTelemetry log record: the mapping, as plain data (the encoder in encode.py writes the same).

The attribute names of the Collector's k8s_events receiver, so queries carry over;
plus ``k8s.cluster.name`` and ``k8s.namespace.name`` on the resource and the
reporting controller/instance (docs/otlp.md has the table and the differences).
"""
from __future__ import annotations

import calendar
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from exporter import __version__

SCOPE_NAME = "kube-event-exporter"

#: Event type (case-insensitive) -> OTLP SeverityNumber, as the Collector's receiver maps it.
SEVERITY_NUMBER = {"normal": 9, "warning": 13, "error": 17, "critical": 21}

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

def as_text(v: Any) -> str:
    """A value as attribute text: "" for None."""
    if v is None:
        return ""
    return v if type(v) is str else str(v)


def resource_items(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """Per-record resource attributes, in the receiver's order (static ones come first, separately)."""
    o = rec.get("object") or {}
    items = [
        ("k8s.node.name", as_text(rec.get("source_host"))),
        ("k8s.object.kind", as_text(o.get("kind"))),
        ("k8s.object.name", as_text(o.get("name"))),
        ("k8s.object.uid", as_text(o.get("uid"))),
        ("k8s.object.fieldpath", as_text(o.get("field_path"))),
        ("k8s.object.api_version", as_text(o.get("api_version"))),
        ("k8s.object.resource_version", as_text(o.get("resource_version"))),
    ]
    ns = o.get("namespace")
    if ns:
        items.append(("k8s.namespace.name", as_text(ns)))
    return items


def log_items(rec: dict[str, Any]) -> list[tuple[str, Any]]:
    """Log record attributes: the receiver's, then ours (reporting controller/instance)."""
    o = rec.get("object") or {}
    ev = rec.get("event") or {}
    items: list[tuple[str, Any]] = [
        ("k8s.event.reason", as_text(rec.get("reason"))),
        ("k8s.event.action", as_text(rec.get("action"))),
        ("k8s.event.start_time", go_time_string(ev.get("creation_timestamp"))),
        ("k8s.event.name", as_text(ev.get("name"))),
        ("k8s.event.uid", as_text(ev.get("uid"))),
        ("k8s.namespace.name", as_text(o.get("namespace"))),
    ]
    count = rec.get("count")
    if type(count) is int and count != 0:
        items.append(("k8s.event.count", count))
    # Ours: the occurrence's identity (uid + resourceVersion), for idempotent writes and dedup downstream.
    items.append(("k8s.event.resource_version", as_text(ev.get("resource_version"))))
    rc = rec.get("reporting_controller")
    if rc:
        items.append(("k8s.event.reporting_controller", as_text(rc)))
    ri = rec.get("reporting_instance")
    if ri:
        items.append(("k8s.event.reporting_instance", as_text(ri)))
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
    environ: Mapping[str, str] = os.environ if env is None else env
    attrs: dict[str, str] = {}
    for item in (environ.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        if "=" in item:
            k, _, v = item.partition("=")
            if k.strip():
                attrs[k.strip()] = unquote(v.strip())
    if environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = environ["OTEL_SERVICE_NAME"]
    attrs.update(extra or {})
    if cluster:
        attrs["k8s.cluster.name"] = cluster
    return [(k, as_text(v)) for k, v in attrs.items()]


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
        "body": as_text(rec.get("message")),
        "attributes": dict(log_items(rec)),
    }
