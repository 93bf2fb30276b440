"""The one message the sink decodes: the receiver's ExportLogsServiceResponse (partial success).

The only module that imports opentelemetry (opentelemetry-proto's generated messages,
a public, stable package). Requests are written directly (encode.py).
"""
from __future__ import annotations

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse


def partial_success(body: bytes) -> tuple[int, str]:
    """(rejected log records, the receiver's message) of a successful answer; (0, "") when none or unreadable."""
    if not body:
        return 0, ""
    try:
        resp = ExportLogsServiceResponse.FromString(body)
    except DecodeError:
        return 0, ""
    ps = resp.partial_success
    return int(ps.rejected_log_records), str(ps.error_message)
