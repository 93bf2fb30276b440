"""Stdout for a person at a terminal (``--output text``): one line per record, like ``kubectl get events``.

    AGE   TYPE     REASON         OBJECT                      MESSAGE
    3s    Warning  OOMKilled*     demo/pod/api-5c9d           container api in pod demo/api-5c9d was OOMKilled ...

Same delivery and acknowledgement as the JSON stdout sink (written and flushed); only the
line differs. JSON stays the default: it is what pipes and log agents read.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from exporter.sinks.stdout import StdoutSink

HEADER = f"{'AGE':<5} {'TYPE':<8} {'REASON':<22} {'OBJECT':<40} MESSAGE\n"


def age(ts: str | None, now: float) -> str:
    """kubectl's short age: 42s, 5m, 3h, 2d ('?' when the time is missing or unreadable)."""
    if not ts:
        return "?"
    try:
        secs = max(0, int(now - datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def line(rec: dict[str, Any], now: float) -> str:
    obj = rec.get("object") or {}
    kind = str(obj.get("kind") or "?").lower()
    name = f"{kind}/{obj.get('name') or '?'}"
    if obj.get("namespace"):
        name = f"{obj['namespace']}/{name}"
    reason = str(rec.get("reason") or "")
    if rec.get("derived_from"):
        reason += "*"  # not an Event: read from the Pod's status (see the legend on stderr)
    message = " ".join(str(rec.get("message") or "").split())
    count = rec.get("count") or 1
    if count > 1 and not rec.get("derived_from"):
        message += f" (x{count})"
    return (f"{age(rec.get('timestamp'), now):<5} {str(rec.get('type') or ''):<8} {reason:<22} {name:<40} "
            f"{message}\n")


class TextSink(StdoutSink):
    name = "stdout"
    reads_record = True  # formats each line from the record

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._buf.append(HEADER.encode())
        self._size += len(HEADER)

    def send(self, seq: int, line_bytes: bytes, record: dict[str, Any]) -> None:
        super().send(seq, line(record, time.time()).encode("utf-8", "replace"), record)
