"""What an OTLP transport answers, and what it must do (the sink chooses one: sink.build_transport).

A transport sends one serialised ``ExportLogsServiceRequest`` and says what came back;
it does not retry (the sink does, with the shared backoff). Each transport is the only
user of its library: grpc_transport.py (grpcio), http_transport.py (requests).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Answer:
    """The receiver's answer to one request. ``code``: the gRPC status name, ``"http_<status>"``, or
    ``"connection"`` when nothing was answered; ``body``: the serialised response on success."""
    ok: bool
    code: str | None = None
    error: str | None = None
    retry_after: float | None = None
    body: bytes = b""


class Transport(Protocol):
    def export(self, payload: bytes) -> Answer:
        """Send one request and wait for the answer (at most the configured timeout)."""

    def cancel(self) -> None:
        """Abort a request in progress if possible (close() gave up)."""

    def close(self) -> None:
        """Release connections."""
