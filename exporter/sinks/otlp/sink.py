"""OTLP sink: every record as an OpenTelemetry log record, acknowledged when the receiver confirms its request.

A :class:`~exporter.sinks.batching.BatchingSink`: each record is encoded once in
send() (encode.py, ~7 us; from the record's struct when the pipeline built no dict:
``reads_struct``, ~15% of the exporter's CPU per record saved), batched by count,
bytes and time, and one worker sends each batch with its own transport (transport.py: gRPC or HTTP, public grpcio /
requests APIs) until the receiver answers success; retries use the shared backoff,
answers only a person can fix (401, 403, 404, UNAUTHENTICATED...) are conditions
(held, loud, kee_sink_condition), all per exporter/sinks/delivery.py. A partial
success is final: the rejected records are counted and logged, not retried (the
receiver said retrying will not help).

Why not the SDK's BatchLogRecordProcessor/exporters: the processor drops when its
queue is full and discards export results, so it cannot gate a checkpoint; and the
exporters take SDK objects (~140 us per record to build) rather than the bytes this
sink writes directly (docs/otlp.md).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from exporter import log
from exporter.backoff import Backoff
from exporter.metrics import Stats
from exporter.redact import mask_text
from exporter.settings import OtlpSettings
from exporter.sinks.base import Condition, Metric
from exporter.sinks.batching import BatchingSink, DeliveryFailed
from exporter.sinks.delivery import Delivery
from exporter.sinks.otlp.config import Resolved
from exporter.sinks.otlp.encode import Encoder
from exporter.sinks.otlp.mapping import static_resource
from exporter.sinks.otlp.proto import partial_success
from exporter.sinks.otlp.transport import Transport
from exporter.wire import Record

_AUTH = Condition("authentication", "sinks.otlp.headers",
                  "the receiver refuses the credentials: correct the authorization/API key header "
                  "(sinks.otlp.headers or OTEL_EXPORTER_OTLP_HEADERS)")
_ENDPOINT = Condition("endpoint", "sinks.otlp.endpoint",
                      "the receiver has no OTLP logs service at this address: check the host, port and, for "
                      "http/protobuf, the path (/v1/logs is appended to a base URL)")
_REFUSED = Condition("refused", "sinks.otlp.endpoint",
                     "the receiver refused the request as invalid: check that the endpoint is an OTLP logs receiver "
                     "and the protocol (sinks.otlp.protocol) matches it")
_TOO_LARGE = Condition("request_too_large", "sinks.otlp.batch_max_bytes",
                       "lower sinks.otlp.batch_max_bytes, or raise the receiver's request size limit "
                       "(Collector: max_recv_msg_size_mib for gRPC, max_request_body_size for HTTP)")
#: Answers (gRPC status name or http_<status>) that retrying cannot fix -> the condition they mean.
CONDITIONS: dict[str, Condition] = {
    "UNAUTHENTICATED": _AUTH, "PERMISSION_DENIED": _AUTH, "http_401": _AUTH, "http_403": _AUTH,
    "UNIMPLEMENTED": _ENDPOINT, "http_404": _ENDPOINT, "http_405": _ENDPOINT,
    "INVALID_ARGUMENT": _REFUSED, "http_400": _REFUSED, "http_415": _REFUSED,
    "http_413": _TOO_LARGE,
}


def _secrets(r: Resolved) -> list[str]:
    """Values never to print: every header value, and the endpoint's userinfo."""
    out = list(r.headers.values())
    u = urlparse(r.endpoint)
    if u.username:
        out += [u.username, unquote(u.username)]
    if u.password:
        out += [u.password, unquote(u.password)]
    return out



def build_transport(r: Resolved) -> Transport:
    """The transport for r.protocol; its library (grpcio or requests) is imported only when used."""
    if r.protocol == "grpc":
        from exporter.sinks.otlp.grpc_transport import GrpcTransport
        return GrpcTransport(r)
    from exporter.sinks.otlp.http_transport import HttpTransport
    return HttpTransport(r)

class OtlpSink(BatchingSink):
    """See the module docstring."""

    name = "otlp"
    reads_struct = True  # the plain path hands the record's struct: no dict is built (encode.py reads both)
    condition_kinds = tuple(sorted({c.kind for c in CONDITIONS.values()}))

    def __init__(self, cfg: OtlpSettings, *, cluster: str | None = None, stats: Stats | None = None,
                 env: dict[str, str] | None = None, transport: Transport | None = None) -> None:
        self.cfg = cfg
        self.resolved = Resolved(cfg, env)
        secrets = _secrets(self.resolved)
        self.stats = stats if stats is not None else Stats()
        self._transport = transport if transport is not None else build_transport(self.resolved)
        self._encoder = Encoder(static_resource(cluster, cfg.resource_attributes, env))
        self._encode, self._encode_struct = self._encoder.fast, self._encoder.struct
        self.rejected = 0
        delivery = Delivery(self.name, max_records=cfg.max_in_flight_records, max_bytes=cfg.max_in_flight_bytes,
                            backoff=Backoff(cfg.retry_backoff_initial_seconds, cfg.retry_backoff_max_seconds),
                            stats=self.stats, redact=lambda text: mask_text(text, secrets))
        super().__init__(delivery, batch_max_records=cfg.batch_max_records, batch_max_bytes=cfg.batch_max_bytes,
                         linger_seconds=cfg.batch_timeout_seconds)
        log.info("otlp_sink_started", **self.resolved.describe())

    def encode(self, seq: int, line: bytes, record: dict[str, Any]) -> bytes:
        return self._encode(record)

    def encode_struct(self, seq: int, line: bytes, record: Record) -> bytes:
        return self._encode_struct(record)

    def deliver(self, frames: list[bytes], count: int) -> None:
        a = self._transport.export(b"".join(frames))
        if a.ok:
            rejected, message = partial_success(a.body)
            if rejected:  # final: the receiver says retrying will not help
                self.rejected += rejected
                self.stats.error(self.name, "rejected")
                log.warning("otlp_records_rejected", rejected=rejected, message=self.delivery.redact(message)[:500])
            return
        code = a.code or "unknown"
        cond = CONDITIONS.get(code)
        if cond is None and code == "RESOURCE_EXHAUSTED" and "larger than max" in (a.error or ""):
            cond = _TOO_LARGE  # gRPC's way of saying 413
        raise DeliveryFailed(code.lower(), a.error or code, condition=cond, retry_after=a.retry_after)

    def cancel(self) -> None:
        self._transport.cancel()

    def release(self) -> None:
        self._transport.close()

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.resolved.safe_endpoint}

    def sink_metrics(self) -> Iterator[Metric]:
        yield ("kee_otlp_exports", "counter", "OTLP export requests answered with success", {}, self.requests)
        for kind, n in sorted(self.failures.items()):
            yield ("kee_otlp_export_failures", "counter",
                   "OTLP export attempts that failed (the batch is retried, never dropped), by kind "
                   "(gRPC status, http_<status>, connection, exception)", {"kind": kind}, n)
        yield ("kee_otlp_records_rejected", "counter",
               "records the receiver rejected in a partial success (final: not retried)", {}, self.rejected)
        yield ("kee_otlp_export_seconds", "counter",
               "seconds spent in successful export requests (divide by kee_otlp_exports for the mean latency)",
               {}, self.request_seconds)
        yield ("kee_otlp_export_last_seconds", "gauge", "latency of the last successful export request", {},
               self.last_request_seconds)
