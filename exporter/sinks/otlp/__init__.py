"""The OTLP logs sink, split at its seams (docs/otlp.md is the user's view):

    config.py          settings + OTEL_EXPORTER_OTLP_* -> every transport setting (Resolved); check()
    mapping.py         record -> log record as plain data (otlp_view), timestamps, severity, resource
    encode.py          the same mapping written directly as protobuf bytes (the hot path)
    transport.py       Answer, and the choice of transport
    grpc_transport.py  OTLP/gRPC on grpcio (the only grpc import)
    http_transport.py  OTLP/HTTP on requests (the only requests import)
    proto.py           the response message (the only opentelemetry import)
    sink.py            OtlpSink on the shared batching machinery (exporter/sinks/batching.py)
"""
from __future__ import annotations

from exporter.sinks.otlp.config import Resolved, check, check_settings, parse_headers
from exporter.sinks.otlp.encode import Encoder
from exporter.sinks.otlp.mapping import (
                                         SCOPE_NAME,
                                         go_time_string,
                                         log_items,
                                         otlp_view,
                                         resource_items,
                                         severity,
                                         static_resource,
                                         ts_nanos,
)
from exporter.sinks.otlp.sink import CONDITIONS, OtlpSink
from exporter.sinks.otlp.transport import Answer

__all__ = ["OtlpSink", "Resolved", "check", "check_settings", "parse_headers", "Encoder", "SCOPE_NAME",
           "go_time_string", "log_items", "otlp_view", "resource_items", "severity", "static_resource", "ts_nanos",
           "CONDITIONS", "Answer"]
