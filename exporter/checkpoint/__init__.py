"""Checkpoint stores: where the committed resourceVersion of each stream survives a restart.

Both stores keep one JSON document: {"version": 1, "streams": {key: {"resource_version": rv,
"saved_at": RFC 3339}}}; a store loads it once at start and saves the whole document.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

from exporter import wire

FORMAT_VERSION = 1


class Store(Protocol):
    def load(self) -> dict[str, str]:
        """stream key -> committed resourceVersion."""

    def save(self, positions: dict[str, str]) -> None:
        """Persist every stream's committed resourceVersion (atomically)."""


def encode(positions: dict[str, str]) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return wire.dumps({"version": FORMAT_VERSION,
                       "streams": {k: {"resource_version": v, "saved_at": now}
                                   for k, v in sorted(positions.items())}},
                      option=wire.OPT_INDENT_2)


def decode(raw: bytes | str, where: str) -> dict[str, str]:
    from exporter.errors import ExporterError
    try:
        doc: Any = wire.loads(raw)
        streams = doc["streams"]
        return {k: str(v["resource_version"]) for k, v in streams.items() if v.get("resource_version")}
    except (wire.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ExporterError(f"checkpoint at {where} is unreadable ({exc!r}); move it aside to start afresh") from exc


class NoStore:
    def load(self) -> dict[str, str]:
        return {}

    def save(self, positions: dict[str, str]) -> None:
        pass
