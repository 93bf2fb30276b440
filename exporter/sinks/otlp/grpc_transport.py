"""OTLP/gRPC: ``LogsService/Export`` on a grpcio channel, pre-encoded bytes in, raw response bytes out.

The only module that imports grpc. Public grpcio API only: a channel (TLS from the
resolved CA / client certificate, or plaintext), a unary-unary call without
serialisers (the request is already the protobuf bytes), metadata for the headers,
per-call timeout and compression; ``future()`` so that close() can cancel a call.
"""
from __future__ import annotations

import base64
from urllib.parse import unquote, urlparse

import grpc

from exporter.sinks.otlp.config import Resolved
from exporter.sinks.otlp.transport import Answer

METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class GrpcTransport:
    def __init__(self, r: Resolved) -> None:
        u = urlparse(r.endpoint)
        netloc = u.netloc if u.scheme in ("http", "https") else r.endpoint
        userinfo, _, target = netloc.rpartition("@")
        metadata = list(r.headers.items())
        if userinfo and "authorization" not in r.headers:  # http://user:pass@host: basic auth, never in the target
            user, _, password = userinfo.partition(":")
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
            metadata.append(("authorization", f"Basic {token}"))
        self._metadata = tuple(metadata)
        self._timeout = r.timeout
        compression = grpc.Compression.Gzip if r.compression == "gzip" else grpc.Compression.NoCompression
        if r.insecure:
            self._channel = grpc.insecure_channel(target, compression=compression)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(r.ca_file) if r.ca_file else None,
                private_key=_read(r.client_key_file) if r.client_key_file else None,
                certificate_chain=_read(r.client_cert_file) if r.client_cert_file else None)
            self._channel = grpc.secure_channel(target, creds, compression=compression)
        self._call = self._channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        self._future: grpc.Future | None = None

    def export(self, payload: bytes) -> Answer:
        fut = self._future = self._call.future(payload, metadata=self._metadata, timeout=self._timeout)
        try:
            body = fut.result()
        except grpc.FutureCancelledError:
            return Answer(False, "CANCELLED", "CANCELLED: the request was cancelled at shutdown")
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            return Answer(False, name, f"{name}: {(details or '')[:300]}")
        finally:
            self._future = None
        return Answer(True, body=body or b"")

    def cancel(self) -> None:
        fut = self._future
        if fut is not None:
            fut.cancel()

    def close(self) -> None:
        self._channel.close()
