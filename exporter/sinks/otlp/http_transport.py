"""OTLP/HTTP: POST the pre-encoded ``ExportLogsServiceRequest`` (application/x-protobuf) with requests.

The only module that imports requests. A CA given in the settings wins over
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (it is passed per request, which requests keeps;
psf/requests#3829); otherwise the system bundle. An endpoint's userinfo
(``http://user:pass@host``) is sent as basic authentication by requests, and never logged.
"""
from __future__ import annotations

import gzip

import requests

from exporter.sinks.otlp.config import Resolved
from exporter.sinks.otlp.transport import Answer

#: gzip level: 6 (zlib's default) compresses Event protobuf within ~2% of 9 at about half the CPU.
GZIP_LEVEL = 6


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: the backoff applies)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


class HttpTransport:
    def __init__(self, r: Resolved) -> None:
        self._url = r.endpoint
        self._gzip = r.compression == "gzip"
        self._headers = {"Content-Type": "application/x-protobuf", **r.headers}
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = r.timeout
        self._verify: str | bool = r.ca_file or True
        self._cert = (r.client_cert_file, r.client_key_file) if r.client_cert_file and r.client_key_file else None
        self._session = requests.Session()

    def export(self, payload: bytes) -> Answer:
        data = gzip.compress(payload, GZIP_LEVEL) if self._gzip else payload
        try:
            res = self._session.post(self._url, data=data, headers=self._headers, timeout=self._timeout,
                                     verify=self._verify, cert=self._cert)
        except requests.RequestException as exc:
            return Answer(False, "connection", f"{type(exc).__name__}: {str(exc)[:300]}")
        if 200 <= res.status_code < 300:
            return Answer(True, body=res.content)
        return Answer(False, f"http_{res.status_code}", f"HTTP {res.status_code} {res.reason or ''}: {res.text[:300]}",
                      _retry_after(res.headers.get("Retry-After")))

    def cancel(self) -> None:
        self._session.close()

    def close(self) -> None:
        self._session.close()
